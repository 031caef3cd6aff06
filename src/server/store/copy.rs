//! `serve migrate --from PATH.db --to postgres://…`: copies a SQLite data file into
//! PostgreSQL, table by table, keeping every row's position (`seq`, which page tokens
//! carry), then checks each table's row count and checksum on both sides.
//!
//! All or nothing: the copy and its checks run in one transaction on the target, committed
//! only when every table agrees, so a copy stopped halfway or into a database that holds
//! other rows leaves the target as it was. Rerunnable: rows are inserted with `ON CONFLICT
//! DO NOTHING` on each table's key, so a rerun into the database the same file was copied
//! into finds its rows there, and one after the file changed (a segment updated since)
//! finds the older versions, differs, and writes nothing. The caller holds the file's lock
//! (a server writing it cannot run meanwhile). The checksum is the sum of a SHA-256 per row
//! (independent of order, hence of collation). An
//! unfinished import's staged rows are not copied: the job runs again from its start on the
//! new database, as after any stop.
//!
//! The source is checked before any of it is read: a SQLite file whose `schema_migrations`
//! says it is a segmentctl database at this build's schema, every table it copies a table
//! (not a view, which could compute forever); each read of it has a time limit.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::sql::{Arg, Connection, DbError, Param, Ty, Val};
use super::{DataSource, Store, DEFAULT_POOL};

/// A table to copy: its columns and its key, each a list of names.
struct Table {
    name: &'static str,
    columns: &'static str,
    key: &'static str,
}

impl Table {
    fn columns(&self) -> Vec<&'static str> {
        self.columns.split_whitespace().collect()
    }

    fn key(&self) -> Vec<&'static str> {
        self.key.split_whitespace().collect()
    }
}

/// A column's type: positions and versions are integers, the rest text.
fn column_type(name: &str) -> Ty {
    match name {
        "seq" | "version" | "expiration_days" | "created_ms" | "updated_ms" | "modified_ms" => {
            Ty::Int
        }
        _ => Ty::Text,
    }
}

/// The tables copied, parents first. A job's lease (`owner`, `lease_until`) is not copied:
/// the new database's servers claim the job afresh.
const TABLES: &[Table] = &[
    table("apps", "seq id name created tags", "id"),
    table(
        "segments",
        "seq app_id id version created tags",
        "app_id id",
    ),
    table(
        "segment_versions",
        "app_id segment_id version modified body",
        "app_id segment_id version",
    ),
    table(
        "campaigns",
        "seq app_id id version segment_id status_override created modified body tags",
        "app_id id",
    ),
    table(
        "journeys",
        "seq app_id id state created modified body tags",
        "app_id id",
    ),
    table(
        "journey_segments",
        "app_id journey_id segment_id",
        "app_id journey_id segment_id",
    ),
    table("endpoints", "seq app_id id user_id body", "app_id id"),
    table(
        "attribute_names",
        "app_id family name",
        "app_id family name",
    ),
    table(
        "segment_members",
        "app_id segment_id version endpoint_id channel body user_id",
        "app_id segment_id version endpoint_id",
    ),
    table(
        "jobs",
        "seq app_id id kind segment_id status body",
        "app_id id",
    ),
    table(
        "cp_domains",
        "seq name expiration_days body created_ms updated_ms tags",
        "name",
    ),
    table("cp_profiles", "seq domain id body", "domain id"),
    table(
        "cp_profile_keys",
        "domain key_name value profile_id",
        "domain key_name value profile_id",
    ),
    table(
        "cp_segment_definitions",
        "seq domain name created_ms body tags",
        "domain name",
    ),
    table(
        "cp_segment_sources",
        "domain name source",
        "domain name source",
    ),
    table(
        "cc_campaigns",
        "seq id instance_id state segment_arn body modified_ms",
        "id",
    ),
];

const fn table(name: &'static str, columns: &'static str, key: &'static str) -> Table {
    Table { name, columns, key }
}

/// Rows per read and per insert statement.
const BATCH: usize = 500;

/// A value with the column's type, bound as it is.
struct Typed<'a>(&'a Val, Ty);

impl Param for Typed<'_> {
    fn arg(&self) -> Arg<'_> {
        match self.0 {
            Val::Null => Arg::Null(self.1),
            Val::Int(i) => Arg::Int(*i),
            Val::Text(s) => Arg::Text(s),
            // No column of ours is real; kept exact if one ever is.
            Val::Real(_) => Arg::Null(self.1),
        }
    }
}

/// One table's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    pub source_rows: u64,
    pub target_rows: u64,
    pub copied: u64,
    pub checksums_match: bool,
}

impl TableReport {
    pub fn ok(&self) -> bool {
        self.source_rows == self.target_rows && self.checksums_match
    }
}

fn row_hash(vals: &[Val]) -> u128 {
    let mut h = Sha256::new();
    for v in vals {
        match v {
            Val::Null => h.update([0u8]),
            Val::Int(i) => {
                h.update([1u8]);
                h.update(i.to_le_bytes());
            }
            Val::Real(f) => {
                h.update([2u8]);
                h.update(f.to_le_bytes());
            }
            Val::Text(s) => {
                h.update([3u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let d = h.finalize();
    u128::from_le_bytes(d[..16].try_into().unwrap_or([0; 16]))
}

/// Walks a table in key order, a page at a time: `f` gets each page's rows. `before` is
/// called before each statement (to restart a time limit).
fn walk(
    c: &Connection,
    t: &Table,
    before: &dyn Fn(),
    mut f: impl FnMut(&[Vec<Val>]) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let cols = t.columns();
    let key = t.key();
    let key_at: Vec<usize> = key
        .iter()
        .map(|k| cols.iter().position(|c| c == k).expect("key is a column"))
        .collect();
    let keys = key.join(", ");
    let mut last: Option<Vec<Val>> = None;
    loop {
        let filter = match &last {
            None => String::new(),
            Some(_) => {
                let marks: Vec<String> = (1..=key.len()).map(|i| format!("?{i}")).collect();
                format!(" WHERE ({keys}) > ({})", marks.join(", "))
            }
        };
        let sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY {keys} LIMIT {BATCH}",
            cols.join(", "),
            t.name
        );
        let bound: Vec<Typed<'_>> = match &last {
            None => Vec::new(),
            Some(vals) => key_at
                .iter()
                .map(|&i| Typed(&vals[i], column_type(cols[i])))
                .collect(),
        };
        let refs: Vec<&dyn Param> = bound.iter().map(|b| b as &dyn Param).collect();
        before();
        let out = c.run(&sql, &refs)?;
        let rows: Vec<Vec<Val>> = out.rows.iter().map(|r| r.values().to_vec()).collect();
        if rows.is_empty() {
            return Ok(());
        }
        f(&rows)?;
        if rows.len() < BATCH {
            return Ok(());
        }
        last = rows.last().cloned();
    }
}

fn count_and_sum(c: &Connection, t: &Table, before: &dyn Fn()) -> Result<(u64, u128), DbError> {
    let (mut n, mut sum) = (0u64, 0u128);
    walk(c, t, before, |rows| {
        for r in rows {
            n += 1;
            sum = sum.wrapping_add(row_hash(r));
        }
        Ok(())
    })?;
    Ok((n, sum))
}

/// A copy that meets a row it cannot place (a unique key taken by a row of other content)
/// is into a database holding other data: said in one line, not as the driver's error.
fn other_data(e: DbError, to: &DataSource, from: &Path, table: &str) -> DbError {
    let unique = matches!(&e, DbError::Postgres(p) if p.as_db_error().is_some_and(|d| d.code().code() == "23505"));
    if !unique {
        return e;
    }
    DbError::Schema(format!(
        "{to} already holds other data: its table {table} has rows that are not {}'s; the target must be an empty database, or one this very file was copied into before (a rerun)",
        from.display()
    ))
}

/// How long one read of the source may take (a page of [`BATCH`] rows, by key).
pub const SOURCE_STATEMENT_LIMIT: Duration = Duration::from_secs(60);

/// A time limit per statement on a SQLite connection: a statement still running
/// `limit` after the last [`StatementLimit::restart`] is interrupted by SQLite (its
/// progress handler), and fails with `SQLITE_INTERRUPT`.
pub struct StatementLimit {
    base: Instant,
    /// Milliseconds after `base` at which the running statement is stopped.
    deadline: Arc<AtomicU64>,
    limit: Duration,
}

impl StatementLimit {
    pub fn install(conn: &rusqlite::Connection, limit: Duration) -> Result<Self, DbError> {
        let base = Instant::now();
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let seen = deadline.clone();
        conn.progress_handler(
            1000,
            Some(move || base.elapsed().as_millis() as u64 > seen.load(Ordering::Relaxed)),
        )?;
        let limit = Self {
            base,
            deadline,
            limit,
        };
        limit.restart();
        Ok(limit)
    }

    /// Gives the next statement the whole limit.
    pub fn restart(&self) {
        let at = (self.base.elapsed() + self.limit).as_millis() as u64;
        self.deadline.store(at, Ordering::Relaxed);
    }
}

/// Opens `from` read-only, with a time limit per statement, once it is known to be a
/// segmentctl data file this build can copy.
///
/// Errors: not a file, not SQLite, no `schema_migrations` (another program's database), a
/// schema of another version, a copied table that is missing or is not a table; each
/// naming the file and what to do.
pub fn open_source(
    from: &Path,
    limit: Duration,
) -> Result<(rusqlite::Connection, StatementLimit), DbError> {
    let name = from.display();
    let refuse = |why: String| DbError::Schema(format!("--from {name}: {why}"));
    if !from.is_file() {
        return Err(refuse("no such SQLite file".into()));
    }
    let source = rusqlite::Connection::open_with_flags(
        from,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(10))?;
    let limit = StatementLimit::install(&source, limit)?;
    let kinds: Vec<(String, String)> = source
        .prepare("SELECT name, type FROM sqlite_master")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => {
                refuse("not a SQLite database: expected a segmentctl data file".into())
            }
            _ => DbError::Sqlite(e),
        })?;
    let kind = |table: &str| {
        kinds
            .iter()
            .find(|(n, _)| n == table)
            .map(|(_, k)| k.as_str())
    };
    match kind("schema_migrations") {
        Some("table") => {}
        _ => {
            return Err(refuse(
                "not a segmentctl data file (it has no schema_migrations table): give the file a segmentctl server wrote (its --data)".into(),
            ))
        }
    }
    for t in TABLES {
        match kind(t.name) {
            Some("table") => {}
            None => {
                return Err(refuse(format!(
                    "not a segmentctl data file (it has no {} table)",
                    t.name
                )))
            }
            Some(other) => {
                return Err(refuse(format!(
                    "not a segmentctl data file ({} is a {other}, not a table)",
                    t.name
                )))
            }
        }
    }
    limit.restart();
    let version: i64 = source.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let latest = super::migrations::MIGRATIONS
        .last()
        .map_or(0, |m| m.version);
    if version != latest {
        let fix = if version < latest {
            format!("bring it up to date first: segmentctl serve --migrate-only --data {name}")
        } else {
            "copy it with the segmentctl that wrote it, or a newer one".to_string()
        };
        return Err(refuse(format!(
            "its schema is at version {version}, this segmentctl's at {latest}: {fix}"
        )));
    }
    Ok((source, limit))
}

/// Copies every table of the SQLite file `from` into the PostgreSQL database `to`, then
/// checks them, in one transaction on the target: committed when every table agrees, rolled
/// back otherwise (the reports then say which differ). `progress` hears each table's report
/// as it is done.
///
/// The source is checked by [`open_source`] before anything is read or the target is
/// touched; a read of it taking longer than [`SOURCE_STATEMENT_LIMIT`] fails the copy.
pub fn copy(
    from: &Path,
    to: &DataSource,
    mut progress: impl FnMut(&TableReport),
) -> Result<Vec<TableReport>, DbError> {
    if !matches!(to, DataSource::Postgres(_)) {
        return Err(DbError::Schema(format!(
            "--to {to}: expected a PostgreSQL database (postgres://… or libpq's host=… dbname=…)"
        )));
    }
    let (source, limit) = open_source(from, SOURCE_STATEMENT_LIMIT)?;
    let src = super::sql::Lite {
        conn: &source,
        writing: false,
    };
    let src: &Connection = &src;
    let target = Store::connect(to, "", "", super::pg::PgSettings::new(DEFAULT_POOL.min(4)))?;
    let mut reports = Vec::new();
    let written = target.write_db(super::Commit::Durable, |tx| {
        // The transaction waits while each page of the source is read: a server-side
        // idle-in-transaction limit must not end it.
        tx.batch("SET LOCAL idle_in_transaction_session_timeout = 0")
            .map_err(super::Failure::Db)?;
        for t in TABLES {
            let report = copy_table(src, tx, t, &limit, from, to).map_err(super::Failure::Db)?;
            progress(&report);
            reports.push(report);
        }
        if reports.iter().all(TableReport::ok) {
            Ok(())
        } else {
            // Rolled back: the target stays as it was.
            Err(super::Failure::Db(DbError::Schema(String::new())))
        }
    });
    match written {
        Ok(()) => Ok(reports),
        Err(_) if reports.len() == TABLES.len() && !reports.iter().all(TableReport::ok) => {
            Ok(reports)
        }
        Err(super::Failure::Db(e)) => Err(e),
        Err(super::Failure::Api(e)) => Err(DbError::Unavailable(e.message)),
    }
}

/// Copies the table `t` of `src` into the target's transaction `tx`, then counts and sums
/// it on both sides.
fn copy_table(
    src: &Connection,
    tx: &Connection,
    t: &Table,
    limit: &StatementLimit,
    from: &Path,
    to: &DataSource,
) -> Result<TableReport, DbError> {
    let cols = t.columns();
    let keys = t.key().join(", ");
    let mut copied = 0u64;
    let before = || limit.restart();
    let slow = |e: DbError| source_too_slow(e, from, t.name);
    walk(src, t, &before, |rows| {
        let width = cols.len();
        let values: Vec<String> = (0..rows.len())
            .map(|r| {
                let marks: Vec<String> =
                    (1..=width).map(|c| format!("?{}", r * width + c)).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({keys}) DO NOTHING",
            t.name,
            cols.join(", "),
            values.join(", ")
        );
        let bound: Vec<Typed<'_>> = rows
            .iter()
            .flat_map(|r| r.iter().zip(&cols).map(|(v, c)| Typed(v, column_type(c))))
            .collect();
        let refs: Vec<&dyn Param> = bound.iter().map(|b| b as &dyn Param).collect();
        let n = tx
            .run(&sql, &refs)
            .map_err(|e| other_data(e, to, from, t.name))?;
        copied += n.affected;
        Ok(())
    })
    .map_err(slow)?;
    if cols.contains(&"seq") {
        // New rows get positions after the copied ones.
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{0}', 'seq'), (SELECT COALESCE(MAX(seq), 0) + 1 FROM {0}), false)::text",
            t.name
        );
        tx.run(&sql, &[])?;
    }
    let (source_rows, source_sum) = count_and_sum(src, t, &before).map_err(slow)?;
    let (target_rows, target_sum) = count_and_sum(tx, t, &|| {})?;
    Ok(TableReport {
        table: t.name,
        source_rows,
        target_rows,
        copied,
        checksums_match: source_sum == target_sum,
    })
}

/// A source read stopped by its time limit, said as such.
fn source_too_slow(e: DbError, from: &Path, table: &str) -> DbError {
    match &e {
        DbError::Sqlite(s)
            if s.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) =>
        {
            DbError::Schema(format!(
                "--from {}: reading {table} took longer than {}s a page, and was stopped: is the file damaged, or not one a segmentctl server wrote?",
                from.display(),
                SOURCE_STATEMENT_LIMIT.as_secs()
            ))
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement that would never end is stopped at the limit, with SQLite's interrupt.
    #[test]
    fn a_source_statement_past_its_time_limit_is_interrupted() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let _limit = StatementLimit::install(&conn, Duration::from_millis(50)).unwrap();
        let endless = conn.query_row(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT COUNT(*) FROM n",
            [],
            |r| r.get::<_, i64>(0),
        );
        let e = endless.expect_err("an endless statement is stopped");
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::OperationInterrupted),
            "{e}"
        );
        let e = source_too_slow(DbError::Sqlite(e), Path::new("old.db"), "segments");
        assert!(
            e.to_string()
                .starts_with("--from old.db: reading segments took longer than 60s a page"),
            "{e}"
        );
    }
}
