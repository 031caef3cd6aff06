//! Import and export jobs, run in the background with Pinpoint's statuses and counters.
//!
//! Import: the files under `S3Url` (CSV with dotted column names, or newline-delimited
//! JSON) are streamed line by line, never held whole; each row is checked like an
//! UpdateEndpoint item, and a bad row fails that row (named by file and line in
//! `Failures`, at most 100 kept), not the job. Rows are committed in batches with the
//! counters, and the segment is written when the last file is read. Compressed files and
//! jobs over 1 GB are refused, as Pinpoint refuses them.
//!
//! Export: the members of a segment (an IMPORT segment's imported endpoints, or the stored
//! endpoints a DIMENSIONAL segment matches, evaluated by [`crate::audience::evaluate`]), or every
//! endpoint, written under `S3UrlPrefix` as gzip newline-delimited EndpointResponse objects,
//! `<JobId>/part-00000.gz` onward.
//!
//! Each job is held by one server at a time under a lease it renews (a third of the lease
//! apart); every write the job makes checks the lease, so a server that lost it writes
//! nothing more. A job a stop cut short, or whose server died, runs again from its start
//! on the server that claims it next: at start (SQLite: its only server), or when the lease
//! runs out (PostgreSQL: any replica, each polling for such jobs).

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::endpoint::{derived_id, Endpoint, Origin};
use super::objects::{self, Objects, Reader};
use super::store::{ImportTarget, JobKind, OpenJob, Store};
use crate::model::ImportDefinition;
use crate::text::now_iso;

/// Pinpoint's limit on the files of one import job.
pub const MAX_IMPORT_BYTES: u64 = 1024 * 1024 * 1024;
/// Failures kept in a job's `Failures`.
pub const MAX_FAILURES: usize = 100;
/// Import jobs running at once (Pinpoint's quota); more wait their turn.
pub const CONCURRENT_JOBS: usize = 10;
/// Rows committed per transaction.
const BATCH: usize = 1000;
/// A line longer than this is a failed row (an endpoint is at most 15 KB), skipped unread.
const MAX_LINE: usize = 64 * 1024;
/// How often a server looks for jobs whose lease ran out.
const CLAIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Endpoints per export piece.
const PIECE_ENDPOINTS: usize = 100_000;
/// Compressed bytes per export piece, at most (about): a piece of large endpoints closes early.
const PIECE_BYTES: u64 = 64 * 1024 * 1024;

pub struct Jobs {
    store: Arc<Store>,
    objects: Objects,
    slots: Arc<tokio::sync::Semaphore>,
    /// The jobs this server runs now: one of them whose lease ran out (renewals that met a
    /// database outage) is not claimed a second time.
    running: std::sync::Mutex<HashSet<String>>,
}

/// How long a job's store call is tried again while the database is unavailable (a
/// restart, a failover, a pool with no free connection) before the job fails.
const OUTAGE: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs a store call (on a blocking thread), again with backoff while the database is
/// unavailable, for up to [`OUTAGE`]: a blip does not fail a job. Every call retried this
/// way is one transaction, so a retry after a failure repeats nothing that committed, and a
/// repeat after a lost commit writes the same rows again.
fn retrying<T>(
    mut call: impl FnMut() -> Result<T, super::error::ApiError>,
) -> Result<T, super::error::ApiError> {
    let start = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        match call() {
            Err(e)
                if e.kind == super::error::ErrorKind::Unavailable && start.elapsed() < OUTAGE =>
            {
                tracing::warn!(error = %e.message, "the database is unavailable; the job tries again");
                std::thread::sleep(wait + std::time::Duration::from_millis(fastrand::u64(0..100)));
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

fn set(job: &mut Value, key: &str, v: impl Into<Value>) {
    job[key] = v.into();
}

fn add(job: &mut Value, key: &str, n: u64) {
    let v = job[key].as_u64().unwrap_or(0) + n;
    job[key] = v.into();
}

fn fail_row(job: &mut Value, what: String) {
    add(job, "TotalFailures", 1);
    let failures = job["Failures"].as_array_mut();
    match failures {
        Some(f) if f.len() < MAX_FAILURES => f.push(Value::String(what)),
        Some(_) => {}
        None => job["Failures"] = json!([what]),
    }
}

impl Jobs {
    pub fn new(store: Arc<Store>, objects: Objects) -> Arc<Self> {
        Arc::new(Self {
            store,
            objects,
            slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_JOBS)),
            running: Default::default(),
        })
    }

    /// Runs a job this server holds in the background (waiting for a free slot).
    pub fn spawn(self: &Arc<Self>, app: String, kind: JobKind, job: Value) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(slot) = this.slots.clone().acquire_owned().await else {
                return;
            };
            this.run_held(app, kind, job, slot).await;
        });
    }

    /// Runs a job while renewing its lease; stops it where it is if the lease is lost.
    async fn run_held(
        self: Arc<Self>,
        app: String,
        kind: JobKind,
        job: Value,
        _slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let id = job["Id"].as_str().unwrap_or_default().to_string();
        if !self.lock_running().insert(id.clone()) {
            return; // already running here
        }
        let renew = {
            let store = self.store.clone();
            let (app, id) = (app.clone(), id.clone());
            async move {
                let every = store.job_lease / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let (s, a, i) = (store.clone(), app.clone(), id.clone());
                    match tokio::task::spawn_blocking(move || s.renew_job(&a, &i)).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => return,
                        // The database is out of reach: the job's own writes wait or fail.
                        _ => {}
                    }
                }
            }
        };
        tokio::select! {
            () = self.run(app, kind, job) => {}
            () = renew => tracing::warn!(job = %id, "another server took the job over; stopping it here"),
        }
        self.lock_running().remove(&id);
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(&self, app: String, kind: JobKind, job: Value) {
        {
            let this = self;
            let mut job = job;
            let outcome = match kind {
                JobKind::Import => this.import(&app, &mut job).await,
                JobKind::Export => this.export(&app, &mut job).await,
            };
            if let Err(reason) = outcome {
                tracing::warn!(job = %job["Id"], %reason, "job failed");
                if kind == JobKind::Import {
                    // What it staged goes; endpoints it registered stay registered.
                    let store = this.store.clone();
                    let id = job["Id"].as_str().unwrap_or_default().to_string();
                    let _ =
                        tokio::task::spawn_blocking(move || retrying(|| store.clear_import(&id)))
                            .await;
                }
                set(&mut job, "JobStatus", "FAILED");
                set(&mut job, "CompletionDate", now_iso());
                fail_row(&mut job, reason);
                if let Err(e) = this.blocking_save(&app, job).await {
                    tracing::error!(error = %e, "cannot record a failed job");
                }
            }
        }
    }

    /// Claims, as slots free up, the jobs no live server holds, and runs them: at once the
    /// ones a stop cut short (`takeover`: this is the data's only server), then, every
    /// [`CLAIM_EVERY`] while `poll` (replicas share the data), any whose lease ran out.
    pub fn claim(self: &Arc<Self>, takeover: bool, poll: bool) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut any_owner = takeover;
            loop {
                loop {
                    let Ok(slot) = this.slots.clone().acquire_owned().await else {
                        return;
                    };
                    let store = this.store.clone();
                    let claimed =
                        tokio::task::spawn_blocking(move || store.claim_job(any_owner)).await;
                    match claimed {
                        Ok(Ok(Some(OpenJob {
                            app,
                            id,
                            kind,
                            body,
                        }))) => {
                            if this.lock_running().contains(&id) {
                                // Ours and still running: its lease ran out during an outage
                                // and is renewed again by this claim.
                                continue;
                            }
                            tracing::info!(job = %id, kind = kind.as_str(), "running a job no server holds (cut short, its server gone, or left by this one in an outage)");
                            tokio::spawn(this.clone().run_held(app, kind, body, slot));
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e.message, "cannot claim jobs now");
                            break;
                        }
                        _ => break,
                    }
                }
                any_owner = false;
                if !poll {
                    return;
                }
                tokio::time::sleep(CLAIM_EVERY.min(this.store.job_lease)).await;
            }
        });
    }

    async fn blocking_save(&self, app: &str, job: Value) -> Result<(), String> {
        let store = self.store.clone();
        let app = app.to_string();
        tokio::task::spawn_blocking(move || retrying(|| store.save_job(&app, &job)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.message)
    }

    async fn import(&self, app: &str, job: &mut Value) -> Result<(), String> {
        let id = job["Id"].as_str().unwrap_or_default().to_string();
        {
            let store = self.store.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || retrying(|| store.clear_import(&id)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.message)?;
        }
        for k in [
            "CompletedPieces",
            "FailedPieces",
            "TotalFailures",
            "TotalPieces",
            "TotalProcessed",
        ] {
            set(job, k, 0);
        }
        set(job, "Failures", json!([]));
        set(job, "JobStatus", "INITIALIZING");
        self.blocking_save(app, job.clone()).await?;
        let def = job["Definition"].clone();
        let url = def["S3Url"].as_str().unwrap_or_default().to_string();
        let csv = def["Format"].as_str() == Some("CSV");
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
            if let Err(reason) = self.import_file(app, job, file, csv, register).await {
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
        let definition = ImportDefinition {
            channel_counts: None,
            external_id: def["ExternalId"].as_str().unwrap_or_default().to_string(),
            format: def["Format"].as_str().unwrap_or("JSON").to_string(),
            role_arn: def["RoleArn"].as_str().unwrap_or_default().to_string(),
            s3_url: url.clone(),
            size: 0,
        };
        let store = self.store.clone();
        let app = app.to_string();
        let done = job.clone();
        let final_job = tokio::task::spawn_blocking(move || {
            retrying(|| {
                let target = ImportTarget {
                    segment_id: def["SegmentId"].as_str().filter(|s| !s.is_empty()),
                    define: def["DefineSegment"].as_bool().unwrap_or(false),
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
        .map_err(|e| e.message)?;
        *job = final_job;
        Ok(())
    }

    /// Reads one file's rows into the job. An error is the whole file's failure.
    async fn import_file(
        &self,
        app: &str,
        job: &mut Value,
        file: &objects::Object,
        csv: bool,
        register: bool,
    ) -> Result<(), String> {
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
        let mut lines = Lines::new(reader);
        let mut header: Option<Vec<String>> = None;
        let mut batch: Vec<(String, Endpoint)> = Vec::with_capacity(BATCH);
        let mut batch_lines: Vec<u64> = Vec::with_capacity(BATCH);
        let mut pending: Option<Pending> = None;
        let mut failure: Option<String> = None;
        loop {
            let record = if csv {
                lines.csv_record().await
            } else {
                lines.line().await
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    // What was read is kept (committed below); the file counts as failed.
                    failure = Some(format!("{}: {e}", file.name));
                    break;
                }
            };
            let (line_no, text) = match record {
                None => break,
                Some(Row::TooLong(n)) if csv && header.is_none() => {
                    return Err(format!(
                        "{}:{n}: the header is longer than {MAX_LINE} bytes",
                        file.name
                    ));
                }
                Some(Row::Bad(n, why)) => {
                    add(job, "TotalProcessed", 1);
                    fail_row(job, format!("{}:{n}: {why}", file.name));
                    continue;
                }
                Some(Row::TooLong(n)) => {
                    add(job, "TotalProcessed", 1);
                    fail_row(job, format!("{}:{n}: the row is longer than {MAX_LINE} bytes (an endpoint is at most 15 KB)", file.name));
                    continue;
                }
                Some(Row::Text(n, t)) => (n, t),
            };
            if text.trim().is_empty() {
                continue;
            }
            let parsed = if csv {
                match &header {
                    None => {
                        let cols = parse_csv(&text);
                        check_header(&cols).map_err(|e| format!("{}:{line_no}: {e}", file.name))?;
                        header = Some(cols);
                        continue;
                    }
                    Some(cols) => csv_row(cols, &parse_csv(&text)),
                }
            } else {
                crate::model::strict::from_slice::<Endpoint>(text.as_bytes())
                    .map_err(|e| e.to_string())
            };
            add(job, "TotalProcessed", 1);
            let checked = parsed.and_then(|e| {
                e.check_request("", Origin::Import).map_err(|e| e.message)?;
                Ok(e)
            });
            match checked {
                Ok(mut e) => {
                    let id = e.id.take().unwrap_or_else(|| {
                        derived_id(
                            e.channel_type.as_deref().unwrap_or_default(),
                            e.address.as_deref().unwrap_or_default(),
                        )
                    });
                    batch.push((id, e));
                    batch_lines.push(line_no);
                }
                // Nothing of the row: whoever reads the job may not read the file.
                Err(why) => fail_row(
                    job,
                    format!(
                        "{}:{line_no}: {}",
                        file.name,
                        crate::text::without_content(&why)
                    ),
                ),
            }
            if batch.len() >= BATCH {
                self.flush(
                    app,
                    job,
                    register,
                    &file.name,
                    &mut batch,
                    &mut batch_lines,
                    &mut pending,
                )
                .await?;
            }
        }
        self.flush(
            app,
            job,
            register,
            &file.name,
            &mut batch,
            &mut batch_lines,
            &mut pending,
        )
        .await?;
        // The last batch, waited for.
        self.flush(
            app,
            job,
            register,
            &file.name,
            &mut batch,
            &mut batch_lines,
            &mut pending,
        )
        .await?;
        failure.map_or(Ok(()), Err)
    }

    /// Commits a batch on a blocking thread while the next one is read: the batch before is
    /// waited for first (one writer), and its refused rows recorded.
    #[allow(clippy::too_many_arguments)]
    async fn flush(
        &self,
        app: &str,
        job: &mut Value,
        register: bool,
        file: &str,
        batch: &mut Vec<(String, Endpoint)>,
        lines: &mut Vec<u64>,
        pending: &mut Option<Pending>,
    ) -> Result<(), String> {
        if let Some((handle, lines_before)) = pending.take() {
            let refused = handle
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.message)?;
            for (i, why) in refused {
                fail_row(
                    job,
                    format!(
                        "{file}:{}: {}",
                        lines_before[i],
                        crate::text::without_content(&why)
                    ),
                );
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(batch);
        let store = self.store.clone();
        let app = app.to_string();
        let snapshot = job.clone();
        let handle = tokio::task::spawn_blocking(move || {
            retrying(|| store.import_batch(&app, &snapshot, register, rows.clone()))
        });
        *pending = Some((handle, std::mem::take(lines)));
        Ok(())
    }

    async fn export(&self, app: &str, job: &mut Value) -> Result<(), String> {
        for k in [
            "CompletedPieces",
            "FailedPieces",
            "TotalFailures",
            "TotalPieces",
            "TotalProcessed",
        ] {
            set(job, k, 0);
        }
        set(job, "JobStatus", "PROCESSING");
        self.blocking_save(app, job.clone()).await?;
        let def = job["Definition"].clone();
        let prefix = objects::parse(def["S3UrlPrefix"].as_str().unwrap_or_default())?;
        let job_id = job["Id"].as_str().unwrap_or_default().to_string();
        let segment = def["SegmentId"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from);
        let version = def["SegmentVersion"].as_i64().map(|v| v as i32);
        let store = self.store.clone();
        let app_id = app.to_string();
        let objects = self.objects.clone();
        let handle = tokio::runtime::Handle::current();
        // Evaluation is CPU work: on a blocking thread, writing each piece as it fills.
        let (pieces, written) = tokio::task::spawn_blocking(move || {
            export_scan(
                &store,
                &app_id,
                segment.as_deref(),
                version,
                PIECE,
                |n, file| {
                    let name = format!("{job_id}/part-{n:05}.gz");
                    handle
                        .block_on(objects.put(&prefix, &name, file))
                        .map(|_| ())
                },
            )
        })
        .await
        .map_err(|e| e.to_string())??;
        set(job, "TotalPieces", pieces);
        set(job, "CompletedPieces", pieces);
        set(job, "TotalProcessed", written);
        set(job, "JobStatus", "COMPLETED");
        set(job, "CompletionDate", now_iso());
        self.blocking_save(app, job.clone()).await
    }
}

/// How large an export piece grows before the next begins.
#[derive(Debug, Clone, Copy)]
pub struct PieceLimit {
    pub endpoints: usize,
    /// Compressed bytes (checked every 256 endpoints).
    pub bytes: u64,
}

/// Pinpoint's 100,000 endpoints a piece, and at most about 64 MiB compressed.
pub const PIECE: PieceLimit = PieceLimit {
    endpoints: PIECE_ENDPOINTS,
    bytes: PIECE_BYTES,
};

/// The endpoints an export writes, through `put(piece number, gzip file)`: `(pieces,
/// endpoints)`. Each piece is compressed into an unnamed temporary file, never held in
/// memory, and closed at `limit`.
pub fn export_scan(
    store: &Store,
    app: &str,
    segment: Option<&str>,
    version: Option<i32>,
    limit: PieceLimit,
    mut put: impl FnMut(u64, std::fs::File) -> Result<(), String>,
) -> Result<(u64, u64), String> {
    use crate::audience::evaluate::{Catalog, Members, Program};
    let mut pieces = 0u64;
    let mut written = 0u64;
    let mut in_piece = 0usize;
    let piece = || -> Result<Gz, String> {
        tempfile::tempfile()
            .map(|f| flate2::write::GzEncoder::new(f, flate2::Compression::fast()))
            .map_err(|e| format!("cannot make a temporary file for a piece: {e}"))
    };
    let mut gz = piece()?;
    let mut emit = |line: &str, gz: &mut Gz| -> Result<(), String> {
        gz.write_all(line.as_bytes())
            .and_then(|_| gz.write_all(b"\n"))
            .map_err(|e| e.to_string())?;
        written += 1;
        in_piece += 1;
        let large = in_piece.is_multiple_of(256)
            && gz.get_ref().metadata().map_or(0, |m| m.len()) >= limit.bytes;
        if in_piece >= limit.endpoints || large {
            let full = std::mem::replace(gz, piece()?);
            put(pieces, finish(full)?)?;
            pieces += 1;
            in_piece = 0;
        }
        Ok(())
    };
    let err = |e: super::error::ApiError| e.message;
    let target = segment
        .map(|s| store.segment_at(app, s, version))
        .transpose()
        .map_err(err)?;
    match &target {
        Some(seg) if seg.is_import() => {
            let mut after = String::new();
            loop {
                let rows = store
                    .members_after(app, &seg.id, seg.version, &after, 10_000)
                    .map_err(err)?;
                let Some(last) = rows.last().map(|r| r.0.clone()) else {
                    break;
                };
                for (_, body) in &rows {
                    emit(body, &mut gz)?;
                }
                after = last;
            }
        }
        _ => {
            let all = store.all_segments(app).map_err(err)?;
            let defs: BTreeMap<String, crate::model::WriteSegmentRequest> = all
                .iter()
                .filter(|s| !s.is_import())
                .map(|s| (s.id.clone(), s.definition()))
                .collect();
            let mut catalog = Catalog::of(&defs);
            catalog.key_of_id = all.iter().map(|s| (s.id.clone(), s.id.clone())).collect();
            for s in all.iter().filter(|s| s.is_import()) {
                let ids: HashSet<Box<str>> = store
                    .member_ids(app, &s.id, s.version)
                    .map_err(err)?
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect();
                catalog.imported.insert(
                    s.id.clone(),
                    Arc::new(Members {
                        ids,
                        users: HashSet::new(),
                    }),
                );
            }
            // The segment at the version asked for, under a key of its own.
            let target_def = target.as_ref().map(|s| s.definition());
            if let Some(d) = &target_def {
                catalog.segments.insert("\u{0}target".into(), d);
            }
            let mut program = Program::new(time::OffsetDateTime::now_utc());
            let node = target_def
                .as_ref()
                .map(|_| program.add(0, &catalog, "\u{0}target"));
            let mut out = Vec::new();
            let mut after = 0;
            loop {
                let rows = store.endpoints_after(app, after, 10_000).map_err(err)?;
                let mut record = program.record();
                let Some(last) = rows.last().map(|r| r.0) else {
                    break;
                };
                for (_, body) in &rows {
                    let keep = match node {
                        None => true,
                        Some(n) => {
                            program.read(body, &mut record).is_ok() && {
                                program.run(&record, &mut out);
                                out[n]
                            }
                        }
                    };
                    if keep {
                        emit(body, &mut gz)?;
                    }
                }
                after = last;
            }
        }
    }
    if in_piece > 0 || pieces == 0 {
        put(pieces, finish(gz)?)?;
        pieces += 1;
    }
    Ok((pieces, written))
}

/// A piece being compressed into its temporary file.
type Gz = flate2::write::GzEncoder<std::fs::File>;

/// The piece's file, complete and read from its start.
fn finish(gz: Gz) -> Result<std::fs::File, String> {
    use std::io::Seek as _;
    let mut f = gz.finish().map_err(|e| e.to_string())?;
    f.rewind().map_err(|e| e.to_string())?;
    Ok(f)
}

/// A batch being committed, and the line numbers of its rows.
type Pending = (
    tokio::task::JoinHandle<Result<Vec<(usize, String)>, super::error::ApiError>>,
    Vec<u64>,
);

/// A row read: its (first) line number and text, a line too long to hold, or a row that is
/// not text (each a failed row, the file read on).
enum Row {
    Text(u64, String),
    TooLong(u64),
    Bad(u64, &'static str),
}

/// Where a CSV record stands after some of its text: inside a quoted field or not, and
/// whether the current field is still empty. Scans as [`parse_csv`] reads, so a quote inside
/// an unquoted field (`5" screen`) opens nothing.
#[derive(Debug, Clone, Copy)]
pub struct CsvState {
    quoted: bool,
    field_empty: bool,
}

impl Default for CsvState {
    fn default() -> Self {
        Self {
            quoted: false,
            field_empty: true,
        }
    }
}

impl CsvState {
    /// Reads one more line of the record; true when a quoted field is still open at its end
    /// (the record goes on on the next line).
    pub fn open_after(&mut self, line: &str) -> bool {
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (self.quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                }
                (true, '"') => self.quoted = false,
                (false, '"') if self.field_empty => {
                    self.quoted = true;
                    self.field_empty = false;
                }
                (false, ',') => self.field_empty = true,
                (true, _) => {}
                (false, _) => self.field_empty = false,
            }
        }
        self.quoted
    }
}

/// Lines of a streamed file, each at most [`MAX_LINE`] bytes held.
struct Lines {
    reader: Reader,
    line: u64,
    buf: Vec<u8>,
}

impl Lines {
    fn new(reader: Reader) -> Self {
        Self {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The next line without its end, or `TooLong` (the rest of it skipped).
    async fn raw(&mut self) -> std::io::Result<Option<Row>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > MAX_LINE + 1 {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.reader.consume(take);
            if done {
                break;
            }
        }
        self.line += 1;
        if too_long {
            return Ok(Some(Row::TooLong(self.line)));
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        let bytes = std::mem::take(&mut self.buf);
        // A UTF-8 byte order mark (Excel's "CSV UTF-8") is not part of the first line.
        let bytes = if self.line == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
            bytes[3..].to_vec()
        } else {
            bytes
        };
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Some(Row::Text(self.line, s))),
            Err(_) => Ok(Some(Row::Bad(self.line, "not UTF-8 text"))),
        }
    }

    async fn line(&mut self) -> std::io::Result<Option<Row>> {
        self.raw().await
    }

    /// One CSV record: a line, joined with the next ones while a quoted field is open.
    async fn csv_record(&mut self) -> std::io::Result<Option<Row>> {
        let Some(first) = self.raw().await? else {
            return Ok(None);
        };
        let Row::Text(n, mut text) = first else {
            return Ok(Some(first));
        };
        let mut state = CsvState::default();
        // Each line is scanned once, as it joins: linear in the record's length.
        let mut open = state.open_after(&text);
        while open {
            match self.raw().await? {
                Some(Row::Text(_, more)) => {
                    text.push('\n');
                    text.push_str(&more);
                    if text.len() > MAX_LINE {
                        return Ok(Some(Row::TooLong(n)));
                    }
                    open = state.open_after(&more);
                }
                Some(Row::TooLong(_)) => return Ok(Some(Row::TooLong(n))),
                Some(Row::Bad(_, why)) => return Ok(Some(Row::Bad(n, why))),
                None => {
                    return Ok(Some(Row::Bad(
                        n,
                        "a quoted field is not closed before the end of the file",
                    )))
                }
            }
        }
        Ok(Some(Row::Text(n, text)))
    }
}

/// The fields of one CSV record (RFC 4180: `,` between fields, `"` around a field that
/// holds one, `""` for a quote inside).
pub fn parse_csv(record: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => out.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// A CSV column: where its value goes in the endpoint's JSON.
fn column_path(name: &str) -> Result<(Vec<&str>, Kind), String> {
    let parts: Vec<&str> = name.split('.').collect();
    let kind = match parts.as_slice() {
        ["Attributes", _] | ["User", "UserAttributes", _] => Kind::List,
        ["Metrics", _] | ["Location", "Latitude" | "Longitude"] => Kind::Number,
        ["ChannelType" | "Address" | "Id" | "OptOut" | "RequestId" | "EffectiveDate" | "EndpointStatus"] => Kind::Text,
        ["Demographic" | "Location", _] | ["User", "UserId"] => Kind::Text,
        _ => {
            return Err("not an endpoint field; expected ChannelType, Address, Id, OptOut, Demographic.*, Location.*, Attributes.*, Metrics.*, User.UserId or User.UserAttributes.*".to_string())
        }
    };
    Ok((parts, kind))
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    List,
    Number,
}

/// Checks a CSV header. Its errors name columns by position, never by what they hold: the
/// first line of a file that is not an endpoint file may be anything (a secret).
pub fn check_header(cols: &[String]) -> Result<(), String> {
    let mut seen = std::collections::HashMap::new();
    for (i, c) in cols.iter().enumerate() {
        let c = c.trim();
        column_path(c).map_err(|why| format!("column {} of the header: {why}", i + 1))?;
        if let Some(first) = seen.insert(c, i) {
            return Err(format!(
                "columns {} and {} of the header name the same field",
                first + 1,
                i + 1
            ));
        }
    }
    // Every column must land in a known endpoint field.
    let probe = csv_row(
        cols,
        &cols.iter().map(|_| "0".to_string()).collect::<Vec<_>>(),
    );
    probe.map(|_| ()).map_err(|e| format!("header: {e}"))
}

/// An endpoint from a CSV row (empty cells left out).
pub fn csv_row(cols: &[String], fields: &[String]) -> Result<Endpoint, String> {
    if fields.len() != cols.len() {
        return Err(format!(
            "{} fields where the header has {} columns",
            fields.len(),
            cols.len()
        ));
    }
    let mut obj = Value::Object(Default::default());
    for (i, value) in fields.iter().enumerate() {
        if value.is_empty() {
            continue;
        }
        let col = format!("column {}", i + 1);
        let (path, kind) = column_path(cols[i].trim()).map_err(|why| format!("{col}: {why}"))?;
        let v = match kind {
            Kind::Text => Value::String(value.clone()),
            Kind::List => json!([value]),
            Kind::Number => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from)
                .ok_or_else(|| format!("{col}: expected a number"))?,
        };
        let mut at = &mut obj;
        for p in &path[..path.len() - 1] {
            at = at
                .as_object_mut()
                .ok_or_else(|| format!("{col}: clashes with another column"))?
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
        }
        at.as_object_mut()
            .ok_or_else(|| format!("{col}: clashes with another column"))?
            .insert(path[path.len() - 1].to_string(), v);
    }
    serde_json::from_value(obj).map_err(|e| crate::text::without_content(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_piece_closes_at_its_byte_limit_and_every_endpoint_lands_once() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(
            &super::super::store::DataSource::Sqlite(dir.path().join("p.db")),
            "us-east-1",
            "000000000000",
            1,
        )
        .unwrap();
        let app = store.create_app("big", &Default::default()).unwrap().id;
        // Endpoints of about 4 KB that do not compress well.
        let mut rng = fastrand::Rng::with_seed(7);
        let items: Vec<(String, Endpoint)> = (0..1500)
            .map(|i| {
                let noise: String = (0..4000).map(|_| rng.alphanumeric()).collect();
                let e: Endpoint = serde_json::from_value(json!({
                    "ChannelType": "SMS",
                    "Address": format!("+1555{i:07}"),
                    "Attributes": {"noise": [noise]},
                }))
                .unwrap();
                (format!("e{i}"), e)
            })
            .collect();
        store
            .update_endpoints(&app, items, |i| format!("Item[{i}]"), "r")
            .unwrap();
        let mut sizes = Vec::new();
        let mut ids = HashSet::new();
        let limit = PieceLimit {
            endpoints: 1000,
            bytes: 1024 * 1024,
        };
        let (pieces, written) = export_scan(&store, &app, None, None, limit, |n, mut file| {
            assert_eq!(n, sizes.len() as u64);
            let mut gz = Vec::new();
            file.read_to_end(&mut gz).unwrap();
            sizes.push(gz.len() as u64);
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .unwrap();
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                assert!(ids.insert(v["Id"].as_str().unwrap().to_string()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(written, 1500);
        assert_eq!(ids.len(), 1500, "every endpoint once");
        assert_eq!(pieces as usize, sizes.len());
        assert!(
            pieces >= 3,
            "4.5 MB compressed in pieces of about 1 MiB: {sizes:?}"
        );
        for s in &sizes[..sizes.len() - 1] {
            // Closed at the first check (every 256 endpoints, under 1 MiB here) past the limit.
            assert!(*s >= limit.bytes && *s < 2 * limit.bytes, "{sizes:?}");
        }
    }

    #[test]
    fn csv_fields_quotes_and_dotted_columns() {
        assert_eq!(
            parse_csv(r#"a,"b,c","say ""hi""",,"#),
            vec!["a", "b,c", "say \"hi\"", "", ""]
        );
        let cols: Vec<String> = [
            "ChannelType",
            "Address",
            "Location.Country",
            "Attributes.Tier",
            "Metrics.score",
            "User.UserId",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        check_header(&cols).unwrap();
        let e = csv_row(&cols, &parse_csv("SMS,+15550100,CA,gold,4.5,u1")).unwrap();
        assert_eq!(e.location.unwrap().country.as_deref(), Some("CA"));
        assert_eq!(e.attributes.unwrap()["Tier"], vec!["gold".to_string()]);
        assert_eq!(e.metrics.unwrap()["score"], 4.5);
        assert_eq!(e.user.unwrap().user_id.as_deref(), Some("u1"));
        assert!(check_header(&["Nope".to_string()])
            .unwrap_err()
            .contains("not an endpoint field"));
        assert!(check_header(&["Demographic.Shoe".to_string()]).is_err());
        assert!(csv_row(&cols, &parse_csv("SMS,+1,CA,gold,lots,u1"))
            .unwrap_err()
            .contains("expected a number"));
    }
}
