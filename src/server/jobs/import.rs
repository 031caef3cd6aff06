//! Import jobs: the files under `S3Url` read by [`crate::audience::rows`] (the reader
//! `estimate` shares), their rows committed in batches with the job's counters, and the
//! segment written when the last file is read.

use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;

use super::{add, fail_row, reset_counters, retrying, set, Jobs, MAX_IMPORT_BYTES};
use crate::audience::rows::{self, Format, Row};
use crate::model::ImportDefinition;
use crate::server::error::ApiError;
use crate::server::objects::{self, Reader};
use crate::server::store::sql::Dialect;
use crate::server::store::{ImportRow, ImportTarget};
use crate::text::now_iso;

/// Rows committed per transaction on `dialect`'s database, each batch written in a few
/// multi-row statements (`store::multirow`; new rows by `COPY` on PostgreSQL). Measured side
/// by side on `cargo bench --bench imports`: on PostgreSQL, 4,000 gave 1.18× and 1.21× the
/// records/s of 1,000 (300,000 endpoints; its lookups and statements cost per batch about
/// as much as per row); on SQLite the same at 300,000 (0.96× and 1.09×) and the rows' phase
/// 7–11 % slower at 1,000,000, so it stays at 1,000 (the server's peak memory 90 MB rather
/// than 150). The tests place rows on both sides of a batch's end by it.
pub fn batch_rows(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 1000,
        Dialect::Postgres => 4000,
    }
}

impl Jobs {
    pub(super) async fn import(&self, app: &str, job: &mut Value) -> Result<(), String> {
        let id = job["Id"].as_str().unwrap_or_default().to_string();
        {
            let store = self.store.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || retrying(|| store.clear_import(&id)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.message)?;
        }
        reset_counters(job);
        set(job, "Failures", json!([]));
        set(job, "JobStatus", "INITIALIZING");
        self.blocking_save(app, job.clone()).await?;
        let def = job["Definition"].clone();
        let url = def["S3Url"].as_str().unwrap_or_default().to_string();
        let format = match def["Format"].as_str() {
            Some("CSV") => Format::Csv,
            _ => Format::Json,
        };
        let register = def["RegisterEndpoints"].as_bool().unwrap_or(true);
        let loc = objects::parse(&url)?;
        let files = self.objects.list(&loc).await?;
        if files.is_empty() {
            return Err(format!("{url}: no files found"));
        }
        let total: u64 = files.iter().map(|f| f.size).sum();
        if total > MAX_IMPORT_BYTES {
            return Err(format!(
                "{url}: the files hold {total} bytes; an import job reads at most 1 GB ({MAX_IMPORT_BYTES} bytes)"
            ));
        }
        set(job, "TotalPieces", files.len() as u64);
        set(job, "JobStatus", "PROCESSING");
        self.blocking_save(app, job.clone()).await?;
        for file in &files {
            if let Err(reason) = self.import_file(app, job, file, format, register).await {
                add(job, "FailedPieces", 1);
                fail_row(job, reason);
            } else {
                add(job, "CompletedPieces", 1);
            }
            self.blocking_save(app, job.clone()).await?;
        }
        if job["FailedPieces"].as_u64() == job["TotalPieces"].as_u64() {
            return Err(format!("{url}: no file could be read"));
        }
        set(job, "JobStatus", "COMPLETING");
        self.blocking_save(app, job.clone()).await?;
        *job = self.finish_import(app, &id, def, url, job.clone()).await?;
        Ok(())
    }

    /// Writes the imported segment from the staged rows: the job as it ends.
    async fn finish_import(
        &self,
        app: &str,
        id: &str,
        def: Value,
        url: String,
        done: Value,
    ) -> Result<Value, String> {
        let definition = ImportDefinition {
            channel_counts: None,
            external_id: def["ExternalId"].as_str().unwrap_or_default().to_string(),
            format: def["Format"].as_str().unwrap_or("JSON").to_string(),
            role_arn: def["RoleArn"].as_str().unwrap_or_default().to_string(),
            s3_url: url,
            size: 0,
        };
        let store = self.store.clone();
        let (app, id) = (app.to_string(), id.to_string());
        tokio::task::spawn_blocking(move || {
            retrying(|| {
                let target = ImportTarget {
                    segment_id: def["SegmentId"].as_str().filter(|s| !s.is_empty()),
                    define: def["DefineSegment"].as_bool().unwrap_or(false),
                    registered: def["RegisterEndpoints"].as_bool().unwrap_or(true),
                    name: def["SegmentName"].as_str(),
                    definition: definition.clone(),
                };
                let mut done = done.clone();
                store
                    .finish_import(&app, &id, target, |imported| {
                        set(&mut done, "JobStatus", "COMPLETED");
                        set(&mut done, "CompletionDate", now_iso());
                        if let Some(seg) = &imported.segment_id {
                            done["Definition"]["SegmentId"] = Value::String(seg.clone());
                        }
                        done.clone()
                    })
                    .map(|_| done)
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.message)
    }

    /// Reads one file's rows into the job. An error is the whole file's failure.
    async fn import_file(
        &self,
        app: &str,
        job: &mut Value,
        file: &objects::Object,
        format: Format,
        register: bool,
    ) -> Result<(), String> {
        let mut reader = self.open_uncompressed(file).await?;
        let mut rows = rows::Reader::new(format);
        let job_id = job["Id"].as_str().unwrap_or_default().to_string();
        let mut batch = Batch::new(&file.name, register, batch_rows(self.store.dialect()));
        let failure = loop {
            match rows.next_row_async(&mut reader).await {
                Ok(None) => break None,
                Ok(Some(Row::Endpoint { line, id, endpoint })) => {
                    add(job, "TotalProcessed", 1);
                    // Made here, while the batch before is written.
                    let now = batch.now.get_or_insert_with(now_iso);
                    batch
                        .rows
                        .push(ImportRow::new(app, &job_id, id, endpoint, now));
                    batch.lines.push(line);
                    if batch.rows.len() >= batch.size {
                        batch.commit(self, app, job).await?;
                    }
                }
                Ok(Some(Row::Refused { line, why })) => {
                    add(job, "TotalProcessed", 1);
                    fail_row(job, format!("{}:{line}: {why}", file.name));
                }
                Err(rows::Error::File(e)) => return Err(format!("{}:{e}", file.name)),
                // What was read is kept (committed below); the file counts as failed.
                Err(rows::Error::Io(e)) => break Some(format!("{}: {e}", file.name)),
            }
        };
        batch.commit(self, app, job).await?;
        // The last batch, waited for.
        batch.settle(job).await?;
        failure.map_or(Ok(()), Err)
    }

    /// Opens a file, refusing a compressed one (by its name or its first bytes).
    async fn open_uncompressed(&self, file: &objects::Object) -> Result<Reader, String> {
        let lower = file.name.to_ascii_lowercase();
        for ext in [".gz", ".gzip", ".zip", ".bz2", ".zst", ".xz"] {
            if lower.ends_with(ext) {
                return Err(format!(
                    "{}: compressed files are not accepted; upload it uncompressed",
                    file.name
                ));
            }
        }
        let mut reader = self.objects.open(file).await?;
        let head = reader
            .fill_buf()
            .await
            .map_err(|e| format!("{}: {e}", file.name))?;
        if head.starts_with(&[0x1f, 0x8b])
            || head.starts_with(b"PK\x03\x04")
            || head.starts_with(b"BZh")
        {
            return Err(format!(
                "{}: a compressed file (by its first bytes); compressed files are not accepted",
                file.name
            ));
        }
        Ok(reader)
    }
}

/// A batch being committed: the store's answer (the rows it refused, by index) with the
/// rows, handed back to be dropped by the reading task (freeing a batch's endpoints is a
/// share of the work worth keeping off the writer, which an import waits for), and the line
/// numbers of its rows.
type Pending = (
    tokio::task::JoinHandle<(Result<Vec<(usize, String)>, ApiError>, Vec<ImportRow>)>,
    Vec<u64>,
);

/// The rows of one file on their way to the store: the batch being read (each row prepared
/// as it is read: [`ImportRow`]), and the one before it, committed on a blocking thread
/// meanwhile (one writer at a time).
struct Batch<'a> {
    file: &'a str,
    register: bool,
    rows: Vec<ImportRow>,
    lines: Vec<u64>,
    /// Rows a batch holds ([`batch_rows`]).
    size: usize,
    /// The time the batch's endpoints are written at (when its first row was read).
    now: Option<String>,
    pending: Option<Pending>,
}

impl<'a> Batch<'a> {
    fn new(file: &'a str, register: bool, size: usize) -> Self {
        Self {
            file,
            register,
            rows: Vec::with_capacity(size),
            lines: Vec::with_capacity(size),
            size,
            now: None,
            pending: None,
        }
    }

    /// Commits the rows read so far, with the job's counters as they stand, once the batch
    /// before is committed; the next rows are read meanwhile.
    async fn commit(&mut self, jobs: &Jobs, app: &str, job: &mut Value) -> Result<(), String> {
        self.settle(job).await?;
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(self.size));
        let now = self.now.take().unwrap_or_else(now_iso);
        let store = jobs.store.clone();
        let (app, snapshot, register) = (app.to_string(), job.clone(), self.register);
        let handle = tokio::task::spawn_blocking(move || {
            let refused = retrying(|| store.import_batch(&app, &snapshot, register, &rows, &now));
            (refused, rows)
        });
        self.pending = Some((handle, std::mem::take(&mut self.lines)));
        Ok(())
    }

    /// Waits for the batch being committed, and records the rows it refused.
    async fn settle(&mut self, job: &mut Value) -> Result<(), String> {
        let Some((handle, lines)) = self.pending.take() else {
            return Ok(());
        };
        let (refused, rows) = handle.await.map_err(|e| e.to_string())?;
        let refused = refused.map_err(|e| e.message)?;
        for (i, why) in refused {
            // Nothing of the row: its names by the row itself, its quoted values by form.
            let why = match rows.get(i) {
                Some(r) => r.update.without_names(&why),
                None => why,
            };
            fail_row(
                job,
                format!(
                    "{}:{}: {}",
                    self.file,
                    lines[i],
                    crate::text::without_content(&why)
                ),
            );
        }
        drop(rows);
        Ok(())
    }
}
