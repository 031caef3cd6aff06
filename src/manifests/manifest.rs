//! Reading manifests: YAML files in a folder become typed documents, or located errors.
//!
//! Every error names file, line, column, the field path, what was found and what was
//! expected. serde_yaml does the typed parsing; a light pass over the YAML events (with
//! their positions) maps a field path back to where it is written, so that rules checked
//! after parsing are located as precisely as those serde checks.

use std::collections::HashMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::validate::{self, key_path, Context};
use crate::model::{closest, one_of, Tags, WriteSegmentRequest};

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
    const ALL: &'static [&'static str] = &["Segment", "Application", "ImportedSegment"];

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

/// A file's text, kept so that errors found later (across documents) can be located. The
/// position index is built only when an error needs it: a clean load never pays for it.
/// The text is shared with the [`Source`] it was read from, never copied.
pub struct SourceText {
    pub name: String,
    bytes: std::sync::Arc<Vec<u8>>,
    index: std::sync::OnceLock<PositionIndex>,
}

impl SourceText {
    fn new(source: &Source) -> Self {
        Self {
            name: source.name.clone(),
            bytes: source.bytes.clone(),
            index: std::sync::OnceLock::new(),
        }
    }

    fn index(&self) -> &PositionIndex {
        self.index
            .get_or_init(|| PositionIndex::build(std::str::from_utf8(&self.bytes).unwrap_or("")))
    }

    /// The lines document `doc` spans, `[first, next document's first)`; everything when the
    /// position pass did not see it.
    pub fn doc_lines(&self, doc: usize) -> (usize, usize) {
        let starts = &self.index().starts;
        match starts.get(doc) {
            Some(&first) => (first, starts.get(doc + 1).copied().unwrap_or(usize::MAX)),
            None => (0, usize::MAX),
        }
    }

    /// (line, column) of `path` in document `doc`, or of its nearest written ancestor.
    pub fn locate(&self, doc: usize, path: &str) -> (usize, usize) {
        self.index().locate(doc, path)
    }

    /// Document `doc` of `text` (this source's text) read generically, on its own: its lines
    /// are known from the one position pass over the file, so no document is read twice
    /// from the start of the file.
    ///
    /// Errors: the document is not valid YAML, located in the file, with the message.
    fn document_value(
        &self,
        text: &str,
        doc: usize,
    ) -> Result<serde_yaml::Value, ((usize, usize), String)> {
        let index = self.index();
        let line_start = |line: usize| -> usize {
            // 1-based line → byte offset of its start.
            index
                .line_starts
                .get(line.saturating_sub(1))
                .copied()
                .unwrap_or(text.len())
        };
        let (from_line, slice) = match index.starts.get(doc) {
            Some(&first) => {
                let end = index
                    .starts
                    .get(doc + 1)
                    .map(|&l| line_start(l))
                    .unwrap_or(text.len());
                (first, &text[line_start(first)..end.max(line_start(first))])
            }
            None => {
                // The position pass did not see this document (the two parsers disagree on
                // broken YAML): read it from the stream, as the typed reading did. This is
                // reached at most once per file past the documents the pass saw, since the
                // stream answers an error from there on.
                return match serde_yaml::Deserializer::from_str(text).nth(doc) {
                    Some(d) => serde_yaml::Value::deserialize(d).map_err(|e| invalid_yaml(e, 1)),
                    None => Ok(serde_yaml::Value::Null),
                };
            }
        };
        let mut docs = serde_yaml::Deserializer::from_str(slice);
        match docs.next() {
            Some(d) => serde_yaml::Value::deserialize(d).map_err(|e| invalid_yaml(e, from_line)),
            None => Ok(serde_yaml::Value::Null),
        }
    }
}

/// A YAML syntax error read from text starting on line `from_line` of its file: its position
/// in the file, and the message.
fn invalid_yaml(e: serde_yaml::Error, from_line: usize) -> ((usize, usize), String) {
    let position = e
        .location()
        .map(|l| (l.line() + from_line - 1, l.column()))
        .unwrap_or((from_line, 1));
    (
        position,
        format!("invalid YAML: {}", strip_location(&e.to_string())),
    )
}

impl fmt::Debug for SourceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceText")
            .field("name", &self.name)
            .finish()
    }
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
        let (line, column) = self.source.locate(self.doc, path);
        ManifestError {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        }
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
}

/// A document with mistakes, and the field paths its recovery removed or stood in for:
/// a later check about those paths would be about the stand-in, not the user's text.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub document: Document,
    pub touched: Vec<String>,
}

impl Recovered {
    /// Whether an error at `path`, on `line` of `file`, may be about a stand-in of this
    /// document (not of another document of the same file).
    pub fn touches(&self, file: &str, line: usize, path: &str) -> bool {
        let (from, to) = self.document.source.doc_lines(self.document.doc);
        file == self.document.file
            && (from..to).contains(&line)
            && self.touched.iter().any(|t| related(t, path))
    }
}

/// One path is the other, or under it.
fn related(a: &str, b: &str) -> bool {
    let under = |long: &str, short: &str| {
        short.is_empty()
            || (long.starts_with(short)
                && matches!(
                    long.as_bytes().get(short.len()),
                    None | Some(b'.') | Some(b'[')
                ))
    };
    under(a, b) || under(b, a)
}

/// A file's text, named as the user should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// Shared with the documents parsed from it, so errors can be located without a copy.
    pub bytes: std::sync::Arc<Vec<u8>>,
}

/// Application ids the files seem to name (`application: <32 hex>`), found by a scan of the
/// text: a hint to start reading those applications while the files are parsed, never
/// trusted for anything else.
pub fn application_hints(sources: &[Source]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sources {
        let text = &s.bytes;
        let mut at = 0;
        while let Some(i) = memchr::memmem::find(&text[at..], b"application:") {
            let start = at + i + b"application:".len();
            at = start;
            let rest = &text[start..];
            let skip = rest
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'"' | b'\''))
                .count();
            let Some(id) = rest.get(skip..skip + 32) else {
                continue;
            };
            let after = rest.get(skip + 32).copied();
            if id
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                && !after.is_some_and(|b| b.is_ascii_alphanumeric())
            {
                let id = String::from_utf8_lossy(id).into_owned();
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    out
}

/// Parses already-read files (pure: no I/O).
///
/// Files are parsed on every core; the result does not depend on how many there are.
pub fn load_sources(sources: &[Source]) -> Loaded {
    // A thread per core, each with at least 64 KiB to parse.
    let bytes: usize = sources.iter().map(|s| s.bytes.len()).sum();
    let threads = crate::par::cores().min(bytes.div_ceil(64 * 1024));
    let chunk = sources.len().div_ceil(threads.max(1)).max(1);
    let chunks: Vec<&[Source]> = sources.chunks(chunk).collect();
    let parts = crate::par::map(&chunks, threads, |part| {
        let mut loaded = Loaded::default();
        for source in *part {
            parse_file(source, &mut loaded);
        }
        loaded
    });
    let mut loaded = Loaded::default();
    for part in parts {
        loaded.documents.extend(part.documents);
        loaded.errors.extend(part.errors);
        loaded.recovered.extend(part.recovered);
    }
    loaded.errors.sort();
    loaded
}

fn parse_file(source: &Source, out: &mut Loaded) {
    let file = &source.name;
    let text = match std::str::from_utf8(&source.bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &source.bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let column = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            out.errors.push(ManifestError {
                file: file.clone(),
                line,
                column,
                path: String::new(),
                message: "the file is not UTF-8 text; manifests are UTF-8 YAML".into(),
            });
            return;
        }
    };
    let source = std::sync::Arc::new(SourceText::new(source));
    let error = |(line, column): (usize, usize), path: String, message: String| ManifestError {
        file: file.clone(),
        line,
        column,
        path,
        message,
    };
    for (doc_no, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = |path: &str| source.locate(doc_no, path);
        // The happy path parses once, straight into the typed manifest. A failure parses
        // that document again, on its own (its lines are known from the file's one position
        // pass), to say what is wrong with it: every mistake in it, not only the first.
        let (manifest, touched) = match serde_path_to_error::deserialize::<_, Manifest>(doc) {
            Ok(m) => (m, Vec::new()),
            Err(typed_err) => match source.document_value(text, doc_no) {
                Err((pos, message)) => {
                    out.errors.push(error(pos, String::new(), message));
                    return; // the rest of the stream cannot be trusted
                }
                // An empty document, e.g. after a trailing `---` (checked on the stream: a
                // document the position pass misplaced must never vanish silently).
                Ok(v) if v.is_null() && stream_document_is_null(text, doc_no) => continue,
                Ok(v) if v.is_null() => {
                    let (path, message) = describe_serde_error(&typed_err);
                    out.errors.push(error(at(&path), path, message));
                    continue;
                }
                Ok(v) if !v.is_mapping() => {
                    out.errors.push(error(
                        at(""),
                        String::new(),
                        format!(
                            "a manifest is a mapping with apiVersion, kind, metadata and spec; found {}",
                            yaml_kind(&v)
                        ),
                    ));
                    continue;
                }
                Ok(v) => {
                    let mut r = recover(v);
                    if r.errors.is_empty() {
                        // The typed reading saw what the generic one did not (a duplicate key).
                        let (path, message) = describe_serde_error(&typed_err);
                        r.touched.push(path.clone());
                        r.errors.push((path, message));
                    }
                    for (path, message) in r.errors {
                        out.errors.push(error(at(&path), path, message));
                    }
                    match r.manifest {
                        Some(m) => (m, r.touched),
                        None => continue,
                    }
                }
            },
        };
        let mut problems = document_rules(&manifest);
        problems.retain(|(p, _)| !touched.iter().any(|t| related(t, p)));
        if problems.len() > 1 {
            problems.sort_by_key(|(p, _)| at(p));
        }
        for (path, message) in problems {
            out.errors.push(error(at(&path), path, message));
        }
        let document = Document {
            file: file.clone(),
            doc: doc_no,
            source: source.clone(),
            manifest,
        };
        if touched.is_empty() {
            out.documents.push(document);
        } else {
            out.recovered.push(Recovered { document, touched });
        }
    }
}

/// Whether document `doc` of the stream is empty, read as the typed reading read it.
fn stream_document_is_null(text: &str, doc: usize) -> bool {
    serde_yaml::Deserializer::from_str(text)
        .nth(doc)
        .map(serde_yaml::Value::deserialize)
        .is_some_and(|v| v.is_ok_and(|v| v.is_null()))
}

/// The most typed readings one document's recovery makes.
const RECOVERY_ATTEMPTS: usize = 64;

/// What [`recover`] found.
struct Recovery {
    /// Every mistake found, in the order found.
    errors: Vec<(String, String)>,
    /// The document with the mistakes removed or stood in for, when that reads.
    manifest: Option<Manifest>,
    /// The paths removed or stood in for.
    touched: Vec<String>,
}

/// Reads a document that does not read as a manifest, mistake after mistake: each time the
/// typed reading stops, the mistake is recorded and the field at fault is removed (or, when
/// it is required, stood in for by an empty value), and the reading starts again. serde stops
/// at the first mistake; this finds every one that a reading can find.
fn recover(mut value: serde_yaml::Value) -> Recovery {
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut tries: HashMap<Vec<PathStep>, usize> = HashMap::new();
    let mut touched: Vec<String> = Vec::new();
    for _ in 0..RECOVERY_ATTEMPTS {
        // Read from YAML text, as the typed reading does: from a `Value`, serde_yaml is
        // stricter (a plain `42` is no longer a string), and a copy of the text is smaller
        // than a copy of the tree.
        let Ok(yaml) = serde_yaml::to_string(&value) else {
            return Recovery {
                errors,
                manifest: None,
                touched,
            };
        };
        let e = match serde_path_to_error::deserialize::<_, Manifest>(
            serde_yaml::Deserializer::from_str(&yaml),
        ) {
            Ok(m) => {
                return Recovery {
                    errors,
                    manifest: Some(m),
                    touched,
                }
            }
            Err(e) => e,
        };
        let (shown, message) = describe_serde_error(&e);
        let mut at = steps_of(&e);
        // A missing field is shown at its parent; it is known by its own path.
        let key = steps_path(&at);
        // A mistake at or under what was already stood in is about the stand-in.
        if !touched.iter().any(|t| related(t, &key)) {
            errors.push((shown, message));
        }
        touched.push(key);
        // Remove the field; then stand in an empty string, list or mapping; then give up on
        // the field's parent.
        loop {
            let n = tries.entry(at.clone()).or_insert(0);
            *n += 1;
            let stand_in = match *n {
                1 => None,
                2 => Some(serde_yaml::Value::String(String::new())),
                3 => Some(serde_yaml::Value::Sequence(Vec::new())),
                4 => Some(serde_yaml::Value::Mapping(Default::default())),
                _ => {
                    if at.pop().is_none() {
                        return Recovery {
                            errors,
                            manifest: None,
                            touched,
                        };
                    }
                    touched.push(steps_path(&at));
                    continue;
                }
            };
            if at.is_empty() || !set_at(&mut value, &at, stand_in) {
                if at.pop().is_none() {
                    return Recovery {
                        errors,
                        manifest: None,
                        touched,
                    };
                }
                continue;
            }
            break;
        }
    }
    Recovery {
        errors,
        manifest: None,
        touched,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PathStep {
    Key(String),
    Index(usize),
}

/// The steps to the field a serde error is about (for an unknown or missing field, the
/// field itself).
fn steps_of(e: &serde_path_to_error::Error<serde_yaml::Error>) -> Vec<PathStep> {
    let mut steps: Vec<PathStep> = Vec::new();
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => steps.push(PathStep::Index(*index)),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                steps.push(PathStep::Key(key.clone()))
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let raw = e.inner().to_string();
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = raw.split_once(prefix).map(|(_, r)| r) {
            if let Some((field, _)) = rest.split_once('`') {
                if steps.last() != Some(&PathStep::Key(field.to_string())) {
                    steps.push(PathStep::Key(field.to_string()));
                }
            }
        }
    }
    steps
}

fn steps_path(steps: &[PathStep]) -> String {
    let mut path = String::new();
    for s in steps {
        match s {
            PathStep::Index(i) => path.push_str(&format!("[{i}]")),
            PathStep::Key(k) => path = key_path(&path, k),
        }
    }
    path
}

/// Sets (or, with `None`, removes) the value at `steps`. False when there is no such place.
fn set_at(
    value: &mut serde_yaml::Value,
    steps: &[PathStep],
    to: Option<serde_yaml::Value>,
) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut v = value;
    for s in parents {
        let next = match (s, v) {
            (PathStep::Key(k), serde_yaml::Value::Mapping(m)) => m.get_mut(k.as_str()),
            (PathStep::Index(i), serde_yaml::Value::Sequence(q)) => q.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match (last, v, to) {
        (PathStep::Key(k), serde_yaml::Value::Mapping(m), Some(to)) => {
            m.insert(serde_yaml::Value::String(k.clone()), to);
            true
        }
        (PathStep::Key(k), serde_yaml::Value::Mapping(m), None) => {
            m.remove(k.as_str());
            true
        }
        (PathStep::Index(i), serde_yaml::Value::Sequence(q), Some(to)) if *i < q.len() => {
            q[*i] = to;
            true
        }
        (PathStep::Index(i), serde_yaml::Value::Sequence(q), None) if *i < q.len() => {
            // Removing an item would renumber the rest: stand in an empty mapping instead.
            q[*i] = serde_yaml::Value::Mapping(Default::default());
            true
        }
        _ => false,
    }
}

/// Parses a single YAML document of type `T` (the configuration file), errors located.
pub fn parse_one<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ManifestError> {
    let err = |(line, column): (usize, usize), path: String, message: String| ManifestError {
        file: file.to_string(),
        line,
        column,
        path,
        message,
    };
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        err(
            at,
            String::new(),
            format!("invalid YAML: {}", strip_location(&e.to_string())),
        )
    })?;
    let value = if value.is_null() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let (path, message) = describe_serde_error(&e);
        let at = PositionIndex::build(text).locate(0, &path);
        err(at, path, message)
    })
}

/// The rules one document must satisfy on its own.
fn document_rules(m: &Manifest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if m.api_version != API_VERSION {
        out.push((
            "apiVersion".into(),
            format!(
                "unknown apiVersion {:?}; expected {API_VERSION}",
                m.api_version
            ),
        ));
    }
    if let Some(msg) = name_problem(&m.metadata.name) {
        out.push(("metadata.name".into(), msg));
    }
    let md = &m.metadata;
    if m.kind != Kind::ImportedSegment && m.source.is_some() {
        out.push((
            "source".into(),
            "only an ImportedSegment has a source; remove it, or make this kind: ImportedSegment"
                .into(),
        ));
    }
    match m.kind {
        Kind::ImportedSegment => {
            match (&md.application, &md.application_ref) {
                (None, None) => out.push((
                    "metadata".into(),
                    "an ImportedSegment needs metadata.application (an application id) or metadata.applicationRef (an Application manifest's name)".into(),
                )),
                (Some(_), Some(_)) => out.push((
                    "metadata.applicationRef".into(),
                    "give metadata.application or metadata.applicationRef, not both".into(),
                )),
                (Some(id), None) if !is_app_id(id) => out.push((
                    "metadata.application".into(),
                    format!("{id:?} is not an application id; expected 32 lowercase hex characters"),
                )),
                _ => {}
            }
            if md.adopt.is_some() {
                out.push((
                    "metadata.adopt".into(),
                    "an ImportedSegment cannot adopt a segment; import it under a new name".into(),
                ));
            }
            if m.spec.dimensions.is_some() || m.spec.segment_groups.is_some() {
                out.push((
                    "spec".into(),
                    "an ImportedSegment's spec has only Name and tags: its endpoints come from source; criteria belong in a Segment that builds on it by Ref".into(),
                ));
            }
            if m.spec.name.as_deref().is_none_or(str::is_empty) {
                out.push((
                    "spec.Name".into(),
                    "missing: an imported segment needs a Name".into(),
                ));
            }
            match &m.source {
                None => out.push(("source".into(), "missing: an ImportedSegment names the file its endpoints come from (source.url, source.format)".into())),
                Some(src) => {
                    if src.url.is_empty() {
                        out.push(("source.url".into(), "expected s3://bucket/key or a path relative to this file".into()));
                    } else if src.url.contains("://") && !src.url.starts_with("s3://") && !src.url.starts_with("file://") {
                        out.push(("source.url".into(), format!("{:?}: expected s3://bucket/key, file:///path, or a path relative to this file", crate::text::safe(&src.url))));
                    } else if src.url.starts_with("s3://") && src.url["s3://".len()..].split('/').next().is_none_or(str::is_empty) {
                        out.push(("source.url".into(), "no bucket; expected s3://bucket/key".into()));
                    }
                    let lower = src.url.to_ascii_lowercase();
                    if [".gz", ".zip", ".bz2", ".zst", ".xz"].iter().any(|e| lower.ends_with(e)) {
                        out.push(("source.url".into(), "Pinpoint imports no compressed files; point at the uncompressed file".into()));
                    }
                }
            }
            if let Some(tags) = &m.spec.tags {
                for k in tags.keys().filter(|k| k.starts_with(crate::TAG_PREFIX)) {
                    out.push((
                        key_path("spec.tags", k),
                        format!("tag keys starting with {:?} are reserved for segmentctl's ownership tags", crate::TAG_PREFIX),
                    ));
                }
                for v in validate::tags_rules("spec.tags", tags) {
                    out.push((v.path, v.message));
                }
            }
        }
        Kind::Segment => {
            match (&md.application, &md.application_ref) {
                (None, None) => out.push((
                    "metadata".into(),
                    "a Segment needs metadata.application (an application id) or metadata.applicationRef (an Application manifest's name)".into(),
                )),
                (Some(_), Some(_)) => out.push((
                    "metadata.applicationRef".into(),
                    "give metadata.application or metadata.applicationRef, not both".into(),
                )),
                (Some(id), None) if !is_app_id(id) => out.push((
                    "metadata.application".into(),
                    format!("{id:?} is not an application id; expected 32 lowercase hex characters, as the Pinpoint console's Project ID"),
                )),
                _ => {}
            }
            if let Some(adopt) = &md.adopt {
                if adopt.is_empty() {
                    out.push((
                        "metadata.adopt".into(),
                        "expected the id of the segment to adopt".into(),
                    ));
                }
            }
            for v in validate::write_segment_request(&m.spec, Context::Manifest) {
                out.push((prefixed("spec", &v.path), v.message));
            }
            if let Some(tags) = &m.spec.tags {
                for k in tags.keys().filter(|k| k.starts_with(crate::TAG_PREFIX)) {
                    out.push((
                        key_path("spec.tags", k),
                        format!("tag keys starting with {:?} are reserved for segmentctl's ownership tags", crate::TAG_PREFIX),
                    ));
                }
            }
        }
        Kind::Application => {
            for (field, set) in [
                ("metadata.application", md.application.is_some()),
                ("metadata.applicationRef", md.application_ref.is_some()),
                ("metadata.adopt", md.adopt.is_some()),
                ("metadata.protect", md.protect),
            ] {
                if set {
                    out.push((
                        field.into(),
                        "not used by an Application manifest; remove it".into(),
                    ));
                }
            }
            if m.spec.dimensions.is_some() || m.spec.segment_groups.is_some() {
                out.push((
                    "spec".into(),
                    "an Application spec has only Name and tags; segment criteria belong in a Segment manifest".into(),
                ));
            }
            if let Some(tags) = &m.spec.tags {
                for v in validate::tags_rules("spec.tags", tags) {
                    out.push((v.path, v.message));
                }
            }
        }
    }
    out
}

fn prefixed(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

/// Why a `metadata.name` is invalid, if it is.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!ok).then(|| {
        format!(
            "invalid name {name:?}; expected lowercase letters, digits and '-' (not first or last), at most 63 characters"
        )
    })
}

pub fn is_app_id(id: &str) -> bool {
    id.len() == 32
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// serde_yaml appends " at line N column M"; we print the location in front instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Turns a serde error into (field path, message in the house style).
fn describe_serde_error(e: &serde_path_to_error::Error<serde_yaml::Error>) -> (String, String) {
    let mut path = String::new();
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => path = key_path(&path, key),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let mut raw = strip_location(&e.inner().to_string());
    // Parsing a document directly, serde_yaml names the parent path in front ("spec: …"); we
    // print our own path, so drop it.
    if let Some((prefix, rest)) = raw.split_once(": ") {
        if !prefix.contains(' ') && !prefix.is_empty() && path.starts_with(prefix) {
            raw = rest.to_string();
        }
    }
    // unknown field `Dimension`, expected one of `Name`, `Dimensions`
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let mut msg = format!("unknown field {field:?}");
            if !names.is_empty() {
                msg.push_str(&format!("; expected {}", one_of(&names)));
            }
            if let Some(best) = closest(field, &names) {
                msg.push_str(&format!(" (did you mean {best}?)"));
            }
            let already = path.ends_with(field);
            return (
                if already {
                    path
                } else {
                    key_path(&path, field)
                },
                msg,
            );
        }
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        return (path, format!("missing required field {field:?}"));
    }
    (path, raw)
}

/// Where each field path of each document is written, from the YAML events.
pub struct PositionIndex {
    /// (document number, field path) → (line, column), both 1-based.
    at: HashMap<(usize, String), (usize, usize)>,
    /// The line each document starts on, by document number.
    starts: Vec<usize>,
    /// The byte offset of each line's start.
    line_starts: Vec<usize>,
}

impl PositionIndex {
    fn build(text: &str) -> Self {
        use yaml_rust2::parser::{Event, Parser};
        enum Frame {
            Map { path: String, key: Option<String> },
            Seq { path: String, next: usize },
        }
        let mut at = HashMap::new();
        let mut starts = Vec::new();
        // Line breaks as the YAML parser counts them: `\r\n`, a lone `\r`, or `\n`.
        let bytes = text.as_bytes();
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(
                memchr::memchr2_iter(b'\n', b'\r', bytes)
                    .filter(|&i| !(bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n')))
                    .map(|i| i + 1),
            )
            .collect();
        let mut parser = Parser::new_from_str(text);
        let mut doc: usize = 0;
        let mut started = false;
        let mut stack: Vec<Frame> = Vec::new();
        // The path a value about to start takes, and record its position.
        fn child_path(stack: &mut [Frame]) -> Option<String> {
            match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Map { path, key }) => key.take().map(|k| key_path(path, &k)),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    Some(p)
                }
            }
        }
        while let Ok((event, mark)) = parser.next_token() {
            let pos = (mark.line(), mark.col() + 1);
            match event {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    if started {
                        doc += 1;
                    }
                    started = true;
                    stack.clear();
                    starts.push(mark.line());
                }
                Event::DocumentEnd => {}
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_map = matches!(event, Event::MappingStart(..));
                    let path = child_path(&mut stack).unwrap_or_default();
                    at.entry((doc, path.clone())).or_insert(pos);
                    stack.push(if is_map {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { path, key }) = stack.last_mut() {
                        if key.is_none() {
                            // A key: the field is located where its key is written.
                            at.entry((doc, key_path(path, &value))).or_insert(pos);
                            *key = Some(value);
                            continue;
                        }
                    }
                    if let Some(p) = child_path(&mut stack) {
                        at.entry((doc, p)).or_insert(pos);
                    }
                }
                Event::Alias(_) => {
                    if let Some(p) = child_path(&mut stack) {
                        at.entry((doc, p)).or_insert(pos);
                    }
                }
                Event::Nothing | Event::StreamStart => {}
            }
        }
        Self {
            at,
            starts,
            line_starts,
        }
    }

    /// The position of `path`, or of its nearest written ancestor.
    fn locate(&self, doc: usize, path: &str) -> (usize, usize) {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.at.get(&(doc, p.clone())) {
                return *pos;
            }
            if p.is_empty() {
                return (1, 1);
            }
            p = parent_path(&p);
        }
    }
}

/// `a.b[0].c` → `a.b[0]` → `a.b` → `a` → ``.
fn parent_path(path: &str) -> String {
    if path.ends_with(']') {
        // Either an index `[3]` or a quoted key `["x.y"]`.
        if let Some(i) = path.rfind('[') {
            return path[..i].to_string();
        }
    }
    match path.rfind('.') {
        Some(i) => path[..i].to_string(),
        None => String::new(),
    }
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

/// The JSON Schema of a manifest document, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Manifest)).unwrap_or_default()
}

/// Renders manifests as one YAML stream (used by `import`).
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (i, m) in manifests.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(m)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        load_sources(&[Source {
            name: "m.yaml".into(),
            bytes: text.as_bytes().to_vec().into(),
        }])
    }

    fn errors(text: &str) -> Vec<String> {
        load(text).errors.iter().map(|e| e.to_string()).collect()
    }

    const HEAD: &str = "apiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: vip\n  application: 0123456789abcdef0123456789abcdef\n";

    #[test]
    fn an_unknown_enum_value_is_located_at_its_key_with_a_suggestion() {
        let text = format!("{HEAD}spec:\n  Dimensions:\n    Demographic:\n      Platform:\n        DimensionType: INCLUDE\n        Values: [ios]\n");
        assert_eq!(
            errors(&text),
            ["m.yaml:10:9: spec.Dimensions.Demographic.Platform.DimensionType: unknown value \"INCLUDE\"; expected INCLUSIVE or EXCLUSIVE (did you mean INCLUSIVE?)"]
        );
    }

    #[test]
    fn an_unknown_field_suggests_the_closest_known_one() {
        let text = format!("{HEAD}spec:\n  Dimension: {{}}\n");
        assert_eq!(
            errors(&text),
            ["m.yaml:7:3: spec.Dimension: unknown field \"Dimension\"; expected Name, Dimensions, SegmentGroups or tags (did you mean Dimensions?)"]
        );
    }

    #[test]
    fn every_semantic_error_in_a_document_is_reported_in_order() {
        let text = format!(
            "{HEAD}spec:\n  Dimensions:\n    Location:\n      GPSPoint:\n        Coordinates: {{Latitude: 91, Longitude: 0}}\n        RangeInKilometers: -1\n    Attributes:\n      signup:\n        AttributeType: BETWEEN\n        Values: [\"2026-01-01T00:00:00Z\"]\n"
        );
        let e = errors(&text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("m.yaml:10:23: spec.Dimensions.Location.GPSPoint.Coordinates.Latitude: must be between -90 and 90"), "{e:?}");
        assert!(e[1].starts_with("m.yaml:11:9: spec.Dimensions.Location.GPSPoint.RangeInKilometers: must be greater than 0"), "{e:?}");
        assert!(e[2].starts_with("m.yaml:15:9: spec.Dimensions.Attributes.signup.Values: BETWEEN takes exactly two values"), "{e:?}");
    }

    #[test]
    fn documents_are_numbered_across_separators_and_empty_ones_are_skipped() {
        let text = format!("---\n{HEAD}---\n---\n{}", HEAD.replace("vip", "Bad_Name"));
        let l = load(&text);
        assert_eq!(l.documents.len(), 2);
        assert_eq!(
            l.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            ["m.yaml:12:3: metadata.name: invalid name \"Bad_Name\"; expected lowercase letters, digits and '-' (not first or last), at most 63 characters"]
        );
    }

    #[test]
    fn every_failing_document_of_a_long_file_is_located_on_its_own_line() {
        // 16,000 documents that each fail to read: each is located from the file's one
        // position pass (re-reading from the file's start took 20.9 s for this file).
        let n = 16_000;
        let text = "---\nkind: Segmnet\n".repeat(n);
        let l = load(&text);
        let kinds: Vec<_> = l.errors.iter().filter(|e| e.path == "kind").collect();
        assert_eq!(kinds.len(), n);
        for (i, e) in kinds.iter().enumerate() {
            assert_eq!((e.line, e.column), (2 * i + 2, 1), "{e}");
        }
    }

    #[test]
    fn every_mistake_of_a_document_is_reported_and_its_references_checked() {
        let text = format!(
            "{}spec:\n  Dimensions:\n    Demographic:\n      Platform:\n        DimensionType: include\n        Values: [iOS]\n        Extra: 1\n    Attributes:\n      tier:\n        AttributeType: inclusive\n        Values: [gold]\n",
            HEAD
        );
        let l = load(&text);
        let shown: Vec<String> = l
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.line, e.path))
            .collect();
        assert_eq!(
            shown,
            [
                "10: spec.Dimensions.Demographic.Platform.DimensionType",
                "12: spec.Dimensions.Demographic.Platform.Extra",
                "15: spec.Dimensions.Attributes.tier.AttributeType",
            ]
        );
        // The document is kept, recovered, so its references are checked in the same run,
        // and never planned.
        assert!(l.documents.is_empty());
        assert_eq!(l.recovered.len(), 1);
        assert_eq!(l.recovered[0].document.manifest.metadata.name, "vip");
    }

    #[test]
    fn a_failing_document_in_a_file_with_carriage_returns_is_never_dropped() {
        for eol in ["\r", "\r\r\n", "\r\n"] {
            let good = format!("{HEAD}spec:\n  Name: VIP\n").replace('\n', eol);
            let bad = HEAD
                .replace("vip", "two")
                .replace("Segment", "Segmnet")
                .replace('\n', eol);
            let l = load(&format!("{good}---{eol}{bad}spec: {{}}{eol}"));
            assert_eq!(l.documents.len(), 1, "{eol:?}");
            assert!(
                l.errors
                    .iter()
                    .any(|e| e.path == "kind" && e.message.contains("Segmnet")),
                "{eol:?}: {:?}",
                l.errors
            );
        }
    }

    #[test]
    fn a_number_where_a_string_belongs_is_not_a_mistake_when_another_is_reported() {
        let text = format!(
            "{HEAD}spec:\n  Name: 2024\n  Dimensions:\n    Attributes:\n      tier:\n        AttributeType: inclusive\n        Values: [42, 1.10]\n"
        );
        let l = load(&text);
        let paths: Vec<&str> = l.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.Dimensions.Attributes.tier.AttributeType"],
            "{:?}",
            l.errors
        );
    }

    #[test]
    fn hostile_inputs_give_errors_not_panics() {
        for text in [
            "",
            "- a\n- b\n",
            "just a string",
            "\u{0}\u{1}\u{2}",
            "a: &x [*x]",
            "key: [unclosed",
            &"[".repeat(10_000),
            "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
        ] {
            let l = load(text);
            assert!(l.documents.is_empty());
            if !text.is_empty() {
                assert!(!l.errors.is_empty(), "no error for {text:?}");
            }
        }
        let bin = load_sources(&[Source {
            name: "b.yaml".into(),
            bytes: vec![b'a', b':', b' ', 0xff, 0xfe].into(),
        }]);
        assert_eq!(
            bin.errors[0].to_string(),
            "b.yaml:1:4: the file is not UTF-8 text; manifests are UTF-8 YAML"
        );
    }

    #[test]
    fn parent_paths_walk_up_indexes_and_quoted_keys() {
        assert_eq!(parent_path("a.b[0].c"), "a.b[0]");
        assert_eq!(parent_path("a.b[0]"), "a.b");
        assert_eq!(parent_path("a[\"x.y\"]"), "a");
        assert_eq!(parent_path("a"), "");
    }
}
