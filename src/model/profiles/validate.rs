//! The rules a Customer Profiles request must satisfy beyond its types: every limit the
//! model states (lengths, counts, patterns), and the ones it leaves open, chosen here and
//! listed in the README. One implementation for the server (a 400 BadRequestException
//! naming the field) and the manifest loader (a located error).
//!
//! Every function returns every violation, in document order.

use super::{
    is_number, parse_date_or_instant, AttributeDimension, AttributeDimensionType,
    CalculatedAttributeDimension, CreateDomainRequest, CreateSegmentDefinitionRequest,
    DateDimensionType, Dimension, ProfileAttributes, ProfileDimension, ProfileFields, SearchKey,
    SearchProfilesRequest, SegmentGroups, SegmentSort, SEARCH_KEYS,
};
use crate::model::validate::{key_path, Violation};
use crate::model::Tags;

/// A domain's or a segment definition's name: 1–64 of `[a-zA-Z0-9_-]` (the model's `name`).
pub const MAX_NAME_LEN: usize = 64;
/// `DefaultExpirationDays`: 1–1098.
pub const EXPIRATION_DAYS: std::ops::RangeInclusive<i64> = 1..=1098;
pub const MAX_DISPLAY_NAME_LEN: usize = 255;
pub const MAX_DESCRIPTION_LEN: usize = 4000;
/// A criterion's values: 1–50, each 1–255 characters (1–1000 for AdditionalInformation).
pub const MAX_VALUES: usize = 50;
pub const MAX_VALUE_LEN: usize = 255;
pub const MAX_LONG_VALUE_LEN: usize = 1000;
/// Chosen (the model sets no limit): groups per definition, dimensions in all, sources per
/// group, keys in one `Attributes` or `CalculatedAttributes` map.
pub const MAX_GROUPS: usize = 100;
pub const MAX_DIMENSIONS: usize = 100;
pub const MAX_SOURCES: usize = 100;
pub const MAX_ATTRIBUTE_KEYS: usize = 50;
/// `SegmentSort.Attributes`: 1–10.
pub const MAX_SORT_ATTRIBUTES: usize = 10;
/// Tags: 1–50 per resource, keys 1–128, values at most 256.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;

struct Out(Vec<Violation>);

impl Out {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation {
            path: path.into(),
            message: message.into(),
        });
    }

    /// A string of `min..=max` characters.
    /// Also refuses a NUL character, on both databases: PostgreSQL text cannot hold one,
    /// and a value SQLite kept would not copy to PostgreSQL (`serve migrate`).
    fn length(&mut self, path: &str, text: &str, min: usize, max: usize) {
        let n = text.chars().count();
        if n < min || n > max {
            self.push(
                path,
                format!("must be {min} to {max} characters long, found {n}"),
            );
        } else if text.contains('\0') {
            self.push(path, "must not hold a NUL character (U+0000)");
        }
    }
}

/// Checks a domain's or a definition's name: the model's `^[a-zA-Z0-9_-]+$`, 1–64 long.
pub fn name(path: &str, text: &str) -> Vec<Violation> {
    let mut out = Out(Vec::new());
    name_into(&mut out, path, text);
    out.0
}

fn name_into(out: &mut Out, path: &str, text: &str) {
    if text.is_empty() || text.len() > MAX_NAME_LEN {
        out.push(
            path,
            format!(
                "must be 1 to {MAX_NAME_LEN} characters long, found {}",
                text.chars().count()
            ),
        );
    } else if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        out.push(
            path,
            format!(
                "{:?} is not a name: only letters, digits, '_' and '-' are allowed (found {c:?})",
                crate::text::safe(text)
            ),
        );
    }
}

/// Checks a CreateDomain body.
pub fn create_domain(req: &CreateDomainRequest) -> Vec<Violation> {
    let mut out = Out(Vec::new());
    if !EXPIRATION_DAYS.contains(&req.default_expiration_days) {
        out.push(
            "DefaultExpirationDays",
            format!(
                "must be from {} to {}, found {}",
                EXPIRATION_DAYS.start(),
                EXPIRATION_DAYS.end(),
                req.default_expiration_days
            ),
        );
    }
    for (field, v) in [
        ("DefaultEncryptionKey", &req.default_encryption_key),
        ("DeadLetterQueueUrl", &req.dead_letter_queue_url),
    ] {
        if let Some(v) = v {
            out.length(field, v, 0, 255);
        }
    }
    for (field, set) in [
        ("Matching", req.matching.is_some()),
        ("RuleBasedMatching", req.rule_based_matching.is_some()),
        ("DataStore", req.data_store.is_some()),
    ] {
        if set {
            out.push(
                field,
                "is not implemented by this server (identity resolution and the data store are not part of it); leave it out",
            );
        }
    }
    if let Some(tags) = &req.tags {
        out.0.extend(tags_rules("Tags", tags));
    }
    out.0
}

/// Checks a CreateSegmentDefinition body.
pub fn create_segment_definition(req: &CreateSegmentDefinitionRequest) -> Vec<Violation> {
    let mut out = Out(Vec::new());
    out.length("DisplayName", &req.display_name, 1, MAX_DISPLAY_NAME_LEN);
    if let Some(d) = &req.description {
        out.length("Description", d, 1, MAX_DESCRIPTION_LEN);
    }
    match (&req.segment_groups, &req.segment_sql_query) {
        (_, Some(_)) => out.push(
            "SegmentSqlQuery",
            "is not implemented by this server (ENHANCED segments); define the segment with SegmentGroups",
        ),
        (None, None) => out.push("SegmentGroups", "missing: a definition needs its criteria"),
        (Some(g), None) => segment_groups_into(&mut out, "SegmentGroups", g),
    }
    if let Some(sort) = &req.segment_sort {
        segment_sort_into(&mut out, "SegmentSort", sort);
    }
    if let Some(tags) = &req.tags {
        out.0.extend(tags_rules("Tags", tags));
    }
    out.0
}

/// Checks criteria (a definition's `SegmentGroups`, an estimate's `SegmentQuery`) at `path`.
pub fn segment_groups(path: &str, g: &SegmentGroups) -> Vec<Violation> {
    let mut out = Out(Vec::new());
    segment_groups_into(&mut out, path, g);
    out.0
}

fn segment_groups_into(out: &mut Out, path: &str, g: &SegmentGroups) {
    let groups = g.groups.as_deref().unwrap_or_default();
    if groups.len() > MAX_GROUPS {
        out.push(
            format!("{path}.Groups"),
            format!(
                "lists {} groups; at most {MAX_GROUPS} are accepted",
                groups.len()
            ),
        );
    }
    let mut dimensions = 0;
    for (gi, group) in groups.iter().enumerate() {
        let gp = format!("{path}.Groups[{gi}]");
        let sources = group.source_segments.as_deref().unwrap_or_default();
        if sources.len() > MAX_SOURCES {
            out.push(
                format!("{gp}.SourceSegments"),
                format!(
                    "lists {} source segments; at most {MAX_SOURCES} are accepted",
                    sources.len()
                ),
            );
        }
        for (si, s) in sources.iter().enumerate() {
            let sp = format!("{gp}.SourceSegments[{si}].SegmentDefinitionName");
            match &s.segment_definition_name {
                Some(n) => name_into(out, &sp, n),
                None => out.push(sp, "missing: name the segment definition to build on"),
            }
        }
        for (di, d) in group.dimensions.iter().flatten().enumerate() {
            dimensions += dimension(out, &format!("{gp}.Dimensions[{di}]"), d);
        }
    }
    if dimensions > MAX_DIMENSIONS {
        out.push(
            path,
            format!("holds {dimensions} criteria; at most {MAX_DIMENSIONS} are accepted"),
        );
    }
}

/// Checks one dimension; returns how many criteria it holds.
fn dimension(out: &mut Out, path: &str, d: &Dimension) -> usize {
    match (&d.profile_attributes, &d.calculated_attributes) {
        (Some(_), Some(_)) | (None, None) => {
            out.push(
                path,
                "a dimension holds exactly one of ProfileAttributes or CalculatedAttributes",
            );
            0
        }
        (Some(p), None) => profile_attributes(out, &format!("{path}.ProfileAttributes"), p),
        (None, Some(c)) => {
            let cp = format!("{path}.CalculatedAttributes");
            keys_bounded(out, &cp, c.len());
            for (k, a) in c {
                let kp = key_path(&cp, k);
                calculated_name(out, &kp, k);
                calculated(out, &kp, a);
            }
            c.len()
        }
    }
}

fn keys_bounded(out: &mut Out, path: &str, n: usize) {
    if n == 0 {
        out.push(path, "names no attribute");
    } else if n > MAX_ATTRIBUTE_KEYS {
        out.push(
            path,
            format!("names {n} attributes; at most {MAX_ATTRIBUTE_KEYS} are accepted"),
        );
    }
}

fn profile_attributes(out: &mut Out, path: &str, p: &ProfileAttributes) -> usize {
    let mut count = 0;
    for (field, d) in p.strings() {
        if let Some(d) = d {
            count += 1;
            let max = if field == "AdditionalInformation" {
                MAX_LONG_VALUE_LEN
            } else {
                MAX_VALUE_LEN
            };
            values(out, &format!("{path}.{field}"), &d.values, max);
        }
    }
    if let Some(d) = &p.birth_date {
        count += 1;
        dates(
            out,
            &format!("{path}.BirthDate"),
            &d.values,
            matches!(
                d.dimension_type,
                DateDimensionType::Between | DateDimensionType::NotBetween
            ),
        );
    }
    for (field, a) in p.addresses() {
        let Some(a) = a else { continue };
        let ap = format!("{path}.{field}");
        let parts: Vec<(&str, &ProfileDimension)> = a
            .parts()
            .into_iter()
            .filter_map(|(n, d)| d.map(|d| (n, d)))
            .collect();
        if parts.is_empty() {
            out.push(&ap, "names no part of the address");
        }
        for (part, d) in parts {
            count += 1;
            values(out, &format!("{ap}.{part}"), &d.values, MAX_VALUE_LEN);
        }
    }
    if let Some(attrs) = &p.attributes {
        let ap = format!("{path}.Attributes");
        keys_bounded(out, &ap, attrs.len());
        for (k, a) in attrs {
            count += 1;
            let kp = key_path(&ap, k);
            out.length(&kp, k, 1, 255);
            attribute(out, &kp, a);
        }
    }
    if let Some(t) = &p.profile_type {
        count += 1;
        if t.values.len() != 1 {
            out.push(
                format!("{path}.ProfileType.Values"),
                format!("must list exactly one value, found {}", t.values.len()),
            );
        }
    }
    if count == 0 {
        out.push(path, "sets no criterion");
    }
    count
}

/// `^[a-zA-Z_][a-zA-Z_0-9-]*$`, 1–255: a calculated attribute's name.
fn calculated_name(out: &mut Out, path: &str, name: &str) {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 255;
    if !ok {
        out.push(
            path,
            "is not a calculated attribute name: a letter or '_', then letters, digits, '_' or '-' (at most 255)",
        );
    }
}

fn attribute(out: &mut Out, path: &str, a: &AttributeDimension) {
    typed_values(out, path, a.dimension_type, &a.values);
}

fn calculated(out: &mut Out, path: &str, a: &CalculatedAttributeDimension) {
    typed_values(out, path, a.dimension_type, &a.values);
    if let Some(r) = a
        .condition_overrides
        .as_ref()
        .and_then(|c| c.range.as_ref())
    {
        if let Some(end) = r.end {
            if end < r.start {
                out.push(
                    format!("{path}.ConditionOverrides.Range.End"),
                    format!("is before Start ({end} < {})", r.start),
                );
            }
        }
    }
}

/// An attribute criterion's values, as its type reads them: dates, numbers, or strings.
fn typed_values(out: &mut Out, path: &str, kind: AttributeDimensionType, vals: &[String]) {
    if kind.is_temporal() {
        dates(
            out,
            path,
            vals,
            matches!(
                kind,
                AttributeDimensionType::Between | AttributeDimensionType::NotBetween
            ),
        );
        return;
    }
    values(out, path, vals, MAX_VALUE_LEN);
    if kind.is_numeric() {
        for (i, v) in vals.iter().enumerate() {
            if !is_number(v) {
                out.push(
                    format!("{path}.Values[{i}]"),
                    format!(
                        "{:?} is not a number; {kind} compares numbers written as -?DIGITS[.DIGITS]",
                        crate::text::safe(v)
                    ),
                );
            }
        }
    }
}

/// 1–50 values, each 1–`max` characters.
fn values(out: &mut Out, path: &str, vals: &[String], max: usize) {
    let vp = format!("{path}.Values");
    if vals.is_empty() || vals.len() > MAX_VALUES {
        out.push(
            &vp,
            format!("must list 1 to {MAX_VALUES} values, found {}", vals.len()),
        );
    }
    for (i, v) in vals.iter().enumerate() {
        out.length(&format!("{vp}[{i}]"), v, 1, max);
    }
}

/// Date values: each a date or an instant; two (ordered) for a range.
fn dates(out: &mut Out, path: &str, vals: &[String], range: bool) {
    values(out, path, vals, MAX_VALUE_LEN);
    let vp = format!("{path}.Values");
    let mut parsed = Vec::new();
    for (i, v) in vals.iter().enumerate() {
        match parse_date_or_instant(v) {
            Some(t) => parsed.push(t),
            None => out.push(
                format!("{vp}[{i}]"),
                format!(
                    "{:?} is not a date: expected YYYY-MM-DD or an ISO 8601 instant such as 2026-01-31T00:00:00Z",
                    crate::text::safe(v)
                ),
            ),
        }
    }
    if range {
        if vals.len() != 2 {
            out.push(
                &vp,
                format!(
                    "a range takes exactly two values (from, to), found {}",
                    vals.len()
                ),
            );
        } else if let [from, to] = parsed[..] {
            if to < from {
                out.push(&vp, "the range ends before it starts");
            }
        }
    } else if vals.len() > 1 {
        // BEFORE, AFTER and ON compare with one date: a second would be read by no one.
        out.push(
            &vp,
            format!(
                "BEFORE, AFTER and ON take exactly one value, found {}",
                vals.len()
            ),
        );
    }
}

fn segment_sort_into(out: &mut Out, path: &str, sort: &SegmentSort) {
    let n = sort.attributes.len();
    if n == 0 || n > MAX_SORT_ATTRIBUTES {
        out.push(
            format!("{path}.Attributes"),
            format!("must list 1 to {MAX_SORT_ATTRIBUTES} attributes, found {n}"),
        );
    }
    for (i, a) in sort.attributes.iter().enumerate() {
        let np = format!("{path}.Attributes[{i}].Name");
        let ok = !a.name.is_empty()
            && a.name.len() <= 64
            && a.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            out.push(np, "must be 1 to 64 of letters, digits, '_', '.' and '-'");
        }
    }
}

/// Chosen (the model sets no limit): custom attributes on one profile.
pub const MAX_PROFILE_ATTRIBUTES: usize = 100;
/// SearchProfiles: values per key (chosen; the model sets none), and additional keys (1–4).
pub const MAX_SEARCH_VALUES: usize = 100;
pub const MAX_ADDITIONAL_SEARCH_KEYS: usize = 4;

/// Checks a profile's fields: CreateProfile's (`update` false: every string 1–255
/// characters) or UpdateProfile's (`update` true: 0–255, an empty string removing the field).
pub fn profile_fields(p: &ProfileFields, update: bool) -> Vec<Violation> {
    let mut out = Out(Vec::new());
    let min = usize::from(!update);
    for (field, v) in p.strings() {
        if let Some(v) = v {
            let max = if field == "AdditionalInformation" {
                MAX_LONG_VALUE_LEN
            } else {
                MAX_VALUE_LEN
            };
            out.length(field, v, min, max);
        }
    }
    for (field, a) in p.addresses() {
        for (part, v) in a.iter().flat_map(|a| a.parts()) {
            if let Some(v) = v {
                out.length(&format!("{field}.{part}"), v, min, MAX_VALUE_LEN);
            }
        }
    }
    if let Some(attrs) = &p.attributes {
        if attrs.len() > MAX_PROFILE_ATTRIBUTES {
            out.push(
                "Attributes",
                format!(
                    "holds {} attributes; at most {MAX_PROFILE_ATTRIBUTES} are accepted",
                    attrs.len()
                ),
            );
        }
        for (k, v) in attrs {
            let kp = key_path("Attributes", k);
            out.length(&format!("{kp} (its name)"), k, 1, MAX_VALUE_LEN);
            out.length(&kp, v, min, MAX_VALUE_LEN);
        }
    }
    if let Some(e) = &p.engagement_preferences {
        for (field, list) in [("Phone", &e.phone), ("Email", &e.email)] {
            for (i, c) in list.iter().flatten().enumerate() {
                let cp = format!("EngagementPreferences.{field}[{i}]");
                if let Some(k) = &c.key_name {
                    name_into(&mut out, &format!("{cp}.KeyName"), k);
                }
                if let Some(v) = &c.key_value {
                    out.length(&format!("{cp}.KeyValue"), v, 1, MAX_VALUE_LEN);
                }
                if let Some(id) = &c.profile_id {
                    out.0.extend(profile_id(&format!("{cp}.ProfileId"), id));
                }
            }
        }
    }
    out.0
}

/// A profile id: 32 lowercase hexadecimal digits, as this server makes them.
pub fn profile_id(path: &str, id: &str) -> Vec<Violation> {
    let ok = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        return Vec::new();
    }
    vec![Violation {
        path: path.to_string(),
        message: format!(
            "{:?} is not a profile id: 32 lowercase hexadecimal digits",
            crate::text::safe(id)
        ),
    }]
}

/// Checks a SearchProfiles body: known keys, 1–100 values each, 1–4 additional keys.
pub fn search_profiles(req: &SearchProfilesRequest) -> Vec<Violation> {
    let mut out = Out(Vec::new());
    let key = |out: &mut Out, path: &str, k: &SearchKey| {
        if !SEARCH_KEYS.contains(&k.key_name.as_str()) {
            let mut message = format!(
                "{:?} is not a search key this server indexes (object types are not implemented); the keys are {}",
                crate::text::safe(&k.key_name),
                SEARCH_KEYS.join(", ")
            );
            if let Some(best) = crate::model::closest(&k.key_name, SEARCH_KEYS) {
                message.push_str(&format!(" (did you mean {best}?)"));
            }
            out.push(format!("{path}KeyName"), message);
        }
        if k.values.is_empty() || k.values.len() > MAX_SEARCH_VALUES {
            out.push(
                format!("{path}Values"),
                format!(
                    "must list 1 to {MAX_SEARCH_VALUES} values, found {}",
                    k.values.len()
                ),
            );
        }
        for (i, v) in k.values.iter().enumerate() {
            out.length(&format!("{path}Values[{i}]"), v, 1, MAX_VALUE_LEN);
        }
    };
    key(
        &mut out,
        "",
        &SearchKey {
            key_name: req.key_name.clone(),
            values: req.values.clone(),
        },
    );
    if let Some(more) = &req.additional_search_keys {
        if more.is_empty() || more.len() > MAX_ADDITIONAL_SEARCH_KEYS {
            out.push(
                "AdditionalSearchKeys",
                format!(
                    "must list 1 to {MAX_ADDITIONAL_SEARCH_KEYS} keys, found {}",
                    more.len()
                ),
            );
        }
        for (i, k) in more.iter().enumerate() {
            key(&mut out, &format!("AdditionalSearchKeys[{i}]."), k);
        }
    }
    out.0
}

/// Checks a tag map as Customer Profiles does: 1–50 tags; keys 1–128 characters of the
/// model's pattern `^(?!aws:)[a-zA-Z+-=._:/]+$` (whose `+-=` is a range, so digits and
/// `,;<` pass and a space does not), not starting `aws:`; values at most 256.
pub fn tags_rules(path: &str, tags: &Tags) -> Vec<Violation> {
    let mut out = Out(Vec::new());
    if tags.is_empty() || tags.len() > MAX_TAGS {
        out.push(
            path,
            format!("must hold 1 to {MAX_TAGS} tags, found {}", tags.len()),
        );
    }
    for (k, v) in tags {
        let kp = key_path(path, k);
        let n = k.chars().count();
        if n == 0 || n > MAX_TAG_KEY_LEN {
            out.push(
                &kp,
                format!("tag key must be 1 to {MAX_TAG_KEY_LEN} characters, found {n}"),
            );
        } else if k.starts_with("aws:") {
            out.push(&kp, "tag keys starting with aws: are reserved");
        } else if let Some(c) = k.chars().find(|c| !tag_key_char(*c)) {
            out.push(
                &kp,
                format!("tag key may not contain {c:?}: letters, digits and + - = . _ : / , ; < are allowed"),
            );
        }
        if v.chars().count() > MAX_TAG_VALUE_LEN {
            out.push(
                &kp,
                format!("tag value must be at most {MAX_TAG_VALUE_LEN} characters"),
            );
        }
    }
    out.0
}

/// `[a-zA-Z+-=._:/]`: letters, the range `+`…`=` (0x2B–0x3D), `.`, `_`, `:`, `/`.
fn tag_key_char(c: char) -> bool {
    c.is_ascii_alphabetic() || ('+'..='=').contains(&c) || matches!(c, '.' | '_' | ':' | '/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::profiles::CreateSegmentDefinitionRequest;

    fn messages(json: &str) -> Vec<String> {
        let req: CreateSegmentDefinitionRequest =
            crate::model::strict::from_slice(json.as_bytes()).unwrap();
        create_segment_definition(&req)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn names_follow_the_model() {
        assert!(name("n", "vip_2026-q1").is_empty());
        assert_eq!(
            name("SegmentDefinitionName", "a.b")[0].to_string(),
            "SegmentDefinitionName: \"a.b\" is not a name: only letters, digits, '_' and '-' are allowed (found '.')"
        );
        assert!(!name("n", "").is_empty());
        assert!(!name("n", &"a".repeat(65)).is_empty());
        assert!(name("n", &"a".repeat(64)).is_empty());
        assert!(!name("n", "é").is_empty());
    }

    #[test]
    fn a_valid_definition_with_every_family_passes() {
        let all = messages(
            r#"{"DisplayName":"VIP","Description":"d","SegmentGroups":{"Include":"ALL","Groups":[
              {"Type":"ALL","SourceType":"ANY","SourceSegments":[{"SegmentDefinitionName":"base"}],
               "Dimensions":[
                {"ProfileAttributes":{"FirstName":{"DimensionType":"BEGINS_WITH","Values":["A"]},
                  "BirthDate":{"DimensionType":"BETWEEN","Values":["1980-01-01","1990-12-31T23:59:59Z"]},
                  "Address":{"City":{"DimensionType":"INCLUSIVE","Values":["Paris"]}},
                  "Attributes":{"tier":{"DimensionType":"LIST_CONTAINS","Values":["gold"]},
                                "spend":{"DimensionType":"GREATER_THAN","Values":["100.5"]}},
                  "ProfileType":{"DimensionType":"INCLUSIVE","Values":["PROFILE"]}}},
                {"CalculatedAttributes":{"_orders":{"DimensionType":"GREATER_THAN","Values":["3"],
                  "ConditionOverrides":{"Range":{"Start":0,"End":30,"Unit":"DAYS"}}}}}]}]},
              "SegmentSort":{"Attributes":[{"Name":"LastName","Order":"ASC"}]},
              "Tags":{"segmentctl:name":"vip"}}"#,
        );
        assert!(all.is_empty(), "{all:#?}");
    }

    #[test]
    fn every_broken_limit_is_named_by_its_path() {
        let all = messages(
            r#"{"DisplayName":"","SegmentGroups":{"Groups":[{
                "SourceSegments":[{"SegmentDefinitionName":"a b"},{}],
                "Dimensions":[
                  {},
                  {"ProfileAttributes":{},"CalculatedAttributes":{"x":{"DimensionType":"EQUAL","Values":["1"]}}},
                  {"ProfileAttributes":{"LastName":{"DimensionType":"INCLUSIVE","Values":[]},
                    "BirthDate":{"DimensionType":"BETWEEN","Values":["1990-01-01"]},
                    "Attributes":{"spend":{"DimensionType":"LESS_THAN","Values":["1e3"]},
                                  "seen":{"DimensionType":"AFTER","Values":["soon"]}},
                    "ProfileType":{"DimensionType":"INCLUSIVE","Values":["PROFILE","ACCOUNT_PROFILE"]}}},
                  {"CalculatedAttributes":{"9lives":{"DimensionType":"EQUAL","Values":["1"]}}}]}]},
              "Tags":{"aws:x":"1","has space":"2"}}"#,
        );
        insta::assert_snapshot!(all.join("\n"));
    }

    /// A date compared BEFORE, AFTER or ON one value: a second value would change nothing
    /// (or, read first, the audience), so it is refused.
    #[test]
    fn before_after_and_on_take_one_date() {
        for kind in ["BEFORE", "AFTER", "ON"] {
            let json = format!(
                r#"{{"DisplayName":"x","SegmentGroups":{{"Groups":[{{"Dimensions":[{{"ProfileAttributes":{{
                  "BirthDate":{{"DimensionType":"{kind}","Values":["2024-01-14","2024-01-16"]}}}}}}]}}]}}}}"#
            );
            assert_eq!(
                messages(&json),
                ["SegmentGroups.Groups[0].Dimensions[0].ProfileAttributes.BirthDate.Values: BEFORE, AFTER and ON take exactly one value, found 2"],
                "{kind}"
            );
            assert!(
                messages(&json.replace(",\"2024-01-16\"", "")).is_empty(),
                "{kind}"
            );
        }
    }

    #[test]
    fn sql_queries_are_refused_and_criteria_are_required() {
        assert_eq!(
            messages(r#"{"DisplayName":"x","SegmentSqlQuery":"SELECT 1"}"#),
            ["SegmentSqlQuery: is not implemented by this server (ENHANCED segments); define the segment with SegmentGroups"]
        );
        assert_eq!(
            messages(r#"{"DisplayName":"x"}"#),
            ["SegmentGroups: missing: a definition needs its criteria"]
        );
    }

    #[test]
    fn tag_keys_follow_the_models_pattern_with_its_range() {
        let ok: Tags = [
            ("segmentctl:owner", ""),
            ("a=b,c;d<e", "x"),
            ("k/0.9_z", "y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(
            tags_rules("Tags", &ok).is_empty(),
            "{:?}",
            tags_rules("Tags", &ok)
        );
        for bad in ["aws:x", "a b", "a@b", "", "é"] {
            let t: Tags = [(bad.to_string(), "v".to_string())].into_iter().collect();
            assert!(!tags_rules("Tags", &t).is_empty(), "{bad:?}");
        }
        assert!(!tags_rules("Tags", &Tags::new()).is_empty());
    }
}
