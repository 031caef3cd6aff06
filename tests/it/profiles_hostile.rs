//! Customer Profiles' routes attacked from outside, as the Pinpoint side is: bad bodies,
//! sizes, nesting, Unicode, other domains' data, and the server's shared limits (body
//! budget, header timeout, throttling, injected faults) on the new routes. Each answer is
//! the right status, named as Customer Profiles names it, never a 500 or a panic.

use std::time::Duration;

use aws_sdk_customerprofiles::error::ProvideErrorMetadata;
use segmentctl::server::{Auth, FaultConfig};

use crate::util::{self, error_body, header, raw, raw_bytes};

async fn no_auth() -> util::TestServer {
    util::start_with(|c| {
        c.auth = Auth::None;
        c.body_timeout = Duration::from_millis(500);
    })
    .await
}

fn request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Asserts `status` named `code`, with a message starting `prefix`.
fn refused(answer: (u16, Vec<(String, String)>, String), status: u16, code: &str, prefix: &str) {
    let (got, headers, body) = answer;
    assert_eq!(got, status, "{body}");
    assert_eq!(header(&headers, "x-amzn-errortype"), Some(code), "{body}");
    let msg = error_body(&body)["Message"].as_str().unwrap().to_string();
    assert!(msg.starts_with(prefix), "expected {prefix:?}…, got {msg:?}");
    assert!(error_body(&body)["RequestID"].is_string(), "{body}");
}

async fn send(
    t: &util::TestServer,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    raw_bytes(t.addr(), &request(method, path, body.as_bytes())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400s_naming_what_is_wrong() {
    let t = no_auth().await;
    let (status, _, body) = send(
        &t,
        "POST",
        "/domains/shop",
        r#"{"DefaultExpirationDays":30}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let addr = t.addr();
    let def = |body: String| async move {
        raw_bytes(
            addr,
            &request(
                "POST",
                "/domains/shop/segment-definitions/x",
                body.as_bytes(),
            ),
        )
        .await
    };
    let cases: Vec<(&str, &str)> = vec![
        ("", "the request body is empty"),
        ("{", "?: EOF while parsing an object"),
        ("[]", "invalid CreateSegmentDefinitionRequest: invalid type: sequence, expected"),
        (r#"{"DisplayName":"x","SegmentGroupz":{}}"#, "SegmentGroupz: unknown field `SegmentGroupz`, expected one of `DisplayName`"),
        (r#"{"DisplayName":"x","Tags":{"a":"1","a":"2"}}"#, "Tags: duplicate key \"a\""),
        (r#"{"DisplayName":7}"#, "DisplayName: invalid type"),
        (
            r#"{"DisplayName":"x","SegmentGroups":{"Groups":[{"Dimensions":[{"ProfileAttributes":{"FirstName":["INCLUSIVE",["a"]]}}]}]}}"#,
            "SegmentGroups.Groups[0].Dimensions[0].ProfileAttributes.FirstName: invalid type",
        ),
        (
            r#"{"DisplayName":"x","SegmentGroups":{"Groups":[{"Dimensions":[{"ProfileAttributes":{"FirstName":{"DimensionType":"INCLUDE","Values":["a"]}}}]}]}}"#,
            "SegmentGroups.Groups[0].Dimensions[0].ProfileAttributes.FirstName.DimensionType: unknown value \"INCLUDE\"",
        ),
    ];
    for (body, prefix) in cases {
        refused(
            def(body.to_string()).await,
            400,
            "BadRequestException",
            prefix,
        );
    }
    // Deep nesting: refused by the decoder, not a stack overflow.
    let deep = format!(
        r#"{{"DisplayName":"x","Description":{}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    refused(def(deep).await, 400, "BadRequestException", "");
    // A profile with an unknown member, and an update without its id.
    refused(
        send(
            &t,
            "POST",
            "/domains/shop/profiles",
            r#"{"FirstNam":"Ada"}"#,
        )
        .await,
        400,
        "BadRequestException",
        "FirstNam: unknown field `FirstNam`",
    );
    refused(
        send(
            &t,
            "PUT",
            "/domains/shop/profiles",
            r#"{"FirstName":"Ada"}"#,
        )
        .await,
        400,
        "BadRequestException",
        "ProfileId: missing required member",
    );
    refused(
        send(
            &t,
            "POST",
            "/domains/shop/profiles/delete",
            r#"{"ProfileId":"00000000000000000000000000000000","Extra":1}"#,
        )
        .await,
        400,
        "BadRequestException",
        "Extra: unknown member",
    );
    // The server still serves.
    assert_eq!(send(&t, "GET", "/domains/shop", "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_paths_and_unicode_are_checked_and_values_kept_exactly() {
    let t = no_auth().await;
    send(
        &t,
        "POST",
        "/domains/shop",
        r#"{"DefaultExpirationDays":30}"#,
    )
    .await;
    for path in [
        "/domains/sh%C3%A9p",
        "/domains/..",
        "/domains/a%2Fb",
        "/domains/shop/segment-definitions/v%C3%ADp",
        "/domains/shop/segment-definitions/..",
    ] {
        let (status, headers, body) = send(&t, "GET", path, "").await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        let code = header(&headers, "x-amzn-errortype").unwrap().to_string();
        assert!(
            code == "BadRequestException" || code == "ResourceNotFoundException",
            "{path}: {code}"
        );
    }
    refused(
        send(&t, "GET", "/domains/sh%C3%A9p", "").await,
        400,
        "BadRequestException",
        "DomainName: \"shép\" is not a name",
    );
    refused(
        send(&t, "GET", &format!("/domains/{}", "a".repeat(65)), "").await,
        400,
        "BadRequestException",
        "DomainName: must be 1 to 64 characters long, found 65",
    );
    // Unicode in values is stored and matched exactly.
    let (status, _, body) = send(
        &t,
        "POST",
        "/domains/shop/profiles",
        r#"{"FirstName":"Zoë","LastName":"東京"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(
        &t,
        "POST",
        "/domains/shop/profiles/search",
        r#"{"KeyName":"_fullName","Values":["Zoë 東京"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(found["Items"][0]["LastName"], "東京");
    // A value over 255 characters (counted as characters, not bytes).
    let long = "é".repeat(256);
    refused(
        send(
            &t,
            "POST",
            "/domains/shop/profiles",
            &format!(r#"{{"FirstName":"{long}"}}"#),
        )
        .await,
        400,
        "BadRequestException",
        "FirstName: must be 1 to 255 characters long, found 256",
    );
    let fits = "é".repeat(255);
    assert_eq!(
        send(
            &t,
            "POST",
            "/domains/shop/profiles",
            &format!(r#"{{"FirstName":"{fits}"}}"#)
        )
        .await
        .0,
        200
    );
}

/// One domain's data is out of reach from another: sources, membership, estimates,
/// snapshots and tags name only their own domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_domains_data_is_out_of_reach() {
    let t = no_auth().await;
    for d in ["shop", "other"] {
        send(
            &t,
            "POST",
            &format!("/domains/{d}"),
            r#"{"DefaultExpirationDays":30}"#,
        )
        .await;
    }
    let rule = r#"{"DisplayName":"x","SegmentGroups":{"Groups":[{"Dimensions":[{"ProfileAttributes":{"FirstName":{"DimensionType":"INCLUSIVE","Values":["Ada"]}}}]}]}}"#;
    assert_eq!(
        send(
            &t,
            "POST",
            "/domains/other/segment-definitions/theirs",
            rule
        )
        .await
        .0,
        200
    );
    let (_, _, body) = send(
        &t,
        "POST",
        "/domains/other/profiles",
        r#"{"FirstName":"Ada"}"#,
    )
    .await;
    let theirs = serde_json::from_str::<serde_json::Value>(&body).unwrap()["ProfileId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        send(&t, "POST", "/domains/shop/segment-definitions/mine", rule)
            .await
            .0,
        200
    );

    let on_theirs = r#"{"DisplayName":"x","SegmentGroups":{"Groups":[{"SourceSegments":[{"SegmentDefinitionName":"theirs"}]}]}}"#;
    refused(
        send(&t, "POST", "/domains/shop/segment-definitions/borrowed", on_theirs).await,
        400,
        "BadRequestException",
        "SegmentGroups.Groups[0].SourceSegments[0].SegmentDefinitionName: segment definition theirs does not exist in domain shop",
    );
    refused(
        send(&t, "GET", "/domains/shop/segment-definitions/theirs", "").await,
        404,
        "ResourceNotFoundException",
        "Segment definition theirs does not exist in domain shop",
    );
    // Their profile is not found here: a failure, not a member.
    let (status, _, body) = send(
        &t,
        "POST",
        "/domains/shop/segments/mine/membership",
        &format!(r#"{{"ProfileIds":["{theirs}"]}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let out: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(out["Profiles"].as_array().unwrap().len(), 0, "{body}");
    assert_eq!(out["Failures"][0]["ProfileId"], theirs.as_str());
    refused(
        send(
            &t,
            "PUT",
            "/domains/shop/profiles",
            &format!(r#"{{"ProfileId":"{theirs}","FirstName":"Eve"}}"#),
        )
        .await,
        404,
        "ResourceNotFoundException",
        &format!("Profile {theirs} does not exist in domain shop"),
    );
    // Tags: another account's or region's ARN is not found; a Pinpoint ARN is no resource
    // of this API.
    for arn in [
        "arn:aws:profile:us-east-1:111111111111:domains/other",
        "arn:aws:profile:eu-west-1:000000000000:domains/other",
        "arn:aws:mobiletargeting:us-east-1:000000000000:apps/x",
        "arn:aws:profile:us-east-1:000000000000:domains/other/segment-definitions/../x",
    ] {
        let path = format!("/tags/{}", arn.replace(':', "%3A").replace('/', "%2F"));
        refused(
            send(&t, "GET", &path, "").await,
            404,
            "ResourceNotFoundException",
            "Resource ",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_and_header_timeout_cover_the_new_routes() {
    let t = util::start_with(|c| {
        c.auth = Auth::None;
        c.header_timeout = Duration::from_millis(300);
    })
    .await;
    // Over 7 MB declared: refused before it is read, as BadRequestException with 413.
    let head = "POST /domains/shop/profiles HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 7340033\r\nconnection: close\r\n\r\n";
    let (status, headers, body) = raw(t.addr(), head).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("BadRequestException")
    );
    // A client that never finishes its headers is cut off.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    s.write_all(b"GET /domains HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection was closed by the header timeout"
    );
    assert_eq!(send(&t, "GET", "/domains", "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_internal_errors_are_received_typed() {
    let t = util::start_with(|c| c.rate_limits = true).await;
    let cp = util::profiles_client(&t);
    cp.create_domain()
        .domain_name("shop")
        .default_expiration_days(1)
        .send()
        .await
        .unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40 {
        let cp = cp.clone();
        sends.spawn(async move {
            cp.delete_segment_definition()
                .domain_name("shop")
                .segment_definition_name(format!("d{i}"))
                .send()
                .await
        });
    }
    let mut throttled = 0;
    while let Some(r) = sends.join_next().await {
        let e = r.unwrap().unwrap_err().into_service_error();
        if e.is_throttling_exception() {
            assert!(
                e.message().unwrap().starts_with("Too many requests"),
                "{e:?}"
            );
            throttled += 1;
        } else {
            assert!(e.is_resource_not_found_exception(), "{e:?}");
        }
    }
    assert!(
        throttled > 0,
        "40 deletes in well under a second exceed 25/s"
    );
    assert_eq!(t.server.counters().throttled, throttled);

    t.server.state.faults.set(FaultConfig {
        fault_rate: 1.0,
        ..Default::default()
    });
    let e = cp
        .get_domain()
        .domain_name("shop")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_internal_server_exception(), "{e:?}");
    assert_eq!(e.code(), Some("InternalServerException"));
    t.server.state.faults.set(FaultConfig::default());
    assert!(cp.get_domain().domain_name("shop").send().await.is_ok());
}
