//! Audience impact of a plan: every created, updated or deleted segment counted over
//! endpoint records twice, as it is live and as the manifests want it, with a warning when
//! a segment becomes empty or its audience moves by more than the configured share.
//!
//! Both sides are evaluated in one pass over the file. The live side resolves base segments
//! by id among the live segments; the desired side by manifest name, and ids of segments
//! segmentctl does not manage among the live ones.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::audience::evaluate::{Catalog, NodeId, Program};
use crate::audience::records::{self, Tally};
use crate::manifests::desired::{DesiredApp, DesiredState};
use crate::model::WriteSegmentRequest;
use crate::plan::live::{managed_name, LiveState, Observed};
use crate::plan::{Action, Affected, Audience, AudienceSource, Plan};
use crate::text::endpoints_text;
use crate::text::thousands;

/// The key under which a live segment is known to the evaluator (manifest names cannot
/// contain `:`).
fn live_key(id: &str) -> String {
    format!("id:{id}")
}

/// Which nodes give a step's (or an affected segment's) audience before and after.
struct Sides {
    app: usize,
    what: Counted,
    before: Option<NodeId>,
    after: Option<NodeId>,
}

enum Counted {
    /// The step at this index.
    Step(usize),
    /// A segment without a step that builds on changed ones.
    Affected {
        name: String,
        segment_id: String,
        through: Vec<String>,
    },
}

/// A live segment: its id, definition, and manifest name when this owner manages it.
type LiveSegment = (String, WriteSegmentRequest, Option<String>);

/// The application as it is live (segments by id), and as it will be after the plan:
/// managed segments as their manifests say, others as they are live.
fn catalogs<'d>(
    live: &'d [LiveSegment],
    wanted: Option<&'d DesiredApp>,
) -> (Catalog<'d>, Catalog<'d>) {
    let wanted_names: Vec<&str> = wanted
        .map(|d| d.segments.iter().map(|s| s.name.as_str()).collect())
        .unwrap_or_default();
    let mut before = Catalog::default();
    let mut after = Catalog::default();
    for (id, def, name) in live {
        before.segments.insert(live_key(id), def);
        before.key_of_id.insert(id.clone(), live_key(id));
        match name.as_deref().filter(|n| wanted_names.contains(n)) {
            Some(n) => {
                after.key_of_id.insert(id.clone(), n.to_string());
            }
            None => {
                after.segments.insert(live_key(id), def);
                after.key_of_id.insert(id.clone(), live_key(id));
            }
        }
    }
    for s in wanted.iter().flat_map(|d| &d.segments) {
        after.segments.insert(s.name.clone(), &s.spec);
    }
    (before, after)
}

/// Compiles the two sides of every step that changes a definition.
fn compile(
    plan: &Plan,
    desired: &DesiredState,
    observed: &Observed,
    program: &mut Program,
) -> Vec<Sides> {
    let mut sides = Vec::new();
    for (a, app) in plan.apps.iter().enumerate() {
        let key = app.key();
        let live: Vec<LiveSegment> = match observed.apps.get(&key) {
            Some(LiveState::Found(snap)) => snap
                .segments
                .iter()
                .map(|s| {
                    let name = managed_name(s.tags.as_ref(), &plan.owner).map(str::to_string);
                    (s.id.clone(), s.definition(), name)
                })
                .collect(),
            _ => Vec::new(),
        };
        let wanted = desired.apps.iter().find(|d| d.key == key);
        let (mut before, mut after) = catalogs(&live, wanted);
        // Imported segments hold what their file holds (the reconciler cannot read a live
        // segment's members): the manifest's file on both sides; a live IMPORT segment no
        // manifest here names holds nobody known.
        if let Some(w) = wanted {
            let (members, _) = crate::audience::sources::members_by_name(w);
            for (id, _, name) in &live {
                if let Some(m) = name.as_ref().and_then(|n| members.get(n)) {
                    before.imported.insert(live_key(id), m.clone());
                }
            }
            for (name, m) in members {
                after.segments.remove(&name);
                after.imported.insert(name, m);
            }
        }
        if let Some(LiveState::Found(snap)) = observed.apps.get(&key) {
            for s in snap.segments.iter().filter(|s| s.is_import()) {
                before.imported.entry(live_key(&s.id)).or_default();
                if after.segments.contains_key(&live_key(&s.id)) {
                    after.segments.remove(&live_key(&s.id));
                    after.imported.entry(live_key(&s.id)).or_default();
                }
            }
        }
        let (scope_before, scope_after) = (2 * a, 2 * a + 1);
        // Segments whose definition changes, each with the changed segments it stands for
        // (itself); then those that build on them, with the changed segments they build on.
        // Manifests come in dependency order, so one pass reaches every level.
        let mut changed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for step in app.steps.iter().filter(|s| s.action != Action::Tag) {
            changed.insert(&step.name, vec![step.name.clone()]);
        }
        for seg in wanted.iter().flat_map(|d| &d.segments) {
            if changed.contains_key(seg.name.as_str()) {
                continue;
            }
            let mut through: Vec<String> = seg
                .depends_on
                .iter()
                .filter_map(|dep| changed.get(dep.as_str()))
                .flatten()
                .cloned()
                .collect();
            if through.is_empty() {
                continue;
            }
            through.sort();
            through.dedup();
            let live_id = live
                .iter()
                .find(|(_, _, n)| n.as_deref() == Some(seg.name.as_str()))
                .map(|(id, _, _)| id.clone());
            if let Some(id) = live_id {
                sides.push(Sides {
                    app: a,
                    what: Counted::Affected {
                        name: seg.name.clone(),
                        segment_id: id.clone(),
                        through: through.clone(),
                    },
                    before: Some(program.add(scope_before, &before, &live_key(&id))),
                    after: Some(program.add(scope_after, &after, &seg.name)),
                });
            }
            changed.insert(&seg.name, through);
        }
        for (i, step) in app.steps.iter().enumerate() {
            if step.action == Action::Tag {
                continue; // the definition stays as it is
            }
            let before_node = (step.action != Action::Create)
                .then_some(step.segment_id.as_deref())
                .flatten()
                .map(|id| program.add(scope_before, &before, &live_key(id)));
            let after_node = (step.action != Action::Delete)
                .then(|| program.add(scope_after, &after, &step.name));
            sides.push(Sides {
                app: a,
                what: Counted::Step(i),
                before: before_node,
                after: after_node,
            });
        }
    }
    sides
}

/// What an audience change deserves a warning for, if anything.
pub fn assess(before: Option<u64>, after: Option<u64>, warn_percent: f64) -> Audience {
    let change_percent = match (before, after) {
        (Some(b), Some(a)) if b > 0 => Some((a as f64 - b as f64) * 100.0 / b as f64),
        (Some(0), Some(0)) => Some(0.0),
        _ => None,
    };
    let n = endpoints_text;
    let warning = match (before, after) {
        (Some(b), Some(0)) if b > 0 => Some(format!("the audience becomes empty (from {})", n(b))),
        (None, Some(0)) => Some("the new segment matches no endpoint".to_string()),
        (Some(0), Some(a)) if a > 0 => Some(format!("the audience grows from none to {}", n(a))),
        (Some(b), Some(a)) => change_percent.filter(|c| c.abs() > warn_percent).map(|c| {
            format!(
                "the audience {} by {:.1} % ({} → {}), more than the {warn_percent} % threshold",
                if c > 0.0 { "grows" } else { "shrinks" },
                c.abs(),
                thousands(b),
                thousands(a)
            )
        }),
        _ => None,
    };
    Audience {
        before,
        after,
        change_percent: change_percent.map(|c| (c * 10.0).round() / 10.0),
        warning,
    }
}

/// An instant as RFC 3339 in UTC: `2026-11-28T00:00:00Z`.
pub fn instant_text(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Counts the audience of every step of `plan` that changes a definition over the records
/// of `input` and records it in the plan.
///
/// Errors: only when the records cannot be read.
pub fn annotate(
    plan: &mut Plan,
    desired: &DesiredState,
    observed: &Observed,
    input: records::Input,
    file: &str,
    as_of: OffsetDateTime,
    warn_percent: f64,
) -> std::io::Result<()> {
    let mut program = Program::new(as_of);
    let sides = compile(plan, desired, observed, &mut program);
    program.refuse_too_deep().map_err(std::io::Error::other)?;
    let mut nodes: Vec<NodeId> = sides
        .iter()
        .flat_map(|s| s.before.into_iter().chain(s.after))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let t: Tally = if nodes.is_empty() {
        Tally::default()
    } else {
        records::tally_input(input, &program, &nodes)?
    };
    let count: BTreeMap<NodeId, u64> = nodes
        .iter()
        .copied()
        .zip(t.counts.iter().copied())
        .collect();
    for s in sides {
        let audience = assess(
            s.before.map(|n| count[&n]),
            s.after.map(|n| count[&n]),
            warn_percent,
        );
        let app = &mut plan.apps[s.app];
        match s.what {
            Counted::Step(i) => app.steps[i].audience = Some(audience),
            Counted::Affected {
                name,
                segment_id,
                through,
            } => {
                if audience.before != audience.after {
                    app.affected.push(Affected {
                        name,
                        segment_id,
                        through,
                        audience,
                    });
                }
            }
        }
    }
    plan.audience = Some(AudienceSource {
        file: file.to_string(),
        as_of: instant_text(as_of),
        records_read: t.read,
        records_rejected: t.rejected,
        rejected_lines: t.rejected_lines,
        warn_percent,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_for_empty_and_large_changes_only() {
        let warn = |b, a| assess(b, a, 25.0).warning;
        assert_eq!(
            warn(Some(100), Some(125)),
            None,
            "25 % is not more than 25 %"
        );
        assert_eq!(
            warn(Some(100), Some(126)).as_deref(),
            Some("the audience grows by 26.0 % (100 → 126), more than the 25 % threshold")
        );
        assert_eq!(
            warn(Some(1000), Some(700)).as_deref(),
            Some("the audience shrinks by 30.0 % (1,000 → 700), more than the 25 % threshold")
        );
        assert_eq!(
            warn(Some(1), Some(0)).as_deref(),
            Some("the audience becomes empty (from 1 endpoint)")
        );
        assert_eq!(
            warn(Some(0), Some(0)),
            None,
            "empty before and after: no change"
        );
        assert_eq!(
            warn(None, Some(0)).as_deref(),
            Some("the new segment matches no endpoint")
        );
        assert_eq!(
            warn(Some(0), Some(5)).as_deref(),
            Some("the audience grows from none to 5 endpoints")
        );
        assert_eq!(
            warn(None, Some(5)),
            None,
            "a create has nothing to compare with"
        );
        assert_eq!(
            warn(Some(5), None),
            None,
            "a delete is not an audience change"
        );
        assert_eq!(assess(Some(3), Some(4), 25.0).change_percent, Some(33.3));
        assert_eq!(assess(Some(0), Some(4), 25.0).change_percent, None);
    }

    #[test]
    fn instants_are_shown_in_utc() {
        let t = crate::model::validate::parse_instant("2026-11-28T02:00:00+02:00").unwrap();
        assert_eq!(instant_text(t), "2026-11-28T00:00:00Z");
    }
}
