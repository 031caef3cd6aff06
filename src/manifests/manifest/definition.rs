//! `kind: SegmentDefinition`: a Customer Profiles segment definition as a manifest.
//! `metadata.name` is the stable key (and the definition's name on the target, unless a
//! change had to create it under a derived name); `spec` is CreateSegmentDefinition's
//! request, verbatim, where a source may also be `{Ref: <manifest name>}`.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse::describe_serde_error;
use super::recover::{recover, related};
use super::{ManifestError, SourceText, API_VERSION};
use crate::model::profiles::CreateSegmentDefinitionRequest;

/// The kind's name in a manifest.
pub const KIND: &str = "SegmentDefinition";

/// A derived name is `<name>-<8 hex>`: at most this much of the name, so it fits 64.
pub const MAX_NAME_IN_DERIVED: usize = 64 - 9;

/// One `SegmentDefinition` manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "segmentctl SegmentDefinition manifest")]
pub struct DefinitionManifest {
    /// Always `segmentctl/v1`.
    pub api_version: String,
    pub kind: DefinitionKind,
    pub metadata: DefinitionMetadata,
    /// CreateSegmentDefinition's request, verbatim (PascalCase). In `SourceSegments`,
    /// `{Ref: <manifest name>}` names another manifest of the folder.
    pub spec: CreateSegmentDefinitionRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DefinitionKind {
    SegmentDefinition,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefinitionMetadata {
    /// The stable key: the definition's name in the domain (letters, digits, `_`, `-`; at
    /// most 64).
    pub name: String,
    /// Refuse to delete this definition, even after its manifest is gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
    /// Take over this existing, unmanaged definition (by its name in the domain) instead
    /// of creating one: tagged as managed when it matches, else replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<String>,
}

/// A `SegmentDefinition` manifest and where it came from.
#[derive(Debug, Clone)]
pub struct DefinitionDoc {
    pub file: String,
    pub doc: usize,
    pub source: std::sync::Arc<SourceText>,
    pub manifest: DefinitionManifest,
    /// The sources written as `{Ref: …}` (group, source), whose `SegmentDefinitionName` now
    /// holds the manifest name referred to.
    pub refs: BTreeSet<(usize, usize)>,
}

impl DefinitionDoc {
    pub fn name(&self) -> &str {
        &self.manifest.metadata.name
    }

    /// 1-based line of the document's first key.
    pub fn line(&self) -> usize {
        self.source.locate(self.doc, "").0
    }

    /// A located error about this document's field `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ManifestError {
        super::located(&self.file, &self.source, self.doc, path, message.into())
    }

    /// Every source: (group, source, the name it gives, whether written as `Ref`).
    pub fn sources(&self) -> Vec<(usize, usize, &str, bool)> {
        let mut out = Vec::new();
        for (gi, g) in self
            .manifest
            .spec
            .segment_groups
            .iter()
            .flat_map(|g| g.groups.iter().flatten())
            .enumerate()
        {
            for (si, src) in g.source_segments.iter().flatten().enumerate() {
                if let Some(n) = src.segment_definition_name.as_deref() {
                    out.push((gi, si, n, self.refs.contains(&(gi, si))));
                }
            }
        }
        out
    }
}

/// Whether a document's generic reading says it is a `SegmentDefinition`.
pub(super) fn is_definition(v: &serde_yaml::Value) -> bool {
    v.get("kind").and_then(serde_yaml::Value::as_str) == Some(KIND)
}

/// What reading one `SegmentDefinition` document found: the manifest (when it reads) and
/// every mistake, by field path.
pub(super) struct Read {
    pub manifest: Option<(DefinitionManifest, BTreeSet<(usize, usize)>)>,
    pub errors: Vec<(String, String)>,
}

/// Reads a document already read generically, every mistake reported (as Pinpoint
/// manifests are, by [`recover`]).
pub(super) fn read(mut v: serde_yaml::Value) -> Read {
    let (refs, mut errors) = take_refs(&mut v);
    let (manifest, more) = read_typed(v, rules);
    errors.extend(more);
    Read {
        manifest: if errors.is_empty() {
            manifest.map(|m| (m, refs))
        } else {
            None
        },
        errors,
    }
}

/// Reads a document of a kind read apart from Pinpoint's (`SegmentDefinition`, `Domain`)
/// into `T`: every mistake of its shape, and those `rules` find in what reads.
pub(super) fn read_typed<T: serde::de::DeserializeOwned>(
    v: serde_yaml::Value,
    rules: fn(&T) -> Problems,
) -> (Option<T>, Problems) {
    let yaml = serde_yaml::to_string(&v).unwrap_or_default();
    match serde_path_to_error::deserialize::<_, T>(serde_yaml::Deserializer::from_str(&yaml)) {
        Ok(m) => {
            let errors = rules(&m);
            (Some(m), errors)
        }
        Err(first) => {
            let r = recover::<T>(v);
            let mut errors = Vec::new();
            if r.errors.is_empty() {
                errors.push(describe_serde_error(&first));
            }
            errors.extend(r.errors);
            // The rest of the document, read without its mistakes, is checked too (what is
            // about the fields removed or stood in for is not said).
            if let Some(m) = &r.manifest {
                let mut more = rules(m);
                more.retain(|(p, _)| !r.touched.iter().any(|t| related(t, p)));
                errors.extend(more);
            }
            (None, errors)
        }
    }
}

/// Mistakes found, each a field path and what is wrong there.
pub(super) type Problems = Vec<(String, String)>;

/// Rewrites every `{Ref: NAME}` source to `{SegmentDefinitionName: NAME}`, noting where.
fn take_refs(v: &mut serde_yaml::Value) -> (BTreeSet<(usize, usize)>, Problems) {
    let mut refs = BTreeSet::new();
    let mut errors = Vec::new();
    let groups = v
        .get_mut("spec")
        .and_then(|s| s.get_mut("SegmentGroups"))
        .and_then(|s| s.get_mut("Groups"))
        .and_then(serde_yaml::Value::as_sequence_mut);
    for (gi, g) in groups.into_iter().flatten().enumerate() {
        let sources = g
            .get_mut("SourceSegments")
            .and_then(serde_yaml::Value::as_sequence_mut);
        for (si, s) in sources.into_iter().flatten().enumerate() {
            let Some(m) = s.as_mapping_mut() else {
                continue;
            };
            let Some(r) = m.remove("Ref") else { continue };
            let path = format!("spec.SegmentGroups.Groups[{gi}].SourceSegments[{si}]");
            if m.contains_key("SegmentDefinitionName") {
                errors.push((
                    format!("{path}.Ref"),
                    "give Ref (a manifest's name) or SegmentDefinitionName (a definition's name on the target), not both".into(),
                ));
                continue;
            }
            match r.as_str() {
                Some(name) => {
                    m.insert("SegmentDefinitionName".into(), name.into());
                    refs.insert((gi, si));
                }
                None => errors.push((
                    format!("{path}.Ref"),
                    "expected the metadata.name of a SegmentDefinition manifest (a string)".into(),
                )),
            }
        }
    }
    (refs, errors)
}

/// The rules of one document: the apiVersion, the name, and the model's own rules (the
/// server's validator, so the folder is refused as the API would refuse it).
fn rules(m: &DefinitionManifest) -> Problems {
    let mut out: Vec<(String, String)> = super::rules::api_version(&m.api_version)
        .into_iter()
        .collect();
    for v in crate::model::profiles::validate::name("metadata.name", &m.metadata.name) {
        out.push((v.path, v.message));
    }
    for v in crate::model::profiles::validate::create_segment_definition(&m.spec) {
        out.push((format!("spec.{}", v.path), v.message));
    }
    out.extend(own_tags(m.spec.tags.as_ref()));
    out
}

/// A tag of `spec.Tags` that only segmentctl may set.
pub(super) fn own_tags(tags: Option<&crate::model::Tags>) -> Problems {
    tags.into_iter()
        .flat_map(|t| t.keys())
        .filter(|key| key.starts_with(crate::TAG_PREFIX))
        .map(|key| {
            (
                format!("spec.Tags.{key}"),
                format!(
                    "tags starting with {:?} are segmentctl's own; remove it",
                    crate::TAG_PREFIX
                ),
            )
        })
        .collect()
}

/// A `SegmentDefinition` manifest as YAML: a source among `siblings` (the definitions
/// written beside it, by the name the manifest and the target share) is written as
/// `{Ref: NAME}`, so the folder applies bases first and follows a base that a change
/// re-creates under a new name. Used by `convert` and `import`.
pub fn render(
    metadata: &DefinitionMetadata,
    spec: &CreateSegmentDefinitionRequest,
    siblings: &BTreeSet<&str>,
) -> Result<String, serde_yaml::Error> {
    let mut doc = serde_yaml::to_value(DefinitionManifest {
        api_version: API_VERSION.into(),
        kind: DefinitionKind::SegmentDefinition,
        metadata: metadata.clone(),
        spec: spec.clone(),
    })?;
    let groups = doc
        .get_mut("spec")
        .and_then(|s| s.get_mut("SegmentGroups"))
        .and_then(|s| s.get_mut("Groups"))
        .and_then(serde_yaml::Value::as_sequence_mut);
    for g in groups.into_iter().flatten() {
        let sources = g
            .get_mut("SourceSegments")
            .and_then(serde_yaml::Value::as_sequence_mut);
        for source in sources.into_iter().flatten() {
            let base = source
                .get("SegmentDefinitionName")
                .and_then(serde_yaml::Value::as_str)
                .filter(|n| siblings.contains(n))
                .map(str::to_string);
            if let Some(base) = base {
                let mut r = serde_yaml::Mapping::new();
                r.insert("Ref".into(), base.into());
                *source = serde_yaml::Value::Mapping(r);
            }
        }
    }
    serde_yaml::to_string(&doc)
}
