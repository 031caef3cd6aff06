//! The load bench's baseline: a bare axum server answering GetSegment's path with a fixed
//! body and no work, so `benches/load/run.sh` can measure `segmentctl serve` beside the
//! fastest answer axum gives on the same machine, under the same wrk load.
//!
//!   cargo run --release --example bare_axum -- 127.0.0.1:4603 BODY_FILE
//!
//! BODY_FILE holds segmentctl's own answer to the same GetSegment (captured by
//! `benches/load/presign.py`), so both servers send byte-identical bodies. Dev-only: an
//! example, never part of the shipped binary.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::Router;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(body_file), None) = (args.next(), args.next(), args.next()) else {
        return Err("usage: bare_axum LISTEN_ADDRESS BODY_FILE".into());
    };
    let listen: SocketAddr = listen
        .parse()
        .map_err(|e| format!("{listen:?} is not an address such as 127.0.0.1:4603: {e}"))?;
    let body = Bytes::from(
        std::fs::read(&body_file).map_err(|e| format!("cannot read {body_file}: {e}"))?,
    );
    let app = Router::new().route(
        "/v1/apps/{app}/segments/{segment}",
        get(move || {
            let body = body.clone();
            async move {
                let mut resp: Response = body.into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    // As `segmentctl serve` does: answers leave without waiting for Nagle's delay.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
