//! `serve`: the Segment API until a shutdown signal; `serve --migrate-only`, the schema
//! brought up to date as a deploy step; `serve migrate`, a SQLite file copied into
//! PostgreSQL and verified table by table.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::server::store::DataSource;
use crate::server::{self, ServerConfig};

use super::{exit, shutdown_signal};

/// `serve`: until Ctrl-C or SIGTERM.
pub async fn serve(cfg: ServerConfig) -> anyhow::Result<u8> {
    server::serve(cfg, shutdown_signal())
        .await
        .context("segmentctl serve")?;
    Ok(exit::OK)
}

/// `serve --migrate-only`: the migrations this version knows, applied, and what was done.
pub async fn migrate_only(data: DataSource) -> anyhow::Result<u8> {
    let shown = data.to_string();
    let store = tokio::task::spawn_blocking(move || server::store::Store::migrate_only(&data))
        .await?
        .with_context(|| format!("cannot migrate {shown}"))?;
    let applied = if store.applied.is_empty() {
        "nothing to apply".to_string()
    } else {
        store
            .applied
            .iter()
            .map(|(v, n)| format!("{v} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    crate::text::out(&format!(
        "{shown}: schema at version {}; applied: {applied}\n",
        store.version
    ));
    Ok(exit::OK)
}

/// `serve migrate`: the copy, a line per table, and exit 1 unless every table agrees (the
/// copy then wrote nothing). The file's lock is held throughout: a server writing it would
/// change it under the copy.
pub async fn migrate(from: PathBuf, to: DataSource) -> anyhow::Result<u8> {
    // A missing file is said by the copy; locking it would make its folder and lock file.
    let _lock = match from.is_file().then(|| server::lock_sqlite(&from)) {
        Some(Err(e @ server::ServeError::InUse { .. })) => {
            return Err(anyhow::Error::new(e)).context(format!("cannot copy {}", from.display()));
        }
        // Its lock file is not there and cannot be made (a read-only folder): no server is
        // writing the file there.
        Some(Err(_)) | None => None,
        Some(Ok(lock)) => Some(lock),
    };
    crate::text::err(&format!(
        "Copying {} into {to} in one transaction (rerunnable: rows already there are checked, not copied again)\n",
        from.display()
    ));
    let target = to.clone();
    let reports =
        tokio::task::spawn_blocking(move || {
            server::store::copy::copy(&from, &target, |r| {
                crate::text::out(&format!(
                "{} {:<17} {:>9} rows in source, {:>9} in target, {:>9} copied now, checksum {}\n",
                if r.ok() { "✓" } else { "✗" },
                r.table,
                r.source_rows,
                r.target_rows,
                r.copied,
                if r.checksums_match { "matches" } else { "differs" }
            ))
            })
        })
        .await?
        .with_context(|| format!("cannot copy into {to}"))?;
    let bad: Vec<&str> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.table)
        .collect();
    if bad.is_empty() {
        crate::text::out(&format!(
            "Done: {} tables copied and verified. Point the servers at {to}.\n",
            reports.len()
        ));
        Ok(exit::OK)
    } else {
        crate::text::err(&format!(
            "error: {} differ between the two databases: the target holds rows the source does not, or other versions of them (it was not empty, was written to since, or holds a copy of this file from before it changed); nothing was written: copy into an empty database\n",
            bad.join(", ")
        ));
        Ok(exit::ERROR)
    }
}
