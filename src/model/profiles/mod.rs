//! Customer Profiles' segment-definition wire shapes (botocore's `customer-profiles`
//! 2020-08-15 model): domains, segment definitions and their criteria, tags.
//!
//! As on the Pinpoint side, member names are the API's (PascalCase; `Tags` capitalized in
//! the create requests), every struct refuses unknown fields, and maps refuse a key written
//! twice. A `Dimension` is a union in the model: here a struct of two options, with the
//! "exactly one" rule in [`validate`], so the error names the path; it serializes only the
//! member that is set, as the SDKs' union readers require.
//!
//! Times are epoch seconds, a JSON number ([`EpochSeconds`]): the Rust SDK refuses a
//! string there.

pub mod validate;

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{unique_map, unknown_value_message, Include, Tags};

wire_enum!(
    /// How a profile field's values select profiles.
    StringDimensionType {
        Inclusive = "INCLUSIVE",
        Exclusive = "EXCLUSIVE",
        Contains = "CONTAINS",
        BeginsWith = "BEGINS_WITH",
        EndsWith = "ENDS_WITH",
    }
);
wire_enum!(
    /// How a date field (BirthDate) selects profiles.
    DateDimensionType {
        Before = "BEFORE",
        After = "AFTER",
        Between = "BETWEEN",
        NotBetween = "NOT_BETWEEN",
        On = "ON",
    }
);
wire_enum!(
    /// How a custom or calculated attribute selects profiles.
    AttributeDimensionType {
        Inclusive = "INCLUSIVE",
        Exclusive = "EXCLUSIVE",
        Contains = "CONTAINS",
        BeginsWith = "BEGINS_WITH",
        EndsWith = "ENDS_WITH",
        Before = "BEFORE",
        After = "AFTER",
        Between = "BETWEEN",
        NotBetween = "NOT_BETWEEN",
        On = "ON",
        GreaterThan = "GREATER_THAN",
        LessThan = "LESS_THAN",
        GreaterThanOrEqual = "GREATER_THAN_OR_EQUAL",
        LessThanOrEqual = "LESS_THAN_OR_EQUAL",
        Equal = "EQUAL",
        ListContains = "LIST_CONTAINS",
        ListContainsAll = "LIST_CONTAINS_ALL",
    }
);

impl AttributeDimensionType {
    /// Types whose values are dates or instants.
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            Self::Before | Self::After | Self::Between | Self::NotBetween | Self::On
        )
    }

    /// Types whose values are numbers.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::GreaterThan
                | Self::LessThan
                | Self::GreaterThanOrEqual
                | Self::LessThanOrEqual
                | Self::Equal
        )
    }
}

wire_enum!(ProfileTypeDimensionType { Inclusive = "INCLUSIVE", Exclusive = "EXCLUSIVE" });
wire_enum!(ProfileType { AccountProfile = "ACCOUNT_PROFILE", Profile = "PROFILE" });
wire_enum!(RangeUnit { Days = "DAYS" });
wire_enum!(SortOrder { Asc = "ASC", Desc = "DESC" });
wire_enum!(SortDataType { String = "STRING", Number = "NUMBER", Date = "DATE" });
wire_enum!(SortAttributeType { Profile = "PROFILE", Calculated = "CALCULATED" });
wire_enum!(SegmentType { Classic = "CLASSIC", Enhanced = "ENHANCED" });

/// A time on the wire: seconds since the epoch, a JSON number (fractions of a second kept
/// to the millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EpochSeconds {
    pub millis: i64,
}

impl Serialize for EpochSeconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.millis % 1000 == 0 {
            s.serialize_i64(self.millis / 1000)
        } else {
            s.serialize_f64(self.millis as f64 / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for EpochSeconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(d)?;
        if !secs.is_finite() {
            return Err(serde::de::Error::custom("a time must be a finite number"));
        }
        Ok(Self {
            millis: (secs * 1000.0).round() as i64,
        })
    }
}

/// `spec` with the members the AWS SDKs fill in when they are left out written out, so it
/// reads as the definition a target holds after it is created: a group's `Type` and
/// `SourceType` and the criteria's `Include` are ALL, a sort attribute's `Type` PROFILE, a
/// range's `End` 0 (the Rust SDK's defaults; the targets' tests pin them).
pub fn with_sdk_defaults(spec: &CreateSegmentDefinitionRequest) -> CreateSegmentDefinitionRequest {
    let mut out = spec.clone();
    if let Some(g) = &mut out.segment_groups {
        g.include.get_or_insert(Include::All);
        for group in g.groups.iter_mut().flatten() {
            group.group_type.get_or_insert(Include::All);
            group.source_type.get_or_insert(Include::All);
            for d in group.dimensions.iter_mut().flatten() {
                for c in d
                    .calculated_attributes
                    .iter_mut()
                    .flat_map(|c| c.values_mut())
                {
                    if let Some(r) = c
                        .condition_overrides
                        .as_mut()
                        .and_then(|o| o.range.as_mut())
                    {
                        r.end.get_or_insert(0);
                    }
                }
            }
        }
    }
    if let Some(sort) = &mut out.segment_sort {
        for a in &mut sort.attributes {
            a.attribute_type.get_or_insert(SortAttributeType::Profile);
        }
    }
    out
}

/// The body of CreateSegmentDefinition (the name and domain are in the path).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateSegmentDefinitionRequest {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_groups: Option<SegmentGroups>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_sql_query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_sort: Option<SegmentSort>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub tags: Option<Tags>,
}

/// A definition's criteria (the model's `SegmentGroup`; CreateSegmentEstimate's
/// `SegmentQuery` has the same members).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentGroups {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Include>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Group {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Vec<Dimension>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_segments: Option<Vec<SourceSegment>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<Include>,
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub group_type: Option<Include>,
}

/// One dimension: exactly one of its two members (a union in the model).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Dimension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_attributes: Option<ProfileAttributes>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub calculated_attributes: Option<BTreeMap<String, CalculatedAttributeDimension>>,
}

/// Criteria on a profile's standard fields and its custom `Attributes`, ANDed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProfileAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_number: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender_string: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_type_string: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<DateDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_name: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_phone_number: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_phone_number: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone_number: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_email_address: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_email_address: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<AddressDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailing_address: Option<AddressDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<AddressDimension>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub attributes: Option<BTreeMap<String, AttributeDimension>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_type: Option<ProfileTypeDimension>,
}

impl ProfileAttributes {
    /// The string fields and their criteria, in the model's order (`AdditionalInformation`
    /// among them: its values may be up to 1,000 characters).
    pub fn strings(&self) -> [(&'static str, Option<&ProfileDimension>); 15] {
        [
            ("AccountNumber", self.account_number.as_ref()),
            (
                "AdditionalInformation",
                self.additional_information.as_ref(),
            ),
            ("FirstName", self.first_name.as_ref()),
            ("LastName", self.last_name.as_ref()),
            ("MiddleName", self.middle_name.as_ref()),
            ("GenderString", self.gender_string.as_ref()),
            ("PartyTypeString", self.party_type_string.as_ref()),
            ("PhoneNumber", self.phone_number.as_ref()),
            ("BusinessName", self.business_name.as_ref()),
            ("BusinessPhoneNumber", self.business_phone_number.as_ref()),
            ("HomePhoneNumber", self.home_phone_number.as_ref()),
            ("MobilePhoneNumber", self.mobile_phone_number.as_ref()),
            ("EmailAddress", self.email_address.as_ref()),
            ("PersonalEmailAddress", self.personal_email_address.as_ref()),
            ("BusinessEmailAddress", self.business_email_address.as_ref()),
        ]
    }

    /// The four addresses and their criteria.
    pub fn addresses(&self) -> [(&'static str, Option<&AddressDimension>); 4] {
        [
            ("Address", self.address.as_ref()),
            ("ShippingAddress", self.shipping_address.as_ref()),
            ("MailingAddress", self.mailing_address.as_ref()),
            ("BillingAddress", self.billing_address.as_ref()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProfileDimension {
    pub dimension_type: StringDimensionType,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DateDimension {
    pub dimension_type: DateDimensionType,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AddressDimension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub county: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<ProfileDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ProfileDimension>,
}

impl AddressDimension {
    pub fn parts(&self) -> [(&'static str, Option<&ProfileDimension>); 6] {
        [
            ("City", self.city.as_ref()),
            ("Country", self.country.as_ref()),
            ("County", self.county.as_ref()),
            ("PostalCode", self.postal_code.as_ref()),
            ("Province", self.province.as_ref()),
            ("State", self.state.as_ref()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[schemars(rename = "ProfileAttributeDimension")]
pub struct AttributeDimension {
    pub dimension_type: AttributeDimensionType,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProfileTypeDimension {
    pub dimension_type: ProfileTypeDimensionType,
    pub values: Vec<ProfileType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CalculatedAttributeDimension {
    pub dimension_type: AttributeDimensionType,
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_overrides: Option<ConditionOverrides>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ConditionOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RangeOverride {
    pub start: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i32>,
    pub unit: RangeUnit,
}

/// A definition a group builds on, by name, in the same domain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SourceSegment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_definition_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SegmentSort {
    pub attributes: Vec<SortAttribute>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SortAttribute {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<SortDataType>,
    pub order: SortOrder,
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub attribute_type: Option<SortAttributeType>,
}

/// What GetSegmentDefinition answers (Create's answer is the same less the criteria).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SegmentDefinition {
    pub segment_definition_name: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_groups: Option<SegmentGroups>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_sort: Option<SegmentSort>,
    pub segment_definition_arn: String,
    pub created_at: EpochSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    pub segment_type: SegmentType,
}

/// A segment definition as a file holds it (`segmentctl sql --customer-profiles`): what
/// GetSegmentDefinition answers, of which the name and the criteria are read; its other
/// members (`DisplayName`, `SegmentDefinitionArn`, `CreatedAt`, `Tags`, …) are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DefinitionDocument {
    pub segment_definition_name: String,
    #[serde(default)]
    pub segment_groups: Option<SegmentGroups>,
    /// Read only to refuse it: a definition written in SQL is not evaluated here.
    #[serde(default)]
    pub segment_sql_query: Option<String>,
}

impl DefinitionDocument {
    /// One document, or a JSON array of them.
    pub fn read_all(bytes: &[u8]) -> Result<Vec<Self>, crate::model::strict::Error> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            crate::model::strict::from_slice(bytes)
        } else {
            crate::model::strict::from_slice(bytes).map(|d| vec![d])
        }
    }

    /// The `SegmentDefinition` manifests of a YAML file (as `segmentctl convert` writes
    /// them): `metadata.name` and `spec` (CreateSegmentDefinition's request, read strictly);
    /// documents of other kinds are skipped. An error names the document (1-based) and the
    /// field.
    pub fn read_manifests(text: &str) -> Result<Vec<Self>, String> {
        #[derive(Deserialize)]
        struct Metadata {
            name: String,
        }
        #[derive(Deserialize)]
        struct Manifest {
            kind: String,
            #[serde(default)]
            metadata: Option<Metadata>,
            #[serde(default)]
            spec: Option<serde_json::Value>,
        }
        let mut out = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let at = |e: &dyn fmt::Display| format!("document {}: {e}", i + 1);
            let m: Manifest = serde_path_to_error::deserialize(doc).map_err(|e| at(&e))?;
            if m.kind != "SegmentDefinition" {
                continue;
            }
            let name = m.metadata.ok_or_else(|| at(&"missing metadata.name"))?.name;
            let mut spec = m.spec.ok_or_else(|| at(&"missing spec"))?;
            // `{Ref: NAME}` names another manifest, whose name is its definition's.
            let groups = spec
                .pointer_mut("/SegmentGroups/Groups")
                .and_then(serde_json::Value::as_array_mut);
            for g in groups.into_iter().flatten() {
                let sources = g
                    .get_mut("SourceSegments")
                    .and_then(serde_json::Value::as_array_mut);
                for s in sources
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_object_mut())
                {
                    if let Some(r) = s.remove("Ref") {
                        s.insert("SegmentDefinitionName".into(), r);
                    }
                }
            }
            let spec: CreateSegmentDefinitionRequest =
                crate::model::strict::from_slice(spec.to_string().as_bytes())
                    .map_err(|e| at(&format!("spec.{e}")))?;
            out.push(Self {
                segment_definition_name: name,
                segment_groups: spec.segment_groups,
                segment_sql_query: spec.segment_sql_query,
            });
        }
        Ok(out)
    }

    /// What breaks the model's rules, each located by its field path.
    pub fn violations(&self) -> Vec<crate::model::validate::Violation> {
        let mut out = validate::name("SegmentDefinitionName", &self.segment_definition_name);
        if let Some(g) = &self.segment_groups {
            out.extend(validate::segment_groups("SegmentGroups", g));
        }
        if self.segment_sql_query.is_some() {
            out.push(crate::model::validate::Violation {
                path: "SegmentSqlQuery".into(),
                message:
                    "a definition written in SQL is not evaluated here; only SegmentGroups are"
                        .into(),
            });
        }
        out
    }
}

/// An item of ListSegmentDefinitions: no criteria.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SegmentDefinitionItem {
    pub segment_definition_name: String,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub segment_definition_arn: String,
    pub created_at: EpochSeconds,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    pub segment_type: SegmentType,
}

impl SegmentDefinition {
    pub fn item(self) -> SegmentDefinitionItem {
        SegmentDefinitionItem {
            segment_definition_name: self.segment_definition_name,
            display_name: self.display_name,
            description: self.description,
            segment_definition_arn: self.segment_definition_arn,
            created_at: self.created_at,
            tags: self.tags,
            segment_type: self.segment_type,
        }
    }

    /// The request that would create this definition, for comparing with another.
    pub fn request(&self) -> CreateSegmentDefinitionRequest {
        CreateSegmentDefinitionRequest {
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            segment_groups: self.segment_groups.clone(),
            segment_sql_query: None,
            segment_sort: self.segment_sort.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// The body of CreateDomain (the name is in the path). Matching, rule-based matching and the
/// data store are declared so a request naming them gets a clear refusal, not "unknown
/// field": this server does not implement them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateDomainRequest {
    pub default_expiration_days: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_encryption_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_based_matching: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_store: Option<serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub tags: Option<Tags>,
}

/// A domain's settings as a `kind: Domain` manifest gives them: CreateDomain's body less
/// identity resolution and the data store (set those with the console or the CLI; a
/// domain segmentctl creates is never changed nor deleted by it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DomainSpec {
    /// How long a profile is kept, in days (1 to 1098).
    pub default_expiration_days: i64,
    /// The KMS key that encrypts the domain's data (an ARN or key id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_encryption_key: Option<String>,
    /// The SQS queue that receives what could not be ingested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub tags: Option<Tags>,
}

impl DomainSpec {
    /// The CreateDomain body that creates a domain with these settings.
    pub fn request(&self) -> CreateDomainRequest {
        CreateDomainRequest {
            default_expiration_days: self.default_expiration_days,
            default_encryption_key: self.default_encryption_key.clone(),
            dead_letter_queue_url: self.dead_letter_queue_url.clone(),
            tags: self.tags.clone(),
            ..Default::default()
        }
    }

    /// A tag a domain's settings are not compared on: segmentctl's own (the lease) and
    /// those AWS sets (`aws:`, which no manifest may write).
    pub fn tag_not_compared(key: &str) -> bool {
        key.starts_with(crate::TAG_PREFIX) || key.starts_with("aws:")
    }

    /// These settings as a live domain reads back: no tags is the same as none given.
    pub fn as_live(&self) -> Self {
        let mut s = self.clone();
        s.tags = s.tags.filter(|t| !t.is_empty());
        s
    }
}

/// What CreateDomain and GetDomain answer (`Stats` on GetDomain only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Domain {
    pub domain_name: String,
    pub default_expiration_days: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_encryption_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<DomainStats>,
    pub created_at: EpochSeconds,
    pub last_updated_at: EpochSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainStats {
    pub profile_count: i64,
    pub metering_profile_count: i64,
    pub object_count: i64,
    pub total_size: i64,
}

/// An item of ListDomains.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainItem {
    pub domain_name: String,
    pub created_at: EpochSeconds,
    pub last_updated_at: EpochSeconds,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

impl Domain {
    pub fn item(self) -> DomainItem {
        DomainItem {
            domain_name: self.domain_name,
            created_at: self.created_at,
            last_updated_at: self.last_updated_at,
            tags: self.tags,
        }
    }
}

/// The body of TagResource and the answer of ListTagsForResource (lowercase `tags`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    #[serde(rename = "tags", deserialize_with = "super::unique_map_required")]
    pub tags: Tags,
}

wire_enum!(Gender { Male = "MALE", Female = "FEMALE", Unspecified = "UNSPECIFIED" });
wire_enum!(PartyType { Individual = "INDIVIDUAL", Business = "BUSINESS", Other = "OTHER" });
wire_enum!(LogicalOperator { And = "AND", Or = "OR" });
wire_enum!(
    ContactType {
        PhoneNumber = "PhoneNumber",
        MobilePhoneNumber = "MobilePhoneNumber",
        HomePhoneNumber = "HomePhoneNumber",
        BusinessPhoneNumber = "BusinessPhoneNumber",
        EmailAddress = "EmailAddress",
        PersonalEmailAddress = "PersonalEmailAddress",
        BusinessEmailAddress = "BusinessEmailAddress",
    }
);

/// A profile's fields, as CreateProfile and UpdateProfile carry them and a `Profile`
/// returns them. On update, an empty string removes a field (an address part, an
/// attribute) and an absent one keeps it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProfileFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_type: Option<PartyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_email_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_email_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailing_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map"
    )]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_type_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_type: Option<ProfileType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement_preferences: Option<EngagementPreferences>,
}

impl ProfileFields {
    /// The string fields, by their wire names (`AdditionalInformation` among them).
    pub fn strings(&self) -> [(&'static str, Option<&String>); 16] {
        [
            ("AccountNumber", self.account_number.as_ref()),
            (
                "AdditionalInformation",
                self.additional_information.as_ref(),
            ),
            ("BusinessName", self.business_name.as_ref()),
            ("FirstName", self.first_name.as_ref()),
            ("MiddleName", self.middle_name.as_ref()),
            ("LastName", self.last_name.as_ref()),
            ("BirthDate", self.birth_date.as_ref()),
            ("PhoneNumber", self.phone_number.as_ref()),
            ("MobilePhoneNumber", self.mobile_phone_number.as_ref()),
            ("HomePhoneNumber", self.home_phone_number.as_ref()),
            ("BusinessPhoneNumber", self.business_phone_number.as_ref()),
            ("EmailAddress", self.email_address.as_ref()),
            ("PersonalEmailAddress", self.personal_email_address.as_ref()),
            ("BusinessEmailAddress", self.business_email_address.as_ref()),
            ("PartyTypeString", self.party_type_string.as_ref()),
            ("GenderString", self.gender_string.as_ref()),
        ]
    }

    pub fn addresses(&self) -> [(&'static str, Option<&Address>); 4] {
        [
            ("Address", self.address.as_ref()),
            ("ShippingAddress", self.shipping_address.as_ref()),
            ("MailingAddress", self.mailing_address.as_ref()),
            ("BillingAddress", self.billing_address.as_ref()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub county: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
}

impl Address {
    pub fn parts(&self) -> [(&'static str, Option<&String>); 10] {
        [
            ("Address1", self.address1.as_ref()),
            ("Address2", self.address2.as_ref()),
            ("Address3", self.address3.as_ref()),
            ("Address4", self.address4.as_ref()),
            ("City", self.city.as_ref()),
            ("County", self.county.as_ref()),
            ("State", self.state.as_ref()),
            ("Province", self.province.as_ref()),
            ("Country", self.country.as_ref()),
            ("PostalCode", self.postal_code.as_ref()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EngagementPreferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Vec<ContactPreference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Vec<ContactPreference>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ContactPreference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_type: Option<ContactType>,
}

/// The body of SearchProfiles.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SearchProfilesRequest {
    pub key_name: String,
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_search_keys: Option<Vec<SearchKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_operator: Option<LogicalOperator>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SearchKey {
    pub key_name: String,
    pub values: Vec<String>,
}

/// The keys SearchProfiles looks profiles up by, and what each holds: `_profileId`,
/// `_account` (AccountNumber), `_email` (the three email fields), `_phone` (the four phone
/// fields), `_fullName` (`First [Middle] Last`, single spaces).
pub const SEARCH_KEYS: &[&str] = &["_profileId", "_account", "_email", "_phone", "_fullName"];

/// A profile's search keys and their values, each pair once.
pub fn search_keys(id: &str, p: &ProfileFields) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = vec![("_profileId", id.to_string())];
    if let Some(a) = &p.account_number {
        out.push(("_account", a.clone()));
    }
    for e in [
        &p.email_address,
        &p.personal_email_address,
        &p.business_email_address,
    ]
    .into_iter()
    .flatten()
    {
        out.push(("_email", e.clone()));
    }
    for n in [
        &p.phone_number,
        &p.mobile_phone_number,
        &p.home_phone_number,
        &p.business_phone_number,
    ]
    .into_iter()
    .flatten()
    {
        out.push(("_phone", n.clone()));
    }
    let name: Vec<&str> = [&p.first_name, &p.middle_name, &p.last_name]
        .into_iter()
        .flatten()
        .map(|s| s.as_str())
        .collect();
    if !name.is_empty() {
        out.push(("_fullName", name.join(" ")));
    }
    out.sort();
    out.dedup();
    out
}

/// Applies an UpdateProfile's fields to a stored profile, both JSON objects: an empty
/// string removes what it names, an object (an address, `Attributes`) is merged key by key
/// by the same rule (and removed when left empty), anything else replaces.
pub fn merge_update(
    stored: &mut serde_json::Map<String, serde_json::Value>,
    update: &serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::Value;
    for (k, v) in update {
        match v {
            Value::String(s) if s.is_empty() => {
                stored.remove(k);
            }
            Value::Object(o) => {
                let entry = stored
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Default::default()));
                if !entry.is_object() {
                    *entry = Value::Object(Default::default());
                }
                if let Value::Object(inner) = entry {
                    merge_update(inner, o);
                    if inner.is_empty() {
                        stored.remove(k);
                    }
                }
            }
            other => {
                stored.insert(k.clone(), other.clone());
            }
        }
    }
}

/// A custom attribute's value read as a list, as LIST_CONTAINS and LIST_CONTAINS_ALL read
/// it (the model stores one string per attribute and does not say how a list is written):
/// a JSON array of strings (`["gold","vip"]`) that matches [`LIST_PATTERN`] is its
/// elements; any other value is a list of itself alone. [`encode_list`] writes a list so
/// that it reads back the same.
pub fn attribute_list(value: &str) -> Vec<String> {
    static LIST: std::sync::LazyLock<regex_lite::Regex> = std::sync::LazyLock::new(|| {
        regex_lite::Regex::new(&format!("^(?:{LIST_PATTERN})$")).expect("the list pattern")
    });
    if LIST.is_match(value) {
        if let Ok(items) = serde_json::from_str::<Vec<String>>(value) {
            return items;
        }
    }
    vec![value.to_string()]
}

/// One JSON string of a list value (see [`LIST_PATTERN`]).
macro_rules! list_string {
    () => {
        r#""(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:0(?:[1-9a-fA-F][0-9a-fA-F]{2}|0(?:[1-9a-fA-F][0-9a-fA-F]|0[1-9a-fA-F]))|[1-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))*""#
    };
}

/// What a list value is, as a regular expression (unanchored) that the evaluator and every
/// SQL engine read the same way: `[`, then JSON strings separated by commas, then `]`, with
/// JSON's whitespace around them and after the end. A string's characters are any but `"`,
/// `\` and controls, or the escapes `\" \\ \/ \b \f \n \r \t`, or `\uXXXX` other than
/// `\u0000` and the surrogates `\uD800`–`\uDFFF` (which engines decode differently or
/// refuse). [`encode_list`] writes only these, unless an item holds a NUL character.
pub const LIST_PATTERN: &str = concat!(
    r"\[[ \t\n\r]*(?:",
    list_string!(),
    r"[ \t\n\r]*(?:,[ \t\n\r]*",
    list_string!(),
    r"[ \t\n\r]*)*)?\][ \t\n\r]*"
);

/// Writes a list of values as one attribute value that [`attribute_list`] reads back.
pub fn encode_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

/// A date or an instant as a profile's dates are read (BirthDate, date criteria): an ISO
/// 8601 instant as Pinpoint reads it, or a calendar date `YYYY-MM-DD`, meaning its midnight
/// UTC. One grammar for the server's checks, the evaluator and the SQL it writes.
pub fn parse_date_or_instant(text: &str) -> Option<time::OffsetDateTime> {
    if let Some(t) = super::validate::parse_instant(text) {
        return Some(t);
    }
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return None;
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(date.midnight().assume_utc())
}

/// Whether a value is a number as comparisons read it: `-?[0-9]+(\.[0-9]+)?`, no exponent,
/// no sign `+`, no spaces, at most [`MAX_NUMBER_LEN`] characters (so every engine reads it
/// the same way, and no double overflows).
pub fn is_number(text: &str) -> bool {
    if text.len() > MAX_NUMBER_LEN {
        return false;
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && fraction.is_none_or(all_digits)
}

/// The longest number comparisons read: a value's limit (255 characters), so at most
/// 10^255, far inside a double's range.
pub const MAX_NUMBER_LEN: usize = 255;

/// The ARN of a domain, or of a segment definition in it.
pub fn arn(region: &str, account: &str, domain: &str, definition: Option<&str>) -> String {
    match definition {
        None => format!("arn:aws:profile:{region}:{account}:domains/{domain}"),
        Some(n) => {
            format!("arn:aws:profile:{region}:{account}:domains/{domain}/segment-definitions/{n}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_instants_or_calendar_days_and_numbers_are_plain_decimals() {
        let day = parse_date_or_instant("1990-05-17").unwrap();
        assert_eq!(day, parse_date_or_instant("1990-05-17T00:00:00Z").unwrap());
        assert!(parse_date_or_instant("1990-5-17").is_none());
        assert!(parse_date_or_instant("1990-02-30").is_none());
        assert!(parse_date_or_instant("yesterday").is_none());
        // A year of four digits, no sign (as every engine's pattern reads it).
        assert!(parse_date_or_instant("+990-01-01").is_none());
        assert!(parse_date_or_instant("-990-01-01").is_none());
        for n in ["0", "-1", "12.5", "-0.25", "007"] {
            assert!(is_number(n), "{n}");
        }
        for n in [
            "", "-", "1.", ".5", "+1", "1e3", " 1", "1 ", "0x10", "1.2.3", "NaN",
        ] {
            assert!(!is_number(n), "{n:?}");
        }
        // At most 255 characters: no double overflows.
        assert!(is_number(&"9".repeat(255)));
        assert!(!is_number(&"9".repeat(256)));
    }

    #[test]
    fn an_update_removes_with_empty_strings_merges_objects_and_keeps_the_rest() {
        let mut stored = serde_json::json!({
            "ProfileId": "p", "FirstName": "Ada", "LastName": "Lovelace",
            "Address": {"City": "London", "Country": "GB"},
            "Attributes": {"tier": "gold", "seen": "2026-01-01"}
        });
        let update = serde_json::json!({
            "FirstName": "", "MiddleName": "King",
            "Address": {"City": "", "Country": ""},
            "Attributes": {"tier": "", "spend": "10"},
            "BillingAddress": {"City": "Paris"}
        });
        merge_update(stored.as_object_mut().unwrap(), update.as_object().unwrap());
        assert_eq!(
            stored,
            serde_json::json!({
                "ProfileId": "p", "LastName": "Lovelace", "MiddleName": "King",
                "Attributes": {"seen": "2026-01-01", "spend": "10"},
                "BillingAddress": {"City": "Paris"}
            })
        );
    }

    #[test]
    fn search_keys_cover_ids_accounts_emails_phones_and_full_names() {
        let p: ProfileFields = serde_json::from_str(
            r#"{"AccountNumber":"A1","FirstName":"Ada","LastName":"Lovelace",
                "EmailAddress":"ada@x.org","BusinessEmailAddress":"ada@x.org",
                "MobilePhoneNumber":"+1555"}"#,
        )
        .unwrap();
        assert_eq!(
            search_keys("p1", &p),
            [
                ("_account", "A1".to_string()),
                ("_email", "ada@x.org".to_string()),
                ("_fullName", "Ada Lovelace".to_string()),
                ("_phone", "+1555".to_string()),
                ("_profileId", "p1".to_string()),
            ]
        );
    }

    #[test]
    fn a_list_attribute_is_a_json_array_of_strings_and_anything_else_one_value() {
        assert_eq!(attribute_list(r#"["gold","vip"]"#), ["gold", "vip"]);
        assert_eq!(attribute_list("gold"), ["gold"]);
        assert_eq!(attribute_list("[not json"), ["[not json"]);
        assert_eq!(attribute_list("[1,2]"), ["[1,2]"]);
        // JSON's whitespace around the strings and after the end; escapes decoded.
        assert_eq!(attribute_list("[ \"a\" ,\t\"b\" ]\n"), ["a", "b"]);
        assert_eq!(attribute_list(r#"["go\u006cd","\\\/"]"#), ["gold", "\\/"]);
        assert_eq!(attribute_list("[]"), Vec::<String>::new());
        // No NUL or surrogate escapes (engines refuse or decode them differently), no
        // trailing comma, nothing after the end, no whitespace before the start.
        for one in [
            r#"["\u0000a"]"#,
            r#"["\ud83d\ude00"]"#,
            r#"["a",]"#,
            r#"["a"] x"#,
            r#" ["a"]"#,
            "[\"a\tb\"]",
        ] {
            assert_eq!(attribute_list(one), [one], "{one:?}");
        }
        let items = vec!["a\"b".to_string(), "c,d".to_string()];
        assert_eq!(attribute_list(&encode_list(&items)), items);
    }

    #[test]
    fn times_are_numbers_of_seconds() {
        let whole = EpochSeconds {
            millis: 1_780_000_000_000,
        };
        assert_eq!(serde_json::to_string(&whole).unwrap(), "1780000000");
        let part = EpochSeconds {
            millis: 1_780_000_000_250,
        };
        assert_eq!(serde_json::to_string(&part).unwrap(), "1780000000.25");
        let back: EpochSeconds = serde_json::from_str("1780000000.25").unwrap();
        assert_eq!(back, part);
        assert!(serde_json::from_str::<EpochSeconds>("\"2026-01-01T00:00:00Z\"").is_err());
    }

    #[test]
    fn a_dimension_serializes_only_its_set_member() {
        let d: Dimension = serde_json::from_str(
            r#"{"ProfileAttributes":{"FirstName":{"DimensionType":"INCLUSIVE","Values":["Ada"]}}}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"ProfileAttributes":{"FirstName":{"DimensionType":"INCLUSIVE","Values":["Ada"]}}}"#
        );
    }

    #[test]
    fn an_unknown_dimension_type_names_the_closest() {
        let e = serde_json::from_str::<ProfileDimension>(
            r#"{"DimensionType":"BEGINS_WTIH","Values":["a"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("did you mean BEGINS_WITH?"), "{e}");
    }
}
