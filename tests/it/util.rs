//! Small helpers shared by the integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_pinpoint::types::{CreateApplicationRequest, WriteSegmentRequest};
use aws_sdk_pinpoint::Client;
use segmentctl::server::{self, Auth, Credentials, RunningServer, ServerConfig};

pub const KEY: &str = "AKIDSEGMENTCTLTEST";
pub const SECRET: &str = "test-secret-do-not-print-0123456789";

pub struct TestServer {
    pub server: RunningServer,
    pub client: Client,
    pub dir: tempfile::TempDir,
    /// Where its data is: the SQLite file, or the PostgreSQL URL.
    pub data: std::path::PathBuf,
}

impl TestServer {
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
    /// A client signing with these credentials, without SDK retries.
    pub fn client_with(&self, key: &str, secret: &str) -> Client {
        segmentctl::targets::pinpoint::convert::endpoint_client(
            &self.endpoint(),
            "us-east-1",
            key,
            secret,
            1,
        )
    }
    pub async fn app(&self, name: &str) -> String {
        create_app(&self.client, name).await
    }
}

/// A SigV4-checking server over a fresh SQLite file, and a client without retries.
pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServerConfig::local(
        dir.path().join("pinpoint.db"),
        Auth::SigV4(Credentials::single(KEY, SECRET)),
    );
    cfg.data = data_source(dir.path());
    adjust(&mut cfg);
    let data = std::path::PathBuf::from(match &cfg.data {
        segmentctl::server::store::DataSource::Sqlite(p) => p.display().to_string(),
        segmentctl::server::store::DataSource::Postgres(dsn) => dsn.clone(),
    });
    let server = server::start(cfg).await.expect("server starts");
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &server.endpoint(),
        "us-east-1",
        KEY,
        SECRET,
        1,
    );
    TestServer {
        server,
        client,
        dir,
        data,
    }
}

/// The data of a test server: a SQLite file in `dir`, or a fresh PostgreSQL database when
/// the suite runs with `SEGMENTCTL_TEST_BACKEND=postgres`.
pub fn data_source(dir: &Path) -> segmentctl::server::store::DataSource {
    segmentctl::server::store::DataSource::parse(&crate::pg::data_for(dir).display().to_string())
        .expect("a database the tests made")
}

pub async fn create_app(client: &Client, name: &str) -> String {
    client
        .create_app()
        .create_application_request(CreateApplicationRequest::builder().name(name).build())
        .send()
        .await
        .expect("CreateApp")
        .application_response
        .expect("ApplicationResponse")
        .id
        .expect("app id")
}

/// A segment named `name` with one group built on the live segment `base` (add more with
/// the builder, then `build()`).
pub fn built_on(
    name: &str,
    base: &str,
) -> aws_sdk_pinpoint::types::builders::WriteSegmentRequestBuilder {
    use aws_sdk_pinpoint::types::{SegmentGroup, SegmentGroupList, SegmentReference};
    WriteSegmentRequest::builder().name(name).segment_groups(
        SegmentGroupList::builder()
            .groups(
                SegmentGroup::builder()
                    .source_segments(SegmentReference::builder().id(base).build())
                    .build(),
            )
            .build(),
    )
}

pub fn named(name: &str) -> WriteSegmentRequest {
    WriteSegmentRequest::builder().name(name).build()
}

pub async fn create_segment(client: &Client, app: &str, req: WriteSegmentRequest) -> String {
    client
        .create_segment()
        .application_id(app)
        .write_segment_request(req)
        .send()
        .await
        .expect("CreateSegment")
        .segment_response
        .expect("SegmentResponse")
        .id
        .expect("segment id")
}

/// A raw HTTP/1.1 exchange, for what an SDK cannot send (odd methods, oversized bodies).
/// Returns the status, the lowercase headers and the body.
pub async fn raw(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    raw_bytes(addr, request.as_bytes()).await
}

/// As [`raw`], for requests that are not UTF-8 text.
pub async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the server did not answer within 10 s");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads the hidden field `Message` and `RequestID` of an error body.
pub fn error_body(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"))
}

/// Runs the segmentctl binary in `dir` as a user would (no colours, no AWS keys from the
/// environment): its exit code, standard output and standard error.
pub fn run_cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `segmentctl.yaml` for the in-process server, as owner `team-a`.
pub fn endpoint_config(t: &TestServer, extra: &str) -> String {
    format!(
        "target:\n  endpoint: {{url: '{}', region: us-east-1}}\nowner: team-a\n{extra}",
        t.endpoint()
    )
}

pub fn segment(app: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: {name}\n  application: {app}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

/// The binary with the test server's credentials in the environment, and nothing else of
/// the AWS environment (no profile, no instance metadata).
pub fn segmentctl(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segmentctl"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

/// `segmentctl run` as a process; stopped when dropped.
pub struct Controller {
    child: Child,
    pub admin: String,
}

impl Controller {
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = segmentctl(dir)
            .args([
                "run",
                ".",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let admin = loop {
            let line = lines.next().expect("a startup log line").unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
            if let Some(a) = v["fields"]["admin"].as_str() {
                break a.to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, admin }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = raw(
            self.admin.parse().unwrap(),
            &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await;
        (status, body)
    }

    pub async fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/").await.1).unwrap()
    }

    /// Waits until `/` shows `rounds` more rounds than `after`.
    pub async fn rounds_past(&self, after: u64, rounds: u64) {
        let start = Instant::now();
        while self.status().await["rounds"].as_u64().unwrap_or(0) < after + rounds {
            assert!(start.elapsed() < Duration::from_secs(20), "no new rounds");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn ready(&self) {
        let start = Instant::now();
        while self.get("/readyz").await.0 != 200 {
            assert!(start.elapsed() < Duration::from_secs(20), "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn live_segments(
    t: &TestServer,
    app: &str,
) -> Vec<aws_sdk_pinpoint::types::SegmentResponse> {
    segments_of(&t.client, app).await
}

/// The segments of `app` (up to 1,000: one page), as GetSegments gives them through `client`.
pub async fn segments_of(
    client: &Client,
    app: &str,
) -> Vec<aws_sdk_pinpoint::types::SegmentResponse> {
    client
        .get_segments()
        .application_id(app)
        .page_size("1000")
        .send()
        .await
        .unwrap()
        .segments_response
        .unwrap()
        .item
        .unwrap_or_default()
}

pub fn tag(s: &aws_sdk_pinpoint::types::SegmentResponse, key: &str) -> Option<String> {
    s.tags.as_ref().and_then(|t| t.get(key).cloned())
}

/// CPU time this process has used (user + system).
pub fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A blocking GET; the whole answer, or None when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A Customer Profiles client for the test server, signing with these credentials, without
/// SDK retries.
pub fn profiles_client_with(
    t: &TestServer,
    key: &str,
    secret: &str,
) -> aws_sdk_customerprofiles::Client {
    use aws_sdk_customerprofiles::config::{
        retry::RetryConfig, BehaviorVersion, Credentials, Region,
    };
    let config = aws_sdk_customerprofiles::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(t.endpoint())
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    aws_sdk_customerprofiles::Client::from_conf(config)
}

/// `GET path` with a SigV4 authorization scoped to `service` (its signature all zeros: the
/// scope is checked first), as raw HTTP for [`raw`].
pub fn scoped_to(service: &str, path: &str) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nx-amz-date: {date}\r\nauthorization: AWS4-HMAC-SHA256 Credential={KEY}/{}/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature={}\r\nconnection: close\r\n\r\n",
        &date[..8],
        "0".repeat(64)
    )
}

/// A Connect campaigns (v2) client for the test server, with the test's credentials.
pub fn campaigns_client(t: &TestServer) -> aws_sdk_connectcampaignsv2::Client {
    let conf =
        segmentctl::targets::profiles::endpoint_config(&t.endpoint(), "us-east-1", KEY, SECRET);
    aws_sdk_connectcampaignsv2::Client::new(&conf)
}

/// A Connect campaign named `name` reading the definition `definition` of `domain`,
/// started when `running` (else stopped); its id.
pub async fn campaign_on(
    t: &TestServer,
    name: &str,
    domain: &str,
    definition: &str,
    running: bool,
) -> String {
    use aws_sdk_connectcampaignsv2::types::Source;
    let c = campaigns_client(t);
    let arn = profiles_client(t)
        .get_segment_definition()
        .domain_name(domain)
        .segment_definition_name(definition)
        .send()
        .await
        .unwrap()
        .segment_definition_arn()
        .to_string();
    let id = c
        .create_campaign()
        .name(name)
        .connect_instance_id("instance-1")
        .source(Source::CustomerProfilesSegmentArn(arn))
        .send()
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    if running {
        c.start_campaign().id(&id).send().await.unwrap();
    } else {
        c.stop_campaign().id(&id).send().await.unwrap();
    }
    id
}

/// A Customer Profiles client for the test server, with the test's credentials.
pub fn profiles_client(t: &TestServer) -> aws_sdk_customerprofiles::Client {
    profiles_client_with(t, KEY, SECRET)
}
