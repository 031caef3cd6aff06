//! Durable storage for the server, one transaction per mutating request, on SQLite or
//! PostgreSQL: the same queries ([`sql`]) and the same schema ([`migrations`]) on both.
//!
//! SQLite (WAL mode, `synchronous=FULL`): one writer at a time beside a few readers; one
//! server per file. PostgreSQL (READ COMMITTED): a pool of connections, any number of
//! replicas on one database. Writes that read before they write lock what they read
//! (`FOR UPDATE`, or a version bumped by `UPDATE … RETURNING`), so concurrent writers
//! through different replicas lose nothing and versions stay gapless.
//!
//! Guarantees, on either: a write is acknowledged only after its transaction commits, so a
//! server killed at any moment (SIGKILL) leaves every acknowledged write and no partial one.

mod answers;
mod apps;
mod campaigns;
mod checkpoint;
pub mod connect;
pub mod copy;
mod documents;
mod endpoints;
mod jobs;
mod journeys;
pub mod migrations;
mod multirow;
pub mod pg;
mod profiles;
pub use profiles::jobs_app;
mod segments;
pub mod sql;
mod tags;

pub use endpoints::{Body as EndpointBody, ImportRow};
pub use jobs::{lost_lease, ImportTarget, Imported, JobKind, OpenJob, TERMINAL};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rusqlite::TransactionBehavior;
use serde_json::Value;

use sql::{params, Connection, DbError, Dialect, OptionalExtension, Tx};

use super::error::{ApiError, ErrorKind};
use crate::model::Tags;

const READERS: usize = 4;
/// Page size when the caller gives none, and the largest one accepted.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most a list answer holds, in bytes of items: a page ends early (with a token) rather
/// than grow past it. Pinpoint's payload quota is 7 MB per response.
pub const MAX_PAGE_BYTES: usize = 6 * 1024 * 1024;

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
    /// A Customer Profiles domain, and a segment definition in one.
    Domain(String),
    SegmentDefinition(String, String),
}

impl Resource {
    /// Whether the resource is Customer Profiles' (whose tag rules differ from Pinpoint's).
    pub fn is_profiles(&self) -> bool {
        matches!(self, Self::Domain(_) | Self::SegmentDefinition(..))
    }
}

/// Where the server keeps its data: a SQLite file (`PATH`, `sqlite:PATH`) or a PostgreSQL
/// database (`postgres://…` or `postgresql://…`, the scheme in any case, or libpq's
/// `key=value …` keywords). See [`DataSource::parse`].
///
/// Its `Debug` and `Display` never show a password: `postgres://host:port/db`.
#[derive(Clone, PartialEq, Eq)]
pub enum DataSource {
    Sqlite(PathBuf),
    /// A DSN as libpq reads it (a URL with its scheme in lowercase, or keywords), `PG*`
    /// variables aside: see [`pg::dsn`].
    Postgres(String),
}

/// The forms `--data` and `--to` take, for errors.
pub const DATA_FORMS: &str = "a SQLite file (PATH, ./PATH or sqlite:PATH) or a PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB, or libpq's keywords such as host=HOST dbname=DB user=USER password=…)";

impl DataSource {
    /// Reads `--data`'s text as libpq and SQLite would, refusing what could be either.
    ///
    /// - `sqlite:PATH` (or `sqlite://PATH`) is a SQLite file; so is a value starting with
    ///   `/`, `./` or `../`.
    /// - `postgres://` or `postgresql://`, in any case, is a PostgreSQL URL; any other
    ///   `scheme:` is refused (it is not a file name anyone means).
    /// - A value holding `=` is libpq's keyword form (`host=… dbname=…`), as libpq reads
    ///   it: it must parse as one, else it is refused (a file of that name is `./NAME`).
    /// - Anything else is a SQLite file.
    ///
    /// Errors: what was wrong and the forms accepted, never the value (it may hold a
    /// password).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err(format!("no database given: expected {DATA_FORMS}"));
        }
        if let Some(scheme) = scheme(text) {
            if scheme.eq_ignore_ascii_case("sqlite") {
                let path = &text[scheme.len() + 1..];
                let path = path.strip_prefix("//").unwrap_or(path);
                if path.is_empty() {
                    return Err("sqlite: names no file: write sqlite:PATH".into());
                }
                return Ok(DataSource::Sqlite(PathBuf::from(path)));
            }
            let postgres = scheme.eq_ignore_ascii_case("postgres")
                || scheme.eq_ignore_ascii_case("postgresql");
            let rest = &text[scheme.len() + 1..];
            if !postgres || !rest.starts_with("//") {
                // The scheme is shown only when it is one (a `user:password@…` is not).
                let what = if rest.starts_with("//") {
                    format!("{scheme}://…")
                } else {
                    "NAME:… (other than sqlite:PATH)".to_string()
                };
                return Err(format!(
                    "{what} is not a database segmentctl can use: expected {DATA_FORMS}"
                ));
            }
            // libpq (and tokio-postgres) read the scheme in lowercase only.
            let dsn = format!("{}:{rest}", scheme.to_ascii_lowercase());
            check_postgres(&dsn).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
            return Ok(DataSource::Postgres(dsn));
        }
        let explicit_path =
            text.starts_with('/') || text.starts_with("./") || text.starts_with("../");
        if !explicit_path && text.contains('=') {
            check_postgres(text).map_err(|e| {
                format!(
                    "a value holding = is read as libpq's key=value keywords, and this is not a valid one ({e}); for a SQLite file of that name, write ./NAME or sqlite:NAME"
                )
            })?;
            return Ok(DataSource::Postgres(text.to_string()));
        }
        Ok(DataSource::Sqlite(PathBuf::from(text)))
    }

    /// The data's place for messages: the file, or `postgres://host:port/db` (no password).
    pub fn describe(&self) -> String {
        match self {
            DataSource::Sqlite(p) => p.display().to_string(),
            DataSource::Postgres(dsn) => match pg::dsn::target(dsn) {
                Ok(c) => format!("postgres://{}", pg::dsn::describe(&c)),
                Err(_) => "postgres://(unparsable connection string)".into(),
            },
        }
    }
}

/// The `scheme` of a value that starts `scheme:` (RFC 3986's letters, two or more, so a
/// drive letter is not one).
fn scheme(text: &str) -> Option<&str> {
    let (head, _) = text.split_once(':')?;
    let mut chars = head.chars();
    let first = chars.next()?;
    (head.len() >= 2
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(head)
}

/// Whether libpq would read `dsn` (TLS keywords included); the error names a keyword, never
/// a value.
fn check_postgres(dsn: &str) -> Result<(), String> {
    pg::dsn::check(dsn)
}

impl std::str::FromStr for DataSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            DataSource::Postgres(_) => f.debug_tuple("Postgres").field(&self.describe()).finish(),
        }
    }
}

enum Backend {
    Sqlite {
        /// Stopped first when the store is dropped, before the connections close.
        checkpointer: checkpoint::Checkpointer,
        // Boxed: a connection with hooks (the migration source's time limit) is large.
        writer: Box<Mutex<rusqlite::Connection>>,
        readers: Vec<Mutex<rusqlite::Connection>>,
        next_reader: AtomicUsize,
        answers: answers::Answers,
    },
    Postgres(Box<pg::PgPool>),
}

pub struct Store {
    backend: Backend,
    pub region: String,
    pub account_id: String,
    /// This server's name as the owner of the jobs it runs (a replica among others).
    pub replica: String,
    /// How long a job stays this server's without a renewal (see [`Store::claim_job`]).
    pub job_lease: std::time::Duration,
    /// Endpoint writes of one application queue here, in this process, before they take a
    /// connection: one busy application's writers wait without holding the pool, so the
    /// other applications' requests still find connections (striped by application).
    gates: [Mutex<()>; GATES],
    /// Updates of one segment at once, queued in this process and written together.
    updates: segments::UpdateQueues,
    /// GetSegment's answers on PostgreSQL, each given again while the segment's row says it
    /// stands ([`answers::Checked`]).
    checked: answers::Checked,
    /// Whether the schema is migrated: until then every read and write answers 503 (a
    /// server started before its database answered; see [`Store::migrate`]).
    ready: std::sync::atomic::AtomicBool,
}

/// Stripes of [`Store::gates`].
const GATES: usize = 32;

/// How long a job is held without a renewal, unless told.
pub const DEFAULT_JOB_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Connections to PostgreSQL one server opens at most, unless told.
pub const DEFAULT_POOL: usize = 16;

/// Runs `f` on a thread of its own: the PostgreSQL client blocks on a runtime of its own,
/// which cannot be entered from an async task (start-up calls come from one).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
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

/// How a write transaction's commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// On disk before the commit returns (SQLite's `synchronous = FULL` in WAL mode,
    /// PostgreSQL's `synchronous_commit = on`): what a request's answer acknowledges.
    Durable,
    /// Written before the commit returns, flushed with the next durable commit or
    /// checkpoint (SQLite's `synchronous = NORMAL`, PostgreSQL's `synchronous_commit = off`):
    /// a crash of the process loses nothing, a crash of the machine may lose the last such
    /// commits, never part of one, never one without those before it. For work whose
    /// progress is written in the same transaction and whose end is a durable commit (an
    /// import's batches): a lost batch is one the job does again.
    Deferred,
}

/// Makes the PostgreSQL transaction `tx` commit as [`Commit::Deferred`] (a no-op on
/// SQLite, where it is the connection's setting between transactions).
pub(super) fn defer_commit(tx: &Tx<'_>) -> Result<(), DbError> {
    match tx.dialect() {
        Dialect::Postgres => tx.batch("SET LOCAL synchronous_commit = off"),
        Dialect::Sqlite => Ok(()),
    }
}

fn non_empty(tags: Tags) -> Option<Tags> {
    (!tags.is_empty()).then_some(tags)
}

/// The page size of a SQLite file this server makes (SQLite's default is 4 KiB). An import
/// writes each endpoint's body twice (the endpoint, and the imported segment's member) and
/// the larger page halves the B-tree pages it splits and checkpoints: measured on
/// `cargo bench --bench imports` (1,000,000 endpoints, 5 rounds beside the 4 KiB build),
/// 1.06× to 1.26× the records/s, median 1.11×; `benches/sqlite_ceiling.py` shows SQLite
/// alone at 1.13×.
pub const SQLITE_PAGE_BYTES: i64 = 8192;

fn open(path: &Path, writer: bool) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if writer {
        // A new file only (an existing one keeps the size it was made with): before its
        // first table, and before WAL, which fixes it.
        conn.pragma_update(None, "page_size", SQLITE_PAGE_BYTES)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Checkpoints run on a thread of their own (`checkpoint`), not in the writer's commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    }
    Ok(conn)
}

/// Why [`Store::ping_within`] found the database not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unready {
    /// It answered with an error, or could not be reached.
    Failed,
    /// It had not answered when the time was up.
    Slow,
}

/// What [`Store::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The versions applied now, with their names.
    pub applied: Vec<(i64, &'static str)>,
    /// The schema's version after.
    pub version: i64,
}

/// Applies the migrations `conn` has not had, in one transaction (which the caller opened,
/// holding the lock). Refuses a schema newer than this build's.
fn apply_migrations(conn: &Connection) -> Result<Migrated, DbError> {
    let dialect = conn.dialect();
    if dialect == Dialect::Postgres {
        conn.execute(
            "SELECT pg_advisory_xact_lock(?1)::text",
            [migrations::LOCK_KEY],
        )?;
        // `CREATE TABLE IF NOT EXISTS` on a table that exists is a NOTICE, logged by the
        // driver at every start: not news, so not said (for this transaction only).
        conn.batch("SET LOCAL client_min_messages = warning")?;
    }
    conn.batch(migrations::LEDGER)?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [] as [i64; 0],
        |r| r.get(0),
    )?;
    let latest = migrations::MIGRATIONS.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(DbError::Schema(format!(
            "the database's schema is at version {current}, newer than this segmentctl knows (up to {latest}): run the segmentctl that migrated it, or a newer one"
        )));
    }
    let mut applied = Vec::new();
    for m in migrations::MIGRATIONS
        .iter()
        .filter(|m| m.version > current)
    {
        conn.batch(&m.sql(dialect))?;
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, crate::text::now_iso()],
        )?;
        applied.push((m.version, m.name));
    }
    Ok(Migrated {
        applied,
        version: latest.max(current),
    })
}

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
            let stmt = c.prepare_cached(&format!(
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
            paginate(items.into_iter().map(Ok::<_, DbError>), page.size)
        })
    }

    /// Opens (creating if needed) the SQLite database at `path`, migrated.
    pub fn open(path: &Path, region: &str, account_id: &str) -> Result<Self, DbError> {
        Self::connect(
            &DataSource::Sqlite(path.to_path_buf()),
            region,
            account_id,
            pg::PgSettings::new(DEFAULT_POOL),
        )
    }

    /// Opens the database `source` names and brings its schema up to date.
    pub fn connect(
        source: &DataSource,
        region: &str,
        account_id: &str,
        pg: pg::PgSettings,
    ) -> Result<Self, DbError> {
        let store = Self::connect_unmigrated(source, region, account_id, pg)?;
        store.migrate()?;
        Ok(store)
    }

    /// `serve --migrate-only`: opens the database with one connection and applies the
    /// migrations it has not had (a deploy step before the replicas start).
    pub fn migrate_only(source: &DataSource) -> Result<Migrated, DbError> {
        Self::connect_unmigrated(source, "", "", pg::PgSettings::new(1))?.migrate()
    }

    /// Opens the database without touching its schema (for `serve migrate`'s checks).
    pub fn connect_unmigrated(
        source: &DataSource,
        region: &str,
        account_id: &str,
        pg: pg::PgSettings,
    ) -> Result<Self, DbError> {
        let backend = match source {
            DataSource::Sqlite(path) => {
                let writer = open(path, true)?;
                let readers = (0..READERS)
                    .map(|_| open(path, false).map(Mutex::new))
                    .collect::<Result<_, _>>()?;
                Backend::Sqlite {
                    checkpointer: checkpoint::Checkpointer::start(path)?,
                    writer: Box::new(Mutex::new(writer)),
                    readers,
                    next_reader: AtomicUsize::new(0),
                    answers: answers::Answers::default(),
                }
            }
            DataSource::Postgres(dsn) => Backend::Postgres(Box::new(pg::PgPool::new(dsn, pg)?)),
        };
        Ok(Self {
            backend,
            region: region.to_string(),
            account_id: account_id.to_string(),
            replica: format!("replica-{}", &new_id()[..12]),
            job_lease: DEFAULT_JOB_LEASE,
            gates: std::array::from_fn(|_| Mutex::new(())),
            updates: segments::UpdateQueues::default(),
            checked: answers::Checked::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The PostgreSQL pool, if the store is on PostgreSQL.
    fn pg_pool(&self) -> Option<&pg::PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite { .. } => None,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies the migrations the database has not had, under a lock (SQLite's write lock;
    /// a PostgreSQL advisory lock held for the transaction), so replicas starting together
    /// apply each once.
    pub fn migrate(&self) -> Result<Migrated, DbError> {
        let migrated = off_runtime(|| {
            self.write_db(Commit::Durable, |c| {
                apply_migrations(c).map_err(Failure::Db)
            })
            .map_err(|f| match f {
                Failure::Db(e) => e,
                Failure::Api(e) => DbError::Unavailable(e.message),
            })
        })?;
        self.ready.store(true, Ordering::Release);
        Ok(migrated)
    }

    /// Whether the schema is migrated and requests are served.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn require_ready(&self) -> Result<(), ApiError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(ApiError::unavailable())
        }
    }

    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.require_ready()?;
        match &self.backend {
            Backend::Sqlite {
                readers,
                next_reader,
                ..
            } => {
                let start = next_reader.fetch_add(1, Ordering::Relaxed);
                let free = (0..readers.len())
                    .find_map(|i| readers[(start + i) % readers.len()].try_lock().ok());
                let conn = match free {
                    Some(conn) => conn,
                    None => readers[start % readers.len()]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()),
                };
                lite_read(&conn, f)
            }
            Backend::Postgres(pool) => pg_read(pool, f),
        }
    }

    /// A write transaction that serializes on the application's endpoints: on PostgreSQL the
    /// writer first waits its turn among this process's writers of the application, without
    /// a connection, then takes one and the advisory lock other replicas share.
    pub(super) fn write_app<T>(
        &self,
        app: &str,
        f: impl FnOnce(&Tx<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.write_app_as(app, Commit::Durable, f)
    }

    /// [`Store::write_app`], its commit made durable as `commit` says.
    pub(super) fn write_app_as<T>(
        &self,
        app: &str,
        commit: Commit,
        f: impl FnOnce(&Tx<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let _turn = match &self.backend {
            Backend::Postgres(_) => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                app.hash(&mut h);
                let gate = &self.gates[(h.finish() as usize) % GATES];
                Some(gate.lock().unwrap_or_else(|p| p.into_inner()))
            }
            Backend::Sqlite { .. } => None,
        };
        self.write_as(commit, |tx| {
            Self::lock_endpoints(tx, app)?;
            f(tx)
        })
    }

    /// Does `side` and `own`, both part of the write transaction `tx`: on PostgreSQL, `side`
    /// in a transaction of its own on a second connection, at the same time as `own` (when
    /// the pool has one free at once; else both in `tx`, one after the other).
    ///
    /// `side`'s transaction commits only once `side` and `own` have both succeeded, and
    /// before `tx` does. So it must write only what is safe to keep should `tx` still fail
    /// afterwards (work done again when `tx` is, such as an upsert), and take no lock `own`
    /// waits for.
    pub(super) fn beside(
        &self,
        tx: &Tx<'_>,
        side: impl FnOnce(&Tx<'_>) -> Result<(), ApiError> + Send,
        own: impl FnOnce(&Tx<'_>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let second = match &self.backend {
            Backend::Postgres(pool) => pool.try_get().map(|conn| (pool, conn)),
            Backend::Sqlite { .. } => None,
        };
        let Some((pool, conn)) = second else {
            side(tx)?;
            return own(tx);
        };
        let (verdict, wait) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let beside = s.spawn(move || pg_write_beside(pool, conn, side, wait));
            let mine = own(tx);
            // Dropped unread when `side` failed first.
            let _ = verdict.send(mine.is_ok());
            let theirs = beside.join().unwrap_or_else(|_| {
                Err(ApiError::internal(&"a transaction beside another panicked"))
            });
            mine.and(theirs)
        })
    }

    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.write_as(Commit::Durable, f)
    }

    fn write_as<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&Tx<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.require_ready()?;
        self.write_db(commit, |c| f(c).map_err(Failure::Api))
            .map_err(|e| match e {
                Failure::Api(e) => e,
                Failure::Db(e) => e.into(),
            })
    }

    /// One write transaction: `BEGIN IMMEDIATE` on SQLite's writer; `BEGIN` on a pooled
    /// PostgreSQL connection (READ COMMITTED), rolled back when `f` fails; its commit made
    /// durable as `commit` says.
    fn write_db<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&Tx<'_>) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        match &self.backend {
            Backend::Sqlite {
                writer,
                checkpointer,
                answers,
                ..
            } => {
                let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
                let deferred = commit == Commit::Deferred;
                // SQLite changes it between transactions only.
                let safety = |conn: &rusqlite::Connection, level: &str| {
                    conn.pragma_update(None, "synchronous", level)
                        .map_err(|e| Failure::Db(e.into()))
                };
                if deferred {
                    safety(&conn, "NORMAL")?;
                }
                let out = (|| {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(|e| Failure::Db(e.into()))?;
                    let out = f(&sql::Lite {
                        conn: &tx,
                        writing: true,
                    })?;
                    tx.commit().map_err(|e| Failure::Db(e.into()))?;
                    Ok(out)
                })();
                // Committed or not, before the writer is free and its caller answered.
                answers.written();
                // Every other write is durable again (should this fail, the writer is not
                // trusted with one: the error is this write's).
                let out = match deferred {
                    true => safety(&conn, "FULL").and(out),
                    false => out,
                };
                if out.is_ok() {
                    checkpointer.committed(&conn);
                }
                out
            }
            Backend::Postgres(pool) => pg_write(pool, |tx| {
                if commit == Commit::Deferred {
                    defer_commit(tx).map_err(Failure::Db)?;
                }
                f(tx)
            }),
        }
    }

    /// A write of one statement that does all its checks itself, sent with its `BEGIN` and
    /// `COMMIT` in one round trip ([`sql::pg_write_at_once`]) and awaited: on PostgreSQL,
    /// off the blocking pool. `None` on SQLite, whose writes stay on [`Store::write`].
    ///
    /// A connection that sat in the pool may have outlived the server it reached: when the
    /// opening fails for that (so nothing after it ran), all is sent once more on a new one.
    pub(super) async fn write_at_once(
        &self,
        sql: &str,
        params: &[&(dyn sql::Param + Sync)],
    ) -> Result<Option<sql::Output>, ApiError> {
        let Some(pool) = self.pg_pool() else {
            return Ok(None);
        };
        self.require_ready()?;
        let mut retried = false;
        loop {
            let mut conn = pool.get_async().await?;
            let sent = {
                // The future holds the values, not this list (which is not `Send`).
                let params: Vec<&dyn sql::Param> = params.iter().map(|p| *p as _).collect();
                sql::pg_write_at_once(&conn, pool.write_opening(), sql, &params)
            };
            let out = sent.await;
            match out {
                Ok(Ok(out)) => return Ok(Some(out)),
                Ok(Err(e)) => {
                    if e.is_unavailable() {
                        conn.broken();
                    }
                    return Err(e.into());
                }
                Err(e) if e.is_unavailable() => {
                    let again = !retried && conn.reused();
                    conn.broken();
                    if !again {
                        return Err(e.into());
                    }
                    retried = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the database answers within `within` (`/readyz`). On PostgreSQL the check is
    /// awaited off the blocking pool, and a connection that has not answered in time is
    /// dropped with the idle ones, not waited for: a database that hangs (stopped, or cut
    /// off behind a pooler) holds no thread and no connection of the server's. On SQLite,
    /// [`Store::ping`] on a blocking thread, bounded likewise.
    pub async fn ping_within(
        self: &std::sync::Arc<Self>,
        within: std::time::Duration,
    ) -> Result<(), Unready> {
        let Some(pool) = self.pg_pool() else {
            let store = self.clone();
            let check = tokio::task::spawn_blocking(move || store.ping());
            return match tokio::time::timeout(within, check).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(_) => Err(Unready::Failed),
                Err(_) => Err(Unready::Slow),
            };
        };
        if !self.is_ready() {
            return Err(Unready::Failed);
        }
        if pool.busy_and_answering(std::time::Duration::from_secs(5)) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + within;
        let mut conn = match tokio::time::timeout_at(deadline, pool.get_async()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(_)) => return Err(Unready::Failed),
            Err(_) => return Err(Unready::Slow),
        };
        match tokio::time::timeout_at(deadline, conn.client().simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => {
                conn.broken();
                Err(Unready::Failed)
            }
            Err(_) => {
                conn.broken();
                Err(Unready::Slow)
            }
        }
    }

    /// Whether the database answers.
    pub fn ping(&self) -> Result<(), ApiError> {
        // Readiness is about reaching the database, not about a free connection: a pool
        // whose connections are all at work, and one of which finished a query just now,
        // reaches it.
        if let Backend::Postgres(pool) = &self.backend {
            if pool.busy_and_answering(std::time::Duration::from_secs(5)) {
                return Ok(());
            }
        }
        self.read(|c| {
            Ok(
                c.query_row("SELECT 1", [] as [i64; 0], |r| r.get::<_, i64>(0))
                    .map(|_| ())?,
            )
        })
    }

    /// Runs `PRAGMA integrity_check` on SQLite; `Ok` when the database reports "ok".
    /// (PostgreSQL checks its own pages; "ok" when it answers.)
    pub fn integrity_check(&self) -> Result<String, ApiError> {
        self.read(|c| match c.dialect() {
            Dialect::Sqlite => {
                Ok(c.query_row("PRAGMA integrity_check", [] as [i64; 0], |r| r.get(0))?)
            }
            Dialect::Postgres => Ok(c.query_row("SELECT 'ok'", [] as [i64; 0], |r| r.get(0))?),
        })
    }

    pub(super) fn arn(&self, rest: &str) -> String {
        format!(
            "arn:aws:mobiletargeting:{}:{}:apps/{rest}",
            self.region, self.account_id
        )
    }

    /// Which Customer Profiles resource an ARN names, if it is one of ours:
    /// `arn:aws:profile:REGION:ACCOUNT:domains/D[/segment-definitions/N]`.
    pub fn parse_profiles_arn(&self, arn: &str) -> Option<Resource> {
        let prefix = format!(
            "arn:aws:profile:{}:{}:domains/",
            self.region, self.account_id
        );
        let rest = arn.strip_prefix(&prefix)?;
        let ok = |s: &str| crate::model::profiles::validate::name("", s).is_empty();
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [d] if ok(d) => Some(Resource::Domain(d.to_string())),
            [d, "segment-definitions", n] if ok(d) && ok(n) => {
                Some(Resource::SegmentDefinition(d.to_string(), n.to_string()))
            }
            _ => None,
        }
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

/// A read on SQLite: one transaction, so a read of several statements sees one commit (a
/// WAL snapshot, taken at its first statement).
fn lite_read<T>(
    conn: &rusqlite::Connection,
    f: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let step = |sql: &str| -> Result<(), DbError> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    step("BEGIN")?;
    let out = f(&sql::Lite {
        conn,
        writing: false,
    });
    let ended = step(if out.is_ok() { "COMMIT" } else { "ROLLBACK" });
    match (out, ended) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
    }
}

/// A read on PostgreSQL: one `REPEATABLE READ READ ONLY` transaction, so a read of several
/// statements sees one commit. Its `BEGIN` goes out with the first statement and its
/// `COMMIT` is not waited for: a read of one statement costs one round trip.
fn pg_read<T>(
    pool: &pg::PgPool,
    f: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut pooled = pool.get()?;
    let conn = sql::Pg {
        conn: &pooled,
        writing: false,
        opening: std::cell::Cell::new(Some(pool.read_opening())),
    };
    let out = f(&conn);
    let began = conn.opening.get().is_none();
    let lost = matches!(&out, Err(e) if e.kind == ErrorKind::Unavailable);
    if lost {
        pooled.broken();
    } else if began && out.is_ok() {
        // A read-only transaction's COMMIT cannot fail but with the connection, which its
        // next user then finds: it is sent, not awaited (the connection answers in order,
        // so the next transaction on it begins after), saving the read a round trip.
        let _ = futures_util::FutureExt::now_or_never(pooled.client().batch_execute("COMMIT"));
    } else if began
        && pooled
            .block_on(pooled.client().batch_execute("ROLLBACK"))
            .is_err()
    {
        pooled.broken();
    }
    out
}

/// [`Store::beside`]'s second transaction: `f` on `conn` (taken beside another
/// transaction), committed if `verdict` then says the other succeeded, else rolled back.
fn pg_write_beside(
    pool: &pg::PgPool,
    mut conn: pg::Pooled<'_>,
    f: impl FnOnce(&Tx<'_>) -> Result<(), ApiError>,
    verdict: std::sync::mpsc::Receiver<bool>,
) -> Result<(), ApiError> {
    let mut began = false;
    let out = conn
        .block_on(conn.client().batch_execute(pool.write_opening()))
        .map_err(|e| ApiError::from(DbError::from(e)))
        .and_then(|()| {
            began = true;
            f(&sql::Pg {
                conn: &conn,
                writing: true,
                opening: std::cell::Cell::new(None),
            })
        });
    let commit = out.is_ok() && verdict.recv().unwrap_or(false);
    let end = match began {
        true => conn
            .block_on(
                conn.client()
                    .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" }),
            )
            .map_err(DbError::from),
        false => Ok(()),
    };
    let lost = matches!(&out, Err(e) if e.kind == ErrorKind::Unavailable);
    if lost || !began || end.is_err() {
        conn.broken();
    }
    out?;
    end?;
    Ok(())
}

/// A write on PostgreSQL: `BEGIN` (READ COMMITTED, the statement timeout set for it) on a
/// pooled connection, `COMMIT`, or `ROLLBACK` when `f` fails. A connection that sat idle
/// may have outlived the server it reached: nothing was sent yet, so `BEGIN` is tried once
/// more on a new one.
fn pg_write<T>(
    pool: &pg::PgPool,
    f: impl FnOnce(&Tx<'_>) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let begin = |pooled: &pg::Pooled<'_>| {
        pooled
            .block_on(pooled.client().batch_execute(pool.write_opening()))
            .map_err(|e| Failure::Db(e.into()))
    };
    let mut pooled = pool.get().map_err(Failure::Db)?;
    if let Err(e) = begin(&pooled) {
        let reused = pooled.reused();
        pooled.broken();
        if !reused {
            return Err(e);
        }
        drop(pooled);
        pooled = pool.get().map_err(Failure::Db)?;
        if let Err(e) = begin(&pooled) {
            pooled.broken();
            return Err(e);
        }
    }
    let out = f(&sql::Pg {
        conn: &pooled,
        writing: true,
        opening: std::cell::Cell::new(None),
    });
    let end = |sql: &str| pooled.block_on(pooled.client().batch_execute(sql));
    match out {
        Ok(v) => match end("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                pooled.broken();
                Err(Failure::Db(e.into()))
            }
        },
        Err(e) => {
            let lost = match &e {
                Failure::Api(a) => a.kind == ErrorKind::Unavailable,
                Failure::Db(d) => d.is_unavailable(),
            };
            if lost || end("ROLLBACK").is_err() {
                pooled.broken();
            }
            Err(e)
        }
    }
}

/// Why a write transaction failed: the caller's answer, or the database.
enum Failure {
    Api(ApiError),
    Db(DbError),
}

fn paginate<T>(
    rows: impl Iterator<Item = Result<(i64, T), DbError>>,
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

/// Whether the application holds the segment (which, in a write, cannot then be deleted
/// before the write ends).
fn segment_exists(c: &Connection, app: &str, id: &str) -> Result<bool, ApiError> {
    let found: Option<i64> = c
        .query_row(
            &format!(
                "SELECT 1 FROM segments WHERE app_id = ?1 AND id = ?2{}",
                c.for_share()
            ),
            [app, id],
            |r| r.get(0),
        )
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

    /// A file the server makes has its larger pages; one made before keeps its own and is
    /// served as it is.
    #[test]
    fn a_new_sqlite_file_has_the_larger_pages_and_an_older_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |path: &Path| -> i64 {
            rusqlite::Connection::open(path)
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let new = dir.path().join("new.db");
        Store::connect(
            &DataSource::Sqlite(new.clone()),
            "us-east-1",
            "1",
            pg::PgSettings::new(1),
        )
        .unwrap();
        assert_eq!(page_size(&new), SQLITE_PAGE_BYTES);

        let old = dir.path().join("old.db");
        rusqlite::Connection::open(&old)
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (a)")
            .unwrap();
        let store = Store::connect(
            &DataSource::Sqlite(old.clone()),
            "us-east-1",
            "1",
            pg::PgSettings::new(1),
        )
        .unwrap();
        let app = store.create_app("kept", &Default::default()).unwrap();
        assert_eq!(page_size(&old), 4096);
        assert!(store.get_app(&app.id).is_ok());
    }

    /// libpq's keywords and a scheme in any case are PostgreSQL; `sqlite:`, a path or a
    /// plain name is SQLite; what could be either is refused; no password is ever shown.
    #[test]
    fn data_sources_are_read_as_libpq_and_sqlite_would() {
        let pg = |s: &str| DataSource::Postgres(s.to_string());
        let file = |s: &str| DataSource::Sqlite(PathBuf::from(s));
        for (text, want) in [
            ("pinpoint.db", file("pinpoint.db")),
            ("/var/lib/x=y.db", file("/var/lib/x=y.db")),
            ("./x=y.db", file("./x=y.db")),
            ("sqlite:x=y.db", file("x=y.db")),
            ("SQLite:///data/p.db", file("/data/p.db")),
            ("postgres://u:pw@h/db", pg("postgres://u:pw@h/db")),
            ("POSTGRES://u:pw@h/db", pg("postgres://u:pw@h/db")),
            ("PostgreSQL://u@h:5433/db", pg("postgresql://u@h:5433/db")),
            (
                "host=h password=pw dbname=db",
                pg("host=h password=pw dbname=db"),
            ),
            ("dbname=db", pg("dbname=db")),
            // libpq's TLS keywords, which tokio-postgres' parser alone refuses.
            (
                "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=/x.pem",
                pg("postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=/x.pem"),
            ),
            (
                "host=h sslmode=verify-ca sslrootcert='/my ca.pem' sslcert=/c.crt sslkey=/c.key",
                pg("host=h sslmode=verify-ca sslrootcert='/my ca.pem' sslcert=/c.crt sslkey=/c.key"),
            ),
        ] {
            assert_eq!(DataSource::parse(text).as_ref(), Ok(&want), "{text}");
        }
        for text in [
            "mysql://u:pw@h/db",
            "postgres:pw@h/db",
            "host=h password=pw dbname=db nonsense=1",
            "postgres://u:pw@h/db?sslmode=verify_full",
            "host=h password=pw sslmode=pw",
            "x=pw.db",
            "",
            "sqlite:",
        ] {
            let e = DataSource::parse(text).expect_err(text);
            assert!(!e.contains("pw"), "{text}: {e}");
        }
        let kw = DataSource::parse("host=h port=6432 password=pw dbname=seg").unwrap();
        assert_eq!(kw.to_string(), "postgres://h:6432/seg");
        assert_eq!(format!("{kw:?}"), "Postgres(\"postgres://h:6432/seg\")");
        let url = DataSource::parse("postgres://u:pw@h:6432/seg?sslmode=verify-full").unwrap();
        assert_eq!(url.to_string(), "postgres://h:6432/seg");
        let e = DataSource::parse("postgres://u:pw@h/db?sslmode=verify_full").unwrap_err();
        assert!(
            e.contains(
                "sslmode: expected disable, allow, prefer, require, verify-ca or verify-full"
            ),
            "{e}"
        );
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        assert_eq!(decode_token(&encode_token(42)), Some(42));
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token(&hex::encode("v2:1")), None);
    }
}
