//! Reading manifests: YAML files in a folder become typed documents, or located errors.
//!
//! Every error names file, line, column, the field path, what was found and what was
//! expected. serde_yaml does the typed parsing ([`parse`]); a light pass over the YAML events
//! (with their positions, [`position`]) maps a field path back to where it is written, so
//! that rules checked after parsing ([`rules`]) are located as precisely as those serde
//! checks. A document with mistakes is read again, mistake after mistake ([`recover`]), so
//! that every one is reported. This file holds the types; [`schema`] describes them to
//! editors.

pub mod definition;
pub mod domain;
mod parse;
mod position;
mod recover;
mod rules;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Tags, WriteSegmentRequest};

pub use definition::{DefinitionDoc, DefinitionManifest};
pub use domain::{DomainDoc, DomainManifest};
pub use parse::{application_hints, load_sources, load_sources_at, parse_all, parse_one};
pub use position::{PositionIndex, SourceText};
pub use recover::Recovered;
pub use rules::{is_app_id, name_problem};
pub use schema::{json_schema, to_yaml};

pub const API_VERSION: &str = "segmentctl/v1";
/// The configuration file at a folder's root, which is not a manifest.
pub const CONFIG_FILE: &str = "segmentctl.yaml";

/// What kind of object a manifest declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
pub enum Kind {
    Segment,
    Application,
    // A segment whose endpoints come from a file (Pinpoint's IMPORT segment type).
    ImportedSegment,
}

impl Kind {
    /// Every kind a manifest may be (`SegmentDefinition` is read by [`definition`],
    /// `Domain` by [`domain`]).
    const ALL: &'static [&'static str] = &[
        "Segment",
        "Application",
        "ImportedSegment",
        definition::KIND,
        domain::KIND,
    ];

    /// Whether documents of this kind declare a segment.
    pub fn is_segment(self) -> bool {
        matches!(self, Kind::Segment | Kind::ImportedSegment)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "Segment" => Ok(Kind::Segment),
            "Application" => Ok(Kind::Application),
            "ImportedSegment" => Ok(Kind::ImportedSegment),
            _ => Err(serde::de::Error::custom(
                crate::model::unknown_value_message(&text, Kind::ALL),
            )),
        }
    }
}

/// One manifest document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "segmentctl manifest")]
pub struct Manifest {
    /// Always `segmentctl/v1`.
    pub api_version: String,
    /// `Segment`; `ImportedSegment` for one whose endpoints come from a file (`source`); or
    /// `Application` to bootstrap an application on a fresh target.
    pub kind: Kind,
    pub metadata: Metadata,
    /// For a Segment: the API's WriteSegmentRequest, verbatim (PascalCase, `tags` lowercase).
    /// For an Application: `Name` and `tags`.
    #[serde(default)]
    pub spec: WriteSegmentRequest,
    /// For an ImportedSegment: the file its endpoints are imported from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImportSource>,
}

/// Where an ImportedSegment's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportSource {
    /// `s3://bucket/key` (one object, or a folder prefix ending in `/`), or a path relative
    /// to this manifest's file (read by the embedded server, or one started with
    /// `--import-root` over it).
    pub url: String,
    /// `CSV` (dotted column names: `Location.Country`, `Attributes.Tier`, …) or `JSON`
    /// (one endpoint object per line).
    pub format: ImportFormat,
    /// The IAM role Pinpoint assumes to read the file (recorded by the self-hosted server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Create or update the imported endpoints too (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_endpoints: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum ImportFormat {
    #[serde(rename = "CSV")]
    Csv,
    #[serde(rename = "JSON")]
    Json,
}

impl<'de> Deserialize<'de> for ImportFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "CSV" => Ok(ImportFormat::Csv),
            "JSON" => Ok(ImportFormat::Json),
            _ => Err(serde::de::Error::custom(
                crate::model::unknown_value_message(&text, &["CSV", "JSON"]),
            )),
        }
    }
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Csv => "CSV",
            ImportFormat::Json => "JSON",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The stable key: unique per application; lowercase letters, digits and `-`, at most 63.
    pub name: String,
    /// The application (project) id, 32 lowercase hex characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The `metadata.name` of an Application manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_ref: Option<String>,
    /// Refuse to delete this segment, even after its manifest is gone (kept as a tag).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
    /// Take over this existing, unmanaged segment id instead of creating a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<String>,
}

/// A manifest and where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: String,
    /// The document's number within its file (0-based).
    pub doc: usize,
    pub source: std::sync::Arc<SourceText>,
    pub manifest: Manifest,
}

impl PartialEq for Document {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.doc == other.doc && self.manifest == other.manifest
    }
}

impl Document {
    /// 1-based line of the document's first key.
    pub fn line(&self) -> usize {
        self.source.locate(self.doc, "").0
    }

    /// A located error about this document's field `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ManifestError {
        located(&self.file, &self.source, self.doc, path, message.into())
    }
}

/// An error about the field `path` of document `doc` of `file`, where its text puts it.
pub(crate) fn located(
    file: &str,
    source: &SourceText,
    doc: usize,
    path: &str,
    message: String,
) -> ManifestError {
    let (line, column) = source.locate(doc, path);
    ManifestError {
        file: file.to_string(),
        line,
        column,
        path: path.to_string(),
        message,
    }
}

/// A located mistake in a manifest (or the configuration file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field path, e.g. `spec.Dimensions.Demographic.Platform.DimensionType`; may be empty.
    pub path: String,
    pub message: String,
}

impl std::error::Error for ManifestError {}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // About the file (or folder) as a whole: no place in it to name.
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The outcome of reading a folder: the documents that parsed, and every error found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub errors: Vec<ManifestError>,
    /// Documents with mistakes, read as far as they could be (the offending fields removed
    /// or stood in for), so that mistakes across documents (an unresolved reference, a
    /// duplicate name) are found in the same run. Never planned.
    pub recovered: Vec<Recovered>,
    /// The `SegmentDefinition` manifests (a Customer Profiles target's) that read.
    pub definitions: Vec<DefinitionDoc>,
    /// The `Domain` manifests that read (a folder may hold one).
    pub domains: Vec<DomainDoc>,
}

/// A file's text, named as the user should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// Shared with the documents parsed from it, so errors can be located without a copy.
    pub bytes: std::sync::Arc<Vec<u8>>,
}

/// An application's spec from an Application manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationSpec {
    pub name: String,
    pub tags: Tags,
}

impl Manifest {
    pub fn application_spec(&self) -> ApplicationSpec {
        ApplicationSpec {
            name: self
                .spec
                .name
                .clone()
                .unwrap_or_else(|| self.metadata.name.clone()),
            tags: self.spec.tags.clone().unwrap_or_default(),
        }
    }
}
