//! Campaigns: stored as sent, with the segment they use indexed and a status derived the
//! way Pinpoint reports it.

use super::documents::Kind;
use super::sql::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{new_id, tags_to_json, Listing, Page, Store, Tx};
use crate::model::Tags;
use crate::server::error::ApiError;
use crate::server::inputs::CampaignInput;
use crate::text::now_iso;

const CAMPAIGN: Kind = Kind {
    table: "campaigns",
    noun: "Campaign",
    own: "version, status_override",
};

impl Store {
    pub(super) fn campaign_in(
        &self,
        c: &Connection,
        app: &str,
        id: &str,
    ) -> Result<Value, ApiError> {
        let ((version, status_override), mut obj) = self.document(c, &CAMPAIGN, app, id, |r| {
            Ok((r.get::<_, i64>(4)?, r.get::<_, Option<String>>(5)?))
        })?;
        let status = status_override.unwrap_or_else(|| campaign_status(&obj));
        obj.insert(
            "Arn".into(),
            self.arn(&format!("{app}/campaigns/{id}")).into(),
        );
        obj.insert("Version".into(), version.into());
        obj.insert(
            "State".into(),
            serde_json::json!({ "CampaignStatus": status }),
        );
        obj.insert(
            "DefaultState".into(),
            serde_json::json!({ "CampaignStatus": status }),
        );
        Ok(Value::Object(obj))
    }

    /// The segment a campaign uses must exist, at the version named (its latest when none
    /// is); returns the body to store, with the version filled in.
    fn resolve_segment(
        tx: &Tx<'_>,
        app: &str,
        input: CampaignInput,
    ) -> Result<(String, Map<String, Value>, Tags), ApiError> {
        let CampaignInput {
            segment_id,
            segment_version,
            mut body,
            tags,
        } = input;
        let latest: Option<i32> = tx
            .query_row(
                &format!(
                    "SELECT version FROM segments WHERE app_id = ?1 AND id = ?2{}",
                    tx.for_share()
                ),
                [app, &segment_id],
                |r| r.get(0),
            )
            .optional()?;
        let latest = latest.ok_or_else(|| {
            ApiError::bad_request(format!(
                "SegmentId: segment {segment_id} does not exist in application {app}"
            ))
        })?;
        match segment_version {
            None => {
                body.insert("SegmentVersion".into(), latest.into());
            }
            Some(v) if v <= i64::from(latest) => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "SegmentVersion: {v} is not a version of segment {segment_id} (1 to {latest})"
                )))
            }
        }
        Ok((segment_id, body, tags))
    }

    pub fn create_campaign(&self, app: &str, input: CampaignInput) -> Result<Value, ApiError> {
        let id = new_id();
        let now = now_iso();
        self.write(|tx| {
            self.require_app(tx, app)?;
            let (segment_id, body, tags) = Self::resolve_segment(tx, app, input)?;
            tx.execute(
                "INSERT INTO campaigns (app_id, id, version, segment_id, created, modified, body, tags) VALUES (?1, ?2, 1, ?3, ?4, ?4, ?5, ?6)",
                params![app, id, segment_id, now, Value::Object(body).to_string(), tags_to_json(&tags)],
            )?;
            self.campaign_in(tx, app, &id)
        })
    }

    pub fn get_campaign(&self, app: &str, id: &str) -> Result<Value, ApiError> {
        self.read(|c| self.campaign_in(c, app, id))
    }

    pub fn list_campaigns(&self, app: &str, page: Page) -> Result<Listing<Value>, ApiError> {
        self.list_objects("campaigns", app, page, |c, id| self.campaign_in(c, app, id))
    }

    /// Replaces the definition; tags in the request are ignored, as Pinpoint does on update.
    pub fn update_campaign(
        &self,
        app: &str,
        id: &str,
        input: CampaignInput,
    ) -> Result<Value, ApiError> {
        let now = now_iso();
        self.write(|tx| {
            self.campaign_in(tx, app, id)?;
            let (segment_id, body, _ignored_tags) = Self::resolve_segment(tx, app, input)?;
            tx.execute(
                "UPDATE campaigns SET version = version + 1, segment_id = ?3, status_override = NULL, modified = ?4, body = ?5 WHERE app_id = ?1 AND id = ?2",
                params![app, id, segment_id, now, Value::Object(body).to_string()],
            )?;
            self.campaign_in(tx, app, id)
        })
    }

    pub fn delete_campaign(&self, app: &str, id: &str) -> Result<Value, ApiError> {
        self.write(|tx| {
            let c = self.campaign_in(tx, app, id)?;
            Self::delete_document(tx, &CAMPAIGN, app, id)?;
            Ok(c)
        })
    }
}

/// A campaign's status as Pinpoint would report it, from the fields a client can set:
/// paused campaigns are PAUSED, campaigns whose schedule ended are COMPLETED, the rest are
/// SCHEDULED (they will send).
fn campaign_status(body: &Map<String, Value>) -> String {
    if body.get("IsPaused") == Some(&Value::Bool(true)) {
        return "PAUSED".into();
    }
    let ended = body
        .get("Schedule")
        .and_then(|s| s.get("EndTime"))
        .and_then(Value::as_str)
        .and_then(crate::model::validate::parse_instant)
        .is_some_and(|end| end < OffsetDateTime::now_utc());
    if ended { "COMPLETED" } else { "SCHEDULED" }.into()
}
