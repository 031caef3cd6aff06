//! What campaign and journey storage share: each is kept as the body its request sent,
//! beside the fields the server owns (dates, tags, and each kind's own: a campaign's version
//! and status, a journey's state), and answered with those fields set in the body.

use serde_json::{Map, Value};

use super::sql::{Connection, DbError, OptionalExtension, Row};
use super::{tags_from_json, Store, Tx};
use crate::server::error::ApiError;

/// A kind of document: its table, its name in errors, and its own columns.
pub(super) struct Kind {
    pub table: &'static str,
    pub noun: &'static str,
    /// Read after the shared ones (`created, modified, body, tags`): from column 4 on.
    pub own: &'static str,
}

impl Store {
    /// A document of `kind` (locked for the rest of a transaction that writes): what
    /// `read_own` takes from its own columns, and its body with the shared fields set (id,
    /// application, dates, and tags when it has any).
    ///
    /// Errors: a 404 naming the document, or its application when that is what is missing.
    pub(super) fn document<T>(
        &self,
        c: &Connection,
        kind: &Kind,
        app: &str,
        id: &str,
        read_own: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<(T, Map<String, Value>), ApiError> {
        let sql = format!(
            "SELECT created, modified, body, tags, {} FROM {} WHERE app_id = ?1 AND id = ?2{}",
            kind.own,
            kind.table,
            c.for_update()
        );
        let row = c
            .query_row(&sql, [app, id], |r| {
                let shared: (String, String, String, String) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                Ok((shared, read_own(r)?))
            })
            .optional()?;
        let Some(((created, modified, body, tags), own)) = row else {
            self.require_app(c, app)?;
            return Err(ApiError::not_found(format!(
                "{} {id} not found in application {app}",
                kind.noun
            )));
        };
        let mut obj: Map<String, Value> =
            serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
        obj.insert("Id".into(), id.into());
        obj.insert("ApplicationId".into(), app.into());
        obj.insert("CreationDate".into(), created.into());
        obj.insert("LastModifiedDate".into(), modified.into());
        let tags = tags_from_json(&tags);
        if !tags.is_empty() {
            obj.insert(
                "tags".into(),
                serde_json::to_value(tags).unwrap_or_default(),
            );
        }
        Ok((own, obj))
    }

    /// Deletes a document of `kind`.
    pub(super) fn delete_document(
        tx: &Tx<'_>,
        kind: &Kind,
        app: &str,
        id: &str,
    ) -> Result<(), ApiError> {
        tx.execute(
            &format!("DELETE FROM {} WHERE app_id = ?1 AND id = ?2", kind.table),
            [app, id],
        )?;
        Ok(())
    }
}
