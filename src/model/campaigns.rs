//! Amazon Connect outbound campaigns (v2, botocore's `connectcampaignsv2` 2024-04-23 model):
//! the shapes the campaign guard reads and the self-hosted server answers. A campaign
//! reaches a Customer Profiles segment definition by `source.customerProfilesSegmentArn`.
//!
//! Member names are the API's (camelCase). Requests refuse unknown members; the members the
//! guard has no use for (channel configuration, schedule, limits) are kept as the JSON they
//! were sent as and answered back unchanged.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validate::Violation;
use super::{unknown_value_message, Tags};

wire_enum!(
    /// A campaign's state (GetCampaignState).
    CampaignState {
        Initialized = "Initialized",
        Running = "Running",
        Paused = "Paused",
        Stopped = "Stopped",
        Failed = "Failed",
        Completed = "Completed",
    }
);

impl CampaignState {
    /// The states in which a campaign still reads its segment: started, paused (it resumes),
    /// or created and not yet started (it will start). Deleting its segment breaks it.
    pub fn in_use(self) -> bool {
        matches!(
            self,
            CampaignState::Initialized | CampaignState::Running | CampaignState::Paused
        )
    }
}

/// Where a campaign's audience comes from: a union in the model (one member set).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_profiles_segment_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_trigger: Option<EventTrigger>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTrigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_profiles_domain_arn: Option<String>,
}

/// CreateCampaign's request (the body of `PUT /v2/campaigns`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCampaignRequest {
    pub name: String,
    pub connect_instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_subtype_config: Option<Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub campaign_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_campaign_flow_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_limits_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication_time_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication_limits_override: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// UpdateCampaignSource's request body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSourceRequest {
    pub source: Source,
}

/// ListCampaigns' request body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListCampaignsRequest {
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(default)]
    pub filters: Option<CampaignFilters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignFilters {
    #[serde(default)]
    pub instance_id_filter: Option<InstanceIdFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceIdFilter {
    pub value: String,
    /// The model's only operator is `Eq`.
    pub operator: String,
}

/// GetCampaignStateBatch's request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateBatchRequest {
    pub campaign_ids: Vec<String>,
}

/// Why the members that run a campaign are refused: this server keeps what the guard reads.
pub const NOT_KEPT: &str = "not implemented by this server, which keeps a campaign's name, instance, type, source, flow ARN and tags (what segmentctl's campaign guard reads); how a campaign runs is Connect's";

/// ListCampaigns' largest page (the model's `MaxResults`).
pub const MAX_PAGE: i64 = 50;
/// GetCampaignStateBatch's largest request.
pub const MAX_STATE_BATCH: usize = 25;

fn push(out: &mut Vec<Violation>, path: &str, message: impl Into<String>) {
    out.push(Violation {
        path: path.into(),
        message: message.into(),
    });
}

/// A campaign id: 1–256 of `[-:/a-zA-Z0-9]` (the model's pattern).
pub fn campaign_id(path: &str, id: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '/');
    if id.is_empty() || id.len() > 256 || !id.chars().all(ok) {
        push(
            &mut out,
            path,
            "must be 1 to 256 characters of letters, digits, - : /",
        );
    }
    out
}

/// A source sets exactly one member, and an ARN is 20–500 characters.
pub fn source(path: &str, s: &Source) -> Vec<Violation> {
    let mut out = Vec::new();
    let arn = |out: &mut Vec<Violation>, p: &str, a: &str| {
        let n = a.chars().count();
        if !(20..=500).contains(&n) || !a.starts_with("arn:") {
            push(
                out,
                p,
                format!("must be an ARN of 20 to 500 characters, found {n}"),
            );
        }
    };
    match (&s.customer_profiles_segment_arn, &s.event_trigger) {
        (Some(a), None) => arn(&mut out, &format!("{path}.customerProfilesSegmentArn"), a),
        (None, Some(t)) => {
            if let Some(a) = &t.customer_profiles_domain_arn {
                arn(
                    &mut out,
                    &format!("{path}.eventTrigger.customerProfilesDomainArn"),
                    a,
                );
            }
        }
        _ => push(
            &mut out,
            path,
            "must set exactly one of customerProfilesSegmentArn and eventTrigger",
        ),
    }
    out
}

/// CreateCampaign's rules: the name 1–127 characters, the instance id 1–256 of
/// `[-_.a-zA-Z0-9]`, the type `MANAGED` or `JOURNEY`, the source, the tags.
pub fn create_campaign(req: &CreateCampaignRequest) -> Vec<Violation> {
    let mut out = Vec::new();
    let n = req.name.chars().count();
    if !(1..=127).contains(&n) {
        push(
            &mut out,
            "name",
            format!("must be 1 to 127 characters long, found {n}"),
        );
    }
    let id = &req.connect_instance_id;
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > 256 || !id.chars().all(ok) {
        push(
            &mut out,
            "connectInstanceId",
            "must be 1 to 256 characters of letters, digits, - _ .",
        );
    }
    if let Some(t) = &req.campaign_type {
        if !["MANAGED", "JOURNEY"].contains(&t.as_str()) {
            push(
                &mut out,
                "type",
                unknown_value_message(t, &["MANAGED", "JOURNEY"]),
            );
        }
    }
    if let Some(s) = &req.source {
        out.extend(source("source", s));
    }
    if let Some(a) = &req.connect_campaign_flow_arn {
        let n = a.chars().count();
        if !(20..=500).contains(&n) || !a.starts_with("arn:") {
            push(
                &mut out,
                "connectCampaignFlowArn",
                format!("must be an ARN of 20 to 500 characters, found {n}"),
            );
        }
    }
    // Kept as sent, they would be answered back as sent: a shape the model refuses would
    // make every ListCampaigns unreadable to the SDKs (and the campaign guard with it).
    for (name, set) in [
        ("channelSubtypeConfig", req.channel_subtype_config.is_some()),
        ("schedule", req.schedule.is_some()),
        ("entryLimitsConfig", req.entry_limits_config.is_some()),
        (
            "communicationTimeConfig",
            req.communication_time_config.is_some(),
        ),
        (
            "communicationLimitsOverride",
            req.communication_limits_override.is_some(),
        ),
    ] {
        if set {
            push(&mut out, name, NOT_KEPT);
        }
    }
    if let Some(t) = &req.tags {
        out.extend(super::profiles::validate::tags_rules("tags", t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(json: &str) -> Vec<String> {
        let req: CreateCampaignRequest = crate::model::strict::from_slice(json.as_bytes()).unwrap();
        create_campaign(&req)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_campaign_is_checked_member_by_member() {
        assert!(violations(r#"{"name":"spring","connectInstanceId":"i-1","source":{"customerProfilesSegmentArn":"arn:aws:profile:us-east-1:1:domains/d/segment-definitions/x"}}"#).is_empty());
        let found = violations(
            r#"{"name":"","connectInstanceId":"i 1","type":"BATCH","source":{},"tags":{"aws:x":"1"}}"#,
        );
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found[0].starts_with("name: must be 1 to 127"), "{found:#?}");
        assert!(found[1].starts_with("connectInstanceId:"), "{found:#?}");
        assert!(found[2].starts_with("type:"), "{found:#?}");
        assert!(found[3].contains("exactly one of"), "{found:#?}");
        assert!(found[4].contains("reserved"), "{found:#?}");
        let both = violations(
            r#"{"name":"n","connectInstanceId":"i","source":{"customerProfilesSegmentArn":"arn:aws:profile:us-east-1:1:domains/d/segment-definitions/x","eventTrigger":{}}}"#,
        );
        assert_eq!(both.len(), 1, "{both:#?}");
        let unknown: Result<CreateCampaignRequest, _> =
            crate::model::strict::from_slice(br#"{"name":"n","connectInstanceId":"i","x":1}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn only_started_paused_and_waiting_campaigns_use_their_segment() {
        let used: Vec<&str> = CampaignState::ALL
            .iter()
            .filter(|s| CampaignState::parse(s).is_some_and(CampaignState::in_use))
            .copied()
            .collect();
        assert_eq!(used, ["Initialized", "Running", "Paused"]);
        assert!(campaign_id("id", "abc-1:2/3").is_empty());
        assert!(!campaign_id("id", "a b").is_empty());
        assert!(!campaign_id("id", "").is_empty());
    }
}
