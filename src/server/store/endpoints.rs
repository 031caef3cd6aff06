//! Endpoints: one row per endpoint (its EndpointResponse JSON), indexed by user for
//! GetUserEndpoints and the per-user quota; the application's attribute names, for the
//! per-application quota.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::sql::{params, Connection, OptionalExtension, Param};

use super::{multirow, Store, Tx};
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

/// A user's endpoints are at most [`MAX_ENDPOINTS_PER_USER`]; `others` are the user's
/// endpoints besides the one being written.
fn check_user(field: &str, user: &str, others: usize) -> Result<(), ApiError> {
    if others < MAX_ENDPOINTS_PER_USER {
        return Ok(());
    }
    let dot = if field.is_empty() { "" } else { "." };
    Err(ApiError::bad_request(format!(
        "{field}{dot}User.UserId: a user has at most {MAX_ENDPOINTS_PER_USER} endpoints; {} already has {others}",
        crate::text::quoted(user)
    )))
}

/// An endpoint as it is written: its id, user, channel and stored JSON, and whether it is
/// new (no endpoint of its id is stored, and no other row of the batch writes it): a new one
/// is written by a plain `INSERT`, with no conflict to look for.
pub(super) struct Staged<'a> {
    pub id: &'a str,
    pub user: Option<String>,
    pub channel: Option<String>,
    pub body: Cow<'a, str>,
    pub new: bool,
}

/// Endpoints to write, each id once (a multi-row upsert may not touch a row twice): in the
/// order ids first came, each with its last value.
#[derive(Default)]
pub(super) struct Latest<'a> {
    pub rows: Vec<Staged<'a>>,
    slot: HashMap<&'a str, usize>,
}

impl<'a> Latest<'a> {
    pub fn put(&mut self, mut s: Staged<'a>) {
        match self.slot.get(s.id) {
            Some(&i) => {
                // Written twice in one batch: an upsert, whatever the first row was.
                s.new = false;
                self.rows[i] = s;
            }
            None => {
                self.slot.insert(s.id, self.rows.len());
                self.rows.push(s);
            }
        }
    }

    /// Marks every row stored (written ahead of the batch's end: see [`Store::add_names`]):
    /// written again at the end, each is an upsert.
    pub fn stored(&mut self) {
        for s in &mut self.rows {
            s.new = false;
        }
    }
}

/// One import row, prepared before its batch's transaction: its id, the update it brings,
/// and what it makes if its id is new (the endpoint and its stored JSON, or why it cannot be
/// stored), made meanwhile so the transaction merges only the rows whose id exists.
pub struct ImportRow {
    pub id: String,
    pub update: Endpoint,
    fresh: Result<(Endpoint, String), ApiError>,
}

impl ImportRow {
    /// `update` for endpoint `id` of `app`, written by import job `job_id` at `now`.
    pub fn new(app: &str, job_id: &str, id: String, update: Endpoint, now: &str) -> Self {
        let e = Endpoint::merged(None, update.clone(), app, &id, now, job_id);
        let fresh = crate::server::endpoint::to_stored(&e, "Endpoint").map(|body| (e, body));
        Self { id, update, fresh }
    }

    /// What the row makes when no endpoint of its id exists.
    pub(super) fn fresh(&self) -> Result<(&Endpoint, &str), ApiError> {
        match &self.fresh {
            Ok((e, body)) => Ok((e, body)),
            Err(e) => Err(e.clone()),
        }
    }
}

/// A batch of endpoint writes in one application, merged in memory as
/// [`Store::upsert_endpoint`] merges them one by one: the stored endpoints of the batch's
/// ids and the endpoint ids of its users are read once, up front, and what each row makes
/// is what the next row of the same id merges into.
///
/// Assumptions: the transaction holds the application's endpoint lock
/// ([`Store::lock_endpoints`]), so nothing else changes its endpoints meanwhile.
pub(super) struct Merging<'a> {
    app: &'a str,
    /// Each id's endpoint as it stands now (`None`: there is none yet), and whether it was
    /// stored before the batch.
    current: HashMap<&'a str, (Option<Cow<'a, Endpoint>>, bool)>,
    /// The endpoint ids of each user the batch can touch (its rows' users and those of the
    /// endpoints they update).
    users: HashMap<String, HashSet<String>>,
    known: HashSet<(String, String)>,
}

impl<'a> Merging<'a> {
    pub fn load(tx: &Tx<'_>, app: &'a str, rows: &'a [ImportRow]) -> Result<Self, ApiError> {
        let mut current: HashMap<&'a str, (Option<Cow<'a, Endpoint>>, bool)> =
            HashMap::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            if !current.contains_key(row.id.as_str()) {
                current.insert(&row.id, (None, false));
                ids.push(&row.id);
            }
        }
        Self::load_stored(tx, app, &ids, &mut current)?;
        let mut users: HashMap<String, HashSet<String>> = HashMap::new();
        let updates = rows.iter().map(|r| &r.update);
        for e in current
            .values()
            .filter_map(|(e, _)| e.as_deref())
            .chain(updates)
        {
            if let Some(user) = e.user_id() {
                users.entry(user.to_string()).or_default();
            }
        }
        Self::load_users(tx, app, &mut users)?;
        let known = Store::attribute_names(tx, app)?;
        Ok(Self {
            app,
            current,
            users,
            known,
        })
    }

    /// Fills in the stored endpoints of `ids`.
    fn load_stored(
        tx: &Tx<'_>,
        app: &str,
        ids: &[&String],
        current: &mut HashMap<&'a str, (Option<Cow<'a, Endpoint>>, bool)>,
    ) -> Result<(), ApiError> {
        let stored = multirow::any_of(
            tx,
            &[&app],
            ids,
            |id| format!("SELECT id, body FROM endpoints WHERE app_id = ?1 AND id {id}"),
            |id, p| p.push(*id),
        )?;
        for row in stored {
            let id: String = row.get(0)?;
            let body: String = row.get(1)?;
            let e: Endpoint = serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
            if let Some(slot) = current.get_mut(id.as_str()) {
                *slot = (Some(Cow::Owned(e)), true);
            }
        }
        Ok(())
    }

    /// Fills in the endpoint ids of each user in `users`.
    fn load_users(
        tx: &Tx<'_>,
        app: &str,
        users: &mut HashMap<String, HashSet<String>>,
    ) -> Result<(), ApiError> {
        let names: Vec<String> = users.keys().cloned().collect();
        let rows = multirow::any_of(
            tx,
            &[&app],
            &names,
            |user| {
                format!("SELECT user_id, id FROM endpoints WHERE app_id = ?1 AND user_id {user}")
            },
            |user, p| p.push(user),
        )?;
        for row in rows {
            let user: String = row.get(0)?;
            users.entry(user).or_default().insert(row.get(1)?);
        }
        Ok(())
    }

    /// The stored endpoints of the users of `staged` that `staged` does not write: the
    /// other endpoints of the users a batch imports, as they stand after it (by id, each
    /// once).
    pub fn others_of(&self, staged: &Latest<'_>) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut others = Vec::new();
        for user in staged.rows.iter().filter_map(|s| s.user.as_deref()) {
            if !seen.insert(user) {
                continue;
            }
            let ids = self.users.get(user).into_iter().flatten();
            others.extend(
                ids.filter(|id| !staged.slot.contains_key(id.as_str()))
                    .cloned(),
            );
        }
        others
    }

    /// Whether endpoint `id` exists, stored or written by an earlier row.
    pub fn exists(&self, id: &str) -> bool {
        self.current.get(id).is_some_and(|(e, _)| e.is_some())
    }

    /// `row` merged into its endpoint and checked as [`Store::upsert_endpoint`] checks it:
    /// the endpoint to write. A refused row changes nothing. `pending` is what the batch has
    /// not written yet, stored first if attribute names must be freed.
    pub fn upsert(
        &mut self,
        tx: &Tx<'_>,
        row: &'a ImportRow,
        now: &str,
        request_id: &str,
        pending: &mut Latest<'a>,
    ) -> Result<Staged<'a>, ApiError> {
        let id = row.id.as_str();
        let (before, stored) = match self.current.get(id) {
            Some((before, stored)) => (before.as_deref(), *stored),
            None => (None, false),
        };
        let old_user = before.and_then(|b| b.user_id().map(String::from));
        let new = before.is_none();
        let (e, body): (Cow<'a, Endpoint>, Cow<'a, str>) = match before {
            // A new endpoint: what the row makes alone, made before the transaction.
            None => {
                let (e, body) = row.fresh()?;
                (Cow::Borrowed(e), Cow::Borrowed(body))
            }
            Some(before) => {
                let e = Endpoint::merged(
                    Some(before.clone()),
                    row.update.clone(),
                    self.app,
                    id,
                    now,
                    request_id,
                );
                let body = crate::server::endpoint::to_stored(&e, "Endpoint")?;
                (Cow::Owned(e), Cow::Owned(body))
            }
        };
        if let Some(user) = e.user_id() {
            let others = self
                .users
                .get(user)
                .map_or(0, |ids| ids.len() - usize::from(ids.contains(id)));
            check_user("", user, others)?;
        }
        let app = self.app;
        Store::add_names(tx, app, id, &e, "", &mut self.known, || {
            Store::write_endpoints(tx, app, pending)?;
            pending.stored();
            Ok(())
        })?;
        let user = e.user_id().map(String::from);
        if old_user != user {
            if let Some(ids) = old_user.and_then(|u| self.users.get_mut(&u)) {
                ids.remove(id);
            }
            if let Some(ids) = user.as_ref().and_then(|u| self.users.get_mut(u)) {
                ids.insert(id.to_string());
            }
        }
        let channel = e.channel_type.clone();
        self.current.insert(id, (Some(e), stored));
        Ok(Staged {
            id,
            user,
            channel,
            body,
            new: new && !stored,
        })
    }
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
        known: &mut HashSet<(String, String)>,
    ) -> Result<(), ApiError> {
        let mut used: HashSet<(String, String)> = e
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
    ) -> Result<HashSet<(String, String)>, ApiError> {
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
        known: &mut HashSet<(String, String)>,
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
            check_user(field, user, others as usize)?;
        }
        Self::add_names(tx, app, id, &e, field, known, || Ok(()))?;
        tx.prepare_cached(
            "INSERT INTO endpoints (app_id, id, user_id, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (app_id, id) DO UPDATE SET user_id = excluded.user_id, body = excluded.body",
        )?
        .execute(params![app, id, e.user_id(), body])?;
        Ok(e)
    }

    /// Records the custom attribute names `e` brings (endpoint `id`'s new value), refusing
    /// it when the application would pass [`MAX_ATTRIBUTES_PER_APP`]. At the limit, names no
    /// stored endpoint uses any more are freed first, once `flush` has stored what is still
    /// held back (they are read from the table).
    pub(super) fn add_names(
        tx: &Tx<'_>,
        app: &str,
        id: &str,
        e: &Endpoint,
        field: &str,
        known: &mut HashSet<(String, String)>,
        flush: impl FnOnce() -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let new = |known: &HashSet<(String, String)>| -> Vec<(&'static str, String)> {
            e.attribute_names()
                .filter(|(f, n)| !known.contains(&(f.to_string(), n.to_string())))
                .map(|(f, n)| (f, n.to_string()))
                .collect()
        };
        let mut names = new(known);
        if names.is_empty() {
            return Ok(());
        }
        if known.len() + names.len() > MAX_ATTRIBUTES_PER_APP {
            flush()?;
            Self::free_unused_names(tx, app, id, e, known)?;
            names = new(known);
        }
        let count = known.len();
        if count + names.len() > MAX_ATTRIBUTES_PER_APP {
            let dot = if field.is_empty() { "" } else { "." };
            let (family, name) = &names[0];
            return Err(ApiError::bad_request(format!(
                "{field}{dot}{family}.{}: an application has at most {MAX_ATTRIBUTES_PER_APP} custom attributes across Attributes, Metrics and UserAttributes; it has {count}",
                crate::text::safe(name)
            )));
        }
        for (family, name) in names {
            tx.prepare_cached(
                "INSERT INTO attribute_names (app_id, family, name) VALUES (?1, ?2, ?3)",
            )?
            .execute([app, family, name.as_str()])?;
            known.insert((family.to_string(), name));
        }
        Ok(())
    }

    /// Writes endpoints of `app` in multi-row statements ([`multirow::insert`]): the new ones
    /// (see [`Staged`]) in plain inserts, the others in upserts.
    pub(super) fn write_endpoints(tx: &Tx<'_>, app: &str, rows: &Latest) -> Result<(), ApiError> {
        let (new, old): (Vec<&Staged>, Vec<&Staged>) = rows.rows.iter().partition(|s| s.new);
        for (rows, conflict) in [
            (new, ""),
            (
                old,
                " ON CONFLICT (app_id, id) DO UPDATE SET user_id = excluded.user_id, body = excluded.body",
            ),
        ] {
            multirow::insert(
                tx,
                ("INSERT INTO endpoints (app_id, id, user_id, body)", conflict),
                &[&app],
                3,
                &rows,
                |s, p| p.extend([&s.id as &dyn Param, &s.user, &s.body]),
            )?;
        }
        Ok(())
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
