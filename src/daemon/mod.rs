//! `segmentctl run`: the controller. Watches the folder, re-checks for drift on an interval,
//! and runs the same pipeline and safety rules as `apply`.
//!
//! In the shape of kube-runtime's controller: [`round::round`] does one round (load the
//! folder, keeping the last good manifests and settings when it does not load; observe the
//! applications this instance owns and that are due; plan; apply) and says what happened to
//! each application; [`policy`] decides from that when each is tried again and whether the
//! controller is ready. This module wires them to the watcher, the timer and the admin
//! endpoints. On shutdown the steps in flight finish, none is started, and the process exits.

pub mod definitions;
pub mod metrics;
pub mod policy;
pub mod round;
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

use crate::reconcile::outcome::StepResult;
use crate::reconcile::pipeline::{Inputs, Overrides};
use crate::targets::pinpoint::pacing::Counters;
use crate::targets::{self, Connection, ProfilesConnection};
use metrics::{Metrics, Outcome};
use policy::Backoffs;
use round::{Identity, RoundContext, RoundOutcome, RoundState};

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

/// Admin connections served at once, by default: the kubelet's probes and a scraper need a
/// few; a flood waits in the kernel's backlog instead of taking the controller's descriptors.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub overrides: Overrides,
    pub interval: Duration,
    /// `/livez` fails once a round has run this long.
    pub stuck_after: Duration,
    pub admin_listen: SocketAddr,
    /// Admin connections served at once (more wait in the kernel's backlog).
    pub admin_max_connections: usize,
    /// An admin connection that takes longer to send a request's headers is closed.
    pub admin_header_timeout: Duration,
    pub mode: Mode,
    pub shard: Option<Shard>,
}

/// One application's last reconcile, as `/` shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AppStatus {
    /// The application's id (or `ref:<name>` before it is created).
    pub application: String,
    /// Its display name.
    pub name: String,
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
    /// Where this controller acts, and as which owner.
    pub target: Option<crate::plan::live::TargetInfo>,
    pub mode: Mode,
    pub suspended: bool,
    pub shard: Option<Shard>,
    pub rounds: u64,
    /// The folder's revision (git-sync's checkout name), when it is a symlink.
    pub revision: Option<String>,
    pub desired_digest: Option<String>,
    /// Why the manifests or the configuration do not load (the last good state, settings
    /// included, is in use meanwhile).
    pub manifest_errors: Vec<String>,
    /// By application id (or `ref:<name>` before it is created): names are not unique.
    pub applications: BTreeMap<String, AppStatus>,
    /// The last rounds that changed something or failed, oldest first (at most
    /// [`HISTORY_ROUNDS`]).
    pub history: std::collections::VecDeque<RoundRecord>,
}

/// How many rounds `/` keeps in its history.
pub const HISTORY_ROUNDS: usize = 20;
/// How many steps of one round the history keeps.
pub const HISTORY_STEPS: usize = 100;

/// One round in the history: when, at which revision, and each step's event.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRecord {
    pub round: u64,
    pub finished_at: String,
    pub revision: Option<String>,
    /// `apply --format json`'s step events.
    pub steps: Vec<serde_json::Value>,
    /// Steps past [`HISTORY_STEPS`], counted only.
    pub steps_not_shown: usize,
    /// Applications that failed, and why.
    pub errors: Vec<String>,
}

/// What the admin endpoints read.
pub struct Shared {
    pub status: Mutex<Status>,
    pub metrics: Mutex<Metrics>,
    api: Mutex<Option<Arc<Counters>>>,
    /// When the round in progress started; `None` between rounds.
    round_started: Mutex<Option<Instant>>,
    stuck_after: Duration,
}

impl Shared {
    fn new(cfg: &DaemonConfig) -> Self {
        Self {
            status: Mutex::new(Status {
                ready: false,
                target: None,
                mode: cfg.mode,
                suspended: false,
                shard: cfg.shard,
                rounds: 0,
                revision: None,
                desired_digest: None,
                manifest_errors: Vec::new(),
                applications: BTreeMap::new(),
                history: Default::default(),
            }),
            metrics: Mutex::new(Metrics::default()),
            api: Mutex::new(None),
            round_started: Mutex::new(None),
            stuck_after: cfg.stuck_after,
        }
    }

    /// How long the round in progress has gone without finishing a step (or since it
    /// started), when that is longer than `stuck_after`: the loop is stuck (a read that never
    /// ends, a call that never returns), and a restart is the way out.
    pub fn stuck_for(&self) -> Option<Duration> {
        let started = *self.round_started.lock().unwrap_or_else(|p| p.into_inner());
        started
            .map(|s| s.elapsed())
            .filter(|running| *running > self.stuck_after)
    }

    /// A step finished: the round is moving, however long it takes.
    fn progress(&self) {
        let mut started = self.round_started.lock().unwrap_or_else(|p| p.into_inner());
        if started.is_some() {
            *started = Some(Instant::now());
        }
    }

    fn round_running(&self, running: bool) {
        *self.round_started.lock().unwrap_or_else(|p| p.into_inner()) = running.then(Instant::now);
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
    async fn livez(State(s): State<Arc<Shared>>) -> Response {
        match s.stuck_for() {
            None => (StatusCode::OK, "ok\n").into_response(),
            Some(running) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "stuck: the reconcile round has run for {} s (--stuck-after {} s)\n",
                    running.as_secs(),
                    s.stuck_after.as_secs()
                ),
            )
                .into_response(),
        }
    }
    async fn readyz(State(s): State<Arc<Shared>>) -> Response {
        if s.status().ready {
            (StatusCode::OK, "ready\n").into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no reconcile has finished yet\n",
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
/// What the controller reconciles: a Pinpoint target's applications, or a Customer
/// Profiles domain (a `customerProfiles` target, or the embedded default when the folder
/// holds `SegmentDefinition` manifests).
pub enum Reconciled {
    Pinpoint(Connection),
    Profiles(ProfilesConnection),
}

impl Reconciled {
    fn counters(&self) -> Arc<Counters> {
        match self {
            Reconciled::Pinpoint(c) => c.pinpoint.api.counters.clone(),
            Reconciled::Profiles(c) => c.profiles.api.counters.clone(),
        }
    }

    async fn close(self) {
        match self {
            Reconciled::Pinpoint(c) => c.close().await,
            Reconciled::Profiles(c) => c.close().await,
        }
    }
}

pub async fn start(cfg: DaemonConfig) -> anyhow::Result<RunningDaemon> {
    let config = settings_at_start(&cfg)?;
    let profiles = match &config.target {
        crate::manifests::config::Target::CustomerProfiles(_) => true,
        crate::manifests::config::Target::Local { .. } => {
            // The folder's kind decides the embedded default's API; a folder that does not
            // load is the first round's to report.
            let inputs = Inputs {
                dir: cfg.dir.clone(),
                config: cfg.config_file.clone(),
                overrides: cfg.overrides.clone(),
            };
            crate::reconcile::pipeline::load(&inputs).is_ok_and(|ws| ws.is_profiles())
        }
        _ => false,
    };
    let conn = if profiles {
        Reconciled::Profiles(targets::connect_profiles(&config, &cfg.dir, true).await?)
    } else {
        Reconciled::Pinpoint(targets::connect(&config, &cfg.dir).await?)
    };
    start_reconciling(cfg, conn).await
}

/// The settings the controller starts with: the configuration (as discovered for the folder,
/// or `--config`) with the command line's overrides.
fn settings_at_start(cfg: &DaemonConfig) -> anyhow::Result<crate::manifests::config::Config> {
    let mut config = crate::manifests::config::Config::load(&cfg.dir, cfg.config_file.as_deref())
        .map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    cfg.overrides.apply_to(&mut config);
    if let Some(problem) = config.problem() {
        anyhow::bail!("{problem}");
    }
    Ok(config)
}

/// Starts the daemon over an open connection to a Pinpoint target.
pub async fn start_with(cfg: DaemonConfig, conn: Connection) -> anyhow::Result<RunningDaemon> {
    start_reconciling(cfg, Reconciled::Pinpoint(conn)).await
}

/// Starts the daemon over an open connection.
pub async fn start_reconciling(
    cfg: DaemonConfig,
    conn: Reconciled,
) -> anyhow::Result<RunningDaemon> {
    let settings = settings_at_start(&cfg)?;
    let identity = Identity::of(&settings);
    let mut info = crate::plan::live::TargetInfo::of(&settings, &cfg.dir);
    if let Reconciled::Profiles(p) = &conn {
        info.domain = Some(p.domain.clone());
    }
    let shared = Arc::new(Shared::new(&cfg));
    *shared.api.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.counters());
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
    // The API server's listener: a client that never finishes its headers, or a flood of
    // them, cannot hold the descriptors the controller needs to read its folder.
    let admin_task = tokio::spawn(crate::server::serve_connections(
        listener,
        router,
        cfg.admin_max_connections,
        cfg.admin_header_timeout,
        admin_stop,
    ));
    tracing::info!(admin = %admin, target = %info.place(), owner = %crate::text::safe(&info.owner), config = %info.from(), mode = ?cfg.mode, "segmentctl run started");
    shared
        .status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .target = Some(info);
    let task = tokio::spawn({
        let shared = shared.clone();
        async move {
            let result = rounds(cfg, identity, conn, shared, stop_rx).await;
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
    identity: Identity,
    conn: Reconciled,
    shared: Arc<Shared>,
    mut stop: signal::Receiver<bool>,
) -> anyhow::Result<()> {
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let watcher = tokio::spawn(watch::watch(cfg.dir.clone(), changed_tx));
    let inputs = Inputs {
        dir: cfg.dir.clone(),
        config: cfg.config_file.clone(),
        overrides: cfg.overrides.clone(),
    };
    let mut state = RoundState::default();
    let mut backoffs = Backoffs::default();
    let mut next_resync = tokio::time::Instant::now();
    // The first round, each resync and each backoff expiry cover everything; a change in the
    // folder covers the applications whose desired state changed.
    let mut full = true;
    loop {
        if *stop.borrow() {
            break;
        }
        let started = tokio::time::Instant::now();
        let shard = cfg.shard;
        let owns = |key: &str| shard.is_none_or(|s| s.owns(key)) && backoffs.due(key, started);
        let cx = RoundContext {
            inputs: &inputs,
            mode: cfg.mode,
            identity: &identity,
            owns: &owns,
            full,
            cancel: Some(stop.clone()),
            // Each finished step shows the round is moving: /livez times the time since
            // the last one, so a long apply is slow, not stuck.
            events: Some({
                let shared = shared.clone();
                Arc::new(move |_: &crate::reconcile::outcome::StepReport| shared.progress())
            }),
        };
        shared.round_running(true);
        let outcome = match &conn {
            Reconciled::Pinpoint(c) => round::round(&c.pinpoint, &cx, &mut state).await,
            Reconciled::Profiles(c) => {
                definitions::round(&c.profiles, &c.domain, c.embedded, &cx, &mut state).await
            }
        };
        shared.round_running(false);
        let finished = tokio::time::Instant::now();
        let delays = backoffs.record(&outcome, finished);
        backoffs.forget_others(&outcome);
        shared.record(&outcome, &delays, watch::revision(&cfg.dir));
        shared
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reconcile_duration
            .observe((finished - started).as_secs_f64());
        drop(outcome);
        release_memory();
        if started >= next_resync {
            next_resync = tokio::time::Instant::now() + policy::jittered(cfg.interval);
        }
        let wake = backoffs.next_wake(next_resync);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(()) = changed_rx.recv() => {
                tracing::info!("manifests changed");
                full = false;
            }
            _ = tokio::time::sleep_until(wake) => {
                tracing::debug!("resync");
                full = true;
            }
        }
    }
    watcher.abort();
    conn.close().await;
    Ok(())
}

impl Shared {
    /// Shows a round in the status, the metrics and the log.
    fn record(
        &self,
        round: &RoundOutcome,
        delays: &BTreeMap<String, Duration>,
        revision: Option<String>,
    ) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        st.ready = policy::ready_after(st.ready, round);
        if round.invalid.is_empty() {
            st.manifest_errors.clear();
        } else {
            tracing::error!(errors = round.invalid.len(), first = %crate::text::safe(&round.invalid[0]), "the folder does not load; keeping the last good manifests and settings");
            st.manifest_errors = round.invalid.iter().take(50).cloned().collect();
            *m.reconcile_total
                .entry(("(manifests)".into(), Outcome::Invalid))
                .or_default() += 1;
        }
        if round.no_state || round.nothing_to_do {
            if round.nothing_to_do {
                tracing::debug!("no application's desired state changed");
            }
            return;
        }
        if let Some(e) = &round.target_error {
            tracing::error!(error = %crate::text::safe(&e.to_string()), "cannot observe the target");
            let app = st.applications.entry("(target)".into()).or_default();
            app.application = "(target)".into();
            app.last_error = Some(e.clone());
            app.result = Some(Outcome::Error);
            *m.reconcile_total
                .entry(("(target)".into(), Outcome::Error))
                .or_default() += 1;
            return;
        }
        st.applications.remove("(target)");
        st.rounds += 1;
        st.suspended = round.suspended;
        st.revision = revision.clone();
        st.desired_digest = round.desired_digest.clone();
        let now = now_unix();
        for app in &round.apps {
            let retry = delays.get(&app.shard_key);
            log_app(app, retry);
            app_metrics(&mut m, app, now);
            let shown = revision.clone().or_else(|| round.desired_digest.clone());
            st.applications
                .insert(app.key.clone(), app_status(app, retry, shown));
        }
        round.events.iter().for_each(log_event);
        remember(&mut st, round, revision);
    }
}

/// An application's failure or drift, in the log.
fn log_app(app: &round::AppOutcome, retry: Option<&Duration>) {
    match (&app.error, retry, app.result) {
        (Some(e), Some(d), Outcome::Busy) => {
            tracing::info!(application = %app.key, name = %crate::text::safe(&app.name), reason = %crate::text::safe(e), retry_in = ?d, "application busy");
        }
        (Some(e), Some(d), _) => {
            tracing::warn!(application = %app.key, name = %crate::text::safe(&app.name), error = %crate::text::safe(e), retry_in = ?d, "reconcile failed; backing off");
        }
        _ => {}
    }
    if !app.drifted.is_empty() {
        tracing::warn!(application = %app.key, segments = ?app.drifted, "drift: segments changed outside segmentctl");
    }
}

/// An application's round in the metrics.
fn app_metrics(m: &mut Metrics, app: &round::AppOutcome, now: f64) {
    if app.result != Outcome::Error {
        m.last_success.insert(app.key.clone(), now);
    }
    m.names.insert(app.key.clone(), app.name.clone());
    *m.reconcile_total
        .entry((app.key.clone(), app.result))
        .or_default() += 1;
    m.managed_segments.insert(app.key.clone(), app.managed);
    m.drifted_segments
        .insert(app.key.clone(), app.drifted.len());
    m.blocked_steps.insert(app.key.clone(), app.blocked.len());
}

/// An application's round as the status shows it.
fn app_status(
    app: &round::AppOutcome,
    retry: Option<&Duration>,
    revision: Option<String>,
) -> AppStatus {
    AppStatus {
        application: app.app_id.clone().unwrap_or_else(|| app.key.clone()),
        name: app.name.clone(),
        last_run: crate::text::now_iso(),
        result: Some(app.result),
        managed_segments: app.managed,
        drifted: app.drifted.clone(),
        blocked: app.blocked.clone(),
        last_error: app.error.clone(),
        revision,
        retry_in_seconds: retry.map(Duration::as_secs_f64),
    }
}

/// A finished step in the log: its line, and its fields for a JSON log.
fn log_event(e: &crate::reconcile::outcome::StepReport) {
    let (id, before, after, reason) = match &e.result {
        StepResult::Done(d) => (Some(d.id.as_str()), d.version_before, d.version_after, None),
        StepResult::Failed(err) => (None, None, None, Some(crate::text::error_chain(err))),
        StepResult::Blocked(b) => (
            None,
            None,
            None,
            Some(
                b.iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ),
        StepResult::Skipped(why) => (None, None, None, Some(why.to_string())),
    };
    tracing::info!(
        application = %crate::text::safe(&e.app),
        application_id = e.app_id.as_deref().unwrap_or(""),
        segment = %crate::text::safe(&e.name),
        action = e.action.verb(),
        result = e.result.label(),
        id = id.unwrap_or(""),
        version_before = before,
        version_after = after,
        reason = reason.as_deref().map(crate::text::safe).unwrap_or_default().as_ref(),
        "{}",
        crate::reconcile::outcome::event_line(e)
    );
}

/// The round in the history, when it carried out or failed a step or its errors are new: a
/// step blocked round after round, or the same error again, would push the real changes out.
fn remember(st: &mut Status, round: &RoundOutcome, revision: Option<String>) {
    let errors: Vec<String> = round
        .apps
        .iter()
        .filter_map(|a| Some(format!("{}: {}", a.key, a.error.as_ref()?)))
        .collect();
    let acted = round
        .events
        .iter()
        .any(|e| !matches!(e.result, StepResult::Blocked(_)))
        || round
            .definition_events
            .iter()
            .any(|e| e["result"] != "blocked");
    let new_errors =
        !errors.is_empty() && st.history.back().is_none_or(|last| last.errors != errors);
    if !(acted || new_errors) {
        return;
    }
    if st.history.len() == HISTORY_ROUNDS {
        st.history.pop_front();
    }
    let record = RoundRecord {
        round: st.rounds,
        finished_at: crate::text::now_iso(),
        revision,
        steps: round
            .events
            .iter()
            .map(crate::reconcile::outcome::event_json)
            .chain(round.definition_events.iter().cloned())
            .take(HISTORY_STEPS)
            .collect(),
        steps_not_shown: (round.events.len() + round.definition_events.len())
            .saturating_sub(HISTORY_STEPS),
        errors,
    };
    st.history.push_back(record);
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
}
