//! Any request to the server: method, path, query, headers and body from the fuzzer's bytes.
//! The router must answer (never panic, never hang) with a status below 500 and, for every
//! error, the `{"Message","RequestID"}` body with its `x-amzn-ErrorType` header.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use segmentctl::server::{self, Auth, Credentials, ServerConfig};
use tower::ServiceExt;

struct World {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    app: String,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("segmentctl-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = ServerConfig::local(dir.join("pinpoint.db"), Auth::None);
        if std::env::var_os("FUZZ_SIGV4").is_some() {
            cfg.auth = Auth::SigV4(Credentials::single("AKIDFUZZ", "fuzz"));
        }
        let state = server::build_state(&cfg).unwrap();
        let app = state.store.create_app("fuzz", &Default::default()).unwrap().id;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        World { rt, router: server::router(Arc::clone(&state)), app }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    // Layout: method selector, then path, query, one header and the body, split on 0xFF.
    let mut parts = data.splitn(5, |b| *b == 0xff);
    let method = match parts.next().and_then(|m| m.first()).copied().unwrap_or(0) % 6 {
        0 => "GET",
        1 => "POST",
        2 => "PUT",
        3 => "DELETE",
        4 => "OPTIONS",
        _ => "PATCH",
    };
    let path = String::from_utf8_lossy(parts.next().unwrap_or(b"")).replace("{app}", &w.app);
    let query = String::from_utf8_lossy(parts.next().unwrap_or(b"")).to_string();
    let header = parts.next().unwrap_or(b"").to_vec();
    let body = parts.next().unwrap_or(b"").to_vec();
    let uri = if query.is_empty() { format!("/v1/{path}") } else { format!("/v1/{path}?{query}") };
    let mut req = Request::builder().method(method).uri(uri.as_str());
    if let Some((k, v)) = header.split_first().map(|(_, rest)| rest.split_at(rest.len() / 2)) {
        req = req.header(k, v);
    }
    let Ok(req) = req.body(Body::from(body)) else { return };
    let resp = w.rt.block_on(w.router.clone().oneshot(req)).unwrap();
    let status = resp.status().as_u16();
    assert!(status < 500, "{method} {uri} answered {status}");
    if status >= 400 {
        assert!(resp.headers().contains_key("x-amzn-errortype"), "{method} {uri}: no error type");
        let bytes = w.rt.block_on(http_body_util::BodyExt::collect(resp.into_body())).unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error body");
        assert!(v.get("Message").is_some() && v.get("RequestID").is_some());
    }
});

