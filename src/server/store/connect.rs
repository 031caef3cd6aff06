//! Amazon Connect outbound campaigns (v2): kept as their CreateCampaign request, with a
//! state and the segment definition their source names. The self-hosted server answers the
//! calls the campaign guard makes (list, describe, state, re-point) and the ones a test or a
//! user needs to make a campaign it can see (create, start, pause, resume, stop, delete).
//!
//! A source naming a segment definition must name one of this server's, existing when the
//! campaign is created or re-pointed (checked under a share lock). Deleting the definition
//! later leaves the campaign as it is, naming it: that is what the guard is for.

use serde_json::{Map, Value};

use super::sql::{params, Connection, OptionalExtension, Row, Tx};
use super::{paginate, Listing, Page, Resource, Store};
use crate::model::campaigns::{CampaignState, CreateCampaignRequest, Source};
use crate::server::error::{ApiError, ErrorKind};

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn iso_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(crate::text::iso)
        .unwrap_or_default()
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Campaign {id} does not exist"))
}

/// GetCampaignStateBatch's answer: each campaign found with its state; the ids not found.
pub type States = (Vec<(String, CampaignState)>, Vec<String>);

/// A stored campaign.
struct Stored {
    id: String,
    state: CampaignState,
    body: CreateCampaignRequest,
    modified_ms: i64,
}

fn stored(r: &Row) -> Result<Stored, super::sql::DbError> {
    let state: String = r.get("state")?;
    let body: String = r.get("body")?;
    Ok(Stored {
        id: r.get("id")?,
        // Written by this module only: a value it cannot read is a corrupt row.
        state: CampaignState::parse(&state).unwrap_or(CampaignState::Failed),
        body: serde_json::from_str(&body).unwrap_or_default(),
        modified_ms: r.get("modified_ms")?,
    })
}

impl Store {
    fn connect_campaign_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:connect-campaigns:{}:{}:campaign/{id}",
            self.region, self.account_id
        )
    }

    /// DescribeCampaign's `campaign`: the request as stored, with id, ARN and time.
    fn connect_campaign_json(&self, s: &Stored) -> Value {
        let mut obj: Map<String, Value> = match serde_json::to_value(&s.body) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        };
        if obj
            .get("tags")
            .is_some_and(|t| t.as_object().is_some_and(Map::is_empty))
        {
            obj.remove("tags");
        }
        obj.insert("id".into(), s.id.clone().into());
        obj.insert("arn".into(), self.connect_campaign_arn(&s.id).into());
        obj.insert("lastModifiedTime".into(), iso_ms(s.modified_ms).into());
        Value::Object(obj)
    }

    /// ListCampaigns' summary: no source (the guard describes each campaign to learn it).
    fn connect_campaign_summary(&self, s: &Stored) -> Value {
        let subtypes: Vec<&str> = s
            .body
            .channel_subtype_config
            .as_ref()
            .and_then(Value::as_object)
            .map(|o| {
                [
                    ("telephony", "TELEPHONY"),
                    ("sms", "SMS"),
                    ("email", "EMAIL"),
                    ("whatsApp", "WHATSAPP"),
                ]
                .into_iter()
                .filter(|(k, _)| o.contains_key(*k))
                .map(|(_, v)| v)
                .collect()
            })
            .unwrap_or_default();
        let mut out = serde_json::json!({
            "id": s.id,
            "arn": self.connect_campaign_arn(&s.id),
            "name": s.body.name,
            "connectInstanceId": s.body.connect_instance_id,
            "channelSubtypes": subtypes,
            "lastModifiedTime": iso_ms(s.modified_ms),
        });
        for (k, v) in [
            ("type", s.body.campaign_type.clone().map(Value::from)),
            ("schedule", s.body.schedule.clone()),
            ("entryLimitsConfig", s.body.entry_limits_config.clone()),
            (
                "connectCampaignFlowArn",
                s.body.connect_campaign_flow_arn.clone().map(Value::from),
            ),
        ] {
            if let (Some(v), Some(o)) = (v, out.as_object_mut()) {
                o.insert(k.into(), v);
            }
        }
        out
    }

    /// The segment definition a source names, which must exist on this server (held shared
    /// until the write ends); empty for an event trigger.
    fn connect_source_segment(
        &self,
        tx: &Tx<'_>,
        source: Option<&Source>,
    ) -> Result<String, ApiError> {
        let Some(arn) = source.and_then(|s| s.customer_profiles_segment_arn.as_deref()) else {
            return Ok(String::new());
        };
        let missing = || {
            ApiError::bad_request(format!(
                "source.customerProfilesSegmentArn: {} is not a segment definition of this server",
                crate::text::safe(arn)
            ))
        };
        let Some(Resource::SegmentDefinition(domain, name)) = self.parse_profiles_arn(arn) else {
            return Err(missing());
        };
        tx.query_row(
            &format!(
                "SELECT 1 FROM cp_segment_definitions WHERE domain = ?1 AND name = ?2{}",
                tx.for_share()
            ),
            [&domain, &name],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .ok_or_else(missing)?;
        Ok(arn.to_string())
    }

    /// Creates a campaign, `Initialized`; returns its id and ARN.
    pub fn create_connect_campaign(
        &self,
        req: &CreateCampaignRequest,
    ) -> Result<(String, String), ApiError> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let body = serde_json::to_string(req).map_err(|e| ApiError::internal(&e))?;
        self.write(|tx| {
            let segment = self.connect_source_segment(tx, req.source.as_ref())?;
            tx.execute(
                "INSERT INTO cc_campaigns (id, instance_id, state, segment_arn, body, modified_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    req.connect_instance_id,
                    CampaignState::Initialized.as_str(),
                    segment,
                    body,
                    now_ms()
                ],
            )?;
            Ok(())
        })?;
        let arn = self.connect_campaign_arn(&id);
        Ok((id, arn))
    }

    fn connect_campaign_in(c: &Connection, id: &str) -> Result<Stored, ApiError> {
        c.query_row(
            &format!("SELECT * FROM cc_campaigns WHERE id = ?1{}", c.for_update()),
            [id],
            stored,
        )
        .optional()?
        .ok_or_else(|| not_found(id))
    }

    pub fn describe_connect_campaign(&self, id: &str) -> Result<Value, ApiError> {
        let s = self.read(|c| Self::connect_campaign_in(c, id))?;
        Ok(self.connect_campaign_json(&s))
    }

    /// A page of campaigns, oldest first, of one Connect instance when `instance` is set.
    pub fn list_connect_campaigns(
        &self,
        page: Page,
        instance: Option<&str>,
    ) -> Result<Listing<Value>, ApiError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT * FROM cc_campaigns WHERE seq > ?1 AND (?2 = '' OR instance_id = ?2) \
                     ORDER BY seq LIMIT ?3",
                )?
                .query_map(
                    params![page.after, instance.unwrap_or(""), page.size as i64 + 1],
                    |r| {
                        Ok((
                            r.get::<_, i64>("seq")?,
                            self.connect_campaign_summary(&stored(r)?),
                        ))
                    },
                )?;
            paginate(rows, page.size)
        })
    }

    pub fn delete_connect_campaign(&self, id: &str) -> Result<(), ApiError> {
        self.write(|tx| {
            if tx.execute("DELETE FROM cc_campaigns WHERE id = ?1", [id])? == 0 {
                return Err(not_found(id));
            }
            Ok(())
        })
    }

    /// The state of each id found; the ids not found.
    pub fn connect_campaign_states(&self, ids: &[String]) -> Result<States, ApiError> {
        self.read(|c| {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match Self::connect_campaign_in(c, id) {
                    Ok(s) => found.push((s.id, s.state)),
                    Err(e) if e.kind == ErrorKind::NotFound => missing.push(id.clone()),
                    Err(e) => return Err(e),
                }
            }
            Ok((found, missing))
        })
    }

    /// Moves a campaign from one of `from` to `to` (by `operation`); a 409 naming its state
    /// otherwise.
    pub fn set_connect_campaign_state(
        &self,
        id: &str,
        operation: &str,
        from: &[CampaignState],
        to: CampaignState,
    ) -> Result<(), ApiError> {
        self.write(|tx| {
            let s = Self::connect_campaign_in(tx, id)?;
            if !from.contains(&s.state) {
                return Err(invalid_state(id, s.state, operation, from));
            }
            tx.execute(
                "UPDATE cc_campaigns SET state = ?1, modified_ms = ?2 WHERE id = ?3",
                params![to.as_str(), now_ms(), id],
            )?;
            Ok(())
        })
    }

    /// UpdateCampaignSource: a campaign that has not ended reads its audience from `source`.
    pub fn update_connect_campaign_source(
        &self,
        id: &str,
        source: &Source,
    ) -> Result<(), ApiError> {
        self.write(|tx| {
            let mut s = Self::connect_campaign_in(tx, id)?;
            if !s.state.in_use() {
                return Err(invalid_state(id, s.state, "UpdateCampaignSource", IN_USE));
            }
            let segment = self.connect_source_segment(tx, Some(source))?;
            s.body.source = Some(source.clone());
            let body = serde_json::to_string(&s.body).map_err(|e| ApiError::internal(&e))?;
            tx.execute(
                "UPDATE cc_campaigns SET segment_arn = ?1, body = ?2, modified_ms = ?3 WHERE id = ?4",
                params![segment, body, now_ms(), id],
            )?;
            Ok(())
        })
    }
}

/// The states a campaign has not ended in.
pub const IN_USE: &[CampaignState] = &[
    CampaignState::Initialized,
    CampaignState::Running,
    CampaignState::Paused,
];

/// Named `ConflictException` on the wire (every state-changing operation models it; the
/// model's `InvalidCampaignStateException` needs a `state` member our error body has not).
fn invalid_state(
    id: &str,
    state: CampaignState,
    operation: &str,
    from: &[CampaignState],
) -> ApiError {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    ApiError::new(
        ErrorKind::Conflict,
        format!(
            "Campaign {id} is {state}: {operation} needs it {}",
            from.join(" or ")
        ),
    )
}
