//! The shared model's segment definitions to and from `aws-sdk-customerprofiles`' types.
//!
//! The SDK fills some members in when they are left out; the model says which
//! ([`crate::model::profiles::with_sdk_defaults`]), and a test here holds the two together.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_customerprofiles::types as t;

use crate::model::profiles as m;
use crate::model::Include;

/// A value from the target the model does not know (an enum value of a newer API).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: unexpected value {value:?} from the API")]
pub struct Unrepresentable {
    pub field: &'static str,
    pub value: String,
}

type Result<T> = std::result::Result<T, Unrepresentable>;

fn parse<T>(field: &'static str, text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| Unrepresentable {
        field,
        value: text.to_string(),
    })
}

// ---- to the SDK ----

/// A request the SDK's builders refuse (a required member left out): the model's validator
/// runs first, so this names a mistake of ours, reported rather than sent.
pub type Built<T> = std::result::Result<T, aws_smithy_types::error::operation::BuildError>;

fn include(i: Option<Include>) -> Option<t::IncludeOptions> {
    i.map(|i| t::IncludeOptions::from(i.as_str()))
}

pub fn to_groups(g: &m::SegmentGroups) -> Built<t::SegmentGroup> {
    Ok(t::SegmentGroup::builder()
        .set_groups(
            g.groups
                .as_ref()
                .map(|gs| gs.iter().map(to_group).collect::<Built<Vec<_>>>())
                .transpose()?,
        )
        .set_include(include(g.include))
        .build())
}

fn to_group(g: &m::Group) -> Built<t::Group> {
    Ok(t::Group::builder()
        .set_dimensions(
            g.dimensions
                .as_ref()
                .map(|ds| {
                    ds.iter()
                        .filter_map(|d| to_dimension(d).transpose())
                        .collect::<Built<Vec<_>>>()
                })
                .transpose()?,
        )
        .set_source_segments(g.source_segments.as_ref().map(|ss| {
            ss.iter()
                .map(|s| {
                    t::SourceSegment::builder()
                        .set_segment_definition_name(s.segment_definition_name.clone())
                        .build()
                })
                .collect()
        }))
        .set_source_type(include(g.source_type))
        .set_type(include(g.group_type))
        .build())
}

/// The model's union is checked to hold one member before anything is sent.
fn to_dimension(d: &m::Dimension) -> Built<Option<t::Dimension>> {
    if let Some(p) = &d.profile_attributes {
        return Ok(Some(t::Dimension::ProfileAttributes(
            to_profile_attributes(p)?,
        )));
    }
    d.calculated_attributes
        .as_ref()
        .map(|c| {
            Ok(t::Dimension::CalculatedAttributes(
                c.iter()
                    .map(|(k, v)| Ok((k.clone(), to_calculated(v)?)))
                    .collect::<Built<HashMap<_, _>>>()?,
            ))
        })
        .transpose()
}

fn to_string_dimension(d: &m::ProfileDimension) -> Built<t::ProfileDimension> {
    t::ProfileDimension::builder()
        .dimension_type(t::StringDimensionType::from(d.dimension_type.as_str()))
        .set_values(Some(d.values.clone()))
        .build()
}

fn opt_string(d: &Option<m::ProfileDimension>) -> Built<Option<t::ProfileDimension>> {
    d.as_ref().map(to_string_dimension).transpose()
}

fn to_address(a: &m::AddressDimension) -> Built<t::AddressDimension> {
    Ok(t::AddressDimension::builder()
        .set_city(opt_string(&a.city)?)
        .set_country(opt_string(&a.country)?)
        .set_county(opt_string(&a.county)?)
        .set_postal_code(opt_string(&a.postal_code)?)
        .set_province(opt_string(&a.province)?)
        .set_state(opt_string(&a.state)?)
        .build())
}

fn to_profile_attributes(p: &m::ProfileAttributes) -> Built<t::ProfileAttributes> {
    let a = |d: &Option<m::AddressDimension>| d.as_ref().map(to_address).transpose();
    Ok(t::ProfileAttributes::builder()
        .set_account_number(opt_string(&p.account_number)?)
        .set_additional_information(
            p.additional_information
                .as_ref()
                .map(|d| {
                    t::ExtraLengthValueProfileDimension::builder()
                        .dimension_type(t::StringDimensionType::from(d.dimension_type.as_str()))
                        .set_values(Some(d.values.clone()))
                        .build()
                })
                .transpose()?,
        )
        .set_first_name(opt_string(&p.first_name)?)
        .set_last_name(opt_string(&p.last_name)?)
        .set_middle_name(opt_string(&p.middle_name)?)
        .set_gender_string(opt_string(&p.gender_string)?)
        .set_party_type_string(opt_string(&p.party_type_string)?)
        .set_birth_date(
            p.birth_date
                .as_ref()
                .map(|d| {
                    t::DateDimension::builder()
                        .dimension_type(t::DateDimensionType::from(d.dimension_type.as_str()))
                        .set_values(Some(d.values.clone()))
                        .build()
                })
                .transpose()?,
        )
        .set_phone_number(opt_string(&p.phone_number)?)
        .set_business_name(opt_string(&p.business_name)?)
        .set_business_phone_number(opt_string(&p.business_phone_number)?)
        .set_home_phone_number(opt_string(&p.home_phone_number)?)
        .set_mobile_phone_number(opt_string(&p.mobile_phone_number)?)
        .set_email_address(opt_string(&p.email_address)?)
        .set_personal_email_address(opt_string(&p.personal_email_address)?)
        .set_business_email_address(opt_string(&p.business_email_address)?)
        .set_address(a(&p.address)?)
        .set_shipping_address(a(&p.shipping_address)?)
        .set_mailing_address(a(&p.mailing_address)?)
        .set_billing_address(a(&p.billing_address)?)
        .set_attributes(
            p.attributes
                .as_ref()
                .map(|attrs| {
                    attrs
                        .iter()
                        .map(|(k, v)| {
                            Ok((
                                k.clone(),
                                t::AttributeDimension::builder()
                                    .dimension_type(t::AttributeDimensionType::from(
                                        v.dimension_type.as_str(),
                                    ))
                                    .set_values(Some(v.values.clone()))
                                    .build()?,
                            ))
                        })
                        .collect::<Built<HashMap<_, _>>>()
                })
                .transpose()?,
        )
        .set_profile_type(
            p.profile_type
                .as_ref()
                .map(|d| {
                    t::ProfileTypeDimension::builder()
                        .dimension_type(t::ProfileTypeDimensionType::from(
                            d.dimension_type.as_str(),
                        ))
                        .set_values(Some(
                            d.values
                                .iter()
                                .map(|v| t::ProfileType::from(v.as_str()))
                                .collect(),
                        ))
                        .build()
                })
                .transpose()?,
        )
        .build())
}

fn to_calculated(c: &m::CalculatedAttributeDimension) -> Built<t::CalculatedAttributeDimension> {
    let range = c
        .condition_overrides
        .as_ref()
        .and_then(|o| o.range.as_ref())
        .map(|r| {
            t::RangeOverride::builder()
                .start(r.start)
                .set_end(r.end)
                .unit(t::RangeUnit::from(r.unit.as_str()))
                .build()
        })
        .transpose()?;
    t::CalculatedAttributeDimension::builder()
        .dimension_type(t::AttributeDimensionType::from(c.dimension_type.as_str()))
        .set_values(Some(c.values.clone()))
        .set_condition_overrides(
            c.condition_overrides
                .as_ref()
                .map(|_| t::ConditionOverrides::builder().set_range(range).build()),
        )
        .build()
}

pub fn to_sort(s: &m::SegmentSort) -> Built<t::SegmentSort> {
    t::SegmentSort::builder()
        .set_attributes(Some(
            s.attributes
                .iter()
                .map(|a| {
                    t::SortAttribute::builder()
                        .name(&a.name)
                        .set_data_type(
                            a.data_type
                                .map(|d| t::SegmentSortDataType::from(d.as_str())),
                        )
                        .order(t::SegmentSortOrder::from(a.order.as_str()))
                        .set_type(
                            a.attribute_type
                                .map(|k| t::SortAttributeType::from(k.as_str())),
                        )
                        .build()
                })
                .collect::<Built<Vec<_>>>()?,
        ))
        .build()
}

// ---- from the SDK ----

fn from_include(i: &t::IncludeOptions) -> Result<Include> {
    parse("Include", i.as_str(), Include::parse)
}

pub fn from_groups(g: &t::SegmentGroup) -> Result<m::SegmentGroups> {
    Ok(m::SegmentGroups {
        groups: g
            .groups
            .as_ref()
            .map(|gs| gs.iter().map(from_group).collect::<Result<Vec<_>>>())
            .transpose()?,
        include: Some(from_include(&g.include)?),
    })
}

fn from_group(g: &t::Group) -> Result<m::Group> {
    Ok(m::Group {
        dimensions: g
            .dimensions
            .as_ref()
            .map(|ds| ds.iter().map(from_dimension).collect::<Result<Vec<_>>>())
            .transpose()?,
        source_segments: g.source_segments.as_ref().map(|ss| {
            ss.iter()
                .map(|s| m::SourceSegment {
                    segment_definition_name: s.segment_definition_name.clone(),
                })
                .collect()
        }),
        source_type: Some(from_include(&g.source_type)?),
        group_type: Some(from_include(&g.r#type)?),
    })
}

fn from_dimension(d: &t::Dimension) -> Result<m::Dimension> {
    match d {
        t::Dimension::ProfileAttributes(p) => Ok(m::Dimension {
            profile_attributes: Some(from_profile_attributes(p)?),
            calculated_attributes: None,
        }),
        t::Dimension::CalculatedAttributes(c) => Ok(m::Dimension {
            profile_attributes: None,
            calculated_attributes: Some(
                c.iter()
                    .map(|(k, v)| Ok((k.clone(), from_calculated(v)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?,
            ),
        }),
        _ => Err(Unrepresentable {
            field: "Dimension",
            value: "a member this version does not know".into(),
        }),
    }
}

fn from_string_dimension(d: &t::ProfileDimension) -> Result<m::ProfileDimension> {
    Ok(m::ProfileDimension {
        dimension_type: parse(
            "DimensionType",
            d.dimension_type.as_str(),
            m::StringDimensionType::parse,
        )?,
        values: d.values.clone(),
    })
}

fn from_address(a: &t::AddressDimension) -> Result<m::AddressDimension> {
    let s = |d: &Option<t::ProfileDimension>| d.as_ref().map(from_string_dimension).transpose();
    Ok(m::AddressDimension {
        city: s(&a.city)?,
        country: s(&a.country)?,
        county: s(&a.county)?,
        postal_code: s(&a.postal_code)?,
        province: s(&a.province)?,
        state: s(&a.state)?,
    })
}

fn from_profile_attributes(p: &t::ProfileAttributes) -> Result<m::ProfileAttributes> {
    let s = |d: &Option<t::ProfileDimension>| d.as_ref().map(from_string_dimension).transpose();
    let a = |d: &Option<t::AddressDimension>| d.as_ref().map(from_address).transpose();
    Ok(m::ProfileAttributes {
        account_number: s(&p.account_number)?,
        additional_information: p
            .additional_information
            .as_ref()
            .map(|d| {
                Ok(m::ProfileDimension {
                    dimension_type: parse(
                        "DimensionType",
                        d.dimension_type.as_str(),
                        m::StringDimensionType::parse,
                    )?,
                    values: d.values.clone(),
                })
            })
            .transpose()?,
        first_name: s(&p.first_name)?,
        last_name: s(&p.last_name)?,
        middle_name: s(&p.middle_name)?,
        gender_string: s(&p.gender_string)?,
        party_type_string: s(&p.party_type_string)?,
        birth_date: p
            .birth_date
            .as_ref()
            .map(|d| {
                Ok(m::DateDimension {
                    dimension_type: parse(
                        "DimensionType",
                        d.dimension_type.as_str(),
                        m::DateDimensionType::parse,
                    )?,
                    values: d.values.clone(),
                })
            })
            .transpose()?,
        phone_number: s(&p.phone_number)?,
        business_name: s(&p.business_name)?,
        business_phone_number: s(&p.business_phone_number)?,
        home_phone_number: s(&p.home_phone_number)?,
        mobile_phone_number: s(&p.mobile_phone_number)?,
        email_address: s(&p.email_address)?,
        personal_email_address: s(&p.personal_email_address)?,
        business_email_address: s(&p.business_email_address)?,
        address: a(&p.address)?,
        shipping_address: a(&p.shipping_address)?,
        mailing_address: a(&p.mailing_address)?,
        billing_address: a(&p.billing_address)?,
        attributes: p
            .attributes
            .as_ref()
            .map(|attrs| {
                attrs
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            m::AttributeDimension {
                                dimension_type: parse(
                                    "DimensionType",
                                    v.dimension_type.as_str(),
                                    m::AttributeDimensionType::parse,
                                )?,
                                values: v.values.clone(),
                            },
                        ))
                    })
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .transpose()?,
        profile_type: p
            .profile_type
            .as_ref()
            .map(|d| {
                Ok(m::ProfileTypeDimension {
                    dimension_type: parse(
                        "DimensionType",
                        d.dimension_type.as_str(),
                        m::ProfileTypeDimensionType::parse,
                    )?,
                    values: d
                        .values
                        .iter()
                        .map(|v| parse("ProfileType", v.as_str(), m::ProfileType::parse))
                        .collect::<Result<Vec<_>>>()?,
                })
            })
            .transpose()?,
    })
}

fn from_calculated(c: &t::CalculatedAttributeDimension) -> Result<m::CalculatedAttributeDimension> {
    Ok(m::CalculatedAttributeDimension {
        dimension_type: parse(
            "DimensionType",
            c.dimension_type.as_str(),
            m::AttributeDimensionType::parse,
        )?,
        values: c.values.clone(),
        condition_overrides: c
            .condition_overrides
            .as_ref()
            .map(|o| {
                Ok(m::ConditionOverrides {
                    range: o
                        .range
                        .as_ref()
                        .map(|r| {
                            Ok(m::RangeOverride {
                                start: r.start,
                                end: Some(r.end),
                                unit: parse("Unit", r.unit.as_str(), m::RangeUnit::parse)?,
                            })
                        })
                        .transpose()?,
                })
            })
            .transpose()?,
    })
}

pub fn from_sort(s: &t::SegmentSort) -> Result<m::SegmentSort> {
    Ok(m::SegmentSort {
        attributes: s
            .attributes
            .iter()
            .map(|a| {
                Ok(m::SortAttribute {
                    name: a.name.clone(),
                    data_type: a
                        .data_type
                        .as_ref()
                        .map(|d| parse("DataType", d.as_str(), m::SortDataType::parse))
                        .transpose()?,
                    order: parse("Order", a.order.as_str(), m::SortOrder::parse)?,
                    attribute_type: Some(parse(
                        "Type",
                        a.r#type.as_str(),
                        m::SortAttributeType::parse,
                    )?),
                })
            })
            .collect::<Result<Vec<_>>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dimension family, with the members the SDK fills in left out.
    const EVERY_FAMILY: &str = r#"
DisplayName: every family
SegmentGroups:
  Groups:
  - Dimensions:
    - ProfileAttributes:
        FirstName: {DimensionType: BEGINS_WITH, Values: [An]}
        AdditionalInformation: {DimensionType: CONTAINS, Values: [vip]}
        BirthDate: {DimensionType: BEFORE, Values: ['2000-01-01']}
        Address: {Country: {DimensionType: INCLUSIVE, Values: [US]}, City: {DimensionType: EXCLUSIVE, Values: [Paris]}}
        BillingAddress: {PostalCode: {DimensionType: ENDS_WITH, Values: ['01']}}
        Attributes:
          tier: {DimensionType: LIST_CONTAINS_ALL, Values: [gold, silver]}
          spend: {DimensionType: GREATER_THAN_OR_EQUAL, Values: ['10.5']}
        ProfileType: {DimensionType: INCLUSIVE, Values: [PROFILE]}
    - CalculatedAttributes:
        sessions:
          DimensionType: GREATER_THAN
          Values: ['0']
          ConditionOverrides: {Range: {Start: 7, Unit: DAYS}}
    SourceSegments: [{SegmentDefinitionName: base}]
  - Type: NONE
    SourceType: ANY
    Dimensions:
    - ProfileAttributes:
        EmailAddress: {DimensionType: INCLUSIVE, Values: [a@example.com]}
SegmentSort:
  Attributes:
  - {Name: spend, Order: DESC, DataType: NUMBER}
"#;

    #[test]
    fn the_sdk_round_trip_is_the_model_with_the_sdk_defaults() {
        let spec: m::CreateSegmentDefinitionRequest = serde_yaml::from_str(EVERY_FAMILY).unwrap();
        let filled = m::with_sdk_defaults(&spec);
        assert_ne!(filled, spec, "the fixture leaves defaults out");
        let groups = spec.segment_groups.as_ref().unwrap();
        assert_eq!(
            from_groups(&to_groups(groups).unwrap()).unwrap(),
            filled.segment_groups.unwrap()
        );
        let sort = spec.segment_sort.as_ref().unwrap();
        assert_eq!(
            from_sort(&to_sort(sort).unwrap()).unwrap(),
            filled.segment_sort.unwrap()
        );
        // Already filled, nothing changes.
        assert_eq!(
            m::with_sdk_defaults(&m::with_sdk_defaults(&spec)),
            m::with_sdk_defaults(&spec)
        );
    }

    #[test]
    fn a_value_the_model_does_not_know_is_named() {
        let g = t::SegmentGroup::builder()
            .include(t::IncludeOptions::from("SOME"))
            .build();
        let e = from_groups(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Include: unexpected value \"SOME\" from the API"
        );
    }
}
