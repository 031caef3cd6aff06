//! Applications: create, read, list, delete (with everything in them).

use super::sql::{params, Connection, DbError, OptionalExtension, Row};

use super::{
    app_not_found, new_id, non_empty, paginate, tags_from_json, tags_to_json, Listing, Page, Store,
};
use crate::model::{ApplicationResponse, Tags};
use crate::server::error::ApiError;
use crate::text::now_iso;

impl Store {
    pub(super) fn app_row(&self, r: &Row) -> Result<ApplicationResponse, DbError> {
        let id: String = r.get("id")?;
        Ok(ApplicationResponse {
            arn: self.arn(&id),
            id,
            name: r.get("name")?,
            tags: non_empty(tags_from_json(&r.get::<_, String>("tags")?)),
            creation_date: r.get("created")?,
        })
    }

    pub fn create_app(&self, name: &str, tags: &Tags) -> Result<ApplicationResponse, ApiError> {
        let id = new_id();
        let created = now_iso();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO apps (id, name, created, tags) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, created, tags_to_json(tags)],
            )?;
            Ok(())
        })?;
        Ok(ApplicationResponse {
            arn: self.arn(&id),
            id,
            name: name.to_string(),
            tags: non_empty(tags.clone()),
            creation_date: created,
        })
    }

    pub fn get_app(&self, id: &str) -> Result<ApplicationResponse, ApiError> {
        self.read(|c| {
            c.query_row("SELECT * FROM apps WHERE id = ?1", [id], |r| {
                self.app_row(r)
            })
            .optional()?
            .ok_or_else(|| app_not_found(id))
        })
    }

    pub fn list_apps(&self, page: Page) -> Result<Listing<ApplicationResponse>, ApiError> {
        self.read(|c| {
            let stmt =
                c.prepare_cached("SELECT * FROM apps WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = stmt.query_map(params![page.after, page.size as i64 + 1], |r| {
                Ok((r.get::<_, i64>("seq")?, self.app_row(r)?))
            })?;
            paginate(rows, page.size)
        })
    }

    pub fn delete_app(&self, id: &str) -> Result<ApplicationResponse, ApiError> {
        let app = self.get_app(id)?;
        self.write(|tx| {
            // The application's row first: writes in it hold it shared (see `require_app`),
            // so this waits for them, and the ones after find it gone.
            let n = tx.execute("DELETE FROM apps WHERE id = ?1", [id])?;
            if n == 0 {
                return Err(app_not_found(id));
            }
            for table in [
                "segments",
                "segment_versions",
                "campaigns",
                "journeys",
                "journey_segments",
                "endpoints",
                "attribute_names",
                "segment_members",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE app_id = ?1"), [id])?;
            }
            tx.execute(
                "DELETE FROM import_rows WHERE job_id IN (SELECT id FROM jobs WHERE app_id = ?1)",
                [id],
            )?;
            tx.execute("DELETE FROM jobs WHERE app_id = ?1", [id])?;
            Ok(())
        })?;
        Ok(app)
    }

    /// The application must exist; in a write, it then cannot be deleted before the write
    /// ends (on PostgreSQL, a share lock its deletion waits for).
    pub(super) fn require_app(&self, c: &Connection, app: &str) -> Result<(), ApiError> {
        let found: Option<i64> = c
            .query_row(
                &format!("SELECT 1 FROM apps WHERE id = ?1{}", c.for_share()),
                [app],
                |r| r.get(0),
            )
            .optional()?;
        found.map(|_| ()).ok_or_else(|| app_not_found(app))
    }
}
