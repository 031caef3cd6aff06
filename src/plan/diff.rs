//! Structural diff of segment definitions, compared as normalized JSON values.
//!
//! Normalization makes equal what means the same: an absent map or list equals an empty
//! one; a missing DimensionType or AttributeType is INCLUSIVE; `Values` are sets except the
//! two ordered bounds of BETWEEN / NOT_BETWEEN; base segments are named by manifest name
//! where one is known, so a definition compares the same before and after its base segments
//! exist. Server-owned fields (Id, Arn, dates, Version, ...) are not part of a definition.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{
    AttributeDimension, AttributeType, DimensionType, SegmentDimensions, SegmentGroupList,
    SetDimension, WriteSegmentRequest,
};

/// Fills defaults and orders sets in a typed definition (tags are dropped).
pub fn canonical(
    def: &WriteSegmentRequest,
    name_of: &dyn Fn(&str) -> Option<String>,
) -> WriteSegmentRequest {
    canonical_owned(
        WriteSegmentRequest {
            tags: None,
            name: def.name.clone(),
            dimensions: def.dimensions.clone(),
            segment_groups: def.segment_groups.clone(),
        },
        name_of,
    )
}

/// As [`canonical`], taking the definition rather than copying it.
pub fn canonical_owned(
    def: WriteSegmentRequest,
    name_of: &dyn Fn(&str) -> Option<String>,
) -> WriteSegmentRequest {
    let mut d = WriteSegmentRequest { tags: None, ..def };
    if let Some(dims) = &mut d.dimensions {
        canonical_dimensions(dims);
    }
    if let Some(groups) = &mut d.segment_groups {
        for g in groups.groups.iter_mut().flatten() {
            for dims in g.dimensions.iter_mut().flatten() {
                canonical_dimensions(dims);
            }
            for s in g.source_segments.iter_mut().flatten() {
                if let Some(name) = s.id.as_deref().and_then(name_of) {
                    s.id = None;
                    s.reference = Some(name);
                }
            }
            none_if(&mut g.dimensions, Vec::is_empty);
            none_if(&mut g.source_segments, Vec::is_empty);
        }
        none_if(&mut groups.groups, Vec::is_empty);
    }
    none_if(&mut d.dimensions, |x| *x == SegmentDimensions::default());
    none_if(&mut d.segment_groups, |x| *x == SegmentGroupList::default());
    d
}

/// Absent and empty mean the same: keep one form.
fn none_if<T>(slot: &mut Option<T>, empty: impl Fn(&T) -> bool) {
    if slot.as_ref().is_some_and(empty) {
        *slot = None;
    }
}

/// The fingerprint of a definition's meaning: equal for definitions that normalize equal.
/// Stored in the `segmentctl:digest` tag to tell drift from manifest changes.
pub fn fingerprint(canonical: &WriteSegmentRequest) -> String {
    let bytes = serde_json::to_vec(canonical).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

fn canonical_set(s: &mut SetDimension) {
    s.dimension_type.get_or_insert(DimensionType::Inclusive);
    s.values.sort();
    s.values.dedup();
}

fn canonical_attribute(a: &mut AttributeDimension) {
    let kind = *a.attribute_type.get_or_insert(AttributeType::Inclusive);
    if !kind.is_range() {
        a.values.sort();
        a.values.dedup();
    }
}

fn canonical_dimensions(d: &mut SegmentDimensions) {
    for map in [&mut d.attributes, &mut d.user_attributes]
        .into_iter()
        .flatten()
    {
        map.values_mut().for_each(canonical_attribute);
    }
    none_if(&mut d.attributes, |m| m.is_empty());
    none_if(&mut d.user_attributes, |m| m.is_empty());
    none_if(&mut d.metrics, |m| m.is_empty());
    none_if(&mut d.behavior, |b| b.recency.is_none());
    if let Some(demo) = &mut d.demographic {
        for s in [
            &mut demo.app_version,
            &mut demo.channel,
            &mut demo.device_type,
            &mut demo.make,
            &mut demo.model,
            &mut demo.platform,
        ]
        .into_iter()
        .flatten()
        {
            canonical_set(s);
        }
    }
    if let Some(c) = d.location.as_mut().and_then(|l| l.country.as_mut()) {
        canonical_set(c);
    }
    none_if(&mut d.demographic, |x| *x == Default::default());
    none_if(&mut d.location, |x| *x == Default::default());
}

/// The normalized JSON form of a definition: canonical, with empty values removed.
pub fn normalize(def: &WriteSegmentRequest, name_of: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut v = serde_json::to_value(canonical(def, name_of)).unwrap_or(Value::Null);
    prune_empty(&mut v);
    v
}

fn prune_empty(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, child| !prune_empty(child));
            map.is_empty()
        }
        Value::Array(items) => {
            // Items keep their positions (a group's index matters); only a wholly empty list
            // counts as absent.
            let mut all_empty = true;
            for item in items.iter_mut() {
                if !prune_empty(item) {
                    all_empty = false;
                }
            }
            items.is_empty()
                || (all_empty
                    && items
                        .iter()
                        .all(|i| i.is_null() || i == &Value::Object(Default::default())))
        }
        _ => false,
    }
}

/// A short, stable fingerprint of a normalized value.
pub fn digest(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// One difference at a leaf of the definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Add {
        path: String,
        value: Value,
    },
    Remove {
        path: String,
        value: Value,
    },
    Modify {
        path: String,
        before: Value,
        after: Value,
    },
    /// A set of values gained and lost members.
    Values {
        path: String,
        added: Vec<String>,
        removed: Vec<String>,
        /// The set as it will be, so a reviewer sees the result beside the change.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        result: Vec<String>,
    },
}

/// Renders a leaf value for people: strings bare, lists joined with ", ".
/// The data itself (set members are compared by it): strings bare, lists joined with ", ".
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(", "),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// A leaf value for people: as [`show`], with control characters shown, not obeyed, and
/// numbers as people write them (`10`, not `10.0`).
pub fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => crate::text::safe(s).into_owned(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(", "),
        Value::Number(n) => n
            .as_f64()
            .filter(|_| !n.is_i64() && !n.is_u64())
            .map(crate::text::number)
            .unwrap_or_else(|| n.to_string()),
        other => show(other),
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Attribute names are part of paths, and values are users' text: control characters
        // are shown, never obeyed.
        let safe = crate::text::safe;
        match self {
            Change::Add { path, value } => write!(f, "{}: + {}", safe(path), shown(value)),
            Change::Remove { path, value } => write!(f, "{}: − {}", safe(path), shown(value)),
            Change::Modify {
                path,
                before,
                after,
            } => {
                write!(f, "{}: {} → {}", safe(path), shown(before), shown(after))
            }
            Change::Values {
                path,
                added,
                removed,
                result,
            } => {
                // `Country.Values: US, CA (− MX)`: the result, then what changed.
                write!(f, "{}: ", safe(path))?;
                if result.is_empty() {
                    f.write_str("(none)")?;
                } else {
                    f.write_str(&safe(&result.join(", ")))?;
                }
                let delta: Vec<String> = added
                    .iter()
                    .map(|a| format!("+ {}", safe(a)))
                    .chain(removed.iter().map(|r| format!("− {}", safe(r))))
                    .collect();
                write!(f, " ({})", delta.join(" "))
            }
        }
    }
}

/// The leaf-level differences from `before` to `after` (both normalized), in path order.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", before, after, false, &mut out);
    out
}

fn is_scalar_list(v: &Value) -> bool {
    matches!(v, Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()))
}

fn join(path: &str, key: &str) -> String {
    crate::model::validate::key_path(path, key)
}

fn walk(path: &str, before: &Value, after: &Value, set_valued: bool, out: &mut Vec<Change>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let ordered = [b, a].iter().any(|m| {
                m.get("AttributeType")
                    .and_then(Value::as_str)
                    .and_then(AttributeType::parse)
                    .is_some_and(AttributeType::is_range)
            });
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                let p = join(path, k);
                let values = k == "Values" && !ordered;
                match (b.get(k), a.get(k)) {
                    (Some(x), Some(y)) => walk(&p, x, y, values, out),
                    (None, Some(y)) => leaves(&p, y, true, out),
                    (Some(x), None) => leaves(&p, x, false, out),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(b), Value::Array(a))
            if set_valued && is_scalar_list(before) && is_scalar_list(after) =>
        {
            let bs: BTreeSet<String> = b.iter().map(show).collect();
            let as_: BTreeSet<String> = a.iter().map(show).collect();
            out.push(Change::Values {
                path: path.to_string(),
                added: as_.difference(&bs).cloned().collect(),
                removed: bs.difference(&as_).cloned().collect(),
                // Normalized: sorted, as sets are.
                result: a.iter().map(show).collect(),
            });
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() && !is_scalar_list(before) => {
            for (i, (x, y)) in b.iter().zip(a).enumerate() {
                walk(&format!("{path}[{i}]"), x, y, false, out);
            }
        }
        (Value::Array(b), Value::Array(a)) if !is_scalar_list(before) || !is_scalar_list(after) => {
            // Lists of objects of different lengths: compare the common prefix, then the rest.
            let n = b.len().min(a.len());
            for i in 0..n {
                walk(&format!("{path}[{i}]"), &b[i], &a[i], false, out);
            }
            for (i, x) in b.iter().enumerate().skip(n) {
                leaves(&format!("{path}[{i}]"), x, false, out);
            }
            for (i, y) in a.iter().enumerate().skip(n) {
                leaves(&format!("{path}[{i}]"), y, true, out);
            }
        }
        _ => out.push(Change::Modify {
            path: path.to_string(),
            before: before.clone(),
            after: after.clone(),
        }),
    }
}

/// Every leaf under `v`, as additions or removals.
fn leaves(path: &str, v: &Value, added: bool, out: &mut Vec<Change>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                leaves(&join(path, k), child, added, out);
            }
        }
        Value::Array(items) if !is_scalar_list(v) => {
            for (i, item) in items.iter().enumerate() {
                leaves(&format!("{path}[{i}]"), item, added, out);
            }
        }
        _ => out.push(if added {
            Change::Add {
                path: path.to_string(),
                value: v.clone(),
            }
        } else {
            Change::Remove {
                path: path.to_string(),
                value: v.clone(),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> WriteSegmentRequest {
        serde_json::from_str(json).unwrap()
    }

    fn changes(a: &str, b: &str) -> Vec<String> {
        let none = |_: &str| None;
        diff(&normalize(&req(a), &none), &normalize(&req(b), &none))
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn canonical_forms_agree_with_normalized_values() {
        let none = |_: &str| None;
        let a = req(
            r#"{"Name":"a","Dimensions":{"Attributes":{},"Behavior":{},"Location":{"Country":{"Values":["US","CA"]}}}}"#,
        );
        let b = req(
            r#"{"Name":"a","Dimensions":{"Location":{"Country":{"DimensionType":"INCLUSIVE","Values":["CA","US"]}}}}"#,
        );
        assert_eq!(canonical(&a, &none), canonical(&b, &none));
        assert_eq!(
            fingerprint(&canonical(&a, &none)),
            fingerprint(&canonical(&b, &none))
        );
        let c = req(r#"{"Name":"a","SegmentGroups":{"Groups":[]}}"#);
        assert_eq!(
            canonical(&c, &none),
            canonical(&req(r#"{"Name":"a"}"#), &none)
        );
    }

    #[test]
    fn absent_and_empty_and_defaults_are_equal() {
        assert!(changes(
            r#"{"Name":"a","Dimensions":{"Location":{"Country":{"Values":["US","CA"]}}}}"#,
            r#"{"Name":"a","Dimensions":{"Attributes":{},"Location":{"Country":{"DimensionType":"INCLUSIVE","Values":["CA","US","US"]}}},"tags":{"x":"y"}}"#
        )
        .is_empty());
    }

    #[test]
    fn values_change_as_sets_and_scalars_show_before_and_after() {
        assert_eq!(
            changes(
                r#"{"Dimensions":{"Location":{"Country":{"Values":["US","MX"]}},"Behavior":{"Recency":{"Duration":"DAY_7","RecencyType":"ACTIVE"}}}}"#,
                r#"{"Dimensions":{"Location":{"Country":{"Values":["MX","CA"]}},"Behavior":{"Recency":{"Duration":"DAY_30","RecencyType":"ACTIVE"}}}}"#
            ),
            [
                "Dimensions.Behavior.Recency.Duration: DAY_7 → DAY_30",
                "Dimensions.Location.Country.Values: CA, MX (+ CA − US)",
            ]
        );
    }

    #[test]
    fn between_bounds_are_ordered() {
        let a = r#"{"Dimensions":{"Attributes":{"d":{"AttributeType":"BETWEEN","Values":["2026-01-01T00:00:00Z","2026-02-01T00:00:00Z"]}}}}"#;
        let b = r#"{"Dimensions":{"Attributes":{"d":{"AttributeType":"BETWEEN","Values":["2026-02-01T00:00:00Z","2026-01-01T00:00:00Z"]}}}}"#;
        assert_eq!(
            changes(a, b),
            ["Dimensions.Attributes.d.Values: 2026-01-01T00:00:00Z, 2026-02-01T00:00:00Z → 2026-02-01T00:00:00Z, 2026-01-01T00:00:00Z"]
        );
    }

    #[test]
    fn added_criteria_are_listed_leaf_by_leaf() {
        assert_eq!(
            changes(
                r#"{"Name":"a"}"#,
                r#"{"Name":"a","Dimensions":{"Metrics":{"spend":{"ComparisonOperator":"GREATER_THAN","Value":10}}}}"#
            ),
            [
                "Dimensions.Metrics.spend.ComparisonOperator: + GREATER_THAN",
                "Dimensions.Metrics.spend.Value: + 10",
            ]
        );
    }

    #[test]
    fn base_segments_compare_by_manifest_name() {
        let live = req(r#"{"SegmentGroups":{"Groups":[{"SourceSegments":[{"Id":"abc"}]}]}}"#);
        let desired = req(r#"{"SegmentGroups":{"Groups":[{"SourceSegments":[{"Ref":"vip"}]}]}}"#);
        let names = |id: &str| (id == "abc").then(|| "vip".to_string());
        assert_eq!(normalize(&live, &names), normalize(&desired, &names));
        assert_eq!(
            digest(&normalize(&live, &names)),
            digest(&normalize(&desired, &names))
        );
    }
}
