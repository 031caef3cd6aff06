//! Where each field path of a file's documents is written: the position index, built from
//! the YAML events only when an error needs a place.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use super::parse::invalid_yaml;
use super::Source;
use crate::model::validate::key_path;

/// (line, column), both 1-based.
type Position = (usize, usize);

/// A file's text, kept so that errors found later (across documents) can be located. The
/// position index is built only when an error needs it: a clean load never pays for it.
/// The text is shared with the [`Source`] it was read from, never copied.
pub struct SourceText {
    pub name: String,
    bytes: std::sync::Arc<Vec<u8>>,
    index: std::sync::OnceLock<PositionIndex>,
}

impl SourceText {
    pub(super) fn new(source: &Source) -> Self {
        Self {
            name: source.name.clone(),
            bytes: source.bytes.clone(),
            index: std::sync::OnceLock::new(),
        }
    }

    /// The text of one file that is not a manifest source (the configuration file).
    pub fn of_text(name: &str, text: &str) -> Self {
        Self::new(&Source {
            name: name.to_string(),
            bytes: std::sync::Arc::new(text.as_bytes().to_vec()),
        })
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

    /// The first key document `doc` writes twice in one mapping: its field path, where it
    /// is written again, and where first.
    pub(super) fn written_twice(&self, doc: usize) -> Option<(&str, Position, Position)> {
        let index = self.index();
        index
            .again
            .iter()
            .find(|(d, _, _)| *d == doc)
            .map(|(_, path, pos)| (path.as_str(), *pos, index.locate(doc, path)))
    }

    /// Document `doc` of `text` (this source's text) read generically, on its own: its lines
    /// are known from the one position pass over the file, so no document is read twice
    /// from the start of the file.
    ///
    /// Errors: the document is not valid YAML, located in the file, with the message.
    pub(super) fn document_value(
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

impl fmt::Debug for SourceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceText")
            .field("name", &self.name)
            .finish()
    }
}

/// Where each field path of each document is written, from the YAML events.
pub struct PositionIndex {
    /// (document number, field path) → (line, column), both 1-based.
    at: HashMap<(usize, String), (usize, usize)>,
    /// A key written again in its mapping: (document number, field path, position), in the
    /// order written.
    again: Vec<(usize, String, (usize, usize))>,
    /// The line each document starts on, by document number.
    starts: Vec<usize>,
    /// The byte offset of each line's start.
    line_starts: Vec<usize>,
}

impl PositionIndex {
    pub(super) fn build(text: &str) -> Self {
        use yaml_rust2::parser::{Event, Parser};
        enum Frame {
            Map { path: String, key: Option<String> },
            Seq { path: String, next: usize },
        }
        let mut at = HashMap::new();
        let mut again = Vec::new();
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
                            // A key: the field is located where its key is written (the
                            // first time; a key written again is recorded as such).
                            let field = key_path(path, &value);
                            if at.contains_key(&(doc, field.clone())) {
                                again.push((doc, field, pos));
                            } else {
                                at.insert((doc, field), pos);
                            }
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
            again,
            starts,
            line_starts,
        }
    }

    /// The position of `path`, or of its nearest written ancestor.
    pub(super) fn locate(&self, doc: usize, path: &str) -> (usize, usize) {
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
pub(super) fn parent_path(path: &str) -> String {
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
