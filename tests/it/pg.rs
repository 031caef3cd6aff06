//! A real PostgreSQL for the tests, started by them: the machine's PostgreSQL 15 binaries
//! (`/usr/lib/postgresql/15/bin`, or `SEGMENTCTL_PG_BIN`), run as the `postgres` user when
//! the tests run as root (PostgreSQL refuses root). No running service is assumed.
//!
//! One cluster is shared by the test binary (each test server gets a database of its own in
//! it); a test that stops and restarts the database starts a [`Cluster`] of its own. A
//! cluster dies with the test process (a parent-death signal), and the folders a killed
//! run left behind are removed by the next.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SEGMENTCTL_PG_BIN") {
        return PathBuf::from(dir);
    }
    for v in ["15", "16", "17", "18", "14"] {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if dir.join("postgres").exists() {
            return dir;
        }
    }
    panic!(
        "the PostgreSQL tests need PostgreSQL's server binaries (initdb, postgres): install them (Debian: apt-get install postgresql-15) or name their folder in SEGMENTCTL_PG_BIN"
    );
}

/// The uid and gid to run PostgreSQL as: `postgres` when we are root, else ourselves.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "the tests run as root and PostgreSQL refuses root: create a `postgres` user"
    );
    // SAFETY: pw is non-null, from getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// `program`, run as the `postgres` user when the tests run as root; sent `death_signal`
/// when the thread that started it ends (the server's own "stop now": SIGQUIT for
/// PostgreSQL, SIGTERM for PgBouncer, which ignores SIGQUIT and would outlive the tests).
pub fn command(program: &Path, death_signal: Option<libc::c_int>) -> Command {
    let mut cmd = Command::new(program);
    let who = run_as();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = who {
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(signal) = death_signal {
                // After setuid, which clears it.
                libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            }
            Ok(())
        });
    }
    cmd
}

/// Runs blocking PostgreSQL client code on a thread of its own (the client cannot run
/// inside a test's async runtime).
pub fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("the thread ran")
}

/// One integer a query gives, on the database `data` names (a SQLite file or a URL).
pub fn query_i64(data: &Path, sql: &str) -> i64 {
    let (data, sql) = (data.display().to_string(), sql.to_string());
    if data.starts_with("postgres://") {
        off_runtime(move || {
            let mut c = postgres::Client::connect(&data, postgres::NoTls).expect("connect");
            c.query_one(&sql, &[]).expect("query").get::<_, i64>(0)
        })
    } else {
        let c = rusqlite::Connection::open(&data).expect("open");
        c.query_row(&sql, [], |r| r.get(0)).expect("query")
    }
}

/// Where a test server keeps its data: a file in `dir`, or a fresh PostgreSQL database
/// when the suite runs on PostgreSQL ([`backend_is_postgres`]).
pub fn data_for(dir: &Path) -> PathBuf {
    if backend_is_postgres() {
        PathBuf::from(database())
    } else {
        dir.join("pinpoint.db")
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The folder this run's clusters live in; those of runs no longer alive are removed.
pub fn root() -> PathBuf {
    let base = std::env::temp_dir().join("segmentctl-test-pg");
    let _ = std::fs::create_dir_all(&base);
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let pid: Option<i32> = e.file_name().to_str().and_then(|s| s.parse().ok());
            // SAFETY: kill with signal 0 only checks that the process exists.
            if let Some(pid) = pid.filter(|p| unsafe { libc::kill(*p, 0) } != 0) {
                let _ = pid;
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("cluster folder");
    dir
}

/// Gives `path` to the user PostgreSQL runs as (it reads only its own key files).
pub fn chown(path: &Path) {
    if let Some((uid, gid)) = run_as() {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string path.
        unsafe { libc::chown(c.as_ptr(), uid, gid) };
    }
}

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    /// `name=value` server settings beyond the harness's own (`-c`), e.g. `ssl=on`.
    settings: Vec<String>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// A new cluster (initdb), started; it stops when dropped or when the process ends.
    pub fn new() -> Self {
        Self::with_settings(Vec::new())
    }

    /// A new cluster started with these `name=value` settings too (`-c`), e.g. `ssl=on`,
    /// `ssl_cert_file=…` or `hba_file=…`. The harness's own probe connects in clear as
    /// `postgres` over 127.0.0.1: the settings must let it.
    pub fn with_settings(settings: Vec<String>) -> Self {
        let dir = root().join(format!("c{}", NEXT.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).unwrap();
        chown(dir.parent().unwrap().parent().unwrap());
        chown(dir.parent().unwrap());
        chown(&dir);
        let data = dir.join("data");
        let out = command(&bin_dir().join("initdb"), None)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = Cluster {
            port: free_port(),
            dir,
            child: None,
            settings,
        };
        // The port is free when chosen, not when bound: if something took it meanwhile,
        // PostgreSQL exits at once, and another port is tried.
        for _ in 0..4 {
            if c.try_start() {
                return c;
            }
            c.port = free_port();
        }
        c.start();
        c
    }

    /// Starts the server (again, after [`Cluster::stop`]) on the same port and data.
    pub fn start(&mut self) {
        assert!(
            self.try_start(),
            "PostgreSQL exited at start: {}",
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Starts the server and waits until it answers; false if it exits first.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let mut cmd = command(&bin_dir().join("postgres"), Some(libc::SIGQUIT));
        for setting in &self.settings {
            cmd.arg("-c").arg(setting);
        }
        let child = cmd
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "max_connections=400"])
            .args(["-c", "shared_buffers=64MB"])
            // The tests crash servers, never the machine: durability to the OS is enough.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let dsn = self.dsn("postgres");
            if off_runtime(move || postgres::Client::connect(&dsn, postgres::NoTls).is_ok()) {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().is_ok_and(|exited| exited.is_some()) {
                    self.child = None;
                    return false;
                }
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server: `fast` shutdown (SIGINT), or a crash (SIGKILL).
    pub fn stop(&mut self, crash: bool) {
        if let Some(mut child) = self.child.take() {
            let sig = if crash { libc::SIGKILL } else { libc::SIGINT };
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, sig) };
            let _ = child.wait();
            if crash {
                // Its backends notice the postmaster gone and exit; wait for the port.
                let deadline = Instant::now() + Duration::from_secs(20);
                while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = std::fs::remove_file(self.dir.join("data/postmaster.pid"));
            }
        }
    }

    pub fn dsn(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database in this cluster, by URL.
    pub fn database(&self) -> String {
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let admin = self.dsn("postgres");
        let create = name.clone();
        off_runtime(move || {
            let mut admin = postgres::Client::connect(&admin, postgres::NoTls).expect("connect");
            admin
                .batch_execute(&format!("CREATE DATABASE {create}"))
                .expect("CREATE DATABASE");
        });
        self.dsn(&name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop(false);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster the test binary shares, started on first use by a thread that outlives
/// every test (the parent-death signal follows the thread that started the server).
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<&'static Cluster> = OnceLock::new();
    SHARED.get_or_init(|| lasting(Cluster::new))
}

/// A cluster `make` starts that lives as long as the test binary, started by a thread that
/// outlives every test (the parent-death signal follows the thread that started it).
pub fn lasting(make: impl FnOnce() -> Cluster + Send + 'static) -> &'static Cluster {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cluster: &'static Cluster = Box::leak(Box::new(make()));
        tx.send(cluster).unwrap();
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("the PostgreSQL started")
}

/// A fresh database in the shared cluster.
pub fn database() -> String {
    shared().database()
}

/// Which database the parameterized tests run on: `SEGMENTCTL_TEST_BACKEND=postgres` (or
/// `sqlite`, the default).
pub fn backend_is_postgres() -> bool {
    match std::env::var("SEGMENTCTL_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("SEGMENTCTL_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}
