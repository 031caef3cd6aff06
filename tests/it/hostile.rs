//! Hostile and malformed requests: each gets the right 4xx with a clear message, never a
//! panic, a hang, or unbounded memory. The server keeps serving afterwards.

use std::time::{Duration, Instant};

use segmentctl::server::Auth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{self, error_body, header, raw, raw_bytes};

async fn no_auth() -> util::TestServer {
    util::start_with(|c| {
        c.auth = Auth::None;
        c.body_timeout = Duration::from_millis(500);
        c.max_connections = 8;
    })
    .await
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Asserts a 400 BadRequestException whose message starts with `prefix`.
fn bad_request(answer: (u16, Vec<(String, String)>, String), prefix: &str) {
    let (status, headers, body) = answer;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("BadRequestException")
    );
    let msg = error_body(&body)["Message"].as_str().unwrap().to_string();
    assert!(msg.starts_with(prefix), "expected {prefix:?}…, got {msg:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_bad_requests() {
    let t = no_auth().await;
    let app = t.app("hostile").await;
    let path = format!("/v1/apps/{app}/segments");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    bad_request(
        raw_bytes(t.addr(), &post(&path, deep.as_bytes())).await,
        "invalid WriteSegmentRequest: invalid type: sequence, expected struct WriteSegmentRequest",
    );
    let deep_obj = format!(
        "{{\"Dimensions\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    bad_request(
        raw_bytes(t.addr(), &post(&path, deep_obj.as_bytes())).await,
        "Dimensions",
    );
    bad_request(
        raw_bytes(t.addr(), &post(&path, b"{\"Name\":\"\xff\xfe\"}")).await,
        "",
    );
    bad_request(
        raw_bytes(t.addr(), &post(&path, br#"{"Name":"a","Name":"b"}"#)).await,
        "invalid WriteSegmentRequest: duplicate field `Name`",
    );
    bad_request(
        raw_bytes(t.addr(), &post(&path, br#"{"Dimensions":{"Metrics":{"m":{"ComparisonOperator":"EQUAL","Value":1},"m":{"ComparisonOperator":"EQUAL","Value":2}}}}"#)).await,
        "Dimensions.Metrics: duplicate key \"m\"",
    );
    bad_request(
        raw_bytes(t.addr(), &post(&path, br#"{"SegmentGroups":{"Groups":[{"SourceSegments":[{"Id":"x","Version":99999999999}]}]}}"#)).await,
        "SegmentGroups.Groups[0].SourceSegments[0].Version: invalid value",
    );
    bad_request(
        raw_bytes(t.addr(), &post(&path, br#"{"Dimensions":{"Location":{"GPSPoint":{"Coordinates":{"Latitude":1e400,"Longitude":0}}}}}"#)).await,
        "Dimensions.Location.GPSPoint.Coordinates.Latitude: number out of range",
    );
    // Still serving.
    let (status, _, _) = raw(
        t.addr(),
        &format!(
            "GET /v1/apps/{app}/segments HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_and_queries_get_clean_answers() {
    let t = no_auth().await;
    let app = t.app("paths").await;
    for (path, status, code) in [
        (
            "/v1/apps/..%2F..%2Fetc%2Fpasswd/segments",
            404,
            "NotFoundException",
        ),
        // Dot segments are refused: signers remove them, so routing on them would act on a
        // path other than the one signed.
        ("/v1/apps/../apps", 400, "BadRequestException"),
        ("/v1/tags/%ZZ%FF", 400, "BadRequestException"),
        ("/v1/tags/%FF%FE%FD", 400, "BadRequestException"),
        (
            "/v1/tags/arn%3Aaws%3Amobiletargeting%3Aus-east-1%3A000000000000%3Aapps%2F..%2F..",
            404,
            "NotFoundException",
        ),
        ("/v1/tags/not-an-arn", 400, "BadRequestException"),
    ] {
        let (s, headers, body) = raw(
            t.addr(),
            &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(
            (s, header(&headers, "x-amzn-errortype")),
            (status, Some(code)),
            "{path}: {body}"
        );
        assert!(error_body(&body)["Message"].is_string());
    }
    // 10,000 query parameters: answered, promptly, as one request.
    let query: Vec<String> = (0..10_000).map(|i| format!("p{i}=v")).collect();
    let start = Instant::now();
    let (s, _, _) = raw(
        t.addr(),
        &format!(
            "GET /v1/apps/{app}/segments?{} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
            query.join("&")
        ),
    )
    .await;
    assert!(s == 200 || s == 431 || s == 400 || s == 414, "status {s}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Bad paging parameters.
    bad_request(raw(t.addr(), &format!("GET /v1/apps/{app}/segments?page-size=0 HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")).await, "page-size: expected a whole number from 1 to 1000");
    bad_request(raw(t.addr(), &format!("GET /v1/apps/{app}/segments?token=%00%01 HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")).await, "token: not a token returned as NextToken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_body_is_timed_out() {
    let t = no_auth().await;
    let app = t.app("slow").await;
    let mut s = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    let head = format!("POST /v1/apps/{app}/segments HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"Name\":");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let start = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server answers a stalled body");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("The request body was not received in time"),
        "{text}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_bounded_and_the_server_recovers() {
    let t = no_auth().await; // at most 8 connections at once
    let mut flood = Vec::new();
    for _ in 0..100 {
        // Past the kernel's accept backlog a connect may not complete at all: that too is
        // the flood being held off, not the server's memory filling up.
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(t.addr()),
        )
        .await
        {
            flood.push(s);
        }
    }
    assert!(flood.len() >= 8);
    // With every place taken by idle connections, a request sent whole on a new connection
    // waits in the backlog, unanswered (read for a while: nothing comes back)…
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut ninth = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    ninth
        .write_all(b"GET /v1/apps HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), ninth.read(&mut first)).await;
    assert!(
        early.is_err(),
        "the request on the 9th connection was answered while 8 are open: {early:?}"
    );
    // …and is served as soon as they go.
    drop(flood);
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), ninth.read_to_end(&mut answer))
        .await
        .expect("served after the flood")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
