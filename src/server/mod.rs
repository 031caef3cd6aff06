//! `segmentctl serve`: the Pinpoint Segment API and Customer Profiles' segment-definition
//! API, self-hosted, over SQLite (one server) or PostgreSQL (replicas). This module holds
//! its configuration and starts it.
//!
//! Connections are HTTP/1.1 only, bounded in number, and closed when a request's headers take
//! longer than [`HEADER_TIMEOUT`] (idle keep-alive connections included): [`listen`]. Layers,
//! outermost first: request id and the request log → path and host checks → fault injection →
//! authentication (the Authorization header checked before the body is read; the body read
//! within the body timeout and a server-wide budget of bytes in flight; then the signature):
//! [`middleware`] → [`router`] (a router per resource, merged) → handlers (decode, and check
//! with `inputs` and `validate`) → store (SQLite or PostgreSQL), and the background [`jobs`].
//! Every answer carries `x-amzn-RequestId`; every error is an [`ApiError`].

pub mod access;
pub mod api;
pub mod auth;
mod connect;
pub mod endpoint;
pub mod error;
mod handlers;
pub mod inputs;
pub mod jobs;
pub mod limits;
mod listen;
mod middleware;
pub mod objects;
mod profiles;
mod router;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use auth::Credentials;
pub use error::{ApiError, ErrorKind};
pub use limits::{CounterSnapshot, FaultConfig};
pub use listen::serve_connections;
pub use middleware::DRAIN_BYTES;
pub use router::router;
use store::Store;

/// Pinpoint's request payload quota: 7 MB.
pub const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;
/// How long a client may take to send its body, by default.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, by default; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may take to send a request's headers, including the wait for the
/// next request on a kept-alive connection: idle connections cannot hold the server's slots.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Request bodies held in memory at once, over all connections, by default (64 MiB): the
/// server's memory stays bounded whatever many clients upload at once.
pub const BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// How the server checks who is calling.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Verify SigV4 against these credentials.
    SigV4(Credentials),
    /// Accept every request (only on a loopback address).
    None,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data: store::DataSource,
    /// Connections to PostgreSQL at most, how statements are sent, their timeout (SQLite:
    /// unused).
    pub pg: store::pg::PgSettings,
    /// How long a job stays a server's without renewal (then another replica takes it).
    pub job_lease: Duration,
    pub region: String,
    pub account_id: String,
    pub auth: Auth,
    /// Enforce Pinpoint's per-operation quotas with 429 TooManyRequestsException.
    pub rate_limits: bool,
    pub faults: FaultConfig,
    /// A request body not received within this is refused (slow or stalled clients).
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`BODY_BUDGET_BYTES`].
    pub body_budget: usize,
    /// Folders import and export jobs may name by `file://` URL.
    pub import_roots: Vec<PathBuf>,
    /// The S3 client's configuration for jobs; `None`: the standard AWS chain.
    pub s3: Option<aws_sdk_s3::Config>,
    /// `BUCKET` or `BUCKET/PREFIX` that jobs may name; empty: any the credentials reach.
    pub s3_allow: Vec<String>,
    /// Runs import and export jobs, and so holds the SQLite file's lock (one such server
    /// per file). Off for a server that only reads (the embedded server of `plan`): it
    /// neither takes the lock nor takes over jobs.
    pub run_jobs: bool,
}

impl ServerConfig {
    /// A loopback server on an ephemeral port, the way tests and the embedded default run it.
    pub fn local(data: PathBuf, auth: Auth) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: store::DataSource::Sqlite(data),
            pg: store::pg::PgSettings::new(store::DEFAULT_POOL),
            job_lease: store::DEFAULT_JOB_LEASE,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            auth,
            rate_limits: false,
            faults: FaultConfig::default(),
            body_timeout: BODY_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
            body_budget: BODY_BUDGET_BYTES,
            import_roots: Vec::new(),
            s3: None,
            s3_allow: Vec::new(),
            run_jobs: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0} without authentication: --no-auth is only allowed on a loopback address")]
    NoAuthOnPublicAddress(SocketAddr),
    #[error("cannot open the database {path}")]
    Open {
        path: String,
        #[source]
        source: store::sql::DbError,
    },
    #[error("the database {path} is in use by another segmentctl server ({holder}); one server runs a SQLite file: stop that one, or use PostgreSQL for several replicas")]
    InUse { path: String, holder: String },
    #[error("cannot lock the database {path} (through {path}.lock)")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Shared by every request.
pub struct AppState {
    pub store: Arc<Store>,
    auth: Auth,
    region: String,
    rate_limits: bool,
    body_timeout: Duration,
    /// Bytes of request bodies in memory, in KiB permits.
    bodies: Arc<tokio::sync::Semaphore>,
    body_budget_kib: u32,
    limiter: limits::RateLimiter,
    refusals: limits::RefusalLog,
    pub faults: limits::Faults,
    pub counters: limits::Counters,
    pub jobs: Arc<jobs::Jobs>,
    /// One readiness check at a time reaches the database (see `router::readyz`).
    pub(crate) probe: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// KiB of the request body budget no request holds now.
    pub fn body_budget_free_kib(&self) -> usize {
        self.bodies.available_permits()
    }
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    /// The SQLite file's lock, held while the server runs.
    _lock: Option<std::fs::File>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Migrates the store once its database answers (when it did not at start).
    migrator: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(m) = self.migrator.take() {
            m.abort();
        }
    }
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`, for an SDK's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.state.counters.snapshot()
    }

    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Opens the configured database and brings its schema up to date. A PostgreSQL database
/// that does not answer yet (down, starting, unreachable) is no error: the store is
/// returned unmigrated, answering 503 (and `/readyz` 503) until [`migrate_until_ready`]
/// reaches it. One that answers and refuses (a wrong password, no such database) is.
pub fn open_store(cfg: &ServerConfig) -> Result<Store, ServeError> {
    if let store::DataSource::Sqlite(path) = &cfg.data {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let open_err = |source| ServeError::Open {
        path: cfg.data.describe(),
        source,
    };
    let mut store = Store::connect_unmigrated(&cfg.data, &cfg.region, &cfg.account_id, cfg.pg)
        .map_err(open_err)?;
    match store.migrate() {
        Ok(_) => {}
        Err(e) if store.dialect() == store::sql::Dialect::Postgres && waitable(&e) => {
            tracing::warn!(error = %e, "the database does not answer yet: serving 503 until it does");
        }
        Err(e) => return Err(open_err(e)),
    }
    store.job_lease = cfg.job_lease;
    Ok(store)
}

/// Whether a failure to reach the database may pass by waiting.
fn waitable(e: &store::sql::DbError) -> bool {
    e.is_unavailable() && !e.is_refused()
}

/// Migrates a store whose database did not answer at start, retrying with backoff (from
/// 250 ms up to 10 s) until it does; the store serves from then on.
pub async fn migrate_until_ready(store: Arc<Store>) {
    let backoff = crate::retry::Backoff {
        base: Duration::from_millis(250),
        cap: Duration::from_secs(10),
        jitter: crate::retry::Jitter::Half,
    };
    let mut attempt = 0;
    while !store.is_ready() {
        tokio::time::sleep(backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.migrate()).await {
            Ok(Ok(m)) => tracing::info!(
                attempts = attempt,
                schema = m.version,
                "the database answers: serving"
            ),
            Ok(Err(e)) if waitable(&e) => {
                tracing::warn!(error = %e, attempts = attempt, "the database does not answer yet")
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, attempts = attempt, "the database refuses the server")
            }
            Err(_) => tracing::error!("the migration task failed"),
        }
    }
}

/// The shared state a [`router`] serves, opened from `cfg` (for tests and fuzzing that
/// drive the router without a socket).
pub fn build_state(cfg: &ServerConfig) -> Result<Arc<AppState>, ServeError> {
    if matches!(cfg.auth, Auth::None) && !cfg.listen.ip().is_loopback() {
        return Err(ServeError::NoAuthOnPublicAddress(cfg.listen));
    }
    let store = open_store(cfg)?;
    let budget_kib = (cfg.body_budget.max(MAX_BODY_BYTES) / 1024) as u32;
    let store = Arc::new(store);
    let jobs = jobs::Jobs::new(
        store.clone(),
        objects::Objects::new(cfg.import_roots.clone(), cfg.s3.clone(), &cfg.region)
            .with_s3_allow(&cfg.s3_allow),
    );
    Ok(Arc::new(AppState {
        jobs,
        store,
        auth: cfg.auth.clone(),
        region: cfg.region.clone(),
        rate_limits: cfg.rate_limits,
        body_timeout: cfg.body_timeout,
        bodies: Arc::new(tokio::sync::Semaphore::new(budget_kib as usize)),
        body_budget_kib: budget_kib,
        limiter: limits::RateLimiter::default(),
        refusals: limits::RefusalLog::default(),
        faults: limits::Faults::new(cfg.faults),
        counters: limits::Counters::default(),
        probe: Arc::new(tokio::sync::Semaphore::new(1)),
    }))
}

/// Takes the lock of a SQLite file (an advisory lock on `PATH.lock`, which records the
/// holder's pid), so that a second server cannot take over the first's running jobs.
///
/// Errors: another process holds it (named by its pid), or the lock file cannot be made.
pub fn lock_sqlite(path: &std::path::Path) -> Result<std::fs::File, ServeError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let shown = path.display().to_string();
    let lock_path = {
        let mut p = path.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    };
    if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    let lock_err = |source| ServeError::Lock {
        path: shown.clone(),
        source,
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path);
    // A lock file this user may not write (another user's server made it, or the folder is
    // read-only) is still locked through a read-only handle: flock needs no write access.
    let (mut file, writable) = match opened {
        Ok(file) => (file, true),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            match std::fs::File::open(&lock_path) {
                Ok(file) => (file, false),
                Err(_) => return Err(lock_err(e)),
            }
        }
        Err(e) => return Err(lock_err(e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            if writable {
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = writeln!(file, "{}", std::process::id());
            }
            Ok(file)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = (&file).take(32).read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "a process that holds its lock".to_string(),
            };
            Err(ServeError::InUse {
                path: shown,
                holder,
            })
        }
        Err(e) => Err(lock_err(e.into())),
    }
}

/// Opens the store, binds, and serves in a background task; returns once listening.
pub async fn start(cfg: ServerConfig) -> Result<RunningServer, ServeError> {
    let lock = match &cfg.data {
        store::DataSource::Sqlite(path) if cfg.run_jobs => Some(lock_sqlite(path)?),
        _ => None,
    };
    let state = build_state(&cfg)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let migrator =
        (!state.store.is_ready()).then(|| tokio::spawn(migrate_until_ready(state.store.clone())));
    let only_server = state.store.dialect() == store::sql::Dialect::Sqlite;
    if cfg.run_jobs {
        state.jobs.claim(only_server, !only_server);
    }
    let app = router(state.clone());
    let (max_connections, header_timeout) = (cfg.max_connections, cfg.header_timeout);
    let task = tokio::spawn(async move {
        serve_connections(listener, app, max_connections, header_timeout, async {
            let _ = rx.await;
        })
        .await;
        Ok(())
    });
    Ok(RunningServer {
        addr,
        state,
        _lock: lock,
        shutdown: Some(tx),
        task,
        migrator,
    })
}

/// Serves until `shutdown` resolves (the CLI passes Ctrl-C / SIGTERM).
pub async fn serve(
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let backend = match &cfg.data {
        store::DataSource::Sqlite(_) => "sqlite",
        store::DataSource::Postgres(_) => "postgres",
    };
    let database = cfg.data.describe();
    let auth = match &cfg.auth {
        Auth::SigV4(_) => "sigv4",
        Auth::None => "none (loopback only)",
    };
    let region = cfg.region.clone();
    let server = start(cfg).await?;
    tracing::info!(
        address = %server.addr,
        backend,
        database = %database,
        auth,
        region = %region,
        "serving the Pinpoint Segment API"
    );
    shutdown.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}
