//! Journeys: stored as sent, with every segment they refer to indexed, and their state.

use std::collections::BTreeSet;

use super::documents::Kind;
use super::sql::{params, Connection};
use serde_json::Value;

use super::{new_id, tags_to_json, Listing, Page, Store, Tx};
use crate::server::error::ApiError;
use crate::server::inputs::JourneyInput;
use crate::text::now_iso;

const JOURNEY: Kind = Kind {
    table: "journeys",
    noun: "Journey",
    own: "state",
};

impl Store {
    pub(super) fn journey_in(
        &self,
        c: &Connection,
        app: &str,
        id: &str,
    ) -> Result<Value, ApiError> {
        let (state, mut obj) = self.document(c, &JOURNEY, app, id, |r| r.get::<_, String>(4))?;
        obj.insert("State".into(), state.into());
        Ok(Value::Object(obj))
    }

    /// Every segment a journey refers to must exist in its application.
    fn check_refs(tx: &Tx<'_>, app: &str, refs: &BTreeSet<String>) -> Result<(), ApiError> {
        for seg in refs {
            if !super::segment_exists(tx, app, seg)? {
                return Err(ApiError::bad_request(format!(
                    "the journey refers to segment {seg}, which does not exist in application {app}"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn index_journey(
        tx: &Tx<'_>,
        app: &str,
        id: &str,
        refs: &BTreeSet<String>,
    ) -> Result<(), ApiError> {
        tx.execute(
            "DELETE FROM journey_segments WHERE app_id = ?1 AND journey_id = ?2",
            [app, id],
        )?;
        for seg in refs {
            tx.execute(
                "INSERT INTO journey_segments (app_id, journey_id, segment_id) VALUES (?1, ?2, ?3)",
                [app, id, seg],
            )?;
        }
        Ok(())
    }

    pub fn create_journey(&self, app: &str, input: JourneyInput) -> Result<Value, ApiError> {
        let id = new_id();
        let now = now_iso();
        self.write(|tx| {
            self.require_app(tx, app)?;
            let JourneyInput { state, refs, body, tags } = input;
            Self::check_refs(tx, app, &refs)?;
            tx.execute(
                "INSERT INTO journeys (app_id, id, state, created, modified, body, tags) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                params![app, id, state, now, Value::Object(body).to_string(), tags_to_json(&tags)],
            )?;
            Self::index_journey(tx, app, &id, &refs)?;
            self.journey_in(tx, app, &id)
        })
    }

    pub fn get_journey(&self, app: &str, id: &str) -> Result<Value, ApiError> {
        self.read(|c| self.journey_in(c, app, id))
    }

    pub fn list_journeys(&self, app: &str, page: Page) -> Result<Listing<Value>, ApiError> {
        self.list_objects("journeys", app, page, |c, id| self.journey_in(c, app, id))
    }

    pub fn update_journey(
        &self,
        app: &str,
        id: &str,
        input: JourneyInput,
    ) -> Result<Value, ApiError> {
        let now = now_iso();
        self.write(|tx| {
            let current = self.journey_in(tx, app, id)?;
            if current["State"] == "ACTIVE" || current["State"] == "CANCELLED" || current["State"] == "COMPLETED" {
                return Err(ApiError::new(
                    crate::server::error::ErrorKind::Conflict,
                    format!("Journey {id} is {} and cannot be updated", current["State"].as_str().unwrap_or("")),
                ));
            }
            let JourneyInput { state, refs, body, .. } = input;
            Self::check_refs(tx, app, &refs)?;
            tx.execute(
                "UPDATE journeys SET state = ?3, modified = ?4, body = ?5 WHERE app_id = ?1 AND id = ?2",
                params![app, id, state, now, Value::Object(body).to_string()],
            )?;
            Self::index_journey(tx, app, id, &refs)?;
            self.journey_in(tx, app, id)
        })
    }

    /// Moves a journey to a state (one of [`crate::server::inputs::JOURNEY_STATES`]).
    pub fn update_journey_state(
        &self,
        app: &str,
        id: &str,
        state: &str,
    ) -> Result<Value, ApiError> {
        let now = now_iso();
        self.write(|tx| {
            self.journey_in(tx, app, id)?;
            tx.execute(
                "UPDATE journeys SET state = ?3, modified = ?4 WHERE app_id = ?1 AND id = ?2",
                params![app, id, state, now],
            )?;
            self.journey_in(tx, app, id)
        })
    }

    pub fn delete_journey(&self, app: &str, id: &str) -> Result<Value, ApiError> {
        self.write(|tx| {
            let j = self.journey_in(tx, app, id)?;
            Self::delete_document(tx, &JOURNEY, app, id)?;
            tx.execute(
                "DELETE FROM journey_segments WHERE app_id = ?1 AND journey_id = ?2",
                [app, id],
            )?;
            Ok(j)
        })
    }
}
