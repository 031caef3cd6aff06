//! Imports and exports at scale, on `segmentctl serve` as its own process, over SQLite and
//! over PostgreSQL side by side in one run.
//!
//!   cargo bench --bench imports            (1,000,000 endpoints; IMPORTS_N=… to change)
//!
//! IMPORTS_BASELINE=PATH (a `segmentctl` built from another commit, e.g. main's) runs each
//! scenario on that binary too, just before this build's, and prints the two side by side;
//! IMPORTS_RUNS=K runs K rounds of the two, each build first in turn, and prints each
//! round's ratio and their median (one round swings by a quarter on a shared 2-core
//! machine: the same build measured 28,000 to 41,000 records/s on PostgreSQL within an
//! hour); IMPORTS_BACKENDS=sqlite or postgres runs one database only.
//!
//! - import: one newline-delimited JSON file of N endpoints (file:// under --import-root,
//!   so the store's own speed is measured, not an S3 server's), registered and made an
//!   IMPORT segment: records/s, and the server's peak resident memory (VmHWM).
//! - floor (this build's run only): the endpoints and members that import wrote, written
//!   again by the database alone into the same tables, in the server's batches, with
//!   nothing else running (`floor_sqlite`, `floor_postgres`): rows/s, and the import as a
//!   share of it. No import can beat its floor without writing less.
//! - export: a DIMENSIONAL segment built on that imported base (Country US), evaluated over
//!   the stored endpoints and written as gzip NDJSON: its time, next to `segmentctl
//!   estimate` over the same records (the import file), and the two counts, which must agree.
//!
//! PostgreSQL is started by the bench as `benches/load/postgres.sh` starts it: the machine's
//! PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin, or SEGMENTCTL_PG_BIN), run as
//! the `postgres` user when the bench runs as root, with default durability (fsync on), as
//! SQLite's file is.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_pinpoint::types::{
    ExportJobRequest, Format, ImportJobRequest, JobStatus, SegmentDimensions, SegmentGroup,
    SegmentGroupList, SegmentLocation, SegmentReference, SetDimension, WriteSegmentRequest,
};

const COUNTRIES: &[&str] = &["US", "CA", "MX", "FR", "DE", "GB", "JP", "BR"];
const CHANNELS: &[&str] = &["SMS", "EMAIL", "APNS", "GCM"];

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("IMPORTS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("endpoints.json");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0..n {
            writeln!(
                w,
                r#"{{"Id":"e{i}","ChannelType":"{}","Address":"addr-{i}","Location":{{"Country":"{}"}},"Demographic":{{"Platform":"{}","AppVersion":"2.{}.0"}},"Attributes":{{"plan":["{}"]}},"Metrics":{{"sessions":{}}},"User":{{"UserId":"u{}"}}}}"#,
                CHANNELS[i % 4],
                COUNTRIES[(i * 7 + i / 3) % COUNTRIES.len()],
                if i % 3 == 0 { "iOS" } else { "Android" },
                i % 5,
                if i % 4 == 0 { "premium" } else { "free" },
                i % 40,
                i / 2
            )
            .unwrap();
        }
    }
    let bytes = std::fs::metadata(&file).unwrap().len();
    let backends = std::env::var("IMPORTS_BACKENDS").unwrap_or("sqlite,postgres".into());
    let baseline = std::env::var_os("IMPORTS_BASELINE").map(PathBuf::from);
    let runs: usize = std::env::var("IMPORTS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(1);
    let this = PathBuf::from(env!("CARGO_BIN_EXE_segmentctl"));
    let mut rates = Vec::new();
    for label in ["sqlite", "postgres"] {
        if !backends.contains(label) {
            continue;
        }
        // Each server on a database of its own: a fresh SQLite file, or a PostgreSQL
        // cluster of its own (stopped after), so that one run's checkpoints and autovacuum
        // do not fall in the next one's.
        // With `floor`, what the database alone takes to write the same rows follows.
        let run = |tag: &str, bin: &Path, floor: bool, round: usize| {
            // Each round's databases and files apart.
            let name = match round {
                0 => format!("{label}{tag}"),
                r => format!("{label}{tag}-round{}", r + 1),
            };
            let pg = (label == "postgres").then(|| Postgres::start(&dir.path().join(&name)));
            let data = match &pg {
                Some(pg) => pg.dsn(),
                None => format!("{name}.db"),
            };
            let rate = scenario(&name, bin, &data, dir.path(), &file, n, bytes);
            let floor = floor.then(|| match &pg {
                Some(pg) => floor_postgres(&pg.dsn()),
                None => floor_sqlite(
                    &dir.path().join(&data),
                    &dir.path().join(format!("floor-{name}.db")),
                ),
            });
            if let Some(f) = floor {
                println!(
                    "{label} floor: the same rows written by the database alone, {f:.0} rows/s; the import {rate:.0} records/s = {:.2}× its floor",
                    rate / f
                );
            }
            (rate, floor)
        };
        // Rounds of the two builds, in turn first (the machine's speed drifts within a
        // minute): each round's ratio, and their median.
        let mut rounds = Vec::new();
        for round in 0..runs {
            let base = || {
                baseline
                    .as_deref()
                    .map(|bin| run("-baseline", bin, false, round).0)
            };
            let (before, (after, floor)) = if round % 2 == 0 {
                let before = base();
                (before, run("", &this, true, round))
            } else {
                let after = run("", &this, true, round);
                (base(), after)
            };
            if runs > 1 {
                let ratio = before.map_or(String::new(), |b| {
                    format!(", {:.2}× the baseline's {b:.0}", after / b)
                });
                println!("{label} round {}: {after:.0} records/s{ratio}", round + 1);
            }
            rounds.push((before, after, floor));
        }
        if let (true, Some(median)) = (
            runs > 1,
            median(rounds.iter().filter_map(|(b, a, _)| b.map(|b| a / b))),
        ) {
            println!("{label}: median of {runs} rounds, {median:.2}× the baseline");
        }
        // Each figure's median over the rounds.
        let before = median(rounds.iter().filter_map(|r| r.0));
        let after = median(rounds.iter().map(|r| r.1)).unwrap_or_default();
        let floor = median(rounds.iter().filter_map(|r| r.2));
        rates.push((label, before, after, floor));
    }
    let line: Vec<String> = rates
        .iter()
        .map(|(label, before, after, floor)| {
            let floor = floor.map_or(String::new(), |f| format!(", {:.2}× its floor", after / f));
            match before {
                Some(b) => format!(
                    "{label} {after:.0} (baseline {b:.0}, {:.2}×{floor})",
                    after / b
                ),
                None => format!("{label} {after:.0}{floor}"),
            }
        })
        .collect();
    let rounds = match runs {
        1 => String::new(),
        k => format!(" (medians of {k} rounds)"),
    };
    println!(
        "import records/s, side by side{rounds}: {}",
        line.join(", ")
    );
    if let [(_, _, sqlite, _), (_, _, postgres, _)] = rates[..] {
        println!("postgres ÷ sqlite {:.2}×", postgres / sqlite);
    }
}

/// The median of `values` (the mean of the middle two of an even count); `None` if none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[mid]),
        _ => Some((v[mid - 1] + v[mid]) / 2.0),
    }
}

/// One server, the binary `bin`, over `data` (a SQLite file in `dir`, or a PostgreSQL URL):
/// the import of `file` and the export over it, printed as `label: …`. The import's
/// records/s.
fn scenario(
    label: &str,
    bin: &Path,
    data: &str,
    dir: &Path,
    file: &Path,
    n: usize,
    bytes: u64,
) -> f64 {
    let out = dir.join(format!("out-{label}"));
    let mut child = std::process::Command::new(bin)
        .args([
            "serve",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data,
        ])
        .arg("--import-root")
        .arg(dir)
        .current_dir(dir)
        .env("SEGMENTCTL_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let child = Server(child);
    let addr = loop {
        let line = lines.next().expect("a start line").unwrap();
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.0.id();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rate = rt.block_on(async {
        let c = segmentctl::targets::pinpoint::convert::endpoint_client(&format!("http://{addr}"), "us-east-1", "AKIDBENCH", "x", 3);
        let app = c
            .create_app()
            .create_application_request(
                aws_sdk_pinpoint::types::CreateApplicationRequest::builder().name("bench").build(),
            )
            .send()
            .await
            .unwrap()
            .application_response
            .unwrap()
            .id
            .unwrap();
        let rss_before = status_kib(pid, "VmRSS:");
        let start = Instant::now();
        let job = c
            .create_import_job()
            .application_id(&app)
            .import_job_request(
                ImportJobRequest::builder()
                    .s3_url(format!("file://{}", file.display()))
                    .format(Format::Json)
                    .role_arn("r")
                    .define_segment(true)
                    .segment_name("imported")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .import_job_response
            .unwrap();
        let job_id = job.id().unwrap().to_string();
        // When the rows were all read and the job was seen finishing (COMPLETING: the
        // segment's members written from the staged rows), to 100 ms.
        let mut rows_took = None;
        let done = loop {
            let j = c.get_import_job().application_id(&app).job_id(&job_id).send().await.unwrap();
            let j = j.import_job_response.unwrap();
            if matches!(j.job_status(), Some(JobStatus::Completed | JobStatus::Failed)) {
                break j;
            }
            if j.job_status() == Some(&JobStatus::Completing) {
                rows_took.get_or_insert_with(|| start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let took = start.elapsed();
        let rows_took = rows_took.unwrap_or(took);
        assert_eq!(done.job_status(), Some(&JobStatus::Completed), "{done:?}");
        let peak = status_kib(pid, "VmHWM:");
        let base = done.definition().unwrap().segment_id().unwrap().to_string();
        println!(
            "{label} import: {n} endpoints ({:.0} MB of NDJSON) in {:.1} s = {:.0} records/s (rows {:.1} s, segment written {:.1} s); server RSS {:.0} MB before, peak {:.0} MB",
            bytes as f64 / 1e6,
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            rows_took.as_secs_f64(),
            (took - rows_took).as_secs_f64(),
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0
        );

        let us = c
            .create_segment()
            .application_id(&app)
            .write_segment_request(
                WriteSegmentRequest::builder()
                    .name("imported, in the US")
                    .segment_groups(
                        SegmentGroupList::builder()
                            .groups(
                                SegmentGroup::builder()
                                    .source_segments(SegmentReference::builder().id(&base).build())
                                    .dimensions(
                                        SegmentDimensions::builder()
                                            .location(
                                                SegmentLocation::builder()
                                                    .country(SetDimension::builder().values("US").build())
                                                    .build(),
                                            )
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .segment_response
            .unwrap()
            .id
            .unwrap();
        let start = Instant::now();
        let job = c
            .create_export_job()
            .application_id(&app)
            .export_job_request(
                ExportJobRequest::builder()
                    .s3_url_prefix(format!("file://{}/", out.display()))
                    .role_arn("r")
                    .segment_id(&us)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .export_job_response
            .unwrap();
        let job_id = job.id().unwrap().to_string();
        let done = loop {
            let j = c.get_export_job().application_id(&app).job_id(&job_id).send().await.unwrap();
            let j = j.export_job_response.unwrap();
            if matches!(j.job_status(), Some(JobStatus::Completed | JobStatus::Failed)) {
                break j;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let export_took = start.elapsed();
        assert_eq!(done.job_status(), Some(&JobStatus::Completed), "{done:?}");
        let exported = done.total_processed().unwrap_or(0) as u64;

        // estimate over the same records: the imported base by its file.
        let m = dir.join(format!("manifests-{label}"));
        std::fs::create_dir_all(&m).unwrap();
        // A local source lies inside the manifest folder: the same file, linked there.
        std::fs::hard_link(file, m.join("endpoints.json")).unwrap();
        std::fs::write(m.join("segmentctl.yaml"), "target:\n  local: {}\nowner: bench\n").unwrap();
        std::fs::write(
            m.join("s.yaml"),
            format!(
                "apiVersion: segmentctl/v1\nkind: ImportedSegment\nmetadata:\n  name: imported\n  application: {app}\nspec:\n  Name: imported\nsource:\n  url: endpoints.json\n  format: JSON\n---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: us\n  application: {app}\nspec:\n  Name: us\n  SegmentGroups:\n    Groups:\n      - SourceSegments:\n          - Ref: imported\n        Dimensions:\n          - Location:\n              Country:\n                Values: [US]\n",
            ),
        )
        .unwrap();
        let start = Instant::now();
        let out = std::process::Command::new(bin)
            .arg("estimate")
            .arg(&m)
            .args(["--format", "json", "--endpoints"])
            .arg(file)
            .current_dir(dir)
            .output()
            .unwrap();
        let estimate_took = start.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let est: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let counted = est["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["segment"] == "us")
            .unwrap()["endpoints"]
            .as_u64()
            .unwrap();
        println!(
            "{label} export: DIMENSIONAL on the imported base, {exported} of {n} endpoints in {:.2} s; estimate over the same records: {counted} in {:.2} s (ratio export/estimate {:.1}×); counts {}",
            export_took.as_secs_f64(),
            estimate_took.as_secs_f64(),
            export_took.as_secs_f64() / estimate_took.as_secs_f64(),
            if counted == exported { "equal" } else { "DIFFER" }
        );
        assert_eq!(counted, exported, "export and estimate disagree");
        n as f64 / took.as_secs_f64()
    });
    drop(child);
    rate
}

/// An endpoint row as the import stored it: application, id, user, body.
type EndpointRow = (String, String, Option<String>, String);
/// A member row as the import staged it: application, segment, version, endpoint, user,
/// channel, body.
type MemberRow = (
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
);

/// The floor of an import on SQLite: what SQLite alone takes to write what the import wrote.
/// The endpoints and members in the import's database `imported` are read into memory, then
/// inserted into a new database `fresh` made from the same schema (the import's own
/// `sqlite_master`), in the server's batches (`import_batch_rows`) a transaction each, with
/// the journal and durability of the server's batches (WAL, synchronous=NORMAL): one prepared
/// statement per table and nothing else running. Rows/s.
fn floor_sqlite(imported: &Path, fresh: &Path) -> f64 {
    use rusqlite::{params, Connection, OpenFlags};
    let from = Connection::open_with_flags(imported, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let schema: Vec<String> = from
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let endpoints: Vec<EndpointRow> = from
        .prepare("SELECT app_id, id, user_id, body FROM endpoints ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let members: Vec<MemberRow> = from
        .prepare("SELECT app_id, segment_id, version, endpoint_id, user_id, channel, body FROM segment_members ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        endpoints.len(),
        members.len(),
        "an import of new endpoints stages each once"
    );
    let mut to = Connection::open(fresh).unwrap();
    // The pages of a file the server makes, so that the floor is the same database's.
    to.pragma_update(
        None,
        "page_size",
        segmentctl::server::store::SQLITE_PAGE_BYTES,
    )
    .unwrap();
    to.pragma_update(None, "journal_mode", "WAL").unwrap();
    to.pragma_update(None, "synchronous", "NORMAL").unwrap();
    to.execute_batch(&schema.join(";\n")).unwrap();
    let batch = segmentctl::server::jobs::import_batch_rows(
        segmentctl::server::store::sql::Dialect::Sqlite,
    );
    let start = Instant::now();
    for (e, m) in endpoints.chunks(batch).zip(members.chunks(batch)) {
        let tx = to.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO endpoints (app_id, id, user_id, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .unwrap();
            for (app, id, user, body) in e {
                insert.execute(params![app, id, user, body]).unwrap();
            }
            let mut insert = tx
                .prepare_cached("INSERT INTO segment_members (app_id, segment_id, version, endpoint_id, user_id, channel, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .unwrap();
            for (app, seg, version, id, user, channel, body) in m {
                insert
                    .execute(params![app, seg, version, id, user, channel, body])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    endpoints.len() as f64 / start.elapsed().as_secs_f64()
}

/// The floor of an import on PostgreSQL: what PostgreSQL alone takes to write what the import
/// wrote. The endpoints and members of the import's database (`dsn`) are read into memory,
/// both tables emptied (TRUNCATE, then a CHECKPOINT), and the rows written again in the
/// server's batches (`import_batch_rows`), each batch's endpoints and members by `COPY … FROM
/// STDIN (FORMAT binary)` on two connections at once (as the server stages members beside its
/// endpoints), each in a transaction with synchronous_commit off (as the server's batches).
/// Rows/s.
fn floor_postgres(dsn: &str) -> f64 {
    use postgres::binary_copy::BinaryCopyInWriter;
    use postgres::types::{ToSql, Type};
    use postgres::{Client, NoTls};
    /// One batch of `rows` (of column `types`) by the binary COPY `statement`, in a
    /// transaction of its own.
    fn copy(
        c: &mut Client,
        statement: &str,
        types: &[Type],
        rows: &mut dyn Iterator<Item = Vec<&(dyn ToSql + Sync)>>,
    ) {
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .unwrap();
        let mut w = BinaryCopyInWriter::new(tx.copy_in(statement).unwrap(), types);
        for row in rows {
            w.write(&row).unwrap();
        }
        w.finish().unwrap();
        tx.commit().unwrap();
    }
    let mut a = Client::connect(dsn, NoTls).unwrap();
    let mut b = Client::connect(dsn, NoTls).unwrap();
    let endpoints: Vec<EndpointRow> = a
        .query(
            "SELECT app_id, id, user_id, body FROM endpoints ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let members: Vec<MemberRow> = a
        .query("SELECT app_id, segment_id, version, endpoint_id, user_id, channel, body FROM segment_members", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect();
    assert_eq!(
        endpoints.len(),
        members.len(),
        "an import of new endpoints stages each once"
    );
    a.batch_execute("TRUNCATE endpoints, segment_members; CHECKPOINT")
        .unwrap();
    let batch = segmentctl::server::jobs::import_batch_rows(
        segmentctl::server::store::sql::Dialect::Postgres,
    );
    let text = Type::TEXT;
    let start = Instant::now();
    for (e, m) in endpoints.chunks(batch).zip(members.chunks(batch)) {
        std::thread::scope(|s| {
            s.spawn(|| {
                copy(
                    &mut a,
                    "COPY endpoints (app_id, id, user_id, body) FROM STDIN (FORMAT binary)",
                    &[text.clone(), text.clone(), text.clone(), text.clone()],
                    &mut e.iter().map(|(app, id, user, body)| {
                        vec![app as &(dyn ToSql + Sync), id, user, body]
                    }),
                )
            });
            copy(
                &mut b,
                "COPY segment_members (app_id, segment_id, version, endpoint_id, user_id, channel, body) FROM STDIN (FORMAT binary)",
                &[text.clone(), text.clone(), Type::INT8, text.clone(), text.clone(), text.clone(), text.clone()],
                &mut m.iter().map(|(app, seg, version, id, user, channel, body)| {
                    vec![app as &(dyn ToSql + Sync), seg, version, id, user, channel, body]
                }),
            );
        });
    }
    endpoints.len() as f64 / start.elapsed().as_secs_f64()
}

/// A server process, killed when dropped (also when the bench fails midway).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PostgreSQL cluster of the bench's own, stopped (fast shutdown) when dropped.
struct Postgres {
    port: u16,
    child: std::process::Child,
}

impl Postgres {
    /// A cluster in `dir` (made here).
    fn start(dir: &Path) -> Self {
        let bin = pg_bin();
        let pg = dir.to_path_buf();
        std::fs::create_dir_all(&pg).unwrap();
        let who = pg_user();
        if let Some((uid, gid)) = who {
            // The bench's folder, for the `postgres` user to reach its cluster in.
            let parent = dir.parent().unwrap_or(dir);
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&pg, Some(uid), Some(gid)).unwrap();
        }
        let init = as_user(&bin.join("initdb"), who)
            .arg("-D")
            .arg(pg.join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = as_user(&bin.join("postgres"), who)
            .arg("-D")
            .arg(pg.join("data"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", pg.display()))
            .stderr(std::fs::File::create(pg.join("server.log")).unwrap())
            .spawn()
            .expect("start postgres");
        // Stopped by its Drop if it never answers.
        let started = Postgres { port, child };
        let ready = || {
            std::process::Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        };
        for _ in 0..300 {
            if ready() {
                return started;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(pg.join("server.log")).unwrap_or_default()
        );
    }

    fn dsn(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SAFETY: signalling our own child: SIGINT is PostgreSQL's fast shutdown.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// Where PostgreSQL's server programs are.
fn pg_bin() -> PathBuf {
    PathBuf::from(std::env::var("SEGMENTCTL_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into()))
}

/// The `postgres` user's uid and gid when the bench runs as root (PostgreSQL refuses root).
fn pg_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "the bench runs as root and PostgreSQL refuses root: create a `postgres` user"
    );
    // SAFETY: pw is non-null, from getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// `program` run as `who`, dying with the bench (a parent-death signal).
fn as_user(program: &Path, who: Option<(u32, u32)>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = who {
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    cmd
}
