//! Everything that touches `aws-sdk-pinpoint` types: building clients, and converting the
//! SDK's segment types to and from the shared `model` (the one place that knows both).

use aws_sdk_pinpoint::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_pinpoint::Client;

/// A client for a Pinpoint-compatible endpoint with static credentials.
///
/// `retries` is the SDK's own retry budget (attempts, including the first); the reconciler
/// passes 1 for CreateSegment, whose outcome it must check itself before any retry.
pub fn endpoint_client(
    endpoint: &str,
    region: &str,
    access_key_id: &str,
    secret_access_key: &str,
    retries: u32,
) -> Client {
    let conf = aws_sdk_pinpoint::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "segmentctl",
        ))
        .retry_config(retry_config(retries))
        .build();
    Client::from_conf(conf)
}

fn retry_config(attempts: u32) -> aws_sdk_pinpoint::config::retry::RetryConfig {
    use aws_sdk_pinpoint::config::retry::RetryConfig;
    if attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard().with_max_attempts(attempts)
    }
}

use std::collections::{BTreeMap, HashMap};

use aws_sdk_pinpoint::types as t;

use crate::model as m;

/// A live value the model cannot represent (an enum value it does not know).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: unexpected value {value:?} from the API")]
pub struct Unrepresentable {
    pub field: &'static str,
    pub value: String,
}

type Conv<T> = Result<T, Unrepresentable>;

fn parse_enum<T>(field: &'static str, text: &str, parse: fn(&str) -> Option<T>) -> Conv<T> {
    parse(text).ok_or_else(|| Unrepresentable {
        field,
        value: text.to_string(),
    })
}

fn to_hash<V, W>(map: &BTreeMap<String, V>, f: impl Fn(&V) -> W) -> HashMap<String, W> {
    map.iter().map(|(k, v)| (k.clone(), f(v))).collect()
}

// ---- model → SDK ----

/// The SDK request for a definition whose base segments are all `Id`s (Refs resolved).
pub fn write_request(req: &m::WriteSegmentRequest) -> t::WriteSegmentRequest {
    t::WriteSegmentRequest::builder()
        .set_dimensions(req.dimensions.as_ref().map(dimensions))
        .set_name(req.name.clone())
        .set_segment_groups(req.segment_groups.as_ref().map(|g| {
            t::SegmentGroupList::builder()
                .set_groups(g.groups.as_ref().map(|gs| gs.iter().map(group).collect()))
                .set_include(g.include.map(|i| t::Include::from(i.as_str())))
                .build()
        }))
        .set_tags(
            req.tags
                .as_ref()
                .map(|tags| tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        )
        .build()
}

fn group(g: &m::SegmentGroup) -> t::SegmentGroup {
    t::SegmentGroup::builder()
        .set_dimensions(
            g.dimensions
                .as_ref()
                .map(|ds| ds.iter().map(dimensions).collect()),
        )
        .set_source_segments(g.source_segments.as_ref().map(|ss| {
            ss.iter()
                .map(|s| {
                    t::SegmentReference::builder()
                        .set_id(s.id.clone())
                        .set_version(s.version)
                        .build()
                })
                .collect()
        }))
        .set_source_type(g.source_type.map(|x| t::SourceType::from(x.as_str())))
        .set_type(g.group_type.map(|x| t::Type::from(x.as_str())))
        .build()
}

fn set(s: &m::SetDimension) -> t::SetDimension {
    t::SetDimension::builder()
        .set_dimension_type(s.dimension_type.map(|d| t::DimensionType::from(d.as_str())))
        .set_values(Some(s.values.clone()))
        .build()
}

fn attribute(a: &m::AttributeDimension) -> t::AttributeDimension {
    t::AttributeDimension::builder()
        .set_attribute_type(a.attribute_type.map(|d| t::AttributeType::from(d.as_str())))
        .set_values(Some(a.values.clone()))
        .build()
}

fn dimensions(d: &m::SegmentDimensions) -> t::SegmentDimensions {
    t::SegmentDimensions::builder()
        .set_attributes(d.attributes.as_ref().map(|a| to_hash(a, attribute)))
        .set_behavior(d.behavior.as_ref().map(|b| {
            t::SegmentBehaviors::builder()
                .set_recency(b.recency.as_ref().map(|r| {
                    t::RecencyDimension::builder()
                        .duration(t::Duration::from(r.duration.as_str()))
                        .recency_type(t::RecencyType::from(r.recency_type.as_str()))
                        .build()
                }))
                .build()
        }))
        .set_demographic(d.demographic.as_ref().map(|x| {
            t::SegmentDemographics::builder()
                .set_app_version(x.app_version.as_ref().map(set))
                .set_channel(x.channel.as_ref().map(set))
                .set_device_type(x.device_type.as_ref().map(set))
                .set_make(x.make.as_ref().map(set))
                .set_model(x.model.as_ref().map(set))
                .set_platform(x.platform.as_ref().map(set))
                .build()
        }))
        .set_location(d.location.as_ref().map(|l| {
            t::SegmentLocation::builder()
                .set_country(l.country.as_ref().map(set))
                .set_gps_point(l.gps_point.as_ref().map(|g| {
                    t::GpsPointDimension::builder()
                        .coordinates(
                            t::GpsCoordinates::builder()
                                .latitude(g.coordinates.latitude)
                                .longitude(g.coordinates.longitude)
                                .build(),
                        )
                        .set_range_in_kilometers(g.range_in_kilometers)
                        .build()
                }))
                .build()
        }))
        .set_metrics(d.metrics.as_ref().map(|ms| {
            to_hash(ms, |x| {
                t::MetricDimension::builder()
                    .comparison_operator(x.comparison_operator.as_str())
                    .value(x.value)
                    .build()
            })
        }))
        .set_user_attributes(d.user_attributes.as_ref().map(|a| to_hash(a, attribute)))
        .build()
}

// ---- SDK → model ----
//
// The answers are consumed: their strings and lists move into the model rather than being
// copied (observing 1,000 segments converts every one of them).

fn from_hash_owned<V, W>(
    map: HashMap<String, V>,
    f: impl Fn(V) -> Conv<W>,
) -> Conv<BTreeMap<String, W>> {
    map.into_iter().map(|(k, v)| Ok((k, f(v)?))).collect()
}

/// A live segment in the shared model.
pub fn segment_response(s: t::SegmentResponse) -> Conv<m::SegmentResponse> {
    Ok(m::SegmentResponse {
        application_id: s.application_id.unwrap_or_default(),
        arn: s.arn.unwrap_or_default(),
        creation_date: s.creation_date.unwrap_or_default(),
        dimensions: s.dimensions.map(live_dimensions).transpose()?,
        id: s.id.unwrap_or_default(),
        last_modified_date: s.last_modified_date,
        name: s.name,
        segment_groups: s
            .segment_groups
            .map(|g| -> Conv<m::SegmentGroupList> {
                Ok(m::SegmentGroupList {
                    groups: g
                        .groups
                        .map(|gs| gs.into_iter().map(live_group).collect::<Conv<Vec<_>>>())
                        .transpose()?,
                    include: g
                        .include
                        .map(|i| parse_enum("SegmentGroups.Include", i.as_str(), m::Include::parse))
                        .transpose()?,
                })
            })
            .transpose()?,
        segment_type: s
            .segment_type
            .map(|x| x.as_str().to_string())
            .unwrap_or_else(|| "DIMENSIONAL".into()),
        tags: s.tags.map(|tags| tags.into_iter().collect()),
        version: s.version.unwrap_or(0),
        import_definition: s.import_definition.map(|d| m::ImportDefinition {
            channel_counts: d
                .channel_counts
                .map(|c| c.into_iter().map(|(k, v)| (k, i64::from(v))).collect()),
            external_id: d.external_id.unwrap_or_default(),
            format: d.format.map(|f| f.as_str().to_string()).unwrap_or_default(),
            role_arn: d.role_arn.unwrap_or_default(),
            s3_url: d.s3_url.unwrap_or_default(),
            size: i64::from(d.size.unwrap_or(0)),
        }),
    })
}

fn live_group(g: t::SegmentGroup) -> Conv<m::SegmentGroup> {
    let include = |field, x: Option<&str>| -> Conv<Option<m::Include>> {
        x.map(|x| parse_enum(field, x, m::Include::parse))
            .transpose()
    };
    Ok(m::SegmentGroup {
        source_type: include("SourceType", g.source_type.as_ref().map(|x| x.as_str()))?,
        group_type: include("Type", g.r#type.as_ref().map(|x| x.as_str()))?,
        dimensions: g
            .dimensions
            .map(|ds| {
                ds.into_iter()
                    .map(live_dimensions)
                    .collect::<Conv<Vec<_>>>()
            })
            .transpose()?,
        source_segments: g.source_segments.map(|ss| {
            ss.into_iter()
                .map(|s| m::SegmentReference {
                    id: s.id,
                    reference: None,
                    version: s.version,
                })
                .collect()
        }),
    })
}

fn live_set(s: t::SetDimension) -> Conv<m::SetDimension> {
    Ok(m::SetDimension {
        dimension_type: s
            .dimension_type
            .map(|d| parse_enum("DimensionType", d.as_str(), m::DimensionType::parse))
            .transpose()?,
        values: s.values.unwrap_or_default(),
    })
}

fn live_attribute(a: t::AttributeDimension) -> Conv<m::AttributeDimension> {
    Ok(m::AttributeDimension {
        attribute_type: a
            .attribute_type
            .map(|d| parse_enum("AttributeType", d.as_str(), m::AttributeType::parse))
            .transpose()?,
        values: a.values.unwrap_or_default(),
    })
}

fn live_dimensions(d: t::SegmentDimensions) -> Conv<m::SegmentDimensions> {
    let opt_set = |s: Option<t::SetDimension>| s.map(live_set).transpose();
    Ok(m::SegmentDimensions {
        attributes: d
            .attributes
            .map(|a| from_hash_owned(a, live_attribute))
            .transpose()?,
        behavior: d
            .behavior
            .map(|b| -> Conv<m::SegmentBehaviors> {
                Ok(m::SegmentBehaviors {
                    recency: b
                        .recency
                        .map(|r| -> Conv<m::RecencyDimension> {
                            let duration = r.duration.as_ref().map(|x| x.as_str()).unwrap_or("");
                            let kind = r.recency_type.as_ref().map(|x| x.as_str()).unwrap_or("");
                            Ok(m::RecencyDimension {
                                duration: parse_enum(
                                    "Recency.Duration",
                                    duration,
                                    m::Duration::parse,
                                )?,
                                recency_type: parse_enum(
                                    "Recency.RecencyType",
                                    kind,
                                    m::RecencyType::parse,
                                )?,
                            })
                        })
                        .transpose()?,
                })
            })
            .transpose()?,
        demographic: d
            .demographic
            .map(|x| -> Conv<m::SegmentDemographics> {
                Ok(m::SegmentDemographics {
                    app_version: opt_set(x.app_version)?,
                    channel: opt_set(x.channel)?,
                    device_type: opt_set(x.device_type)?,
                    make: opt_set(x.make)?,
                    model: opt_set(x.model)?,
                    platform: opt_set(x.platform)?,
                })
            })
            .transpose()?,
        location: d
            .location
            .map(|l| -> Conv<m::SegmentLocation> {
                Ok(m::SegmentLocation {
                    country: opt_set(l.country)?,
                    gps_point: l.gps_point.map(|g| {
                        let c = g.coordinates.as_ref();
                        m::GpsPointDimension {
                            coordinates: m::GpsCoordinates {
                                latitude: c.and_then(|c| c.latitude).unwrap_or(0.0),
                                longitude: c.and_then(|c| c.longitude).unwrap_or(0.0),
                            },
                            range_in_kilometers: g.range_in_kilometers,
                        }
                    }),
                })
            })
            .transpose()?,
        metrics: d
            .metrics
            .map(|ms| {
                from_hash_owned(ms, |x| {
                    Ok(m::MetricDimension {
                        comparison_operator: parse_enum(
                            "ComparisonOperator",
                            x.comparison_operator.as_deref().unwrap_or(""),
                            m::ComparisonOperator::parse,
                        )?,
                        value: x.value.unwrap_or(0.0),
                    })
                })
            })
            .transpose()?,
        user_attributes: d
            .user_attributes
            .map(|a| from_hash_owned(a, live_attribute))
            .transpose()?,
    })
}

/// Every segment id a journey refers to (start conditions and activity conditions).
pub fn journey_segment_ids(j: &t::JourneyResponse) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(sc) = &j.start_condition {
        if let Some(id) = sc
            .segment_start_condition
            .as_ref()
            .and_then(|c| c.segment_id.clone())
        {
            out.push(id);
        }
        if let Some(id) = sc
            .event_start_condition
            .as_ref()
            .and_then(|c| c.segment_id.clone())
        {
            out.push(id);
        }
    }
    let simple = |c: &t::SimpleCondition, out: &mut Vec<String>| {
        if let Some(id) = c
            .segment_condition
            .as_ref()
            .and_then(|s| s.segment_id.clone())
        {
            out.push(id);
        }
    };
    for activity in j.activities.iter().flat_map(|a| a.values()) {
        if let Some(split) = &activity.conditional_split {
            for c in split
                .condition
                .iter()
                .flat_map(|c| c.conditions.iter().flatten())
            {
                simple(c, &mut out);
            }
        }
        if let Some(multi) = &activity.multi_condition {
            for b in multi.branches.iter().flatten() {
                if let Some(c) = &b.condition {
                    simple(c, &mut out);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
