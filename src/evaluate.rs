//! The audience evaluator: does one endpoint record belong to a segment? Pure.
//!
//! Semantics follow the Segment resource page and Pinpoint's model; where Pinpoint is silent
//! the rules chosen here are (and are pinned by tests):
//! - comparisons of values are exact (case-sensitive);
//! - a missing field or attribute never satisfies INCLUSIVE, CONTAINS, BEFORE, AFTER, ON,
//!   BETWEEN, a metric or a GPS criterion, and always satisfies EXCLUSIVE and NOT_BETWEEN
//!   (it is not among the excluded values, nor between the bounds);
//! - `DeviceType` has no endpoint field: INCLUSIVE matches no endpoint, EXCLUSIVE all;
//! - `Channel` compares with the endpoint's `ChannelType`;
//! - BEFORE / AFTER are strict; BETWEEN includes both bounds; ON compares UTC calendar dates;
//! - GPS distance is great-circle (haversine, mean Earth radius 6,371.0088 km), within the
//!   range inclusive; without `RangeInKilometers` the range is 50 km;
//! - recency uses the endpoint's `EffectiveDate` (its last update): ACTIVE when it lies in
//!   `[as_of − duration, as_of]`, INACTIVE otherwise (including when it is missing);
//! - in a group, `Type` (default ALL) combines its `Dimensions` entries and `SourceType`
//!   (default ANY) its base segments (ALL, ANY, NONE; an empty list restricts nothing);
//!   `Include` (default ALL) combines groups.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::model::{
    AttributeDimension, AttributeType, ComparisonOperator, Duration, GpsPointDimension, Include,
    RecencyType, SegmentDimensions, SegmentReference, SetDimension, WriteSegmentRequest,
};
use crate::validate::parse_instant;

/// The range assumed when a GPSPoint dimension gives none.
pub const DEFAULT_GPS_RANGE_KM: f64 = 50.0;
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// An endpoint record, as Pinpoint's export and import files hold them (unknown fields are
/// ignored: export lines carry more than a segment can look at). Strings borrow from the
/// line they were read from where they can: reading millions of records allocates little.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint<'a> {
    #[serde(default, borrow)]
    pub channel_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub address: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub demographic: Demographic<'a>,
    #[serde(default, borrow)]
    pub location: Location<'a>,
    #[serde(default, borrow)]
    pub attributes: BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    pub metrics: BTreeMap<Cow<'a, str>, f64>,
    #[serde(default, borrow)]
    pub user: User<'a>,
    #[serde(default, borrow)]
    pub effective_date: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub endpoint_status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub opt_out: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Demographic<'a> {
    #[serde(default, borrow)]
    pub app_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub make: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub platform: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Location<'a> {
    #[serde(default, borrow)]
    pub country: Option<Cow<'a, str>>,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct User<'a> {
    #[serde(default, borrow)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub user_attributes: BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>,
}

/// Segments to evaluate, by manifest name, with live ids mapped to names for `Id` bases.
pub struct Evaluator<'a> {
    pub segments: &'a BTreeMap<String, WriteSegmentRequest>,
    pub name_of_id: BTreeMap<String, String>,
    pub as_of: OffsetDateTime,
}

/// How deep base segments may nest (a guard: manifests with cycles do not validate).
const MAX_DEPTH: usize = 32;

impl Evaluator<'_> {
    /// Whether `endpoint` belongs to the segment named `name` (false for an unknown name).
    pub fn matches(&self, name: &str, endpoint: &Endpoint<'_>) -> bool {
        self.segment(name, endpoint, 0)
    }

    fn segment(&self, name: &str, e: &Endpoint<'_>, depth: usize) -> bool {
        let Some(def) = self.segments.get(name) else {
            return false;
        };
        if depth > MAX_DEPTH {
            return false;
        }
        if let Some(d) = &def.dimensions {
            return self.dimensions(d, e);
        }
        let Some(groups) = def
            .segment_groups
            .as_ref()
            .and_then(|g| g.groups.as_ref().map(|gs| (gs, g.include)))
        else {
            return true; // no criteria: every endpoint
        };
        let (groups, include) = groups;
        combine(
            include.unwrap_or(Include::All),
            groups.iter().map(|g| {
                let sources = g.source_segments.as_deref().unwrap_or_default();
                let in_sources = sources.is_empty()
                    || combine(
                        g.source_type.unwrap_or(Include::Any),
                        sources.iter().map(|s| self.reference(s, e, depth)),
                    );
                let dims = g.dimensions.as_deref().unwrap_or_default();
                let in_dims = dims.is_empty()
                    || combine(
                        g.group_type.unwrap_or(Include::All),
                        dims.iter().map(|d| self.dimensions(d, e)),
                    );
                in_sources && in_dims
            }),
        )
    }

    fn reference(&self, r: &SegmentReference, e: &Endpoint<'_>, depth: usize) -> bool {
        let name = r.reference.clone().or_else(|| {
            r.id.as_ref()
                .and_then(|id| self.name_of_id.get(id).cloned())
        });
        name.is_some_and(|n| self.segment(&n, e, depth + 1))
    }

    /// Every criterion present must hold.
    pub fn dimensions(&self, d: &SegmentDimensions, e: &Endpoint<'_>) -> bool {
        let empty: Vec<Cow<'_, str>> = Vec::new();
        let attrs = |map: &BTreeMap<Cow<'_, str>, Vec<Cow<'_, str>>>,
                     dims: &Option<BTreeMap<String, AttributeDimension>>| {
            dims.iter()
                .flatten()
                .all(|(k, a)| attribute(a, map.get(k.as_str()).unwrap_or(&empty)))
        };
        if !attrs(&e.attributes, &d.attributes)
            || !attrs(&e.user.user_attributes, &d.user_attributes)
        {
            return false;
        }
        if let Some(m) = &d.metrics {
            if !m.iter().all(|(k, c)| {
                e.metrics
                    .get(k.as_str())
                    .is_some_and(|v| compare(c.comparison_operator, *v, c.value))
            }) {
                return false;
            }
        }
        if let Some(demo) = &d.demographic {
            let checks = [
                (&demo.app_version, e.demographic.app_version.as_deref()),
                (&demo.channel, e.channel_type.as_deref()),
                (&demo.device_type, None),
                (&demo.make, e.demographic.make.as_deref()),
                (&demo.model, e.demographic.model.as_deref()),
                (&demo.platform, e.demographic.platform.as_deref()),
            ];
            if !checks
                .iter()
                .all(|(dim, value)| dim.as_ref().is_none_or(|s| set(s, *value)))
            {
                return false;
            }
        }
        if let Some(loc) = &d.location {
            if loc
                .country
                .as_ref()
                .is_some_and(|c| !set(c, e.location.country.as_deref()))
            {
                return false;
            }
            if loc.gps_point.as_ref().is_some_and(|g| !gps(g, &e.location)) {
                return false;
            }
        }
        if let Some(r) = d.behavior.as_ref().and_then(|b| b.recency.as_ref()) {
            let active = e
                .effective_date
                .as_deref()
                .and_then(parse_instant)
                .is_some_and(|t| t <= self.as_of && t >= self.as_of - window(r.duration));
            if active != (r.recency_type == RecencyType::Active) {
                return false;
            }
        }
        true
    }
}

fn combine(how: Include, mut results: impl Iterator<Item = bool>) -> bool {
    match how {
        Include::All => results.all(|r| r),
        Include::Any => results.any(|r| r),
        Include::None => !results.any(|r| r),
    }
}

fn window(d: Duration) -> time::Duration {
    match d {
        Duration::Hr24 => time::Duration::hours(24),
        Duration::Day7 => time::Duration::days(7),
        Duration::Day14 => time::Duration::days(14),
        Duration::Day30 => time::Duration::days(30),
    }
}

fn set(s: &SetDimension, value: Option<&str>) -> bool {
    let listed = value.is_some_and(|v| s.values.iter().any(|x| x == v));
    match s
        .dimension_type
        .unwrap_or(crate::model::DimensionType::Inclusive)
    {
        crate::model::DimensionType::Inclusive => listed,
        crate::model::DimensionType::Exclusive => !listed,
    }
}

fn attribute(a: &AttributeDimension, values: &[Cow<'_, str>]) -> bool {
    let listed = |v: &Cow<'_, str>| a.values.iter().any(|x| x.as_str() == v.as_ref());
    let instants = || values.iter().filter_map(|v| parse_instant(v));
    let bound = |i: usize| a.values.get(i).and_then(|v| parse_instant(v));
    let between = || match (bound(0), bound(1)) {
        (Some(lo), Some(hi)) => instants().any(|t| lo <= t && t <= hi),
        _ => false,
    };
    match a.attribute_type.unwrap_or(AttributeType::Inclusive) {
        AttributeType::Inclusive => values.iter().any(listed),
        AttributeType::Exclusive => !values.iter().any(listed),
        AttributeType::Contains => values
            .iter()
            .any(|v| a.values.iter().any(|c| v.contains(c.as_str()))),
        AttributeType::Before => bound(0).is_some_and(|b| instants().any(|t| t < b)),
        AttributeType::After => bound(0).is_some_and(|b| instants().any(|t| t > b)),
        AttributeType::On => bound(0).is_some_and(|b| {
            let day = b.to_offset(time::UtcOffset::UTC).date();
            instants().any(|t| t.to_offset(time::UtcOffset::UTC).date() == day)
        }),
        AttributeType::Between => between(),
        AttributeType::NotBetween => !between(),
    }
}

fn compare(op: ComparisonOperator, value: f64, criterion: f64) -> bool {
    match op {
        ComparisonOperator::GreaterThan => value > criterion,
        ComparisonOperator::LessThan => value < criterion,
        ComparisonOperator::GreaterThanOrEqual => value >= criterion,
        ComparisonOperator::LessThanOrEqual => value <= criterion,
        ComparisonOperator::Equal => value == criterion,
    }
}

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

fn gps(g: &GpsPointDimension, loc: &Location<'_>) -> bool {
    match (loc.latitude, loc.longitude) {
        (Some(lat), Some(lon)) => {
            let range = g.range_in_kilometers.unwrap_or(DEFAULT_GPS_RANGE_KM);
            distance_km(g.coordinates.latitude, g.coordinates.longitude, lat, lon) <= range
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
