//! What hostile clients cost `segmentctl serve`, measured on the server as its own process.
//!
//!   cargo bench --bench hardening
//!
//! - uploads: 150 connections each send a 7 MB body (past the header checks, as a caller with
//!   a known key id could), all at once: the server's peak resident memory, against the body
//!   budget (64 MiB by default).
//! - idle: 1,024 connections (every slot) opened and left silent: how long a signed request
//!   then takes to be answered (goal: within the 10 s header timeout).
//! - amplified: one request whose SignedHeaders names a header 10,000 times beside 20 KB of
//!   its value: the server's CPU time to refuse it (goal: under 10 ms).

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

const KEY: &str = "AKIDBENCH";
const SECRET: &str = "bench-secret";

struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        std::fs::write(dir.join("creds"), format!("{KEY} {SECRET}\n")).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--credentials-file",
                "creds",
            ])
            .args(["--data", "p.db"])
            .current_dir(dir)
            .env("SEGMENTCTL_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("a start line").unwrap();
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr }
    }

    fn status(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        text.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// User + system CPU time of the server, in clock ticks' worth of nanoseconds.
    fn cpu(&self) -> Duration {
        let text = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &text[text.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_nanos(ticks * 1_000_000_000 / hz)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn amz_date() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap()
}

fn almost_signed(signed: &str) -> String {
    let date = amz_date();
    format!(
        "authorization: AWS4-HMAC-SHA256 Credential={KEY}/{}/us-east-1/mobiletargeting/aws4_request, SignedHeaders={signed}, Signature={}\r\nx-amz-date: {date}\r\n",
        &date[..8],
        "0".repeat(64)
    )
}

fn uploads(dir: &std::path::Path) {
    let srv = Server::start(dir);
    let before = srv.status("VmRSS:");
    let body = vec![b' '; 7_000_000];
    let threads: Vec<_> = (0..150)
        .map(|_| {
            let addr = srv.addr.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                let head = format!(
                    "PUT /v1/apps/a/segments/b HTTP/1.1\r\nhost: x\r\n{}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    almost_signed("host;x-amz-date"),
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
                String::from_utf8_lossy(&answer).split(' ').nth(1).unwrap_or("").to_string()
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for t in threads {
        *codes.entry(t.join().unwrap()).or_default() += 1;
    }
    let peak = srv.status("VmHWM:");
    println!(
        "uploads   150 × 7 MB at once: server peak RSS {:.1} MiB (at rest {:.1} MiB; body budget 64 MiB); answers {codes:?}",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
}

fn idle(dir: &std::path::Path) {
    let srv = Server::start(dir);
    let held: Vec<std::net::TcpStream> = (0..1024)
        .filter_map(|_| std::net::TcpStream::connect(&srv.addr).ok())
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &format!("http://{}", srv.addr),
        "us-east-1",
        KEY,
        SECRET,
        1,
    );
    let start = Instant::now();
    let ok = rt.block_on(async { client.get_apps().send().await.is_ok() });
    println!(
        "idle      {} silent connections holding every slot: a signed request answered {} in {:.2} s (goal: within the 10 s header timeout)",
        held.len(),
        if ok { "successfully" } else { "with an error" },
        start.elapsed().as_secs_f64()
    );
}

fn amplified(dir: &std::path::Path) {
    let srv = Server::start(dir);
    let names = format!("host;{}", vec!["x-a"; 10_000].join(";"));
    let request = format!(
        "GET /v1/apps HTTP/1.1\r\nhost: x\r\n{}x-a: {}\r\nconnection: close\r\n\r\n",
        almost_signed(&names),
        "v".repeat(20_000)
    );
    // Warm the server, then measure one refusal repeated 100 times (CPU ticks are coarse).
    let send = || {
        let mut s = std::net::TcpStream::connect(&srv.addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(send(), "403");
    let cpu = srv.cpu();
    for _ in 0..100 {
        assert_eq!(send(), "403");
    }
    let per = (srv.cpu() - cpu) / 100;
    println!(
        "amplified SignedHeaders ×10,000 beside 20 KB: refused with 403 using {:.2} ms of server CPU per request (goal < 10 ms)",
        per.as_secs_f64() * 1e3
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let dir = tempfile::tempdir().unwrap();
    if wanted("uploads") {
        uploads(dir.path());
    }
    if wanted("idle") {
        idle(dir.path());
    }
    if wanted("amplified") {
        amplified(dir.path());
    }
}
