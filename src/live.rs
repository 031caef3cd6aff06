//! The observed state as plain data: what the target holds, as the planner reads it. Filled
//! by `observe`, read by `plan`, so that the planner stays pure and knows nothing of I/O.

use std::collections::BTreeMap;

use crate::desired::AppKey;
use crate::model::{SegmentResponse, Tags};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveApp {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub tags: Tags,
    pub creation_date: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveCampaign {
    pub id: String,
    pub name: String,
    pub segment_id: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveJourney {
    pub id: String,
    pub name: String,
    pub state: String,
    pub segment_ids: Vec<String>,
}

/// One application as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSnapshot {
    pub app: LiveApp,
    pub segments: Vec<SegmentResponse>,
    pub campaigns: Vec<LiveCampaign>,
    pub journeys: Vec<LiveJourney>,
}

/// What an application of the plan looks like live.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveState {
    /// Found, with everything in it.
    Found(AppSnapshot),
    /// Declared by an Application manifest and not found: it will be created.
    Missing,
    /// It cannot be planned (an application id that does not exist, ...).
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Every application the plan considers: those in the manifests, and those that hold
    /// segments managed by this owner.
    pub apps: BTreeMap<AppKey, LiveState>,
}

/// Whether a tag set marks an object as managed by `owner`, and under which name.
pub fn managed_name<'a>(tags: Option<&'a Tags>, owner: &str) -> Option<&'a str> {
    let tags = tags?;
    (tags.get(crate::TAG_MANAGED_BY).map(String::as_str) == Some(owner))
        .then(|| tags.get(crate::TAG_NAME).map(String::as_str))
        .flatten()
}

/// The order in which objects claiming the same name are preferred: the oldest first (by
/// creation date, then id). Every reader that must pick one of several claimants (the
/// planner keeping one duplicate, the executor finding what an unanswered create made)
/// uses this one rule, so that all of them, in every process, agree.
pub fn claim_order<'a>(creation_date: &'a str, id: &'a str) -> (&'a str, &'a str) {
    (creation_date, id)
}
