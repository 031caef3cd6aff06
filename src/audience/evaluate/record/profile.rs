//! Customer Profiles profiles, read from one JSON line (a `Profile` as SearchProfiles
//! returns it, as the server stores it) into the slots a profile [`Program`] needs.
//!
//! A profile is small and its fields are looked up by path, so it is parsed whole with
//! serde_json rather than scanned as endpoint records are. A field or attribute that is
//! absent, null, or an empty string is missing.
//!
//! [`Program`]: crate::audience::evaluate::Program

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{NotARecord, Read, Record};
use crate::audience::evaluate::{Schema, Source};

/// Reads one profile into `record`, replacing what it held.
pub(in crate::audience::evaluate) fn read<'a>(
    schema: &Schema,
    line: &'a [u8],
    record: &mut Record<'a>,
) -> Read<()> {
    if record.lists.len() != schema.lists.len() {
        *record = Record::new(schema);
    }
    record.clear();
    let profile: Map<String, Value> = serde_json::from_slice(line).map_err(|e| NotARecord {
        what: "a profile: a JSON object",
        at: e.column().saturating_sub(1),
    })?;
    record.id = match profile.get("ProfileId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(Cow::Owned(id.clone())),
        Some(_) => {
            return Err(NotARecord {
                what: "ProfileId, a string",
                at: 0,
            })
        }
    };
    let attributes = match profile.get("Attributes") {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => Some(a),
        Some(_) => {
            return Err(NotARecord {
                what: "Attributes, an object of strings",
                at: 0,
            })
        }
    };
    for (slot, (source, name)) in schema.lists.iter().enumerate() {
        let value = match source {
            Source::ProfileField => match name.split_once('.') {
                Some((object, part)) => profile.get(object).and_then(|o| o.get(part)),
                None => profile.get(&**name),
            },
            Source::ProfileAttribute | Source::ProfileAttributeList => {
                attributes.and_then(|a| a.get(&**name))
            }
            Source::Attributes { .. } => None,
        };
        let start = record.values.len();
        match value {
            Some(Value::String(v)) if !v.is_empty() => {
                if *source == Source::ProfileAttributeList {
                    record.values.extend(
                        crate::model::profiles::attribute_list(v)
                            .into_iter()
                            .map(Cow::Owned),
                    );
                } else {
                    record.values.push(Cow::Owned(v.clone()));
                }
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => {
                return Err(NotARecord {
                    what: "a profile field or attribute, a string",
                    at: 0,
                })
            }
        }
        record.close_list(schema, slot, start);
    }
    Ok(())
}
