//! Planning a Customer Profiles domain: `SegmentDefinition` manifests against the domain's
//! definitions. Pure and deterministic, as the Pinpoint planner is.
//!
//! A definition has no update operation, so a changed one is replaced, in one of two ways:
//!
//! - **in place**, when nothing builds on it: deleted, then created under the same name
//!   (the plan says it is absent for that moment);
//! - **renamed**, when other definitions name it in `SourceSegments`: created under a
//!   derived name (`<name>-<8 hex of its content>`), its dependants re-created pointing at
//!   it (bases first), then the old one deleted, after everything that used it.
//!
//! Ownership is by tags, as on Pinpoint: `segmentctl:managed-by` and `segmentctl:name` (the
//! manifest's name, which a derived name carries over), plus `segmentctl:digest` of what was
//! created, so a definition re-created by someone else is shown as drift.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifests::manifest::definition::MAX_NAME_IN_DERIVED;
use crate::manifests::manifest::{DefinitionDoc, DomainDoc};
use crate::model::campaigns::CampaignState;
use crate::model::profiles::{CreateSegmentDefinitionRequest, DomainSpec};
use crate::model::Tags;
use crate::plan::diff::{self, Change};
use crate::plan::live::TargetInfo;
use crate::plan::{Settings, TagChange, TAG_DIGEST};
use crate::{TAG_MANAGED_BY, TAG_NAME, TAG_PROTECT};

/// The plan document's format, for `--format json`.
pub const FORMAT_VERSION: u32 = 1;

/// A definition on the target, read in full (GetSegmentDefinition).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveDefinition {
    pub name: String,
    pub arn: String,
    /// As CreateSegmentDefinition would make it again (tags included).
    pub spec: CreateSegmentDefinitionRequest,
    /// When it was created (epoch seconds).
    pub created_at: i64,
}

/// A Connect outbound campaign (v2) whose source is a segment definition.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCampaign {
    pub id: String,
    pub name: String,
    pub state: CampaignState,
    /// `source.customerProfilesSegmentArn`.
    pub segment_arn: String,
}

/// The domain as observed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveDomain {
    pub name: String,
    /// The domain's settings; `None`: it does not exist (then created only from a `Domain`
    /// manifest, or as the embedded default's own).
    pub settings: Option<DomainSpec>,
    pub definitions: Vec<LiveDefinition>,
    /// The campaigns whose source is a segment definition (of this domain or another).
    pub campaigns: Vec<LiveCampaign>,
}

impl LiveDomain {
    /// Whether the domain exists.
    pub fn present(&self) -> bool {
        self.settings.is_some()
    }
}

/// What the plan may do to a definition a campaign in use reads (Initialized, Running or
/// Paused): by default nothing that deletes it, and a campaign is never re-pointed silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CampaignPolicy {
    /// `--allow-delete-in-use`: delete it anyway (the campaign is left naming it).
    pub allow_delete_in_use: bool,
    /// `--repoint-campaigns`: when it is replaced, re-point the campaign to its replacement
    /// (UpdateCampaignSource) before it is deleted.
    pub repoint: bool,
}

/// A campaign that reads a definition a step deletes or replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignUse {
    pub id: String,
    pub name: String,
    pub state: String,
}

impl CampaignUse {
    fn of(c: &LiveCampaign) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            state: c.state.to_string(),
        }
    }
}

/// `reads` for one campaign, `read` for several.
fn reads(cs: &[&LiveCampaign]) -> &'static str {
    if cs.len() == 1 {
        "reads"
    } else {
        "read"
    }
}

/// `the campaign spring (id 1a2b…, Running)`, `the campaigns a (…) and b (…)`.
fn campaigns_named(cs: &[&LiveCampaign]) -> String {
    let each: Vec<String> = cs
        .iter()
        .map(|c| format!("{} (id {}, {})", c.name, c.id, c.state))
        .collect();
    match each.as_slice() {
        [one] => format!("the campaign {one}"),
        _ => format!("the campaigns {}", each.join(", ")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    /// Delete and create (no update exists); see [`Replacement`].
    Replace,
    /// Only tags change (TagResource works on a definition).
    Tag,
    /// An unmanaged definition (`metadata.adopt`) taken over as it is: tagged as managed.
    Adopt,
    Delete,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Tag => "tag",
            Action::Adopt => "adopt",
            Action::Delete => "delete",
        }
    }
}

/// How a replace is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replacement {
    /// Delete, then create (the definition is absent in between); nothing builds on it.
    InPlace,
    /// Create under `new_name`; the old definition is deleted by a later step, once
    /// nothing uses it.
    Renamed,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub action: Action,
    /// The manifest's name (for a delete of an unmanaged leftover: its `segmentctl:name`).
    pub name: String,
    /// The definition acted on (none for a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The name a create (or replace) makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<Replacement>,
    /// The request to send: sources resolved to names on the target, every tag included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CreateSegmentDefinitionRequest>,
    /// What changes, live → manifest (a replace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "TagChange::is_empty")]
    pub tag_changes: TagChange,
    /// The definitions that build on the one replaced (why it is renamed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependants: Vec<String>,
    /// The definition was re-created by someone else since segmentctl created it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift: bool,
    /// A replace of an unmanaged definition named by `metadata.adopt`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// Deletes: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Why this step must not run; the rest of the plan runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
    /// Profiles matched before and after (`plan --profiles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<ProfileAudience>,
    /// The campaigns in use that read the definition this step deletes or replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<CampaignUse>,
    /// A delete: re-point `campaigns` to this definition (its replacement) first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repoint_to: Option<String>,
    /// What the step does that a reviewer should know and that does not stop it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A step's profiles before and after the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileAudience {
    /// None: the definition does not exist before (a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// None: it does not exist after (a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

/// The profile records a plan's audiences were counted over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilesRead {
    pub file: String,
    pub profiles: u64,
    pub rejected: u64,
    /// The line of the first rejected record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_rejected: Option<u64>,
}

impl Step {
    fn new(action: Action, name: &str) -> Self {
        Self {
            action,
            name: name.to_string(),
            live_name: None,
            arn: None,
            new_name: None,
            replacement: None,
            spec: None,
            changes: Vec::new(),
            tag_changes: TagChange::default(),
            dependants: Vec::new(),
            drift: false,
            adopted: false,
            cause: None,
            blocked: Vec::new(),
            audience: None,
            campaigns: Vec::new(),
            repoint_to: None,
            warnings: Vec::new(),
        }
    }
}

/// The plan for one domain: steps in the order they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionsPlan {
    pub format_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetInfo>,
    pub domain: String,
    /// The domain does not exist yet: apply creates it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_domain: bool,
    /// The `Domain` manifest (where it is written, and its settings): a missing domain is
    /// created with them; none, the embedded default's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_manifest: Option<DomainManifestAt>,
    /// Where the live domain differs from its `Domain` manifest (segmentctl never changes a
    /// domain): each field, as it is there and as the manifest gives it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_drift: Vec<DomainDrift>,
    pub steps: Vec<Step>,
    /// Manifests read.
    pub documents: usize,
    /// `plan --profiles`: what the audiences were counted over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<ProfilesRead>,
    /// The manifest folder, for `apply FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The domain's ARN, when known (its lease is a tag on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_arn: Option<String>,
    /// What the plan was allowed to do under campaigns (`apply FILE` plans again with it).
    #[serde(default, skip_serializing_if = "is_default_policy")]
    pub policy: CampaignPolicy,
}

/// A `Domain` manifest's settings, and where they are written (`file:line`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainManifestAt {
    pub at: String,
    pub spec: DomainSpec,
}

/// A field of the domain's settings that differs from its `Domain` manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainDrift {
    pub field: String,
    /// As the domain has it (JSON); none: unset.
    pub live: Option<Value>,
    /// As the manifest gives it (JSON); none: unset.
    pub desired: Option<Value>,
}

/// The fields of `live` that differ from `desired`, by their CreateDomain names.
fn domain_drift(live: &DomainSpec, desired: &DomainSpec) -> Vec<DomainDrift> {
    let object = |s: &DomainSpec| match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (live, desired) = (object(live), object(desired));
    let fields: BTreeSet<&String> = live.keys().chain(desired.keys()).collect();
    fields
        .into_iter()
        .filter(|f| live.get(*f) != desired.get(*f))
        .map(|f| DomainDrift {
            field: f.clone(),
            live: live.get(f).cloned(),
            desired: desired.get(f).cloned(),
        })
        .collect()
}

fn is_default_policy(p: &CampaignPolicy) -> bool {
    *p == CampaignPolicy::default()
}

impl DefinitionsPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    pub fn has_blocked(&self) -> bool {
        self.steps.iter().any(|s| !s.blocked.is_empty())
    }
    pub fn count(&self, a: Action) -> usize {
        self.steps.iter().filter(|s| s.action == a).count()
    }
}

/// The request without its tags, as a value to compare and diff.
fn body(spec: &CreateSegmentDefinitionRequest) -> Value {
    let mut s = crate::model::profiles::with_sdk_defaults(spec);
    s.tags = None;
    serde_json::to_value(&s).unwrap_or(Value::Null)
}

/// The `segmentctl:digest` of a definition: of what it is on the target, tags aside.
pub fn digest_of(spec: &CreateSegmentDefinitionRequest) -> String {
    diff::digest(&body(spec))
}

/// `<name>-<8 hex>`, at most 64 characters (names are ASCII).
pub fn derived_name(name: &str, digest: &str) -> String {
    let keep = &name[..name.len().min(MAX_NAME_IN_DERIVED)];
    format!("{keep}-{}", &digest[..digest.len().min(8)])
}

/// Every source name in a request's criteria.
fn sources(spec: &CreateSegmentDefinitionRequest) -> impl Iterator<Item = &str> {
    spec.segment_groups
        .iter()
        .flat_map(|g| g.groups.iter().flatten())
        .flat_map(|g| g.source_segments.iter().flatten())
        .filter_map(|s| s.segment_definition_name.as_deref())
}

/// What the planner works from, indexed.
struct Observed<'a> {
    by_name: BTreeMap<&'a str, &'a LiveDefinition>,
    /// Managed by this owner, by manifest name (more than one after an interrupted replace).
    managed: BTreeMap<&'a str, Vec<&'a LiveDefinition>>,
    /// Live name → the live definitions that name it as a source.
    users: BTreeMap<&'a str, Vec<&'a str>>,
    /// A definition's ARN → the campaigns whose source it is.
    campaigns: BTreeMap<&'a str, Vec<&'a LiveCampaign>>,
}

impl<'a> Observed<'a> {
    fn of(live: &'a LiveDomain, owner: &str) -> Self {
        let mut o = Observed {
            by_name: BTreeMap::new(),
            managed: BTreeMap::new(),
            users: BTreeMap::new(),
            campaigns: BTreeMap::new(),
        };
        for c in &live.campaigns {
            o.campaigns.entry(&c.segment_arn).or_default().push(c);
        }
        for d in &live.definitions {
            o.by_name.insert(&d.name, d);
            let tags = d.spec.tags.as_ref();
            let owned = tags.and_then(|t| t.get(TAG_MANAGED_BY)).map(String::as_str) == Some(owner);
            if let (true, Some(n)) = (owned, tags.and_then(|t| t.get(TAG_NAME))) {
                o.managed.entry(n.as_str()).or_default().push(d);
            }
            for s in sources(&d.spec) {
                o.users.entry(s).or_default().push(&d.name);
            }
        }
        o
    }

    /// The campaigns reading `arn` that are in use (not ended).
    fn in_use(&self, arn: &str) -> Vec<&'a LiveCampaign> {
        self.campaigns
            .get(arn)
            .into_iter()
            .flatten()
            .filter(|c| c.state.in_use())
            .copied()
            .collect()
    }

    fn owner_of(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(name)
            .and_then(|d| d.spec.tags.as_ref())
            .and_then(|t| t.get(TAG_MANAGED_BY))
            .map(String::as_str)
    }
}

/// The plan: `desired` in dependency order (bases first), the folder's `Domain` manifest,
/// `live` as read.
pub fn plan(
    desired: &[DefinitionDoc],
    domain: Option<&DomainDoc>,
    live: &LiveDomain,
    s: &Settings,
    policy: CampaignPolicy,
) -> DefinitionsPlan {
    let o = Observed::of(live, &s.owner);
    let mut p = Planner {
        o: &o,
        s,
        policy,
        final_name: BTreeMap::new(),
        taken: desired.iter().map(|d| d.name().to_string()).collect(),
        blocked: BTreeSet::new(),
        steps: Vec::new(),
        deletes: Vec::new(),
    };
    for d in desired {
        p.definition(d);
    }
    // An empty folder never prunes: it is far likelier a wrong path than a wish to delete
    // everything.
    if s.prune && !desired.is_empty() {
        p.prune(desired);
    }
    let mut steps = p.steps;
    let deletes = order_deletes(p.deletes, &steps, &o);
    steps.extend(deletes);
    DefinitionsPlan {
        format_version: FORMAT_VERSION,
        target: None,
        domain: live.name.clone(),
        create_domain: !live.present(),
        domain_manifest: domain.map(|d| DomainManifestAt {
            at: format!("{}:{}", d.file, d.line()),
            spec: d.spec().clone(),
        }),
        domain_drift: match (&live.settings, domain) {
            (Some(l), Some(d)) => domain_drift(l, &d.spec().as_live()),
            _ => Vec::new(),
        },
        steps,
        documents: desired.len() + usize::from(domain.is_some()),
        profiles: None,
        dir: None,
        domain_arn: None,
        policy,
    }
}

struct Planner<'a> {
    o: &'a Observed<'a>,
    s: &'a Settings,
    policy: CampaignPolicy,
    /// Manifest name → the definition's name on the target once the plan has run.
    final_name: BTreeMap<String, String>,
    /// Names a definition of this plan will have, or a manifest claims: a derived name
    /// is chosen among the others.
    taken: BTreeSet<String>,
    /// Manifests whose step is blocked: what builds on them is blocked too.
    blocked: BTreeSet<String>,
    steps: Vec<Step>,
    deletes: Vec<Step>,
}

impl<'a> Planner<'a> {
    /// The request to send for `d`: `Ref`s resolved, ownership tags added.
    fn request(&self, d: &DefinitionDoc) -> (CreateSegmentDefinitionRequest, String) {
        let mut spec = d.manifest.spec.clone();
        for &(g, i) in &d.refs {
            let source = spec
                .segment_groups
                .as_mut()
                .and_then(|sg| sg.groups.as_mut())
                .and_then(|gs| gs.get_mut(g))
                .and_then(|g| g.source_segments.as_mut())
                .and_then(|ss| ss.get_mut(i));
            if let Some(src) = source {
                if let Some(target) = src
                    .segment_definition_name
                    .as_ref()
                    .and_then(|r| self.final_name.get(r))
                {
                    src.segment_definition_name = Some(target.clone());
                }
            }
        }
        let digest = diff::digest(&body(&spec));
        let mut tags: Tags = spec.tags.clone().unwrap_or_default();
        tags.insert(TAG_MANAGED_BY.into(), self.s.owner.clone());
        tags.insert(TAG_NAME.into(), d.name().to_string());
        tags.insert(TAG_DIGEST.into(), digest.clone());
        if d.manifest.metadata.protect {
            tags.insert(TAG_PROTECT.into(), "true".into());
        }
        spec.tags = Some(tags);
        (spec, digest)
    }

    /// Plans `d`, then blocks its steps when a base it names is blocked or missing: nothing
    /// is created on a definition that will not be there (or is someone else's).
    fn definition(&mut self, d: &DefinitionDoc) {
        let (steps_before, deletes_before) = (self.steps.len(), self.deletes.len());
        let older = self.definition_steps(d);
        // Once the manifest's definition is known: campaigns move to it, not to a copy.
        let replacement = self.final_name.get(d.name()).cloned();
        for l in older {
            self.delete(
                l,
                "an older copy (replaced, or left by an interrupted apply)",
                false,
                replacement.as_deref(),
            );
        }
        let mut why: Vec<String> = Vec::new();
        for (_, _, n, is_ref) in d.sources() {
            if is_ref && self.blocked.contains(n) {
                why.push(format!("its base {n} is blocked"));
            } else if !is_ref && !self.o.by_name.contains_key(n) {
                why.push(format!(
                    "SourceSegments names {n}, and the domain has no definition of that name"
                ));
            }
        }
        let blocked_here = self.steps[steps_before..]
            .iter()
            .any(|s| !s.blocked.is_empty());
        if why.is_empty() && !blocked_here {
            return;
        }
        self.blocked.insert(d.name().to_string());
        for step in &mut self.steps[steps_before..] {
            step.blocked.extend(why.iter().cloned());
        }
        // A blocked replace keeps the old definition: its delete does not happen.
        self.deletes.truncate(deletes_before);
    }

    /// Plans `d`'s create, replace, tag or adopt; returns the older copies to delete.
    fn definition_steps(&mut self, d: &DefinitionDoc) -> Vec<&'a LiveDefinition> {
        let (spec, digest) = self.request(d);
        let want = body(&spec);
        let candidates: Vec<&LiveDefinition> =
            self.o.managed.get(d.name()).cloned().unwrap_or_default();
        let current = candidates
            .iter()
            .find(|l| body(&l.spec) == want)
            .or_else(|| candidates.iter().find(|l| l.name == d.name()))
            .or_else(|| candidates.first())
            .copied();
        let older: Vec<&LiveDefinition> = candidates
            .iter()
            .filter(|l| Some(l.name.as_str()) != current.map(|c| c.name.as_str()))
            .copied()
            .collect();
        let Some(live) = current else {
            match d.manifest.metadata.adopt.as_deref() {
                Some(target) => self.adopt(d, target, spec, digest),
                None => self.create(d, spec),
            }
            return older;
        };
        let had = body(&live.spec);
        if had == want {
            self.final_name.insert(d.name().into(), live.name.clone());
            let tags = TagChange::between(
                live.spec.tags.as_ref().unwrap_or(&Tags::new()),
                spec.tags.as_ref().unwrap_or(&Tags::new()),
            );
            if !tags.is_empty() {
                let mut step = Step::new(Action::Tag, d.name());
                step.live_name = Some(live.name.clone());
                step.arn = Some(live.arn.clone());
                step.tag_changes = tags;
                self.steps.push(step);
            }
            return older;
        }
        self.replace(d, live, spec, digest, &had, &want);
        older
    }

    /// `metadata.adopt: target`: the unmanaged definition `target` becomes this manifest's,
    /// tagged as it is when it matches, else replaced.
    fn adopt(
        &mut self,
        d: &DefinitionDoc,
        target: &str,
        spec: CreateSegmentDefinitionRequest,
        digest: String,
    ) {
        let mut step = Step::new(Action::Adopt, d.name());
        step.live_name = Some(target.to_string());
        let Some(live) = self.o.by_name.get(target).copied() else {
            step.blocked.push(format!(
                "there is no definition named {target} to adopt in this domain"
            ));
            self.steps.push(step);
            return;
        };
        step.arn = Some(live.arn.clone());
        if let Some(owner) = self.o.owner_of(target) {
            step.blocked.push(if owner == self.s.owner {
                format!("{target} is already managed by this owner, under another manifest name")
            } else {
                format!(
                    "{target} is managed by the owner {owner}, not {}",
                    self.s.owner
                )
            });
            self.steps.push(step);
            return;
        }
        let had = body(&live.spec);
        let want = body(&spec);
        if had == want {
            self.final_name.insert(d.name().into(), live.name.clone());
            step.tag_changes = TagChange::between(
                live.spec.tags.as_ref().unwrap_or(&Tags::new()),
                spec.tags.as_ref().unwrap_or(&Tags::new()),
            );
            self.steps.push(step);
            return;
        }
        self.replace(d, live, spec, digest, &had, &want);
        if let Some(last) = self.steps.last_mut() {
            last.adopted = true;
        }
    }

    fn create(&mut self, d: &DefinitionDoc, spec: CreateSegmentDefinitionRequest) {
        let name = d.name().to_string();
        let mut step = Step::new(Action::Create, d.name());
        if self.o.by_name.contains_key(name.as_str()) {
            // The manifest's name is taken by a definition this owner does not manage.
            let owner = self.o.owner_of(&name);
            step.blocked.push(match owner {
                Some(o) if o == self.s.owner => format!(
                    "a definition named {name} exists, managed by this owner for another manifest; rename this manifest"
                ),
                Some(o) => format!(
                    "a definition named {name} exists, managed by the owner {o}, not {}",
                    self.s.owner
                ),
                None => format!(
                    "a definition named {name} exists and is not managed by segmentctl; take it over with metadata.adopt: {name}, rename the manifest, or delete that definition"
                ),
            });
        }
        step.new_name = Some(name.clone());
        step.spec = Some(spec);
        self.final_name.insert(d.name().into(), name);
        self.steps.push(step);
    }

    fn replace(
        &mut self,
        d: &DefinitionDoc,
        live: &LiveDefinition,
        spec: CreateSegmentDefinitionRequest,
        digest: String,
        had: &Value,
        want: &Value,
    ) {
        let mut step = Step::new(Action::Replace, d.name());
        step.live_name = Some(live.name.clone());
        step.arn = Some(live.arn.clone());
        step.changes = diff::diff(had, want);
        step.drift = live
            .spec
            .tags
            .as_ref()
            .and_then(|t| t.get(TAG_DIGEST))
            .is_some_and(|recorded| *recorded != diff::digest(had));
        let users: Vec<String> = self
            .o
            .users
            .get(live.name.as_str())
            .map(|u| u.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let home_free = live.name == d.name() || !self.o.by_name.contains_key(d.name());
        // A campaign in use reads it by ARN: it is never absent under a campaign, so it is
        // created beside it, and the campaign re-pointed (when asked) before it goes.
        let in_use = self.o.in_use(&live.arn);
        let new_name = if users.is_empty() && home_free && in_use.is_empty() {
            step.replacement = Some(Replacement::InPlace);
            d.name().to_string()
        } else {
            step.replacement = Some(Replacement::Renamed);
            step.dependants = users;
            let new = self.free_name(d.name(), &digest);
            if !in_use.is_empty() {
                step.campaigns = in_use.iter().map(|c| CampaignUse::of(c)).collect();
                if !self.policy.repoint && !self.policy.allow_delete_in_use {
                    step.blocked.push(format!(
                        "{} {} {}: re-created as {new}, it would stay on the old definition, which is then deleted; --repoint-campaigns re-points it to {new} first, --allow-delete-in-use deletes the old one anyway",
                        campaigns_named(&in_use),
                        reads(&in_use),
                        live.name
                    ));
                }
            }
            self.delete(live, &format!("replaced by {new}"), false, Some(&new));
            if let Some(old) = self.deletes.last_mut() {
                old.name = d.name().to_string();
            }
            new
        };
        step.new_name = Some(new_name.clone());
        step.spec = Some(spec);
        self.final_name.insert(d.name().into(), new_name);
        self.steps.push(step);
    }

    /// A derived name for `name` with content `digest`, free in the domain and in this
    /// plan: `<name>-<8 hex>` of the name and the content (so two long names that share
    /// their first 55 characters differ), another suffix while it is taken.
    fn free_name(&mut self, name: &str, digest: &str) -> String {
        let mut attempt = 0u64;
        loop {
            let suffix = diff::digest(&serde_json::json!([name, digest, attempt]));
            let candidate = derived_name(name, &suffix);
            if !self.o.by_name.contains_key(candidate.as_str())
                && self.taken.insert(candidate.clone())
            {
                return candidate;
            }
            attempt += 1;
        }
    }

    /// Deletes of managed definitions whose manifest is gone, unless protected; all of
    /// them blocked when they are more than `max_delete_percent` of the managed ones.
    fn prune(&mut self, desired: &[DefinitionDoc]) {
        let wanted: BTreeSet<&str> = desired.iter().map(DefinitionDoc::name).collect();
        let managed = self.o.managed.len();
        let gone: Vec<&LiveDefinition> = self
            .o
            .managed
            .iter()
            .filter(|(name, _)| !wanted.contains(*name))
            .flat_map(|(_, lives)| lives.iter().copied())
            .collect();
        let names = self
            .o
            .managed
            .keys()
            .filter(|n| !wanted.contains(*n))
            .count();
        let too_many =
            managed > 0 && names as f64 * 100.0 / managed as f64 > self.s.max_delete_percent;
        for l in gone {
            self.delete(l, "its manifest is gone (prune)", true, None);
            if too_many {
                if let Some(last) = self.deletes.last_mut() {
                    last.blocked.push(format!(
                        "the plan would delete {names} of {managed} managed definitions, more than max_delete_percent ({}%); raise it in segmentctl.yaml if this is meant",
                        self.s.max_delete_percent
                    ));
                }
            }
        }
    }

    /// A delete of `l`; `replacement` is the definition that takes its place, if any (a
    /// campaign in use may be re-pointed to it).
    fn delete(
        &mut self,
        l: &LiveDefinition,
        cause: &str,
        protect_applies: bool,
        replacement: Option<&str>,
    ) {
        let tags = l.spec.tags.as_ref();
        let mut step = Step::new(
            Action::Delete,
            tags.and_then(|t| t.get(TAG_NAME))
                .map(String::as_str)
                .unwrap_or(&l.name),
        );
        step.live_name = Some(l.name.clone());
        step.arn = Some(l.arn.clone());
        step.cause = Some(cause.to_string());
        if protect_applies
            && tags
                .and_then(|t| t.get(TAG_PROTECT))
                .is_some_and(|v| v == "true")
        {
            step.blocked
                .push("protected (segmentctl:protect): remove metadata.protect first".into());
        }
        self.guard_campaigns(&mut step, l, replacement);
        self.deletes.push(step);
    }

    /// The campaign guard of a delete: a campaign in use blocks it unless it is re-pointed to
    /// the replacement first (`--repoint-campaigns`) or the delete is allowed anyway
    /// (`--allow-delete-in-use`); an ended one is named in a warning.
    fn guard_campaigns(&self, step: &mut Step, l: &LiveDefinition, replacement: Option<&str>) {
        for c in self.o.campaigns.get(l.arn.as_str()).into_iter().flatten() {
            if !c.state.in_use() {
                step.warnings.push(format!(
                    "the campaign {} (id {}, {}) names it, and will name a deleted definition",
                    c.name, c.id, c.state
                ));
            }
        }
        let in_use = self.o.in_use(&l.arn);
        if in_use.is_empty() {
            return;
        }
        step.campaigns = in_use.iter().map(|c| CampaignUse::of(c)).collect();
        let named = campaigns_named(&in_use);
        let verb = reads(&in_use);
        match replacement {
            Some(to) if self.policy.repoint => step.repoint_to = Some(to.to_string()),
            _ if self.policy.allow_delete_in_use => step.warnings.push(format!(
                "{named} {verb} it: deleted anyway (--allow-delete-in-use), the campaign is left naming a deleted definition"
            )),
            Some(to) => step.blocked.push(format!(
                "{named} {verb} it: --repoint-campaigns re-points it to {to} first, --allow-delete-in-use deletes it anyway"
            )),
            None => step.blocked.push(format!(
                "{named} {verb} it: point the campaign at another segment first, or --allow-delete-in-use deletes it anyway"
            )),
        }
    }
}

/// Deletes run after every create, the users of a definition before it. A delete is
/// blocked while anything that stays names the definition: a live one not deleted (or
/// whose delete is blocked), one replaced in place (by its new sources), or one this plan
/// creates; until no more are blocked.
fn order_deletes(mut deletes: Vec<Step>, before: &[Step], o: &Observed<'_>) -> Vec<Step> {
    loop {
        let going: BTreeSet<String> = deletes
            .iter()
            .filter(|d| d.blocked.is_empty())
            .filter_map(|d| d.live_name.clone())
            .collect();
        let rewritten: BTreeSet<&str> = before
            .iter()
            .filter(|s| s.blocked.is_empty() && s.replacement == Some(Replacement::InPlace))
            .filter_map(|s| s.live_name.as_deref())
            .collect();
        // Who names what once the plan has run.
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, live) in &o.by_name {
            if going.contains(*name) || rewritten.contains(name) {
                continue;
            }
            for src in sources(&live.spec) {
                users
                    .entry(src.to_string())
                    .or_default()
                    .push(name.to_string());
            }
        }
        for s in before.iter().filter(|s| s.blocked.is_empty()) {
            let Some(spec) = &s.spec else { continue };
            let who = s.new_name.clone().unwrap_or_else(|| s.name.clone());
            for src in sources(spec) {
                users.entry(src.to_string()).or_default().push(who.clone());
            }
        }
        let mut changed = false;
        for d in deletes.iter_mut().filter(|d| d.blocked.is_empty()) {
            let Some(name) = d.live_name.as_deref() else {
                continue;
            };
            if let Some(kept) = users.get(name) {
                d.blocked.push(format!(
                    "still used by {}: not deleted while a definition names it in SourceSegments",
                    kept.join(", ")
                ));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Users first: repeatedly take a delete that no remaining delete's definition builds on.
    let mut out = Vec::new();
    while !deletes.is_empty() {
        let remaining: BTreeSet<String> =
            deletes.iter().filter_map(|d| d.live_name.clone()).collect();
        let i = deletes
            .iter()
            .position(|d| {
                let name = d.live_name.as_deref().unwrap_or("");
                !o.users
                    .get(name)
                    .into_iter()
                    .flatten()
                    .any(|u| remaining.contains(*u) && *u != name)
            })
            .unwrap_or(0);
        out.push(deletes.remove(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::manifest::{load_sources, Source};

    fn docs(yaml: &str) -> Vec<DefinitionDoc> {
        let loaded = load_sources(&[Source {
            name: "d.yaml".into(),
            bytes: std::sync::Arc::new(yaml.as_bytes().to_vec()),
        }]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        crate::manifests::definitions::build(&loaded.definitions).unwrap()
    }

    fn manifest(name: &str, country: &str, extra: &str) -> String {
        format!("apiVersion: segmentctl/v1\nkind: SegmentDefinition\nmetadata: {{name: {name}{extra}}}\nspec:\n  DisplayName: {name}\n  SegmentGroups: {{Groups: [{{Dimensions: [{{ProfileAttributes: {{Address: {{Country: {{DimensionType: INCLUSIVE, Values: [{country}]}}}}}}}}]}}]}}\n---\n")
    }

    fn settings(prune: bool) -> Settings {
        Settings {
            owner: "team-a".into(),
            prune,
            max_delete_percent: 100.0,
        }
    }

    /// The domain as a first apply of `desired` leaves it.
    fn applied(desired: &[DefinitionDoc]) -> LiveDomain {
        let p = plan(
            desired,
            None,
            &LiveDomain::default(),
            &settings(false),
            CampaignPolicy::default(),
        );
        LiveDomain {
            name: "shop".into(),
            settings: Some(DomainSpec::default()),
            definitions: p
                .steps
                .iter()
                .map(|s| LiveDefinition {
                    name: s.new_name.clone().unwrap(),
                    arn: format!("arn:{}", s.name),
                    spec: with_sdk_defaults_kept(s.spec.clone().unwrap()),
                    created_at: 0,
                })
                .collect(),
            campaigns: Vec::new(),
        }
    }

    fn with_sdk_defaults_kept(s: CreateSegmentDefinitionRequest) -> CreateSegmentDefinitionRequest {
        crate::model::profiles::with_sdk_defaults(&s)
    }

    #[test]
    fn a_derived_name_fits_the_api_limit() {
        let long = "a".repeat(64);
        let n = derived_name(&long, "0123456789abcdef");
        assert_eq!(n.len(), 64);
        assert!(n.ends_with("-01234567"));
        assert_eq!(derived_name("gold", "0123456789abcdef"), "gold-01234567");
    }

    #[test]
    fn an_applied_folder_plans_nothing_and_a_tag_is_only_tagged() {
        let desired = docs(&manifest("us", "US", ""));
        let mut live = applied(&desired);
        assert!(plan(
            &desired,
            None,
            &live,
            &settings(false),
            CampaignPolicy::default()
        )
        .is_empty());
        live.definitions[0]
            .spec
            .tags
            .as_mut()
            .unwrap()
            .insert("team".into(), "x".into());
        let p = plan(
            &desired,
            None,
            &live,
            &settings(false),
            CampaignPolicy::default(),
        );
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].action, Action::Tag);
        assert_eq!(p.steps[0].tag_changes.remove, ["team"]);
    }

    #[test]
    fn a_second_copy_is_deleted_and_a_protected_definition_is_not() {
        let desired = docs(&(manifest("us", "US", "") + &manifest("ca", "CA", ", protect: true")));
        let mut live = applied(&desired);
        // An interrupted replace left the old `us` beside a new one.
        let mut old = live
            .definitions
            .iter()
            .find(|d| d.name == "us")
            .unwrap()
            .clone();
        old.name = "us-old".into();
        old.spec.display_name = "before".into();
        live.definitions.push(old);
        let only_us = docs(&manifest("us", "US", ""));
        let p = plan(
            &only_us,
            None,
            &live,
            &settings(true),
            CampaignPolicy::default(),
        );
        let deletes: Vec<(&str, bool)> = p
            .steps
            .iter()
            .map(|s| (s.live_name.as_deref().unwrap(), s.blocked.is_empty()))
            .collect();
        assert_eq!(deletes, [("us-old", true), ("ca", false)], "{p:#?}");
        assert!(p.steps.iter().all(|s| s.action == Action::Delete));
    }

    /// A manifest whose only group builds on `sources` (`Ref: x`, or `Name: x` for a
    /// definition named on the target).
    fn user(name: &str, sources: &[&str], extra: &str) -> String {
        let list: Vec<String> = sources
            .iter()
            .map(|s| match s.strip_prefix("Name: ") {
                Some(n) => format!("{{SegmentDefinitionName: {n}}}"),
                None => format!("{{Ref: {s}}}"),
            })
            .collect();
        format!("apiVersion: segmentctl/v1\nkind: SegmentDefinition\nmetadata: {{name: {name}{extra}}}\nspec:\n  DisplayName: {name}\n  SegmentGroups: {{Groups: [{{SourceSegments: [{}]}}]}}\n---\n", list.join(", "))
    }

    fn blocked(p: &DefinitionsPlan) -> Vec<(Action, String, bool)> {
        p.steps
            .iter()
            .map(|s| {
                (
                    s.action,
                    s.live_name.clone().unwrap_or_else(|| s.name.clone()),
                    !s.blocked.is_empty(),
                )
            })
            .collect()
    }

    #[test]
    fn a_definition_is_never_deleted_while_something_that_stays_names_it() {
        // A protected user of a pruned base keeps it.
        let before =
            docs(&(manifest("base", "US", "") + &user("mid", &["base"], ", protect: true")));
        let live = applied(&before);
        let p = plan(
            &docs(&manifest("other", "JP", "")),
            None,
            &live,
            &settings(true),
            CampaignPolicy::default(),
        );
        assert_eq!(
            blocked(&p),
            [
                (Action::Create, "other".into(), false),
                (Action::Delete, "mid".into(), true),
                (Action::Delete, "base".into(), true),
            ],
            "{p:#?}"
        );
        // A definition this plan creates names one its prune would delete.
        let before = docs(&(manifest("gone", "US", "") + &manifest("keep", "FR", "")));
        let live = applied(&before);
        let now = docs(&(manifest("keep", "FR", "") + &user("nu", &["Name: gone"], "")));
        let p = plan(
            &now,
            None,
            &live,
            &settings(true),
            CampaignPolicy::default(),
        );
        assert_eq!(
            blocked(&p),
            [
                (Action::Create, "nu".into(), false),
                (Action::Delete, "gone".into(), true)
            ]
        );
    }

    #[test]
    fn what_builds_on_a_blocked_or_missing_base_is_blocked() {
        let mut live = LiveDomain {
            name: "shop".into(),
            settings: Some(DomainSpec::default()),
            definitions: Vec::new(),
            campaigns: Vec::new(),
        };
        let theirs = applied(&docs(&manifest("vip", "ZZ", ""))).definitions[0].clone();
        let mut theirs = theirs;
        theirs.spec.tags = None;
        live.definitions.push(theirs);
        let desired = docs(
            &(manifest("vip", "US", "")
                + &user("vip-eu", &["vip"], "")
                + &user("typo", &["Name: vpi"], "")),
        );
        let p = plan(
            &desired,
            None,
            &live,
            &settings(false),
            CampaignPolicy::default(),
        );
        assert_eq!(
            blocked(&p),
            [
                (Action::Create, "typo".into(), true),
                (Action::Create, "vip".into(), true),
                (Action::Create, "vip-eu".into(), true),
            ],
            "{p:#?}"
        );
        assert!(p.steps[2]
            .blocked
            .iter()
            .any(|b| b == "its base vip is blocked"));
    }

    #[test]
    fn an_empty_folder_never_prunes_and_a_large_prune_is_blocked() {
        let all = docs(
            &(manifest("a", "US", "")
                + &manifest("b", "US", "")
                + &manifest("c", "US", "")
                + &manifest("d", "US", "")),
        );
        let live = applied(&all);
        assert!(plan(&[], None, &live, &settings(true), CampaignPolicy::default()).is_empty());
        let mut half = settings(true);
        half.max_delete_percent = 50.0;
        let p = plan(
            &docs(&manifest("a", "US", "")),
            None,
            &live,
            &half,
            CampaignPolicy::default(),
        );
        assert_eq!(p.count(Action::Delete), 3);
        assert!(p.steps.iter().all(|s| s.blocked.len() == 1), "{p:#?}");
        assert!(p.steps[0].blocked[0].contains("3 of 4 managed definitions"));
    }

    #[test]
    fn a_derived_name_is_one_nothing_holds() {
        let before = docs(&(manifest("base", "US", "") + &user("u", &["base"], "")));
        let mut live = applied(&before);
        let changed = docs(&(manifest("base", "US, CA", "") + &user("u", &["base"], "")));
        let first = plan(
            &changed,
            None,
            &live,
            &settings(true),
            CampaignPolicy::default(),
        );
        let derived = first.steps[0].new_name.clone().unwrap();
        assert!(derived.starts_with("base-"), "{first:#?}");
        // Someone else holds that name now: another is chosen.
        let mut squatter = live.definitions[0].clone();
        squatter.name = derived.clone();
        squatter.spec.tags = None;
        live.definitions.push(squatter);
        let second = plan(
            &changed,
            None,
            &live,
            &settings(true),
            CampaignPolicy::default(),
        );
        let other = second.steps[0].new_name.clone().unwrap();
        assert!(
            other.starts_with("base-") && other != derived,
            "{second:#?}"
        );
    }

    #[test]
    fn an_older_copy_of_a_protected_definition_is_deleted() {
        let desired = docs(&manifest("base", "US", ", protect: true"));
        let mut live = applied(&desired);
        let mut old = live.definitions[0].clone();
        old.name = "base-0000000a".into();
        old.spec.display_name = "before".into();
        live.definitions.push(old);
        let p = plan(
            &desired,
            None,
            &live,
            &settings(false),
            CampaignPolicy::default(),
        );
        assert_eq!(
            blocked(&p),
            [(Action::Delete, "base-0000000a".into(), false)]
        );
    }

    #[test]
    fn a_missing_domain_is_created_as_its_manifest_gives_and_an_existing_one_is_only_compared() {
        let loaded = load_sources(&[Source {
            name: "domain.yaml".into(),
            bytes: std::sync::Arc::new(
                b"# the domain\napiVersion: segmentctl/v1\nkind: Domain\nspec: {DefaultExpirationDays: 30, Tags: {team: growth}}\n".to_vec(),
            ),
        }]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let domain = &loaded.domains[0];
        let missing = LiveDomain {
            name: "shop".into(),
            ..Default::default()
        };
        let plan_on =
            |live: &LiveDomain| plan(&[], Some(domain), live, &settings(true), Default::default());
        let p = plan_on(&missing);
        assert!(p.create_domain);
        let DomainManifestAt { at, spec } = p.domain_manifest.clone().unwrap();
        assert_eq!(at, "domain.yaml:2");
        assert_eq!(spec.default_expiration_days, 30);
        assert!(p.domain_drift.is_empty());

        // An existing domain is never changed: where it differs is said, field by field.
        let live = LiveDomain {
            name: "shop".into(),
            settings: Some(DomainSpec {
                default_expiration_days: 366,
                dead_letter_queue_url: Some("https://sqs/q".into()),
                tags: spec.tags.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = plan_on(&live);
        assert!(!p.create_domain && p.is_empty());
        let drift: Vec<_> = p
            .domain_drift
            .iter()
            .map(|d| (d.field.as_str(), d.live.clone(), d.desired.clone()))
            .collect();
        assert_eq!(
            drift,
            [
                (
                    "DeadLetterQueueUrl",
                    Some(serde_json::json!("https://sqs/q")),
                    None
                ),
                (
                    "DefaultExpirationDays",
                    Some(serde_json::json!(366)),
                    Some(serde_json::json!(30))
                ),
            ]
        );
        // Without a Domain manifest, nothing is compared.
        let p = plan(&[], None, &live, &settings(true), CampaignPolicy::default());
        assert!(p.domain_drift.is_empty() && p.domain_manifest.is_none());
    }
}
