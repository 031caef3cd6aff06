//! Import and export jobs, run in the background with Pinpoint's statuses and counters,
//! and Customer Profiles' segment estimates and snapshots: this module runs them;
//! [`import`], [`export`] and [`profiles`] do them.
//!
//! Import: the files under `S3Url` (CSV with dotted column names, or newline-delimited
//! JSON) are streamed, never held whole, by [`crate::audience::rows`]; each row is checked
//! like an UpdateEndpoint item, and a bad row fails that row (named by file and line in
//! `Failures`, at most 100 kept), not the job. Rows are committed in batches with the
//! counters, and the segment is written when the last file is read. Compressed files and
//! jobs over 1 GB are refused, as Pinpoint refuses them.
//!
//! Export: the members of a segment, or every endpoint, written under `S3UrlPrefix` as gzip
//! newline-delimited EndpointResponse objects, `<JobId>/part-00000.gz` onward.
//!
//! Each job is held by one server at a time under a lease it renews (a third of the lease
//! apart); every write the job makes checks the lease, so a server that lost it writes
//! nothing more. A job a stop cut short, or whose server died, runs again from its start
//! on the server that claims it next: at start (SQLite: its only server), or when the lease
//! runs out (PostgreSQL: any replica, each polling for such jobs).

mod export;
mod import;
mod profiles;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::objects::Objects;
use super::store::{JobKind, OpenJob, Store};
use crate::text::now_iso;

pub use export::{export_scan, PieceLimit, PIECE};
pub use import::batch_rows as import_batch_rows;

/// Pinpoint's limit on the files of one import job.
pub const MAX_IMPORT_BYTES: u64 = 1024 * 1024 * 1024;
/// Failures kept in a job's `Failures`.
pub const MAX_FAILURES: usize = 100;
/// Import jobs running at once (Pinpoint's quota); more wait their turn.
pub const CONCURRENT_JOBS: usize = 10;
/// How often a server looks for jobs whose lease ran out.
const CLAIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

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

/// A job's counters back at zero, as it starts (again).
fn reset_counters(job: &mut Value) {
    for k in [
        "CompletedPieces",
        "FailedPieces",
        "TotalFailures",
        "TotalPieces",
        "TotalProcessed",
    ] {
        set(job, k, 0);
    }
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
                JobKind::SegmentEstimate => this.estimate(&app, &mut job).await,
                JobKind::SegmentSnapshot => this.snapshot(&app, &mut job).await,
            };
            if let Err(reason) = outcome {
                // The reason quotes what the request named (a URL): escaped, it forges no line.
                let shown = crate::text::safe(&reason);
                tracing::warn!(job = %job["Id"], reason = %shown, "job failed");
                if kind == JobKind::Import {
                    // What it staged goes; endpoints it registered stay registered.
                    let store = this.store.clone();
                    let id = job["Id"].as_str().unwrap_or_default().to_string();
                    let _ =
                        tokio::task::spawn_blocking(move || retrying(|| store.clear_import(&id)))
                            .await;
                }
                set(&mut job, "JobStatus", "FAILED");
                if kind == JobKind::SegmentEstimate {
                    // Customer Profiles says why in `Message` (1–255 characters).
                    set(
                        &mut job,
                        "Message",
                        reason.chars().take(255).collect::<String>(),
                    );
                } else if kind == JobKind::SegmentSnapshot {
                    // … and, for a snapshot, in `StatusMessage` (1–1000).
                    let why = reason.chars().take(1000).collect::<String>();
                    set(&mut job, "StatusMessage", why);
                } else {
                    set(&mut job, "CompletionDate", now_iso());
                    fail_row(&mut job, reason);
                }
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
}
