//! Endpoints: one row per endpoint (its EndpointResponse JSON), indexed by user for
//! GetUserEndpoints and the per-user quota; the application's attribute names, for the
//! per-application quota.

use super::sql::{params, Connection, OptionalExtension};

use super::{Store, Tx};
use crate::server::endpoint::{Endpoint, MAX_ATTRIBUTES_PER_APP, MAX_ENDPOINTS_PER_USER};
use crate::server::error::ApiError;

/// An endpoint's stored JSON, as it goes on the wire.
pub type Body = Box<serde_json::value::RawValue>;

fn raw(text: String) -> Result<Body, ApiError> {
    serde_json::value::RawValue::from_string(text).map_err(|e| ApiError::internal(&e))
}

fn endpoint_not_found(app: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("Endpoint {id} not found in application {app}"))
}

impl Store {
    /// Merges each `(id, update)` into the stored endpoint (creating it), all or nothing.
    /// `field(i)` names item `i` in errors (`Item[3]`, or `` for UpdateEndpoint).
    pub fn update_endpoints(
        &self,
        app: &str,
        items: Vec<(String, Endpoint)>,
        field: impl Fn(usize) -> String,
        request_id: &str,
    ) -> Result<(), ApiError> {
        let now = crate::text::now_iso();
        self.write_app(app, |tx| {
            self.require_app(tx, app)?;
            let mut known = Self::attribute_names(tx, app)?;
            for (i, (id, update)) in items.into_iter().enumerate() {
                Self::upsert_endpoint(
                    tx,
                    app,
                    &id,
                    update,
                    &field(i),
                    &now,
                    request_id,
                    &mut known,
                )?;
            }
            Ok(())
        })
    }

    /// Endpoint writes in one application, one at a time (on PostgreSQL, where replicas write
    /// at once): each merges into what the last one stored, and the per-user and
    /// per-application quotas count what is there.
    pub(super) fn lock_endpoints(tx: &Tx<'_>, app: &str) -> Result<(), ApiError> {
        Ok(tx.serialize_on(&format!("endpoints/{app}"))?)
    }

    /// Forgets the attribute names that no endpoint of `app` uses now (besides `e`, about
    /// to replace endpoint `id`): deleting or rewriting every endpoint that used a name frees
    /// it. Run only when a write would pass the limit, since it reads every endpoint.
    fn free_unused_names(
        tx: &Tx<'_>,
        app: &str,
        id: &str,
        e: &Endpoint,
        known: &mut std::collections::HashSet<(String, String)>,
    ) -> Result<(), ApiError> {
        let mut used: std::collections::HashSet<(String, String)> = e
            .attribute_names()
            .map(|(f, n)| (f.to_string(), n.to_string()))
            .collect();
        let bodies: Vec<String> = tx
            .prepare_cached("SELECT body FROM endpoints WHERE app_id = ?1 AND id != ?2")?
            .query_map([app, id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for body in bodies {
            let stored: Endpoint =
                serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
            used.extend(
                stored
                    .attribute_names()
                    .map(|(f, n)| (f.to_string(), n.to_string())),
            );
        }
        let unused: Vec<(String, String)> = known.difference(&used).cloned().collect();
        for (family, name) in &unused {
            tx.prepare_cached(
                "DELETE FROM attribute_names WHERE app_id = ?1 AND family = ?2 AND name = ?3",
            )?
            .execute([app, family.as_str(), name.as_str()])?;
            known.remove(&(family.clone(), name.clone()));
        }
        Ok(())
    }

    /// The application's custom attribute names, `(family, name)`: at most 250.
    pub(super) fn attribute_names(
        tx: &Tx<'_>,
        app: &str,
    ) -> Result<std::collections::HashSet<(String, String)>, ApiError> {
        let names = tx
            .prepare_cached("SELECT family, name FROM attribute_names WHERE app_id = ?1")?
            .query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(names)
    }

    /// One endpoint merged and stored; every check is made before anything is written, so a
    /// refused endpoint leaves nothing behind (an import goes on with the next row). `known`
    /// is the application's attribute names ([`Store::attribute_names`]), kept up to date.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn upsert_endpoint(
        tx: &Tx<'_>,
        app: &str,
        id: &str,
        update: Endpoint,
        field: &str,
        now: &str,
        request_id: &str,
        known: &mut std::collections::HashSet<(String, String)>,
    ) -> Result<Endpoint, ApiError> {
        let stored: Option<String> = tx
            .prepare_cached("SELECT body FROM endpoints WHERE app_id = ?1 AND id = ?2")?
            .query_row([app, id], |r| r.get(0))
            .optional()?;
        let stored: Option<Endpoint> = stored
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| ApiError::internal(&e))?;
        let e = Endpoint::merged(stored, update, app, id, now, request_id);
        let dot = if field.is_empty() { "" } else { "." };
        let body = crate::server::endpoint::to_stored(
            &e,
            if field.is_empty() { "Endpoint" } else { field },
        )?;
        if let Some(user) = e.user_id() {
            let others: i64 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM endpoints WHERE app_id = ?1 AND user_id = ?2 AND id != ?3",
                )?
                .query_row([app, user, id], |r| r.get(0))?;
            if others as usize >= MAX_ENDPOINTS_PER_USER {
                return Err(ApiError::bad_request(format!(
                    "{field}{dot}User.UserId: a user has at most {MAX_ENDPOINTS_PER_USER} endpoints; {} already has {others}",
                    crate::text::safe(user)
                )));
            }
        }
        let new_names: Vec<(&'static str, &str)> = e
            .attribute_names()
            .filter(|(family, name)| !known.contains(&(family.to_string(), name.to_string())))
            .collect();
        if !new_names.is_empty() && known.len() + new_names.len() > MAX_ATTRIBUTES_PER_APP {
            // At the limit: names no stored endpoint uses any more are freed first.
            Self::free_unused_names(tx, app, id, &e, known)?;
        }
        let new_names: Vec<(&'static str, &str)> = e
            .attribute_names()
            .filter(|(family, name)| !known.contains(&(family.to_string(), name.to_string())))
            .collect();
        if !new_names.is_empty() {
            let count = known.len();
            if count + new_names.len() > MAX_ATTRIBUTES_PER_APP {
                let (family, name) = new_names[0];
                return Err(ApiError::bad_request(format!(
                    "{field}{dot}{family}.{}: an application has at most {MAX_ATTRIBUTES_PER_APP} custom attributes across Attributes, Metrics and UserAttributes; it has {count}",
                    crate::text::safe(name)
                )));
            }
            for (family, name) in new_names {
                tx.prepare_cached(
                    "INSERT INTO attribute_names (app_id, family, name) VALUES (?1, ?2, ?3)",
                )?
                .execute([app, family, name])?;
                known.insert((family.to_string(), name.to_string()));
            }
        }
        tx.prepare_cached(
            "INSERT INTO endpoints (app_id, id, user_id, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (app_id, id) DO UPDATE SET user_id = excluded.user_id, body = excluded.body",
        )?
        .execute(params![app, id, e.user_id(), body])?;
        Ok(e)
    }

    pub fn get_endpoint(&self, app: &str, id: &str) -> Result<Body, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM endpoints WHERE app_id = ?1 AND id = ?2")?
                .query_row([app, id], |r| r.get(0))
                .optional()?;
            raw(body.ok_or_else(|| endpoint_not_found(app, id))?)
        })
    }

    pub fn delete_endpoint(&self, app: &str, id: &str) -> Result<Body, ApiError> {
        self.write_app(app, |tx| {
            self.require_app(tx, app)?;
            let body: Option<String> = tx
                .query_row(
                    "DELETE FROM endpoints WHERE app_id = ?1 AND id = ?2 RETURNING body",
                    [app, id],
                    |r| r.get(0),
                )
                .optional()?;
            raw(body.ok_or_else(|| endpoint_not_found(app, id))?)
        })
    }

    fn user_rows(c: &Connection, app: &str, user: &str) -> Result<Vec<String>, ApiError> {
        let rows = c
            .prepare_cached(
                "SELECT body FROM endpoints WHERE app_id = ?1 AND user_id = ?2 ORDER BY seq",
            )?
            .query_map([app, user], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    /// GetUserEndpoints: a user's endpoints (404 when there are none).
    pub fn user_endpoints(&self, app: &str, user: &str) -> Result<Vec<Body>, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            let rows = Self::user_rows(c, app, user)?;
            if rows.is_empty() {
                return Err(ApiError::not_found(format!(
                    "User {} has no endpoints in application {app}",
                    crate::text::safe(user)
                )));
            }
            rows.into_iter().map(raw).collect()
        })
    }

    /// DeleteUserEndpoints: removes a user's endpoints and returns them.
    pub fn delete_user_endpoints(&self, app: &str, user: &str) -> Result<Vec<Body>, ApiError> {
        self.write_app(app, |tx| {
            self.require_app(tx, app)?;
            let rows = Self::user_rows(tx, app, user)?;
            if rows.is_empty() {
                return Err(ApiError::not_found(format!(
                    "User {} has no endpoints in application {app}",
                    crate::text::safe(user)
                )));
            }
            tx.execute(
                "DELETE FROM endpoints WHERE app_id = ?1 AND user_id = ?2",
                [app, user],
            )?;
            rows.into_iter().map(raw).collect()
        })
    }

    /// Up to `limit` endpoints of `app` after position `after`, in storage order: `(position,
    /// EndpointResponse JSON)`. For export jobs, which walk every endpoint page by page.
    pub fn endpoints_after(
        &self,
        app: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, ApiError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT seq, body FROM endpoints WHERE app_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?
                .query_map(params![app, after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }
}
