//! What `--data` and `serve migrate` accept, as the binary reads them: libpq's keyword
//! strings and schemes in any case are PostgreSQL, a value that could be either is
//! refused, a password is never printed, a wrong one is said to be wrong, and `serve
//! migrate --from` reads only a segmentctl data file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pg;

/// `segmentctl ARGS` in `cwd`: (exit code, stdout, stderr). A run past two minutes is
/// killed and fails the test (a source read that never ends must not hang the suite).
fn segmentctl(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SEGMENTCTL_DATA")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    }
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("segmentctl {args:?} still running after 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    (status.code().unwrap_or(-1), out, err)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `host=… port=… user=… password=… dbname=…` and `POSTGRES://…` reach PostgreSQL (as libpq
/// reads them), not a SQLite file named after them; what is printed names the database
/// without its password.
#[test]
fn a_keyword_dsn_or_a_capitalized_scheme_is_postgres_and_makes_no_file() {
    let url = pg::database();
    let rest = url.strip_prefix("postgres://postgres@").unwrap();
    let (host_port, db) = rest.split_once('/').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let keywords =
        format!("host={host} port={port} user=postgres password='pw s3cret' dbname={db}");
    let upper = format!("POSTGRESQL://postgres:s3cret-pw@{host_port}/{db}");
    let cwd = tempfile::tempdir().unwrap();
    for data in [&keywords, &upper] {
        let (code, out, err) = segmentctl(cwd.path(), &["serve", "--migrate-only", "--data", data]);
        assert_eq!(code, 0, "{data}: {out}{err}");
        assert!(
            out.starts_with(&format!(
                "postgres://{host}:{port}/{db}: schema at version "
            )),
            "{out}"
        );
        assert!(!format!("{out}{err}").contains("s3cret"), "{out}{err}");
        assert_eq!(files_in(cwd.path()), Vec::<String>::new(), "no file made");
    }
    let migrations = segmentctl::server::store::migrations::MIGRATIONS.len() as i64;
    assert_eq!(
        pg::query_i64(Path::new(&url), "SELECT COUNT(*) FROM schema_migrations"),
        migrations
    );
}

/// A value that could be a file name or a database is refused with the forms accepted,
/// before anything is made, and never echoed (it may hold a password), from the flag or
/// the environment; a file whose name holds `=` is still one as `./NAME` or
/// `sqlite:NAME`.
#[test]
fn an_ambiguous_or_unknown_database_is_refused_without_echoing_it() {
    let cwd = tempfile::tempdir().unwrap();
    let mut errors = String::new();
    for data in [
        "mysql://root:s3cret-a@db/seg",
        "Postgres:s3cret-b@db/seg",
        "user:s3cret-c@db:5432/seg",
        "host=db password=s3cret-d dbname=seg sslmod=require",
        "host=db password='s3cret-e dbname=seg",
        "data=s3cret-f.db",
    ] {
        let (code, out, err) = segmentctl(cwd.path(), &["serve", "--migrate-only", "--data", data]);
        assert_eq!(code, 1, "{data:?} is refused as a usage error: {out}{err}");
        assert!(!err.contains("s3cret"), "{data:?} echoed: {err}");
        errors.push_str(&format!("--data <{} chars>\n{err}\n", data.len()));
        let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
            .args(["serve", "--migrate-only"])
            .env("SEGMENTCTL_DATA", data)
            .current_dir(cwd.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "SEGMENTCTL_DATA={data:?}: {err}"
        );
        assert!(
            !err.contains("s3cret"),
            "SEGMENTCTL_DATA={data:?} echoed: {err}"
        );
    }
    assert_eq!(files_in(cwd.path()), Vec::<String>::new(), "no file made");
    insta::assert_snapshot!("refused_databases", errors);

    for (data, file) in [
        ("./odd=name.db", "odd=name.db"),
        ("sqlite:a b=c.db", "a b=c.db"),
    ] {
        let (code, out, err) = segmentctl(cwd.path(), &["serve", "--migrate-only", "--data", data]);
        assert_eq!(code, 0, "{data}: {out}{err}");
        assert!(
            cwd.path().join(file).is_file(),
            "{data} is the SQLite file {file}"
        );
    }
}

/// A wrong password is said to be one (PostgreSQL's 28P01), not `db error`, and not shown.
#[test]
fn a_wrong_postgres_password_is_reported_as_such() {
    let cluster = pg::Cluster::new();
    let admin = cluster.dsn("postgres");
    let hba = cluster.dir.join("data/pg_hba.conf");
    pg::off_runtime(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute("CREATE ROLE seg LOGIN PASSWORD 'right-s3cret'")
            .unwrap();
        c.batch_execute("CREATE DATABASE seg OWNER seg").unwrap();
        // Passwords for `seg` over TCP; the tests' own role stays trusted.
        std::fs::write(
            &hba,
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
    });
    let cwd = tempfile::tempdir().unwrap();
    let dsn = |password: &str| {
        format!(
            "host=127.0.0.1 port={} user=seg password={password} dbname=seg",
            cluster.port
        )
    };
    let (code, out, err) = segmentctl(
        cwd.path(),
        &["serve", "--migrate-only", "--data", &dsn("wrong-s3cret")],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{}/seg: wrong password or user: password authentication failed for user \"seg\" (SQLSTATE 28P01)",
            cluster.port
        )),
        "{err}"
    );
    assert!(
        !err.contains("s3cret") && !err.contains("db error"),
        "{err}"
    );
    let (code, out, err) = segmentctl(
        cwd.path(),
        &["serve", "--migrate-only", "--data", &dsn("right-s3cret")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!format!("{out}{err}").contains("s3cret"), "{out}{err}");
}

/// `serve migrate --from` reads only a segmentctl data file: another program's SQLite
/// file, a file that is not SQLite, and one whose copied table is a view (which could
/// compute forever) are refused by name before the target is touched.
#[test]
fn serve_migrate_reads_only_a_segmentctl_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'hello')")
        .unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, but long enough to be read as a header ".repeat(20),
    )
    .unwrap();
    // A segmentctl file whose `segments` is replaced by a view that never ends.
    let viewed = dir.path().join("viewed.db");
    drop(segmentctl::server::store::Store::open(&viewed, "us-east-1", "000000000000").unwrap());
    rusqlite::Connection::open(&viewed)
        .unwrap()
        .execute_batch(
            "DROP TABLE segments; CREATE VIEW segments AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
             SELECT i AS seq, 'a' AS app_id, 'b' AS id, 1 AS version, '' AS created, '{}' AS tags FROM n",
        )
        .unwrap();
    let target = pg::database();
    let mut errors = String::new();
    for from in [&other, &text, &viewed] {
        let (code, out, err) = segmentctl(
            dir.path(),
            &[
                "serve",
                "migrate",
                "--from",
                &from.display().to_string(),
                "--to",
                &target,
            ],
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.is_empty(), "nothing copied: {out}");
        errors.push_str(
            &err.replace(&dir.path().display().to_string(), "DIR")
                .replace(&target[target.rfind('/').unwrap()..], "/DB")
                .replace(
                    target.split(':').nth(2).unwrap().split('/').next().unwrap(),
                    "PORT",
                ),
        );
    }
    insta::assert_snapshot!("refused_migration_sources", errors);
    assert_eq!(
        pg::query_i64(
            Path::new(&target),
            "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'schema_migrations'"
        ),
        0,
        "the target was not touched"
    );
}
