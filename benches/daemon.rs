//! The controller measured as it runs: three processes on this machine, `segmentctl serve`,
//! `segmentctl run`, and this bench observing through the SDK.
//!
//!   cargo bench --bench daemon
//!
//! - convergence of 10,000 segments in 10 applications from empty;
//! - resident memory of the controller with 10,000 managed segments (goal < 100 MB);
//! - CPU used by the idle controller over 60 s (goal < 1 %);
//! - latency from a manifest write to the change visible through GetSegment, p50 and p99
//!   over 50 edits (goal p99 < 1 s), beside Flux's 1-minute and Argo CD's 3-minute Git polls.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APPS: usize = 10;
const PER_APP: usize = 1000;

fn spawn(args: &[&str], dir: &Path, key: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(args)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("SEGMENTCTL_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let value = loop {
        let line = lines.next().expect("startup log").unwrap();
        if let Some(rest) = line.split(&format!("{key}=")).nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, value)
}

fn proc_stat(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks = 100.0; // USER_HZ
    let cpu = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    (cpu, rss_kib / 1024.0)
}

/// `anon X MiB, file Y MiB`: heap and stacks versus the mapped binary and libraries.
fn rss_breakdown(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    format!(
        "anonymous {:.1} MiB, file-backed {:.1} MiB",
        get("RssAnon:"),
        get("RssFile:")
    )
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn segment(app: &str, name: &str, value: usize) -> String {
    format!(
        "---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: {name}\n  application: {app}\nspec:\n  Name: {name}\n  Dimensions:\n    Location:\n      Country: {{Values: [US, CA]}}\n    Metrics:\n      sessions: {{ComparisonOperator: GREATER_THAN, Value: {value}}}\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let work = tempfile::tempdir().unwrap();
    let (mut server, endpoint) = spawn(
        &[
            "serve",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "pinpoint.db",
        ],
        work.path(),
        "address",
    );
    let endpoint = format!("http://{endpoint}");
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        "AKIDBENCH",
        "bench",
        3,
    );

    let manifests = work.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let mut apps = Vec::new();
    for a in 0..APPS {
        let app = client
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
        for f in 0..PER_APP / 10 {
            let text: String = (0..10)
                .map(|k| segment(&app, &format!("a{a}-f{f:03}-{k}"), k))
                .collect();
            std::fs::write(manifests.join(format!("app{a}-{f:03}.yaml")), text).unwrap();
        }
        apps.push(app);
    }
    std::fs::write(
        manifests.join("segmentctl.yaml"),
        format!("target:\n  endpoint: {{url: '{endpoint}', region: us-east-1}}\nrate_limits: {{segment_writes: 2000, reads: 3000}}\nconcurrency: 16\n"),
    )
    .unwrap();

    let start = Instant::now();
    let (mut daemon, admin) = spawn(
        &[
            "run",
            "manifests",
            "--admin-listen",
            "127.0.0.1:0",
            "--interval",
            "10m",
        ],
        work.path(),
        "admin",
    );
    while !http_get(&admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no convergence in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let converged = start.elapsed();
    let pid = daemon.id();
    let (_, rss) = proc_stat(pid);
    println!(
        "daemon    converged {} segments in {APPS} applications from empty in {:.1} s",
        APPS * PER_APP,
        converged.as_secs_f64()
    );
    println!(
        "daemon    resident memory with {} managed segments: {rss:.1} MiB ({}) (goal < 100 MB)",
        APPS * PER_APP,
        rss_breakdown(pid)
    );

    let (cpu0, _) = proc_stat(pid);
    let idle = Duration::from_secs(60);
    std::thread::sleep(idle);
    let (cpu1, rss_idle) = proc_stat(pid);
    println!(
        "daemon    idle CPU over {} s: {:.3} s of CPU = {:.3} % of one core (goal < 1 %); RSS after: {rss_idle:.1} MiB",
        idle.as_secs(),
        cpu1 - cpu0,
        (cpu1 - cpu0) / idle.as_secs_f64() * 100.0
    );

    // 50 edits of one manifest; each is visible when GetSegment shows the new value.
    let file = manifests.join("app0-000.yaml");
    let target = client
        .get_segments()
        .application_id(&apps[0])
        .page_size("1000")
        .send()
        .await
        .unwrap()
        .segments_response
        .unwrap()
        .item
        .unwrap()
        .into_iter()
        .find(|s| s.name.as_deref() == Some("a0-f000-0"))
        .unwrap()
        .id
        .unwrap();
    let mut latencies = Vec::new();
    for edit in 1..=50usize {
        let value = 1000 + edit;
        let text: String = (0..10)
            .map(|k| {
                segment(
                    &apps[0],
                    &format!("a0-f000-{k}"),
                    if k == 0 { value } else { k },
                )
            })
            .collect();
        let written = Instant::now();
        std::fs::write(&file, text).unwrap();
        loop {
            let seg = client
                .get_segment()
                .application_id(&apps[0])
                .segment_id(&target)
                .send()
                .await
                .unwrap()
                .segment_response
                .unwrap();
            let v = seg
                .dimensions
                .and_then(|d| d.metrics)
                .and_then(|m| m.get("sessions").and_then(|x| x.value));
            if v == Some(value as f64) {
                latencies.push(written.elapsed());
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(60),
                "edit {edit} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "daemon    write → visible over 50 edits ({} managed segments): p50 {:.0} ms, p99 {:.0} ms (goal p99 < 1 s); Flux's default 1 min poll: ~30 s average, up to 60 s ({:.0}x p50); Argo CD's 3 min: ~90 s average ({:.0}x p50)",
        APPS * PER_APP,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        30.0 / p50.as_secs_f64(),
        90.0 / p50.as_secs_f64()
    );
    // SAFETY: signalling our own children.
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let status = daemon.wait().unwrap();
    println!("daemon    SIGTERM → exit code {:?}", status.code());

    // Steady state: a controller (re)starting over 10,000 segments that already match.
    let start = Instant::now();
    let (mut daemon, admin) = spawn(
        &[
            "run",
            "manifests",
            "--admin-listen",
            "127.0.0.1:0",
            "--interval",
            "10m",
        ],
        work.path(),
        "admin",
    );
    while !http_get(&admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready_in = start.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let (_, rss) = proc_stat(daemon.id());
    println!(
        "daemon    restarted over {} matching segments: ready in {:.2} s, resident memory 5 s later {rss:.1} MiB ({}) (goal < 100 MB)",
        APPS * PER_APP,
        ready_in.as_secs_f64(),
        rss_breakdown(daemon.id())
    );
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let _ = daemon.wait();
    server.kill().unwrap();
    let _ = server.wait();
}
