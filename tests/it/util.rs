//! Small helpers shared by the integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;

use aws_sdk_pinpoint::types::{CreateApplicationRequest, WriteSegmentRequest};
use aws_sdk_pinpoint::Client;
use segmentctl::server::{self, Auth, Credentials, RunningServer, ServerConfig};

pub const KEY: &str = "AKIDSEGMENTCTLTEST";
pub const SECRET: &str = "test-secret-do-not-print-0123456789";

pub struct TestServer {
    pub server: RunningServer,
    pub client: Client,
    pub dir: tempfile::TempDir,
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
        segmentctl::sdk::endpoint_client(&self.endpoint(), "us-east-1", key, secret, 1)
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
    adjust(&mut cfg);
    let server = server::start(cfg).await.expect("server starts");
    let client = segmentctl::sdk::endpoint_client(&server.endpoint(), "us-east-1", KEY, SECRET, 1);
    TestServer {
        server,
        client,
        dir,
    }
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
