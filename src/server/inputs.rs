//! Decoding and checking campaign and journey requests, before anything is stored: pure
//! functions of the request body. (The segment rules live in `validate`, shared with the
//! manifests.) What needs the database, such as whether a referenced segment exists, is
//! checked by the store inside the write's transaction.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::model::Tags;

/// A checked WriteCampaignRequest.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignInput {
    pub segment_id: String,
    /// As given; the store fills in the segment's latest version when absent.
    pub segment_version: Option<i64>,
    /// What is stored (server-owned fields removed).
    pub body: Map<String, Value>,
    pub tags: Tags,
}

/// A checked WriteJourneyRequest.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyInput {
    pub state: String,
    /// Every segment it refers to.
    pub refs: BTreeSet<String>,
    pub body: Map<String, Value>,
    pub tags: Tags,
}

/// The states UpdateJourneyState moves a journey to. Beyond the ACTIVE, PAUSED and CANCELLED
/// that Pinpoint accepts there, CLOSED and COMPLETED are accepted too: Pinpoint reaches them
/// on its own over time, which a self-hosted server cannot, so tests and operators set them.
pub const JOURNEY_STATES: &[&str] = &["ACTIVE", "PAUSED", "CANCELLED", "CLOSED", "COMPLETED"];

pub fn campaign(mut body: Map<String, Value>) -> Result<CampaignInput, ApiError> {
    let tags = take_tags(&mut body, "tags")?;
    for k in [
        "Id",
        "ApplicationId",
        "Arn",
        "CreationDate",
        "LastModifiedDate",
        "Version",
        "State",
        "DefaultState",
    ] {
        body.remove(k);
    }
    let segment_id = match body.get("SegmentId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "SegmentId: expected a segment id string",
            ))
        }
        None => return Err(ApiError::bad_request("SegmentId: missing required member")),
    };
    let segment_version = match body.get("SegmentVersion") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v >= 1) => n.as_i64(),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "SegmentVersion: expected a version number (1 or more), found {v}"
            )))
        }
    };
    if let Some(p) = body.get("IsPaused") {
        if !p.is_boolean() {
            return Err(ApiError::bad_request("IsPaused: expected true or false"));
        }
    }
    Ok(CampaignInput {
        segment_id,
        segment_version,
        body,
        tags,
    })
}

pub fn journey(mut body: Map<String, Value>) -> Result<JourneyInput, ApiError> {
    let tags = take_tags(&mut body, "tags")?;
    for k in ["Id", "ApplicationId", "CreationDate", "LastModifiedDate"] {
        body.remove(k);
    }
    match body.get("Name") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(ApiError::bad_request("Name: missing required member")),
    }
    let state = match body.remove("State") {
        None | Some(Value::Null) => "DRAFT".to_string(),
        Some(Value::String(s)) if s == "DRAFT" || s == "ACTIVE" => s,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "State: {v} cannot be set when creating or updating a journey; expected DRAFT or ACTIVE"
            )))
        }
    };
    let refs = journey_segment_refs(&Value::Object(body.clone()));
    Ok(JourneyInput {
        state,
        refs,
        body,
        tags,
    })
}

/// A JourneyStateRequest's state.
pub fn journey_state(body: &Map<String, Value>) -> Result<String, ApiError> {
    let state = match body.get("State") {
        Some(Value::String(st)) => st.clone(),
        _ => return Err(ApiError::bad_request("State: missing required member")),
    };
    if !JOURNEY_STATES.contains(&state.as_str()) {
        return Err(ApiError::bad_request(format!(
            "State: {}",
            crate::model::unknown_value_message(&state, JOURNEY_STATES)
        )));
    }
    Ok(state)
}

fn take_tags(body: &mut Map<String, Value>, key: &str) -> Result<Tags, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(Tags::new()),
        Some(v) => {
            let tags: Tags = serde_json::from_value(v)
                .map_err(|_| ApiError::bad_request("tags: expected a map of strings to strings"))?;
            if let Some(p) = crate::model::validate::tags_rules("tags", &tags).first() {
                return Err(ApiError::bad_request(p.to_string()));
            }
            Ok(tags)
        }
    }
}

/// Every segment id a journey refers to: its start condition (segment or event) and any
/// `SegmentCondition` inside its activities.
pub fn journey_segment_refs(journey: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, under: Option<&str>, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "SegmentId"
                        && matches!(
                            under,
                            Some(
                                "SegmentStartCondition"
                                    | "EventStartCondition"
                                    | "SegmentCondition"
                            )
                        )
                    {
                        if let Some(s) = child.as_str() {
                            out.insert(s.to_string());
                        }
                    }
                    walk(child, Some(k), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, under, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(journey, None, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn journey_references_are_found_in_start_conditions_and_activities() {
        let j = serde_json::json!({
            "StartCondition": {"SegmentStartCondition": {"SegmentId": "a"}},
            "Activities": {
                "split": {"ConditionalSplit": {"Condition": {"Conditions": [{"SegmentCondition": {"SegmentId": "b"}}]}}},
                "multi": {"MultiCondition": {"Branches": [{"Condition": {"SegmentCondition": {"SegmentId": "c"}}}]}}
            },
            "Other": {"SegmentId": "not-a-reference"}
        });
        let refs: Vec<_> = journey_segment_refs(&j).into_iter().collect();
        assert_eq!(refs, ["a", "b", "c"]);
    }

    #[test]
    fn a_campaign_needs_a_segment_and_well_typed_fields() {
        let ok = campaign(obj(serde_json::json!({
            "Name": "c", "SegmentId": "s1", "SegmentVersion": 2, "IsPaused": false,
            "Id": "server-owned", "tags": {"team": "crm"}
        })))
        .unwrap();
        assert_eq!(
            (ok.segment_id.as_str(), ok.segment_version),
            ("s1", Some(2))
        );
        assert!(!ok.body.contains_key("Id") && !ok.body.contains_key("tags"));
        assert_eq!(ok.tags["team"], "crm");
        for (body, message) in [
            (
                serde_json::json!({"Name": "c"}),
                "SegmentId: missing required member",
            ),
            (
                serde_json::json!({"SegmentId": 3}),
                "SegmentId: expected a segment id string",
            ),
            (
                serde_json::json!({"SegmentId": "s", "SegmentVersion": 0}),
                "SegmentVersion: expected a version number (1 or more), found 0",
            ),
            (
                serde_json::json!({"SegmentId": "s", "IsPaused": "yes"}),
                "IsPaused: expected true or false",
            ),
        ] {
            assert_eq!(campaign(obj(body)).unwrap_err().message, message);
        }
    }

    #[test]
    fn a_journey_is_created_in_draft_or_active_only() {
        let j = journey(obj(serde_json::json!({"Name": "j"}))).unwrap();
        assert_eq!(j.state, "DRAFT");
        assert!(journey(obj(serde_json::json!({"Name": "j", "State": "PAUSED"}))).is_err());
        assert!(journey(obj(serde_json::json!({"State": "ACTIVE"}))).is_err());
        assert_eq!(
            journey_state(&obj(serde_json::json!({"State": "CLOSD"}))).unwrap_err().message,
            "State: unknown value \"CLOSD\"; expected ACTIVE, PAUSED, CANCELLED, CLOSED or COMPLETED (did you mean CLOSED?)"
        );
    }
}
