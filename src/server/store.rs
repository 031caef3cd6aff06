//! Durable storage for the server: SQLite in WAL mode, one transaction per mutating request.
//!
//! Guarantees: a write is acknowledged only after its transaction commits with
//! `synchronous=FULL`, so a process killed at any moment (SIGKILL) reopens with every
//! acknowledged write and no partial one. Reads run on a small pool of reader connections
//! beside the single writer, which WAL lets proceed concurrently.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::error::ApiError;
use crate::model::{
    ApplicationResponse, SegmentReference, SegmentResponse, Tags, WriteSegmentRequest,
};
use crate::text::now_iso;

const READERS: usize = 4;
/// Page size when the caller gives none, and the largest one accepted.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS apps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    UNIQUE (app_id, id)
);
CREATE INDEX IF NOT EXISTS segments_by_app ON segments (app_id, seq);
CREATE TABLE IF NOT EXISTS segment_versions (
    app_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    modified TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (app_id, segment_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaigns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    segment_id TEXT NOT NULL,
    status_override TEXT,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    UNIQUE (app_id, id)
);
CREATE INDEX IF NOT EXISTS campaigns_by_segment ON campaigns (app_id, segment_id);
CREATE TABLE IF NOT EXISTS journeys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    UNIQUE (app_id, id)
);
CREATE TABLE IF NOT EXISTS journey_segments (
    app_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    PRIMARY KEY (app_id, journey_id, segment_id)
) WITHOUT ROWID;
";

/// A page request: how many items, and after which position.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub size: usize,
    pub after: i64,
}

/// One page of results; `next` is the opaque token for the following page, if any.
#[derive(Debug)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Turns a position into an opaque token and back. Tokens are not meant to be parsed by
/// clients; the version prefix lets the format change without misreading old tokens.
pub fn encode_token(pos: i64) -> String {
    hex::encode(format!("v1:{pos}"))
}

pub fn decode_token(token: &str) -> Option<i64> {
    let raw = String::from_utf8(hex::decode(token).ok()?).ok()?;
    raw.strip_prefix("v1:")?.parse().ok()
}

/// The resource an ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    App(String),
    Segment(String, String),
    Campaign(String, String),
    Journey(String, String),
}

pub struct Store {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    pub region: String,
    pub account_id: String,
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn tags_to_json(tags: &Tags) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

fn tags_from_json(text: &str) -> Tags {
    serde_json::from_str(text).unwrap_or_default()
}

fn non_empty(tags: Tags) -> Option<Tags> {
    (!tags.is_empty()).then_some(tags)
}

fn open(path: &Path, writer: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if writer {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
    }
    Ok(conn)
}

type Tx<'a> = rusqlite::Transaction<'a>;

/// One stored version of a segment, as read from the tables.
struct SegmentRow {
    id: String,
    version: i32,
    created: String,
    modified: String,
    body: String,
    tags: String,
}

struct CampaignRow {
    version: i64,
    status_override: Option<String>,
    created: String,
    modified: String,
    body: String,
    tags: String,
}

/// A checked journey body: its state, the segments it refers to, what to store, its tags.
struct JourneyInput {
    state: String,
    refs: BTreeSet<String>,
    body: Map<String, Value>,
    tags: Tags,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, region: &str, account_id: &str) -> rusqlite::Result<Self> {
        let writer = open(path, true)?;
        let readers = (0..READERS)
            .map(|_| open(path, false).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            region: region.to_string(),
            account_id: account_id.to_string(),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(conn) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `PRAGMA integrity_check`; `Ok` when the database reports "ok".
    pub fn integrity_check(&self) -> Result<String, ApiError> {
        self.read(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
    }

    fn arn(&self, rest: &str) -> String {
        format!(
            "arn:aws:mobiletargeting:{}:{}:apps/{rest}",
            self.region, self.account_id
        )
    }

    /// Which resource an ARN names, if it is one of ours.
    pub fn parse_arn(&self, arn: &str) -> Option<Resource> {
        let prefix = format!(
            "arn:aws:mobiletargeting:{}:{}:apps/",
            self.region, self.account_id
        );
        let rest = arn.strip_prefix(&prefix)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        match parts.as_slice() {
            [app] if ok(app) => Some(Resource::App(app.to_string())),
            [app, kind, id] if ok(app) && ok(id) => {
                let (a, i) = (app.to_string(), id.to_string());
                match *kind {
                    "segments" => Some(Resource::Segment(a, i)),
                    "campaigns" => Some(Resource::Campaign(a, i)),
                    "journeys" => Some(Resource::Journey(a, i)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    // ---- applications ----

    fn app_row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<ApplicationResponse> {
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
            let mut stmt =
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
            for table in [
                "segments",
                "segment_versions",
                "campaigns",
                "journeys",
                "journey_segments",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE app_id = ?1"), [id])?;
            }
            let n = tx.execute("DELETE FROM apps WHERE id = ?1", [id])?;
            if n == 0 {
                return Err(app_not_found(id));
            }
            Ok(())
        })?;
        Ok(app)
    }

    fn require_app(&self, c: &Connection, app: &str) -> Result<(), ApiError> {
        let found: Option<i64> = c
            .query_row("SELECT 1 FROM apps WHERE id = ?1", [app], |r| r.get(0))
            .optional()?;
        found.map(|_| ()).ok_or_else(|| app_not_found(app))
    }

    // ---- segments ----

    fn segment_from(&self, app: &str, row: SegmentRow) -> Result<SegmentResponse, ApiError> {
        let def: WriteSegmentRequest =
            serde_json::from_str(&row.body).map_err(|e| ApiError::internal(&e))?;
        Ok(SegmentResponse {
            application_id: app.to_string(),
            arn: self.arn(&format!("{app}/segments/{}", row.id)),
            creation_date: row.created,
            dimensions: def.dimensions,
            id: row.id,
            last_modified_date: Some(row.modified),
            name: def.name,
            segment_groups: def.segment_groups,
            segment_type: "DIMENSIONAL".into(),
            tags: non_empty(tags_from_json(&row.tags)),
            version: row.version,
        })
    }

    /// The segment's current version, or the given one.
    pub fn get_segment(
        &self,
        app: &str,
        id: &str,
        version: Option<i32>,
    ) -> Result<SegmentResponse, ApiError> {
        self.read(|c| self.get_segment_in(c, app, id, version))
    }

    fn get_segment_in(
        &self,
        c: &Connection,
        app: &str,
        id: &str,
        version: Option<i32>,
    ) -> Result<SegmentResponse, ApiError> {
        let row = c
            .prepare_cached(
                "SELECT s.created, s.tags, s.version, v.version, v.modified, v.body
                 FROM segments s JOIN segment_versions v
                   ON v.app_id = s.app_id AND v.segment_id = s.id AND v.version = COALESCE(?3, s.version)
                 WHERE s.app_id = ?1 AND s.id = ?2",
            )?
            .query_row(params![app, id, version], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i32>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .optional()?;
        match row {
            Some((created, tags, version, modified, body)) => self.segment_from(
                app,
                SegmentRow {
                    id: id.to_string(),
                    version,
                    created,
                    modified,
                    body,
                    tags,
                },
            ),
            None => {
                self.require_app(c, app)?;
                let exists: Option<i32> = c
                    .query_row(
                        "SELECT version FROM segments WHERE app_id = ?1 AND id = ?2",
                        [app, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                Err(match (exists, version) {
                    (Some(latest), Some(v)) => ApiError::not_found(format!(
                        "Segment {id} has no version {v}; its versions are 1 to {latest}"
                    )),
                    _ => segment_not_found(app, id),
                })
            }
        }
    }

    pub fn list_segments(
        &self,
        app: &str,
        page: Page,
    ) -> Result<Listing<SegmentResponse>, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            let mut stmt = c.prepare_cached(
                "SELECT s.seq, s.id, s.created, s.tags, s.version, v.modified, v.body
                 FROM segments s JOIN segment_versions v
                   ON v.app_id = s.app_id AND v.segment_id = s.id AND v.version = s.version
                 WHERE s.app_id = ?1 AND s.seq > ?2 ORDER BY s.seq LIMIT ?3",
            )?;
            let rows: Vec<(i64, String, String, String, i32, String, String)> = stmt
                .query_map(params![app, page.after, page.size as i64 + 1], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let mut items = Vec::with_capacity(rows.len());
            for (seq, id, created, tags, version, modified, body) in rows {
                let row = SegmentRow {
                    id,
                    version,
                    created,
                    modified,
                    body,
                    tags,
                };
                items.push((seq, self.segment_from(app, row)?));
            }
            paginate(items.into_iter().map(Ok::<_, rusqlite::Error>), page.size)
        })
    }

    pub fn list_segment_versions(
        &self,
        app: &str,
        id: &str,
        page: Page,
    ) -> Result<Listing<SegmentResponse>, ApiError> {
        self.read(|c| {
            let head = self.get_segment_in(c, app, id, None)?;
            let mut stmt = c.prepare_cached(
                "SELECT version, modified, body FROM segment_versions
                 WHERE app_id = ?1 AND segment_id = ?2 AND version > ?3 ORDER BY version LIMIT ?4",
            )?;
            let rows: Vec<(i32, String, String)> = stmt
                .query_map(params![app, id, page.after, page.size as i64 + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            let tags = head.tags.as_ref().map(tags_to_json).unwrap_or_default();
            let mut items = Vec::with_capacity(rows.len());
            for (version, modified, body) in rows {
                let row = SegmentRow {
                    id: id.to_string(),
                    version,
                    created: head.creation_date.clone(),
                    modified,
                    body,
                    tags: tags.clone(),
                };
                items.push((i64::from(version), self.segment_from(app, row)?));
            }
            paginate(items.into_iter().map(Ok::<_, rusqlite::Error>), page.size)
        })
    }

    /// Checks that every base segment exists in the app (at the version named, if any).
    fn check_sources(
        &self,
        tx: &Tx<'_>,
        app: &str,
        this: Option<&str>,
        req: &WriteSegmentRequest,
    ) -> Result<(), ApiError> {
        let Some(groups) = &req.segment_groups else {
            return Ok(());
        };
        for (gi, g) in groups.groups.iter().flatten().enumerate() {
            for (si, SegmentReference { id, version, .. }) in
                g.source_segments.iter().flatten().enumerate()
            {
                let Some(id) = id else { continue };
                let path = format!("SegmentGroups.Groups[{gi}].SourceSegments[{si}].Id");
                if Some(id.as_str()) == this {
                    return Err(ApiError::bad_request(format!(
                        "{path}: a segment cannot be its own base segment"
                    )));
                }
                let latest: Option<i32> = tx
                    .query_row(
                        "SELECT version FROM segments WHERE app_id = ?1 AND id = ?2",
                        [app, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                match (latest, version) {
                    (None, _) => {
                        return Err(ApiError::bad_request(format!(
                            "{path}: segment {id} does not exist in application {app}"
                        )))
                    }
                    (Some(latest), Some(v)) if *v > latest => {
                        return Err(ApiError::bad_request(format!(
                            "{path}: segment {id} has no version {v}; its latest is {latest}"
                        )))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Stores a new segment at version 1 with the request's tags.
    pub fn create_segment(
        &self,
        app: &str,
        req: &WriteSegmentRequest,
    ) -> Result<SegmentResponse, ApiError> {
        let id = new_id();
        let now = now_iso();
        let tags = req.tags.clone().unwrap_or_default();
        let body = definition_json(req)?;
        self.write(|tx| {
            self.require_app(tx, app)?;
            self.check_sources(tx, app, None, req)?;
            tx.execute(
                "INSERT INTO segments (app_id, id, version, created, tags) VALUES (?1, ?2, 1, ?3, ?4)",
                params![app, id, now, tags_to_json(&tags)],
            )?;
            tx.execute(
                "INSERT INTO segment_versions (app_id, segment_id, version, modified, body) VALUES (?1, ?2, 1, ?3, ?4)",
                params![app, id, now, body],
            )?;
            Ok(())
        })?;
        let row = SegmentRow {
            id,
            version: 1,
            created: now.clone(),
            modified: now,
            body,
            tags: tags_to_json(&tags),
        };
        self.segment_from(app, row)
    }

    /// Replaces the definition as a new version; tags in the request are ignored, as Pinpoint
    /// has ignored them on update since 2023-05-22.
    pub fn update_segment(
        &self,
        app: &str,
        id: &str,
        req: &WriteSegmentRequest,
    ) -> Result<SegmentResponse, ApiError> {
        let now = now_iso();
        let body = definition_json(req)?;
        self.write(|tx| {
            let current = self.get_segment_in(tx, app, id, None)?;
            self.check_sources(tx, app, Some(id), req)?;
            let next = current.version + 1;
            tx.execute(
                "INSERT INTO segment_versions (app_id, segment_id, version, modified, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![app, id, next, now, body],
            )?;
            tx.execute(
                "UPDATE segments SET version = ?3 WHERE app_id = ?1 AND id = ?2",
                params![app, id, next],
            )?;
            let tags = current.tags.as_ref().map(tags_to_json).unwrap_or_default();
            let row = SegmentRow {
                id: id.to_string(),
                version: next,
                created: current.creation_date,
                modified: now.clone(),
                body: body.clone(),
                tags,
            };
            self.segment_from(app, row)
        })
    }

    /// Deletes a segment and all its versions; campaigns that used it become DELETED.
    pub fn delete_segment(&self, app: &str, id: &str) -> Result<SegmentResponse, ApiError> {
        self.write(|tx| {
            let current = self.get_segment_in(tx, app, id, None)?;
            tx.execute("DELETE FROM segments WHERE app_id = ?1 AND id = ?2", [app, id])?;
            tx.execute("DELETE FROM segment_versions WHERE app_id = ?1 AND segment_id = ?2", [app, id])?;
            tx.execute(
                "UPDATE campaigns SET status_override = 'DELETED' WHERE app_id = ?1 AND segment_id = ?2",
                [app, id],
            )?;
            Ok(current)
        })
    }

    // ---- campaigns ----

    fn campaign_json(&self, app: &str, id: &str, row: CampaignRow) -> Result<Value, ApiError> {
        let CampaignRow {
            version,
            status_override,
            created,
            modified,
            body,
            tags,
        } = row;
        let mut obj: Map<String, Value> =
            serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
        let status = status_override.unwrap_or_else(|| campaign_status(&obj));
        obj.insert("Id".into(), id.into());
        obj.insert("ApplicationId".into(), app.into());
        obj.insert(
            "Arn".into(),
            self.arn(&format!("{app}/campaigns/{id}")).into(),
        );
        obj.insert("CreationDate".into(), created.into());
        obj.insert("LastModifiedDate".into(), modified.into());
        obj.insert("Version".into(), version.into());
        obj.insert(
            "State".into(),
            serde_json::json!({ "CampaignStatus": status }),
        );
        obj.insert(
            "DefaultState".into(),
            serde_json::json!({ "CampaignStatus": status }),
        );
        let tags = tags_from_json(&tags);
        if !tags.is_empty() {
            obj.insert(
                "tags".into(),
                serde_json::to_value(tags).unwrap_or_default(),
            );
        }
        Ok(Value::Object(obj))
    }

    fn campaign_in(&self, c: &Connection, app: &str, id: &str) -> Result<Value, ApiError> {
        let row = c
            .query_row(
                "SELECT version, status_override, created, modified, body, tags FROM campaigns WHERE app_id = ?1 AND id = ?2",
                [app, id],
                |r| {
                    Ok(CampaignRow {
                        version: r.get(0)?,
                        status_override: r.get(1)?,
                        created: r.get(2)?,
                        modified: r.get(3)?,
                        body: r.get(4)?,
                        tags: r.get(5)?,
                    })
                },
            )
            .optional()?;
        match row {
            Some(row) => self.campaign_json(app, id, row),
            None => {
                self.require_app(c, app)?;
                Err(ApiError::not_found(format!(
                    "Campaign {id} not found in application {app}"
                )))
            }
        }
    }

    /// Checks the campaign body and returns (segment id, the body to store, tags).
    fn campaign_input(
        &self,
        tx: &Tx<'_>,
        app: &str,
        mut body: Map<String, Value>,
    ) -> Result<(String, Map<String, Value>, Tags), ApiError> {
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
        let latest: Option<i32> = tx
            .query_row(
                "SELECT version FROM segments WHERE app_id = ?1 AND id = ?2",
                [app, &segment_id],
                |r| r.get(0),
            )
            .optional()?;
        let latest = latest.ok_or_else(|| {
            ApiError::bad_request(format!(
                "SegmentId: segment {segment_id} does not exist in application {app}"
            ))
        })?;
        match body.get("SegmentVersion") {
            None | Some(Value::Null) => {
                body.insert("SegmentVersion".into(), latest.into());
            }
            Some(Value::Number(n))
                if n.as_i64().is_some_and(|v| v >= 1 && v <= i64::from(latest)) => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "SegmentVersion: {v} is not a version of segment {segment_id} (1 to {latest})"
                )))
            }
        }
        if let Some(p) = body.get("IsPaused") {
            if !p.is_boolean() {
                return Err(ApiError::bad_request("IsPaused: expected true or false"));
            }
        }
        Ok((segment_id, body, tags))
    }

    pub fn create_campaign(&self, app: &str, body: Map<String, Value>) -> Result<Value, ApiError> {
        let id = new_id();
        let now = now_iso();
        self.write(|tx| {
            self.require_app(tx, app)?;
            let (segment_id, body, tags) = self.campaign_input(tx, app, body)?;
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

    pub fn update_campaign(
        &self,
        app: &str,
        id: &str,
        body: Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let now = now_iso();
        self.write(|tx| {
            self.campaign_in(tx, app, id)?;
            let (segment_id, body, _ignored_tags) = self.campaign_input(tx, app, body)?;
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
            tx.execute(
                "DELETE FROM campaigns WHERE app_id = ?1 AND id = ?2",
                [app, id],
            )?;
            Ok(c)
        })
    }

    // ---- journeys ----

    fn journey_in(&self, c: &Connection, app: &str, id: &str) -> Result<Value, ApiError> {
        let row = c
            .query_row(
                "SELECT state, created, modified, body, tags FROM journeys WHERE app_id = ?1 AND id = ?2",
                [app, id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?)),
            )
            .optional()?;
        let Some((state, created, modified, body, tags)) = row else {
            self.require_app(c, app)?;
            return Err(ApiError::not_found(format!(
                "Journey {id} not found in application {app}"
            )));
        };
        let mut obj: Map<String, Value> =
            serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
        obj.insert("Id".into(), id.into());
        obj.insert("ApplicationId".into(), app.into());
        obj.insert("CreationDate".into(), created.into());
        obj.insert("LastModifiedDate".into(), modified.into());
        obj.insert("State".into(), state.into());
        let tags = tags_from_json(&tags);
        if !tags.is_empty() {
            obj.insert(
                "tags".into(),
                serde_json::to_value(tags).unwrap_or_default(),
            );
        }
        Ok(Value::Object(obj))
    }

    /// Checks a journey body; returns (state, referenced segment ids, body, tags).
    fn journey_input(
        &self,
        tx: &Tx<'_>,
        app: &str,
        mut body: Map<String, Value>,
    ) -> Result<JourneyInput, ApiError> {
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
        for seg in &refs {
            let found: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM segments WHERE app_id = ?1 AND id = ?2",
                    [app, seg],
                    |r| r.get(0),
                )
                .optional()?;
            if found.is_none() {
                return Err(ApiError::bad_request(format!(
                    "the journey refers to segment {seg}, which does not exist in application {app}"
                )));
            }
        }
        Ok(JourneyInput {
            state,
            refs,
            body,
            tags,
        })
    }

    fn index_journey(
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

    pub fn create_journey(&self, app: &str, body: Map<String, Value>) -> Result<Value, ApiError> {
        let id = new_id();
        let now = now_iso();
        self.write(|tx| {
            self.require_app(tx, app)?;
            let JourneyInput { state, refs, body, tags } = self.journey_input(tx, app, body)?;
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

    /// One page of an application's campaigns or journeys, in creation order.
    fn list_objects(
        &self,
        table: &'static str,
        app: &str,
        page: Page,
        render: impl Fn(&Connection, &str) -> Result<Value, ApiError>,
    ) -> Result<Listing<Value>, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT seq, id FROM {table} WHERE app_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let ids: Vec<(i64, String)> = stmt
                .query_map(params![app, page.after, page.size as i64 + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            let mut items = Vec::with_capacity(ids.len());
            for (seq, id) in ids {
                items.push((seq, render(c, &id)?));
            }
            paginate(items.into_iter().map(Ok::<_, rusqlite::Error>), page.size)
        })
    }

    pub fn update_journey(
        &self,
        app: &str,
        id: &str,
        body: Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let now = now_iso();
        self.write(|tx| {
            let current = self.journey_in(tx, app, id)?;
            if current["State"] == "ACTIVE" || current["State"] == "CANCELLED" || current["State"] == "COMPLETED" {
                return Err(ApiError::new(
                    super::error::ErrorKind::Conflict,
                    format!("Journey {id} is {} and cannot be updated", current["State"].as_str().unwrap_or("")),
                ));
            }
            let JourneyInput { state, refs, body, .. } = self.journey_input(tx, app, body)?;
            tx.execute(
                "UPDATE journeys SET state = ?3, modified = ?4, body = ?5 WHERE app_id = ?1 AND id = ?2",
                params![app, id, state, now, Value::Object(body).to_string()],
            )?;
            Self::index_journey(tx, app, id, &refs)?;
            self.journey_in(tx, app, id)
        })
    }

    /// Moves a journey to a new state. Beyond the ACTIVE, PAUSED and CANCELLED that Pinpoint
    /// accepts here, CLOSED and COMPLETED are accepted too: Pinpoint reaches them on its own
    /// over time, which a self-hosted server cannot, so tests and operators set them directly.
    pub fn update_journey_state(
        &self,
        app: &str,
        id: &str,
        state: &str,
    ) -> Result<Value, ApiError> {
        const STATES: &[&str] = &["ACTIVE", "PAUSED", "CANCELLED", "CLOSED", "COMPLETED"];
        if !STATES.contains(&state) {
            return Err(ApiError::bad_request(format!(
                "State: {}",
                crate::model::unknown_value_message(state, STATES)
            )));
        }
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
            tx.execute(
                "DELETE FROM journeys WHERE app_id = ?1 AND id = ?2",
                [app, id],
            )?;
            tx.execute(
                "DELETE FROM journey_segments WHERE app_id = ?1 AND journey_id = ?2",
                [app, id],
            )?;
            Ok(j)
        })
    }

    // ---- tags ----

    fn tag_target(resource: &Resource) -> (&'static str, &str, Option<&str>) {
        match resource {
            Resource::App(a) => ("apps", a, None),
            Resource::Segment(a, i) => ("segments", a, Some(i)),
            Resource::Campaign(a, i) => ("campaigns", a, Some(i)),
            Resource::Journey(a, i) => ("journeys", a, Some(i)),
        }
    }

    fn tags_in(c: &Connection, resource: &Resource) -> Result<Tags, ApiError> {
        let (table, app, id) = Self::tag_target(resource);
        let text: Option<String> = match id {
            None => c
                .query_row("SELECT tags FROM apps WHERE id = ?1", [app], |r| r.get(0))
                .optional()?,
            Some(id) => c
                .query_row(
                    &format!("SELECT tags FROM {table} WHERE app_id = ?1 AND id = ?2"),
                    [app, id],
                    |r| r.get(0),
                )
                .optional()?,
        };
        text.map(|t| tags_from_json(&t))
            .ok_or_else(|| ApiError::not_found("The resource named by the ARN does not exist"))
    }

    fn set_tags(tx: &Tx<'_>, resource: &Resource, tags: &Tags) -> Result<(), ApiError> {
        let (table, app, id) = Self::tag_target(resource);
        match id {
            None => tx.execute(
                "UPDATE apps SET tags = ?2 WHERE id = ?1",
                params![app, tags_to_json(tags)],
            )?,
            Some(id) => tx.execute(
                &format!("UPDATE {table} SET tags = ?3 WHERE app_id = ?1 AND id = ?2"),
                params![app, id, tags_to_json(tags)],
            )?,
        };
        Ok(())
    }

    pub fn list_tags(&self, resource: &Resource) -> Result<Tags, ApiError> {
        self.read(|c| Self::tags_in(c, resource))
    }

    pub fn tag(&self, resource: &Resource, add: &Tags) -> Result<(), ApiError> {
        self.write(|tx| {
            let mut tags = Self::tags_in(tx, resource)?;
            tags.extend(add.clone());
            let problems = crate::validate::tags_rules("tags", &tags);
            if let Some(p) = problems.first() {
                return Err(ApiError::bad_request(p.to_string()));
            }
            Self::set_tags(tx, resource, &tags)
        })
    }

    pub fn untag(&self, resource: &Resource, keys: &[String]) -> Result<(), ApiError> {
        self.write(|tx| {
            let mut tags = Self::tags_in(tx, resource)?;
            for k in keys {
                tags.remove(k);
            }
            Self::set_tags(tx, resource, &tags)
        })
    }
}

fn definition_json(req: &WriteSegmentRequest) -> Result<String, ApiError> {
    let def = WriteSegmentRequest {
        tags: None,
        ..req.clone()
    };
    serde_json::to_string(&def).map_err(|e| ApiError::internal(&e))
}

fn take_tags(body: &mut Map<String, Value>, key: &str) -> Result<Tags, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(Tags::new()),
        Some(v) => {
            let tags: Tags = serde_json::from_value(v)
                .map_err(|_| ApiError::bad_request("tags: expected a map of strings to strings"))?;
            if let Some(p) = crate::validate::tags_rules("tags", &tags).first() {
                return Err(ApiError::bad_request(p.to_string()));
            }
            Ok(tags)
        }
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
        .and_then(crate::validate::parse_instant)
        .is_some_and(|end| end < OffsetDateTime::now_utc());
    if ended { "COMPLETED" } else { "SCHEDULED" }.into()
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

fn paginate<T>(
    rows: impl Iterator<Item = rusqlite::Result<(i64, T)>>,
    size: usize,
) -> Result<Listing<T>, ApiError> {
    let mut items = Vec::with_capacity(size.min(1000));
    let mut last = None;
    let mut more = false;
    for row in rows {
        let (pos, item) = row?;
        if items.len() == size {
            more = true;
            break;
        }
        last = Some(pos);
        items.push(item);
    }
    Ok(Listing {
        items,
        next: if more { last.map(encode_token) } else { None },
    })
}

fn app_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Application {id} not found"))
}

fn segment_not_found(app: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("Segment {id} not found in application {app}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        assert_eq!(decode_token(&encode_token(42)), Some(42));
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token(&hex::encode("v2:1")), None);
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
}
