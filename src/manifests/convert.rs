//! `convert`: Pinpoint segments as Customer Profiles segment definitions, with every mapping
//! that is not exact said, located and explained. Pure: desired state in, definitions and
//! notes out.
//!
//! The mapping (README, "Converting to Customer Profiles"):
//! - exact: `Include`, a group's `Type` and `SourceType` (written out, as the two APIs'
//!   defaults differ: Pinpoint's `SourceType` defaults to ANY, Customer Profiles' to ALL),
//!   base segments in the folder (by name), `UserAttributes` → `Attributes` (one profile per
//!   user; INCLUSIVE as LIST_CONTAINS, which reads a profile's list value as Pinpoint reads a
//!   user's list);
//! - approximate: endpoint `Attributes` and the `Demographic` fields become profile
//!   attributes ("any endpoint of the profile"), `Location.Country` becomes
//!   `Address.Country`, `Metrics` compare attributes as numbers, `Behavior.Recency` becomes a
//!   calculated attribute over a day range, a base segment's `Version` is dropped, an
//!   imported segment becomes a membership attribute, several criteria of one dimension go
//!   into one `ProfileAttributes`;
//! - impossible: `GPSPoint`, a base segment by `Id` (not in the folder), more than 50 values,
//!   and a recency criterion in a group whose `Type` is not ALL. Refused, or dropped and
//!   named with `drop_unsupported`.

use std::collections::BTreeMap;

use crate::manifests::desired::{DesiredSegment, DesiredState};
use crate::model::profiles::{
    self as cp, AddressDimension, AttributeDimensionType, CalculatedAttributeDimension,
    ConditionOverrides, CreateSegmentDefinitionRequest, ProfileAttributes, ProfileDimension,
    RangeOverride, RangeUnit, SegmentGroups, SourceSegment, StringDimensionType,
};
use crate::model::validate::key_path;
use crate::model::{
    AttributeType, ComparisonOperator, DimensionType, Duration, Include, RecencyType,
    SegmentDimensions, SegmentGroup, SetDimension, WriteSegmentRequest,
};

/// How faithfully a Pinpoint field maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    Approximate,
    /// Not expressible: the conversion is refused, or (with `drop_unsupported`) the
    /// criterion is dropped.
    Impossible,
}

/// One mapping that is not exact.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Note {
    /// The application's key and the segment's `metadata.name`.
    pub application: String,
    pub segment: String,
    pub file: String,
    pub line: usize,
    /// The Pinpoint field, as a path in the manifest (`spec.Dimensions.Location.GPSPoint`).
    pub field: String,
    pub fit: Fit,
    /// What it became (empty when nothing).
    pub became: String,
    pub why: String,
}

/// A converted definition: its name (the segment's `metadata.name`), the request that
/// creates it, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub application: String,
    pub name: String,
    pub spec: CreateSegmentDefinitionRequest,
    pub file: String,
    pub line: usize,
}

/// Who each segment reaches before and after (`convert --endpoints`): endpoints by the
/// Pinpoint segment, profiles (the endpoints gathered by user) by its definition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Audiences {
    pub file: String,
    pub endpoints: u64,
    pub profiles: u64,
    pub segments: Vec<AudienceRow>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudienceRow {
    pub segment: String,
    pub endpoints: u64,
    pub profiles: u64,
}

/// What `convert` makes of a folder.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversion {
    pub definitions: Vec<Definition>,
    pub notes: Vec<Note>,
    pub audiences: Option<Audiences>,
    /// Whether some criterion could not be converted and was not dropped (nothing is to be
    /// written then).
    pub refused: bool,
}

/// The name of the calculated attribute a recency criterion reads: the number of a
/// profile's sessions (the domain must define it).
pub const RECENCY_ATTRIBUTE: &str = "_pinpoint_sessions";

/// Converts every segment of `desired`.
pub fn convert(desired: &DesiredState, drop_unsupported: bool) -> Conversion {
    let mut out = Conversion::default();
    for app in &desired.apps {
        for seg in &app.segments {
            let key = match &app.key {
                crate::manifests::desired::AppKey::Id(id)
                | crate::manifests::desired::AppKey::Ref(id) => id.clone(),
            };
            let mut c = Converter {
                app: key.clone(),
                seg,
                drop_unsupported,
                notes: Vec::new(),
                refused: false,
            };
            let spec = c.definition();
            // What the API would refuse (a tag Customer Profiles does not take, …) is said
            // here, not found at apply.
            for v in cp::validate::create_segment_definition(&spec) {
                // Nothing to drop: the definition as a whole would be refused.
                c.refuse(
                    "spec",
                    "",
                    format!("the definition breaks Customer Profiles' rules: {v}"),
                );
            }
            c.notes.sort_by_key(|n| n.line);
            out.refused |= c.refused;
            out.notes.extend(c.notes);
            out.definitions.push(Definition {
                application: key,
                name: seg.name.clone(),
                spec,
                file: seg.origin.file.clone(),
                line: seg.origin.line(),
            });
        }
    }
    out
}

struct Converter<'a> {
    app: String,
    seg: &'a DesiredSegment,
    drop_unsupported: bool,
    notes: Vec<Note>,
    refused: bool,
}

impl Converter<'_> {
    fn note(&mut self, field: &str, fit: Fit, became: impl Into<String>, why: impl Into<String>) {
        let line = self
            .seg
            .origin
            .error(field, String::new())
            .line
            .max(self.seg.origin.line());
        let mut why = why.into();
        if fit == Fit::Impossible {
            if self.drop_unsupported {
                why.push_str("; dropped (--drop-unsupported)");
            } else {
                self.refused = true;
                why.push_str("; refused (drop it with --drop-unsupported, or change the segment)");
            }
        }
        self.notes.push(Note {
            application: self.app.clone(),
            segment: self.seg.name.clone(),
            file: self.seg.origin.file.clone(),
            line,
            field: field.to_string(),
            fit,
            became: became.into(),
            why,
        });
    }

    /// An impossible mapping that no flag drops: the conversion is refused.
    fn refuse(&mut self, field: &str, became: &str, why: impl Into<String>) {
        let keep = std::mem::replace(&mut self.drop_unsupported, false);
        self.note(field, Fit::Impossible, became, why);
        self.drop_unsupported = keep;
        if let Some(n) = self.notes.last_mut() {
            n.why = n.why.replace(
                "; refused (drop it with --drop-unsupported, or change the segment)",
                "; refused (nothing here can be dropped: change the segment)",
            );
        }
    }

    fn definition(&mut self) -> CreateSegmentDefinitionRequest {
        let spec: &WriteSegmentRequest = &self.seg.spec;
        let segment_groups = if self.seg.import.is_some() {
            self.imported()
        } else if let Some(groups) = &spec.segment_groups {
            let converted: Vec<cp::Group> = groups
                .groups
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, g)| self.group(&format!("spec.SegmentGroups.Groups[{i}]"), g))
                .collect();
            SegmentGroups {
                groups: Some(converted),
                include: Some(groups.include.unwrap_or(Include::All)),
            }
        } else {
            let group = SegmentGroup {
                dimensions: spec.dimensions.clone().map(|d| vec![d]),
                group_type: Some(Include::All),
                ..Default::default()
            };
            SegmentGroups {
                groups: Some(vec![self.group("spec", &group)]),
                include: Some(Include::All),
            }
        };
        CreateSegmentDefinitionRequest {
            display_name: spec
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self.seg.name.clone()),
            description: Some(format!(
                "Converted from the Pinpoint segment {} by segmentctl convert",
                self.seg.name
            )),
            segment_groups: Some(segment_groups),
            tags: spec.tags.clone().filter(|t| !t.is_empty()),
            ..Default::default()
        }
    }

    /// An imported segment: the profiles carrying its membership attribute.
    fn imported(&mut self) -> SegmentGroups {
        let key = import_attribute(&self.seg.name);
        self.note(
            "spec",
            Fit::Approximate,
            format!("Attributes.{key} INCLUSIVE [\"true\"]"),
            format!(
                "Customer Profiles has no imported segments: the profiles of its members must carry the attribute {key} = \"true\" (written when the profiles are loaded)"
            ),
        );
        let mut attributes = BTreeMap::new();
        attributes.insert(
            key,
            cp::AttributeDimension {
                dimension_type: AttributeDimensionType::Inclusive,
                values: vec!["true".into()],
            },
        );
        let dimension = profile_dimension(ProfileAttributes {
            attributes: Some(attributes),
            ..Default::default()
        });
        SegmentGroups {
            groups: Some(vec![cp::Group {
                dimensions: Some(vec![dimension]),
                group_type: Some(Include::All),
                ..Default::default()
            }]),
            include: Some(Include::All),
        }
    }

    fn group(&mut self, path: &str, g: &SegmentGroup) -> cp::Group {
        let group_type = g.group_type.unwrap_or(Include::All);
        let notes_before = self.notes.len();
        let mut dimensions = Vec::new();
        for (i, d) in g.dimensions.iter().flatten().enumerate() {
            let at = if path == "spec" {
                "spec.Dimensions".to_string()
            } else {
                format!("{path}.Dimensions[{i}]")
            };
            dimensions.extend(self.dimensions(&at, d, group_type));
        }
        let mut sources = Vec::new();
        for (i, s) in g.source_segments.iter().flatten().enumerate() {
            let at = format!("{path}.SourceSegments[{i}]");
            if s.version.is_some() {
                self.note(
                    &format!("{at}.Version"),
                    Fit::Approximate,
                    "",
                    "a segment definition names its base without a version: the base's current definition counts",
                );
            }
            match &s.reference {
                Some(name) => sources.push(SourceSegment {
                    segment_definition_name: Some(name.clone()),
                }),
                None => self.note(
                    &at,
                    Fit::Impossible,
                    "",
                    "a base segment by Id is not in the folder: name its manifest with Ref (or import it first)",
                ),
            }
        }
        let dropped = self.notes[notes_before..]
            .iter()
            .any(|n| n.fit == Fit::Impossible);
        if dropped && dimensions.is_empty() && sources.is_empty() {
            self.refuse(
                path,
                "an empty group",
                "every criterion and base of this group would be dropped: an empty group restricts nothing, so the definition's audience would change entirely",
            );
        }
        cp::Group {
            dimensions: (!dimensions.is_empty()).then_some(dimensions),
            source_segments: (!sources.is_empty()).then_some(sources),
            source_type: (!sources_empty(g)).then(|| g.source_type.unwrap_or(Include::Any)),
            group_type: Some(group_type),
        }
    }

    /// One Pinpoint dimension: one `ProfileAttributes` with all its criteria, and a
    /// calculated attribute for a recency criterion.
    fn dimensions(
        &mut self,
        path: &str,
        d: &SegmentDimensions,
        group_type: Include,
    ) -> Vec<cp::Dimension> {
        let mut p = ProfileAttributes::default();
        let mut attributes = BTreeMap::new();
        self.user_attributes(path, d, &mut attributes);
        self.endpoint_attributes(path, d, &mut attributes);
        self.demographic(path, d, &mut attributes);
        self.location(path, d, &mut p);
        self.metrics(path, d, &mut attributes);
        let criteria = attributes.len() + usize::from(p.address.is_some());
        if criteria > 1 {
            self.note(
                path,
                Fit::Approximate,
                "one ProfileAttributes",
                format!("its {criteria} criteria go into one ProfileAttributes, which must all hold (Customer Profiles' documentation does not say so; segmentctl serve reads it so)"),
            );
        }
        if !attributes.is_empty() {
            p.attributes = Some(attributes);
        }
        let mut out = Vec::new();
        if p != ProfileAttributes::default() {
            out.push(profile_dimension(p));
        }
        if let Some(recency) = self.recency(path, d, group_type, out.is_empty()) {
            out.push(recency);
        }
        out
    }

    fn user_attributes(
        &mut self,
        path: &str,
        d: &SegmentDimensions,
        out: &mut BTreeMap<String, cp::AttributeDimension>,
    ) {
        for (k, a) in d.user_attributes.iter().flatten() {
            let at = key_path(&format!("{path}.UserAttributes"), k);
            if let Some(c) = self.attribute(&at, a.attribute_type, &a.values) {
                if c.dimension_type != AttributeDimensionType::ListContains {
                    self.note(
                        &at,
                        Fit::Approximate,
                        format!("Attributes.{k} {}", c.dimension_type),
                        whole_value(c.dimension_type),
                    );
                }
                out.insert(k.clone(), c);
            }
        }
    }

    fn endpoint_attributes(
        &mut self,
        path: &str,
        d: &SegmentDimensions,
        out: &mut BTreeMap<String, cp::AttributeDimension>,
    ) {
        for (k, a) in d.attributes.iter().flatten() {
            let at = key_path(&format!("{path}.Attributes"), k);
            if out.contains_key(k) {
                self.note(&at, Fit::Impossible, "", format!("UserAttributes.{k} of the same dimension is Attributes.{k} already: a profile has one attribute of a name"));
                continue;
            }
            if let Some(c) = self.attribute(&at, a.attribute_type, &a.values) {
                let why = if c.dimension_type == AttributeDimensionType::ListContains {
                    "an endpoint attribute becomes a profile attribute holding the values of all the profile's endpoints (a JSON array): it holds when any endpoint had one of these".to_string()
                } else {
                    format!("an endpoint attribute becomes a profile attribute holding the values of all the profile's endpoints; {}", whole_value(c.dimension_type))
                };
                self.note(
                    &at,
                    Fit::Approximate,
                    format!("Attributes.{k} {}", c.dimension_type),
                    why,
                );
                out.insert(k.clone(), c);
            }
        }
    }

    fn attribute(
        &mut self,
        at: &str,
        kind: Option<AttributeType>,
        values: &[String],
    ) -> Option<cp::AttributeDimension> {
        if !self.values_fit(at, values) {
            return None;
        }
        let kind = match kind.unwrap_or(AttributeType::Inclusive) {
            AttributeType::Inclusive => AttributeDimensionType::ListContains,
            AttributeType::Exclusive => AttributeDimensionType::Exclusive,
            AttributeType::Contains => AttributeDimensionType::Contains,
            AttributeType::Before => AttributeDimensionType::Before,
            AttributeType::After => AttributeDimensionType::After,
            AttributeType::On => AttributeDimensionType::On,
            AttributeType::Between => AttributeDimensionType::Between,
            AttributeType::NotBetween => AttributeDimensionType::NotBetween,
        };
        Some(cp::AttributeDimension {
            dimension_type: kind,
            values: values.to_vec(),
        })
    }

    /// At most 50 values of 1–255 characters, as Customer Profiles takes them.
    fn values_fit(&mut self, at: &str, values: &[String]) -> bool {
        if values.len() > cp::validate::MAX_VALUES {
            self.note(
                &format!("{at}.Values"),
                Fit::Impossible,
                "",
                format!(
                    "{} values; a Customer Profiles criterion takes at most {}",
                    values.len(),
                    cp::validate::MAX_VALUES
                ),
            );
            return false;
        }
        if let Some(v) = values
            .iter()
            .find(|v| v.is_empty() || v.chars().count() > cp::validate::MAX_VALUE_LEN)
        {
            self.note(
                &format!("{at}.Values"),
                Fit::Impossible,
                "",
                format!(
                    "a value of {} characters; Customer Profiles takes 1 to {}",
                    v.chars().count(),
                    cp::validate::MAX_VALUE_LEN
                ),
            );
            return false;
        }
        true
    }

    fn demographic(
        &mut self,
        path: &str,
        d: &SegmentDimensions,
        out: &mut BTreeMap<String, cp::AttributeDimension>,
    ) {
        let Some(demo) = &d.demographic else { return };
        let fields: [(&str, &Option<SetDimension>); 6] = [
            ("AppVersion", &demo.app_version),
            ("Channel", &demo.channel),
            ("DeviceType", &demo.device_type),
            ("Make", &demo.make),
            ("Model", &demo.model),
            ("Platform", &demo.platform),
        ];
        for (field, set) in fields {
            let Some(set) = set else { continue };
            let at = format!("{path}.Demographic.{field}");
            if out.contains_key(field) || !self.values_fit(&at, &set.values) {
                if out.contains_key(field) {
                    self.note(&at, Fit::Impossible, "", format!("an attribute {field} of the same dimension is Attributes.{field} already"));
                }
                continue;
            }
            let kind = match set.dimension_type.unwrap_or(DimensionType::Inclusive) {
                DimensionType::Inclusive => AttributeDimensionType::ListContains,
                DimensionType::Exclusive => AttributeDimensionType::Exclusive,
            };
            let mut why = if field == "Channel" {
                "the channel is an endpoint's, and the campaign chooses it; a profile attribute Channel must list the profile's channels (a JSON array)".to_string()
            } else {
                format!("Customer Profiles has no device fields: the profile attribute {field} must list the values of the profile's devices (a JSON array)")
            };
            if kind == AttributeDimensionType::Exclusive {
                why = format!("{why}; {}", whole_value(kind));
            } else {
                why.push_str(", matched as \"any device of the profile\"");
            }
            if field != "Channel" {
                why.push_str("; two criteria may then hold on different devices");
            }
            self.note(
                &at,
                Fit::Approximate,
                format!("Attributes.{field} {kind}"),
                why,
            );
            out.insert(
                field.to_string(),
                cp::AttributeDimension {
                    dimension_type: kind,
                    values: set.values.clone(),
                },
            );
        }
    }

    fn location(&mut self, path: &str, d: &SegmentDimensions, p: &mut ProfileAttributes) {
        let Some(location) = &d.location else { return };
        if location.gps_point.is_some() {
            self.note(
                &format!("{path}.Location.GPSPoint"),
                Fit::Impossible,
                "",
                "Customer Profiles' segments have no position or distance criterion",
            );
        }
        let Some(country) = &location.country else {
            return;
        };
        let at = format!("{path}.Location.Country");
        if !self.values_fit(&at, &country.values) {
            return;
        }
        let kind = match country.dimension_type.unwrap_or(DimensionType::Inclusive) {
            DimensionType::Inclusive => StringDimensionType::Inclusive,
            DimensionType::Exclusive => StringDimensionType::Exclusive,
        };
        self.note(
            &at,
            Fit::Approximate,
            format!("Address.Country {kind}"),
            format!(
                "Pinpoint compares each endpoint's ISO 3166 code; a profile's Address.Country is free text, and must hold these codes ({})",
                country.values.join(", ")
            ),
        );
        p.address = Some(AddressDimension {
            country: Some(ProfileDimension {
                dimension_type: kind,
                values: country.values.clone(),
            }),
            ..Default::default()
        });
    }

    fn metrics(
        &mut self,
        path: &str,
        d: &SegmentDimensions,
        out: &mut BTreeMap<String, cp::AttributeDimension>,
    ) {
        for (k, m) in d.metrics.iter().flatten() {
            let at = key_path(&format!("{path}.Metrics"), k);
            if out.contains_key(k) {
                self.note(
                    &at,
                    Fit::Impossible,
                    "",
                    format!("another criterion of the same dimension is Attributes.{k} already"),
                );
                continue;
            }
            let kind = match m.comparison_operator {
                ComparisonOperator::GreaterThan => AttributeDimensionType::GreaterThan,
                ComparisonOperator::LessThan => AttributeDimensionType::LessThan,
                ComparisonOperator::GreaterThanOrEqual => {
                    AttributeDimensionType::GreaterThanOrEqual
                }
                ComparisonOperator::LessThanOrEqual => AttributeDimensionType::LessThanOrEqual,
                ComparisonOperator::Equal => AttributeDimensionType::Equal,
            };
            let value = number_text(m.value);
            self.note(
                &at,
                Fit::Approximate,
                format!("Attributes.{k} {kind} [\"{value}\"]"),
                "a metric becomes a profile attribute compared as a number (written -?DIGITS[.DIGITS]); it holds when the profile's value does, not any endpoint's",
            );
            out.insert(
                k.clone(),
                cp::AttributeDimension {
                    dimension_type: kind,
                    values: vec![value],
                },
            );
        }
    }

    /// A recency criterion as the calculated attribute [`RECENCY_ATTRIBUTE`] over a day
    /// range: ACTIVE is at least one session in the range, INACTIVE none.
    fn recency(
        &mut self,
        path: &str,
        d: &SegmentDimensions,
        group_type: Include,
        alone: bool,
    ) -> Option<cp::Dimension> {
        let r = d.behavior.as_ref()?.recency.as_ref()?;
        let at = format!("{path}.Behavior.Recency");
        if group_type != Include::All && !alone {
            self.note(&at, Fit::Impossible, "", format!("beside other criteria in a group whose Type is {group_type}: a calculated attribute is a dimension of its own, and the group would combine it with them by {group_type}, not by ALL"));
            return None;
        }
        let days = match r.duration {
            Duration::Hr24 => 1,
            Duration::Day7 => 7,
            Duration::Day14 => 14,
            Duration::Day30 => 30,
        };
        let (kind, values) = match r.recency_type {
            RecencyType::Active => (AttributeDimensionType::GreaterThan, "0"),
            RecencyType::Inactive => (AttributeDimensionType::Equal, "0"),
        };
        self.note(
            &at,
            Fit::Approximate,
            format!("CalculatedAttributes.{RECENCY_ATTRIBUTE} {kind} [\"0\"] over the last {days} days"),
            format!("Customer Profiles has no recency criterion: the domain must define the calculated attribute {RECENCY_ATTRIBUTE} (a count of the profile's sessions); {} becomes {days} day{}", r.duration, if days == 1 { "" } else { "s" }),
        );
        let mut calculated = BTreeMap::new();
        calculated.insert(
            RECENCY_ATTRIBUTE.to_string(),
            CalculatedAttributeDimension {
                dimension_type: kind,
                values: vec![values.into()],
                condition_overrides: Some(ConditionOverrides {
                    // The last `days` days: from then on, no end.
                    range: Some(RangeOverride {
                        start: days,
                        end: None,
                        unit: RangeUnit::Days,
                    }),
                }),
            },
        );
        Some(cp::Dimension {
            profile_attributes: None,
            calculated_attributes: Some(calculated),
        })
    }
}

/// The attribute that marks the members of the imported segment `name`.
pub fn import_attribute(name: &str) -> String {
    format!("pinpoint_import_{}", name.replace('-', "_"))
}

/// What a criterion other than LIST_CONTAINS does with a list-valued profile attribute.
fn whole_value(kind: AttributeDimensionType) -> String {
    format!("{kind} compares the profile's whole value as one string: the same as Pinpoint only when the value is a single one written alone, not a list written as a JSON array")
}

fn sources_empty(g: &SegmentGroup) -> bool {
    g.source_segments.as_ref().is_none_or(Vec::is_empty)
}

fn profile_dimension(p: ProfileAttributes) -> cp::Dimension {
    cp::Dimension {
        profile_attributes: Some(p),
        calculated_attributes: None,
    }
}

/// A metric's value as Customer Profiles' numbers are written: `-?DIGITS[.DIGITS]`, no
/// exponent (Rust's `Display` of a double never writes one).
pub fn number_text(v: f64) -> String {
    let text = format!("{v}");
    if v == 0.0 {
        "0".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_exponents() {
        for (v, text) in [
            (20.0, "20"),
            (0.5, "0.5"),
            (-3.25, "-3.25"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (-0.0, "0"),
        ] {
            assert_eq!(number_text(v), text);
            assert!(cp::is_number(text), "{text}");
        }
    }
}
