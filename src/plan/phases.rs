//! One application's plan, in named phases: the application itself, duplicates, the
//! segments the manifests declare, orphans, delete guards, and finally the execution waves
//! and the ids every step will need.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    guards, ownership_tags, Action, AppPlan, AppStep, Base, BlockReason, DeleteCause, SegmentStep,
    Settings, TagChange, Warning, TAG_DIGEST,
};
use crate::manifests::desired::{AppKey, DesiredApp, DesiredSegment};
use crate::model::{SegmentResponse, Tags, WriteSegmentRequest};
use crate::plan::diff;
use crate::plan::live::{claim_order, managed_name, AppSnapshot, LiveState};
use crate::{TAG_MANAGED_BY, TAG_PROTECT};

/// What the phases share about one application.
struct Context<'a> {
    want: &'a DesiredApp,
    /// What was made of `want`'s segments before the live state was known (one per segment).
    prepared: Option<&'a [Option<super::Prepped>]>,
    snapshot: Option<&'a AppSnapshot>,
    st: &'a Settings,
    /// Live segment id → manifest name, for segments this owner manages.
    names: BTreeMap<String, String>,
}

impl<'a> Context<'a> {
    fn live_segments(&self) -> &'a [SegmentResponse] {
        self.snapshot.map(|s| s.segments.as_slice()).unwrap_or(&[])
    }
    fn name_of(&self, id: &str) -> Option<String> {
        self.names.get(id).cloned()
    }
    fn used_by_campaign(&self, id: &str) -> bool {
        self.snapshot
            .is_some_and(|snap| snap.campaigns.iter().any(|c| c.segment_id == id))
    }
}

pub(super) fn plan_app(
    key: &AppKey,
    want: &DesiredApp,
    prepared: Option<&[Option<super::Prepped>]>,
    live: &LiveState,
    st: &Settings,
) -> AppPlan {
    let mut out = empty_plan(key, want);
    let snapshot = match live {
        LiveState::Error(e) => {
            out.error = Some(e.clone());
            return out;
        }
        LiveState::Missing => None,
        LiveState::Found(s) => {
            out.app_id = Some(s.app.id.clone());
            out.app_arn = Some(s.app.arn.clone()).filter(|a| !a.is_empty());
            out.app_name = s.app.name.clone();
            Some(s)
        }
    };
    let cx = Context {
        want,
        prepared,
        snapshot,
        st,
        names: snapshot
            .into_iter()
            .flat_map(|s| &s.segments)
            .filter_map(|s| {
                managed_name(s.tags.as_ref(), &st.owner).map(|n| (s.id.clone(), n.to_string()))
            })
            .collect(),
    };
    application_step(&cx, &mut out);
    let (kept, mut deletes) = duplicates(&cx);
    let adopted = segment_steps(&cx, &kept, &mut out);
    orphans(&cx, &kept, &mut out, &mut deletes);
    if let Some(snap) = snapshot {
        guards::guard_deletes(&mut deletes, snap, kept.len(), want.segments.is_empty(), st);
    }
    out.steps.extend(deletes);
    resolve_bases(&mut out.steps, &kept, &adopted);
    block_on_blocked_bases(&mut out.steps);
    assign_waves(&mut out.steps);
    out
}

fn empty_plan(key: &AppKey, want: &DesiredApp) -> AppPlan {
    let (application, application_ref) = match key {
        AppKey::Id(id) => (Some(id.clone()), None),
        AppKey::Ref(r) => (None, Some(r.clone())),
    };
    AppPlan {
        application,
        application_ref,
        app_id: None,
        app_arn: None,
        app_name: match key {
            AppKey::Id(id) => id.clone(),
            AppKey::Ref(r) => want
                .declared
                .as_ref()
                .map(|d| d.spec.name.clone())
                .unwrap_or_else(|| r.clone()),
        },
        app_step: None,
        steps: Vec::new(),
        warnings: Vec::new(),
        error: None,
        managed: want.segments.len(),
        affected: Vec::new(),
    }
}

/// Phase 1: the application an Application manifest declares: created, or re-tagged.
fn application_step(cx: &Context<'_>, out: &mut AppPlan) {
    let Some(declared) = &cx.want.declared else {
        return;
    };
    let mut tags = declared.spec.tags.clone();
    tags.extend(ownership_tags(&cx.st.owner, &declared.name));
    match cx.snapshot {
        None => {
            out.app_step = Some(AppStep {
                create: true,
                name: declared.spec.name.clone(),
                tags: tags.clone(),
                tag_changes: TagChange {
                    add: tags,
                    remove: Vec::new(),
                },
            })
        }
        Some(s) => {
            let change = TagChange::between(&s.app.tags, &tags);
            if !change.is_empty() {
                out.app_step = Some(AppStep {
                    create: false,
                    name: s.app.name.clone(),
                    tags,
                    tag_changes: change,
                });
            }
            if s.app.name != declared.spec.name {
                out.warnings.push(Warning::AppNameDiffers {
                    live: s.app.name.clone(),
                    declared: declared.spec.name.clone(),
                    origin: declared.origin.to_string(),
                });
            }
        }
    }
}

/// Phase 2: the managed live segments by name, one kept per name; the other claimants of a
/// name (duplicates, from lost answers or concurrent appliers) are deleted.
fn duplicates<'a>(cx: &Context<'a>) -> (BTreeMap<&'a str, &'a SegmentResponse>, Vec<SegmentStep>) {
    let mut managed: BTreeMap<&str, Vec<&SegmentResponse>> = BTreeMap::new();
    if let Some(snap) = cx.snapshot {
        for s in &snap.segments {
            if let Some(n) = managed_name(s.tags.as_ref(), &cx.st.owner) {
                managed.entry(n).or_default().push(s);
            }
        }
    }
    let mut kept = BTreeMap::new();
    let mut deletes = Vec::new();
    for (name, mut segs) in managed {
        // Keep the one a campaign uses, else the first in claim order.
        segs.sort_by(|a, b| {
            (
                !cx.used_by_campaign(&a.id),
                claim_order(&a.creation_date, &a.id),
            )
                .cmp(&(
                    !cx.used_by_campaign(&b.id),
                    claim_order(&b.creation_date, &b.id),
                ))
        });
        kept.insert(name, segs[0]);
        for dup in &segs[1..] {
            let mut step = delete_step(name, dup);
            step.cause = Some(DeleteCause::Duplicate {
                kept: segs[0].id.clone(),
                claimants: segs.len(),
            });
            deletes.push(step);
        }
    }
    (kept, deletes)
}

/// Phase 3: a step per declared segment that is not as its manifest says. Returns the
/// segments adopted by this plan, by manifest name.
fn segment_steps<'a>(
    cx: &Context<'a>,
    kept: &BTreeMap<&str, &'a SegmentResponse>,
    out: &mut AppPlan,
) -> BTreeMap<String, String> {
    let mut adopted_ids = BTreeMap::new();
    let name_of = |id: &str| cx.name_of(id);
    for (i, d) in cx.want.segments.iter().enumerate() {
        if let Some(imp) = &d.import {
            imported_step(cx, d, imp, kept, out);
            continue;
        }
        let computed;
        let (desired_canon, desired_digest) = match cx.prepared.and_then(|p| p[i].as_ref()) {
            Some((canon, digest)) => (canon, digest.as_str()),
            None => {
                let canon = diff::canonical(&d.spec, &name_of);
                let digest = diff::fingerprint(&canon);
                computed = (canon, digest);
                (&computed.0, computed.1.as_str())
            }
        };
        let tags = desired_tags(cx, d, desired_digest);
        let spec = || WriteSegmentRequest {
            tags: None,
            ..d.spec.clone()
        };
        let adopted = match adoption(cx, d, kept, out) {
            Adoption::Blocked(step) => {
                out.steps.push(*step);
                continue;
            }
            Adoption::Of(s) => {
                adopted_ids.insert(d.name.clone(), s.id.clone());
                Some(s)
            }
            Adoption::None => None,
        };
        let Some(live) = adopted.or_else(|| kept.get(d.name.as_str()).copied()) else {
            out.steps.push(create_step(cx, d, spec(), tags));
            continue;
        };
        if live.is_import() {
            out.steps.push(type_change_step(d, live));
            continue;
        }
        let live_canon = diff::canonical_owned(live.definition(), &name_of);
        let no_tags = Tags::new();
        let live_tags = live.tags.as_ref().unwrap_or(&no_tags);
        // Values (and their allocations), and the live digest, only when the definitions
        // differ; equal definitions have equal digests.
        let (changes, live_digest) = if live_canon == *desired_canon {
            (Vec::new(), desired_digest.to_string())
        } else {
            let changes = diff::diff(
                &diff::normalize(&live_canon, &name_of),
                &diff::normalize(desired_canon, &name_of),
            );
            (changes, diff::fingerprint(&live_canon))
        };
        let tag_changes = TagChange::between(live_tags, &tags);
        let is_adopt = adopted.is_some();
        if changes.is_empty() && tag_changes.is_empty() && !is_adopt {
            continue;
        }
        let action = if is_adopt {
            Action::Adopt
        } else if changes.is_empty() {
            Action::Tag
        } else {
            Action::Update
        };
        let mut step = SegmentStep::new(action, &d.name);
        step.title = d.spec.name.clone();
        step.segment_id = Some(live.id.clone());
        step.arn = Some(live.arn.clone());
        step.live_version = Some(live.version);
        step.spec = (!changes.is_empty()).then(spec);
        if step.spec.is_some() && d.spec.restricts_nothing() {
            step.warnings.push(Warning::MatchesEveryEndpoint);
        }
        step.tags = tags;
        step.changes = changes;
        step.tag_changes = tag_changes;
        let applied = live_tags.get(TAG_DIGEST);
        if !is_adopt && applied.is_some_and(|a| a != &live_digest) && live_digest != desired_digest
        {
            step.drift = Some(live.version);
        }
        out.steps.push(step);
    }
    adopted_ids
}

/// A segment to create, with its warnings: it matches every endpoint, or an unmanaged
/// segment has its name.
fn create_step(
    cx: &Context<'_>,
    d: &DesiredSegment,
    spec: WriteSegmentRequest,
    tags: Tags,
) -> SegmentStep {
    let mut step = SegmentStep::new(Action::Create, &d.name);
    step.title = d.spec.name.clone();
    step.spec = Some(spec);
    step.tags = tags;
    if d.spec.restricts_nothing() {
        step.warnings.push(Warning::MatchesEveryEndpoint);
    }
    if let Some(same) = cx.live_segments().iter().find(|s| {
        s.tags
            .as_ref()
            .and_then(|t| t.get(TAG_MANAGED_BY))
            .is_none()
            && s.name.is_some()
            && s.name == d.spec.name
    }) {
        step.warnings.push(Warning::UnmanagedSameName {
            segment_id: same.id.clone(),
        });
    }
    step
}

/// A Segment manifest over a live IMPORT segment: blocked, the type cannot change.
fn type_change_step(d: &DesiredSegment, live: &SegmentResponse) -> SegmentStep {
    let mut step = SegmentStep::new(Action::Update, &d.name);
    step.title = d.spec.name.clone();
    step.segment_id = Some(live.id.clone());
    step.arn = Some(live.arn.clone());
    step.live_version = Some(live.version);
    step.blocked.push(BlockReason::TypeChange {
        segment_id: live.id.clone(),
        live: "IMPORT".into(),
    });
    step
}

/// What an imported segment's `segmentctl:digest` tag records of its last import: its
/// name, source, format, the source's fingerprint and whether endpoints were registered. A
/// plan imports again when it differs.
pub fn import_digest(name: Option<&str>, imp: &crate::manifests::desired::ImportSpec) -> String {
    use sha2::{Digest, Sha256};
    let etag = imp.etag.as_ref().and_then(|e| e.as_ref().ok());
    let mut h = Sha256::new();
    for part in [
        name.unwrap_or_default(),
        &imp.url,
        imp.source.format.as_str(),
        etag.map(String::as_str).unwrap_or_default(),
        if imp.source.register_endpoints == Some(false) {
            "0"
        } else {
            "1"
        },
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("import:{}", hex::encode(&h.finalize()[..16]))
}

/// The step of an imported segment: an import when it is missing, when its source (by its
/// fingerprint), format or name changed since the last import, or when a segment an
/// interrupted apply imported is found unclaimed (same name and source); else its tags.
fn imported_step(
    cx: &Context<'_>,
    d: &DesiredSegment,
    imp: &crate::manifests::desired::ImportSpec,
    kept: &BTreeMap<&str, &SegmentResponse>,
    out: &mut AppPlan,
) {
    let etag = imp.etag.as_ref().and_then(|e| e.as_ref().ok()).cloned();
    let digest = import_digest(d.spec.name.as_deref(), imp);
    let tags = desired_tags(cx, d, &digest);
    let live = kept.get(d.name.as_str()).copied().or_else(|| {
        cx.live_segments().iter().find(|s| {
            s.tags
                .as_ref()
                .and_then(|t| t.get(TAG_MANAGED_BY))
                .is_none()
                && s.is_import()
                && s.name == d.spec.name
                && s.import_definition.as_ref().map(|i| i.s3_url.as_str()) == Some(imp.url.as_str())
        })
    });
    let mut step = SegmentStep::new(Action::Import, &d.name);
    step.title = d.spec.name.clone();
    step.import = Some(super::ImportStep {
        url: imp.url.clone(),
        format: imp.source.format.as_str().into(),
        role_arn: imp.source.role_arn.clone(),
        external_id: imp.source.external_id.clone(),
        register_endpoints: imp.source.register_endpoints != Some(false),
        etag,
        previous_url: None,
        previous_size: None,
    });
    match live {
        None => {
            step.tag_changes = TagChange {
                add: tags.clone(),
                remove: Vec::new(),
            };
        }
        Some(l) => {
            step.segment_id = Some(l.id.clone());
            step.arn = Some(l.arn.clone());
            step.live_version = Some(l.version);
            if !l.is_import() {
                step.blocked.push(BlockReason::TypeChange {
                    segment_id: l.id.clone(),
                    live: "DIMENSIONAL".into(),
                });
                out.steps.push(step);
                return;
            }
            let no_tags = Tags::new();
            let live_tags = l.tags.as_ref().unwrap_or(&no_tags);
            step.tag_changes = TagChange::between(live_tags, &tags);
            let reimport = live_tags.get(TAG_DIGEST) != Some(&digest);
            if !reimport {
                if step.tag_changes.is_empty() {
                    return;
                }
                step.action = Action::Tag;
                step.import = None;
            } else if let (Some(i), Some(def)) = (step.import.as_mut(), &l.import_definition) {
                i.previous_url = Some(def.s3_url.clone());
                i.previous_size = Some(def.size);
            }
        }
    }
    if let Some(Err(reason)) = &imp.etag {
        step.blocked.push(BlockReason::SourceUnreadable {
            url: imp.url.clone(),
            why: reason.clone(),
        });
    }
    step.tags = tags;
    out.steps.push(step);
}

/// Every tag a declared segment must carry: the user's, ownership, protection, digest.
fn desired_tags(cx: &Context<'_>, d: &DesiredSegment, digest: &str) -> Tags {
    let mut tags = d.spec.tags.clone().unwrap_or_default();
    tags.extend(ownership_tags(&cx.st.owner, &d.name));
    if d.protect {
        tags.insert(TAG_PROTECT.into(), "true".into());
    }
    tags.insert(TAG_DIGEST.into(), digest.to_string());
    tags
}

enum Adoption<'a> {
    None,
    Of(&'a SegmentResponse),
    Blocked(Box<SegmentStep>),
}

/// `metadata.adopt`, when the name is not managed yet: the unmanaged segment to take over.
fn adoption<'a>(
    cx: &Context<'a>,
    d: &DesiredSegment,
    kept: &BTreeMap<&str, &'a SegmentResponse>,
    out: &mut AppPlan,
) -> Adoption<'a> {
    let (Some(id), None) = (&d.adopt, kept.get(d.name.as_str())) else {
        return Adoption::None;
    };
    let Some(s) = cx.live_segments().iter().find(|s| &s.id == id) else {
        out.warnings.push(Warning::AdoptTargetMissing {
            name: d.name.clone(),
            segment_id: id.clone(),
        });
        return Adoption::None;
    };
    let blocked = |reason: BlockReason| {
        let mut step = SegmentStep::new(Action::Adopt, &d.name);
        step.segment_id = Some(id.clone());
        step.arn = Some(s.arn.clone());
        step.blocked.push(reason);
        Adoption::Blocked(Box::new(step))
    };
    match s.tags.as_ref().and_then(|t| t.get(TAG_MANAGED_BY)) {
        Some(o) if o != &cx.st.owner => blocked(BlockReason::OtherOwner {
            segment_id: id.clone(),
            owner: o.clone(),
        }),
        Some(_) => blocked(BlockReason::AlreadyManaged {
            segment_id: id.clone(),
            name: managed_name(s.tags.as_ref(), &cx.st.owner)
                .unwrap_or("")
                .to_string(),
        }),
        None => Adoption::Of(s),
    }
}

/// Phase 4: managed segments whose manifest is gone: deleted with prune, else reported.
fn orphans(
    cx: &Context<'_>,
    kept: &BTreeMap<&str, &SegmentResponse>,
    out: &mut AppPlan,
    deletes: &mut Vec<SegmentStep>,
) {
    let declared: BTreeSet<&str> = cx.want.segments.iter().map(|s| s.name.as_str()).collect();
    let orphans: Vec<(&str, &SegmentResponse)> = kept
        .iter()
        .filter(|(name, _)| !declared.contains(*name))
        .map(|(n, s)| (*n, *s))
        .collect();
    if orphans.is_empty() {
        return;
    }
    if cx.st.prune {
        for (name, s) in orphans {
            let mut step = delete_step(name, s);
            step.cause = Some(DeleteCause::Pruned);
            deletes.push(step);
        }
    } else {
        out.warnings.push(Warning::OrphansKept {
            names: orphans.iter().map(|(n, _)| n.to_string()).collect(),
        });
    }
}

pub(super) fn delete_step(name: &str, live: &SegmentResponse) -> SegmentStep {
    let mut step = SegmentStep::new(Action::Delete, name);
    step.title = live.name.clone();
    step.segment_id = Some(live.id.clone());
    step.arn = Some(live.arn.clone());
    step.live_version = Some(live.version);
    // The definition that goes away, leaf by leaf, for the reviewer (base segments by id).
    let by_id = |_: &str| None;
    let canon = diff::canonical_owned(live.definition(), &by_id);
    step.changes = diff::diff(
        &diff::normalize(&canon, &by_id),
        &serde_json::Value::Object(Default::default()),
    );
    step
}

/// Phase 6: every `Ref` in a step's definition, resolved: to the live segment kept (or
/// adopted) under that name, or to the step of this plan that creates it.
fn resolve_bases(
    steps: &mut [SegmentStep],
    kept: &BTreeMap<&str, &SegmentResponse>,
    adopted: &BTreeMap<String, String>,
) {
    for step in steps.iter_mut() {
        let Some(spec) = &step.spec else { continue };
        let refs: BTreeSet<String> = spec
            .segment_groups
            .iter()
            .flat_map(|g| g.groups.iter().flatten())
            .flat_map(|g| g.source_segments.iter().flatten())
            .filter_map(|r| r.reference.clone())
            .collect();
        step.bases = refs
            .into_iter()
            .map(|name| {
                let base = match (kept.get(name.as_str()), adopted.get(&name)) {
                    (Some(live), _) => Base::Live {
                        id: live.id.clone(),
                    },
                    (None, Some(id)) => Base::Live { id: id.clone() },
                    (None, None) => Base::Created,
                };
                (name, base)
            })
            .collect();
    }
}

/// A step that needs a segment this plan creates (or adopts) cannot run while that step is
/// blocked: it is blocked too. Steps are in dependency order, so one pass suffices.
fn block_on_blocked_bases(steps: &mut [SegmentStep]) {
    for i in 0..steps.len() {
        if steps[i].action == Action::Delete {
            continue;
        }
        let blocked: Vec<BlockReason> = steps[i]
            .created_bases()
            .filter(|name| {
                steps[..i]
                    .iter()
                    .any(|s| s.action != Action::Delete && s.name == *name && s.is_blocked())
            })
            .map(|name| BlockReason::BaseBlocked {
                name: name.to_string(),
            })
            .collect();
        steps[i].blocked.extend(blocked);
    }
}

/// Phase 7: execution waves. A step runs after the steps of this plan for the segments it
/// builds on; deletions after every other step, a segment after the deleted segments built
/// on it. Steps are put in wave order (stable).
fn assign_waves(steps: &mut [SegmentStep]) {
    let mut wave_of: BTreeMap<String, u32> = BTreeMap::new();
    for step in steps.iter_mut().filter(|s| s.action != Action::Delete) {
        step.wave = step
            .bases
            .keys()
            .filter_map(|b| wave_of.get(b))
            .map(|w| w + 1)
            .max()
            .unwrap_or(0);
        wave_of.insert(step.name.clone(), step.wave);
    }
    let first_delete = steps
        .iter()
        .filter(|s| s.action != Action::Delete)
        .map(|s| s.wave + 1)
        .max()
        .unwrap_or(0);
    // Deletes are already ordered dependents first (guards::order_deletes).
    let mut delete_wave: BTreeMap<String, u32> = BTreeMap::new();
    for step in steps.iter_mut().filter(|s| s.action == Action::Delete) {
        step.wave = step
            .delete_after
            .iter()
            .filter_map(|id| delete_wave.get(id))
            .map(|w| w + 1)
            .max()
            .unwrap_or(first_delete);
        if let Some(id) = &step.segment_id {
            delete_wave.insert(id.clone(), step.wave);
        }
    }
    steps.sort_by_key(|s| s.wave);
}
