//! The folder's `SegmentDefinition` manifests as one desired state: names unique, every
//! `Ref` naming a manifest of the folder, a manifest of the folder never named otherwise,
//! no chain of `Ref`s leading back, bases first.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifests::manifest::{DefinitionDoc, DomainDoc, ManifestError};
use crate::model::closest;

/// Where source `s` of group `g` is written.
fn source_path(g: usize, s: usize) -> String {
    format!("spec.SegmentGroups.Groups[{g}].SourceSegments[{s}]")
}

/// Checks the folder's definitions and orders them so that every definition comes after
/// the ones it builds on.
///
/// Errors: a name given twice; a `Ref` no manifest defines (with did-you-mean); a manifest
/// of the folder named by `SegmentDefinitionName` (its definition may be re-created under
/// another name: `Ref` follows it); `Ref`s that lead back to where they started (every
/// circle, at the `Ref` that closes it); each located.
pub fn build(docs: &[DefinitionDoc]) -> Result<Vec<DefinitionDoc>, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut by_name: BTreeMap<&str, &DefinitionDoc> = BTreeMap::new();
    for d in docs {
        if let Some(first) = by_name.get(d.name()) {
            errors.push(d.error(
                "metadata.name",
                format!(
                    "{:?} is defined twice: first at {}:{}",
                    d.name(),
                    first.file,
                    first.line()
                ),
            ));
        } else {
            by_name.insert(d.name(), d);
        }
    }
    let names: Vec<&str> = by_name.keys().copied().collect();
    for d in docs {
        for (g, s, name, is_ref) in d.sources() {
            if is_ref && !by_name.contains_key(name) {
                let mut msg =
                    format!("no SegmentDefinition manifest in the folder is named {name:?}");
                if let Some(best) = closest(name, &names) {
                    msg.push_str(&format!(" (did you mean {best}?)"));
                }
                errors.push(d.error(&format!("{}.Ref", source_path(g, s)), msg));
            } else if !is_ref && by_name.contains_key(name) {
                errors.push(d.error(
                    &format!("{}.SegmentDefinitionName", source_path(g, s)),
                    format!(
                        "{name} is a manifest of this folder: write {{Ref: {name}}}, which follows its definition when a change re-creates it under another name"
                    ),
                ));
            }
        }
    }
    let (ordered, circles) = order(&by_name);
    errors.extend(circles);
    if errors.is_empty() {
        Ok(ordered)
    } else {
        errors.sort();
        errors.dedup();
        Err(errors)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Visiting,
    Done,
}

struct Walk<'a, 'b> {
    by_name: &'b BTreeMap<&'a str, &'a DefinitionDoc>,
    marks: BTreeMap<&'a str, Mark>,
    trail: Vec<&'a str>,
    out: Vec<DefinitionDoc>,
    circles: Vec<ManifestError>,
}

impl<'a> Walk<'a, '_> {
    /// Depth first over `Ref`s, bases first; a `Ref` back into the trail is a circle,
    /// reported at that `Ref`, and the walk goes on.
    fn visit(&mut self, name: &'a str) {
        match self.marks.get(name) {
            Some(Mark::Done) => return,
            Some(Mark::Visiting) => {
                let from = self.trail.iter().position(|n| *n == name).unwrap_or(0);
                let mut chain: Vec<&str> = self.trail[from..].to_vec();
                chain.push(name);
                let last = self.by_name[self.trail[self.trail.len() - 1]];
                let at = last
                    .sources()
                    .into_iter()
                    .find(|(_, _, n, is_ref)| *is_ref && *n == name)
                    .map(|(g, s, _, _)| format!("{}.Ref", source_path(g, s)))
                    .unwrap_or_else(|| "spec.SegmentGroups".into());
                self.circles.push(last.error(
                    &at,
                    format!(
                        "these definitions build on each other in a circle: {}",
                        chain.join(" → ")
                    ),
                ));
                return;
            }
            None => {}
        }
        let d = self.by_name[name];
        self.marks.insert(name, Mark::Visiting);
        self.trail.push(name);
        let bases: BTreeSet<&'a str> = d
            .sources()
            .into_iter()
            .filter(|(_, _, _, is_ref)| *is_ref)
            .filter_map(|(_, _, n, _)| self.by_name.get_key_value(n).map(|(k, _)| *k))
            .collect();
        for b in bases {
            self.visit(b);
        }
        self.trail.pop();
        self.marks.insert(name, Mark::Done);
        self.out.push(d.clone());
    }
}

/// Bases first (names in order, so the result is deterministic), and every circle.
fn order(by_name: &BTreeMap<&str, &DefinitionDoc>) -> (Vec<DefinitionDoc>, Vec<ManifestError>) {
    let mut w = Walk {
        by_name,
        marks: BTreeMap::new(),
        trail: Vec::new(),
        out: Vec::new(),
        circles: Vec::new(),
    };
    for name in by_name.keys() {
        w.visit(name);
    }
    (w.out, w.circles)
}

/// The folder's `Domain` manifest, if it has one.
///
/// Errors: a second one (a folder is applied to one domain), located, naming the first.
pub fn domain(docs: &[DomainDoc]) -> Result<Option<DomainDoc>, Vec<ManifestError>> {
    let Some((first, rest)) = docs.split_first() else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(Some(first.clone()));
    }
    Err(rest
        .iter()
        .map(|d| {
            d.error(
                "kind",
                format!(
                    "a folder holds at most one Domain manifest: the first is at {}:{}",
                    first.file,
                    first.line()
                ),
            )
        })
        .collect())
}
