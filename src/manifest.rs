//! Reading manifests: YAML files in a folder become typed documents, or located errors.
//!
//! Every error names file, line, column, the field path, what was found and what was
//! expected. serde_yaml does the typed parsing; a light pass over the YAML events (with
//! their positions) maps a field path back to where it is written, so that rules checked
//! after parsing are located as precisely as those serde checks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{closest, one_of, Tags, WriteSegmentRequest};
use crate::validate::{self, key_path, Context};

pub const API_VERSION: &str = "segmentctl/v1";
/// The configuration file at a folder's root, which is not a manifest.
pub const CONFIG_FILE: &str = "segmentctl.yaml";

/// What kind of object a manifest declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
pub enum Kind {
    Segment,
    Application,
}

impl Kind {
    const ALL: &'static [&'static str] = &["Segment", "Application"];
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "Segment" => Ok(Kind::Segment),
            "Application" => Ok(Kind::Application),
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
    /// `Segment`, or `Application` to bootstrap an application on a fresh target.
    pub kind: Kind,
    pub metadata: Metadata,
    /// For a Segment: the API's WriteSegmentRequest, verbatim (PascalCase, `tags` lowercase).
    /// For an Application: `Name` and `tags`.
    #[serde(default)]
    pub spec: WriteSegmentRequest,
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
pub struct SourceText {
    pub name: String,
    text: String,
    index: std::sync::OnceLock<PositionIndex>,
}

impl SourceText {
    fn new(name: &str, text: &str) -> Self {
        Self {
            name: name.to_string(),
            text: text.to_string(),
            index: std::sync::OnceLock::new(),
        }
    }

    /// (line, column) of `path` in document `doc`, or of its nearest written ancestor.
    pub fn locate(&self, doc: usize, path: &str) -> (usize, usize) {
        self.index
            .get_or_init(|| PositionIndex::build(&self.text))
            .locate(doc, path)
    }
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
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
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
    /// The files as read (set by [`load_dir`]), so a caller can keep them.
    pub sources: Vec<Source>,
}

/// A file's text, named as the user should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Lists the manifest files under `dir`: `*.yaml` / `*.yml`, recursively, in a stable order,
/// skipping hidden entries (`.git`, `.segmentctl`) and the configuration file at the root.
///
/// Errors: the folder cannot be read (missing, not a folder, no permission).
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a folder",
        ));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk(dir, dir, &mut out, &mut seen)?;
    out.sort();
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    // Following symlinked folders (git-sync publishes revisions that way) without looping.
    if let Ok(canonical) = dir.canonicalize() {
        if !seen.insert(canonical) {
            return Ok(());
        }
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a dangling symlink, or a file removed while we looked
        };
        if meta.is_dir() {
            walk(root, &path, out, seen)?;
        } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
            && !(dir == root && name == CONFIG_FILE)
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every manifest file under `dir`: the files' bytes, and an error per file that
/// could not be read.
///
/// Errors: the folder itself cannot be read.
pub fn read_dir(dir: &Path) -> Result<(Vec<Source>, Vec<ManifestError>), ManifestError> {
    let shown = dir.display().to_string();
    let files = manifest_files(dir).map_err(|e| ManifestError {
        file: shown.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message: match e.kind() {
            std::io::ErrorKind::NotFound => "the folder does not exist".to_string(),
            _ => format!("cannot read the folder: {e}"),
        },
    })?;
    let mut sources = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for path in files {
        let name = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => sources.push(Source { name, bytes }),
            Err(e) => errors.push(ManifestError {
                file: name,
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }),
        }
    }
    Ok((sources, errors))
}

/// Reads and parses every manifest under `dir`.
pub fn load_dir(dir: &Path) -> Result<Loaded, ManifestError> {
    let (sources, errors) = read_dir(dir)?;
    let mut loaded = load_sources(&sources);
    loaded.errors.extend(errors);
    loaded.errors.sort();
    loaded.sources = sources;
    Ok(loaded)
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
    let source = std::sync::Arc::new(SourceText::new(file, text));
    for (doc_no, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = |path: &str| source.locate(doc_no, path);
        // The happy path parses once, straight into the typed manifest; only a failure
        // parses the document again, generically, to say what is wrong with it.
        let typed = serde_path_to_error::deserialize::<_, Manifest>(doc);
        let manifest = match typed {
            Ok(m) => m,
            Err(typed_err) => {
                let generic = serde_yaml::Deserializer::from_str(text)
                    .nth(doc_no)
                    .map(serde_yaml::Value::deserialize);
                match generic {
                    Some(Err(e)) => {
                        let (line, column) = e
                            .location()
                            .map(|l| (l.line(), l.column()))
                            .unwrap_or((1, 1));
                        out.errors.push(ManifestError {
                            file: file.clone(),
                            line,
                            column,
                            path: String::new(),
                            message: format!("invalid YAML: {}", strip_location(&e.to_string())),
                        });
                        return; // the rest of the stream cannot be trusted
                    }
                    Some(Ok(v)) if v.is_null() => continue, // an empty document, e.g. after a trailing `---`
                    Some(Ok(v)) if !v.is_mapping() => {
                        let (line, column) = at("");
                        out.errors.push(ManifestError {
                            file: file.clone(),
                            line,
                            column,
                            path: String::new(),
                            message: format!(
                                "a manifest is a mapping with apiVersion, kind, metadata and spec; found {}",
                                yaml_kind(&v)
                            ),
                        });
                        continue;
                    }
                    _ => {
                        let (path, message) = describe_serde_error(&typed_err);
                        let (line, column) = at(&path);
                        out.errors.push(ManifestError {
                            file: file.clone(),
                            line,
                            column,
                            path,
                            message,
                        });
                        continue;
                    }
                }
            }
        };
        let mut problems = document_rules(&manifest);
        if problems.len() > 1 {
            problems.sort_by_key(|(p, _)| at(p));
        }
        for (path, message) in problems {
            let (line, column) = at(&path);
            out.errors.push(ManifestError {
                file: file.clone(),
                line,
                column,
                path,
                message,
            });
        }
        out.documents.push(Document {
            file: file.clone(),
            doc: doc_no,
            source: source.clone(),
            manifest,
        });
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
    match m.kind {
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
}

impl PositionIndex {
    fn build(text: &str) -> Self {
        use yaml_rust2::parser::{Event, Parser};
        enum Frame {
            Map { path: String, key: Option<String> },
            Seq { path: String, next: usize },
        }
        let mut at = HashMap::new();
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
        Self { at }
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
            bytes: text.as_bytes().to_vec(),
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
            bytes: vec![b'a', b':', b' ', 0xff, 0xfe],
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
