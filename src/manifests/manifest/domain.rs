//! `kind: Domain`: the Customer Profiles domain a folder of `SegmentDefinition` manifests
//! is applied to, created from the manifest when the target's domain does not exist, and
//! never changed nor deleted by segmentctl (a domain holds the profiles themselves).
//!
//! The target names the domain, as a kube context names a namespace, so one folder can be
//! applied to a staging and a production domain: `metadata.name` may be left out. When it
//! is given, the target's domain must be that one (a folder written for one domain is never
//! applied to another by mistake).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::definition::{own_tags, read_typed, Problems};
use super::{ManifestError, SourceText};
use crate::model::profiles::DomainSpec;

/// The kind's name in a manifest.
pub const KIND: &str = "Domain";

/// One `Domain` manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "segmentctl Domain manifest")]
pub struct DomainManifest {
    /// Always `segmentctl/v1`.
    pub api_version: String,
    pub kind: DomainKind,
    #[serde(default)]
    pub metadata: DomainMetadata,
    /// CreateDomain's settings (PascalCase), used when segmentctl creates the domain.
    pub spec: DomainSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DomainKind {
    Domain,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainMetadata {
    /// The only domain this folder may be applied to. Left out: the target's domain,
    /// whichever it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A `Domain` manifest and where it came from.
#[derive(Debug, Clone)]
pub struct DomainDoc {
    pub file: String,
    pub doc: usize,
    pub source: std::sync::Arc<SourceText>,
    pub manifest: DomainManifest,
}

impl DomainDoc {
    /// 1-based line of the document's first key.
    pub fn line(&self) -> usize {
        self.source.locate(self.doc, "").0
    }

    /// A located error about this document's field `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ManifestError {
        super::located(&self.file, &self.source, self.doc, path, message.into())
    }

    /// The settings a domain is created with.
    pub fn spec(&self) -> &DomainSpec {
        &self.manifest.spec
    }

    /// Errors: `metadata.name` names another domain than the target's `domain`.
    pub fn check_target(&self, domain: &str, embedded: bool) -> Result<(), ManifestError> {
        match &self.manifest.metadata.name {
            Some(name) if name != domain => Err(self.error(
                "metadata.name",
                if embedded {
                    format!("this folder is for domain {name:?}, but the embedded default holds its definitions in domain {domain:?}: leave metadata.name out")
                } else {
                    format!("this folder is for domain {name:?}, but the target is domain {domain:?}: target that domain (--target customer-profiles:{name}), or leave metadata.name out to apply the folder to any domain")
                },
            )),
            _ => Ok(()),
        }
    }
}

/// Whether a document's generic reading says it is a `Domain`.
pub(super) fn is_domain(v: &serde_yaml::Value) -> bool {
    v.get("kind").and_then(serde_yaml::Value::as_str) == Some(KIND)
}

/// Reads a document already read generically: the manifest, or every mistake by path.
pub(super) fn read(v: serde_yaml::Value) -> (Option<DomainManifest>, Problems) {
    let (m, errors) = read_typed(v, rules);
    (m.filter(|_| errors.is_empty()), errors)
}

/// The apiVersion, the name, and CreateDomain's own rules (the server's validator).
fn rules(m: &DomainManifest) -> Problems {
    let mut out: Problems = super::rules::api_version(&m.api_version)
        .into_iter()
        .collect();
    if let Some(name) = &m.metadata.name {
        for v in crate::model::profiles::validate::name("metadata.name", name) {
            out.push((v.path, v.message));
        }
    }
    for v in crate::model::profiles::validate::create_domain(&m.spec.request()) {
        out.push((format!("spec.{}", v.path), v.message));
    }
    out.extend(own_tags(m.spec.tags.as_ref()));
    out
}
