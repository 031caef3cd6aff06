//! The reader as it was written first, over serde_json: kept as the oracle the fast reader
//! is checked against (the same records accepted, the same slots filled).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::super::instant::instant_nanos;
use super::super::{Field, Schema};
use super::Record;

pub(crate) fn read<'a>(
    schema: &Schema,
    line: &'a str,
    record: &mut Record<'a>,
) -> Result<(), serde_json::Error> {
    if record.lists.len() != schema.lists.len() || record.metrics.len() != schema.metrics.len() {
        *record = Record::new(schema);
    }
    record.clear();
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(Top { schema, record })?;
    de.end()?;
    record.close_fields(schema);
    Ok(())
}

const TOP: &[&str] = &[
    "ChannelType",
    "Demographic",
    "Location",
    "Attributes",
    "Metrics",
    "User",
    "EffectiveDate",
    "Id",
];
const DEMOGRAPHIC: &[&str] = &["AppVersion", "Make", "Model", "Platform"];
const LOCATION: &[&str] = &["Country", "Latitude", "Longitude"];
const USER: &[&str] = &["UserAttributes", "UserId"];

/// Walks an object's entries: `f(index in names, map)` reads each known entry's value;
/// unknown entries are skipped, a known name given twice is an error.
fn entries<'de, A: MapAccess<'de>>(
    mut map: A,
    names: &'static [&'static str],
    mut f: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen = 0u32;
    while let Some(key) = map.next_key_seed(Known(names))? {
        match key {
            Some(i) => {
                if seen & (1 << i) != 0 {
                    return Err(de::Error::duplicate_field(names[i]));
                }
                seen |= 1 << i;
                f(i, &mut map)?;
            }
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// A key, as its index among known names.
struct Known(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Known {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Known {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// A string or null, borrowed from the line when it has no escapes.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
}

/// Reads the entries of one JSON object into a record.
trait ReadObject<'de> {
    const EXPECTING: &'static str;
    fn read<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error>;
}

/// An object, or null (nothing to read).
struct Nullable<T>(T);

impl<'de, T: ReadObject<'de>> DeserializeSeed<'de> for Nullable<T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: ReadObject<'de>> Visitor<'de> for Nullable<T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.read(map)
    }
}

struct Top<'s, 'r, 'a> {
    schema: &'s Schema,
    record: &'r mut Record<'a>,
}

impl<'a> Visitor<'a> for Top<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an endpoint record (a JSON object)")
    }
    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<(), A::Error> {
        let Top { schema, record } = self;
        entries(map, TOP, |i, map| {
            match i {
                0 => record.fields[Field::Channel as usize] = map.next_value_seed(Text)?,
                1 => map.next_value_seed(Nullable(Demographic(&mut *record)))?,
                2 => map.next_value_seed(Nullable(Location(&mut *record)))?,
                3 => map.next_value_seed(Nullable(Lists {
                    schema,
                    record: &mut *record,
                    user: false,
                }))?,
                4 => map.next_value_seed(Nullable(Metrics {
                    schema,
                    record: &mut *record,
                }))?,
                5 => map.next_value_seed(Nullable(User {
                    schema,
                    record: &mut *record,
                }))?,
                7 => record.id = map.next_value_seed(Text)?,
                _ => {
                    let date = map.next_value_seed(Text)?;
                    if schema.recency {
                        record.effective_date = date.as_deref().and_then(instant_nanos);
                    }
                }
            }
            Ok(())
        })
    }
}

struct Demographic<'r, 'a>(&'r mut Record<'a>);

impl<'a> ReadObject<'a> for Demographic<'_, 'a> {
    const EXPECTING: &'static str = "Demographic, an object";
    fn read<A: MapAccess<'a>>(self, map: A) -> Result<(), A::Error> {
        const FIELD: [Field; 4] = [
            Field::AppVersion,
            Field::Make,
            Field::Model,
            Field::Platform,
        ];
        entries(map, DEMOGRAPHIC, |i, map| {
            self.0.fields[FIELD[i] as usize] = map.next_value_seed(Text)?;
            Ok(())
        })
    }
}

struct Location<'r, 'a>(&'r mut Record<'a>);

impl<'a> ReadObject<'a> for Location<'_, 'a> {
    const EXPECTING: &'static str = "Location, an object";
    fn read<A: MapAccess<'a>>(self, map: A) -> Result<(), A::Error> {
        entries(map, LOCATION, |i, map| {
            match i {
                0 => self.0.fields[Field::Country as usize] = map.next_value_seed(Text)?,
                1 => self.0.latitude = map.next_value()?,
                _ => self.0.longitude = map.next_value()?,
            }
            Ok(())
        })
    }
}

struct User<'s, 'r, 'a> {
    schema: &'s Schema,
    record: &'r mut Record<'a>,
}

impl<'a> ReadObject<'a> for User<'_, '_, 'a> {
    const EXPECTING: &'static str = "User, an object";
    fn read<A: MapAccess<'a>>(self, map: A) -> Result<(), A::Error> {
        entries(map, USER, |i, map| {
            if i == 1 {
                self.record.user_id = map.next_value_seed(Text)?;
                return Ok(());
            }
            map.next_value_seed(Nullable(Lists {
                schema: self.schema,
                record: &mut *self.record,
                user: true,
            }))
        })
    }
}

/// Attributes or UserAttributes: name → list of strings.
struct Lists<'s, 'r, 'a> {
    schema: &'s Schema,
    record: &'r mut Record<'a>,
    user: bool,
}

impl<'a> ReadObject<'a> for Lists<'_, '_, 'a> {
    const EXPECTING: &'static str = "attributes, an object of lists of strings";
    fn read<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        let Lists {
            schema,
            record,
            user,
        } = self;
        while let Some(slot) = map.next_key_seed(Slot(|name: &str| schema.list_slot(user, name)))? {
            let start = record.values.len();
            map.next_value_seed(Strings(slot.map(|_| &mut record.values)))?;
            if let Some(slot) = slot {
                record.close_list(schema, slot, start);
            }
        }
        Ok(())
    }
}

struct Metrics<'s, 'r, 'a> {
    schema: &'s Schema,
    record: &'r mut Record<'a>,
}

impl<'a> ReadObject<'a> for Metrics<'_, '_, 'a> {
    const EXPECTING: &'static str = "Metrics, an object of numbers";
    fn read<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        let schema = self.schema;
        while let Some(slot) = map.next_key_seed(Slot(|name: &str| schema.metric_slot(name)))? {
            let value: Option<f64> = map.next_value()?; // null: missing
            if let Some(slot) = slot {
                self.record.metrics[slot] = value;
            }
        }
        Ok(())
    }
}

/// A key, as the slot that keeps its value (if any).
struct Slot<F>(F);

impl<'de, F: FnOnce(&str) -> Option<usize>> DeserializeSeed<'de> for Slot<F> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<F: FnOnce(&str) -> Option<usize>> Visitor<'_> for Slot<F> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((self.0)(v))
    }
}

/// A list of strings (or null), appended to the vector when there is one, else only checked.
struct Strings<'v, 'a>(Option<&'v mut Vec<Cow<'a, str>>>);

impl<'a> DeserializeSeed<'a> for Strings<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'a> Visitor<'a> for Strings<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<S: SeqAccess<'a>>(mut self, mut seq: S) -> Result<(), S::Error> {
        while let Some(v) = seq.next_element_seed(Text)? {
            let v = v.ok_or_else(|| de::Error::invalid_type(de::Unexpected::Unit, &self))?;
            if let Some(out) = self.0.as_mut() {
                out.push(v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod differential {
    //! The fast reader against this one: on the fuzz corpus and on mutations of records,
    //! the same lines accepted and, when accepted, the same record read.

    use super::super::super::{Catalog, Program};
    use super::Record;

    fn program() -> Program {
        let segments: std::collections::BTreeMap<String, crate::model::WriteSegmentRequest> =
            serde_json::from_str(include_str!("../../../../fuzz/endpoint_segments.json")).unwrap();
        let mut program = Program::new(time::OffsetDateTime::UNIX_EPOCH);
        let catalog = Catalog::of(&segments);
        for name in segments.keys() {
            program.add(0, &catalog, name);
        }
        program
    }

    fn agree(program: &Program, line: &str) {
        agree_bytes(program, line.as_bytes());
    }

    /// The fast reader on raw bytes against UTF-8 validation then serde_json.
    fn agree_bytes(program: &Program, line: &[u8]) {
        let mut fast = Record::new(&program.schema);
        let mut slow = Record::new(&program.schema);
        let f = super::super::read_bytes(&program.schema, line, &mut fast);
        let text = std::str::from_utf8(line);
        let s = text.map(|text| super::read(&program.schema, text, &mut slow));
        let s_ok = matches!(s, Ok(Ok(())));
        assert_eq!(
            f.is_ok(),
            s_ok,
            "{:?}: fast {f:?}, serde_json {s:?}",
            String::from_utf8_lossy(line)
        );
        if f.is_ok() {
            assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(line));
        }
    }

    const SEEDS: &[&str] = &[
        r#"{"ChannelType":"SMS","Id":"e1","Location":{"Country":"US","Latitude":47.6,"Longitude":-122.3},"Attributes":{"a":["xx","y\"z"],"d":["2026-05-01T10:00:00+02:00"]},"User":{"UserId":"u","UserAttributes":{"u":["v"]}},"Metrics":{"m":2e3,"n":-0.5},"EffectiveDate":"1969-12-30T00:00:00Z","Address":"\u00e9\ud83d\ude00"}"#,
        r#"{"Demographic":{"Platform":"iOS","Make":null,"Timezone":"x"},"Attributes":null,"Metrics":{"m":null},"OptOut":"NONE","X":[1,{"a":[true,false,null]},-0.0]}"#,
        r#" { "Id" : null , "User" : null , "Attributes" : { "a" : [ ] , "u" : [ "1" , "2" ] } } "#,
        // No backslash (strings ended by the line's index), strings across 64-byte words.
        r#"{"ChannelType":"EMAIL","Address":"a-rather-long-address-that-crosses-a-word@example.com","Demographic":{"Platform":"iOS","AppVersion":"1.0"},"Location":{"Country":"ÉU","Latitude":47.27,"Longitude":-121.0},"Attributes":{"interests":["music","books"],"signup":["2026-10-27T01:33:00Z"]},"Metrics":{"sessions":39},"EffectiveDate":"2026-11-01T04:00:00Z","Id":"e2"}"#,
    ];

    #[test]
    fn bytes_that_are_not_utf8_are_refused_as_serde_json_would() {
        let program = program();
        let mut rng = fastrand::Rng::with_seed(13);
        for seed in SEEDS {
            for _ in 0..5_000 {
                let mut b = seed.as_bytes().to_vec();
                for _ in 0..rng.usize(1..3) {
                    let at = rng.usize(..b.len());
                    b[at] = rng.u8(0x80..);
                }
                agree_bytes(&program, &b);
            }
        }
    }

    #[test]
    fn the_fuzz_corpus_reads_the_same() {
        let program = program();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/endpoint_records");
        let mut lines = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            for line in data.split(|b| *b == b'\n') {
                if let Ok(line) = std::str::from_utf8(line) {
                    agree(&program, line);
                    lines += 1;
                }
            }
        }
        assert!(lines > 500, "{lines}");
    }

    #[test]
    fn mutated_records_read_the_same() {
        let program = program();
        let alphabet: Vec<char> = "{}[]:,\" \\/0123456789-+.eEtrufalsn\u{1}\u{7f}éu\n\tabcdef"
            .chars()
            .collect();
        let mut rng = fastrand::Rng::with_seed(7);
        for seed in SEEDS {
            agree(&program, seed);
            for _ in 0..20_000 {
                let mut s: Vec<char> = seed.chars().collect();
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(..=s.len());
                    match rng.u8(..3) {
                        0 if at < s.len() => {
                            s.remove(at);
                        }
                        1 if at < s.len() => s[at] = alphabet[rng.usize(..alphabet.len())],
                        _ => s.insert(at, alphabet[rng.usize(..alphabet.len())]),
                    }
                }
                let line: String = s.into_iter().collect();
                agree(&program, &line);
            }
        }
    }
}
