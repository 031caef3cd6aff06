//! Phase 5 of an application's plan: the reasons each deletion must not happen, and the
//! order of deletions (a segment after the deleted segments that build on it).

use std::collections::BTreeSet;

use super::{BlockReason, SegmentStep, Settings, Warning};
use crate::model::{SegmentResponse, ACTIVE_CAMPAIGN_STATUSES, LIVE_JOURNEY_STATES};
use crate::plan::live::{managed_name, AppSnapshot};
use crate::TAG_PROTECT;

/// The ids of the segments `seg` builds on.
fn bases_of(seg: &SegmentResponse) -> BTreeSet<&str> {
    seg.segment_groups
        .iter()
        .flat_map(|g| g.groups.iter().flatten())
        .flat_map(|g| g.source_segments.iter().flatten())
        .filter_map(|r| r.id.as_deref())
        .collect()
}

pub(super) fn guard_deletes(
    deletes: &mut Vec<SegmentStep>,
    snap: &AppSnapshot,
    managed: usize,
    desired_empty: bool,
    st: &Settings,
) {
    if deletes.is_empty() {
        return;
    }
    let deleting: BTreeSet<String> = deletes
        .iter()
        .filter_map(|d| d.segment_id.clone())
        .collect();
    let wanted_deletes = deletes.iter().filter(|d| !d.is_duplicate()).count();
    for step in deletes.iter_mut() {
        let id = step.segment_id.clone().unwrap_or_default();
        protection(step, snap, &id);
        users(step, snap, &id);
        dependents(step, snap, &id, &deleting, st);
        if !step.is_duplicate() {
            mass_deletion(step, managed, wanted_deletes, desired_empty, st);
        }
    }
    order_deletes(deletes);
    propagate(deletes);
}

/// A segment stays when a deleted segment built on it is blocked: its delete is blocked too
/// (deletes are in order, dependents first, so one pass reaches every level).
fn propagate(deletes: &mut [SegmentStep]) {
    for i in 0..deletes.len() {
        let blocked_dependents: Vec<BlockReason> = deletes[i]
            .delete_after
            .iter()
            .filter_map(|id| {
                deletes[..i]
                    .iter()
                    .find(|d| d.segment_id.as_ref() == Some(id) && d.is_blocked())
            })
            .map(|d| BlockReason::DependentBlocked {
                segment_id: d.segment_id.clone().unwrap_or_default(),
                name: d.name.clone(),
                liftable: d.only_in_use_blocks(),
            })
            .collect();
        deletes[i].blocked.extend(blocked_dependents);
    }
}

fn protection(step: &mut SegmentStep, snap: &AppSnapshot, id: &str) {
    let protected = snap
        .segments
        .iter()
        .find(|s| s.id == id)
        .and_then(|s| s.tags.as_ref())
        .and_then(|t| t.get(TAG_PROTECT))
        .is_some_and(|v| v == "true");
    if protected {
        step.blocked.push(BlockReason::Protected);
    }
}

/// Campaigns and journeys: active ones block, the others are named in a warning.
fn users(step: &mut SegmentStep, snap: &AppSnapshot, id: &str) {
    for c in snap.campaigns.iter().filter(|c| c.segment_id == id) {
        if ACTIVE_CAMPAIGN_STATUSES.contains(&c.status.as_str()) {
            step.blocked.push(BlockReason::CampaignUses {
                campaign: c.name.clone(),
                campaign_id: c.id.clone(),
                status: c.status.clone(),
            });
        } else {
            step.warnings.push(Warning::CampaignWillShowDeleted {
                campaign: c.name.clone(),
                status: c.status.clone(),
            });
        }
    }
    for j in snap
        .journeys
        .iter()
        .filter(|j| j.segment_ids.iter().any(|s| s == id))
    {
        if LIVE_JOURNEY_STATES.contains(&j.state.as_str()) {
            step.blocked.push(BlockReason::JourneyUses {
                journey: j.name.clone(),
                journey_id: j.id.clone(),
                state: j.state.clone(),
            });
        } else {
            step.warnings.push(Warning::JourneyRefers {
                journey: j.name.clone(),
                state: j.state.clone(),
            });
        }
    }
}

/// Segments built on this one: deleted too (then this one goes after them), or a block.
fn dependents(
    step: &mut SegmentStep,
    snap: &AppSnapshot,
    id: &str,
    deleting: &BTreeSet<String>,
    st: &Settings,
) {
    for other in snap
        .segments
        .iter()
        .filter(|s| s.id != id && bases_of(s).contains(id))
    {
        if deleting.contains(&other.id) {
            step.delete_after.push(other.id.clone());
        } else {
            let managed_as = managed_name(other.tags.as_ref(), &st.owner).map(str::to_string);
            step.blocked.push(BlockReason::BuiltOn {
                segment_id: other.id.clone(),
                title: managed_as
                    .is_none()
                    .then(|| other.name.clone().unwrap_or_default()),
                managed_as,
            });
        }
    }
}

/// The guards against deleting much at once: an empty desired set never prunes, and no plan
/// deletes more than `max_delete_percent` of an application's managed segments.
fn mass_deletion(
    step: &mut SegmentStep,
    managed: usize,
    deleting: usize,
    desired_empty: bool,
    st: &Settings,
) {
    if desired_empty {
        step.blocked
            .push(BlockReason::NoSegmentsDeclared { managed });
    } else if managed > 0 && (deleting as f64) * 100.0 / (managed as f64) > st.max_delete_percent {
        step.blocked.push(BlockReason::TooManyDeletes {
            deleting,
            managed,
            limit_percent: st.max_delete_percent,
        });
    }
}

/// Dependents first: a segment is deleted after every deleted segment built on it.
fn order_deletes(deletes: &mut Vec<SegmentStep>) {
    let mut ordered: Vec<SegmentStep> = Vec::with_capacity(deletes.len());
    let mut remaining: Vec<SegmentStep> = std::mem::take(deletes);
    while !remaining.is_empty() {
        let done: BTreeSet<String> = ordered
            .iter()
            .filter_map(|s| s.segment_id.clone())
            .collect();
        let pos = remaining
            .iter()
            .position(|s| s.delete_after.iter().all(|d| done.contains(d)))
            .unwrap_or(0);
        ordered.push(remaining.remove(pos));
    }
    *deletes = ordered;
}
