//! Every input kept by the fuzzers (`fuzz/corpus/`), replayed through the same checks as the
//! fuzz targets, so that `cargo test` guards what fuzzing found without nightly tooling.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use segmentctl::manifests::manifest::{load_sources, Source};
use segmentctl::server::{self, Auth, ServerConfig};
use tower::ServiceExt;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_manifest_loader_input_gives_documents_or_located_errors() {
    let inputs = corpus("manifest_loader");
    assert!(inputs.len() >= 30);
    for (name, bytes) in inputs {
        let loaded = load_sources(&[Source {
            name: "f.yaml".into(),
            bytes: bytes.into(),
        }]);
        for e in &loaded.errors {
            assert!(e.line >= 1 && e.column >= 1, "{name}: unlocated: {e}");
        }
        if let Err(errors) = segmentctl::manifests::desired::build(&loaded.documents) {
            assert!(errors.iter().all(|e| e.line >= 1), "{name}");
        }
    }
}

#[tokio::test]
async fn every_server_request_input_gets_a_well_formed_answer_below_500() {
    let dir = tempfile::tempdir().unwrap();
    let state = server::build_state(&ServerConfig::local(
        dir.path().join("pinpoint.db"),
        Auth::None,
    ))
    .unwrap();
    let app = state
        .store
        .create_app("fuzz", &Default::default())
        .unwrap()
        .id;
    let router = server::router(Arc::clone(&state));
    let inputs = corpus("server_request");
    assert!(inputs.len() >= 8);
    for (name, data) in inputs {
        // The same layout as fuzz/fuzz_targets/server_request.rs.
        let mut parts = data.splitn(5, |b| *b == 0xff);
        let method = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
            [usize::from(parts.next().and_then(|m| m.first()).copied().unwrap_or(0) % 6)];
        let path = String::from_utf8_lossy(parts.next().unwrap_or(b"")).replace("{app}", &app);
        let query = String::from_utf8_lossy(parts.next().unwrap_or(b"")).to_string();
        let header = parts.next().unwrap_or(b"").to_vec();
        let body = parts.next().unwrap_or(b"").to_vec();
        let uri = if query.is_empty() {
            format!("/v1/{path}")
        } else {
            format!("/v1/{path}?{query}")
        };
        let mut req = Request::builder().method(method).uri(uri.as_str());
        if let Some((k, v)) = header
            .split_first()
            .map(|(_, rest)| rest.split_at(rest.len() / 2))
        {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(Body::from(body)) else {
            continue;
        };
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        assert!(status < 500, "{name}: {method} {uri} answered {status}");
        if status >= 400 {
            assert!(resp.headers().contains_key("x-amzn-errortype"), "{name}");
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                v["Message"].is_string() && v["RequestID"].is_string(),
                "{name}"
            );
        }
    }
}

/// The segments of fuzz/fuzz_targets/endpoint_records.rs: every kind of field is read.
const FUZZ_SEGMENTS: &str = include_str!("../../fuzz/endpoint_segments.json");

#[test]
fn every_endpoint_records_input_is_counted_line_by_line() {
    use segmentctl::audience::evaluate::{Catalog, Program};
    let segments: std::collections::BTreeMap<String, segmentctl::model::WriteSegmentRequest> =
        serde_json::from_str(FUZZ_SEGMENTS).unwrap();
    let mut program = Program::new(time::OffsetDateTime::UNIX_EPOCH);
    let catalog = Catalog::of(&segments);
    let nodes: Vec<_> = segments
        .keys()
        .map(|n| program.add(0, &catalog, n))
        .collect();
    // The segments are not vacuous: a record can satisfy every criterion.
    let full = br#"{"ChannelType":"SMS","Location":{"Country":"US","Latitude":47.6,"Longitude":-122.3},"Attributes":{"a":["xx"],"d":["2026-05-01T10:00:00+02:00"]},"User":{"UserAttributes":{"u":["v"]}},"Metrics":{"m":2},"EffectiveDate":"1969-12-30T00:00:00Z"}"#;
    let t = segmentctl::audience::records::tally(&full[..], &program, &nodes).unwrap();
    assert_eq!(t.counts, [1, 0], "all, group (NONE of all)");
    let inputs = corpus("endpoint_records");
    assert!(inputs.len() >= 3);
    for (name, data) in inputs {
        let t = segmentctl::audience::records::tally(&data[..], &program, &nodes).unwrap();
        let lines = data
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count() as u64;
        assert_eq!(t.read + t.rejected, lines, "{name}");
        assert!(t.counts.iter().all(|c| *c <= t.read), "{name}");
    }
}
