//! The one reader of endpoint import files, shared by the server's import jobs and by
//! `estimate` / `plan --endpoints`: a row the server refuses is never counted here.
//!
//! A file is CSV (a header of dotted column names, `Location.Country`, then one record a row)
//! or newline-delimited JSON (one EndpointRequest a line). It is streamed, never held whole:
//! a line longer than [`MAX_LINE`] bytes is a refused row, skipped unread, and so is a CSV
//! record (a line joined with the next ones while a quoted field is open) that grows longer.
//! A UTF-8 byte order mark before the first line is dropped, line ends are `\n` or `\r\n`,
//! and a line that is not UTF-8 is a refused row. CSV records are split by `csv-core` (RFC
//! 4180: `"` around a field that holds `,`, `"` or a line end, `""` for a quote inside; a
//! quote inside an unquoted field is text). Rows are decoded strictly (duplicate keys,
//! unknown fields and out-of-range numbers refused) and checked as UpdateEndpoint items.
//!
//! No error quotes the file: a header's columns are named by position, a row's problem
//! without its values ([`crate::text::without_content`]). The first line of a file that is
//! not an endpoint file may be anything (a secret).
//!
//! The reader does no I/O of its own: [`Reader::push`] takes the bytes a buffered reader
//! holds, so the same code serves the server's async streams ([`Reader::next_row_async`]) and
//! local files ([`Reader::next_row`]).

use serde_json::{json, Value};

use crate::model::endpoint::{derived_id, Endpoint, Origin};

/// A line (or CSV record) longer than this is a refused row (an endpoint is at most 15 KB).
pub const MAX_LINE: usize = 64 * 1024;
/// Folders of an import source nest at most this deep.
pub const MAX_DEPTH: usize = 32;

/// How an import file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// One row of a file, read.
// Unboxed: a row is moved once, into a batch; a box would cost an allocation per row.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Row {
    /// A row the import takes: its (first) line, the endpoint's id (its `Id`, or derived from
    /// its channel and address) and the endpoint, its `Id` taken out.
    Endpoint {
        line: u64,
        id: String,
        endpoint: Endpoint,
    },
    /// A row refused: its (first) line, and why, with nothing of the row in it.
    Refused { line: u64, why: String },
}

/// Why a file cannot be read at all: its CSV header is longer than [`MAX_LINE`] or names a
/// column that is no endpoint field. Shown as `LINE: WHY`, after the file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {why}")]
pub struct FileError {
    pub line: u64,
    pub why: String,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What one line came to.
#[derive(Debug)]
enum Line {
    Text(u64, String),
    TooLong(u64),
    Bad(u64, &'static str),
    /// The end of the file.
    End,
}

/// Splits bytes into lines of at most [`MAX_LINE`] bytes held (plus the line end).
#[derive(Default)]
struct Lines {
    line: u64,
    buf: Vec<u8>,
    too_long: bool,
    any: bool,
}

impl Lines {
    /// Takes bytes from `chunk` (empty at the end of the file): how many it used, and the
    /// line they completed, if any.
    fn push(&mut self, chunk: &[u8]) -> (usize, Option<Line>) {
        if chunk.is_empty() {
            return (0, Some(if self.any { self.complete() } else { Line::End }));
        }
        self.any = true;
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !self.too_long {
            if self.buf.len() + take > MAX_LINE + 1 {
                self.too_long = true;
                self.buf = Vec::new();
            } else {
                self.buf.extend_from_slice(&chunk[..take]);
            }
        }
        (take, done.then(|| self.complete()))
    }

    fn complete(&mut self) -> Line {
        self.any = false;
        self.line += 1;
        if std::mem::take(&mut self.too_long) {
            return Line::TooLong(self.line);
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        // The next line starts at this one's size: one allocation a line, not one per
        // doubling of the buffer.
        let next = Vec::with_capacity(self.buf.len().next_power_of_two());
        let mut bytes = std::mem::replace(&mut self.buf, next);
        // A UTF-8 byte order mark (Excel's "CSV UTF-8") is not part of the first line.
        if self.line == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
            bytes.drain(..3);
        }
        match String::from_utf8(bytes) {
            Ok(s) => Line::Text(self.line, s),
            Err(_) => Line::Bad(self.line, "not UTF-8 text"),
        }
    }
}

/// A CSV record being read: `csv-core` fed line by line, its fields gathered.
struct Record {
    parser: csv_core::Reader,
    /// The first line of the record being read, if one is.
    start: Option<u64>,
    /// The record's text so far (its lines and the line ends between them).
    len: usize,
    out: Vec<u8>,
    nout: usize,
    ends: Vec<usize>,
    nend: usize,
}

impl Record {
    fn new() -> Self {
        Self {
            parser: parser(),
            start: None,
            len: 0,
            out: vec![0; 4096],
            nout: 0,
            ends: vec![0; 64],
            nend: 0,
        }
    }

    /// Feeds one line (without its end); true when the record is complete, false while a
    /// quoted field is open at the line's end.
    fn feed(&mut self, line: &str) -> bool {
        // An empty input would tell csv-core the file ended: a blank line is its line end.
        for input in [line.as_bytes(), b"\n"] {
            let mut input = input;
            while !input.is_empty() {
                let (res, nin, nout, nend) = self.parser.read_record(
                    input,
                    &mut self.out[self.nout..],
                    &mut self.ends[self.nend..],
                );
                input = &input[nin..];
                self.nout += nout;
                self.nend += nend;
                match res {
                    csv_core::ReadRecordResult::InputEmpty => {}
                    csv_core::ReadRecordResult::OutputFull => {
                        self.out.resize(self.out.len() * 2, 0);
                    }
                    csv_core::ReadRecordResult::OutputEndsFull => {
                        self.ends.resize(self.ends.len() * 2, 0);
                    }
                    // A record ends only at a line end outside quotes: the last byte fed.
                    csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => {
                        return true
                    }
                }
            }
        }
        false
    }

    /// The fields of the record just completed; ready for the next one.
    fn fields(&mut self) -> Vec<String> {
        let mut at = 0;
        let fields = self.ends[..self.nend]
            .iter()
            .map(|&end| {
                let f = String::from_utf8_lossy(&self.out[at..end]).into_owned();
                at = end;
                f
            })
            .collect();
        self.done();
        fields
    }

    /// Drops the record being read (cut short).
    fn abandon(&mut self) {
        self.parser = parser();
        self.done();
    }

    fn done(&mut self) {
        self.start = None;
        self.len = 0;
        self.nout = 0;
        self.nend = 0;
    }
}

/// A CSV parser for records split at `\n` (a line's `\r` is gone before it is fed).
fn parser() -> csv_core::Reader {
    let mut p = csv_core::ReaderBuilder::new()
        .terminator(csv_core::Terminator::Any(b'\n'))
        .build();
    // csv-core drops a byte order mark at its first read; the lines already dropped the one
    // a file may start with, so a blank line (which it skips) goes first and any other BOM
    // stays text.
    let _ = p.read_record(b"\n", &mut [0; 1], &mut [0; 1]);
    p
}

/// Reads the rows of one import file.
pub struct Reader {
    format: Format,
    lines: Lines,
    record: Record,
    header: Option<Vec<String>>,
}

/// What a line came to: a row, nothing yet (a blank line, the header, a record going on),
/// or the end.
#[allow(clippy::large_enum_variant)]
enum Step {
    Row(Row),
    Skip,
    End,
}

impl Reader {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            lines: Lines::default(),
            record: Record::new(),
            header: None,
        }
    }

    /// The next row of a local file; `None` at its end.
    pub fn next_row(&mut self, r: &mut impl std::io::BufRead) -> Result<Option<Row>, Error> {
        loop {
            let (used, out) = self.push(r.fill_buf()?)?;
            r.consume(used);
            if let Some(out) = out {
                return Ok(out);
            }
        }
    }

    /// The next row of a streamed file; `None` at its end.
    pub async fn next_row_async(
        &mut self,
        r: &mut (impl tokio::io::AsyncBufRead + Unpin),
    ) -> Result<Option<Row>, Error> {
        use tokio::io::AsyncBufReadExt as _;
        loop {
            let (used, out) = self.push(r.fill_buf().await?)?;
            r.consume(used);
            if let Some(out) = out {
                return Ok(out);
            }
        }
    }

    /// Takes bytes a buffered reader holds (none at the end of the file): how many it used,
    /// and, when they complete one, the next row (`Some(None)` at the end).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(usize, Option<Option<Row>>), FileError> {
        let (used, line) = self.lines.push(chunk);
        let out = match line.map(|l| self.take(l)).transpose()? {
            Some(Step::Row(row)) => Some(Some(row)),
            Some(Step::End) => Some(None),
            Some(Step::Skip) | None => None,
        };
        Ok((used, out))
    }

    fn take(&mut self, line: Line) -> Result<Step, FileError> {
        match self.format {
            Format::Json => Ok(match line {
                Line::Text(_, t) if t.trim().is_empty() => Step::Skip,
                Line::Text(n, t) => Step::Row(row(
                    n,
                    crate::model::strict::from_slice::<Endpoint>(t.as_bytes())
                        .map_err(|e| refusal(&e)),
                )),
                Line::TooLong(n) => Step::Row(too_long(n)),
                Line::Bad(n, why) => Step::Row(refused(n, why)),
                Line::End => Step::End,
            }),
            Format::Csv => match self.csv_record(line) {
                Some(Line::Text(n, _)) => self.csv_row(n),
                Some(Line::TooLong(n)) if self.header.is_none() => Err(FileError {
                    line: n,
                    why: format!("the header is longer than {MAX_LINE} bytes"),
                }),
                Some(Line::TooLong(n)) => Ok(Step::Row(too_long(n))),
                Some(Line::Bad(n, why)) => Ok(Step::Row(refused(n, why))),
                Some(Line::End) => Ok(Step::End),
                None => Ok(Step::Skip),
            },
        }
    }

    /// Joins a line to the CSV record: the record when it is complete (its text stays in
    /// the parser), a line that cuts it short (named by the record's first line), or `None`
    /// while a quoted field is open or the line is blank.
    fn csv_record(&mut self, line: Line) -> Option<Line> {
        let Some(start) = self.record.start else {
            return match line {
                Line::Text(_, t) if t.trim().is_empty() => None,
                Line::Text(n, t) => {
                    self.record.start = Some(n);
                    self.record.len = t.len();
                    if self.record.feed(&t) {
                        Some(Line::Text(n, String::new()))
                    } else {
                        None
                    }
                }
                other => Some(other),
            };
        };
        let cut = match line {
            Line::Text(_, more) => {
                self.record.len += 1 + more.len();
                if self.record.len <= MAX_LINE {
                    return self
                        .record
                        .feed(&more)
                        .then(|| Line::Text(start, String::new()));
                }
                Line::TooLong(start)
            }
            Line::TooLong(_) => Line::TooLong(start),
            Line::Bad(_, why) => Line::Bad(start, why),
            Line::End => Line::Bad(
                start,
                "a quoted field is not closed before the end of the file",
            ),
        };
        self.record.abandon();
        Some(cut)
    }

    /// The CSV record just completed: the header, or a row.
    fn csv_row(&mut self, line: u64) -> Result<Step, FileError> {
        let fields = self.record.fields();
        match &self.header {
            None => {
                check_header(&fields).map_err(|why| FileError { line, why })?;
                self.header = Some(fields);
                Ok(Step::Skip)
            }
            Some(cols) => Ok(Step::Row(row(line, csv_row(cols, &fields)))),
        }
    }
}

/// A decoded row, checked as an import row.
fn row(line: u64, parsed: Result<Endpoint, String>) -> Row {
    let checked = parsed.and_then(|e| match e.check_request("", Origin::Import) {
        Ok(()) => Ok(e),
        Err(bad) => Err(e.without_names(&bad.message)),
    });
    match checked {
        Ok(mut endpoint) => {
            let id = endpoint.id.take().unwrap_or_else(|| {
                derived_id(
                    endpoint.channel_type.as_deref().unwrap_or_default(),
                    endpoint.address.as_deref().unwrap_or_default(),
                )
            });
            Row::Endpoint { line, id, endpoint }
        }
        // Nothing of the row: whoever reads the job may not read the file.
        Err(why) => Row::Refused {
            line,
            why: crate::text::without_content(&why),
        },
    }
}

/// The names an endpoint record is written with (`EndpointRequest`'s fields, and those of
/// its `Demographic`, `Location` and `User`): every other key of a row is the file's content.
const FIELD_NAMES: &[&str] = &[
    "Address",
    "ApplicationId",
    "Attributes",
    "ChannelType",
    "CohortId",
    "CreationDate",
    "Demographic",
    "EffectiveDate",
    "EndpointStatus",
    "Id",
    "Location",
    "Metrics",
    "OptOut",
    "RequestId",
    "User",
    "AppVersion",
    "Locale",
    "Make",
    "Model",
    "ModelVersion",
    "Platform",
    "PlatformVersion",
    "Timezone",
    "City",
    "Country",
    "Latitude",
    "Longitude",
    "PostalCode",
    "Region",
    "UserAttributes",
    "UserId",
];

/// Why a JSON row did not read, with nothing of the row in it: the path keeps the record's
/// own field names and shows every other key (an attribute's, a misspelt field's) as `*`;
/// the message its quoted text as `…` ([`crate::text::without_content`]).
fn refusal(e: &crate::model::strict::Error) -> String {
    let message = crate::text::without_content(&e.inner.to_string());
    if e.path.is_empty() {
        return message;
    }
    let path: Vec<&str> = e
        .path
        .split('.')
        .map(|step| {
            let name = step.split('[').next().unwrap_or_default();
            if FIELD_NAMES.contains(&name) {
                name
            } else {
                "*"
            }
        })
        .collect();
    format!("{}: {message}", path.join("."))
}

fn too_long(line: u64) -> Row {
    refused(
        line,
        &format!("the row is longer than {MAX_LINE} bytes (an endpoint is at most 15 KB)"),
    )
}

fn refused(line: u64, why: &str) -> Row {
    Row::Refused {
        line,
        why: why.to_string(),
    }
}

/// A CSV column: where its value goes in the endpoint's JSON.
fn column_path(name: &str) -> Result<(Vec<&str>, Kind), String> {
    let parts: Vec<&str> = name.split('.').collect();
    let kind = match parts.as_slice() {
        ["Attributes", _] | ["User", "UserAttributes", _] => Kind::List,
        ["Metrics", _] | ["Location", "Latitude" | "Longitude"] => Kind::Number,
        ["ChannelType" | "Address" | "Id" | "OptOut" | "RequestId" | "EffectiveDate" | "EndpointStatus"] => Kind::Text,
        ["Demographic" | "Location", _] | ["User", "UserId"] => Kind::Text,
        _ => {
            return Err("not an endpoint field; expected ChannelType, Address, Id, OptOut, Demographic.*, Location.*, Attributes.*, Metrics.*, User.UserId or User.UserAttributes.*".to_string())
        }
    };
    Ok((parts, kind))
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    List,
    Number,
}

/// Checks a CSV header. Its errors name columns by position, never by what they hold.
fn check_header(cols: &[String]) -> Result<(), String> {
    let mut seen = std::collections::HashMap::new();
    for (i, c) in cols.iter().enumerate() {
        let c = c.trim();
        column_path(c).map_err(|why| format!("column {} of the header: {why}", i + 1))?;
        if let Some(first) = seen.insert(c, i) {
            return Err(format!(
                "columns {} and {} of the header name the same field",
                first + 1,
                i + 1
            ));
        }
    }
    // Every column must land in a known endpoint field.
    let probe = csv_row(
        cols,
        &cols.iter().map(|_| "0".to_string()).collect::<Vec<_>>(),
    );
    probe.map(|_| ()).map_err(|e| format!("header: {e}"))
}

/// An endpoint from a CSV row (empty cells left out).
fn csv_row(cols: &[String], fields: &[String]) -> Result<Endpoint, String> {
    if fields.len() != cols.len() {
        return Err(format!(
            "{} fields where the header has {} columns",
            fields.len(),
            cols.len()
        ));
    }
    let mut obj = Value::Object(Default::default());
    for (i, value) in fields.iter().enumerate() {
        if value.is_empty() {
            continue;
        }
        let col = format!("column {}", i + 1);
        let (path, kind) = column_path(cols[i].trim()).map_err(|why| format!("{col}: {why}"))?;
        let v = match kind {
            Kind::Text => Value::String(value.clone()),
            Kind::List => json!([value]),
            Kind::Number => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from)
                .ok_or_else(|| format!("{col}: expected a number"))?,
        };
        let mut at = &mut obj;
        for p in &path[..path.len() - 1] {
            at = at
                .as_object_mut()
                .ok_or_else(|| format!("{col}: clashes with another column"))?
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
        }
        at.as_object_mut()
            .ok_or_else(|| format!("{col}: clashes with another column"))?
            .insert(path[path.len() - 1].to_string(), v);
    }
    serde_json::from_value(obj).map_err(|e| crate::text::without_content(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of one CSV record, as the reader splits it.
    fn parse_csv(text: &str) -> Vec<String> {
        let mut r = Record::new();
        let lines: Vec<&str> = text.split('\n').collect();
        for (i, l) in lines.iter().enumerate() {
            if r.feed(l) {
                assert_eq!(i, lines.len() - 1, "the record ends at its last line");
                return r.fields();
            }
        }
        panic!("a quoted field is open at the end of {text:?}");
    }

    fn rows(format: Format, file: &[u8]) -> Result<Vec<String>, Error> {
        let mut r = Reader::new(format);
        let mut input = file;
        let mut out = Vec::new();
        while let Some(row) = r.next_row(&mut input)? {
            out.push(match row {
                Row::Endpoint { line, id, .. } => format!("{line} ok {id}"),
                Row::Refused { line, why } => format!("{line} refused {why}"),
            });
        }
        Ok(out)
    }

    #[test]
    fn a_refused_row_names_its_fields_and_nothing_the_file_chose() {
        let long = "v".repeat(101);
        let json = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            r#"{"SECRET_TOP":1}"#,
            r#"{"ChannelType":"SMS","Address":"x","Location":{"SECRET_LOC":1}}"#,
            format_args!(
                r#"{{"ChannelType":"SMS","Address":"x","Attributes":{{"a:SECRET_COLON tail":["{long}"]}}}}"#
            ),
            r#"{"ChannelType":"SMS","Address":"x","Metrics":{"m;SECRET_SEMI":"x"}}"#,
            r#"{"ChannelType":"SMS","Address":"x","Attributes":{"a":["SECRET_VALUE"]}}"#,
        );
        let got = rows(Format::Json, json.as_bytes()).unwrap();
        let all = got.join("\n");
        assert!(!all.contains("SECRET"), "{all}");
        assert!(
            got[0].starts_with("1 refused *: unknown field `…`"),
            "{all}"
        );
        assert!(
            got[1].starts_with("2 refused Location.*: unknown field `…`"),
            "{all}"
        );
        assert_eq!(
            got[2], "3 refused Attributes.*: a value is at most 100 characters, found one of 101",
            "{all}"
        );
        assert!(
            got[3].starts_with("4 refused Metrics.*: invalid type"),
            "{all}"
        );
        assert!(got[4].starts_with("5 ok "), "a value is no name: {all}");
        // Short names are masked only where the path holds them, not inside words.
        let csv = format!("ChannelType,Address,Attributes.a\nSMS,x,{long}\n");
        let got = rows(Format::Csv, csv.as_bytes()).unwrap();
        assert_eq!(
            got,
            ["2 refused Attributes.*: a value is at most 100 characters, found one of 101"]
        );
    }

    #[test]
    fn csv_fields_quotes_and_dotted_columns() {
        assert_eq!(
            parse_csv(r#"a,"b,c","say ""hi""",,"#),
            vec!["a", "b,c", "say \"hi\"", "", ""]
        );
        let cols: Vec<String> = [
            "ChannelType",
            "Address",
            "Location.Country",
            "Attributes.Tier",
            "Metrics.score",
            "User.UserId",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        check_header(&cols).unwrap();
        let e = csv_row(&cols, &parse_csv("SMS,+15550100,CA,gold,4.5,u1")).unwrap();
        assert_eq!(e.location.unwrap().country.as_deref(), Some("CA"));
        assert_eq!(e.attributes.unwrap()["Tier"], vec!["gold".to_string()]);
        assert_eq!(e.metrics.unwrap()["score"], 4.5);
        assert_eq!(e.user.unwrap().user_id.as_deref(), Some("u1"));
        assert!(check_header(&["Nope".to_string()])
            .unwrap_err()
            .contains("not an endpoint field"));
        assert!(check_header(&["Demographic.Shoe".to_string()]).is_err());
        assert!(csv_row(&cols, &parse_csv("SMS,+1,CA,gold,lots,u1"))
            .unwrap_err()
            .contains("expected a number"));
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_text_and_a_quoted_field_spans_lines() {
        assert_eq!(parse_csv("5\" screen,x"), vec!["5\" screen", "x"]);
        assert_eq!(parse_csv("\"a\nb,c\",d"), vec!["a\nb,c", "d"]);
        assert_eq!(parse_csv("\"\"x\""), vec!["x\""]);
        assert_eq!(parse_csv("\"a\n\n\nb\",c"), vec!["a\n\n\nb", "c"]);
    }

    #[test]
    fn records_are_named_by_their_first_line_and_limits_refuse_rows_not_files() {
        let long = "x".repeat(MAX_LINE);
        let file = format!(
            "\u{feff}Id,ChannelType,Address,Location.City\r\n\
             a,SMS,+1,\"two\r\nlines\"\r\n\
             \r\n\
             b,SMS,+2,{long}\r\n\
             c,SMS,+3,ok\n\
             d,FAX,+4,x\n\
             e,SMS,+5,\"open\n"
        );
        assert_eq!(
            rows(Format::Csv, file.as_bytes()).unwrap(),
            [
                "2 ok a".to_string(),
                format!("5 refused the row is longer than {MAX_LINE} bytes (an endpoint is at most 15 KB)"),
                "6 ok c".to_string(),
                "7 refused ChannelType: unknown value \"…\"; expected PUSH, GCM, APNS, APNS_SANDBOX, APNS_VOIP, APNS_VOIP_SANDBOX, ADM, SMS, VOICE, EMAIL, BAIDU, CUSTOM or IN_APP".to_string(),
                "8 refused a quoted field is not closed before the end of the file".to_string(),
            ]
        );
    }

    #[test]
    fn a_bad_or_overlong_header_fails_the_file_naming_no_content() {
        let err = rows(Format::Csv, b"\n\nChannelType,TOKEN=sekrit\nSMS,x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "3: column 2 of the header: not an endpoint field; expected ChannelType, Address, Id, OptOut, Demographic.*, Location.*, Attributes.*, Metrics.*, User.UserId or User.UserAttributes.*"
        );
        let long = format!("ChannelType,\"{}\"\n", "x".repeat(MAX_LINE));
        let err = rows(Format::Csv, long.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("1: the header is longer than {MAX_LINE} bytes")
        );
    }

    #[test]
    fn json_rows_are_decoded_strictly() {
        let file = b"{\"Id\":\"a\",\"ChannelType\":\"SMS\"}\n\n{\"Id\":\"b\",\"Id\":\"c\"}\n{\"Id\":\"d\",\"Nope\":1}\n\xff\n";
        let got = rows(Format::Json, file).unwrap();
        assert_eq!(got[0], "1 ok a");
        assert!(got[1].starts_with("3 refused "), "{got:?}");
        assert!(got[2].starts_with("4 refused "), "{got:?}");
        assert_eq!(got[3], "5 refused not UTF-8 text");
        assert_eq!(got.len(), 4);
    }
}
