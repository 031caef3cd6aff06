//! Recovery: a document that does not read is read again, mistake after mistake, with the
//! fields at fault removed or stood in for, so that every mistake is reported in one run.

use std::collections::HashMap;

use super::parse::describe_serde_error;
use super::Document;
use crate::model::validate::key_path;

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
pub(super) fn related(a: &str, b: &str) -> bool {
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

/// The most typed readings one document's recovery makes.
const RECOVERY_ATTEMPTS: usize = 64;

/// What [`recover`] found.
pub(super) struct Recovery<T> {
    /// Every mistake found, in the order found.
    pub(super) errors: Vec<(String, String)>,
    /// The document with the mistakes removed or stood in for, when that reads.
    pub(super) manifest: Option<T>,
    /// The paths removed or stood in for.
    pub(super) touched: Vec<String>,
}

/// Reads a document that does not read as a manifest, mistake after mistake: each time the
/// typed reading stops, the mistake is recorded and the field at fault is removed (or, when
/// it is required, stood in for by an empty value), and the reading starts again. serde stops
/// at the first mistake; this finds every one that a reading can find.
pub(super) fn recover<T: serde::de::DeserializeOwned>(mut value: serde_yaml::Value) -> Recovery<T> {
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
        let e = match serde_path_to_error::deserialize::<_, T>(serde_yaml::Deserializer::from_str(
            &yaml,
        )) {
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
