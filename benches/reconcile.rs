//! Macro benchmarks of the reconciler, each printed beside the baseline its issue names.
//!
//!   cargo bench --bench reconcile            # all
//!   cargo bench --bench reconcile -- plan    # one: validate | plan | apply
//!
//! - validate: 10,000 segments in 1,000 files, `segmentctl validate` wall time and peak RSS
//!   (goal: under one second).
//! - plan: 1,000 segments in 10 applications against the server with 20 ms added to every
//!   answer; wall time against the floor (requests needed × 20 ms ÷ concurrency).
//! - apply: 500 creates against the server enforcing Pinpoint's quotas; wall time against
//!   the 20 s floor (500 ÷ 25/s), and the 429 answers received.

use std::path::Path;
use std::time::{Duration, Instant};

use segmentctl::manifests::config::RateLimits;
use segmentctl::server::{self, Auth, Credentials, FaultConfig, ServerConfig};
use segmentctl::targets::pinpoint::pacing::Api;
use segmentctl::targets::pinpoint::SdkPinpoint;

// The allocator the segmentctl binary runs with (src/main.rs): measure what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "AKIDBENCH";
const SECRET: &str = "bench-secret";

fn segment(app: &str, name: &str, i: usize) -> String {
    format!(
        "---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: {name}\n  application: {app}\nspec:\n  Name: Segment {name}\n  Dimensions:\n    Demographic:\n      Platform: {{DimensionType: INCLUSIVE, Values: [iOS, Android]}}\n    Location:\n      Country: {{Values: [US, CA, MX]}}\n    Attributes:\n      cohort: {{AttributeType: INCLUSIVE, Values: [\"c{i}\"]}}\n      signup: {{AttributeType: BETWEEN, Values: [\"2026-01-01T00:00:00Z\", \"2026-06-01T00:00:00Z\"]}}\n    Metrics:\n      sessions: {{ComparisonOperator: GREATER_THAN, Value: {i}}}\n"
    )
}

fn peak_child_rss_kib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss
}

fn bench_validate() {
    let dir = tempfile::tempdir().unwrap();
    let app = "0123456789abcdef0123456789abcdef";
    for f in 0..1000 {
        let text: String = (0..10)
            .map(|k| segment(app, &format!("s{f:04}-{k}"), f * 10 + k))
            .collect();
        std::fs::write(dir.path().join(format!("f{f:04}.yaml")), text).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_segmentctl");
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let out = std::process::Command::new(bin)
            .arg("validate")
            .arg(dir.path())
            .output()
            .unwrap();
        times.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "10000 manifests OK (1 application, 10000 segments)\n"
        );
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "validate  10,000 segments / 1,000 files: median {:.0} ms (min {:.0} ms) over 5 runs, peak RSS {:.1} MiB; goal < 1000 ms: {:.2}x of the budget",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        peak_child_rss_kib() as f64 / 1024.0,
        median.as_secs_f64()
    );
}

async fn start(rate_limits: bool, latency_ms: u64) -> (server::RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::local(
        dir.path().join("pinpoint.db"),
        Auth::SigV4(Credentials::single(KEY, SECRET)),
    );
    cfg.rate_limits = rate_limits;
    cfg.faults = FaultConfig {
        latency: Duration::from_millis(latency_ms),
        ..Default::default()
    };
    (server::start(cfg).await.unwrap(), dir)
}

fn api(endpoint: &str, limits: RateLimits, concurrency: usize) -> SdkPinpoint {
    SdkPinpoint::new(Api::with_concurrency(
        segmentctl::targets::pinpoint::convert::endpoint_client(
            endpoint,
            "us-east-1",
            KEY,
            SECRET,
            1,
        ),
        limits,
        concurrency,
    ))
}

async fn plan_once(api: &SdkPinpoint, dir: &Path) -> segmentctl::plan::Plan {
    // As `segmentctl plan` does: the folder parsed while the target is read.
    let inputs = segmentctl::reconcile::pipeline::Inputs {
        dir: dir.to_path_buf(),
        config: None,
        overrides: Default::default(),
    };
    let t0 = Instant::now();
    let planned = segmentctl::reconcile::pipeline::load_and_plan(
        api,
        &inputs,
        &segmentctl::reconcile::pipeline::everything,
    )
    .await
    .unwrap_or_else(|_| panic!("the bench folder plans"));
    if std::env::var_os("BENCH_PHASES").is_some() {
        eprintln!("load, observe and plan {:?}", t0.elapsed());
    }
    planned.plan
}

/// `segmentctl serve` as its own process, as the API is in production; returns its endpoint.
fn spawn_server(data: &Path, extra: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env("SEGMENTCTL_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("startup log").unwrap();
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

async fn bench_plan() {
    const LATENCY: u64 = 20;
    let concurrency = segmentctl::manifests::config::Config::default().concurrency;
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("pinpoint.db");
    let (mut srv, endpoint) = spawn_server(&db, &[]);
    let fast = api(
        &endpoint,
        RateLimits {
            segment_writes: 5000.0,
            reads: 5000.0,
        },
        32,
    );
    let dir = tempfile::tempdir().unwrap();
    for a in 0..10 {
        let app = fast
            .api
            .client
            .create_app()
            .create_application_request(
                aws_sdk_pinpoint::types::CreateApplicationRequest::builder()
                    .name(format!("app-{a}"))
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .application_response
            .unwrap()
            .id
            .unwrap();
        let text: String = (0..100)
            .map(|i| segment(&app, &format!("a{a}-s{i:03}"), i))
            .collect();
        std::fs::write(dir.path().join(format!("app{a}.yaml")), text).unwrap();
    }
    let p = plan_once(&fast, dir.path()).await;
    let r = segmentctl::reconcile::apply::apply(
        &fast,
        &p,
        &segmentctl::reconcile::apply::Options {
            concurrency: 32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        r.done(segmentctl::plan::Action::Create),
        1000,
        "{}",
        r.summary()
    );
    srv.kill().unwrap();
    let _ = srv.wait();

    // The same data, now 20 ms away.
    let (mut srv, endpoint) = spawn_server(&db, &["--latency-ms", &LATENCY.to_string()]);
    let mut times = Vec::new();
    let mut requests = 0;
    for _ in 0..7 {
        // A client of its own per run, as each `segmentctl plan` has: its rate limiter starts
        // full. (One client for every run measured the limiter instead: 31 requests a run
        // against a refill of 300 a second.)
        let client = api(&endpoint, RateLimits::default(), concurrency);
        let start = Instant::now();
        let p = plan_once(&client, dir.path()).await;
        times.push(start.elapsed());
        requests = client.api.counters.snapshot().values().sum::<u64>();
        assert!(p.converged());
    }
    times.sort();
    let median = times[times.len() / 2];
    let floor = Duration::from_millis(LATENCY) * requests as u32 / concurrency as u32;
    println!(
        "plan      1,000 segments / 10 apps, +{LATENCY} ms per answer, concurrency {concurrency}: median {:.0} ms over 7 runs; {requests} requests, floor {:.1} ms; ratio {:.2}x (goal ≤ 1.3x)",
        median.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        median.as_secs_f64() / floor.as_secs_f64()
    );
    srv.kill().unwrap();
    let _ = srv.wait();
}

async fn bench_apply() {
    let (srv, _data) = start(true, 0).await;
    let client = api(&srv.endpoint(), RateLimits::default(), 8);
    let app = client
        .api
        .client
        .create_app()
        .create_application_request(
            aws_sdk_pinpoint::types::CreateApplicationRequest::builder()
                .name("apply-bench")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .application_response
        .unwrap()
        .id
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..500)
        .map(|i| segment(&app, &format!("s{i:03}"), i))
        .collect();
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    let p = plan_once(&client, dir.path()).await;
    let throttled_before = srv.counters().throttled;
    let start = Instant::now();
    let r = segmentctl::reconcile::apply::apply(
        &client,
        &p,
        &segmentctl::reconcile::apply::Options::default(),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        r.done(segmentctl::plan::Action::Create),
        500,
        "{}",
        r.summary()
    );
    let throttled = srv.counters().throttled - throttled_before;
    println!(
        "apply     500 creates, server enforcing Pinpoint quotas: {:.2} s against the 20 s floor: {:.3}x (goal ≤ 1.1x); 429 answers: {throttled} (goal 0)",
        took.as_secs_f64(),
        took.as_secs_f64() / 20.0
    );
    srv.stop().await;
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    if wanted("validate") {
        bench_validate();
    }
    if wanted("plan") {
        rt.block_on(bench_plan());
    }
    if wanted("apply") {
        rt.block_on(bench_apply());
    }
}
