//! The segment's wire shape: one set of types, used by manifests, diff and server alike.
//!
//! Field names are exactly those of the Pinpoint REST API (PascalCase, `tags` lowercase,
//! `GPSPoint`). Every struct rejects unknown fields, so a typo in a manifest or a request is
//! an error rather than a silently ignored criterion. Enums deserialize from strings with a
//! message that lists the accepted values and suggests the closest one.
//!
//! [`validate`] holds the rules the server and the manifest loader both enforce; [`strict`]
//! decodes JSON rejecting duplicate keys and unknown fields, for requests and import rows.

pub mod endpoint;
pub mod strict;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tags as they travel on the wire: a string-to-string map (lowercase `tags`).
pub type Tags = BTreeMap<String, String>;

/// Deserializes an optional map that refuses a key written twice: JSON parsers otherwise
/// keep the last value silently, and a criterion would vanish without a word.
pub fn unique_map<'de, D, V>(d: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(Option::<UniqueMap<V>>::deserialize(d)?.map(|m| m.0))
}

/// As [`unique_map`], for a required map.
pub fn unique_map_required<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(UniqueMap::<V>::deserialize(d)?.0)
}

struct UniqueMap<V>(BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = BTreeMap<String, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = m.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    let v = m.next_value()?;
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
            .map(UniqueMap)
    }
}

/// Declares a wire enum: a closed set of SCREAMING_SNAKE strings.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every accepted value, in the order the API documents them.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": Self::ALL })
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(unknown_value_message(&text, Self::ALL))
                })
            }
        }
    };
}

// After `wire_enum!`, which they use.
pub mod campaigns;
pub mod profiles;

/// `unknown value "INCLUDE"; expected INCLUSIVE or EXCLUSIVE (did you mean INCLUSIVE?)`
pub fn unknown_value_message(found: &str, expected: &[&str]) -> String {
    let mut msg = format!("unknown value {found:?}; expected {}", one_of(expected));
    if let Some(best) = closest(found, expected) {
        msg.push_str(&format!(" (did you mean {best}?)"));
    }
    msg
}

/// "A", "A or B", "A, B or C".
pub fn one_of(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The candidate closest to `found` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(found: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let upper = found.to_ascii_uppercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&upper, &c.to_ascii_uppercase()), *c))
        .filter(|(d, c)| *d > 0 || !c.eq(&found))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

wire_enum!(
    /// How an attribute's values select endpoints. `NOT_BETWEEN` is listed by the Segment
    /// resource page though not by the botocore model; we accept the union.
    AttributeType {
        Inclusive = "INCLUSIVE",
        Exclusive = "EXCLUSIVE",
        Contains = "CONTAINS",
        Before = "BEFORE",
        After = "AFTER",
        Between = "BETWEEN",
        NotBetween = "NOT_BETWEEN",
        On = "ON",
    }
);

impl AttributeType {
    /// Types whose values are ISO-8601 instants.
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            Self::Before | Self::After | Self::On | Self::Between | Self::NotBetween
        )
    }

    /// Types whose two values are ordered bounds rather than a set.
    pub fn is_range(self) -> bool {
        matches!(self, Self::Between | Self::NotBetween)
    }
}

wire_enum!(DimensionType { Inclusive = "INCLUSIVE", Exclusive = "EXCLUSIVE" });
wire_enum!(Duration { Hr24 = "HR_24", Day7 = "DAY_7", Day14 = "DAY_14", Day30 = "DAY_30" });
wire_enum!(RecencyType { Active = "ACTIVE", Inactive = "INACTIVE" });
wire_enum!(Include { All = "ALL", Any = "ANY", None = "NONE" });
wire_enum!(
    /// `ComparisonOperator` is a free string in the model; the documented five are enforced.
    ComparisonOperator {
        GreaterThan = "GREATER_THAN",
        LessThan = "LESS_THAN",
        GreaterThanOrEqual = "GREATER_THAN_OR_EQUAL",
        LessThanOrEqual = "LESS_THAN_OR_EQUAL",
        Equal = "EQUAL",
    }
);

/// The body of CreateSegment and UpdateSegment, and a manifest's `spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct WriteSegmentRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<SegmentDimensions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_groups: Option<SegmentGroupList>,
    #[serde(
        rename = "tags",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentDimensions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub attributes: Option<BTreeMap<String, AttributeDimension>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<SegmentBehaviors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographic: Option<SegmentDemographics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<SegmentLocation>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub metrics: Option<BTreeMap<String, MetricDimension>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub user_attributes: Option<BTreeMap<String, AttributeDimension>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AttributeDimension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_type: Option<AttributeType>,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SetDimension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension_type: Option<DimensionType>,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MetricDimension {
    pub comparison_operator: ComparisonOperator,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentBehaviors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recency: Option<RecencyDimension>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RecencyDimension {
    pub duration: Duration,
    pub recency_type: RecencyType,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentDemographics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<SetDimension>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentLocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<SetDimension>,
    #[serde(rename = "GPSPoint", default, skip_serializing_if = "Option::is_none")]
    pub gps_point: Option<GpsPointDimension>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GpsPointDimension {
    pub coordinates: GpsCoordinates,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_in_kilometers: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GpsCoordinates {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentGroupList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<SegmentGroup>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Include>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Vec<SegmentDimensions>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_segments: Option<Vec<SegmentReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<Include>,
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub group_type: Option<Include>,
}

/// A base segment. On the wire only `Id` (and `Version`) exist; a manifest may instead name
/// another manifest with `Ref`, which the reconciler resolves to an `Id` before sending.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "Ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
}

/// What the API returns for a segment (GetSegment, CreateSegment, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SegmentResponse {
    pub application_id: String,
    pub arn: String,
    pub creation_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<SegmentDimensions>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_groups: Option<SegmentGroupList>,
    pub segment_type: String,
    #[serde(rename = "tags", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    pub version: i32,
    /// Set on IMPORT segments: where the endpoints came from, and how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_definition: Option<ImportDefinition>,
}

/// SegmentImportResource: an imported segment's source and size.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_counts: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    pub external_id: String,
    pub format: String,
    #[serde(default)]
    pub role_arn: String,
    pub s3_url: String,
    pub size: i64,
}

impl WriteSegmentRequest {
    /// Whether the definition restricts nothing (no criterion, no base segment): it then
    /// matches every endpoint of the application.
    pub fn restricts_nothing(&self) -> bool {
        fn empty(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::Null => true,
                serde_json::Value::Array(a) => a.iter().all(empty),
                serde_json::Value::Object(o) => o.values().all(empty),
                _ => false,
            }
        }
        let dims = |d: &SegmentDimensions| serde_json::to_value(d).is_ok_and(|v| empty(&v));
        self.dimensions.as_ref().is_none_or(dims)
            && self
                .segment_groups
                .as_ref()
                .and_then(|g| g.groups.as_ref())
                .is_none_or(|groups| {
                    groups.iter().all(|g| {
                        g.dimensions.as_ref().is_none_or(|ds| ds.iter().all(dims))
                            && g.source_segments.as_ref().is_none_or(Vec::is_empty)
                    })
                })
    }
}

impl SegmentResponse {
    pub fn is_import(&self) -> bool {
        self.segment_type == "IMPORT" || self.import_definition.is_some()
    }

    /// The definition part of a live segment, as the request that would produce it.
    pub fn definition(&self) -> WriteSegmentRequest {
        WriteSegmentRequest {
            name: self.name.clone(),
            dimensions: self.dimensions.clone(),
            segment_groups: self.segment_groups.clone(),
            tags: None,
        }
    }
}

/// The body of CreateApp.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApplicationRequest {
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "tags", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApplicationResponse {
    pub arn: String,
    pub id: String,
    pub name: String,
    #[serde(rename = "tags", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    pub creation_date: String,
}

/// The body of TagResource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsModel {
    #[serde(rename = "tags", deserialize_with = "unique_map_required")]
    pub tags: Tags,
}

/// The error body every Pinpoint error carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageBody {
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "RequestID")]
    pub request_id: String,
}

/// How many levels of base segments (or Customer Profiles sources) below a segment are
/// followed: the evaluator's bound, which manifests and the server refuse to pass.
pub const MAX_BASE_DEPTH: usize = 32;

/// Campaign statuses in which a campaign is still going to send (Pinpoint's "active").
pub const ACTIVE_CAMPAIGN_STATUSES: &[&str] = &["SCHEDULED", "EXECUTING", "PENDING_NEXT_RUN"];
/// Journey states in which participants may still be inside the journey.
pub const LIVE_JOURNEY_STATES: &[&str] = &["ACTIVE", "PAUSED", "CLOSED"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_value_suggests_the_closest_accepted_value() {
        let err = serde_json::from_str::<DimensionType>("\"INCLUDE\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown value \"INCLUDE\"; expected INCLUSIVE or EXCLUSIVE (did you mean INCLUSIVE?)"
        );
    }

    #[test]
    fn a_key_written_twice_is_refused() {
        let err = serde_json::from_str::<WriteSegmentRequest>(
            r#"{"Dimensions":{"Attributes":{"a":{"Values":["x"]},"a":{"Values":["y"]}}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("duplicate key \"a\""), "{err}");
        let ok: WriteSegmentRequest =
            serde_json::from_str(r#"{"Dimensions":{"Attributes":null}}"#).unwrap();
        assert_eq!(ok.dimensions.unwrap().attributes, None);
    }

    #[test]
    fn a_distant_value_gets_no_suggestion() {
        assert_eq!(closest("PURPLE", DimensionType::ALL), None);
        assert_eq!(closest("day_7", Duration::ALL), Some("DAY_7"));
    }

    #[test]
    fn gps_point_and_tags_keep_their_wire_names() {
        let req = WriteSegmentRequest {
            dimensions: Some(SegmentDimensions {
                location: Some(SegmentLocation {
                    gps_point: Some(GpsPointDimension {
                        coordinates: GpsCoordinates {
                            latitude: 1.0,
                            longitude: 2.0,
                        },
                        range_in_kilometers: Some(3.0),
                    }),
                    country: None,
                }),
                ..Default::default()
            }),
            tags: Some(Tags::from([("k".into(), "v".into())])),
            ..Default::default()
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"Dimensions":{"Location":{"GPSPoint":{"Coordinates":{"Latitude":1.0,"Longitude":2.0},"RangeInKilometers":3.0}}},"tags":{"k":"v"}}"#
        );
    }
}
