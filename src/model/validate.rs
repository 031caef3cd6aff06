//! The rules a segment definition must satisfy: one implementation, enforced by the server
//! (as 400 BadRequestException) and by the manifest loader (as located errors).
//!
//! Rules that serde already enforces (enum values, required members, unknown fields) live in
//! `model`; this module checks what types cannot: ranges, counts, value formats and
//! combinations.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::{
    AttributeDimension, GpsPointDimension, SegmentDimensions, SegmentReference, SetDimension, Tags,
    WriteSegmentRequest,
};

/// Pinpoint's quota: at most 100 dimensions per segment.
pub const MAX_DIMENSIONS: usize = 100;
/// Pinpoint's quota: at most 50 tags per resource.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Pinpoint documents no limit on a segment's Name or on a criterion's values; these are
/// chosen, generously, so that a stored segment stays bounded (see the README).
pub const MAX_NAME_LEN: usize = 1024;
/// At most this many values in one criterion.
pub const MAX_VALUES: usize = 1000;
/// Each value at most this long: endpoint attribute values are at most 100 characters, so a
/// longer criterion value could match nothing anyway.
pub const MAX_VALUE_LEN: usize = 1024;

/// Who is asking: the wire accepts only `Id` in a SegmentReference, a manifest `Id` or `Ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Server,
    Manifest,
}

/// One broken rule, located by its field path in the request (`Dimensions.Location.GPSPoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Appends a map key to a field path, quoting keys that would be ambiguous.
pub fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// Checks a CreateSegment / UpdateSegment body (or a manifest spec) against every rule.
///
/// Guarantees: returns every violation, in document order, not just the first.
pub fn write_segment_request(req: &WriteSegmentRequest, ctx: Context) -> Vec<Violation> {
    let mut v = Checker {
        out: Vec::new(),
        ctx,
    };
    if req.dimensions.is_some() && req.segment_groups.is_some() {
        v.push(
            "SegmentGroups",
            "a segment has either Dimensions or SegmentGroups, not both; move the criteria into a group's Dimensions",
        );
    }
    if let Some(name) = &req.name {
        let n = name.chars().count();
        if n > MAX_NAME_LEN {
            v.push(
                "Name",
                format!("is {n} characters long; at most {MAX_NAME_LEN} are accepted"),
            );
        }
    }
    let mut count = 0;
    if let Some(d) = &req.dimensions {
        count += v.dimensions("Dimensions", d);
    }
    if let Some(groups) = &req.segment_groups {
        for (gi, g) in groups.groups.iter().flatten().enumerate() {
            let gp = format!("SegmentGroups.Groups[{gi}]");
            for (di, d) in g.dimensions.iter().flatten().enumerate() {
                count += v.dimensions(&format!("{gp}.Dimensions[{di}]"), d);
            }
            for (si, s) in g.source_segments.iter().flatten().enumerate() {
                v.reference(&format!("{gp}.SourceSegments[{si}]"), s);
            }
        }
    }
    if count > MAX_DIMENSIONS {
        v.push(
            "",
            format!("the segment has {count} dimensions; Pinpoint allows at most {MAX_DIMENSIONS}"),
        );
    }
    if let Some(tags) = &req.tags {
        v.out.extend(tags_rules("tags", tags));
    }
    v.out
}

/// Checks a tag map: at most 50 tags, keys 1–128 characters, values at most 256.
pub fn tags_rules(path: &str, tags: &Tags) -> Vec<Violation> {
    let mut out = Vec::new();
    if tags.len() > MAX_TAGS {
        out.push(Violation {
            path: path.to_string(),
            message: format!("{} tags; at most {MAX_TAGS} are allowed", tags.len()),
        });
    }
    for (k, val) in tags {
        let kp = key_path(path, k);
        let klen = k.chars().count();
        if klen == 0 || klen > MAX_TAG_KEY_LEN {
            out.push(Violation {
                path: kp.clone(),
                message: format!("tag key must be 1 to {MAX_TAG_KEY_LEN} characters, found {klen}"),
            });
        }
        if val.chars().count() > MAX_TAG_VALUE_LEN {
            out.push(Violation {
                path: kp,
                message: format!("tag value must be at most {MAX_TAG_VALUE_LEN} characters"),
            });
        }
    }
    out
}

/// Parses an ISO-8601 instant as Pinpoint reads it (`2026-01-31T00:00:00Z`, offsets allowed).
pub fn parse_instant(text: &str) -> Option<OffsetDateTime> {
    fast_utc(text).or_else(|| OffsetDateTime::parse(text, &Rfc3339).ok())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form exports and manifests nearly always use, read without
/// the general parser (the evaluator reads millions of them). Anything else: `None`.
fn fast_utc(text: &str) -> Option<OffsetDateTime> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num(0..4)?).ok()?,
        month,
        u8::try_from(num(8..10)?).ok()?,
    )
    .ok()?;
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // RFC 3339 allows a leap second (:60); leave that to the general parser.
    if s == 60 {
        return None;
    }
    let t = time::Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(m).ok()?,
        u8::try_from(s).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

struct Checker {
    out: Vec<Violation>,
    ctx: Context,
}

impl Checker {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.out.push(Violation {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Checks one SegmentDimensions object; returns how many dimensions it holds.
    fn dimensions(&mut self, path: &str, d: &SegmentDimensions) -> usize {
        let mut count = 0;
        for (field, map) in [
            ("Attributes", &d.attributes),
            ("UserAttributes", &d.user_attributes),
        ] {
            for (k, a) in map.iter().flatten() {
                count += 1;
                self.attribute(&key_path(&format!("{path}.{field}"), k), a);
            }
        }
        if let Some(m) = &d.metrics {
            count += m.len();
            for (k, metric) in m {
                if !metric.value.is_finite() {
                    self.push(
                        &format!("{}.Value", key_path(&format!("{path}.Metrics"), k)),
                        "must be a finite number",
                    );
                }
            }
        }
        if let Some(demo) = &d.demographic {
            for (field, set) in [
                ("AppVersion", &demo.app_version),
                ("Channel", &demo.channel),
                ("DeviceType", &demo.device_type),
                ("Make", &demo.make),
                ("Model", &demo.model),
                ("Platform", &demo.platform),
            ] {
                if let Some(set) = set {
                    count += 1;
                    self.set(&format!("{path}.Demographic.{field}"), set);
                }
            }
        }
        if let Some(loc) = &d.location {
            if let Some(c) = &loc.country {
                count += 1;
                self.set(&format!("{path}.Location.Country"), c);
            }
            if let Some(g) = &loc.gps_point {
                count += 1;
                self.gps(&format!("{path}.Location.GPSPoint"), g);
            }
        }
        if d.behavior.as_ref().is_some_and(|b| b.recency.is_some()) {
            count += 1;
        }
        count
    }

    fn set(&mut self, path: &str, s: &SetDimension) {
        if s.values.is_empty() {
            self.push(&format!("{path}.Values"), "must list at least one value");
        }
        self.values_bounded(path, &s.values);
    }

    /// At most [`MAX_VALUES`] values, each at most [`MAX_VALUE_LEN`] characters.
    fn values_bounded(&mut self, path: &str, values: &[String]) {
        if values.len() > MAX_VALUES {
            self.push(
                &format!("{path}.Values"),
                format!(
                    "lists {} values; at most {MAX_VALUES} are accepted",
                    values.len()
                ),
            );
        }
        if let Some((i, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| v.chars().count() > MAX_VALUE_LEN)
        {
            self.push(
                &format!("{path}.Values[{i}]"),
                format!(
                    "is {} characters long; at most {MAX_VALUE_LEN} are accepted",
                    v.chars().count()
                ),
            );
        }
    }

    fn attribute(&mut self, path: &str, a: &AttributeDimension) {
        self.values_bounded(path, &a.values);
        let Some(kind) = a.attribute_type else {
            if a.values.is_empty() {
                self.push(&format!("{path}.Values"), "must list at least one value");
            }
            return;
        };
        if a.values.is_empty() {
            self.push(&format!("{path}.Values"), "must list at least one value");
        }
        if kind.is_range() && a.values.len() != 2 {
            self.push(
                &format!("{path}.Values"),
                format!(
                    "{kind} takes exactly two values (the lower and upper bound), found {}",
                    a.values.len()
                ),
            );
        }
        if kind.is_temporal() {
            for (i, value) in a.values.iter().enumerate() {
                if parse_instant(value).is_none() {
                    self.push(
                        &format!("{path}.Values[{i}]"),
                        format!(
                            "{value:?} is not an ISO-8601 instant; {kind} compares date-times such as \"2026-01-31T00:00:00Z\""
                        ),
                    );
                }
            }
        }
    }

    fn gps(&mut self, path: &str, g: &GpsPointDimension) {
        let c = &g.coordinates;
        if !(-90.0..=90.0).contains(&c.latitude) {
            self.push(
                &format!("{path}.Coordinates.Latitude"),
                format!("must be between -90 and 90, found {}", c.latitude),
            );
        }
        if !(-180.0..=180.0).contains(&c.longitude) {
            self.push(
                &format!("{path}.Coordinates.Longitude"),
                format!("must be between -180 and 180, found {}", c.longitude),
            );
        }
        if let Some(r) = g.range_in_kilometers {
            if r.is_nan() || r <= 0.0 {
                self.push(
                    &format!("{path}.RangeInKilometers"),
                    "must be greater than 0",
                );
            }
        }
    }

    fn reference(&mut self, path: &str, r: &SegmentReference) {
        match (self.ctx, &r.id, &r.reference) {
            (Context::Server, _, Some(_)) => self.push(
                &format!("{path}.Ref"),
                "unknown field; a SegmentReference has Id and Version",
            ),
            (Context::Server, None, _) => {
                self.push(&format!("{path}.Id"), "missing required member")
            }
            (Context::Manifest, None, None) => {
                self.push(path, "needs Id (a segment id) or Ref (a manifest name)")
            }
            (Context::Manifest, Some(_), Some(_)) => {
                self.push(path, "has both Id and Ref; keep one")
            }
            _ => {}
        }
        if let Some(id) = &r.id {
            if id.is_empty() {
                self.push(&format!("{path}.Id"), "must not be empty");
            }
        }
        if let Some(v) = r.version {
            if v < 1 {
                self.push(
                    &format!("{path}.Version"),
                    format!("must be 1 or more, found {v}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Vec<String> {
        let req: WriteSegmentRequest = serde_json::from_str(json).unwrap();
        write_segment_request(&req, Context::Server)
            .into_iter()
            .map(|v| v.to_string())
            .collect()
    }

    #[test]
    fn the_fast_instant_reader_agrees_with_the_rfc3339_parser() {
        for text in [
            "2026-03-01T05:06:07Z",
            "2024-02-29T23:59:59Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "2026-1a-01T00:00:00Z",
            "2026-03-01T05:06:07+00:00",
            "2026-03-01t05:06:07z",
        ] {
            assert_eq!(
                parse_instant(text),
                OffsetDateTime::parse(text, &Rfc3339).ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_valid_request_has_no_violations() {
        assert!(check(r#"{"Name":"a","Dimensions":{"Attributes":{"d":{"AttributeType":"BETWEEN","Values":["2026-01-01T00:00:00Z","2026-02-01T00:00:00Z"]}}}}"#).is_empty());
    }

    #[test]
    fn gps_range_must_be_positive_and_names_the_group_path() {
        let v = check(
            r#"{"SegmentGroups":{"Groups":[{"Dimensions":[{},{"Location":{"GPSPoint":{"Coordinates":{"Latitude":91,"Longitude":0},"RangeInKilometers":0}}}]}]}}"#,
        );
        assert_eq!(
            v,
            [
                "SegmentGroups.Groups[0].Dimensions[1].Location.GPSPoint.Coordinates.Latitude: must be between -90 and 90, found 91",
                "SegmentGroups.Groups[0].Dimensions[1].Location.GPSPoint.RangeInKilometers: must be greater than 0",
            ]
        );
    }

    #[test]
    fn between_needs_two_iso_instants() {
        let v = check(
            r#"{"Dimensions":{"Attributes":{"signup":{"AttributeType":"NOT_BETWEEN","Values":["yesterday"]}}}}"#,
        );
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("takes exactly two values"));
        assert!(v[1].starts_with(
            "Dimensions.Attributes.signup.Values[0]: \"yesterday\" is not an ISO-8601 instant"
        ));
    }

    #[test]
    fn dimensions_and_segment_groups_are_exclusive() {
        let v = check(r#"{"Dimensions":{},"SegmentGroups":{}}"#);
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with("SegmentGroups: a segment has either Dimensions or SegmentGroups"));
    }

    #[test]
    fn more_than_one_hundred_dimensions_is_refused() {
        let attrs: Vec<String> = (0..101)
            .map(|i| format!(r#""a{i}":{{"Values":["x"]}}"#))
            .collect();
        let v = check(&format!(
            r#"{{"Dimensions":{{"Attributes":{{{}}}}}}}"#,
            attrs.join(",")
        ));
        assert_eq!(
            v,
            ["the segment has 101 dimensions; Pinpoint allows at most 100"]
        );
    }

    #[test]
    fn the_wire_rejects_ref_and_requires_id() {
        let v = check(r#"{"SegmentGroups":{"Groups":[{"SourceSegments":[{"Ref":"vip"}]}]}}"#);
        assert_eq!(
            v,
            [
                "SegmentGroups.Groups[0].SourceSegments[0].Ref: unknown field; a SegmentReference has Id and Version"
            ]
        );
    }
}
