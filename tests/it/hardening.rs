//! The server hardened from outside: what an unauthenticated or hostile client can make it
//! do is bounded (signature work, bodies in memory, connections, HTTP/2), the real 7 MB limit
//! holds, the wire is parsed strictly, and stored segments stay bounded.

use std::time::{Duration, Instant};

use aws_sdk_pinpoint::types::{AttributeDimension, SegmentDimensions, WriteSegmentRequest};
use segmentctl::server::Auth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{self, error_body, header, named, raw, raw_bytes};

fn amz_date() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap()
}

/// An Authorization header that passes every check but the signature's.
fn almost_signed(signed_headers: &str) -> String {
    let date = amz_date();
    format!(
        "authorization: AWS4-HMAC-SHA256 Credential={}/{}/us-east-1/mobiletargeting/aws4_request, SignedHeaders={signed_headers}, Signature={}\r\nx-amz-date: {date}\r\n",
        util::KEY,
        &date[..8],
        "0".repeat(64)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplified_signed_headers_are_refused_at_once() {
    let t = util::start().await;
    // As the adversarial pass sent it: one header named 10,000 times, beside 20 KB of its
    // value. Built as asked, the canonical request would be 200 MB.
    let names = format!("host;{}", vec!["x-a"; 10_000].join(";"));
    let values = format!("x-a: {}\r\n", "v".repeat(20_000));
    let request = format!(
        "GET /v1/apps HTTP/1.1\r\nhost: x\r\n{}{values}connection: close\r\n\r\n",
        almost_signed(&names)
    );
    let cpu = util::cpu_time();
    let (status, headers, body) = raw(t.addr(), &request).await;
    let spent = util::cpu_time() - cpu;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("ForbiddenException")
    );
    assert!(
        error_body(&body)["Message"]
            .as_str()
            .unwrap()
            .contains("at most 32"),
        "{body}"
    );
    eprintln!("amplified SignedHeaders refused using {spent:?} of CPU (server and client)");
    // The server still serves a signed request.
    assert!(t.client.get_apps().send().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_body_is_refused_before_it_is_read() {
    let t = util::start().await;
    for auth in [
        "",
        &almost_signed("host;x-amz-date").replace(util::KEY, "AKIDUNKNOWN"),
    ] {
        // 7 MB promised, none of it sent: the answer comes at once, not after the body.
        let mut s = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
        let head = format!(
            "POST /v1/apps HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 7000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered before any of the body arrived")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
        assert!(text.starts_with("http/1.1 403"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_are_bounded_across_connections() {
    let t = util::start_with(|c| c.body_budget = 7 * 1024 * 1024).await;
    let head = |len: usize| {
        format!(
            "PUT /v1/apps/a/segments/b HTTP/1.1\r\nhost: x\r\n{}content-type: application/json\r\ncontent-length: {len}\r\n\r\n",
            almost_signed("host;x-amz-date")
        )
    };
    // One upload holds most of the budget, sending slowly.
    let mut slow = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    slow.write_all(head(7_000_000).as_bytes()).await.unwrap();
    slow.write_all(&[b' '; 1024]).await.unwrap();
    let start = Instant::now();
    while t.server.state.body_budget_free_kib() >= 1_000_000 / 1024 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the slow upload holds its share of the budget"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The next waits for room, then is told to come back.
    let mut body = head(1_000_000).into_bytes();
    body.extend(std::iter::repeat_n(b' ', 1_000_000));
    let (status, headers, text) = raw_bytes(t.addr(), &body).await;
    assert_eq!(status, 429, "{text}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    drop(slow);
    // With the budget free again, a signed request is served.
    assert!(t.client.get_apps().send().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_time_out_and_a_valid_request_gets_through() {
    let t = util::start_with(|c| {
        c.max_connections = 8;
        c.header_timeout = Duration::from_millis(500);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(t.addr()).await.unwrap());
    }
    // Every slot is held by a connection that sends nothing; the header timeout frees them.
    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(10), t.client.get_apps().send()).await;
    assert!(matches!(answered, Ok(Ok(_))), "{answered:?}");
    eprintln!(
        "answered in {:?} with every slot held by an idle connection",
        started.elapsed()
    );
    // The idle ones were closed by the server.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle[0].read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "an idle connection is closed, not answered");
}

#[tokio::test]
async fn http2_is_not_spoken() {
    let t = util::start().await;
    let mut s = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        buf.is_empty() || text.starts_with("HTTP/1.1 "),
        "no HTTP/2 frames in answer: {buf:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_of_three_megabytes_is_accepted() {
    let t = util::start().await;
    let app = t.app("big").await;
    // 30 criteria of 1,000 values of 100 characters: 3 MB, within every limit.
    let mut dims = SegmentDimensions::builder();
    for k in 0..30 {
        let values: Vec<String> = (0..1000)
            .map(|i| format!("{k:02}{i:04}{}", "v".repeat(94)))
            .collect();
        dims = dims.attributes(
            format!("a{k}"),
            AttributeDimension::builder()
                .set_values(Some(values))
                .build(),
        );
    }
    let req = WriteSegmentRequest::builder()
        .name("big")
        .dimensions(dims.build())
        .build();
    let made = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(req)
        .send()
        .await;
    assert!(made.is_ok(), "{made:?}");
}

/// A populated WriteSegmentRequest touching every struct of the wire model.
fn everything() -> serde_json::Value {
    let dims = serde_json::json!({
        "Attributes": {"team": {"AttributeType": "INCLUSIVE", "Values": ["a"]}},
        "UserAttributes": {"tier": {"AttributeType": "EXCLUSIVE", "Values": ["b"]}},
        "Behavior": {"Recency": {"Duration": "DAY_7", "RecencyType": "ACTIVE"}},
        "Demographic": {
            "AppVersion": {"Values": ["1"]}, "Channel": {"Values": ["SMS"]},
            "DeviceType": {"Values": ["PHONE"]}, "Make": {"Values": ["x"]},
            "Model": {"Values": ["y"]}, "Platform": {"DimensionType": "INCLUSIVE", "Values": ["ios"]}
        },
        "Location": {
            "Country": {"Values": ["US"]},
            "GPSPoint": {"Coordinates": {"Latitude": 1.0, "Longitude": 2.0}, "RangeInKilometers": 5.0}
        },
        "Metrics": {"m": {"ComparisonOperator": "EQUAL", "Value": 1.0}}
    });
    serde_json::json!({
        "Name": "all",
        "SegmentGroups": {"Include": "ALL", "Groups": [{
            "Type": "ALL", "SourceType": "ANY",
            "Dimensions": [dims],
            "SourceSegments": [{"Id": "BASE", "Version": 1}]
        }]}
    })
}

/// The paths of every object in `v` (maps of arbitrary keys excepted: they are not structs).
fn object_paths(v: &serde_json::Value, path: &str, under_map: bool, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if !under_map {
                out.push(path.to_string());
            }
            let is_map = |k: &str| matches!(k, "Attributes" | "UserAttributes" | "Metrics");
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                object_paths(child, &p, is_map(k), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                object_paths(child, &format!("{path}[{i}]"), false, out);
            }
        }
        _ => {}
    }
}

fn replace_at(v: &mut serde_json::Value, path: &str, with: serde_json::Value) {
    let mut cur = v;
    let mut rest = path;
    while !rest.is_empty() {
        let (seg, tail) = match rest.find(['.', '[']) {
            Some(0) if rest.starts_with('[') => {
                let close = rest.find(']').unwrap();
                let i: usize = rest[1..close].parse().unwrap();
                cur = &mut cur[i];
                rest = rest[close + 1..].trim_start_matches('.');
                continue;
            }
            Some(i) => (&rest[..i], rest[i..].trim_start_matches('.')),
            None => (rest, ""),
        };
        cur = &mut cur[seg];
        rest = tail;
    }
    *cur = with;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_of_the_wire_model_refuses_an_array() {
    let t = util::start_with(|c| c.auth = Auth::None).await;
    let app = t.app("strict").await;
    let base = util::create_segment(&t.client, &app, named("base")).await;
    let doc = serde_json::to_string(&everything())
        .unwrap()
        .replace("BASE", &base);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let post = |body: String| {
        format!(
            "POST /v1/apps/{app}/segments HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, _, body) = raw(t.addr(), &post(doc.to_string())).await;
    assert_eq!(status, 201, "the complete document is valid: {body}");
    let mut paths = Vec::new();
    object_paths(&doc, "", false, &mut paths);
    assert!(paths.len() >= 18, "{paths:?}");
    for path in paths.iter().filter(|p| !p.is_empty()) {
        let mut broken = doc.clone();
        let fields: Vec<serde_json::Value> = {
            let mut cur = &doc;
            for seg in path.replace('[', ".[").split('.') {
                cur = match seg.strip_prefix('[') {
                    Some(i) => &cur[i.trim_end_matches(']').parse::<usize>().unwrap()],
                    None => &cur[seg],
                };
            }
            cur.as_object().unwrap().values().cloned().collect()
        };
        replace_at(&mut broken, path, serde_json::Value::Array(fields));
        let (status, headers, body) = raw(t.addr(), &post(broken.to_string())).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            header(&headers, "x-amzn-errortype"),
            Some("BadRequestException")
        );
        let message = error_body(&body)["Message"].as_str().unwrap().to_string();
        assert!(
            message.contains("invalid type: sequence"),
            "{path}: {message}"
        );
        assert!(
            message.starts_with(&format!("{path}:")),
            "{path}: {message}"
        );
    }
    // Trailing data after the document is refused too.
    let (status, _, body) = raw(t.addr(), &post(format!("{} {{}}", doc))).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_segments_and_list_answers_stay_bounded() {
    let t = util::start().await;
    let app = t.app("bounded").await;
    let long = "n".repeat(1025);
    let err = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(named(&long))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{:?}", err.as_service_error())
            .contains("Name: is 1025 characters long; at most 1024"),
        "{err:?}"
    );
    let many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let dims = SegmentDimensions::builder()
        .attributes(
            "a",
            AttributeDimension::builder().set_values(Some(many)).build(),
        )
        .build();
    let err = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(WriteSegmentRequest::builder().dimensions(dims).build())
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{:?}", err.as_service_error())
            .contains("Dimensions.Attributes.a.Values: lists 1001 values; at most 1000"),
        "{err:?}"
    );
    // Four segments of 2 MB: one page of a thousand would be 8 MB; it ends early instead.
    for n in 0..4 {
        let mut dims = SegmentDimensions::builder();
        for k in 0..2 {
            let values: Vec<String> = (0..1000)
                .map(|i| format!("{n}{k}{i:04}{}", "v".repeat(1000)))
                .collect();
            dims = dims.attributes(
                format!("a{k}"),
                AttributeDimension::builder()
                    .set_values(Some(values))
                    .build(),
            );
        }
        t.client
            .create_segment()
            .application_id(&app)
            .write_segment_request(
                WriteSegmentRequest::builder()
                    .name(format!("s{n}"))
                    .dimensions(dims.build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let mut pages = 0;
    let mut seen = 0;
    let mut token: Option<String> = None;
    loop {
        let page = t
            .client
            .get_segments()
            .application_id(&app)
            .page_size("1000")
            .set_token(token.clone())
            .send()
            .await
            .unwrap();
        let resp = page.segments_response.unwrap();
        let items = resp.item.unwrap_or_default();
        assert!(!items.is_empty());
        seen += items.len();
        pages += 1;
        token = resp.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, 4);
    assert!(pages >= 2, "a page ends before 6 MB: {pages} pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_segments_cannot_form_a_cycle_through_ids() {
    let t = util::start().await;
    let app = t.app("cycles").await;
    let a = util::create_segment(&t.client, &app, named("a")).await;
    let b = util::create_segment(&t.client, &app, util::built_on("b", &a).build()).await;
    let err = t
        .client
        .update_segment()
        .application_id(&app)
        .segment_id(&a)
        .write_segment_request(util::built_on("a", &b).build())
        .send()
        .await
        .unwrap_err();
    let shown = format!("{:?}", err.as_service_error());
    assert!(shown.contains("BadRequestException"), "{shown}");
    assert!(
        shown.contains(&format!(
            "the segment would build on itself ({a} → {b} → {a})"
        )),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_only_loopback_json_requests_are_served() {
    let t = util::start_with(|c| c.auth = Auth::None).await;
    let post = |host: &str, ctype: &str| {
        format!("POST /v1/apps HTTP/1.1\r\nhost: {host}\r\ncontent-type: {ctype}\r\ncontent-length: 12\r\nconnection: close\r\n\r\n{{\"Name\":\"x\"}}")
    };
    let (status, _, body) = raw(t.addr(), &post("attacker.example", "application/json")).await;
    assert_eq!(status, 403, "DNS rebinding: {body}");
    let (status, _, body) = raw(t.addr(), &post("127.0.0.1:4566", "text/plain")).await;
    assert_eq!(status, 400, "a form post from a browser: {body}");
    let (status, _, body) = raw(t.addr(), &post("localhost:4566", "application/json")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_in_a_path_are_refused() {
    let t = util::start_with(|c| c.auth = Auth::None).await;
    for path in [
        "/v1/apps/x/segments/..",
        "/v1/apps/./x",
        "/v1/apps/%2e%2e/segments",
    ] {
        let (status, headers, body) = raw(
            t.addr(),
            &format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            header(&headers, "x-amzn-errortype"),
            Some("BadRequestException")
        );
    }
}

/// A server that also accepts `key`, read-only.
async fn with_read_only_key(key: &'static str, secret: &'static str) -> util::TestServer {
    util::start_with(move |c| {
        if let Auth::SigV4(creds) = &mut c.auth {
            *creds = creds
                .clone()
                .with(key, secret, segmentctl::server::auth::Access::ReadOnly);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_key_reads_and_is_refused_every_write() {
    let t = with_read_only_key("AKIDREADONLY", "read-only-secret").await;
    let app = t.app("ro").await;
    let ro = t.client_with("AKIDREADONLY", "read-only-secret");
    assert!(ro.get_apps().send().await.is_ok());
    assert!(ro.get_segments().application_id(&app).send().await.is_ok());
    let err = ro
        .create_segment()
        .application_id(&app)
        .write_segment_request(named("x"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(
                aws_sdk_pinpoint::operation::create_segment::CreateSegmentError::ForbiddenException(
                    _
                )
            )
        ),
        "{err:?}"
    );
    let err = ro
        .delete_app()
        .application_id(&app)
        .send()
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("ForbiddenException"), "{err:?}");
}

/// The CI split: `plan` works with a read-only key, and `apply` with it changes nothing and
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_works_with_a_read_only_key_and_apply_is_refused_with_a_clear_error() {
    let t = with_read_only_key("AKIDPLAN", "plan-secret").await;
    let app = t.app("shop").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        util::endpoint_config(&t, ""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        util::segment(&app, "us", "  Name: US\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = util::segmentctl(dir.path())
            .env("AWS_ACCESS_KEY_ID", "AKIDPLAN")
            .env("AWS_SECRET_ACCESS_KEY", "plan-secret")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "changes present: {out}{err}");
    assert!(out.contains("+ create  us"), "{out}");
    let (code, out, err) = run(&["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("ForbiddenException") && err.contains("read-only"),
        "{err}"
    );
    assert!(util::segments_of(&t.client, &app).await.is_empty());
}

/// The shipped CI examples plan with a read-only role and apply with a writing one that only
/// the protected branch can use.
#[test]
fn the_ci_examples_plan_read_only_and_apply_only_on_the_protected_branch() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let gh: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("examples/ci/github/segmentctl.yml")).unwrap(),
    )
    .unwrap();
    let role = |job: &str| {
        gh["jobs"][job]["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|s| s["with"]["role-to-assume"].as_str())
            .unwrap()
            .to_string()
    };
    assert_eq!(role("plan"), "${{ secrets.SEGMENTCTL_PLAN_ROLE_ARN }}");
    assert_eq!(role("apply"), "${{ secrets.SEGMENTCTL_APPLY_ROLE_ARN }}");
    assert_eq!(gh["jobs"]["apply"]["environment"], "production");
    assert!(gh["jobs"]["apply"]["if"]
        .as_str()
        .unwrap()
        .contains("refs/heads/main"));
    let gl: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("examples/ci/gitlab/.gitlab-ci.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        gl["plan"]["variables"]["ROLE_ARN"],
        "$SEGMENTCTL_PLAN_ROLE_ARN"
    );
    assert_eq!(
        gl["apply"]["variables"]["ROLE_ARN"],
        "$SEGMENTCTL_APPLY_ROLE_ARN"
    );
    let before = gl["default"]["before_script"].as_sequence().unwrap();
    assert!(before
        .iter()
        .any(|l| l.as_str().unwrap().contains("\"$ROLE_ARN\"")));
    assert!(
        !std::fs::read_to_string(root.join("examples/ci/gitlab/.gitlab-ci.yml"))
            .unwrap()
            .contains("$SEGMENTCTL_ROLE_ARN")
    );
}

#[test]
fn the_server_logs_each_request_and_failed_authentication_once_a_minute() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("creds"),
        format!("{} {}\n", util::KEY, util::SECRET),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--credentials-file",
            "creds",
            "--data",
            "p.db",
            "--log-format",
            "json",
        ])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(a) = v["fields"]["address"].as_str() {
            break a.to_string();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for _ in 0..5 {
            let (status, _, _) = raw(
                addr.parse().unwrap(),
                "GET /v1/apps HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await;
            assert_eq!(status, 403);
        }
        let client = segmentctl::targets::pinpoint::convert::endpoint_client(
            &format!("http://{addr}"),
            "us-east-1",
            util::KEY,
            util::SECRET,
            1,
        );
        client.get_apps().send().await.unwrap();
    });
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let logged: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let requests: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|v| v["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 6, "{logged:?}");
    let ok = requests.last().unwrap();
    assert_eq!(ok["fields"]["status"], 200);
    assert_eq!(ok["fields"]["operation"], "GetApps");
    assert_eq!(ok["fields"]["method"], "GET");
    assert_eq!(ok["fields"]["path"], "/v1/apps");
    assert!(ok["fields"]["request_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));
    assert!(ok["fields"]["latency_ms"].as_str().is_some());
    let text = serde_json::to_string(&logged).unwrap();
    assert!(!text.contains(util::SECRET), "no secret in the log");
    let warnings: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|v| v["fields"]["message"] == "requests refused: authentication failed")
        .collect();
    assert_eq!(warnings.len(), 1, "once a minute per source: {warnings:?}");
    assert_eq!(warnings[0]["fields"]["source"], "127.0.0.1");
}

/// A job's failure names the file it could not read; in the text log that reason is
/// escaped, so a newline in the name (a URL cannot hold one: refused with a 400, but a file
/// found in a folder, or an S3 key, can) cannot start a line that reads as the server's own.
#[test]
fn a_failed_jobs_reason_forges_no_line_in_the_text_log() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args([
            "serve",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "p.db",
        ])
        .args(["--import-root", "root"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some((_, rest)) = line.split_once("address=") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let root = dir.path().join("root").canonicalize().unwrap();
    // Not CSV (no header the import knows), under a name that holds two newlines.
    std::fs::write(
        root.join("x\n2026-12-07T00:00:00Z  INFO segmentctl::server: FORGED\n.csv"),
        "not,a,header\n1,2,3\n",
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failure = rt.block_on(async {
        let client = segmentctl::targets::pinpoint::convert::endpoint_client(
            &format!("http://{addr}"),
            "us-east-1",
            util::KEY,
            util::SECRET,
            1,
        );
        let app = util::create_app(&client, "logs").await;
        // A control character in the URL itself is refused before any job is made.
        let refused = client
            .create_import_job()
            .application_id(&app)
            .import_job_request(
                aws_sdk_pinpoint::types::ImportJobRequest::builder()
                    .s3_url(format!("file://{}/x%0aFORGED.csv", root.display()))
                    .format(aws_sdk_pinpoint::types::Format::Csv)
                    .role_arn("r")
                    .build(),
            )
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(
            aws_sdk_pinpoint::error::ProvideErrorMetadata::message(&refused),
            Some("S3Url: a URL holds no control character, written or percent-encoded (found U+000A)")
        );
        let url = format!("file://{}/", root.display());
        let format = aws_sdk_pinpoint::types::Format::Csv;
        crate::imports::import(&client, &app, &url, format, None, None)
            .await
            .failures()
            .join("\n")
    });
    assert!(
        failure.contains("FORGED"),
        "the job failed on that path: {failure}"
    );
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let logged: Vec<String> = lines.map_while(Result::ok).collect();
    let failed: Vec<&String> = logged.iter().filter(|l| l.contains("job failed")).collect();
    assert_eq!(failed.len(), 1, "{logged:#?}");
    assert!(
        !logged.iter().any(|l| l.starts_with("2026-12-07T00:00:00Z")),
        "{logged:#?}"
    );
}

/// A second server on one SQLite file would take over the first's running jobs: it is
/// refused at start, naming the holder. A plan's embedded server only reads, takes no lock
/// and runs no job, so it works beside the server; an apply's is refused like a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_is_refused_naming_the_first_and_a_plan_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pinpoint.db");
    let t = util::start_with(|c| {
        c.data = segmentctl::server::store::DataSource::Sqlite(db.clone());
    })
    .await;
    let holder = format!("pid {}", std::process::id());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--data"])
        .arg(&db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the database {} is in use by another segmentctl server ({holder}); one server runs a SQLite file",
            db.display()
        )),
        "{stderr}"
    );

    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("shop.yaml"),
        "apiVersion: segmentctl/v1\nkind: Application\nmetadata: {name: shop}\nspec: {Name: Shop}\n",
    )
    .unwrap();
    let target = format!("local:{}", db.display());
    let (code, out, err) = util::run_cli(folder.path(), &["plan", "--target", &target]);
    assert_eq!(code, 0, "a plan reads beside the server: {out}{err}");
    assert!(
        out.contains("1 to create") || out.contains("create application"),
        "{out}"
    );
    let (code, out, err) = util::run_cli(
        folder.path(),
        &["apply", "--target", &target, "--auto-approve"],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&holder), "{err}");
    // Once the server stops, the file is free again.
    t.server.stop().await;
    let (code, out, err) = util::run_cli(
        folder.path(),
        &["apply", "--target", &target, "--auto-approve"],
    );
    assert_eq!(code, 0, "{out}{err}");
}
