//! PostgreSQL in operation: a server started before its database answers waits for it
//! (503 and `/readyz` 503 meanwhile, no crash loop), and a statement stuck past
//! `--db-statement-timeout` is cancelled by the database, keeping nothing of its request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::pg::{self, Cluster};
use crate::server_crash::spawn_server_with;
use crate::util::{self, named};

fn client(endpoint: &str) -> aws_sdk_pinpoint::Client {
    segmentctl::targets::pinpoint::convert::endpoint_client(endpoint, "us-east-1", "k", "s", 1)
}

async fn status(addr: SocketAddr, path: &str) -> (u16, String) {
    let (code, _, body) = util::raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await;
    (code, body)
}

/// A server on a fresh database with `--db-statement-timeout 1s`, an application and a
/// segment in it.
async fn with_a_one_second_timeout(
    app_name: &str,
) -> (
    std::process::Child,
    aws_sdk_pinpoint::Client,
    String,
    String,
    String,
) {
    let dsn = pg::database();
    let (child, endpoint) = spawn_server_with(
        std::path::Path::new(&dsn),
        &["--db-statement-timeout", "1s"],
    );
    let c = client(&endpoint);
    let app = util::create_app(&c, app_name).await;
    let seg = util::create_segment(&c, &app, named("v1")).await;
    (child, c, dsn, app, seg)
}

/// Another session, holding what `statement` locks until released (in a transaction rolled
/// back then).
struct Held {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Held {
    fn by_another_session(dsn: &str, statement: &str) -> Self {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let (dsn, statement) = (dsn.to_string(), statement.to_string());
        let thread = std::thread::spawn(move || {
            let mut db = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
            let mut tx = db.transaction().unwrap();
            tx.batch_execute(&statement).unwrap();
            locked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            tx.rollback().unwrap();
        });
        locked_rx.recv().unwrap();
        Self { release, thread }
    }

    fn release(self) {
        self.release.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_before_its_database_serves_once_the_database_answers() {
    let mut cluster = Cluster::new();
    let dsn = cluster.database();
    cluster.stop(false);
    let (mut child, endpoint) = spawn_server_with(std::path::Path::new(&dsn), &[]);
    let addr: SocketAddr = endpoint.trim_start_matches("http://").parse().unwrap();
    let c = client(&endpoint);

    let (code, body) = status(addr, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: the database does not answer\n")
    );
    let err = c
        .create_app()
        .create_application_request(
            aws_sdk_pinpoint::types::CreateApplicationRequest::builder()
                .name("early")
                .build(),
        )
        .send()
        .await
        .expect_err("no database yet");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server waits for its database rather than exit"
    );

    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(addr, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "the server became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = util::create_app(&c, "late").await;
    util::create_segment(&c, &app, named("served")).await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_timeout_is_cancelled_and_its_request_keeps_nothing() {
    let (mut child, c, dsn, app, seg) = with_a_one_second_timeout("timeouts").await;
    // Another session holds the segment's row until released.
    let held = Held::by_another_session(
        &dsn,
        &format!("SELECT 1 FROM segments WHERE id = '{seg}' FOR UPDATE"),
    );
    let update = c
        .update_segment()
        .application_id(&app)
        .segment_id(&seg)
        .write_segment_request(named("v2"))
        .send();
    let out = tokio::time::timeout(Duration::from_secs(30), update)
        .await
        .expect("the database cancels the statement; the request does not wait for the lock");
    let err = out.expect_err("a cancelled statement fails its request");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    held.release();

    let got = c
        .get_segment()
        .application_id(&app)
        .segment_id(&seg)
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    assert_eq!((got.version, got.name.as_deref()), (Some(1), Some("v1")));
    c.update_segment()
        .application_id(&app)
        .segment_id(&seg)
        .write_segment_request(named("v2"))
        .send()
        .await
        .expect("once the lock is gone, the update goes through");
    let _ = child.kill();
    let _ = child.wait();
}

/// A read on PostgreSQL whose request goes away mid-statement (its client closed the
/// connection) leaves its connection clean: the next transaction on it (a write) is
/// neither read-only nor refused. (A read once opened `BEGIN … READ ONLY` and was dropped
/// before its `COMMIT`: the next request on that connection failed.)
#[test]
fn a_read_dropped_mid_statement_leaves_its_connection_clean() {
    use segmentctl::server::store::pg::{PgPool, PgSettings};
    use segmentctl::server::store::sql;

    let dsn = pg::database();
    let pool = PgPool::new(&dsn, PgSettings::new(1)).unwrap();
    let holder = PgPool::new(&dsn, PgSettings::new(1)).unwrap();
    pool.block_on(async {
        // Another session holds the lock the read will wait for.
        let other = holder.get_async().await.unwrap();
        other
            .client()
            .batch_execute("SELECT pg_advisory_lock(4242)")
            .await
            .unwrap();

        let conn = pool.get_async().await.unwrap();
        {
            let read = sql::pg_read_one(&conn, "SELECT pg_advisory_xact_lock(4242)", &[]);
            futures_util::pin_mut!(read);
            // Its first poll sends the BEGIN and the statement, which then waits.
            assert!(futures_util::FutureExt::now_or_never(read.as_mut()).is_none());
        }
        drop(conn);
        other
            .client()
            .batch_execute("SELECT pg_advisory_unlock(4242)")
            .await
            .unwrap();

        // The pool's only connection, the one the read used.
        let conn = pool.get_async().await.unwrap();
        assert!(conn.reused());
        let out = sql::pg_write_at_once(
            &conn,
            pool.write_opening(),
            "CREATE TABLE after_the_read AS SELECT 1 AS x",
            &[],
        )
        .await
        .expect("the opening goes out")
        .expect("the write runs in a transaction of its own, not in the read's");
        assert_eq!(out.affected, 1);
        let rows = sql::pg_read_one(&conn, "SELECT count(*) FROM after_the_read", &[])
            .await
            .unwrap();
        assert_eq!(
            rows.rows[0].get::<_, i64>(0).unwrap(),
            1,
            "the write was committed"
        );
    });
}

/// GetSegment, a read of one statement sent without a transaction around it, is cancelled
/// past `--db-statement-timeout` as a statement in a transaction is: here it waits for a
/// table another session has locked, fails with a 500 after the timeout, and the server
/// answers again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_past_the_timeout_is_cancelled() {
    let (mut child, c, dsn, app, seg) = with_a_one_second_timeout("read-timeouts").await;
    let held = Held::by_another_session(&dsn, "LOCK TABLE segments IN ACCESS EXCLUSIVE MODE");
    let read = c.get_segment().application_id(&app).segment_id(&seg).send();
    let out = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the database cancels the read; the request does not wait for the lock");
    let err = out.expect_err("a cancelled read fails its request");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    held.release();

    let got = c
        .get_segment()
        .application_id(&app)
        .segment_id(&seg)
        .send()
        .await
        .expect("once the lock is gone, the read goes through")
        .segment_response
        .unwrap();
    assert_eq!(got.name.as_deref(), Some("v1"));
    let _ = child.kill();
    let _ = child.wait();
}

/// The cluster's processes: the postmaster (first line of `postmaster.pid`) and its
/// children (its backends and workers).
fn cluster_pids(cluster: &Cluster) -> Vec<i32> {
    let text = std::fs::read_to_string(cluster.dir.join("data/postmaster.pid")).unwrap();
    let postmaster: i32 = text.lines().next().unwrap().trim().parse().unwrap();
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid …: the comm may hold spaces, so read after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

/// A database that accepts connections and never answers (every process of it stopped)
/// is not ready: `/readyz` answers 503 once its bound passes, rather than hang with it,
/// and 200 again once the database runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_refused_while_the_database_hangs() {
    let cluster = Cluster::new();
    let dsn = cluster.database();
    let (mut child, endpoint) = spawn_server_with(std::path::Path::new(&dsn), &[]);
    let addr: SocketAddr = endpoint.trim_start_matches("http://").parse().unwrap();
    util::create_app(&client(&endpoint), "before").await;
    assert_eq!(status(addr, "/readyz").await.0, 200);

    let pids = cluster_pids(&cluster);
    let signal = |sig: libc::c_int| {
        for pid in &pids {
            // SAFETY: kill sends a signal to a process of this test's own cluster.
            unsafe { libc::kill(*pid, sig) };
        }
    };
    signal(libc::SIGSTOP);
    // A pool connection's last success is more than 5 s old by then, so the check asks
    // the database, which does not answer.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let first = tokio::spawn(status(addr, "/readyz"));
    // While that check still waits on the database, the next one does not queue behind it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (again, again_body) = status(addr, "/readyz").await;
    let (code, body) = first.await.unwrap();
    signal(libc::SIGCONT);
    assert_eq!(
        (again, again_body.as_str()),
        (
            503,
            "not ready: the database has not answered the check before this one yet\n"
        )
    );
    // Its bound (5 s) or the connection's (5 s to connect) ends it, whichever comes first.
    assert_eq!(code, 503, "{body}");
    assert!(
        [
            "not ready: the database has not answered within 5 s\n",
            "not ready: the database does not answer\n"
        ]
        .contains(&body.as_str()),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(addr, "/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again once the database runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Behind PgBouncer, a database that is down is said by PgBouncer (SQLSTATE 08P01:
/// `query_wait_timeout`, `server_login_retry`): the requests get 503, as when the server
/// reaches the database itself, never a 500, and the server serves again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_pgbouncer_a_database_down_is_a_503() {
    let mut cluster = Cluster::new();
    let direct = cluster.database();
    let bouncer = crate::pgbouncer::Bouncer::start_with(
        cluster.port,
        "query_wait_timeout = 2\nserver_login_retry = 1\n",
    );
    let dsn = bouncer.dsn(direct.rsplit('/').next().unwrap());
    let (mut child, endpoint) =
        spawn_server_with(std::path::Path::new(&dsn), &["--db-statements", "unnamed"]);
    let c = client(&endpoint);
    util::create_app(&c, "before").await;
    cluster.stop(false);
    let err = c.get_apps().send().await.expect_err("the database is down");
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{err:?}"
    );
    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get_apps().send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "served again once the database is back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
