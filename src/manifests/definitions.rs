//! The folder's `SegmentDefinition` manifests as one desired state: names unique, every
//! `Ref` naming a manifest of the folder, no chain of `Ref`s leading back, bases first.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifests::manifest::{DefinitionDoc, ManifestError};
use crate::model::closest;

/// Checks the folder's definitions and orders them so that every definition comes after
/// the ones it builds on.
///
/// Errors: a name given twice, a `Ref` no manifest defines (with did-you-mean), `Ref`s that
/// lead back to where they started; each located.
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
        for &(g, s) in &d.refs {
            let Some(r) =
                crate::manifests::manifest::definition::source_name(&d.manifest.spec, g, s)
            else {
                continue;
            };
            if !by_name.contains_key(r) {
                let mut msg = format!("no SegmentDefinition manifest in the folder is named {r:?}");
                if let Some(best) = closest(r, &names) {
                    msg.push_str(&format!(" (did you mean {best}?)"));
                }
                errors.push(d.error(
                    &format!("spec.SegmentGroups.Groups[{g}].SourceSegments[{s}].Ref"),
                    msg,
                ));
            }
        }
    }
    match order(&by_name) {
        Ok(ordered) if errors.is_empty() => Ok(ordered),
        Ok(_) => {
            errors.sort();
            Err(errors)
        }
        Err(e) => {
            errors.extend(e);
            errors.sort();
            Err(errors)
        }
    }
}

/// Bases first (depth-first over `Ref`s, names in order, so the result is deterministic).
fn order(
    by_name: &BTreeMap<&str, &DefinitionDoc>,
) -> Result<Vec<DefinitionDoc>, Vec<ManifestError>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a DefinitionDoc>,
        marks: &mut BTreeMap<&'a str, Mark>,
        trail: &mut Vec<&'a str>,
        out: &mut Vec<DefinitionDoc>,
    ) -> Result<(), ManifestError> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let from = trail.iter().position(|n| *n == name).unwrap_or(0);
                let mut chain: Vec<&str> = trail[from..].to_vec();
                chain.push(name);
                let d = by_name[trail[from]];
                return Err(d.error(
                    "spec.SegmentGroups",
                    format!(
                        "these definitions build on each other in a circle: {}",
                        chain.join(" → ")
                    ),
                ));
            }
            None => {}
        }
        let d = by_name[name];
        marks.insert(name, Mark::Visiting);
        trail.push(name);
        // A `Ref`, or a name given as SegmentDefinitionName that a manifest of the folder
        // defines: either way it must exist before this one is created.
        let bases: BTreeSet<&str> = d.source_names().collect();
        for b in bases {
            if let Some((k, _)) = by_name.get_key_value(b) {
                visit(k, by_name, marks, trail, out)?;
            }
        }
        trail.pop();
        marks.insert(name, Mark::Done);
        out.push(d.clone());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for name in by_name.keys() {
        visit(name, by_name, &mut marks, &mut Vec::new(), &mut out).map_err(|e| vec![e])?;
    }
    Ok(out)
}
