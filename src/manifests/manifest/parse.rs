//! Parsing files into manifests: the typed reading of every document, the rules each
//! document must satisfy checked after it, and serde's errors said in the house style.

use serde::Deserialize;

use super::position::{PositionIndex, SourceText};
use super::recover::{recover, related, Recovered};
use super::rules::document_rules;
use super::{Document, Loaded, Manifest, ManifestError, Source};
use crate::model::validate::key_path;
use crate::model::{closest, one_of};

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
    load_sources_at(sources, crate::par::Priority::Normal)
}

/// As [`load_sources`], the parsing threads at `priority`.
pub fn load_sources_at(sources: &[Source], priority: crate::par::Priority) -> Loaded {
    // A thread per core, each with at least 64 KiB to parse.
    let bytes: usize = sources.iter().map(|s| s.bytes.len()).sum();
    let threads = crate::par::cores().min(bytes.div_ceil(64 * 1024));
    let chunk = sources.len().div_ceil(threads.max(1)).max(1);
    let chunks: Vec<&[Source]> = sources.chunks(chunk).collect();
    let parts = crate::par::map_at(&chunks, threads, priority, |part| {
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
        loaded.definitions.extend(part.definitions);
        loaded.domains.extend(part.domains);
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
                // A key written twice is well-formed YAML: said where it is written again,
                // and the documents after it are read as usual.
                Err((_, message)) if message.contains("duplicate entry") => {
                    match source.written_twice(doc_no) {
                        Some((path, again, (first, _))) => out.errors.push(error(
                            again,
                            path.to_string(),
                            format!(
                                "written twice in its mapping (first on line {first}); keep one"
                            ),
                        )),
                        None => out.errors.push(error(at(""), String::new(), message)),
                    }
                    continue;
                }
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
                Ok(v) if super::domain::is_domain(&v) || super::definition::is_definition(&v) => {
                    read_apart(v, file, doc_no, &source, out);
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

/// Reads a document of a Customer Profiles kind (`Domain`, `SegmentDefinition`), read
/// apart from Pinpoint's: into `out`, or its every mistake, located.
fn read_apart(
    v: serde_yaml::Value,
    file: &str,
    doc: usize,
    source: &std::sync::Arc<SourceText>,
    out: &mut Loaded,
) {
    let mut errors = if super::domain::is_domain(&v) {
        let (manifest, errors) = super::domain::read(v);
        let doc = manifest.map(|manifest| super::DomainDoc {
            file: file.to_string(),
            doc,
            source: source.clone(),
            manifest,
        });
        out.domains.extend(doc);
        errors
    } else {
        let read = super::definition::read(v);
        let doc = read.manifest.map(|(manifest, refs)| super::DefinitionDoc {
            file: file.to_string(),
            doc,
            source: source.clone(),
            manifest,
            refs,
        });
        out.definitions.extend(doc);
        read.errors
    };
    if errors.len() > 1 {
        errors.sort_by_key(|(p, _)| source.locate(doc, p));
    }
    for (path, message) in errors {
        out.errors
            .push(super::located(file, source, doc, &path, message));
    }
}

/// Whether document `doc` of the stream is empty, read as the typed reading read it.
fn stream_document_is_null(text: &str, doc: usize) -> bool {
    serde_yaml::Deserializer::from_str(text)
        .nth(doc)
        .map(serde_yaml::Value::deserialize)
        .is_some_and(|v| v.is_ok_and(|v| v.is_null()))
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

/// Reads `text` as one `T`, as [`parse_one`] does, but reports every mistake a reading can
/// find ([`recover`]), each located, rather than the first only.
pub fn parse_all<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, Vec<ManifestError>> {
    let first = match parse_one(file, text) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // A YAML syntax error stops the reading: it is the one mistake to report.
    let value = match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(v) if !v.is_null() => v,
        _ => return Err(vec![first]),
    };
    let r = recover::<T>(value);
    if r.errors.is_empty() {
        return Err(vec![first]);
    }
    let source = SourceText::of_text(file, text);
    let mut errors: Vec<ManifestError> = r
        .errors
        .into_iter()
        .map(|(path, message)| super::located(file, &source, 0, &path, message))
        .collect();
    errors.sort_by_key(|e| (e.line, e.column));
    Err(errors)
}

/// A YAML syntax error read from text starting on line `from_line` of its file: its position
/// in the file, and the message.
pub(super) fn invalid_yaml(e: serde_yaml::Error, from_line: usize) -> ((usize, usize), String) {
    let position = e
        .location()
        .map(|l| (l.line() + from_line - 1, l.column()))
        .unwrap_or((from_line, 1));
    (
        position,
        format!("invalid YAML: {}", strip_location(&e.to_string())),
    )
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
pub(super) fn describe_serde_error(
    e: &serde_path_to_error::Error<serde_yaml::Error>,
) -> (String, String) {
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
