//! Regression tests for the defects found where stages meet: each drives the binary or the
//! server from outside, as a user would, against the server in-process with the real SDK.

use std::time::{Duration, Instant};

use aws_sdk_pinpoint::types::{TagsModel, WriteCampaignRequest};

use crate::util::{
    self, endpoint_config, live_segments, named, segment, segmentctl, tag, Controller,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_keeps_the_last_good_owner() {
    let t = util::start().await;
    let app = t.app("shop").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(
        dir.path().join("us.yaml"),
        segment(&app, "us", "Name: US\n"),
    )
    .unwrap();
    let c = Controller::start(dir.path(), &["--interval", "200ms"]);
    c.ready().await;
    let live = live_segments(&t, &app).await;
    assert_eq!(live.len(), 1);
    assert_eq!(
        tag(&live[0], "segmentctl:managed-by").as_deref(),
        Some("team-a")
    );

    // A typo in the configuration; once it is reported, a manifest edit so the watcher wakes
    // too. (Written together, a round could read the good config just before the typo and
    // the edit just after it, and rightly apply the edit under the good owner.)
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        endpoint_config(&t, "").replace("owner:", "ownr:"),
    )
    .unwrap();
    let start = Instant::now();
    while c.status().await["manifest_errors"]
        .as_array()
        .is_none_or(|e| e.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the config error is reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(
        dir.path().join("us.yaml"),
        segment(&app, "us", "Name: US again\n"),
    )
    .unwrap();
    let before = c.status().await["rounds"].as_u64().unwrap_or(0);
    c.rounds_past(before, 3).await;

    let st = c.status().await;
    let errors = st["manifest_errors"].to_string();
    assert!(
        errors.contains("segmentctl.yaml") && errors.contains("ownr"),
        "{errors}"
    );
    let live = live_segments(&t, &app).await;
    assert_eq!(
        live.len(),
        1,
        "no segment created under another owner: {live:?}"
    );
    assert_eq!(
        tag(&live[0], "segmentctl:managed-by").as_deref(),
        Some("team-a")
    );
    assert_eq!(
        live[0].name.as_deref(),
        Some("US"),
        "the manifest edit waits for a good config"
    );
    let metrics = c.get("/metrics").await.1;
    assert!(
        metrics
            .contains("segmentctl_reconcile_total{application=\"(manifests)\",result=\"invalid\"}"),
        "{metrics}"
    );

    // Mended, the edit goes through, still as team-a.
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    let start = Instant::now();
    loop {
        let live = live_segments(&t, &app).await;
        if live.len() == 1 && live[0].name.as_deref() == Some("US again") {
            assert_eq!(
                tag(&live[0], "segmentctl:managed-by").as_deref(),
                Some("team-a")
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the edit is applied: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_builds_on_the_duplicate_the_plan_keeps() {
    let t = util::start().await;
    let app = t.app("shop").await;
    let claim = |s: &str| {
        let arn = format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{app}/segments/{s}");
        let tags = TagsModel::builder()
            .tags("segmentctl:managed-by", "team-a")
            .tags("segmentctl:name", "base")
            .build();
        (arn, tags)
    };
    // Two live segments claim "base" (a lost answer once made two): the older is unused,
    // the newer is what a running campaign sends to.
    let older = util::create_segment(&t.client, &app, named("Base")).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer = util::create_segment(&t.client, &app, named("Base")).await;
    for id in [&older, &newer] {
        let (arn, tags) = claim(id);
        t.client
            .tag_resource()
            .resource_arn(arn)
            .tags_model(tags)
            .send()
            .await
            .unwrap();
    }
    t.client
        .create_campaign()
        .application_id(&app)
        .write_campaign_request(
            WriteCampaignRequest::builder()
                .name("Running")
                .segment_id(&newer)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        segment(&app, "base", "Name: Base\n")
            + &segment(
                &app,
                "top",
                "Name: Top\nSegmentGroups:\n  Groups:\n    - SourceSegments:\n        - Ref: base\n",
            ),
    )
    .unwrap();
    let out = segmentctl(dir.path())
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let live = live_segments(&t, &app).await;
    let ids: Vec<&str> = live.iter().filter_map(|s| s.id.as_deref()).collect();
    assert!(
        !ids.contains(&older.as_str()),
        "the unused duplicate is deleted: {ids:?}"
    );
    assert!(
        ids.contains(&newer.as_str()),
        "the campaign's segment stays: {ids:?}"
    );
    let top = live
        .iter()
        .find(|s| tag(s, "segmentctl:name").as_deref() == Some("top"))
        .expect("top is created");
    let base_of_top = top
        .segment_groups
        .as_ref()
        .unwrap()
        .groups
        .as_ref()
        .unwrap()[0]
        .source_segments
        .as_ref()
        .unwrap()[0]
        .id
        .clone();
    assert_eq!(
        base_of_top.as_deref(),
        Some(newer.as_str()),
        "top builds on the segment the plan kept, not on the one it deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_with_the_same_name_keep_their_own_status() {
    let t = util::start().await;
    let (a, b) = (t.app("Shop").await, t.app("Shop").await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        endpoint_config(&t, "prune: true\n"),
    )
    .unwrap();
    let spec = |n: &str| format!("Name: {n}\n");
    std::fs::write(
        dir.path().join("m.yaml"),
        [
            segment(&a, "a-one", &spec("one")),
            segment(&b, "b-one", &spec("one")),
            segment(&b, "b-two", &spec("two")),
            segment(&b, "b-used", &spec("used")),
        ]
        .concat(),
    )
    .unwrap();
    let c = Controller::start(dir.path(), &["--interval", "200ms"]);
    c.ready().await;
    // In b, a campaign starts using b-used, whose manifest then goes: that delete is blocked.
    let used = live_segments(&t, &b)
        .await
        .into_iter()
        .find(|s| tag(s, "segmentctl:name").as_deref() == Some("b-used"))
        .unwrap()
        .id
        .unwrap();
    t.client
        .create_campaign()
        .application_id(&b)
        .write_campaign_request(
            WriteCampaignRequest::builder()
                .name("Live")
                .segment_id(&used)
                .build(),
        )
        .send()
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        [
            segment(&a, "a-one", &spec("one")),
            segment(&b, "b-one", &spec("one")),
            segment(&b, "b-two", &spec("two")),
        ]
        .concat(),
    )
    .unwrap();
    let start = Instant::now();
    let st = loop {
        let st = c.status().await;
        if st["applications"][&b]["result"] == "blocked" {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "b is blocked: {st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let apps = st["applications"].as_object().unwrap();
    assert_eq!(apps.len(), 2, "one entry per application: {st}");
    assert_eq!(st["applications"][&a]["result"], "success", "{st}");
    assert_eq!(st["applications"][&a]["name"], "Shop");
    assert_eq!(st["applications"][&a]["managed_segments"], 1, "{st}");
    assert_eq!(st["applications"][&b]["managed_segments"], 2, "{st}");
    let metrics = c.get("/metrics").await.1;
    for (id, n) in [(&a, 1), (&b, 2)] {
        let line = format!("segmentctl_managed_segments{{application=\"{id}\",name=\"Shop\"}} {n}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

/// Readiness follows Kubernetes conventions (as Flux and Argo CD): an application that
/// cannot be reconciled does not hold the controller unready (that would block every
/// rollout, the fix's included); why it fails is in the status until it converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_is_ready_while_an_application_cannot_be_reconciled_and_says_why() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    let missing = "0123456789abcdef0123456789abcdef";
    std::fs::write(
        dir.path().join("m.yaml"),
        segment(missing, "us", "Name: US\n"),
    )
    .unwrap();
    let c = Controller::start(dir.path(), &["--interval", "200ms"]);
    c.rounds_past(0, 2).await;
    let (code, body) = c.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    let st = c.status().await;
    assert!(
        st["applications"][missing]["last_error"]
            .to_string()
            .contains("does not exist"),
        "{st}"
    );
    // The application appears: the next rounds converge it, and the error is gone.
    let app = t.app("shop").await;
    std::fs::write(dir.path().join("m.yaml"), segment(&app, "us", "Name: US\n")).unwrap();
    let start = std::time::Instant::now();
    loop {
        let st = c.status().await;
        if st["applications"][&app]["result"] == "success" {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the application converges: {st}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_413_reaches_a_keep_alive_client() {
    use aws_sdk_pinpoint::operation::create_segment::CreateSegmentError;
    let t = util::start().await;
    let app = t.app("big").await;
    let open = util::start_with(|c| c.auth = segmentctl::server::Auth::None).await;
    // The SDK's pooled keep-alive connections: a 9 MB CreateSegment, twenty times.
    let huge = "x".repeat(9 * 1024 * 1024);
    for i in 0..20 {
        let err = t
            .client
            .create_segment()
            .application_id(&app)
            .write_segment_request(named(&huge))
            .send()
            .await
            .expect_err("over 7 MB is refused");
        assert!(
            matches!(
                err.as_service_error(),
                Some(CreateSegmentError::PayloadTooLargeException(_))
            ),
            "attempt {i}: {err:?}"
        );
    }
    // Raw keep-alive uploads: the whole body is accepted by the socket, then the 413 arrives
    // with the usual headers, and the connection is closed.
    for i in 0..20 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(open.addr()).await.unwrap();
        let body = vec![b'{'; 9 * 1024 * 1024];
        let head = format!(
            "POST /v1/apps/{app}/segments HTTP/1.1\r\nhost: localhost\r\nconnection: keep-alive\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body)
            .await
            .unwrap_or_else(|e| panic!("upload {i} cut off: {e}"));
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
            .await
            .expect("answered")
            .unwrap_or_else(|e| panic!("answer {i} lost: {e}"));
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(text.starts_with("http/1.1 413"), "{text}");
        assert!(
            text.contains("x-amzn-errortype: payloadtoolargeexception"),
            "{text}"
        );
        assert!(text.contains("connection: close"), "{text}");
        assert!(text.contains("\"requestid\""), "{text}");
    }
    // And the server serves the next request on a fresh connection.
    let apps = t
        .client_with(util::KEY, util::SECRET)
        .get_apps()
        .send()
        .await;
    assert!(apps.is_ok(), "{apps:?}");
}
