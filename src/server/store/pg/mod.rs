//! PostgreSQL connections for the store: tokio-postgres pooled by deadpool-postgres.
//!
//! The store's calls are blocking (they run on the blocking pool, as SQLite's do), so the
//! pool owns a small runtime of its own: the connections' tasks run there, and a caller
//! blocks on its query's future ([`PgPool::block_on`]). No call may come from an async
//! task (the server's handlers reach the store through `spawn_blocking`). The connection
//! shared by awaited reads ([`PgPool::get_shared`]) is the exception: made outside the
//! pool, its task runs on the server's runtime.
//!
//! At most `max` connections are open; a caller waits up to [`WAIT`] for one, then gets a
//! 503 (retryable) rather than queueing forever. A connection whose socket closed is not
//! handed out again (deadpool's fast recycling checks it), and one that failed as
//! unreachable is dropped with every idle one (they were all to the same server, which has
//! gone away), so the server recovers by itself when the database is back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};

use super::sql::DbError;

pub mod dsn;
pub mod tls;

/// How long a request waits for a free connection.
const WAIT: Duration = Duration::from_secs(5);
/// How long a connection attempt may take, unless the DSN says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run, unless told (`--db-statement-timeout`).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// TCP keepalives on an idle connection, unless the DSN sets its own: a probe after 30 s of
/// silence, then every 10 s, and the connection is dropped after 3 unanswered (libpq's
/// default waits two hours, which behind a NAT or after a failover leaves a dead connection
/// in the pool until a request finds it).
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(30), Duration::from_secs(10), 3);

/// How long data sent may go unacknowledged before the connection is dropped (Linux's
/// `TCP_USER_TIMEOUT`), unless the DSN sets `tcp_user_timeout`: a request to a database cut
/// off by the network fails after this instead of the kernel's 15 minutes of retransmits.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// How statements are sent (`--db-statements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Statements {
    /// Prepared once per connection and cached by their text: parsed and planned once.
    #[default]
    Prepared,
    /// Sent unnamed with their parameter types, parsed again each time: for poolers in
    /// transaction mode that do not track prepared statements (PgBouncer before 1.21).
    Unnamed,
}

/// How the store talks to PostgreSQL, beside the DSN.
#[derive(Debug, Clone, Copy)]
pub struct PgSettings {
    /// Connections at most.
    pub max: usize,
    pub statements: Statements,
    /// Each transaction's `statement_timeout`.
    pub statement_timeout: Duration,
}

impl PgSettings {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            statements: Statements::default(),
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        }
    }
}

pub struct PgPool {
    pool: Pool,
    /// Drives the connections; taken (and shut down without waiting) on drop.
    runtime: Option<tokio::runtime::Runtime>,
    /// `host:port/dbname`, for messages (never the password).
    pub target: String,
    pub settings: PgSettings,
    /// When a connection last came back healthy from a query.
    last_ok: Mutex<Option<Instant>>,
    /// What opens a read and a write transaction.
    opening: (String, String),
    /// How a cancel request reaches the database (as the connections do).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// Connections kept out of the pool (which holds `max` less these) for reads of one
    /// statement outside a transaction, each shared by every such read at once
    /// ([`PgPool::get_shared`]).
    shared: Vec<Mutex<Option<Shared>>>,
    next_shared: AtomicUsize,
    /// Shared connections made so far.
    shared_made: AtomicU64,
}

/// A shared connection, with its place among the shared connections made
/// ([`Pooled::shared_epoch`]).
type Shared = (Arc<ClientWrapper>, u64);

/// A connection held by one caller, or shared by reads of one statement. (Held for a
/// request, on its task's stack: boxing the larger variant would allocate for each.)
#[allow(clippy::large_enum_variant)]
enum Held {
    Own(Object),
    Shared(usize, Arc<ClientWrapper>, u64),
}

/// A connection out of the pool; back to it when dropped, unless [`Pooled::broken`].
pub struct Pooled<'p> {
    pool: &'p PgPool,
    client: Option<Held>,
    broken: bool,
}

impl Pooled<'_> {
    pub fn client(&self) -> &deadpool_postgres::ClientWrapper {
        match self
            .client
            .as_ref()
            .expect("a pooled connection is present until dropped")
        {
            Held::Own(c) => c,
            Held::Shared(_, c, _) => c,
        }
    }

    /// For a shared connection, how many shared connections had been made when it was:
    /// it grows whenever one is made again, as after the database restarted or failed
    /// over, when what was read before may no longer be the database's history.
    pub fn shared_epoch(&self) -> Option<u64> {
        match &self.client {
            Some(Held::Shared(_, _, made)) => Some(*made),
            _ => None,
        }
    }

    /// Whether it was handed out before (and may have gone stale while idle).
    pub fn reused(&self) -> bool {
        match &self.client {
            Some(Held::Own(c)) => Object::metrics(c).recycle_count > 0,
            Some(Held::Shared(..)) => true,
            None => false,
        }
    }

    /// Drops this connection and every idle one: the server they reached is gone.
    pub fn broken(&mut self) {
        self.broken = true;
        self.pool.pool.retain(|_, _| false);
    }

    pub fn statements(&self) -> Statements {
        self.pool.settings.statements
    }

    /// How long one statement may run (`--db-statement-timeout`).
    pub fn statement_timeout(&self) -> Duration {
        self.pool.settings.statement_timeout
    }

    /// Asks the database to cancel the statement this connection is running, as a
    /// statement timeout would (the statement then fails with `query_canceled`).
    pub async fn cancel(&self) {
        let token = self.client().cancel_token();
        if let Err(e) = token.cancel_query(self.pool.tls.clone()).await {
            tracing::warn!(error = %e, "cannot ask PostgreSQL to cancel a statement");
        }
    }

    /// Runs `f`'s future to its end on the pool's runtime.
    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.pool.block_on(f)
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(held) = self.client.take() else {
            return;
        };
        let closed = match &held {
            Held::Own(c) => c.is_closed(),
            Held::Shared(_, c, _) => c.is_closed(),
        };
        if !(self.broken || closed) {
            *self.pool.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            return;
        }
        match held {
            Held::Own(client) => drop(Object::take(client)),
            Held::Shared(slot, client, _) => {
                // No new read gets it; the last of those on it lets it go.
                let mut slot = lock(&self.pool.shared[slot]);
                if slot.as_ref().is_some_and(|(c, _)| Arc::ptr_eq(c, &client)) {
                    *slot = None;
                }
                drop(slot);
                if let Ok(mut client) = Arc::try_unwrap(client) {
                    deadpool::managed::Manager::detach(self.pool.pool.manager(), &mut client);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for PgPool {
    fn drop(&mut self) {
        self.pool.close();
        // Shutting a runtime down may not block inside an async task (where a server's
        // state is dropped); the connections' tasks are cancelled either way.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The statements that open a read and a write transaction, each with the statement
/// timeout set for the transaction only (`SET LOCAL`: behind a pooler in transaction mode,
/// a session setting would leak to other clients).
fn openings(timeout: Duration) -> (String, String) {
    let set = format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    );
    (
        format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {set}"),
        format!("BEGIN; {set}"),
    )
}

impl PgPool {
    pub fn new(dsn: &str, settings: PgSettings) -> Result<Self, DbError> {
        let dsn::ConnectSpec {
            mut config, tls, ..
        } = dsn::read(dsn).map_err(DbError::Unavailable)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("segmentctl");
        }
        // tokio-postgres's own default idle time (two hours) stands for "not set".
        if config.get_keepalives() && config.get_keepalives_idle() == Duration::from_secs(7200) {
            config.keepalives_idle(KEEPALIVE.0);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE.1);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE.2);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let target = dsn::describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("segmentctl-pg")
            .enable_all()
            .build()
            .map_err(|e| {
                DbError::Unavailable(format!("cannot start the PostgreSQL runtime: {e}"))
            })?;
        let manager = Manager::from_config(
            config,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let shared = shared_count(settings.max);
        let pool = Pool::builder(manager)
            .max_size(settings.max.max(1) - shared)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Unavailable(format!("cannot make the connection pool: {e}")))?;
        Ok(Self {
            pool,
            runtime: Some(runtime),
            target,
            settings,
            last_ok: Mutex::new(None),
            opening: openings(settings.statement_timeout),
            tls,
            shared: (0..shared).map(|_| Mutex::new(None)).collect(),
            next_shared: AtomicUsize::new(0),
            shared_made: AtomicU64::new(0),
        })
    }

    /// What opens a read transaction (sent with its first statement).
    pub fn read_opening(&self) -> &str {
        &self.opening.0
    }

    /// What opens a write transaction.
    pub fn write_opening(&self) -> &str {
        &self.opening.1
    }

    /// Runs `f`'s future to its end on the pool's runtime (from a thread outside any).
    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the pool")
            .block_on(f)
    }

    /// Whether every connection is at work and one came back healthy within `within`: the
    /// database answers, the pool is only busy.
    pub fn busy_and_answering(&self, within: Duration) -> bool {
        let status = self.pool.status();
        let recent = self
            .last_ok
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < within);
        status.available == 0 && status.size >= status.max_size && recent
    }

    /// A connection: an idle one, or a new one while fewer than `max` are open; a 503
    /// after [`WAIT`] when all are at work.
    pub fn get(&self) -> Result<Pooled<'_>, DbError> {
        self.block_on(self.get_async())
    }

    /// A connection if one is free now (an idle one, or a new one while fewer than `max` are
    /// open), without waiting for one to come back: `None` otherwise, or when none can be
    /// made. For work that can also be done on the connection its caller holds.
    pub fn try_get(&self) -> Option<Pooled<'_>> {
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(Duration::ZERO),
            create: Some(CONNECT_TIMEOUT),
            recycle: None,
        };
        let client = self.block_on(self.pool.timeout_get(&timeouts)).ok()?;
        Some(Pooled {
            pool: self,
            client: Some(Held::Own(client)),
            broken: false,
        })
    }

    /// [`PgPool::get`], awaited (from an async task: the connection's own task then runs
    /// on that task's runtime).
    pub async fn get_async(&self) -> Result<Pooled<'_>, DbError> {
        use deadpool_postgres::PoolError;
        let client = self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                DbError::Unavailable(format!(
                    "all {} connections to PostgreSQL are busy",
                    self.settings.max
                ))
            }
            PoolError::Backend(cause) => DbError::Connect {
                target: self.target.clone(),
                cause,
            },
            other => DbError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: {other}",
                self.target
            )),
        })?;
        Ok(Pooled {
            pool: self,
            client: Some(Held::Own(client)),
            broken: false,
        })
    }

    /// A connection for one statement outside a transaction, shared with other such reads
    /// at once: tokio-postgres pipelines their statements on it, so the database answers a
    /// stream of them without a process wake-up for each. [`PgPool::get_async`] when the
    /// pool is too small to keep connections aside.
    pub async fn get_shared(&self) -> Result<Pooled<'_>, DbError> {
        if self.shared.is_empty() {
            return self.get_async().await;
        }
        let at = self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared.len();
        let found = lock(&self.shared[at])
            .as_ref()
            .filter(|(c, _)| !c.is_closed())
            .cloned();
        let (client, made) = match found {
            Some(c) => c,
            None => {
                // Made here rather than taken from the pool, so that its connection's task
                // runs on this task's runtime: an idle pooled one may have been made on the
                // pool's own runtime (by a blocking caller), and each read would then wake
                // that runtime's thread twice, to send and to answer.
                let mut new = self.connect_shared().await?;
                let mut slot = lock(&self.shared[at]);
                match slot.as_ref().filter(|(c, _)| !c.is_closed()) {
                    // Another read put one there meanwhile: this one is closed (its task
                    // ends when it is dropped), its statement cache let go as a broken
                    // shared connection's is.
                    Some(kept) => {
                        let kept = kept.clone();
                        drop(slot);
                        deadpool::managed::Manager::detach(self.pool.manager(), &mut new);
                        kept
                    }
                    None => {
                        let made = self.shared_made.fetch_add(1, Ordering::Relaxed) + 1;
                        slot.insert((Arc::new(new), made)).clone()
                    }
                }
            }
        };
        Ok(Pooled {
            pool: self,
            client: Some(Held::Shared(at, client, made)),
            broken: false,
        })
    }
}

impl PgPool {
    /// A new connection for [`PgPool::get_shared`], its task on the caller's runtime.
    async fn connect_shared(&self) -> Result<ClientWrapper, DbError> {
        let made = tokio::time::timeout(
            CONNECT_TIMEOUT,
            deadpool::managed::Manager::create(self.pool.manager()),
        )
        .await;
        match made {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(cause)) => Err(DbError::Connect {
                target: self.target.clone(),
                cause,
            }),
            Err(_) => Err(DbError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: no answer within {} s",
                self.target,
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// How many connections are kept aside for shared reads, out of `max` (the pool holds the
/// rest): one, when there are four or more. A PostgreSQL backend answers a pipelined stream of primary-key reads
/// at tens of thousands a second; more connections split the stream, and the database's
/// processes then sleep and wake for each read again (GetSegment on the 2-core load bench:
/// one 35,300/s, two 27,500/s, four 24,200/s, none 19,800/s).
fn shared_count(max: usize) -> usize {
    usize::from(max >= 4)
}
