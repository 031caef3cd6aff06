//! Each error the seed lists, as the SDK sees it (typed) and as it is on the wire.

use aws_sdk_pinpoint::error::ProvideErrorMetadata;
use aws_sdk_pinpoint::operation::RequestId;
use aws_sdk_pinpoint::types::{
    GpsCoordinates, GpsPointDimension, SegmentDimensions, SegmentGroup, SegmentGroupList,
    SegmentLocation,
};
use segmentctl::server::{Auth, FaultConfig};

use crate::util::{self, error_body, header, named, raw};

#[tokio::test]
async fn an_invalid_definition_is_a_bad_request_naming_the_field_path() {
    let t = util::start().await;
    let app = t.app("bad").await;
    let gps = GpsPointDimension::builder()
        .coordinates(
            GpsCoordinates::builder()
                .latitude(10.0)
                .longitude(10.0)
                .build(),
        )
        .range_in_kilometers(0.0)
        .build();
    let req = aws_sdk_pinpoint::types::WriteSegmentRequest::builder()
        .segment_groups(
            SegmentGroupList::builder()
                .groups(
                    SegmentGroup::builder()
                        .dimensions(SegmentDimensions::builder().build())
                        .dimensions(
                            SegmentDimensions::builder()
                                .location(SegmentLocation::builder().gps_point(gps).build())
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    let err = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(req)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert_eq!(
        err.meta().message(),
        Some("SegmentGroups.Groups[0].Dimensions[1].Location.GPSPoint.RangeInKilometers: must be greater than 0")
    );
}

#[tokio::test]
async fn an_unknown_application_or_segment_is_not_found() {
    let t = util::start().await;
    let err = t
        .client
        .get_segments()
        .application_id("ffffffffffffffffffffffffffffffff")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    assert_eq!(
        err.meta().message(),
        Some("Application ffffffffffffffffffffffffffffffff not found")
    );
    assert!(err.request_id().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_is_forbidden() {
    let t = util::start().await;
    for client in [
        t.client_with(util::KEY, "not-the-secret"),
        t.client_with("AKIDUNKNOWN", util::SECRET),
    ] {
        let err = client
            .get_apps()
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(err.is_forbidden_exception(), "{err:?}");
    }
    let wrong_secret = t.client_with(util::KEY, "not-the-secret");
    let err = wrong_secret
        .get_apps()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err
        .meta()
        .message()
        .unwrap()
        .starts_with("The request signature we calculated does not match"));
}

#[tokio::test]
async fn unsigned_and_expired_requests_are_forbidden_on_the_wire() {
    let t = util::start().await;
    let (status, headers, body) = raw(
        t.addr(),
        "GET /v1/apps HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("ForbiddenException")
    );
    let body = error_body(&body);
    assert_eq!(
        body["Message"],
        "Missing Authentication Token: the request is not signed with SigV4"
    );
    assert_eq!(
        body["RequestID"].as_str(),
        header(&headers, "x-amzn-requestid")
    );

    let stale = format!(
        "GET /v1/apps HTTP/1.1\r\nhost: localhost\r\nx-amz-date: 20200101T000000Z\r\nauthorization: AWS4-HMAC-SHA256 Credential={}/20200101/us-east-1/mobiletargeting/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nconnection: close\r\n\r\n",
        util::KEY
    );
    let (status, _, body) = raw(t.addr(), &stale).await;
    assert_eq!(status, 403);
    assert!(error_body(&body)["Message"]
        .as_str()
        .unwrap()
        .starts_with("Signature expired"));
}

#[tokio::test]
async fn an_unsupported_method_is_405_and_options_lists_the_allowed_ones() {
    let t = util::start_with(|c| c.auth = Auth::None).await;
    let (status, headers, body) = raw(
        t.addr(),
        "PATCH /v1/apps/abc/segments HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ).await;
    assert_eq!(status, 405);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("MethodNotAllowedException")
    );
    assert_eq!(
        error_body(&body)["Message"],
        "Method PATCH is not allowed on this resource; allowed: GET, POST, OPTIONS"
    );

    let (status, headers, _) = raw(
        t.addr(),
        "OPTIONS /v1/apps/abc/segments/def HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    ).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "allow"), Some("GET, PUT, DELETE, OPTIONS"));
}

#[tokio::test]
async fn a_body_over_seven_megabytes_is_refused_before_it_is_read() {
    let t = util::start_with(|c| c.auth = Auth::None).await;
    // The header promises 8 MB; none of it is sent, so a server that tried to read it all
    // would hang until the read timeout instead of answering.
    let (status, headers, body) = raw(
        t.addr(),
        "POST /v1/apps/abc/segments HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 8000000\r\nconnection: close\r\n\r\n",
    ).await;
    assert_eq!(status, 413);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("PayloadTooLargeException")
    );
    assert!(error_body(&body)["Message"]
        .as_str()
        .unwrap()
        .contains("7 MB"));
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let t = util::start_with(|c| c.auth = Auth::None).await;
    let app = t.app("json").await;
    let body = r#"{"Name": "x", "Dimensions": {"Demographic": {"Platform": {"DimensionType": "INCLUDE", "Values": ["ios"]}}}}"#;
    let (status, headers, resp) = raw(
        t.addr(),
        &format!(
            "POST /v1/apps/{app}/segments HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    ).await;
    assert_eq!(status, 400);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("BadRequestException")
    );
    assert_eq!(
        error_body(&resp)["Message"],
        "Dimensions.Demographic.Platform.DimensionType: unknown value \"INCLUDE\"; expected INCLUSIVE or EXCLUSIVE (did you mean INCLUSIVE?) at line 1 column 84"
    );

    let (status, _, resp) = raw(
        t.addr(),
        &format!("POST /v1/apps/{app}/segments HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 9\r\nconnection: close\r\n\r\n{{\"Name\":1"),
    ).await;
    assert_eq!(status, 400);
    assert!(error_body(&resp)["Message"]
        .as_str()
        .unwrap()
        .starts_with("Name: invalid type"));
}

#[tokio::test]
async fn writes_over_pinpoints_quota_are_throttled_with_too_many_requests() {
    let t = util::start_with(|c| c.rate_limits = true).await;
    let app = t.app("quota").await;
    let mut created = 0;
    let mut throttled = 0;
    // All at once: they arrive within a fraction of a second whatever the database's speed.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (c, app) = (t.client.clone(), app.clone());
        sends.spawn(async move {
            c.create_segment()
                .application_id(&app)
                .write_segment_request(named(&format!("s{i}")))
                .send()
                .await
        });
    }
    while let Some(r) = sends.join_next().await {
        match r.unwrap() {
            Ok(_) => created += 1,
            Err(e) => {
                let e = e.into_service_error();
                assert!(e.is_too_many_requests_exception(), "{e:?}");
                throttled += 1;
            }
        }
    }
    assert!(
        created >= 25,
        "one second of burst is admitted, got {created}"
    );
    assert!(
        throttled > 0,
        "40 creates in well under a second exceed 25/s"
    );
    assert_eq!(t.server.counters().throttled, throttled);
}

#[tokio::test]
async fn an_injected_fault_is_an_internal_server_error_and_a_lost_response_still_commits() {
    let t = util::start().await;
    let app = t.app("faults").await;
    t.server.state.faults.set(FaultConfig {
        fault_rate: 1.0,
        ..Default::default()
    });
    let err = t
        .client
        .get_apps()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_internal_server_error_exception(), "{err:?}");
    assert_eq!(err.code(), Some("InternalServerErrorException"));

    t.server.state.faults.set(FaultConfig {
        lost_response_rate: 1.0,
        ..Default::default()
    });
    let err = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(named("committed anyway"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_internal_server_error_exception(), "{err:?}");

    t.server.state.faults.set(FaultConfig::default());
    let items = util::segments_of(&t.client, &app).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].name.as_deref(), Some("committed anyway"));
    let c = t.server.counters();
    assert_eq!((c.faults_injected, c.responses_lost), (1, 1));
}
