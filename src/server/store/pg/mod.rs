//! A small pool of PostgreSQL connections, with limits, for the store's blocking calls.
//!
//! At most `max` connections are open; a caller waits up to [`WAIT`] for one, then gets a
//! 503 (retryable) rather than queueing forever. A connection that fails as unreachable is
//! dropped with every idle one (they were all to the same server, which has gone away), so
//! the next request connects afresh and the server recovers by itself when the database
//! is back.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::sql::DbError;

pub mod dsn;
pub mod tls;

/// How long a request waits for a free connection.
const WAIT: Duration = Duration::from_secs(5);
/// How long a connection attempt may take, unless the DSN says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgPool {
    config: postgres::Config,
    /// `host:port/dbname`, for messages (never the password).
    pub target: String,
    idle: Mutex<Vec<postgres::Client>>,
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
    /// When a connection last came back healthy from a query.
    last_ok: Mutex<Option<Instant>>,
}

/// A connection out of the pool; returned to it when dropped, unless broken.
pub struct Pooled<'p> {
    pool: &'p PgPool,
    client: Option<postgres::Client>,
    /// Whether it came from the idle list (and may have gone stale there).
    pub reused: bool,
    broken: bool,
}

impl Pooled<'_> {
    pub fn client(&mut self) -> &mut postgres::Client {
        self.client
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }

    /// Drops this connection and every idle one: the server they reached is gone.
    pub fn broken(&mut self) {
        self.broken = true;
        self.pool
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Replaces this connection with a new one (after a stale idle one failed).
    pub fn reconnect(&mut self) -> Result<(), DbError> {
        self.broken();
        self.client = Some(self.pool.connect()?);
        self.broken = false;
        self.reused = false;
        Ok(())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !self.broken && !client.is_closed() {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(client);
                *self.pool.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
        }
        let mut busy = self.pool.busy.lock().unwrap_or_else(|p| p.into_inner());
        *busy -= 1;
        self.pool.freed.notify_one();
    }
}

impl Drop for PgPool {
    fn drop(&mut self) {
        // Closing a connection blocks on the client's own runtime, which cannot be done
        // from an async task (where a server's state is dropped).
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        std::thread::scope(|s| {
            s.spawn(move || drop(idle));
        });
    }
}

/// `host:port/dbname` of a DSN, for messages.
pub fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

impl PgPool {
    pub fn new(dsn: &str, max: usize) -> Result<Self, DbError> {
        let mut config: postgres::Config = dsn.parse().map_err(|e| {
            DbError::Unavailable(format!(
                "not a PostgreSQL connection string: {}",
                super::sql::pg_text(&e)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("segmentctl");
        }
        Ok(Self {
            target: describe(&config),
            config,
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
            last_ok: Mutex::new(None),
        })
    }

    fn connect(&self) -> Result<postgres::Client, DbError> {
        self.config.connect(postgres::NoTls).map_err(|e| {
            DbError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.target,
                super::sql::pg_text(&e)
            ))
        })
    }

    /// Whether every connection is at work and one came back healthy within `within`: the
    /// database answers, the pool is only busy.
    pub fn busy_and_answering(&self, within: std::time::Duration) -> bool {
        let busy = *self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let recent = self
            .last_ok
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < within);
        busy >= self.max && recent
    }

    /// A connection: an idle one, or a new one while fewer than `max` are open.
    pub fn get(&self) -> Result<Pooled<'_>, DbError> {
        let deadline = Instant::now() + WAIT;
        {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            while *busy >= self.max {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(DbError::Unavailable(format!(
                        "all {} connections to PostgreSQL are busy",
                        self.max
                    )));
                }
                busy = self
                    .freed
                    .wait_timeout(busy, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            *busy += 1;
        }
        let mut pooled = Pooled {
            pool: self,
            client: None,
            reused: false,
            broken: false,
        };
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match idle.pop() {
                    Some(c) if c.is_closed() => continue,
                    other => break other,
                }
            }
        };
        match idle {
            Some(c) => {
                pooled.client = Some(c);
                pooled.reused = true;
            }
            None => pooled.client = Some(self.connect()?),
        }
        Ok(pooled)
    }
}
