//! `segmentctl run`: the controller. Watches the folder, re-checks for drift on an interval,
//! and runs the same pipeline and safety rules as `apply`.
//!
//! Each round reads the folder (keeping the last good desired state when it does not
//! validate), observes the applications this instance owns and that are not backing off,
//! plans, and applies (mode `apply`, unless `suspend: true`). An application that fails backs
//! off exponentially, with jitter, without holding up the others. On shutdown the steps in
//! flight finish, none is started, and the process exits.

pub mod metrics;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::sync::{mpsc, watch as signal};

use crate::api::Counters;
use crate::apply::{self, StepResult};
use crate::commands::Overrides;
use crate::config::Config;
use crate::desired::{AppKey, DesiredState};
use crate::observe::{self, Scope};
use crate::plan;
use crate::target::{self, Connection};
use metrics::{Metrics, Outcome};

/// Whether the daemon changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Apply the plan, correcting drift.
    Apply,
    /// Only observe and report.
    Observe,
}

/// `--shard I/N`: this instance owns the applications whose key hashes to I.
///
/// The hash is 64-bit FNV-1a of the application's shard key, taken modulo N: the application
/// id, or `ref:<name>` for one declared by an Application manifest (so that it stays on one
/// shard before and after it is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("expected I/N, found {text:?}"))?;
        let (index, count) = (i.trim().parse::<u32>(), n.trim().parse::<u32>());
        match (index, count) {
            (Ok(index), Ok(count)) if count > 0 && index < count => Ok(Self { index, count }),
            _ => Err(format!("expected I/N with 0 ≤ I < N, found {text:?}")),
        }
    }

    /// The ordinal of a StatefulSet pod (`segmentctl-2` → 2).
    pub fn from_hostname(hostname: &str, count: u32) -> Result<Self, String> {
        let ordinal = hostname
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u32>().ok())
            .ok_or_else(|| {
                format!(
                    "hostname {hostname:?} does not end in -<ordinal> as a StatefulSet pod's does"
                )
            })?;
        if ordinal >= count {
            return Err(format!("pod ordinal {ordinal} is not below the shard count {count}; scale the StatefulSet and --shard-from-hostname together"));
        }
        Ok(Self {
            index: ordinal,
            count,
        })
    }

    pub fn owns(&self, key: &str) -> bool {
        fnv1a(key.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The key an application is sharded by (see [`AppKey::shard_key`]).
pub fn shard_key(key: &AppKey) -> String {
    key.shard_key()
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub overrides: Overrides,
    pub interval: Duration,
    pub admin_listen: SocketAddr,
    pub mode: Mode,
    pub shard: Option<Shard>,
}

/// One application's last reconcile, as `/` shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AppStatus {
    pub application: String,
    pub last_run: String,
    pub result: Option<Outcome>,
    pub managed_segments: usize,
    pub drifted: Vec<String>,
    pub blocked: Vec<String>,
    pub last_error: Option<String>,
    pub revision: Option<String>,
    /// When a failing application will be tried again.
    pub retry_in_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub ready: bool,
    pub mode: Mode,
    pub suspended: bool,
    pub shard: Option<Shard>,
    pub rounds: u64,
    /// The folder's revision (git-sync's checkout name), when it is a symlink.
    pub revision: Option<String>,
    pub desired_digest: Option<String>,
    /// Why the manifests do not validate (the last good state is in use meanwhile).
    pub manifest_errors: Vec<String>,
    pub applications: BTreeMap<String, AppStatus>,
}

/// What the admin endpoints read.
pub struct Shared {
    pub status: Mutex<Status>,
    pub metrics: Mutex<Metrics>,
    api: Mutex<Option<Arc<Counters>>>,
}

impl Shared {
    fn new(cfg: &DaemonConfig) -> Self {
        Self {
            status: Mutex::new(Status {
                ready: false,
                mode: cfg.mode,
                suspended: false,
                shard: cfg.shard,
                rounds: 0,
                revision: None,
                desired_digest: None,
                manifest_errors: Vec::new(),
                applications: BTreeMap::new(),
            }),
            metrics: Mutex::new(Metrics::default()),
            api: Mutex::new(None),
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn metrics_text(&self) -> String {
        let api = self
            .api
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.snapshot())
            .unwrap_or_default();
        metrics::render(
            &self.metrics.lock().unwrap_or_else(|p| p.into_inner()),
            &api,
        )
    }
}

/// `/livez`, `/readyz`, `/metrics` and `/`.
pub fn admin_router(shared: Arc<Shared>) -> Router {
    async fn livez() -> &'static str {
        "ok\n"
    }
    async fn readyz(State(s): State<Arc<Shared>>) -> Response {
        if s.status().ready {
            (StatusCode::OK, "ready\n").into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no successful reconcile yet\n",
            )
                .into_response()
        }
    }
    async fn metrics(State(s): State<Arc<Shared>>) -> Response {
        (
            [("content-type", "text/plain; version=0.0.4")],
            s.metrics_text(),
        )
            .into_response()
    }
    async fn status(State(s): State<Arc<Shared>>) -> Response {
        axum::Json(s.status()).into_response()
    }
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(status))
        .with_state(shared)
}

/// Exponential backoff with jitter, capped: 1 s, 2 s, 4 s … 5 min, each × [0.5, 1).
pub fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << attempts.min(9))
        .min(Duration::from_secs(300));
    base.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// The interval with ±10 % jitter, so that replicas and restarts spread out.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

struct Backoff {
    attempts: u32,
    until: Instant,
}

/// A running daemon (in-process, for tests and `segmentctl run`).
pub struct RunningDaemon {
    pub admin: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Option<signal::Sender<bool>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningDaemon {
    /// Asks it to stop (as SIGTERM does) and waits.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        (&mut self.task).await?
    }

    /// Waits until `/readyz` would say ready.
    pub async fn ready(&self, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.shared.status().ready {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Starts the daemon: connects, binds the admin server, and runs rounds until stopped.
pub async fn start(cfg: DaemonConfig) -> anyhow::Result<RunningDaemon> {
    let mut config =
        Config::load(&cfg.dir, cfg.config_file.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.overrides.apply_to(&mut config);
    let conn = target::connect(&config, &cfg.dir).await?;
    start_with(cfg, conn).await
}

/// Starts the daemon over an open connection.
pub async fn start_with(cfg: DaemonConfig, conn: Connection) -> anyhow::Result<RunningDaemon> {
    let shared = Arc::new(Shared::new(&cfg));
    *shared.api.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.api.counters.clone());
    let listener = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for the admin endpoints: {e}",
                cfg.admin_listen
            )
        })?;
    let admin = listener.local_addr()?;
    let (stop_tx, stop_rx) = signal::channel(false);
    let admin_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let router = admin_router(shared.clone());
    let admin_task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(admin_stop)
            .await
    });
    tracing::info!(admin = %admin, target = %conn.endpoint, mode = ?cfg.mode, "segmentctl run started");
    let task = tokio::spawn({
        let shared = shared.clone();
        async move {
            let result = rounds(cfg, conn, shared, stop_rx).await;
            let _ = admin_task.await;
            result
        }
    });
    Ok(RunningDaemon {
        admin,
        shared,
        stop: Some(stop_tx),
        task,
    })
}

/// Runs until `shutdown` resolves; for the command line.
pub async fn run(
    cfg: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let daemon = start(cfg).await?;
    shutdown.await;
    tracing::info!("stopping: finishing the steps in flight");
    daemon.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

/// What the daemon keeps of the last folder that validated: the files' bytes (one compact
/// copy, parsed again only if the folder stops validating) and each application's
/// fingerprint. Keeping no parsed structures between rounds lets the memory of a round over
/// many segments go back to the system.
struct LastGood {
    sources: Vec<crate::manifest::Source>,
    fingerprints: BTreeMap<String, String>,
}

impl LastGood {
    fn desired(&self) -> Option<DesiredState> {
        let loaded = crate::manifest::load_sources(&self.sources);
        crate::desired::build(&loaded.documents).ok()
    }
}

/// The shard keys of the applications whose desired state differs; `None` when one was
/// removed (a removal is checked by a full round, whose scan sees what it leaves behind).
fn changed_apps(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Option<std::collections::BTreeSet<String>> {
    if old.keys().any(|k| !new.contains_key(k)) {
        return None;
    }
    Some(
        new.iter()
            .filter(|(k, v)| old.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect(),
    )
}

static RELEASE_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Lets the binary say how its global allocator gives freed memory back (see `main.rs`).
pub fn set_memory_release(hook: fn()) {
    let _ = RELEASE_HOOK.set(hook);
}

/// Hands memory freed by a round back to the system. A round over many segments allocates
/// much and frees nearly all of it; an allocator that keeps the pages would leave a
/// long-running, mostly idle controller at its peak.
pub fn release_memory() {
    match RELEASE_HOOK.get() {
        Some(hook) => hook(),
        None => {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only releases free memory; it has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// Limits glibc to a few malloc arenas: each thread otherwise gets its own, and freed
/// memory scattered over them is never returned. Call once, before threads start.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt with M_ARENA_MAX only bounds future arena creation.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn rounds(
    cfg: DaemonConfig,
    conn: Connection,
    shared: Arc<Shared>,
    mut stop: signal::Receiver<bool>,
) -> anyhow::Result<()> {
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let watcher = tokio::spawn(watch::watch(cfg.dir.clone(), changed_tx));
    let mut last_good: Option<LastGood> = None;
    let mut backoffs: BTreeMap<String, Backoff> = BTreeMap::new();
    let mut next_resync = Instant::now();
    // The first round, each resync and each backoff expiry cover everything; a change in the
    // folder covers the applications whose desired state changed.
    let mut full = true;
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        round(
            &cfg,
            &conn,
            &shared,
            &mut last_good,
            &mut backoffs,
            stop.clone(),
            full,
        )
        .await;
        shared
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        if started >= next_resync {
            next_resync = Instant::now() + jittered(cfg.interval);
        }
        let wake = backoffs
            .values()
            .map(|b| b.until)
            .min()
            .map_or(next_resync, |b| b.min(next_resync));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(()) = changed_rx.recv() => {
                tracing::info!("manifests changed");
                full = false;
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                tracing::debug!("resync");
                full = true;
            }
        }
    }
    watcher.abort();
    conn.close().await;
    Ok(())
}

/// One reconcile of everything this instance owns.
async fn round(
    cfg: &DaemonConfig,
    conn: &Connection,
    shared: &Shared,
    last_good: &mut Option<LastGood>,
    backoffs: &mut BTreeMap<String, Backoff>,
    cancel: signal::Receiver<bool>,
    full: bool,
) {
    let revision = watch::revision(&cfg.dir);
    let mut only: Option<std::collections::BTreeSet<String>> = None;
    let (desired, config) = match crate::workspace::load(&cfg.dir, cfg.config_file.as_deref()) {
        Ok(mut ws) => {
            cfg.overrides.apply_to(&mut ws.config);
            shared
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .manifest_errors
                .clear();
            let prints = ws.desired.fingerprints();
            if !full {
                only = last_good
                    .as_ref()
                    .and_then(|old| changed_apps(&old.fingerprints, &prints));
            }
            *last_good = Some(LastGood {
                sources: ws.sources,
                fingerprints: prints,
            });
            (ws.desired, ws.config)
        }
        Err(errors) => {
            tracing::error!(errors = errors.len(), first = %errors[0], "the manifests do not validate; keeping the last good state");
            {
                let mut st = shared.status.lock().unwrap_or_else(|p| p.into_inner());
                st.manifest_errors = errors.iter().take(50).map(|e| e.to_string()).collect();
            }
            *shared
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reconcile_total
                .entry(("(manifests)".into(), Outcome::Invalid))
                .or_default() += 1;
            let Some(good) = last_good.as_ref().and_then(LastGood::desired) else {
                return;
            };
            let mut config = Config::load(&cfg.dir, cfg.config_file.as_deref()).unwrap_or_default();
            cfg.overrides.apply_to(&mut config);
            (good, config)
        }
    };
    let now = Instant::now();
    let shard = cfg.shard;
    let in_shard = |key: &str| shard.is_none_or(|s| s.owns(key));
    let due = |key: &str| backoffs.get(key).is_none_or(|b| b.until <= now);
    let wanted = |key: &str| only.as_ref().is_none_or(|o| o.contains(key));
    let owns = |key: &str| in_shard(key) && due(key) && wanted(key);
    if only.as_ref().is_some_and(|o| o.is_empty()) {
        tracing::debug!("no application's desired state changed");
        return;
    }
    let scope = Scope {
        owner: &config.owner,
        owns: &owns,
    };
    let observed = match observe::observe(&conn.api, &desired, &scope).await {
        Ok(o) => o,
        Err(e) => {
            let msg = match &e {
                observe::ObserveError::ListApps(call) => {
                    crate::commands::target_error(call, &conn.endpoint).to_string()
                }
                other => other.to_string(),
            };
            tracing::error!(error = %msg, "cannot observe the target");
            let mut st = shared.status.lock().unwrap_or_else(|p| p.into_inner());
            let app = st.applications.entry("(target)".into()).or_default();
            app.application = "(target)".into();
            app.last_error = Some(msg);
            app.result = Some(Outcome::Error);
            *shared
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reconcile_total
                .entry(("(target)".into(), Outcome::Error))
                .or_default() += 1;
            return;
        }
    };
    let settings = crate::commands::settings(&config);
    let p = plan::plan(&desired, &observed, &settings);
    let applying = cfg.mode == Mode::Apply && !config.suspend && !p.is_empty();
    let report = if applying {
        let opts = apply::Options {
            concurrency: config.concurrency,
            allow_delete_in_use: false,
            progress: false,
            cancel: Some(cancel),
        };
        Some(apply::apply(&conn.api, &p, &opts).await)
    } else {
        None
    };

    let mut st = shared.status.lock().unwrap_or_else(|p| p.into_inner());
    let mut m = shared.metrics.lock().unwrap_or_else(|p| p.into_inner());
    st.rounds += 1;
    st.suspended = config.suspend;
    st.revision = revision.clone();
    st.desired_digest = Some(p.desired_digest.clone());
    let mut any_error = false;
    for app in &p.apps {
        let label = app.app_name.clone();
        let key = shard_key(&app.key());
        let failed: Vec<String> = report
            .iter()
            .flat_map(|r| &r.steps)
            .filter(|s| s.app == app.app_name)
            .filter_map(|s| match &s.result {
                StepResult::Failed(e) | StepResult::Skipped(e) => {
                    Some(format!("{} {}: {e}", s.action.verb(), s.name))
                }
                _ => None,
            })
            .chain(
                report
                    .iter()
                    .flat_map(|r| &r.app_errors)
                    .filter(|(a, _)| *a == app.display())
                    .map(|(_, e)| e.clone()),
            )
            .collect();
        let blocked: Vec<String> = app
            .steps
            .iter()
            .filter(|s| s.is_blocked())
            .map(|s| {
                format!(
                    "{} {}: {}",
                    s.action.verb(),
                    s.name,
                    s.blocked
                        .iter()
                        .map(|b| b.reason.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
            .collect();
        let drifted: Vec<String> = app
            .steps
            .iter()
            .filter(|s| s.drift.is_some())
            .map(|s| s.name.clone())
            .collect();
        let error = app
            .error
            .clone()
            .or_else(|| (!failed.is_empty()).then(|| failed.join("; ")));
        let outcome = if error.is_some() {
            Outcome::Error
        } else if !blocked.is_empty() {
            Outcome::Blocked
        } else {
            Outcome::Success
        };
        let retry = if error.is_some() {
            any_error = true;
            let b = backoffs.entry(key.clone()).or_insert(Backoff {
                attempts: 0,
                until: now,
            });
            let delay = backoff(b.attempts);
            b.attempts += 1;
            b.until = Instant::now() + delay;
            tracing::warn!(application = %label, error = error.as_deref().unwrap_or(""), retry_in = ?delay, "reconcile failed; backing off");
            Some(delay.as_secs_f64())
        } else {
            backoffs.remove(&key);
            m.last_success.insert(label.clone(), now_unix());
            None
        };
        *m.reconcile_total
            .entry((label.clone(), outcome))
            .or_default() += 1;
        m.managed_segments.insert(label.clone(), app.managed);
        m.drifted_segments.insert(label.clone(), drifted.len());
        m.blocked_steps.insert(label.clone(), blocked.len());
        if !drifted.is_empty() {
            tracing::warn!(application = %label, segments = ?drifted, corrected = applying, "drift: segments changed outside segmentctl");
        }
        st.applications.insert(
            label.clone(),
            AppStatus {
                application: app.app_id.clone().unwrap_or_else(|| key.clone()),
                last_run: crate::server::store::now_iso(),
                result: Some(outcome),
                managed_segments: app.managed,
                drifted,
                blocked,
                last_error: error,
                revision: revision.clone().or_else(|| Some(p.desired_digest.clone())),
                retry_in_seconds: retry,
            },
        );
    }
    st.applications.remove("(target)");
    if !any_error || !st.ready {
        // Ready once a round has read the manifests and the target and planned everything.
        st.ready = st.ready || last_good.is_some();
    }
    if let Some(r) = &report {
        tracing::info!(summary = %r.summary(), "applied");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_divide_keys_stably() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert!(Shard::parse("3/3").is_err());
        assert_eq!(
            Shard::from_hostname("segmentctl-2", 3),
            Ok(Shard { index: 2, count: 3 })
        );
        assert!(Shard::from_hostname("segmentctl", 3).is_err());
        // A documented, stable hash: these values must never change between releases.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let keys: Vec<String> = (0..100).map(|i| format!("{i:032x}")).collect();
        let (a, b) = (Shard { index: 0, count: 2 }, Shard { index: 1, count: 2 });
        assert!(
            keys.iter().all(|k| a.owns(k) != b.owns(k)),
            "every key has exactly one owner"
        );
        let mine = keys.iter().filter(|k| a.owns(k)).count();
        assert!((30..=70).contains(&mine), "roughly even: {mine}");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert!(backoff(0) <= Duration::from_secs(1) && backoff(0) >= Duration::from_millis(500));
        assert!(backoff(3) >= Duration::from_secs(4) && backoff(3) <= Duration::from_secs(8));
        assert!(backoff(30) <= Duration::from_secs(300));
    }
}
