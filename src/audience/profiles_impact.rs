//! A Customer Profiles plan's audiences: each step's definition counted over profile
//! records before the plan (the live definitions) and after it (what the plan leaves),
//! by the same evaluator the server's estimates use.

use std::collections::BTreeMap;
use std::io::BufRead;

use time::OffsetDateTime;

use crate::audience::evaluate::profiles::DefinitionCatalog;
use crate::audience::evaluate::Program;
use crate::model::profiles::SegmentGroups;
use crate::plan::definitions::{
    Action, DefinitionsPlan, LiveDomain, ProfileAudience, ProfilesRead, Replacement,
};

/// Why the records could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("{0} (profile records are UTF-8 JSON lines)")]
    Read(#[from] std::io::Error),
    /// A definition's chain of sources is deeper than the evaluator follows.
    #[error("{0}")]
    TooDeep(String),
}

/// Counts, for every step of `plan`, the profiles of `lines` its definition matches before
/// and after; writes them into the steps and returns what was read. A line that is not a
/// profile is counted as rejected (its number kept), never shown.
pub fn count(
    plan: &mut DefinitionsPlan,
    live: &LiveDomain,
    lines: impl BufRead,
    file: &str,
    as_of: OffsetDateTime,
) -> Result<ProfilesRead, CountError> {
    const BEFORE: usize = 0;
    const AFTER: usize = 1;
    let before: BTreeMap<String, &SegmentGroups> = live
        .definitions
        .iter()
        .filter_map(|d| Some((d.name.clone(), d.spec.segment_groups.as_ref()?)))
        .collect();
    // After: what is live and stays, with what the plan creates.
    let mut after = before.clone();
    for s in &plan.steps {
        let replaced_in_place = s.replacement == Some(Replacement::InPlace);
        if s.blocked.is_empty() && (s.action == Action::Delete || replaced_in_place) {
            if let Some(l) = &s.live_name {
                after.remove(l);
            }
        }
    }
    for s in plan.steps.iter().filter(|s| s.blocked.is_empty()) {
        if let (Some(spec), Some(n)) = (&s.spec, &s.new_name) {
            if let Some(g) = &spec.segment_groups {
                after.insert(n.clone(), g);
            }
        }
    }
    let catalogs = [
        DefinitionCatalog {
            definitions: before,
        },
        DefinitionCatalog { definitions: after },
    ];
    let mut program = Program::for_profiles(as_of);
    let nodes: Vec<(Option<usize>, Option<usize>)> = plan
        .steps
        .iter()
        .map(|s| {
            let was = match s.action {
                Action::Create => None,
                _ => s.live_name.as_deref(),
            };
            let will = match s.action {
                Action::Delete => None,
                Action::Create | Action::Replace => s.new_name.as_deref(),
                Action::Tag | Action::Adopt => s.live_name.as_deref(),
            };
            (
                was.map(|n| program.add_definition(BEFORE, &catalogs[BEFORE], n)),
                will.map(|n| program.add_definition(AFTER, &catalogs[AFTER], n)),
            )
        })
        .collect();
    program.refuse_too_deep().map_err(CountError::TooDeep)?;
    let mut counts = vec![(0u64, 0u64); nodes.len()];
    let mut read = ProfilesRead {
        file: file.to_string(),
        profiles: 0,
        rejected: 0,
        first_rejected: None,
    };
    let mut out = Vec::new();
    for (i, line) in lines.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut record = program.record();
        if program.read(&line, &mut record).is_err() {
            read.rejected += 1;
            read.first_rejected.get_or_insert(i as u64 + 1);
            continue;
        }
        read.profiles += 1;
        program.run(&record, &mut out);
        for (c, (b, a)) in counts.iter_mut().zip(&nodes) {
            c.0 += b.map_or(0, |n| u64::from(out[n]));
            c.1 += a.map_or(0, |n| u64::from(out[n]));
        }
    }
    for (s, ((b, a), (cb, ca))) in plan.steps.iter_mut().zip(nodes.iter().zip(counts)) {
        s.audience = Some(ProfileAudience {
            before: b.map(|_| cb),
            after: a.map(|_| ca),
        });
    }
    Ok(read)
}
