//! `serve migrate --from PATH.db --to postgres://…`: copies a SQLite data file into
//! PostgreSQL, table by table, keeping every row's position (`seq`, which page tokens
//! carry), then checks each table's row count and checksum on both sides.
//!
//! Rerunnable: rows are inserted with `ON CONFLICT DO NOTHING` on each table's key, so a
//! second run copies what the first did not and the checks say whether the two agree. The
//! checksum is the sum of a SHA-256 per row (independent of order, hence of collation). An
//! unfinished import's staged rows are not copied: the job runs again from its start on the
//! new database, as after any stop.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::sql::{Arg, Connection, DbError, Param, Ty, Val};
use super::{DataSource, Store, DEFAULT_POOL};

/// A table to copy: its columns (with their types) and its key.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Ty)],
    key: &'static [&'static str],
}

use Ty::{Int as I, Text as T};

const TABLES: &[Table] = &[
    Table {
        name: "apps",
        columns: &[
            ("seq", I),
            ("id", T),
            ("name", T),
            ("created", T),
            ("tags", T),
        ],
        key: &["id"],
    },
    Table {
        name: "segments",
        columns: &[
            ("seq", I),
            ("app_id", T),
            ("id", T),
            ("version", I),
            ("created", T),
            ("tags", T),
        ],
        key: &["app_id", "id"],
    },
    Table {
        name: "segment_versions",
        columns: &[
            ("app_id", T),
            ("segment_id", T),
            ("version", I),
            ("modified", T),
            ("body", T),
        ],
        key: &["app_id", "segment_id", "version"],
    },
    Table {
        name: "campaigns",
        columns: &[
            ("seq", I),
            ("app_id", T),
            ("id", T),
            ("version", I),
            ("segment_id", T),
            ("status_override", T),
            ("created", T),
            ("modified", T),
            ("body", T),
            ("tags", T),
        ],
        key: &["app_id", "id"],
    },
    Table {
        name: "journeys",
        columns: &[
            ("seq", I),
            ("app_id", T),
            ("id", T),
            ("state", T),
            ("created", T),
            ("modified", T),
            ("body", T),
            ("tags", T),
        ],
        key: &["app_id", "id"],
    },
    Table {
        name: "journey_segments",
        columns: &[("app_id", T), ("journey_id", T), ("segment_id", T)],
        key: &["app_id", "journey_id", "segment_id"],
    },
    Table {
        name: "endpoints",
        columns: &[
            ("seq", I),
            ("app_id", T),
            ("id", T),
            ("user_id", T),
            ("body", T),
        ],
        key: &["app_id", "id"],
    },
    Table {
        name: "attribute_names",
        columns: &[("app_id", T), ("family", T), ("name", T)],
        key: &["app_id", "family", "name"],
    },
    Table {
        name: "segment_members",
        columns: &[
            ("app_id", T),
            ("segment_id", T),
            ("version", I),
            ("endpoint_id", T),
            ("channel", T),
            ("body", T),
        ],
        key: &["app_id", "segment_id", "version", "endpoint_id"],
    },
    Table {
        name: "jobs",
        columns: &[
            ("seq", I),
            ("app_id", T),
            ("id", T),
            ("kind", T),
            ("segment_id", T),
            ("status", T),
            ("body", T),
        ],
        key: &["app_id", "id"],
    },
];

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

/// Walks a table in key order, a page at a time: `f` gets each page's rows.
fn walk(
    c: &Connection,
    t: &Table,
    mut f: impl FnMut(&[Vec<Val>]) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let cols: Vec<&str> = t.columns.iter().map(|(n, _)| *n).collect();
    let key_at: Vec<usize> = t
        .key
        .iter()
        .map(|k| cols.iter().position(|c| c == k).expect("key is a column"))
        .collect();
    let keys = t.key.join(", ");
    let mut last: Option<Vec<Val>> = None;
    loop {
        let filter = match &last {
            None => String::new(),
            Some(_) => {
                let marks: Vec<String> = (1..=t.key.len()).map(|i| format!("?{i}")).collect();
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
                .map(|&i| Typed(&vals[i], t.columns[i].1))
                .collect(),
        };
        let refs: Vec<&dyn Param> = bound.iter().map(|b| b as &dyn Param).collect();
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

fn count_and_sum(c: &Connection, t: &Table) -> Result<(u64, u128), DbError> {
    let (mut n, mut sum) = (0u64, 0u128);
    walk(c, t, |rows| {
        for r in rows {
            n += 1;
            sum = sum.wrapping_add(row_hash(r));
        }
        Ok(())
    })?;
    Ok((n, sum))
}

/// One statement in a write transaction of its own on the target.
fn run_in_tx(
    target: &Store,
    sql: &str,
    params: &[&dyn Param],
) -> Result<super::sql::Output, DbError> {
    target
        .write_db(|tx| tx.run(sql, params).map_err(super::Failure::Db))
        .map_err(|f| match f {
            super::Failure::Db(e) => e,
            super::Failure::Api(e) => DbError::Unavailable(e.message),
        })
}

/// Copies every table of the SQLite file `from` into the PostgreSQL database `to`, then
/// checks them. `progress` hears each table's report as it is done.
pub fn copy(
    from: &Path,
    to: &DataSource,
    mut progress: impl FnMut(&TableReport),
) -> Result<Vec<TableReport>, DbError> {
    if !matches!(to, DataSource::Postgres(_)) {
        return Err(DbError::Schema(format!(
            "--to {to}: expected a PostgreSQL database (postgres://…)"
        )));
    }
    if !from.is_file() {
        return Err(DbError::Schema(format!(
            "--from {}: no such SQLite file",
            from.display()
        )));
    }
    let source = rusqlite::Connection::open_with_flags(
        from,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    let src = super::sql::Lite {
        conn: &source,
        writing: false,
    };
    let src: &Connection = &src;
    let target = Store::connect(to, "", "", DEFAULT_POOL.min(4))?;
    let mut reports = Vec::new();
    for t in TABLES {
        let cols: Vec<&str> = t.columns.iter().map(|(n, _)| *n).collect();
        let keys = t.key.join(", ");
        let mut copied = 0u64;
        walk(src, t, |rows| {
            let width = t.columns.len();
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
                .flat_map(|r| r.iter().zip(t.columns).map(|(v, (_, ty))| Typed(v, *ty)))
                .collect();
            let refs: Vec<&dyn Param> = bound.iter().map(|b| b as &dyn Param).collect();
            let n = run_in_tx(&target, &sql, &refs)?;
            copied += n.affected;
            Ok(())
        })?;
        if cols.contains(&"seq") {
            // New rows get positions after the copied ones.
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'seq'), (SELECT COALESCE(MAX(seq), 0) + 1 FROM {0}), false)::text",
                t.name
            );
            run_in_tx(&target, &sql, &[])?;
        }
        let (source_rows, source_sum) = count_and_sum(src, t)?;
        let (target_rows, target_sum) = target
            .read(|c| count_and_sum(c, t).map_err(Into::into))
            .map_err(|e| DbError::Unavailable(e.message))?;
        let report = TableReport {
            table: t.name,
            source_rows,
            target_rows,
            copied,
            checksums_match: source_sum == target_sum,
        };
        progress(&report);
        reports.push(report);
    }
    Ok(reports)
}
