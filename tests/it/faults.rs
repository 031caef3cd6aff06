//! Convergence under faults, seeded so every failure reproduces. The invariants after
//! convergence: exactly one live segment per manifest, each equal to its manifest; the
//! unmanaged segment untouched; nothing deleted that was not planned.

use std::time::{Duration, Instant};

use segmentctl::daemon::{self, DaemonConfig, Mode};
use segmentctl::manifests::config::RateLimits;
use segmentctl::server::FaultConfig;
use segmentctl::targets::pinpoint::pacing::{Api, RetryPolicy};
use segmentctl::targets::pinpoint::{Pinpoint, SdkPinpoint};
use segmentctl::targets::Connection;

use crate::reconcile::{indent, plan_dir, try_plan_dir, OWNER};
use crate::server_crash::spawn_server;
use crate::util::{self, named, TestServer};

const CHAOS: FaultConfig = FaultConfig {
    fault_rate: 0.2,
    lost_response_rate: 0.1,
    latency: Duration::from_millis(5),
    seed: 20261128,
};

/// A client pacing writes over Pinpoint's 25/s, so that the server throttles it too.
fn pushy() -> RateLimits {
    RateLimits {
        segment_writes: 40.0,
        reads: 300.0,
    }
}

fn quick_retries(mut api: Api) -> SdkPinpoint {
    api.retry = RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(400),
    };
    SdkPinpoint::new(api)
}

fn manifest(app: &str, name: &str, i: usize) -> String {
    format!(
        "apiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: {name}\n  application: {app}\nspec:\n{}",
        indent(&format!("Name: {name}\nDimensions:\n  Attributes:\n    cohort: {{Values: [\"c{i}\"]}}\n  Location:\n    Country: {{Values: [US, CA]}}\n"))
    )
}

struct World {
    t: TestServer,
    apps: Vec<String>,
    unmanaged: (String, String),
    dir: tempfile::TempDir,
}

/// 300 manifests in 3 applications, and one unmanaged segment that must stay untouched.
async fn world() -> World {
    let t = util::start_with(|c| c.rate_limits = true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut apps = Vec::new();
    for a in 0..3 {
        let app = t.app(&format!("chaos-{a}")).await;
        for i in 0..100 {
            std::fs::write(
                dir.path().join(format!("a{a}-{i:03}.yaml")),
                manifest(&app, &format!("s{i:03}"), i),
            )
            .unwrap();
        }
        apps.push(app);
    }
    let unmanaged = util::create_segment(&t.client, &apps[0], named("s000")).await;
    World {
        unmanaged: (apps[0].clone(), unmanaged),
        t,
        apps,
        dir,
    }
}

async fn assert_invariants(w: &World, api: &SdkPinpoint) {
    w.t.server.state.faults.set(FaultConfig::default());
    let p = plan_dir(api, w.dir.path(), false).await;
    assert!(
        p.converged(),
        "each live segment equals its manifest:\n{}",
        segmentctl::report::text(&p, false)
    );
    for app in &w.apps {
        let live = api.list_segments(app).await.unwrap();
        let mut names: Vec<&str> = live
            .iter()
            .filter_map(|s| segmentctl::plan::live::managed_name(s.tags.as_ref(), OWNER))
            .collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(
            (before, names.len()),
            (100, 100),
            "exactly one live segment per manifest in {app}"
        );
        let extra = if *app == w.unmanaged.0 { 1 } else { 0 };
        assert_eq!(
            live.len(),
            100 + extra,
            "nothing else was created or deleted in {app}"
        );
    }
    let hand =
        w.t.client
            .get_segment()
            .application_id(&w.unmanaged.0)
            .segment_id(&w.unmanaged.1)
            .send()
            .await
            .unwrap();
    let hand = hand.segment_response.unwrap();
    assert_eq!(
        (hand.version, hand.name.as_deref(), hand.tags),
        (Some(1), Some("s000"), None),
        "the unmanaged segment is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_segments_converge_by_reruns_under_errors_lost_responses_and_throttling() {
    let w = world().await;
    let api = quick_retries(Api::new(w.t.client.clone(), pushy()));
    w.t.server.state.faults.set(CHAOS);
    let start = Instant::now();
    let mut runs = 0;
    loop {
        let Some(p) = try_plan_dir(&api, w.dir.path(), false).await else {
            continue;
        };
        if p.converged() {
            break;
        }
        runs += 1;
        assert!(runs <= 15, "no convergence after 15 applies");
        segmentctl::reconcile::apply::apply(&api, &p, &Default::default()).await;
    }
    let c = w.t.server.counters();
    eprintln!(
        "chaos/apply: converged after {runs} applies in {:.1} s; {} requests, {} failed before work, {} responses lost, {} throttled",
        start.elapsed().as_secs_f64(),
        c.requests,
        c.faults_injected,
        c.responses_lost,
        c.throttled
    );
    assert!(
        c.faults_injected > 0 && c.responses_lost > 0 && c.throttled > 0,
        "the faults were injected"
    );
    assert_invariants(&w, &api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_segments_converge_under_the_daemon_with_the_same_faults() {
    let w = world().await;
    let api = quick_retries(Api::new(w.t.client.clone(), pushy()));
    w.t.server.state.faults.set(CHAOS);
    let start = Instant::now();
    let cfg = DaemonConfig {
        dir: w.dir.path().to_path_buf(),
        config_file: None,
        overrides: Default::default(),
        interval: Duration::from_millis(500),
        stuck_after: Duration::from_secs(900),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_max_connections: daemon::ADMIN_MAX_CONNECTIONS,
        admin_header_timeout: Duration::from_secs(10),
        mode: Mode::Apply,
        shard: None,
    };
    let conn = Connection {
        pinpoint: api.clone(),
        endpoint: w.t.endpoint(),
        server: None,
    };
    let d = daemon::start_with(cfg, conn).await.unwrap();
    // Converged: every application's last reconcile succeeded with nothing left to do.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Observed through the same faults: a plan that cannot be made now is tried again.
        let p = try_plan_dir(&api, w.dir.path(), false).await;
        if p.is_some_and(|p| p.converged()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not converge in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let c = w.t.server.counters();
    eprintln!(
        "chaos/daemon: converged in {:.1} s over {} rounds; {} failed before work, {} responses lost, {} throttled",
        start.elapsed().as_secs_f64(),
        d.shared.status().rounds,
        c.faults_injected,
        c.responses_lost,
        c.throttled
    );
    d.stop().await.unwrap();
    assert_invariants(&w, &api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_apply_loses_no_acknowledged_write_and_the_rerun_converges() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = crate::pg::data_for(data_dir.path());
    let (mut child, endpoint) = spawn_server(&data);
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        "k",
        "s",
        1,
    );
    let app = util::create_app(&client, "killed").await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..150 {
        std::fs::write(
            dir.path().join(format!("{i:03}.yaml")),
            manifest(&app, &format!("s{i:03}"), i),
        )
        .unwrap();
    }
    let mut api = quick_retries(Api::new(
        client.clone(),
        RateLimits {
            segment_writes: 100.0,
            reads: 1000.0,
        },
    ));
    api.api.retry.attempts = 2;
    let p = plan_dir(&api, dir.path(), false).await;
    let applying = tokio::spawn({
        let api = api.clone();
        async move { segmentctl::reconcile::apply::apply(&api, &p, &Default::default()).await }
    });
    // Kill the server once part of the work is acknowledged.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = api.list_segments(&app).await.map(|l| l.len()).unwrap_or(0);
        if n >= 40 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let report = applying.await.unwrap();
    let acknowledged: Vec<String> = report
        .steps
        .iter()
        .filter_map(|s| match &s.result {
            segmentctl::reconcile::outcome::StepResult::Done(d)
                if s.action == segmentctl::plan::Action::Create =>
            {
                Some(d.id.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        acknowledged.len() >= 40 && report.failed() > 0,
        "the kill interrupted the apply: {}",
        report.summary()
    );

    let (mut child, endpoint) = spawn_server(&data);
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        "k",
        "s",
        1,
    );
    let api = SdkPinpoint::new(Api::new(
        client.clone(),
        RateLimits {
            segment_writes: 1000.0,
            reads: 3000.0,
        },
    ));
    let live = api.list_segments(&app).await.unwrap();
    for id in &acknowledged {
        assert!(
            live.iter().any(|s| &s.id == id),
            "acknowledged create {id} was lost"
        );
    }
    let mut runs = 0;
    while !plan_dir(&api, dir.path(), false).await.converged() {
        runs += 1;
        assert!(runs <= 3);
        let p = plan_dir(&api, dir.path(), false).await;
        segmentctl::reconcile::apply::apply(&api, &p, &Default::default()).await;
    }
    let live = api.list_segments(&app).await.unwrap();
    assert_eq!(
        live.len(),
        150,
        "exactly one segment per manifest, no duplicate"
    );
    eprintln!("server SIGKILL: {} creates acknowledged before the kill, all present; converged with {runs} rerun(s)", acknowledged.len());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs `segmentctl apply` as a process and SIGKILLs it once `ready` says enough happened.
async fn kill_apply_midway(
    t: &TestServer,
    dir: &std::path::Path,
    extra: &[&str],
    ready: impl AsyncFn() -> bool,
) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args([
            "apply",
            ".",
            "--auto-approve",
            "--target",
            &format!("endpoint:{}", t.endpoint()),
            "--owner",
            OWNER,
        ])
        .args(extra)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", util::KEY)
        .env("AWS_SECRET_ACCESS_KEY", util::SECRET)
        .env("AWS_REGION", "us-east-1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(Instant::now() < deadline, "the apply never got far enough");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the apply finished before it could be interrupted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_between_steps_leaves_work_a_rerun_finishes_without_duplicates_or_orphans(
) {
    let t = util::start_with(|c| c.faults.latency = Duration::from_millis(15)).await;
    let app = t.app("interrupted").await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..100 {
        std::fs::write(
            dir.path().join(format!("{i:03}.yaml")),
            manifest(&app, &format!("s{i:03}"), i),
        )
        .unwrap();
    }
    let api = SdkPinpoint::new(Api::new(
        t.client.clone(),
        RateLimits {
            segment_writes: 1000.0,
            reads: 3000.0,
        },
    ));
    let count = || async { api.list_segments(&app).await.map(|l| l.len()).unwrap_or(0) };
    // Creates, interrupted.
    kill_apply_midway(&t, dir.path(), &[], async || count().await >= 30).await;
    let after_kill = count().await;
    assert!(after_kill < 100, "interrupted half-way: {after_kill}");
    let rerun = |prune: bool| {
        let api = api.clone();
        let dir = dir.path().to_path_buf();
        async move {
            let p = plan_dir(&api, &dir, prune).await;
            let r = segmentctl::reconcile::apply::apply(&api, &p, &Default::default()).await;
            assert_eq!(r.failed(), 0, "{}", r.details(true));
            assert!(plan_dir(&api, &dir, prune).await.converged());
        }
    };
    rerun(false).await;
    assert_eq!(count().await, 100);

    // Updates and deletes, interrupted.
    for i in 0..50 {
        std::fs::write(
            dir.path().join(format!("{i:03}.yaml")),
            manifest(&app, &format!("s{i:03}"), i + 1000),
        )
        .unwrap();
    }
    for i in 70..100 {
        std::fs::remove_file(dir.path().join(format!("{i:03}.yaml"))).unwrap();
    }
    let updated = || async {
        api.list_segments(&app)
            .await
            .map(|l| l.iter().filter(|s| s.version > 1).count())
            .unwrap_or(0)
    };
    kill_apply_midway(&t, dir.path(), &["--prune"], async || updated().await >= 10).await;
    rerun(true).await;
    let live = api.list_segments(&app).await.unwrap();
    let mut names: Vec<&str> = live
        .iter()
        .filter_map(|s| segmentctl::plan::live::managed_name(s.tags.as_ref(), OWNER))
        .collect();
    names.sort();
    let expected: Vec<String> = (0..70).map(|i| format!("s{i:03}")).collect();
    assert_eq!(
        names, expected,
        "every kept manifest once, every removed one gone"
    );
    assert_eq!(live.len(), 70, "no orphan");
}
