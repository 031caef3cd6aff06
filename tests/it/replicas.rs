//! Several `segmentctl serve` replicas over one PostgreSQL database (started by the tests):
//! versions stay gapless under concurrent writers through different replicas, nothing
//! acknowledged is lost when a replica is SIGKILLed or the database restarts, jobs move to
//! a live replica, migrations apply once, `serve migrate` copies a SQLite file whole, and
//! no answer a replica keeps outlives a write through another.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_pinpoint::types::{Format, ImportJobRequest};
use aws_sdk_pinpoint::Client;

use crate::pg::{self, Cluster};
use crate::server_crash::spawn_server_with;
use crate::util::{self, named};

struct Replica {
    child: Child,
    endpoint: String,
    client: Client,
}

impl Replica {
    fn start(dsn: &str, args: &[&str]) -> Self {
        let (child, endpoint) = spawn_server_with(std::path::Path::new(dsn), args);
        let client = segmentctl::targets::pinpoint::convert::endpoint_client(
            &endpoint,
            "us-east-1",
            "k",
            "s",
            1,
        );
        Replica {
            child,
            endpoint,
            client,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint.trim_start_matches("http://").parse().unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A file `name` in `dir` of `rows` JSON endpoint records: SMS numbers `+1` `tag` `55` and
/// the row, ids `tag` `e` and the row (a `tag` per file keeps files apart).
fn json_endpoints(dir: &std::path::Path, name: &str, tag: &str, rows: usize) -> std::path::PathBuf {
    let mut file = String::with_capacity(rows * 80);
    for i in 0..rows {
        file.push_str(&format!(
            "{{\"ChannelType\":\"SMS\",\"Address\":\"+1{tag}55{i:07}\",\"Id\":\"{tag}e{i}\"}}\n"
        ));
    }
    let input = dir.join(name);
    std::fs::write(&input, file).unwrap();
    input
}

/// Starts an import of the JSON file `input` into a new segment `segment`; the job's id.
async fn start_import(
    client: &Client,
    app: &str,
    input: &std::path::Path,
    segment: &str,
) -> String {
    client
        .create_import_job()
        .application_id(app)
        .import_job_request(
            ImportJobRequest::builder()
                .s3_url(format!("file://{}", input.display()))
                .format(Format::Json)
                .role_arn("r")
                .define_segment(true)
                .segment_name(segment)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .import_job_response
        .unwrap()
        .id
        .unwrap()
}

/// Every version of a segment, by number, with its name.
async fn versions(client: &Client, app: &str, id: &str) -> BTreeMap<i32, String> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = client
            .get_segment_versions()
            .application_id(app)
            .segment_id(id)
            .page_size("100")
            .set_token(token.take())
            .send()
            .await
            .expect("GetSegmentVersions")
            .segments_response
            .unwrap();
        for s in page.item() {
            out.insert(s.version.unwrap(), s.name.clone().unwrap_or_default());
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return out,
        }
    }
}

/// An acknowledged update: segment, the version it answered, the name it wrote.
type Acked = Arc<Mutex<Vec<(String, i32, String)>>>;

/// Checks that each segment's versions are 1..N without a gap and hold every
/// acknowledged update.
async fn assert_gapless_and_complete(client: &Client, app: &str, segs: &[String], acked: &Acked) {
    let acked = acked.lock().unwrap().clone();
    let mut seen_versions = BTreeSet::new();
    for seg in segs {
        let v = versions(client, app, seg).await;
        let numbers: Vec<i32> = v.keys().copied().collect();
        let expected: Vec<i32> = (1..=numbers.len() as i32).collect();
        assert_eq!(numbers, expected, "segment {seg}: versions are 1..N");
        for (s, version, name) in acked.iter().filter(|(s, _, _)| s == seg) {
            assert_eq!(
                v.get(version),
                Some(name),
                "segment {s}: the acknowledged version {version} holds its update"
            );
            assert!(
                seen_versions.insert((s.clone(), *version)),
                "{s} v{version} acknowledged twice"
            );
        }
    }
}

/// 16 writers, half through each replica, make `total` UpdateSegments over `segs`; a writer
/// whose replica is gone (or whose request failed) moves on to the other replica.
fn writers(
    clients: [Client; 2],
    app: &str,
    segs: &[String],
    total: usize,
    acked: &Acked,
) -> Vec<tokio::task::JoinHandle<()>> {
    let per = total / 16;
    (0..16)
        .map(|w| {
            let (clients, app, segs, acked) = (
                clients.clone(),
                app.to_string(),
                segs.to_vec(),
                acked.clone(),
            );
            tokio::spawn(async move {
                let mut via = w % 2;
                let mut done = 0;
                let mut attempts = 0;
                while done < per {
                    attempts += 1;
                    assert!(
                        attempts < per * 200,
                        "writer {w} cannot get its updates through"
                    );
                    let seg = &segs[(w + done) % segs.len()];
                    let name = format!("w{w}-u{done}");
                    let out = clients[via]
                        .update_segment()
                        .application_id(&app)
                        .segment_id(seg)
                        .write_segment_request(named(&name))
                        .send()
                        .await;
                    match out {
                        Ok(out) => {
                            let v = out.segment_response.unwrap().version.unwrap();
                            acked.lock().unwrap().push((seg.clone(), v, name));
                            done += 1;
                        }
                        Err(_) => {
                            via = 1 - via;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn wait_for(acked: &Acked, n: usize) {
    let start = Instant::now();
    while acked.lock().unwrap().len() < n {
        assert!(start.elapsed() < Duration::from_secs(120), "the load ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn four_segments(client: &Client, app: &str) -> Vec<String> {
    let mut segs = Vec::new();
    for i in 0..4 {
        segs.push(util::create_segment(client, app, named(&format!("s{i}"))).await);
    }
    segs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_versions_gapless_and_a_killed_one_loses_nothing_acknowledged() {
    gapless_through_two_replicas(&pg::database(), &["--db-statements", "prepared"]).await;
}

/// The same through PgBouncer in transaction mode (a server connection per transaction,
/// no prepared statement kept), with the statements it can carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_pgbouncer_in_transaction_mode_keep_versions_gapless() {
    let dsn = crate::pgbouncer::database();
    assert_eq!(crate::pgbouncer::shared().pool_mode(), "transaction");
    gapless_through_two_replicas(&dsn, &["--db-statements", "unnamed"]).await;
}

async fn gapless_through_two_replicas(dsn: &str, args: &[&str]) {
    let a = Replica::start(dsn, args);
    let mut b = Replica::start(dsn, args);
    let app = util::create_app(&a.client, "replicas").await;
    let segs = four_segments(&a.client, &app).await;
    // What one replica acknowledged, the other reads at once.
    for seg in &segs {
        let got = b
            .client
            .get_segment()
            .application_id(&app)
            .segment_id(seg)
            .send()
            .await
            .expect("a segment created through A is read through B");
        assert_eq!(got.segment_response.unwrap().version, Some(1));
    }
    let acked: Acked = Arc::default();
    let tasks = writers(
        [a.client.clone(), b.client.clone()],
        &app,
        &segs,
        400,
        &acked,
    );
    wait_for(&acked, 120).await;
    b.kill();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        acked.lock().unwrap().len(),
        400,
        "every update went through"
    );
    assert_gapless_and_complete(&a.client, &app, &segs, &acked).await;
}

/// GetSegment of `seg` through `client`.
async fn get_segment(
    client: &Client,
    app: &str,
    seg: &str,
) -> Result<
    aws_sdk_pinpoint::types::SegmentResponse,
    aws_sdk_pinpoint::error::SdkError<aws_sdk_pinpoint::operation::get_segment::GetSegmentError>,
> {
    client
        .get_segment()
        .application_id(app)
        .segment_id(seg)
        .send()
        .await
        .map(|r| r.segment_response.unwrap())
}

/// GetSegment's answer a replica keeps (given again while the segment's row says it stands)
/// never outlives a write made through another replica: an update, a tag added and removed,
/// and a delete are each seen at once through the replica that kept the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_a_replica_keeps_never_outlives_a_write_through_another() {
    use aws_sdk_pinpoint::types::TagsModel;
    let dsn = pg::database();
    let a = Replica::start(&dsn, &[]);
    let b = Replica::start(&dsn, &[]);
    let app = util::create_app(&a.client, "kept").await;
    let seg = util::create_segment(&a.client, &app, named("first")).await;
    let read = || get_segment(&b.client, &app, &seg);
    // Read twice: the second is the answer B kept.
    for _ in 0..2 {
        let got = read().await.unwrap();
        assert_eq!((got.version, got.name.as_deref()), (Some(1), Some("first")));
        assert_eq!(got.tags, None);
    }
    a.client
        .update_segment()
        .application_id(&app)
        .segment_id(&seg)
        .write_segment_request(named("second"))
        .send()
        .await
        .unwrap();
    let got = read().await.unwrap();
    assert_eq!(
        (got.version, got.name.as_deref()),
        (Some(2), Some("second"))
    );
    let arn = got.arn.clone().unwrap();
    a.client
        .tag_resource()
        .resource_arn(&arn)
        .tags_model(TagsModel::builder().tags("owner", "growth").build())
        .send()
        .await
        .unwrap();
    let got = read().await.unwrap();
    assert_eq!(got.version, Some(2), "a tag makes no version");
    assert_eq!(
        got.tags
            .unwrap_or_default()
            .get("owner")
            .map(String::as_str),
        Some("growth")
    );
    a.client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("owner")
        .send()
        .await
        .unwrap();
    let got = read().await.unwrap();
    assert!(got.tags.unwrap_or_default().is_empty(), "the tag removed");
    a.client
        .delete_segment()
        .application_id(&app)
        .segment_id(&seg)
        .send()
        .await
        .unwrap();
    let gone = read().await.unwrap_err().into_service_error();
    assert!(gone.is_not_found_exception(), "{gone:?}");
}

/// After the database went away and came back (a restart here; a failover to a standby
/// that missed a version, or a restore, in production: its history may then differ from
/// what a replica read), no answer a replica kept from before is given: each is read again.
/// The history is rewritten here under the server, the version's name changed in place,
/// which only a database that went back in time could show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_kept_before_the_database_went_away_is_given_after() {
    let mut cluster = tokio::task::spawn_blocking(Cluster::new).await.unwrap();
    let dsn = cluster.database();
    let b = Replica::start(&dsn, &[]);
    let app = util::create_app(&b.client, "rewound").await;
    let seg = util::create_segment(&b.client, &app, named("before")).await;
    let name = || async {
        get_segment(&b.client, &app, &seg)
            .await
            .map(|s| s.name.unwrap_or_default())
    };
    // Read twice: the second is the answer B kept.
    for _ in 0..2 {
        assert_eq!(name().await.unwrap(), "before");
    }
    let rewritten = pg::query_i64(
        std::path::Path::new(&dsn),
        &format!(
            "WITH u AS (UPDATE segment_versions SET body = replace(body, '\"before\"', '\"after\"')
               WHERE segment_id = '{seg}' RETURNING 1) SELECT count(*) FROM u"
        ),
    );
    assert_eq!(rewritten, 1);
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.stop(false);
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    // The first reads after the restart may find the old connection closed (a 503, which
    // the SDK retries); then the version is read again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match name().await {
            Ok(n) => break n,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("GetSegment after the restart: {e:?}"),
        }
    };
    assert_eq!(after, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_answer_503_while_the_database_restarts_and_recover_by_themselves() {
    let mut cluster = tokio::task::spawn_blocking(Cluster::new).await.unwrap();
    let dsn = cluster.database();
    let a = Replica::start(&dsn, &[]);
    let b = Replica::start(&dsn, &[]);
    let app = util::create_app(&a.client, "restart").await;
    let segs = four_segments(&a.client, &app).await;
    let acked: Acked = Arc::default();
    let tasks = writers(
        [a.client.clone(), b.client.clone()],
        &app,
        &segs,
        320,
        &acked,
    );
    wait_for(&acked, 80).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop(false);
        cluster
    })
    .await
    .unwrap();
    // While it is down: not ready, and requests get a 503 with the usual error body.
    for r in [&a, &b] {
        let (status, _, _) = util::raw(
            r.addr(),
            "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(
            status, 503,
            "{}: not ready while the database is down",
            r.endpoint
        );
        let (status, headers, body) = util::raw(
            r.addr(),
            &format!("GET /v1/apps/{app}/segments HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            util::header(&headers, "x-amzn-errortype"),
            Some("InternalServerErrorException")
        );
        let body = util::error_body(&body);
        assert!(
            body["Message"].as_str().unwrap().contains("unavailable"),
            "{body}"
        );
        assert!(body["RequestID"].is_string());
    }
    let mut cluster = cluster;
    let mut cluster = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(500));
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    for r in [&a, &b] {
        let start = Instant::now();
        loop {
            let (status, _, _) = util::raw(
                r.addr(),
                "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await;
            if status == 200 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} ready again",
                r.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(acked.lock().unwrap().len(), 320);
    assert_gapless_and_complete(&a.client, &app, &segs, &acked).await;
    tokio::task::spawn_blocking(move || cluster.stop(false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_whose_replica_dies_is_finished_by_another_once() {
    let dsn = pg::database();
    let dir = tempfile::tempdir().unwrap();
    let rows = 60_000;
    let input = json_endpoints(dir.path(), "big.json", "", rows);
    let root = dir.path().to_str().unwrap();
    let args = ["--import-root", root, "--job-lease", "2s"];
    let mut a = Replica::start(&dsn, &args);
    let b = Replica::start(&dsn, &args);
    let app = util::create_app(&a.client, "takeover").await;
    let id = start_import(&a.client, &app, &input, "taken-over").await;
    let get = |c: Client| {
        let (app, id) = (app.clone(), id.clone());
        async move {
            c.get_import_job()
                .application_id(app)
                .job_id(id)
                .send()
                .await
                .unwrap()
                .import_job_response
                .unwrap()
        }
    };
    // A runs it; killed once rows are in, well before the end.
    let start = Instant::now();
    loop {
        let j = get(b.client.clone()).await;
        let n = j.total_processed().unwrap_or(0);
        assert!(n < rows as i32, "the import finished before the kill");
        if n > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill();
    let start = Instant::now();
    let done = loop {
        let j = get(b.client.clone()).await;
        let status = j
            .job_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        if status == "COMPLETED" || status == "FAILED" {
            break j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "B takes the job over and finishes it: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        done.job_status().map(|s| s.as_str()),
        Some("COMPLETED"),
        "{done:?}"
    );
    assert_eq!(done.total_processed(), Some(rows as i32));
    let live = util::segments_of(&b.client, &app).await;
    let named: Vec<_> = live
        .iter()
        .filter(|s| s.name.as_deref() == Some("taken-over"))
        .collect();
    assert_eq!(
        named.len(),
        1,
        "one segment, not one per replica that ran the job"
    );
    assert_eq!(
        named[0].import_definition.as_ref().and_then(|d| d.size),
        Some(rows as i32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_apply_each_migration_once() {
    let dsn = pg::database();
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let dsn = dsn.clone();
            std::thread::spawn(move || Replica::start(&dsn, &[]))
        })
        .collect();
    let replicas: Vec<Replica> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    for r in &replicas {
        util::create_app(&r.client, "ok").await;
    }
    let path = std::path::PathBuf::from(&dsn);
    assert_eq!(
        pg::query_i64(&path, "SELECT COUNT(*) FROM schema_migrations"),
        segmentctl::server::store::migrations::MIGRATIONS.len() as i64
    );
    assert_eq!(
        pg::query_i64(
            &path,
            "SELECT COUNT(DISTINCT version) FROM schema_migrations"
        ),
        segmentctl::server::store::migrations::MIGRATIONS.len() as i64
    );
    drop(replicas);

    // The deploy step: nothing left to apply.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["serve", "--no-auth", "--migrate-only", "--data", &dsn])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latest = segmentctl::server::store::migrations::MIGRATIONS.len();
    assert!(
        stdout.contains(&format!(
            "schema at version {latest}; applied: nothing to apply"
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("postgres@"),
        "the URL is not echoed whole: {stdout}"
    );

    // A schema newer than this build is refused, not served.
    let dsn2 = dsn.clone();
    pg::off_runtime(move || {
        let mut c = postgres::Client::connect(&dsn2, postgres::NoTls).unwrap();
        c.batch_execute("INSERT INTO schema_migrations VALUES (999, 'from the future', 'now')")
            .unwrap();
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["serve", "--no-auth", "--data", &dsn])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("schema is at version 999, newer than this segmentctl knows"),
        "{stderr}"
    );
}

/// `serve --migrate-only` on a fresh database says what it applied.
#[test]
fn migrate_only_applies_the_schema_and_names_each_migration() {
    let dsn = pg::database();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["serve", "--no-auth", "--migrate-only", "--data", &dsn])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let port = dsn.split(':').nth(2).unwrap().split('/').next().unwrap();
    insta::assert_snapshot!(
        stdout.replace(port, "PORT").replace(&dsn[dsn.rfind('/').unwrap()..], "/DB"),
        @"postgres://127.0.0.1:PORT/DB: schema at version 5; applied: 1 (initial schema), 2 (job leases), 3 (import rows staged as segment members), 4 (customer profiles), 5 (connect campaigns)"
    );
}

/// A GET's status and body, as any client reads it.
async fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = util::raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Everything the API shows of a server's data, by path.
async fn everything(addr: SocketAddr) -> BTreeMap<String, (u16, serde_json::Value)> {
    let mut out = BTreeMap::new();
    let (_, apps) = get_json(addr, "/v1/apps?page-size=100").await;
    out.insert("/v1/apps".to_string(), (200, apps.clone()));
    for app in apps["Item"].as_array().unwrap() {
        let a = app["Id"].as_str().unwrap();
        let arn = app["Arn"]
            .as_str()
            .unwrap()
            .replace(':', "%3A")
            .replace('/', "%2F");
        let mut paths = vec![
            format!("/v1/apps/{a}/segments?page-size=100"),
            format!("/v1/apps/{a}/campaigns"),
            format!("/v1/apps/{a}/journeys"),
            format!("/v1/apps/{a}/jobs/import"),
            format!("/v1/tags/{arn}"),
        ];
        let (_, segs) = get_json(addr, &paths[0]).await;
        for s in segs["Item"].as_array().unwrap() {
            let id = s["Id"].as_str().unwrap();
            paths.push(format!("/v1/apps/{a}/segments/{id}/versions?page-size=100"));
        }
        for e in ["e1", "e2", "e3"] {
            paths.push(format!("/v1/apps/{a}/endpoints/{e}"));
        }
        for p in paths {
            let got = get_json(addr, &p).await;
            out.insert(p, got);
        }
    }
    // Customer Profiles: domains, their definitions (each whole), and tags.
    let (_, domains) = get_json(addr, "/domains").await;
    out.insert("/domains".to_string(), (200, domains.clone()));
    for d in domains["Items"].as_array().unwrap() {
        let d = d["DomainName"].as_str().unwrap();
        let mut paths = vec![
            format!("/domains/{d}"),
            format!("/domains/{d}/segment-definitions"),
        ];
        let (_, defs) = get_json(addr, &paths[1]).await;
        for def in defs["Items"].as_array().unwrap() {
            let n = def["SegmentDefinitionName"].as_str().unwrap();
            let arn = def["SegmentDefinitionArn"]
                .as_str()
                .unwrap()
                .replace(':', "%3A")
                .replace('/', "%2F");
            paths.push(format!("/domains/{d}/segment-definitions/{n}"));
            paths.push(format!("/tags/{arn}"));
        }
        for p in paths {
            let got = get_json(addr, &p).await;
            out.insert(p, got);
        }
    }
    // Connect campaigns: the list, each whole, and its state.
    let (status, _, body) = util::raw(
        addr,
        "POST /v2/campaigns-summary HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    let campaigns: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    out.insert("/v2/campaigns-summary".into(), (status, campaigns.clone()));
    for c in campaigns["campaignSummaryList"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = c["id"].as_str().unwrap();
        for p in [
            format!("/v2/campaigns/{id}"),
            format!("/v2/campaigns/{id}/state"),
        ] {
            let got = get_json(addr, &p).await;
            out.insert(p, got);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_migrate_copies_a_populated_sqlite_database_whole_and_reruns_safely() {
    use aws_sdk_pinpoint::types::{
        ChannelType, EndpointBatchItem, EndpointBatchRequest, EndpointUser, TagsModel,
        WriteCampaignRequest,
    };
    use segmentctl::server::store::DataSource;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("source.db");
    let csv = dir.path().join("members.csv");
    std::fs::write(
        &csv,
        "ChannelType,Address,Id,User.UserId\nEMAIL,a@example.com,i1,u9\nSMS,+15550001,i2,\n",
    )
    .unwrap();
    let root = dir.path().to_path_buf();
    let source = util::start_with(|cfg| {
        cfg.data = DataSource::Sqlite(sqlite.clone());
        cfg.import_roots = vec![root.clone()];
    })
    .await;
    let c = &source.client;
    for name in ["Shop", "Blog"] {
        let app = util::create_app(c, name).await;
        let base = util::create_segment(c, &app, named("base")).await;
        for v in 2..=3 {
            c.update_segment()
                .application_id(&app)
                .segment_id(&base)
                .write_segment_request(named(&format!("base v{v}")))
                .send()
                .await
                .unwrap();
        }
        util::create_segment(c, &app, util::built_on("derived", &base).build()).await;
        let arn =
            format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{app}/segments/{base}");
        c.tag_resource()
            .resource_arn(&arn)
            .tags_model(TagsModel::builder().tags("team", "growth").build())
            .send()
            .await
            .unwrap();
        c.create_campaign()
            .application_id(&app)
            .write_campaign_request(
                WriteCampaignRequest::builder()
                    .name("Black Friday")
                    .segment_id(&base)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let items = ["e1", "e2", "e3"]
            .iter()
            .map(|id| {
                EndpointBatchItem::builder()
                    .id(*id)
                    .channel_type(ChannelType::Email)
                    .address(format!("{id}@example.com"))
                    .user(EndpointUser::builder().user_id("u1").build())
                    .build()
            })
            .collect::<Vec<_>>();
        c.update_endpoints_batch()
            .application_id(&app)
            .endpoint_batch_request(
                EndpointBatchRequest::builder()
                    .set_item(Some(items))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let job = c
            .create_import_job()
            .application_id(&app)
            .import_job_request(
                ImportJobRequest::builder()
                    .s3_url(format!("file://{}", csv.display()))
                    .format(Format::Csv)
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
        let j = crate::imports::import_done(c, &app, job.id().unwrap()).await;
        assert_eq!(
            j.job_status().map(|s| s.as_str()),
            Some("COMPLETED"),
            "{j:?}"
        );
    }
    {
        use aws_sdk_customerprofiles::types::{
            Dimension, Group, ProfileAttributes, ProfileDimension, SegmentGroup, SourceSegment,
            StringDimensionType,
        };
        let cp = util::profiles_client(&source);
        cp.create_domain()
            .domain_name("shop")
            .default_expiration_days(30)
            .tags("team", "growth")
            .send()
            .await
            .unwrap();
        for (name, source) in [("base", None), ("derived", Some("base"))] {
            let mut g = Group::builder().dimensions(Dimension::ProfileAttributes(
                ProfileAttributes::builder()
                    .last_name(
                        ProfileDimension::builder()
                            .dimension_type(StringDimensionType::Inclusive)
                            .values("Lovelace")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            ));
            if let Some(s) = source {
                g = g.source_segments(SourceSegment::builder().segment_definition_name(s).build());
            }
            cp.create_segment_definition()
                .domain_name("shop")
                .segment_definition_name(name)
                .display_name(name)
                .segment_groups(SegmentGroup::builder().groups(g.build()).build())
                .tags("segmentctl:name", name)
                .send()
                .await
                .unwrap();
        }
        util::campaign_on(&source, "spring", "shop", "base", true).await;
    }
    let sqlite_server = util::start_with(|cfg| {
        cfg.data = DataSource::Sqlite(sqlite.clone());
        cfg.auth = segmentctl::server::Auth::None;
    });
    drop(source);
    let before = {
        let t = sqlite_server.await;
        let all = everything(t.addr()).await;
        t.server.stop().await;
        all
    };
    assert!(before.len() > 20, "the source holds what the test wrote");
    assert!(
        before
            .iter()
            .any(|(k, (_, v))| k.ends_with("/state") && v["state"] == "Running"),
        "the campaign is among what is compared"
    );

    let dsn = pg::database();
    let migrate = |dsn: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
            .args(["serve", "migrate", "--from"])
            .arg(&sqlite)
            .args(["--to", dsn])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = migrate(&dsn);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("✓ segment_versions"), "{stdout}");
    assert!(
        stdout.contains("Done: 16 tables copied and verified"),
        "{stdout}"
    );
    // The copy serves exactly what the source did.
    let target = util::start_with(|cfg| {
        cfg.data = DataSource::Postgres(dsn.clone());
        cfg.auth = segmentctl::server::Auth::None;
    })
    .await;
    assert_eq!(everything(target.addr()).await, before);
    // New rows take positions after the copied ones.
    let apps = get_json(target.addr(), "/v1/apps").await.1;
    let app = apps["Item"][0]["Id"].as_str().unwrap().to_string();
    let (status, _, body) = util::raw(
        target.addr(),
        &format!("POST /v1/apps/{app}/segments HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{{\"Name\":\"new\"}}"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let listed = get_json(target.addr(), &format!("/v1/apps/{app}/segments"))
        .await
        .1;
    assert_eq!(
        listed["Item"].as_array().unwrap().last().unwrap()["Name"],
        "new"
    );
    let body = r#"{"DefaultExpirationDays":1}"#;
    let (status, _, answer) = util::raw(
        target.addr(),
        &format!("POST /domains/new HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let domains = get_json(target.addr(), "/domains").await.1;
    let names: Vec<_> = domains["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["DomainName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop", "new"]);
    target.server.stop().await;

    // A rerun copies nothing more, and says the target now holds a row the source does not.
    let (code, stdout, stderr) = migrate(&dsn);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("✓ apps"), "{stdout}");
    assert!(stdout.contains("✗ segments"), "{stdout}");
    assert!(
        stderr.contains("segments, segment_versions, cp_domains differ"),
        "{stderr}"
    );
    // Into a fresh database, a second run finds everything there already.
    let fresh = pg::database();
    assert_eq!(migrate(&fresh).0, Some(0));
    let (code, stdout, _) = migrate(&fresh);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with('✓'))
            .all(|l| l.contains(" 0 copied now")),
        "{stdout}"
    );
    // While a server holds the file, the copy is refused before anything is read.
    let holder = util::start_with(|cfg| {
        cfg.data = DataSource::Sqlite(sqlite.clone());
        cfg.auth = segmentctl::server::Auth::None;
    })
    .await;
    let (code, stdout, stderr) = migrate(&fresh);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("is in use by another segmentctl server"),
        "{stderr}"
    );
    assert!(!stdout.contains("rows in source"), "{stdout}");
    // The file changes (a segment updated, from version 3 to 4), then is copied again into
    // the copy of its older self: the versions differ, and nothing is written.
    let c = &holder.client;
    let app = c
        .get_apps()
        .send()
        .await
        .unwrap()
        .applications_response
        .unwrap()
        .item()[0]
        .id()
        .unwrap()
        .to_string();
    let segments = c
        .get_segments()
        .application_id(&app)
        .send()
        .await
        .unwrap()
        .segments_response
        .unwrap();
    let base = segments
        .item()
        .iter()
        .find(|s| s.name() == Some("base v3"))
        .and_then(|s| s.id())
        .unwrap()
        .to_string();
    c.update_segment()
        .application_id(&app)
        .segment_id(&base)
        .write_segment_request(named("base v4"))
        .send()
        .await
        .unwrap();
    holder.server.stop().await;
    let (code, stdout, stderr) = migrate(&fresh);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("✗ segments "), "{stdout}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    let copy = util::start_with(|cfg| {
        cfg.data = DataSource::Postgres(fresh.clone());
        cfg.auth = segmentctl::server::Auth::None;
    })
    .await;
    assert_eq!(
        everything(copy.addr()).await,
        before,
        "the copy is as it was"
    );
    // …and stays writable: its segment and its versions agree.
    let updated = copy
        .client
        .update_segment()
        .application_id(&app)
        .segment_id(&base)
        .write_segment_request(named("base v4 on PostgreSQL"))
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    assert_eq!(updated.version(), Some(4));
    copy.server.stop().await;
    // Into a database another server already wrote to: said in one line, not as a
    // driver's duplicate-key error.
    let used = pg::database();
    let other = util::start_with(|cfg| {
        cfg.data = DataSource::Postgres(used.clone());
        cfg.auth = segmentctl::server::Auth::None;
    })
    .await;
    util::create_app(&other.client, "someone else's").await;
    other.server.stop().await;
    let (code, stdout, stderr) = migrate(&used);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("already holds other data: its table apps has rows that are not")
            && stderr.contains("the target must be an empty database, or one this very file was copied into before (a rerun)"),
        "{stderr}"
    );
    assert!(!stderr.contains("duplicate key"), "{stderr}");
}

/// A database blip does not strand a job: the batches that meet "database unavailable" are
/// tried again with backoff, and the import completes once PostgreSQL is back (8 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_completes_when_the_database_stops_for_eight_seconds_mid_import() {
    let mut cluster = Cluster::new();
    let dsn = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let rows = 6_000;
    let input = json_endpoints(dir.path(), "blip.json", "", rows);
    let root = dir.path().to_str().unwrap();
    let a = Replica::start(&dsn, &["--import-root", root, "--job-lease", "2s"]);
    let app = util::create_app(&a.client, "blip").await;
    let id = start_import(&a.client, &app, &input, "after-the-blip").await;
    let get = || {
        let (c, app, id) = (a.client.clone(), app.clone(), id.clone());
        async move {
            c.get_import_job()
                .application_id(app)
                .job_id(id)
                .send()
                .await
                .ok()
                .and_then(|o| o.import_job_response)
        }
    };
    // Stopped once rows are in, before the end.
    let start = Instant::now();
    loop {
        let n = get().await.and_then(|j| j.total_processed()).unwrap_or(0);
        if n > 0 {
            assert!(n < rows as i32, "the import finished before the stop");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "rows come in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // On the test's own thread: PostgreSQL dies with the thread that started it, and a
    // blocking-pool thread may end while the test still runs.
    cluster.stop(false);
    std::thread::sleep(Duration::from_secs(8));
    cluster.start();
    let start = Instant::now();
    let done = loop {
        if let Some(j) = get().await {
            let status = j.job_status().map(|s| s.as_str().to_string());
            if matches!(status.as_deref(), Some("COMPLETED" | "FAILED")) {
                break j;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the job ends after the blip"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        done.job_status().map(|s| s.as_str()),
        Some("COMPLETED"),
        "{done:?}"
    );
    assert_eq!(done.total_processed(), Some(rows as i32));
    let live = util::segments_of(&a.client, &app).await;
    let seg = live
        .iter()
        .find(|s| s.name.as_deref() == Some("after-the-blip"))
        .expect("the imported segment");
    assert_eq!(
        seg.import_definition.as_ref().and_then(|d| d.size),
        Some(rows as i32)
    );
    drop(a);
    cluster.stop(false);
}

/// One application's load does not take the pool from the others: ten imports and twelve
/// endpoint writers on one application, on a pool of four connections, while another
/// application is read and `/readyz` is asked; every read answers 200, the server stays
/// ready, and every import completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_application_leaves_connections_for_the_others_and_the_server_ready() {
    use aws_sdk_pinpoint::types::{ChannelType, EndpointRequest};
    let dsn = pg::database();
    let dir = tempfile::tempdir().unwrap();
    let rows = 2_000;
    let inputs: Vec<_> = (0..10)
        .map(|f| json_endpoints(dir.path(), &format!("busy-{f}.json"), &f.to_string(), rows))
        .collect();
    let root = dir.path().to_str().unwrap();
    let r = Replica::start(&dsn, &["--import-root", root, "--db-pool", "4"]);
    let busy = util::create_app(&r.client, "busy").await;
    let quiet = util::create_app(&r.client, "quiet").await;
    let mut jobs = Vec::new();
    for (f, input) in inputs.iter().enumerate() {
        jobs.push(start_import(&r.client, &busy, input, &format!("busy-{f}")).await);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..12)
        .map(|w| {
            let (c, app, stop) = (r.client.clone(), busy.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c
                        .update_endpoint()
                        .application_id(&app)
                        .endpoint_id(format!("w{w}-{i}"))
                        .endpoint_request(
                            EndpointRequest::builder()
                                .channel_type(ChannelType::Sms)
                                .address(format!("+1999{w:02}{i:05}"))
                                .build(),
                        )
                        .send()
                        .await;
                    i += 1;
                }
            })
        })
        .collect();
    let mut reads = 0;
    // Writers of one application wait their turn in the server without a connection: none
    // of this server's sessions is ever seen waiting on the application's advisory lock
    // (each such wait would hold a connection the other applications need).
    let mut waiting_with_a_connection = 0;
    let waiters = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'segmentctl' AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        dsn.rsplit('/').next().unwrap()
    );
    let start = Instant::now();
    loop {
        let at = std::path::PathBuf::from(&dsn);
        let q = waiters.clone();
        waiting_with_a_connection = waiting_with_a_connection.max(
            tokio::task::spawn_blocking(move || pg::query_i64(&at, &q))
                .await
                .unwrap(),
        );
        let listed = r.client.get_segments().application_id(&quiet).send().await;
        assert!(listed.is_ok(), "a read of another application: {listed:?}");
        let (status, _, body) = util::raw(
            r.addr(),
            "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200, "ready while one application is busy: {body}");
        reads += 1;
        let mut open = 0;
        for id in &jobs {
            let j = r
                .client
                .get_import_job()
                .application_id(&busy)
                .job_id(id)
                .send()
                .await
                .unwrap()
                .import_job_response
                .unwrap();
            match j.job_status().map(|s| s.as_str()) {
                Some("COMPLETED") => {}
                Some("FAILED") => panic!("an import failed under load: {j:?}"),
                _ => open += 1,
            }
        }
        if open == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the imports finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(reads > 0);
    assert_eq!(
        waiting_with_a_connection, 0,
        "writers of the busy application held connections while they waited for its lock"
    );
}
