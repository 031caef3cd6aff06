//! The planner: desired state + observed state → an immutable, ordered plan.
//!
//! Pure and deterministic: the same inputs give the same plan, and the plan leaves the
//! executor no choices. Every step carries what apply needs (the live id and ARN it acts on,
//! the id of every base segment or the step that will supply it, its execution wave) and
//! what a reviewer needs to judge it: the changed paths, the drift seen, why a step is
//! blocked, as typed reasons.
//!
//! The types live here; [`live`] is the observed state it plans from, [`diff`] the
//! structural diff of two definitions, [`phases`] plans one application in named phases,
//! [`guards`] adds the reasons a deletion must not happen and orders deletions, [`reasons`]
//! says why, in types a report renders.

mod guards;
mod phases;
pub use phases::import_digest;
pub mod definitions;
pub mod diff;
pub mod live;
pub mod reasons;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use reasons::{BlockReason, DeleteCause, Warning};

use crate::manifests::desired::{AppKey, DesiredApp, DesiredState};
use crate::model::{Tags, WriteSegmentRequest};
use crate::plan::live::{LiveState, Observed};
use crate::{TAG_MANAGED_BY, TAG_NAME, TAG_PREFIX};
use diff::Change;

/// The plan file format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 2;
/// The tag holding the digest of the definition segmentctl last applied (drift detection).
pub const TAG_DIGEST: &str = "segmentctl:digest";

/// What the planner is told besides the two states.
#[derive(Debug, Clone)]
pub struct Settings {
    pub owner: String,
    pub prune: bool,
    pub max_delete_percent: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Adopt,
    Update,
    /// Only tags change.
    Tag,
    Delete,
    /// An import job: creates an imported segment, or imports a new version of it.
    Import,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Adopt => "adopt",
            Action::Update => "update",
            Action::Tag => "tag",
            Action::Delete => "delete",
            Action::Import => "import",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TagChange {
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub add: Tags,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl TagChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// What turns `live` into `desired`. Keys starting with `aws:` belong to AWS; an
    /// applier's lease is not the manifests' to remove.
    pub fn between(live: &Tags, desired: &Tags) -> Self {
        Self {
            add: desired
                .iter()
                .filter(|(k, v)| live.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            remove: live
                .keys()
                .filter(|k| {
                    !desired.contains_key(*k) && !k.starts_with("aws:") && *k != crate::TAG_LEASE
                })
                .cloned()
                .collect(),
        }
    }
}

/// Where a base segment's id comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Base {
    /// The live segment the planner resolved the `Ref` to.
    Live { id: String },
    /// The segment this plan creates under that manifest name (an earlier wave).
    Created,
}

/// One segment's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentStep {
    pub action: Action,
    /// The manifest name.
    pub name: String,
    /// The segment's display name (`spec.Name`, or the live Name for deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The live segment this step acts on (none for a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// Its ARN, for tag changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The live version observed when planning; a saved plan refuses to run if it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<i32>,
    /// The definition to send (create, update, adopt), base segments named as the manifests
    /// name them (`Ref`); [`SegmentStep::bases`] says what each `Ref` stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<WriteSegmentRequest>,
    /// Every `Ref` in `spec`, by manifest name: where its id comes from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bases: BTreeMap<String, Base>,
    /// Every tag the segment must carry after this step (create sends them all at once).
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// The definition's changed paths (update, adopt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "TagChange::is_empty")]
    pub tag_changes: TagChange,
    /// The live version, when someone else changed the segment since segmentctl applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BlockReason>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// Deletes: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<DeleteCause>,
    /// Deletes only: ids of other deleted segments that build on this one (deleted first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_after: Vec<String>,
    /// When the step runs: every step of a wave after every step of the waves before it.
    pub wave: u32,
    /// Who the segment reaches before and after this step (`plan --endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// An import's source (Action::Import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportStep>,
}

/// What an import step reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportStep {
    /// What the server reads (`s3://…` or `file:///…`).
    pub url: String,
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub register_endpoints: bool,
    /// The source's fingerprint now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Why it is imported again: the live segment's source and size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_size: Option<i64>,
}

/// A segment's audience before and after a step, counted over endpoint records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audience {
    /// Endpoints the live definition matches (none for a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Endpoints the new definition matches (none for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The change in percent of `before`, when both are known and `before` is not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_percent: Option<f64>,
    /// Set when the segment becomes empty or changes by more than the configured share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Where a plan's audiences were counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceSource {
    /// The endpoint file, as given.
    pub file: String,
    /// The reference time of recency criteria.
    pub as_of: String,
    pub records_read: u64,
    pub records_rejected: u64,
    /// The first rejected line numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_lines: Vec<u64>,
    /// The change (in percent) above which a step's audience is flagged.
    pub warn_percent: f64,
}

impl SegmentStep {
    fn new(action: Action, name: &str) -> Self {
        Self {
            action,
            name: name.to_string(),
            title: None,
            segment_id: None,
            arn: None,
            live_version: None,
            spec: None,
            bases: BTreeMap::new(),
            tags: Tags::new(),
            changes: Vec::new(),
            tag_changes: TagChange::default(),
            drift: None,
            blocked: Vec::new(),
            warnings: Vec::new(),
            cause: None,
            delete_after: Vec::new(),
            wave: 0,
            audience: None,
            import: None,
        }
    }

    pub fn is_blocked(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// Blocked only by reasons `--allow-delete-in-use` lifts.
    pub fn only_in_use_blocks(&self) -> bool {
        self.is_blocked() && self.blocked.iter().all(BlockReason::in_use)
    }

    /// A delete of a duplicate (our own artifact), rather than of a segment someone wanted.
    pub fn is_duplicate(&self) -> bool {
        matches!(self.cause, Some(DeleteCause::Duplicate { .. }))
    }

    /// Manifest names of the steps of this plan whose results this step needs.
    pub fn created_bases(&self) -> impl Iterator<Item = &str> {
        self.bases
            .iter()
            .filter(|(_, b)| **b == Base::Created)
            .map(|(n, _)| n.as_str())
    }
}

/// The application-level step, for applications declared by an Application manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStep {
    /// true: CreateApp; false: tags only.
    pub create: bool,
    pub name: String,
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "TagChange::is_empty")]
    pub tag_changes: TagChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppPlan {
    /// How the manifests name the application: an id, or an Application manifest's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_ref: Option<String>,
    /// The live id, when the application exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The live application's ARN, for tag changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_arn: Option<String>,
    /// The live (or to-be-created) application name, for display.
    pub app_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_step: Option<AppStep>,
    /// In execution order: by wave; creates and updates in dependency order, then deletes.
    pub steps: Vec<SegmentStep>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// Set when the application could not be planned; it has no steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many segments in this application segmentctl manages (after the plan: desired).
    pub managed: usize,
    /// Segments this plan does not change whose audience changes all the same, through base
    /// segments it changes (`plan --endpoints`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Affected>,
}

/// A segment whose definition stays while its audience moves with its base segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The manifest name.
    pub name: String,
    pub segment_id: String,
    /// The changed base segments it builds on, directly or not.
    pub through: Vec<String>,
    pub audience: Audience,
}

impl AppPlan {
    pub fn key(&self) -> AppKey {
        match (&self.application, &self.application_ref) {
            (Some(id), _) => AppKey::Id(id.clone()),
            (None, Some(r)) => AppKey::Ref(r.clone()),
            (None, None) => AppKey::Id(String::new()),
        }
    }

    /// `shop (2a9f…)`, or the id alone.
    pub fn display(&self) -> String {
        match (&self.app_id, self.app_name.is_empty()) {
            (Some(id), false) => format!("{} ({id})", self.app_name),
            (Some(id), true) => id.clone(),
            // Named by an id the target does not have: nothing will create it.
            (None, _) if self.application.is_some() => self.app_name.clone(),
            (None, _) => format!("{} (to be created)", self.app_name),
        }
    }

    pub fn drifted(&self) -> usize {
        self.steps.iter().filter(|s| s.drift.is_some()).count()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub owner: String,
    /// The target and owner the plan was made for; a saved plan is applied nowhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::plan::live::TargetInfo>,
    /// The commit of the manifests, when known (`--revision`, `GITHUB_SHA`, `CI_COMMIT_SHA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// How many manifest documents the plan was made from.
    #[serde(default)]
    pub documents: usize,
    /// The manifest folder the plan was made from (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Digest of the desired state the plan was made from.
    pub desired_digest: String,
    /// Digest of the observed versions of every segment the plan touches.
    pub observed_digest: String,
    pub apps: Vec<AppPlan>,
    /// Set when the plan counted audiences over endpoint records (`plan --endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<AudienceSource>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub blocked: usize,
    pub apps_to_create: usize,
    pub errors: usize,
    pub drift: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for app in &self.apps {
            if app.error.is_some() {
                s.errors += 1;
            }
            if app.app_step.as_ref().is_some_and(|a| a.create) {
                s.apps_to_create += 1;
            }
            for step in &app.steps {
                match step.action {
                    Action::Create => s.create += 1,
                    Action::Import if step.segment_id.is_none() => s.create += 1,
                    Action::Adopt | Action::Update | Action::Tag | Action::Import => s.update += 1,
                    Action::Delete => s.delete += 1,
                }
                if step.is_blocked() {
                    s.blocked += 1;
                }
                if step.drift.is_some() {
                    s.drift += 1;
                }
            }
        }
        s
    }

    /// True when no step is planned. An application that could not be planned has no
    /// steps either: for "the live state matches the manifests", ask [`Plan::converged`].
    pub fn is_empty(&self) -> bool {
        self.apps
            .iter()
            .all(|a| a.steps.is_empty() && a.app_step.is_none())
    }

    /// True when the live state matches the manifests: no step is planned and every
    /// application could be read and planned.
    pub fn converged(&self) -> bool {
        self.is_empty() && self.apps.iter().all(|a| a.error.is_none())
    }

    pub fn has_blocked(&self) -> bool {
        self.apps
            .iter()
            .flat_map(|a| &a.steps)
            .any(SegmentStep::is_blocked)
    }

    /// Every step, with its application.
    pub fn steps(&self) -> impl Iterator<Item = (&AppPlan, &SegmentStep)> {
        self.apps
            .iter()
            .flat_map(|a| a.steps.iter().map(move |s| (a, s)))
    }
}

impl Summary {
    /// `Plan: 2 to create, 1 to update, 1 to delete (1 blocked).`
    pub fn line(&self) -> String {
        let mut s = format!(
            "Plan: {} to create, {} to update, {} to delete",
            self.create, self.update, self.delete
        );
        if self.blocked > 0 {
            s.push_str(&format!(" ({} blocked)", self.blocked));
        }
        s.push('.');
        if self.apps_to_create > 0 {
            s.push_str(&format!(
                " {} to create first.",
                crate::text::plural(self.apps_to_create, "application")
            ));
        }
        s
    }
}

/// The ownership tags of a segment or application.
pub fn ownership_tags(owner: &str, name: &str) -> Tags {
    Tags::from([
        (TAG_MANAGED_BY.to_string(), owner.to_string()),
        (TAG_NAME.to_string(), name.to_string()),
    ])
}

/// Is this tag key one of segmentctl's own?
pub fn is_own_tag(key: &str) -> bool {
    key.starts_with(TAG_PREFIX)
}

/// Computes the plan.
///
/// Guarantees: deterministic; segments not managed by `settings.owner` are never changed or
/// deleted, except one named by `metadata.adopt`; a deletion happens only with `prune` (or
/// to remove a duplicate) and is blocked when anything still uses the segment; every id the
/// executor needs is in the plan, or named as the step that supplies it.
pub fn plan(desired: &DesiredState, observed: &Observed, settings: &Settings) -> Plan {
    plan_prepared(desired, observed, settings, None)
}

/// What the planner derives from the desired state alone (no live state, no settings): the
/// desired digest and each segment's canonical definition with its fingerprint. Made while
/// the target is read, so that only the work that needs the live state follows its answers.
pub struct Prepared {
    desired_digest: String,
    /// Per application of the desired state, in order: per segment, in order, its canonical
    /// definition and fingerprint; `None` where they depend on the live state (an imported
    /// segment, or source segments named by id).
    segments: Vec<Vec<Option<Prepped>>>,
}

pub(crate) type Prepped = (crate::model::WriteSegmentRequest, String);

impl Prepared {
    pub fn of(desired: &DesiredState) -> Self {
        let segments = desired
            .apps
            .iter()
            .map(|a| {
                a.segments
                    .iter()
                    .map(|d| {
                        if d.import.is_some() {
                            return None;
                        }
                        let asked = std::cell::Cell::new(false);
                        let canon = diff::canonical(&d.spec, &|_: &str| {
                            asked.set(true);
                            None
                        });
                        (!asked.get()).then(|| {
                            let digest = diff::fingerprint(&canon);
                            (canon, digest)
                        })
                    })
                    .collect()
            })
            .collect();
        Self {
            desired_digest: desired_digest(desired),
            segments,
        }
    }
}

/// As [`plan`], with what [`Prepared::of`] made of this same `desired` (the same plan; less
/// work after the live state is known).
pub fn plan_prepared(
    desired: &DesiredState,
    observed: &Observed,
    settings: &Settings,
    prepared: Option<&Prepared>,
) -> Plan {
    let empty = DesiredApp {
        key: AppKey::Id(String::new()),
        declared: None,
        segments: Vec::new(),
    };
    type Job<'j> = (
        &'j AppKey,
        Option<(&'j DesiredApp, Option<&'j [Option<Prepped>]>)>,
        &'j LiveState,
    );
    let jobs: Vec<Job<'_>> = observed
        .apps
        .iter()
        .map(|(key, live)| {
            let want = desired.apps.iter().position(|a| &a.key == key).map(|i| {
                let pre = prepared
                    .and_then(|p| p.segments.get(i))
                    .map(Vec::as_slice)
                    .filter(|pre| pre.len() == desired.apps[i].segments.len());
                (&desired.apps[i], pre)
            });
            (key, want, live)
        })
        .collect();
    // Applications are planned independently: on every core when there are many segments.
    let threads = if desired.segment_count() >= 200 {
        crate::par::cores()
    } else {
        1
    };
    let apps = crate::par::map(&jobs, threads, |(key, want, live)| match want {
        Some((want, pre)) => phases::plan_app(key, want, *pre, live, settings),
        // Segments managed by this owner in an application no manifest here names: another
        // repository may use the same owner. Reported, never changed.
        None => {
            let mut out = phases::plan_app(key, &empty, None, live, settings);
            out.steps.clear();
            out.warnings
                .retain(|w| !matches!(w, Warning::OrphansKept { .. }));
            let managed = match live {
                LiveState::Found(s) => s
                    .segments
                    .iter()
                    .filter(|seg| {
                        crate::plan::live::managed_name(seg.tags.as_ref(), &settings.owner)
                            .is_some()
                    })
                    .count(),
                _ => 0,
            };
            out.managed = managed;
            out.warnings.push(Warning::NotDeclaredHere {
                owner: settings.owner.clone(),
                managed,
            });
            out
        }
    });
    let observed_digest = {
        let touched: Vec<(String, i32)> = apps
            .iter()
            .flat_map(|a| &a.steps)
            .filter_map(|s| s.segment_id.clone().zip(s.live_version))
            .collect();
        diff::digest(&serde_json::to_value(&touched).unwrap_or(Value::Null))
    };
    Plan {
        format_version: FORMAT_VERSION,
        owner: settings.owner.clone(),
        target: None,
        revision: None,
        documents: 0,
        dir: None,
        desired_digest: prepared
            .map(|p| p.desired_digest.clone())
            .unwrap_or_else(|| desired_digest(desired)),
        observed_digest,
        apps,
        audience: None,
    }
}

/// A digest of the desired state's canonical definitions and tags, written straight into
/// the hash (no intermediate JSON values: this runs on every plan).
pub fn desired_digest(desired: &DesiredState) -> String {
    use sha2::{Digest, Sha256};
    struct Hashing<'h>(&'h mut Sha256);
    impl std::io::Write for Hashing<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let none = |_: &str| None;
    let mut h = Sha256::new();
    for a in &desired.apps {
        let key = a.key.to_string();
        for s in &a.segments {
            let item = (
                &key,
                &s.name,
                diff::canonical(&s.spec, &none),
                &s.spec.tags,
                s.protect,
            );
            let _ = serde_json::to_writer(Hashing(&mut h), &item);
        }
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests;
