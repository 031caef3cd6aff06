//! PgBouncer in transaction mode in front of the shared PostgreSQL, started by the tests:
//! Debian's package (`/usr/sbin/pgbouncer`), installed with apt-get when missing and the
//! tests run as root. It runs as the `postgres` user when the tests run as root (PgBouncer
//! refuses root) and dies with the test process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::pg;

fn binary() -> PathBuf {
    for p in ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "the PgBouncer tests need Debian's pgbouncer: apt-get install pgbouncer"
    );
    let out = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", "pgbouncer"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("run apt-get");
    assert!(
        out.status.success() && Path::new("/usr/sbin/pgbouncer").exists(),
        "apt-get install pgbouncer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from("/usr/sbin/pgbouncer")
}

pub struct Bouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Bouncer {
    /// PgBouncer on a free port, in transaction mode, in front of the cluster on `upstream`.
    fn start(upstream: u16) -> Self {
        Self::start_with(upstream, "")
    }

    /// As [`Bouncer::start`], with more `[pgbouncer]` settings (`name = value` lines).
    pub fn start_with(upstream: u16, settings: &str) -> Self {
        let dir = pg::root().join(format!("bouncer-{upstream}"));
        std::fs::create_dir_all(&dir).unwrap();
        pg::chown(&dir);
        let port = pg::free_port();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={upstream}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {dir}/users.txt\nadmin_users = postgres\n\
                 pool_mode = transaction\nmax_client_conn = 400\ndefault_pool_size = 20\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n{settings}",
                dir = dir.display()
            ),
        )
        .unwrap();
        for f in ["users.txt", "pgbouncer.ini"] {
            pg::chown(&dir.join(f));
        }
        let child = pg::command(&binary(), Some(libc::SIGTERM))
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let b = Bouncer { port, dir, child };
        b.wait_ready();
        b
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let dsn = self.dsn("postgres");
        loop {
            let d = dsn.clone();
            if pg::off_runtime(move || postgres::Client::connect(&d, postgres::NoTls).is_ok()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PgBouncer did not start: {}",
                std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of database `db` through PgBouncer.
    pub fn dsn(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// PgBouncer's `pool_mode`, as its admin console says (simple queries only there).
    pub fn pool_mode(&self) -> String {
        let admin = self.dsn("pgbouncer");
        pg::off_runtime(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("admin console");
            c.simple_query("SHOW CONFIG")
                .expect("SHOW CONFIG")
                .into_iter()
                .find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("pool_mode") => {
                        r.get(1).map(String::from)
                    }
                    _ => None,
                })
                .expect("pool_mode in SHOW CONFIG")
        })
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PgBouncer the test binary shares, in front of the shared cluster (started by a
/// thread that outlives every test, as the cluster's is).
pub fn shared() -> &'static Bouncer {
    static SHARED: OnceLock<&'static Bouncer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let b: &'static Bouncer = Box::leak(Box::new(Bouncer::start(pg::shared().port)));
            tx.send(b).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the shared PgBouncer started")
    })
}

/// A fresh database in the shared cluster, by its URL through the shared PgBouncer.
pub fn database() -> String {
    let direct = pg::database();
    let name = direct
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_string();
    shared().dsn(&name)
}
