//! Import and export jobs: the job records (their ImportJobResponse / ExportJobResponse JSON
//! and status), the rows an import has read so far, and the members of IMPORT segments.
//!
//! An import is staged: each batch of rows is committed with the job's counters, and the
//! segment (a new one, or a new version of `SegmentId`) is written with its members in the
//! one transaction that marks the job COMPLETED. A job cut short by a stop is run again from
//! its first row at the next start (its staged rows cleared first), so it either completes or
//! fails with its reason, and never leaves half a segment.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::endpoints::{ImportRow, Latest, Merging, Staged};
use super::sql::{params, DbError, Dialect, OptionalExtension, Param};
use serde_json::Value;

use super::{multirow, new_id, paginate, segment_not_found, Listing, Page, Store, Tx};
use crate::model::ImportDefinition;
use crate::server::endpoint::Endpoint;
use crate::server::error::ApiError;
use crate::text::now_iso;

/// Statuses after which a job does not change.
pub const TERMINAL: &[&str] = &["COMPLETED", "FAILED"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Import,
    Export,
    /// A Customer Profiles segment estimate (its `app_id` is `domains/NAME`).
    SegmentEstimate,
    /// A Customer Profiles segment snapshot (its `segment_id` is the definition's name).
    SegmentSnapshot,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Import => "IMPORT",
            JobKind::Export => "EXPORT",
            JobKind::SegmentEstimate => "SEGMENT_ESTIMATE",
            JobKind::SegmentSnapshot => "SEGMENT_SNAPSHOT",
        }
    }

    /// The kind stored as `text`; `None` for a kind this build does not run.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Import,
            Self::Export,
            Self::SegmentEstimate,
            Self::SegmentSnapshot,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A job not finished: what a restarted server runs again.
#[derive(Debug, Clone)]
pub struct OpenJob {
    pub app: String,
    pub id: String,
    pub kind: JobKind,
    pub body: Value,
}

/// What the last transaction of an import wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    pub segment_id: Option<String>,
    pub size: i64,
    pub channel_counts: BTreeMap<String, i64>,
}

/// What an import's segment is to be.
pub struct ImportTarget<'a> {
    pub segment_id: Option<&'a str>,
    pub define: bool,
    /// The rows were registered as endpoints (`RegisterEndpoints`): their users' other
    /// endpoints were staged with each batch.
    pub registered: bool,
    pub name: Option<&'a str>,
    pub definition: ImportDefinition,
}

/// The database's clock in milliseconds: leases are compared on one clock, whatever the
/// replicas' clocks say.
pub(super) fn now_ms(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
        Dialect::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
    }
}

/// Another server holds the job now (this one's lease ran out).
pub fn lost_lease(id: &str) -> ApiError {
    ApiError::new(
        crate::server::error::ErrorKind::Conflict,
        format!("job {id} is now run by another server: this one's lease ran out"),
    )
}

fn job_not_found(kind: JobKind, id: &str) -> ApiError {
    let what = match kind {
        JobKind::Import => "Import",
        JobKind::Export => "Export",
        JobKind::SegmentEstimate => "Segment estimate",
        JobKind::SegmentSnapshot => "Segment snapshot",
    };
    ApiError::not_found(format!("{what} job {id} not found"))
}

/// Why an import row cannot make a new endpoint (none of its id exists): it lacks
/// ChannelType or Address.
fn missing(row: &Endpoint, exists: bool) -> Option<String> {
    let field = if row.channel_type.is_none() {
        "ChannelType"
    } else if row.address.as_deref().is_none_or(str::is_empty) {
        "Address"
    } else {
        return None;
    };
    (!exists).then(|| {
        format!("{field}: missing required member (a new endpoint needs ChannelType and Address)")
    })
}

/// What a batch of an import stages: the endpoints (when registered, merged into the stored
/// ones, for [`Store::write_endpoints`] to register), the ids of the other stored endpoints
/// of their users (registered imports only), and the rows refused, by index, with why.
struct Merged<'a> {
    staged: Latest<'a>,
    others: Vec<String>,
    refused: Vec<(usize, String)>,
}

/// An import's rows made into what a batch stages ([`Merged`]).
fn merge_rows<'a>(
    tx: &Tx<'_>,
    app: &'a str,
    register: bool,
    rows: &'a [ImportRow],
    now: &str,
    job_id: &str,
) -> Result<Merged<'a>, ApiError> {
    let mut merging = if register {
        Some(Merging::load(tx, app, rows)?)
    } else {
        None
    };
    let mut staged = Latest::default();
    let mut refused = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let exists = merging.as_ref().is_some_and(|m| m.exists(&row.id));
        let written = match (missing(&row.update, exists), &mut merging) {
            (Some(why), _) => Err(why),
            (None, Some(m)) => m
                .upsert(tx, row, now, job_id, &mut staged)
                .map_err(|e| e.message),
            // Not registered: what the row alone makes.
            (None, None) => row
                .fresh()
                .map(|(e, body)| Staged {
                    id: &row.id,
                    user: e.user_id().map(String::from),
                    channel: e.channel_type.clone(),
                    body: Cow::Borrowed(body),
                    new: true,
                })
                .map_err(|e| e.message),
        };
        match written {
            Ok(s) => staged.put(s),
            Err(why) => refused.push((i, why)),
        }
    }
    let others = merging.map(|m| m.others_of(&staged)).unwrap_or_default();
    Ok(Merged {
        staged,
        others,
        refused,
    })
}

/// Rows imported by this process, for [`refresh_statistics`].
static IMPORTED: AtomicU64 = AtomicU64::new(0);

/// PostgreSQL plans from statistics that autovacuum refreshes once a minute at most: a table
/// an import fills from empty looks tiny meanwhile, and a batch's lookups by id and by user
/// then read every endpoint of the application (the `(app_id, seq)` index) instead of
/// probing theirs; an import slows as it grows. So the endpoints' statistics are refreshed
/// each time the rows this process imported double, from 4,096: about eight ANALYZEs over a
/// million rows. Only the columns the store's queries look rows up by are sampled: the
/// endpoints' JSON bodies, most of what ANALYZE would read and sort, are never searched.
/// SQLite's planner takes the unique index without them.
fn refresh_statistics(tx: &Tx<'_>, rows: usize) -> Result<(), ApiError> {
    if tx.dialect() != Dialect::Postgres {
        return Ok(());
    }
    let before = IMPORTED.fetch_add(rows as u64, Ordering::Relaxed);
    let after = before + rows as u64;
    if after >= 4096 && before.leading_zeros() != after.leading_zeros() {
        tx.batch(
            "ANALYZE endpoints (seq, app_id, id, user_id),
                     segment_members (app_id, segment_id, version, endpoint_id, user_id, channel)",
        )?;
    }
    Ok(())
}

/// Where import job `job_id` stages its rows, as the members of its segment: for a new
/// segment (`define`), its first version, the segment taking the job's id, so the members
/// are written once; for a new version of segment `segment_id`, under the job's id at version
/// 0, moved there at the end (the version is known then); without a segment, nowhere.
fn staged_at<'a>(
    job_id: &'a str,
    segment_id: Option<&str>,
    define: bool,
) -> Option<(&'a str, i32)> {
    match (segment_id, define) {
        (Some(_), _) => Some((job_id, 0)),
        (None, true) => Some((job_id, 1)),
        (None, false) => None,
    }
}

/// The target of the import whose response JSON is `job`: `(SegmentId, DefineSegment)`.
fn target_of(job: &Value) -> (Option<&str>, bool) {
    let def = &job["Definition"];
    (
        def["SegmentId"].as_str().filter(|s| !s.is_empty()),
        def["DefineSegment"].as_bool().unwrap_or(false),
    )
}

/// Stages an import's rows as members at `(segment, version)` of `app` (each endpoint id
/// once a job: a later row replaces it). `registered`: the rows' endpoints were merged into
/// the stored ones ([`merge_rows`]), so a row marked new ([`Staged`]) is of an endpoint
/// that did not exist before its batch, which an earlier batch of the job would have
/// registered had it staged it: such rows go out in plain inserts, with no conflict to look
/// for (an index probe fewer per row), and the others in upserts. Should an endpoint staged
/// earlier have been deleted since, the plain inserts are undone and every row upserted.
fn stage_rows(
    tx: &Tx<'_>,
    app: &str,
    (segment, version): (&str, i32),
    rows: &Latest,
    registered: bool,
) -> Result<(), ApiError> {
    let (new, old): (Vec<&Staged>, Vec<&Staged>) =
        rows.rows.iter().partition(|s| registered && s.new);
    if !new.is_empty() {
        tx.batch("SAVEPOINT staging")?;
        match insert_members(tx, app, (segment, version), &new, "") {
            Ok(()) => tx.batch("RELEASE staging")?,
            Err(e) if e.is_unique_violation() => {
                tx.batch("ROLLBACK TO staging; RELEASE staging")?;
                return insert_members(
                    tx,
                    app,
                    (segment, version),
                    &rows.rows.iter().collect::<Vec<_>>(),
                    UPSERT_MEMBER,
                )
                .map_err(ApiError::from);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(insert_members(
        tx,
        app,
        (segment, version),
        &old,
        UPSERT_MEMBER,
    )?)
}

/// Stages the endpoints `ids` of `app` (stored, and not written by the batch) as members at
/// `(segment, version)`, as they stand, unless a row of the job staged them already: the
/// other endpoints of the users a batch of a registered import brings, staged with it
/// rather than looked for over every member at the end.
fn stage_others(
    tx: &Tx<'_>,
    app: &str,
    (segment, version): (&str, i32),
    ids: &[String],
) -> Result<(), ApiError> {
    let channel = channel_of(tx.dialect(), "e.body");
    multirow::any_of(
        tx,
        &[&app, &segment, &version],
        ids,
        |id| {
            format!(
                "INSERT INTO segment_members (app_id, segment_id, version, endpoint_id, user_id, channel, body)
                 SELECT ?1, ?2, ?3, e.id, e.user_id, {channel}, e.body FROM endpoints e
                 WHERE e.app_id = ?1 AND e.id {id}
                 ON CONFLICT DO NOTHING"
            )
        },
        |id, p| p.push(id),
    )?;
    Ok(())
}

/// The `ChannelType` of the endpoint JSON in column `body`, in SQL.
fn channel_of(dialect: Dialect, body: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("json_extract({body}, '$.ChannelType')"),
        Dialect::Postgres => format!("({body}::jsonb ->> 'ChannelType')"),
    }
}

const UPSERT_MEMBER: &str = " ON CONFLICT (app_id, segment_id, version, endpoint_id) DO UPDATE SET user_id = excluded.user_id, channel = excluded.channel, body = excluded.body";

/// Inserts `rows` as members at `(segment, version)` of `app`, in multi-row statements
/// ([`multirow::insert`]) ending in `conflict`.
fn insert_members(
    tx: &Tx<'_>,
    app: &str,
    (segment, version): (&str, i32),
    rows: &[&Staged],
    conflict: &str,
) -> Result<(), DbError> {
    multirow::insert(
        tx,
        (
            "INSERT INTO segment_members (app_id, segment_id, version, endpoint_id, user_id, channel, body)",
            conflict,
        ),
        &[&app, &segment, &version],
        4,
        rows,
        |s, p| p.extend([&s.id as &dyn Param, &s.user, &s.channel, &s.body]),
    )
}

impl Store {
    /// Records a new job; `body` is its response JSON without `Id`, which is set here.
    pub fn create_job(
        &self,
        app: &str,
        kind: JobKind,
        segment_id: Option<&str>,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        let id = new_id();
        body["Id"] = Value::String(id.clone());
        body["ApplicationId"] = Value::String(app.to_string());
        body["CreationDate"] = Value::String(now_iso());
        body["JobStatus"] = Value::String("CREATED".into());
        body["Type"] = Value::String(kind.as_str().into());
        let text = body.to_string();
        self.write(|tx| {
            self.require_app(tx, app)?;
            if let Some(seg) = segment_id {
                if !super::segment_exists(tx, app, seg)? {
                    return Err(segment_not_found(app, seg));
                }
            }
            tx.execute(
                &format!(
                    "INSERT INTO jobs (app_id, id, kind, segment_id, status, body, owner, lease_until)
                     VALUES (?1, ?2, ?3, ?4, 'CREATED', ?5, ?6, {} + ?7)",
                    now_ms(tx.dialect())
                ),
                params![app, id, kind.as_str(), segment_id, text, self.replica, self.lease_ms()],
            )?;
            Ok(())
        })?;
        Ok(body)
    }

    /// Saves a job's response JSON (its status read from it), if this server still holds
    /// the job (else [`lost_lease`]: another replica took it over).
    pub fn save_job(&self, app: &str, body: &Value) -> Result<(), ApiError> {
        let id = body["Id"].as_str().unwrap_or_default();
        let status = body["JobStatus"].as_str().unwrap_or("FAILED");
        let text = body.to_string();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE jobs SET status = ?3, body = ?4 WHERE app_id = ?1 AND id = ?2 AND owner = ?5",
                params![app, id, status, text, self.replica],
            )?;
            if n == 0 {
                return Err(lost_lease(id));
            }
            Ok(())
        })
    }

    pub(super) fn lease_ms(&self) -> i64 {
        self.job_lease.as_millis() as i64
    }

    /// Takes an unfinished job no live server holds: one whose lease has run out (its
    /// server stopped or lost the database), or, with `any_owner` (a SQLite server starting:
    /// the only server of its file), one any earlier server held. On PostgreSQL the row is
    /// taken with `FOR UPDATE SKIP LOCKED`: replicas claiming at once take different jobs.
    pub fn claim_job(&self, any_owner: bool) -> Result<Option<OpenJob>, ApiError> {
        self.write(|tx| {
            let skip = match tx.dialect() {
                Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
                Dialect::Sqlite => "",
            };
            let now = now_ms(tx.dialect());
            let row: Option<(String, String, String, String)> = tx
                .query_row(
                    &format!(
                        "UPDATE jobs SET owner = ?1, lease_until = {now} + ?2
                         WHERE seq = (SELECT seq FROM jobs
                                      WHERE status NOT IN ('COMPLETED', 'FAILED')
                                        AND kind IN ('IMPORT', 'EXPORT', 'SEGMENT_ESTIMATE', 'SEGMENT_SNAPSHOT')
                                        AND (lease_until < {now}
                                             OR (?3 = 1 AND (owner IS NULL OR owner != ?1)))
                                      ORDER BY seq LIMIT 1{skip})
                         RETURNING app_id, id, kind, body"
                    ),
                    params![self.replica, self.lease_ms(), i64::from(any_owner)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            Ok(row.and_then(|(app, id, kind, body)| {
                Some(OpenJob {
                    app,
                    id,
                    kind: JobKind::parse(&kind)?,
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                })
            }))
        })
    }

    /// Extends this server's lease on a job; `false` when it no longer holds it.
    pub fn renew_job(&self, app: &str, id: &str) -> Result<bool, ApiError> {
        self.write(|tx| {
            let n = tx.execute(
                &format!(
                    "UPDATE jobs SET lease_until = {} + ?4 WHERE app_id = ?1 AND id = ?2 AND owner = ?3
                       AND status NOT IN ('COMPLETED', 'FAILED')",
                    now_ms(tx.dialect())
                ),
                params![app, id, self.replica, self.lease_ms()],
            )?;
            Ok(n == 1)
        })
    }

    pub fn get_job(&self, app: &str, kind: JobKind, id: &str) -> Result<Value, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM jobs WHERE app_id = ?1 AND id = ?2 AND kind = ?3",
                    [app, id, kind.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let body = body.ok_or_else(|| job_not_found(kind, id))?;
            serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))
        })
    }

    /// One page of an application's jobs of a kind (of one segment, if given), newest first
    /// as Pinpoint lists them.
    pub fn list_jobs(
        &self,
        app: &str,
        kind: JobKind,
        segment: Option<&str>,
        page: Page,
    ) -> Result<Listing<Value>, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            if let Some(seg) = segment {
                if !super::segment_exists(c, app, seg)? {
                    return Err(segment_not_found(app, seg));
                }
            }
            // Newest first: positions count down, so the token is the negated seq.
            let after = if page.after == 0 {
                i64::MIN + 1
            } else {
                page.after
            };
            let stmt = c.prepare_cached(
                "SELECT seq, body FROM jobs WHERE app_id = ?1 AND kind = ?2
                   AND (?3 IS NULL OR segment_id = ?3) AND -seq > ?4
                 ORDER BY seq DESC LIMIT ?5",
            )?;
            let rows = stmt
                .query_map(
                    params![app, kind.as_str(), segment, after, page.size as i64 + 1],
                    |r| Ok((-r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )?
                .map(|r| {
                    r.map(|(pos, body)| (pos, serde_json::from_str(&body).unwrap_or(Value::Null)))
                });
            paginate(rows, page.size)
        })
    }

    /// Forgets what an import staged, before it runs (again), if this server holds it (and
    /// the job is not complete: a new segment's members are staged where they stay).
    pub fn clear_import(&self, job: &str) -> Result<(), ApiError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM segment_members WHERE app_id = (SELECT app_id FROM jobs WHERE id = ?1)
                   AND segment_id = ?1 AND version IN (0, 1)
                   AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND owner = ?2 AND status != 'COMPLETED')",
                [job, &self.replica],
            )?;
            Ok(())
        })
    }

    /// Stores a batch of an import's rows (registering the endpoints when `register`), and
    /// the job's progress, in one transaction of a few multi-row statements. A row the
    /// endpoint checks refuse is left out and returned with its reason, by its index in
    /// `rows`. Rows of one id merge in order, as separate writes would: the last one's
    /// endpoint is staged.
    pub fn import_batch(
        &self,
        app: &str,
        job: &Value,
        register: bool,
        rows: &[ImportRow],
        now: &str,
    ) -> Result<Vec<(usize, String)>, ApiError> {
        let job_id = job["Id"].as_str().unwrap_or_default().to_string();
        let status = job["JobStatus"].as_str().unwrap_or("PROCESSING");
        let text = job.to_string();
        // Its progress commits with its rows, and the job ends in a durable commit: a batch
        // a machine's crash loses is one the job reads and writes again.
        self.write_app_as(app, super::Commit::Deferred, |tx| {
            // A deleted application's import stops here (and fails), writing nothing more.
            self.require_app(tx, app)?;
            // The job's row first: it stays locked until this transaction ends, so no other
            // server takes the job over meanwhile (a claim skips a locked row), and what is
            // staged beside this transaction (below) is written while this server holds it.
            let n = tx.execute(
                "UPDATE jobs SET status = ?3, body = ?4 WHERE app_id = ?1 AND id = ?2 AND owner = ?5",
                params![app, job_id, status, text, self.replica],
            )?;
            if n == 0 {
                return Err(lost_lease(&job_id));
            }
            let Merged {
                staged,
                others,
                refused,
            } = merge_rows(tx, app, register, rows, now, &job_id)?;
            let registered = register;
            let register = |tx: &Tx<'_>| match registered {
                true => Store::write_endpoints(tx, app, &staged),
                false => Ok(()),
            };
            let (segment_id, define) = target_of(job);
            match staged_at(&job_id, segment_id, define) {
                Some(at) => self.beside(
                    tx,
                    |side| {
                        // Committed before `tx`: lost only with it.
                        super::defer_commit(side)?;
                        stage_rows(side, app, at, &staged, registered)?;
                        stage_others(side, app, at, &others)
                    },
                    register,
                )?,
                None => register(tx)?,
            }
            refresh_statistics(tx, staged.rows.len())?;
            Ok(refused)
        })
    }

    /// The last step of an import: its members (the staged rows, and every registered
    /// endpoint of each imported user), the segment they make, and the job COMPLETED, in one
    /// transaction. `finish(imported)` gives the job's final JSON.
    pub fn finish_import(
        &self,
        app: &str,
        job_id: &str,
        target: ImportTarget<'_>,
        finish: impl FnOnce(&Imported) -> Value,
    ) -> Result<Imported, ApiError> {
        let now = now_iso();
        self.write(|tx| {
            self.require_app(tx, app)?;
            // Where the members go: the segment's next version, a new segment, or nowhere
            // (registered endpoints only: staged under the job's id, then dropped).
            let current: Option<(i32, String)> = match target.segment_id {
                Some(seg) => Some(
                    tx.query_row(
                        &format!(
                            "SELECT s.version, v.body FROM segments s JOIN segment_versions v
                               ON v.app_id = s.app_id AND v.segment_id = s.id AND v.version = s.version
                             WHERE s.app_id = ?1 AND s.id = ?2{}",
                            if tx.dialect() == Dialect::Postgres { " FOR UPDATE OF s" } else { "" }
                        ),
                        [app, seg],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                    .ok_or_else(|| segment_not_found(app, seg))?,
                ),
                None => None,
            };
            let (seg, version) = match (target.segment_id, &current, target.define) {
                (Some(seg), Some((v, _)), _) => (seg.to_string(), v + 1),
                // Where the rows were staged: the new segment takes the job's id.
                (None, _, true) => (job_id.to_string(), 1),
                _ => (job_id.to_string(), 0),
            };
            let counts = match staged_at(job_id, target.segment_id, target.define) {
                Some(staged) => {
                    Self::stage_members(tx, app, staged, (&seg, version), target.registered)?
                }
                None => BTreeMap::new(),
            };
            let size: i64 = counts.values().sum();
            let mut def = target.definition.clone();
            def.size = size;
            def.channel_counts = Some(counts.clone());
            let segment_id = match (current, version) {
                (Some((_, body)), next) => {
                    let old_name = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["Name"].as_str().map(String::from));
                    let name = target.name.map(String::from).or(old_name);
                    tx.execute(
                        "INSERT INTO segment_versions (app_id, segment_id, version, modified, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![app, seg, next, now, super::segments::imported_body(&def, name.as_deref())?],
                    )?;
                    tx.execute(
                        "UPDATE segments SET version = ?3 WHERE app_id = ?1 AND id = ?2",
                        params![app, seg, next],
                    )?;
                    Some(seg)
                }
                (None, 1) => {
                    tx.execute(
                        "INSERT INTO segments (app_id, id, version, created, tags) VALUES (?1, ?2, 1, ?3, '{}')",
                        params![app, seg, now],
                    )?;
                    tx.execute(
                        "INSERT INTO segment_versions (app_id, segment_id, version, modified, body) VALUES (?1, ?2, 1, ?3, ?4)",
                        params![app, seg, now, super::segments::imported_body(&def, target.name)?],
                    )?;
                    Some(seg)
                }
                _ => None,
            };
            let imported = Imported {
                segment_id,
                size,
                channel_counts: counts,
            };
            let body = finish(&imported);
            let n = tx.execute(
                "UPDATE jobs SET status = ?3, body = ?4, segment_id = COALESCE(segment_id, ?5) WHERE app_id = ?1 AND id = ?2 AND owner = ?6",
                params![app, job_id, body["JobStatus"].as_str().unwrap_or("COMPLETED"), body.to_string(), imported.segment_id, self.replica],
            )?;
            if n == 0 {
                // Another replica took the job over: this one's segment is not written.
                return Err(lost_lease(job_id));
            }
            Ok(imported)
        })
    }

    /// Writes an import's members into `seg` at `version`: the rows staged at `staged`
    /// (moved there, unless staged there), and every registered endpoint of each imported
    /// user (staged with each batch already when the rows were `registered`: see
    /// [`stage_others`]). Their counts by channel.
    fn stage_members(
        tx: &Tx<'_>,
        app: &str,
        staged: (&str, i32),
        (seg, version): (&str, i32),
        registered: bool,
    ) -> Result<BTreeMap<String, i64>, ApiError> {
        if staged != (seg, version) {
            tx.execute(
                "DELETE FROM segment_members WHERE app_id = ?1 AND segment_id = ?2 AND version = ?3",
                params![app, seg, version],
            )?;
            tx.execute(
                "INSERT INTO segment_members (app_id, segment_id, version, endpoint_id, user_id, channel, body)
                 SELECT app_id, ?4, ?5, endpoint_id, user_id, channel, body FROM segment_members
                 WHERE app_id = ?1 AND segment_id = ?2 AND version = ?3",
                params![app, staged.0, staged.1, seg, version],
            )?;
            tx.execute(
                "DELETE FROM segment_members WHERE app_id = ?1 AND segment_id = ?2 AND version = ?3",
                params![app, staged.0, staged.1],
            )?;
        }
        // The users' other endpoints, when not staged with the rows (those imported are
        // members already: left out before their bodies would be parsed again for the
        // channel).
        if !registered {
            let channel = channel_of(tx.dialect(), "e.body");
            tx.execute(
                &format!("INSERT INTO segment_members (app_id, segment_id, version, endpoint_id, user_id, channel, body)
                 SELECT ?1, ?2, ?3, e.id, e.user_id, {channel}, e.body FROM endpoints e
                 WHERE e.app_id = ?1 AND e.user_id IN (SELECT user_id FROM segment_members
                     WHERE app_id = ?1 AND segment_id = ?2 AND version = ?3 AND user_id IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM segment_members m
                     WHERE m.app_id = ?1 AND m.segment_id = ?2 AND m.version = ?3 AND m.endpoint_id = e.id)
                 ON CONFLICT DO NOTHING"),
                params![app, seg, version],
            )?;
        }
        let mut counts = BTreeMap::new();
        {
            let stmt = tx.prepare(
                "SELECT COALESCE(channel, ''), COUNT(*) FROM segment_members WHERE app_id = ?1 AND segment_id = ?2 AND version = ?3 GROUP BY 1",
            )?;
            let rows = stmt.query_map(params![app, seg, version], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (c, n) = row?;
                counts.insert(c, n);
            }
        }
        Ok(counts)
    }

    /// Up to `limit` members of an IMPORT segment's version after endpoint id `after` (in id
    /// order, along the members' index): `(endpoint id, EndpointResponse JSON as imported)`.
    pub fn members_after(
        &self,
        app: &str,
        segment: &str,
        version: i32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, ApiError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT endpoint_id, body FROM segment_members WHERE app_id = ?1 AND segment_id = ?2 AND version = ?3 AND endpoint_id > ?4 ORDER BY endpoint_id LIMIT ?5",
                )?
                .query_map(params![app, segment, version, after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    /// The endpoint ids of an IMPORT segment's version.
    pub fn member_ids(
        &self,
        app: &str,
        segment: &str,
        version: i32,
    ) -> Result<Vec<String>, ApiError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT endpoint_id FROM segment_members WHERE app_id = ?1 AND segment_id = ?2 AND version = ?3",
                )?
                .query_map(params![app, segment, version], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A new import job of `app` making a segment: its JSON and id.
    fn import_job(store: &Store, app: &str) -> (Value, String) {
        let job = store
            .create_job(
                app,
                JobKind::Import,
                None,
                json!({"Definition": {"DefineSegment": true, "S3Url": "file:///x", "Format": "JSON"}}),
            )
            .unwrap();
        let id = job["Id"].as_str().unwrap().to_string();
        (job, id)
    }

    fn row(app: &str, job: &str, id: &str, address: &str) -> ImportRow {
        let e: Endpoint =
            serde_json::from_value(json!({"ChannelType": "SMS", "Address": address})).unwrap();
        ImportRow::new(app, job, id.to_string(), e, &now_iso())
    }

    /// An endpoint a batch staged, deleted before a later batch brings it again: it is new to
    /// that batch, yet staged already; the later row replaces the member, once.
    #[test]
    fn a_member_staged_then_deleted_and_imported_again_is_staged_once_with_its_last_value() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db"), "us-east-1", "123456789012").unwrap();
        let app = store.create_app("a", &Default::default()).unwrap().id;
        let (job, id) = import_job(&store, &app);
        let now = now_iso();
        let first = [row(&app, &id, "x", "+1"), row(&app, &id, "y", "+2")];
        assert!(store
            .import_batch(&app, &job, true, &first, &now)
            .unwrap()
            .is_empty());
        store.delete_endpoint(&app, "x").unwrap();
        let second = [row(&app, &id, "x", "+3"), row(&app, &id, "z", "+4")];
        assert!(store
            .import_batch(&app, &job, true, &second, &now)
            .unwrap()
            .is_empty());
        let target = ImportTarget {
            segment_id: None,
            define: true,
            registered: true,
            name: Some("s"),
            definition: ImportDefinition {
                channel_counts: None,
                external_id: String::new(),
                format: "JSON".into(),
                role_arn: "r".into(),
                s3_url: "file:///x".into(),
                size: 0,
            },
        };
        let done = store
            .finish_import(&app, &id, target, |_| job.clone())
            .unwrap();
        assert_eq!(done.size, 3);
        let members = store.members_after(&app, &id, 1, "", 10).unwrap();
        let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["x", "y", "z"]);
        let x: Value = serde_json::from_str(&members[0].1).unwrap();
        assert_eq!(x["Address"], "+3");
    }

    /// A deferred write commits with SQLite's `synchronous = NORMAL` (1), set between
    /// transactions; every other write, the next after a failed deferred one, and the next
    /// after an import's batch (deferred), durable (`FULL`, 2).
    #[test]
    fn a_deferred_commit_relaxes_its_own_transaction_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db"), "us-east-1", "123456789012").unwrap();
        let app = store.create_app("a", &Default::default()).unwrap().id;
        let level = |tx: &Tx<'_>| -> i64 {
            tx.run("PRAGMA synchronous", &[]).unwrap().rows[0]
                .get(0)
                .unwrap()
        };
        let durable = |store: &Store| store.write_app(&app, |tx| Ok(level(tx))).unwrap();
        assert_eq!(durable(&store), 2);
        let seen = store
            .write_app_as(&app, super::super::Commit::Deferred, |tx| Ok(level(tx)))
            .unwrap();
        assert_eq!(seen, 1);
        assert_eq!(durable(&store), 2);
        let failed = store.write_app_as(&app, super::super::Commit::Deferred, |tx| {
            assert_eq!(level(tx), 1);
            Err::<(), _>(ApiError::internal(&"refused"))
        });
        assert!(failed.is_err());
        assert_eq!(durable(&store), 2);
        let (job, id) = import_job(&store, &app);
        let now = now_iso();
        store
            .import_batch(&app, &job, true, &[row(&app, &id, "x", "+1")], &now)
            .unwrap();
        assert_eq!(durable(&store), 2);
    }
}
