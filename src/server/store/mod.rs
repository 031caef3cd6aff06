//! Durable storage for the server: SQLite in WAL mode, one transaction per mutating request.
//!
//! Guarantees: a write is acknowledged only after its transaction commits with
//! `synchronous=FULL`, so a process killed at any moment (SIGKILL) reopens with every
//! acknowledged write and no partial one. Reads run on a small pool of reader connections
//! beside the single writer, which WAL lets proceed concurrently.

mod apps;
mod campaigns;
mod endpoints;
mod jobs;
mod journeys;
mod segments;
mod tags;

pub use endpoints::Body as EndpointBody;
pub use jobs::{ImportTarget, Imported, JobKind, OpenJob, TERMINAL};

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use super::error::ApiError;
use crate::model::Tags;

const READERS: usize = 4;
/// Page size when the caller gives none, and the largest one accepted.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most a list answer holds, in bytes of items: a page ends early (with a token) rather
/// than grow past it. Pinpoint's payload quota is 7 MB per response.
pub const MAX_PAGE_BYTES: usize = 6 * 1024 * 1024;

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
CREATE TABLE IF NOT EXISTS endpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT,
    body TEXT NOT NULL,
    UNIQUE (app_id, id)
);
CREATE INDEX IF NOT EXISTS endpoints_by_user ON endpoints (app_id, user_id);
CREATE INDEX IF NOT EXISTS endpoints_by_app ON endpoints (app_id, seq);
CREATE TABLE IF NOT EXISTS attribute_names (
    app_id TEXT NOT NULL,
    family TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (app_id, family, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segment_members (
    app_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    endpoint_id TEXT NOT NULL,
    channel TEXT,
    body TEXT NOT NULL,
    UNIQUE (app_id, segment_id, version, endpoint_id)
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    segment_id TEXT,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (app_id, id)
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE TABLE IF NOT EXISTS import_rows (
    job_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    user_id TEXT,
    channel TEXT,
    body TEXT NOT NULL,
    UNIQUE (job_id, endpoint_id)
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

impl Store {
    /// One page of an application's campaigns or journeys, in creation order.
    pub(super) fn list_objects(
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

    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
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

    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Whether the database answers.
    pub fn ping(&self) -> Result<(), ApiError> {
        self.read(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
    }

    /// Runs `PRAGMA integrity_check`; `Ok` when the database reports "ok".
    pub fn integrity_check(&self) -> Result<String, ApiError> {
        self.read(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
    }

    pub(super) fn arn(&self, rest: &str) -> String {
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

/// As [`paginate`], also ending a page before its items pass [`MAX_PAGE_BYTES`] (a page
/// always holds at least one item).
fn paginate_bytes<T>(
    rows: Vec<(i64, T)>,
    size: usize,
    bytes_of: impl Fn(&T) -> usize,
) -> Result<Listing<T>, ApiError> {
    let mut items = Vec::with_capacity(size.min(rows.len()));
    let mut last = None;
    let mut more = false;
    let mut bytes = 0;
    for (pos, item) in rows {
        let n = bytes_of(&item);
        if items.len() == size || (!items.is_empty() && bytes + n > MAX_PAGE_BYTES) {
            more = true;
            break;
        }
        bytes += n;
        last = Some(pos);
        items.push(item);
    }
    Ok(Listing {
        items,
        next: if more { last.map(encode_token) } else { None },
    })
}

/// Whether the application holds the segment.
fn segment_exists(c: &Connection, app: &str, id: &str) -> Result<bool, ApiError> {
    let found: Option<i64> = c
        .prepare_cached("SELECT 1 FROM segments WHERE app_id = ?1 AND id = ?2")?
        .query_row([app, id], |r| r.get(0))
        .optional()?;
    Ok(found.is_some())
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
}
