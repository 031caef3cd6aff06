//! Endpoint records, read from one JSON line straight into the slots a [`Program`] needs.
//!
//! Only what some criterion reads is kept (borrowed from the line where it can be). Every
//! field a segment could read is checked for its type even when none does, so whether a
//! line counts as a record does not depend on the segments evaluated (`Id` and
//! `User.UserId` included: they place a record in imported segments); other fields
//! (`Address`, `OptOut`, ...) are skipped unread.
//!
//! [`Program`]: super::Program

use std::borrow::Cow;

use super::instant::instant_nanos;
use super::{Field, Schema, FIELDS};

/// One endpoint record, as the segments of a program see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record<'a> {
    fields: [Option<Cow<'a, str>>; FIELDS],
    /// `Id` and `User.UserId`, for membership in imported segments.
    id: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    effective_date: Option<i128>,
    /// Every kept attribute value; `lists[slot]` is a range of it.
    values: Vec<Cow<'a, str>>,
    lists: Vec<(u32, u32)>,
    /// Instants of the dated slots' values (those that parse); `times[slot]` is a range.
    instants: Vec<i128>,
    times: Vec<(u32, u32)>,
    metrics: Vec<Option<f64>>,
    /// Per field and per list slot: which of the schema's words it holds ([`Words`]).
    ///
    /// [`Words`]: super::Words
    field_marks: [u64; FIELDS],
    list_marks: Vec<u64>,
    /// Where the line's strings end ([`index`]), kept to be reused.
    stops: Scratch,
}

/// Space reused from record to record; no part of what a record holds (equal always).
#[derive(Debug, Clone, Default)]
struct Scratch(Vec<u64>);

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<'a> Record<'a> {
    pub(crate) fn new(schema: &Schema) -> Self {
        Self {
            lists: vec![(0, 0); schema.lists.len()],
            times: vec![(0, 0); schema.lists.len()],
            metrics: vec![None; schema.metrics.len()],
            list_marks: vec![0; schema.lists.len()],
            ..Self::default()
        }
    }

    fn clear(&mut self) {
        self.fields = Default::default();
        self.id = None;
        self.user_id = None;
        self.latitude = None;
        self.longitude = None;
        self.effective_date = None;
        self.values.clear();
        self.lists.fill((0, 0));
        self.instants.clear();
        self.times.fill((0, 0));
        self.metrics.fill(None);
        self.field_marks = [0; FIELDS];
        self.list_marks.fill(0);
    }

    /// Ends the list of `slot`, whose values were appended to `values` from `start`: reads
    /// what criteria need of them (their instants, the words they are) and keeps their text
    /// only when a criterion reads it. A list given twice counts as given last.
    pub(super) fn close_list(&mut self, schema: &Schema, slot: usize, start: usize) {
        let end = self.values.len();
        let values = &self.values[start..end];
        if schema.dated[slot] {
            let first = self.instants.len();
            if schema.lists[slot].0.is_profile() {
                // A profile's dates: an instant as an endpoint's are read, or a calendar
                // date `YYYY-MM-DD` (its midnight UTC): the grammar the SQL writes.
                self.instants
                    .extend(values.iter().filter_map(|v| profile_instant_nanos(v)));
            } else {
                self.instants
                    .extend(values.iter().filter_map(|v| instant_nanos(v)));
            }
            self.times[slot] = (first as u32, self.instants.len() as u32);
        }
        let words = &schema.list_words[slot];
        if !words.is_empty() {
            self.list_marks[slot] = values.iter().fold(0, |m, v| m | words.mark(v));
        }
        if schema.kept[slot] {
            self.lists[slot] = (start as u32, end as u32);
        } else {
            self.values.truncate(start);
        }
    }

    /// Once every field is read: the words the fields are.
    pub(super) fn close_fields(&mut self, schema: &Schema) {
        for (f, words) in schema.field_words.iter().enumerate() {
            if !words.is_empty() {
                self.field_marks[f] = self.fields[f].as_deref().map_or(0, |v| words.mark(v));
            }
        }
    }

    pub(crate) fn field_marks(&self, f: Field) -> u64 {
        self.field_marks[f as usize]
    }

    pub(crate) fn list_marks(&self, slot: usize) -> u64 {
        self.list_marks[slot]
    }

    pub(crate) fn field(&self, f: Field) -> Option<&str> {
        self.fields[f as usize].as_deref()
    }

    pub(crate) fn list(&self, slot: usize) -> &[Cow<'a, str>] {
        let (a, b) = self.lists[slot];
        &self.values[a as usize..b as usize]
    }

    pub(crate) fn instants(&self, slot: usize) -> &[i128] {
        let (a, b) = self.times[slot];
        &self.instants[a as usize..b as usize]
    }

    pub(crate) fn metric(&self, slot: usize) -> Option<f64> {
        self.metrics[slot]
    }

    pub(crate) fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub(crate) fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    pub(crate) fn position(&self) -> Option<(f64, f64)> {
        self.latitude.zip(self.longitude)
    }

    pub(crate) fn effective_date(&self) -> Option<i128> {
        self.effective_date
    }
}

/// Why a line is not an endpoint record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct NotARecord {
    what: &'static str,
    at: usize,
}

type Read<T> = Result<T, NotARecord>;

/// How deeply values may nest (serde_json's limit).
const MAX_DEPTH: u32 = 128;

/// [`read`] from bytes: a line that is not UTF-8 is not a record.
pub(super) fn read_bytes<'a>(schema: &Schema, line: &'a [u8], record: &mut Record<'a>) -> Read<()> {
    if record.lists.len() != schema.lists.len() || record.metrics.len() != schema.metrics.len() {
        *record = Record::new(schema);
    }
    record.clear();
    let mut stops = std::mem::take(&mut record.stops.0);
    let scan = index::index(line, &mut stops);
    let text = if scan.ascii {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(line) })
    } else {
        std::str::from_utf8(line).map_err(|e| NotARecord {
            what: "UTF-8 text",
            at: e.valid_up_to(),
        })
    };
    let result = text.and_then(|text| {
        // With a backslash in the line a `"` may be escaped: strings are scanned instead.
        let stops = if scan.backslash { None } else { Some(&*stops) };
        parse(schema, text, stops, record)
    });
    record.stops.0 = stops;
    result
}

fn parse<'a>(
    schema: &Schema,
    line: &'a str,
    stops: Option<&[u64]>,
    record: &mut Record<'a>,
) -> Read<()> {
    let mut p = Parser {
        s: line,
        b: line.as_bytes(),
        i: 0,
        depth: 0,
        stops,
    };
    if p.next() != Some(b'{') {
        return p.fail("an endpoint record (a JSON object)");
    }
    p.top(schema, record)?;
    p.ws();
    if p.i != p.b.len() {
        return p.fail("the end of the record");
    }
    record.close_fields(schema);
    Ok(())
}

/// A JSON reader over one line, strict as RFC 8259: it walks the record once, keeps what
/// the schema asks for (borrowed when a string has no escape), checks the type of every
/// field a segment could read, and skips the rest (still checked as JSON).
struct Parser<'a, 'x> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    /// The line's [`index`] when no `"` in it is escaped: string ends by bit scan.
    stops: Option<&'x [u64]>,
}

impl<'a> Parser<'a, '_> {
    #[cold]
    fn fail<T>(&self, what: &'static str) -> Read<T> {
        Err(NotARecord { what, at: self.i })
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// The next byte after any whitespace (the cursor left on it).
    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        match self.b.get(self.i) {
            // Most tokens follow at once: one compare says so.
            Some(&c) if c > b' ' => Some(c),
            _ => {
                self.ws();
                self.peek()
            }
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8, what: &'static str) -> Read<()> {
        if self.next() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.fail(what)
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Read<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.fail("a JSON value")
        }
    }

    /// A string; the cursor is on its opening quote.
    #[inline(always)]
    fn string(&mut self) -> Read<Cow<'a, str>> {
        self.i += 1;
        let start = self.i;
        let end = self.plain_run()?;
        if self.b[end] == b'"' {
            self.i = end + 1;
            // SAFETY: `start` follows a `"` and `end` is at one, both in the line: ASCII
            // bytes of the text, so both are character boundaries within it.
            return Ok(Cow::Borrowed(unsafe { self.s.get_unchecked(start..end) }));
        }
        self.escaped(start, end)
    }

    /// The rest of a string from its first backslash (at `end`).
    #[inline(never)]
    fn escaped(&mut self, start: usize, end: usize) -> Read<Cow<'a, str>> {
        let mut out = String::with_capacity(end - start + 16);
        out.push_str(&self.s[start..end]);
        self.i = end;
        loop {
            // On a backslash.
            self.i += 1;
            let Some(c) = self.peek() else {
                return self.fail("an escape");
            };
            self.i += 1;
            match c {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let c = self.unicode_escape()?;
                    out.push(c);
                }
                _ => return self.fail("an escape"),
            }
            let from = self.i;
            let end = self.plain_run()?;
            out.push_str(&self.s[from..end]);
            self.i = end;
            if self.b[end] == b'"' {
                self.i = end + 1;
                return Ok(Cow::Owned(out));
            }
        }
    }

    /// A string checked and dropped (the cursor on its opening quote): as serde_json skips
    /// one, escapes are checked for their form only (a lone surrogate passes).
    fn skip_string(&mut self) -> Read<()> {
        self.i += 1;
        loop {
            let end = self.plain_run()?;
            self.i = end + 1;
            if self.b[end] == b'"' {
                return Ok(());
            }
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                Some(b'u') => {
                    self.i += 1;
                    self.hex4()?;
                }
                _ => return self.fail("an escape"),
            }
        }
    }

    /// From the cursor, the position of the next `"` or `\`; an error at a control
    /// character or the end of the line. From the index when there is one, else eight
    /// bytes at a time: most strings of a record are short, so this beats a call to a
    /// vectorized search.
    #[inline(always)]
    fn plain_run(&mut self) -> Read<usize> {
        if let Some(stops) = self.stops {
            return match index::next_stop(stops, self.i) {
                Some(at) => self.stop_at(at),
                None => {
                    self.i = self.b.len();
                    self.fail("the end of a string")
                }
            };
        }
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = ONES * 0x80;
        let b = self.b;
        let mut i = self.i;
        while i + 8 <= b.len() {
            let x = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
            let quote = x ^ (ONES * u64::from(b'"'));
            let slash = x ^ (ONES * u64::from(b'\\'));
            // The lowest flagged byte is exact (a borrow only runs upwards).
            let stop = (quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (x.wrapping_sub(ONES * 0x20) & !x);
            let stop = stop & HIGH;
            if stop != 0 {
                i += (stop.trailing_zeros() / 8) as usize;
                return self.stop_at(i);
            }
            i += 8;
        }
        while i < b.len() {
            if matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
                return self.stop_at(i);
            }
            i += 1;
        }
        self.i = b.len();
        self.fail("the end of a string")
    }

    #[inline]
    fn stop_at(&mut self, i: usize) -> Read<usize> {
        if self.b[i] < 0x20 {
            self.i = i;
            return self.fail("a string without control characters");
        }
        Ok(i)
    }

    fn hex4(&mut self) -> Read<u32> {
        let Some(h) = self.b.get(self.i..self.i + 4) else {
            return self.fail("four hex digits");
        };
        let mut v = 0;
        for d in h {
            let x = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.fail("four hex digits"),
            };
            v = v * 16 + u32::from(x);
        }
        self.i += 4;
        Ok(v)
    }

    /// After `\u`: one character, a surrogate pair read whole.
    fn unicode_escape(&mut self) -> Read<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.b[self.i..].starts_with(b"\\u") {
                    return self.fail("the low surrogate of a pair");
                }
                self.i += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return self.fail("the low surrogate of a pair");
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return self.fail("a character, not a lone surrogate"),
            c => c,
        };
        char::from_u32(code).map_or_else(|| self.fail("a character"), Ok)
    }

    /// A number, checked against JSON's grammar in one pass (the cursor on its first byte),
    /// its digits gathered on the way: `want` says what else is needed.
    #[inline]
    fn number(&mut self, want: Want) -> Read<Option<f64>> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        // The digits as one integer (wrapping: only used when there are at most 15).
        let mut mantissa: u64 = 0;
        let mut digits = |i: &mut usize| {
            let from = *i;
            while let Some(&d @ b'0'..=b'9') = b.get(*i) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                *i += 1;
            }
            *i - from
        };
        let whole = match b.get(i) {
            Some(b'0') => {
                i += 1;
                1
            }
            Some(b'1'..=b'9') => digits(&mut i),
            _ => {
                self.i = i;
                return self.fail("a number");
            }
        };
        let mut decimals = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            decimals = digits(&mut i);
            if decimals == 0 {
                self.i = i;
                return self.fail("a digit after the decimal point");
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = b.get(i) {
            exponent = true;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let from = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == from {
                self.i = i;
                return self.fail("an exponent");
            }
        }
        self.i = i;
        match want {
            Want::Grammar => return Ok(None),
            // Without an exponent and with fewer than 300 digits a number is finite: no
            // need to read its value to know it is one.
            Want::Finite if !exponent && i - start < 300 => return Ok(None),
            _ => {}
        }
        // At most 15 digits form an integer below 2^53 and the power of ten is exact, so
        // one division rounds once, correctly, as the general parser would (Clinger's
        // fast path).
        if !exponent && whole + decimals <= 15 {
            let v = mantissa as f64 / POW10[decimals];
            return Ok(Some(if negative { -v } else { v }));
        }
        match self.s[start..i].parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => self.fail("a number in range"),
        }
    }

    /// A number or null.
    #[inline]
    fn number_or_null(&mut self, want: Want) -> Read<Option<f64>> {
        match self.next() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'-' | b'0'..=b'9') => self.number(want),
            _ => self.fail("a number"),
        }
    }

    #[inline(always)]
    fn text_or_null(&mut self) -> Read<Option<Cow<'a, str>>> {
        match self.next() {
            Some(b'"') => self.string().map(Some),
            Some(b'n') => self.literal(b"null").map(|()| None),
            _ => self.fail("a string"),
        }
    }

    /// Any JSON value, checked and dropped.
    fn skip(&mut self) -> Read<()> {
        match self.next() {
            Some(b'"') => self.skip_string(),
            Some(b'{') => self.nested(|p| p.object(|p, _| p.skip())),
            Some(b'[') => self.nested(|p| p.array(|p| p.skip())),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(Want::Grammar).map(drop),
            _ => self.fail("a JSON value"),
        }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Read<()>) -> Read<()> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return self.fail("values nested at most 128 deep");
        }
        f(self)?;
        self.depth -= 1;
        Ok(())
    }

    /// An object's entries; the cursor is on `{`. `entry` reads each value.
    fn object(&mut self, mut entry: impl FnMut(&mut Self, Cow<'a, str>) -> Read<()>) -> Read<()> {
        self.i += 1;
        if self.next() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.next() != Some(b'"') {
                return self.fail("a field name");
            }
            let key = self.string()?;
            self.eat(b':', "':'")?;
            entry(self, key)?;
            match self.next() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.fail("',' or '}'"),
            }
        }
    }

    /// An array's elements; the cursor is on `[`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.i += 1;
        if self.next() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.next() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.fail("',' or ']'"),
            }
        }
    }

    /// An object or null; `what` names what was expected.
    fn object_or_null(
        &mut self,
        what: &'static str,
        entry: impl FnMut(&mut Self, Cow<'a, str>) -> Read<()>,
    ) -> Read<()> {
        match self.next() {
            Some(b'{') => self.nested(|p| p.object(entry)),
            Some(b'n') => self.literal(b"null"),
            _ => self.fail(what),
        }
    }

    /// The known fields of one object (`names`), each at most once; others skipped.
    fn fields(
        &mut self,
        what: &'static str,
        known: fn(&[u8]) -> Option<usize>,
        mut f: impl FnMut(&mut Self, usize) -> Read<()>,
    ) -> Read<()> {
        let mut seen = 0u32;
        self.object_or_null(what, |p, key| match known(key.as_bytes()) {
            Some(i) => {
                if seen & (1 << i) != 0 {
                    return p.fail("each field once");
                }
                seen |= 1 << i;
                f(p, i)
            }
            None => p.skip(),
        })
    }

    /// A list of strings (or null), appended to `out` when there is one, else only checked.
    fn strings(&mut self, mut out: Option<&mut Vec<Cow<'a, str>>>) -> Read<()> {
        match self.next() {
            Some(b'n') => self.literal(b"null"),
            Some(b'[') => self.nested(|p| {
                p.array(|p| {
                    if p.next() != Some(b'"') {
                        return p.fail("a list of strings");
                    }
                    let v = p.string()?;
                    if let Some(out) = out.as_mut() {
                        out.push(v);
                    }
                    Ok(())
                })
            }),
            _ => self.fail("a list of strings"),
        }
    }

    fn top(&mut self, schema: &Schema, record: &mut Record<'a>) -> Read<()> {
        self.fields("an endpoint record (a JSON object)", top_field, |p, i| {
            match i {
                0 => record.fields[Field::Channel as usize] = p.text_or_null()?,
                1 => p.fields("Demographic, an object", demographic_field, |p, i| {
                    const FIELD: [Field; 4] = [
                        Field::AppVersion,
                        Field::Make,
                        Field::Model,
                        Field::Platform,
                    ];
                    record.fields[FIELD[i] as usize] = p.text_or_null()?;
                    Ok(())
                })?,
                2 => p.fields("Location, an object", location_field, |p, i| {
                    match i {
                        0 => record.fields[Field::Country as usize] = p.text_or_null()?,
                        1 => record.latitude = p.number_or_null(Want::value_if(schema.position))?,
                        _ => {
                            record.longitude = p.number_or_null(Want::value_if(schema.position))?
                        }
                    }
                    Ok(())
                })?,
                3 => p.lists(schema, record, false)?,
                4 => p.object_or_null("Metrics, an object of numbers", |p, name| {
                    let slot = schema.metric_slot(&name);
                    let value = p.number_or_null(Want::value_if(slot.is_some()))?;
                    if let Some(slot) = slot {
                        record.metrics[slot] = value;
                    }
                    Ok(())
                })?,
                5 => p.fields("User, an object", user_field, |p, i| {
                    if i == 1 {
                        record.user_id = p.text_or_null()?;
                        return Ok(());
                    }
                    p.lists(schema, record, true)
                })?,
                6 => {
                    let date = p.text_or_null()?;
                    if schema.recency {
                        record.effective_date = date.as_deref().and_then(instant_nanos);
                    }
                }
                _ => record.id = p.text_or_null()?,
            }
            Ok(())
        })
    }

    /// Attributes or UserAttributes: name → list of strings.
    fn lists(&mut self, schema: &Schema, record: &mut Record<'a>, user: bool) -> Read<()> {
        self.object_or_null("attributes, an object of lists of strings", |p, name| {
            let slot = schema.list_slot(user, &name);
            let start = record.values.len();
            p.strings(slot.map(|_| &mut record.values))?;
            if let Some(slot) = slot {
                record.close_list(schema, slot, start);
            }
            Ok(())
        })
    }
}

/// What a number is read for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Its form only (a value skipped).
    Grammar,
    /// That it is a finite double (a field of a known type nobody reads).
    Finite,
    /// Its value.
    Value,
}

impl Want {
    fn value_if(read: bool) -> Self {
        if read {
            Self::Value
        } else {
            Self::Finite
        }
    }
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Byte-string equality for the short strings of records (names, codes, values): the
/// length, then two overlapping loads a side instead of a call to `memcmp`.
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    match n {
        0 => true,
        // Bytes 0, n/2 and n-1 are all of them.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// The position of `name` among `names`, each tried by length and first byte first.
#[inline(always)]
fn find(name: &[u8], names: &[&[u8]]) -> Option<usize> {
    names
        .iter()
        .position(|n| n.len() == name.len() && n.first() == name.first() && same_bytes(n, name))
}

// The fields read, by name.
fn top_field(name: &[u8]) -> Option<usize> {
    find(
        name,
        &[
            b"ChannelType",
            b"Demographic",
            b"Location",
            b"Attributes",
            b"Metrics",
            b"User",
            b"EffectiveDate",
            b"Id",
        ],
    )
}

fn demographic_field(name: &[u8]) -> Option<usize> {
    find(name, &[b"AppVersion", b"Make", b"Model", b"Platform"])
}

fn location_field(name: &[u8]) -> Option<usize> {
    find(name, &[b"Country", b"Latitude", b"Longitude"])
}

fn user_field(name: &[u8]) -> Option<usize> {
    find(name, &[b"UserAttributes", b"UserId"])
}

mod index;
mod profile;
pub(super) use profile::read as read_profile;

#[cfg(test)]
mod reference;

#[cfg(test)]
mod same_tests {
    #[test]
    fn short_strings_are_equal_exactly_when_their_bytes_are() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..100_000 {
            let n = rng.usize(0..24);
            let a: Vec<u8> = (0..n).map(|_| rng.u8(b'a'..b'd')).collect();
            let mut b = a.clone();
            if rng.bool() && n > 0 {
                let at = rng.usize(..n);
                b[at] = rng.u8(b'a'..b'd');
            }
            if rng.u8(..8) == 0 {
                b.push(b'a');
            }
            assert_eq!(super::same_bytes(&a, &b), a == b, "{a:?} {b:?}");
        }
    }
}

#[cfg(test)]
mod decimal_tests {
    use super::{Parser, Want};

    fn value(text: &str) -> Option<f64> {
        let mut p = Parser {
            s: text,
            b: text.as_bytes(),
            i: 0,
            depth: 0,
            stops: None,
        };
        let v = p.number(Want::Value).ok().flatten();
        (p.i == text.len()).then_some(v).flatten()
    }

    #[test]
    fn numbers_read_as_the_general_parser_reads_them() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..200_000 {
            let width = rng.u32(0..12);
            let int = rng.u64(..10u64.pow(width));
            let frac_digits = rng.usize(0..12);
            let frac: String = (0..frac_digits).map(|_| rng.digit(10)).collect();
            let sign = if rng.bool() { "-" } else { "" };
            let exp = match rng.u8(..4) {
                0 => format!("e{}", rng.i32(-30..30)),
                _ => String::new(),
            };
            let text = if frac.is_empty() {
                format!("{sign}{int}{exp}")
            } else {
                format!("{sign}{int}.{frac}{exp}")
            };
            let want: f64 = text.parse().unwrap();
            let got = value(&text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
        for text in ["0.1234567890123456789", "12345678901234567", "1e5", "-0.0"] {
            let want: f64 = text.parse().unwrap();
            assert_eq!(
                value(text).map(f64::to_bits),
                Some(want.to_bits()),
                "{text}"
            );
        }
        assert_eq!(value("-0").map(f64::to_bits), Some((-0.0f64).to_bits()));
        for bad in ["1e999", "-", "01", "1.", ".5", "1e", "1e+", "--1"] {
            assert_eq!(value(bad), None, "{bad}");
        }
    }
}

/// A profile's date value in nanoseconds since the epoch: an instant by [`instant_nanos`],
/// or a date `YYYY-MM-DD` as that date's midnight UTC (whose text `instant_nanos` then
/// reads, so the date must exist).
fn profile_instant_nanos(v: &str) -> Option<i128> {
    let b = v.as_bytes();
    let date = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0..4, 5..7, 8..10]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit));
    if date {
        instant_nanos(&format!("{v}T00:00:00Z"))
    } else {
        instant_nanos(v)
    }
}
