//! The layers a request passes before the router, outermost first: request id and the
//! request log, path and host checks ([`screen`]), fault injection, authentication (the
//! Authorization header checked before the body is read; the body read within the body
//! timeout and a server-wide budget of bytes in flight; then the signature).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::{self, Api};
use super::{auth, error, ApiError, AppState, Auth, ErrorKind, MAX_BODY_BYTES};

/// How long a request waits for room in the body budget before a 429 (retryable).
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(5);

/// Refuses what must not reach the router: paths with `.` or `..` segments (signers
/// remove them before signing; routing on the raw path would then act on another path than
/// the one signed), and, without authentication, requests a browser on another site could
/// make (a Host other than loopback; a body that is not JSON).
pub(super) async fn screen(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let dot = req.uri().path().split('/').any(|seg| {
        [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."]
            .iter()
            .any(|d| seg.eq_ignore_ascii_case(d))
    });
    if dot {
        return ApiError::bad_request(
            "the request path has a . or .. segment; name each resource by its own path",
        )
        .into_response();
    }
    if matches!(state.auth, Auth::None) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        if !matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
            return ApiError::forbidden(format!(
                "without authentication this server answers only requests to a loopback host; Host was {:?}",
                crate::text::safe(host)
            ))
            .into_response();
        }
        // A browser may POST across sites without asking first (a "simple" request), but not
        // with a JSON content type; PUT, PATCH and DELETE need its preflight, which this
        // server never grants.
        let has_body = *req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() != "0");
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().unwrap_or("").trim().ends_with("json"));
        if has_body && !json {
            return ApiError::bad_request(
                "without authentication a request body must be sent as Content-Type: application/json",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Gives every request an id, visible to handlers and on every response, and logs one line
/// per request: method, path, status, operation, latency, request id (never a secret or a
/// body).
pub(super) async fn request_id(req: Request, next: Next) -> Response {
    let id = error::new_request_id();
    let started = std::time::Instant::now();
    let method = req.method().clone();
    // A clone of the URI shares its bytes: nothing is copied for the log line.
    let uri = req.uri().clone();
    let path = uri.path();
    let api = Api::of_path(path);
    let operation = std::sync::Arc::new(std::sync::Mutex::new(""));
    let mut resp = error::REQUEST_ID
        .scope(
            id.clone(),
            error::OPERATION.scope(operation.clone(), next.run(req)),
        )
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    error::name_for(api, &mut resp);
    if path != "/livez" && path != "/readyz" {
        let operation = *operation.lock().unwrap_or_else(|p| p.into_inner());
        super::access::record(super::access::Entry {
            status: resp.status().as_u16(),
            latency: started.elapsed(),
            method,
            uri,
            operation,
            id,
        });
    }
    resp
}

/// Waits until `latency` after `from`, and not a millisecond more: tokio's timer fires on a
/// millisecond tick rounded up (a 20 ms sleep ended 20.2 to 21.3 ms later), so it covers all
/// but the last 2 ms, and a blocking-pool thread sleeps the rest to the microsecond.
async fn delay(from: tokio::time::Instant, latency: Duration) {
    const TICKS: Duration = Duration::from_millis(2);
    let until = from + latency;
    if let Some(coarse) = latency.checked_sub(TICKS) {
        tokio::time::sleep_until(from + coarse).await;
    }
    let rest = until.saturating_duration_since(tokio::time::Instant::now());
    if !rest.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// Latency, failures before the work, and responses lost after it.
pub(super) async fn inject_faults(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let arrived = tokio::time::Instant::now();
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    let draw = state.faults.draw();
    if !draw.latency.is_zero() {
        delay(arrived, draw.latency).await;
    }
    if draw.fail_before {
        state
            .counters
            .faults_injected
            .fetch_add(1, Ordering::Relaxed);
        return ApiError::new(
            ErrorKind::Internal,
            "Injected fault: the request was not processed",
        )
        .into_response();
    }
    let resp = next.run(req).await;
    if draw.lose_response {
        state
            .counters
            .responses_lost
            .fetch_add(1, Ordering::Relaxed);
        return ApiError::new(ErrorKind::Internal, "Injected fault: the response was lost")
            .into_response();
    }
    resp
}

/// Checks the Authorization header, reads the body (at most 7 MB, within the body timeout and
/// the server's budget of bytes in flight) and verifies the signature over it.
pub(super) async fn authenticate(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match read_and_verify(&state, req).await {
        Ok((req, _permit)) => next.run(req).await,
        Err(refused) => {
            let (e, close) = match refused {
                Refused::Answer(e) => (e, false),
                Refused::AndClose(e) => (e, true),
            };
            if e.kind == ErrorKind::Forbidden {
                state.refusals.refused(peer, &e.message);
            }
            let resp = e.into_response();
            if close {
                closing(resp)
            } else {
                resp
            }
        }
    }
}

/// How a request is refused before the router.
enum Refused {
    /// An answer on a connection that stays usable.
    Answer(ApiError),
    /// An answer after which the connection closes: the body was not read to its end (too
    /// large, too slow), so what follows on the connection is not a request.
    AndClose(ApiError),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused::Answer(e)
    }
}

/// Asks the connection to close once this answer is written.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// How much of a refused body is read and thrown away, beside the answer, so that a client
/// still uploading reaches the point where it reads the answer (one cut off mid-upload gets
/// a broken pipe instead of the 413). Beyond this, or the body timeout, the connection is
/// closed.
pub const DRAIN_BYTES: u64 = 32 * 1024 * 1024;

/// How long a refused body may pause before the connection is closed.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Reads and discards what is left of a body, bounded in bytes and time: at most `budget`
/// bytes, within `within`, and never more than [`DRAIN_IDLE`] without data (a client that
/// promised a body it does not send is not waited for).
async fn drain(mut body: Body, budget: u64, within: Duration) {
    use http_body_util::BodyExt;
    let mut left = budget;
    let _ = tokio::time::timeout(within, async {
        while let Ok(Some(frame)) = tokio::time::timeout(DRAIN_IDLE, body.frame()).await {
            let Ok(frame) = frame else { return };
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                if n > left {
                    return;
                }
                left -= n;
            }
        }
    })
    .await;
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!("The request body is larger than {MAX_BODY_BYTES} bytes (7 MB), the request payload quota"),
    )
}

/// Room for a body in the server's budget, held while the request is served.
type BodyPermit = Option<tokio::sync::OwnedSemaphorePermit>;

async fn read_and_verify(state: &AppState, req: Request) -> Result<(Request, BodyPermit), Refused> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    let has_body = chunked || declared.is_some_and(|n| n > 0);
    let (parts, body) = req.into_parts();
    // A refusal before the body is read: the rest of the body is read and thrown away beside
    // the answer, and the connection closed, so the client still uploading gets the answer.
    let refuse = |body: Body, e: ApiError| {
        if has_body {
            tokio::spawn(drain(body, DRAIN_BYTES, state.body_timeout));
            Refused::AndClose(e)
        } else {
            Refused::Answer(e)
        }
    };
    // Who is calling, before anything else is read.
    let checked = match &state.auth {
        Auth::SigV4(creds) => match auth::precheck(
            creds,
            &state.region,
            Api::of_path(parts.uri.path()).signing_name(),
            &parts.headers,
            time::OffsetDateTime::now_utc(),
        ) {
            Ok(c) => Some(c),
            Err(e) => return Err(refuse(body, e)),
        },
        Auth::None => None,
    };
    if checked
        .as_ref()
        .is_some_and(|c| c.access == auth::Access::ReadOnly)
        && !api::is_read(&parts.method, parts.uri.path())
    {
        return Err(refuse(
            body,
            ApiError::forbidden(
                "this access key is read-only: it may read, and every write is refused",
            ),
        ));
    }
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(refuse(body, too_large()));
    }
    // Room in the budget: what the client declared, or the most a chunked body may be; a
    // request with neither has no body.
    let wanted = match (declared, chunked) {
        (Some(n), _) => n,
        (None, true) => MAX_BODY_BYTES as u64,
        (None, false) => 0,
    }
    .div_ceil(1024) as u32;
    let permit = if wanted == 0 {
        None
    } else {
        let wanted = wanted.min(state.body_budget_kib);
        match tokio::time::timeout(
            BODY_BUDGET_WAIT,
            state.bodies.clone().acquire_many_owned(wanted),
        )
        .await
        {
            Ok(Ok(p)) => Some(p),
            _ => {
                return Err(refuse(
                    body,
                    ApiError::new(
                        ErrorKind::TooManyRequests,
                        "the server is receiving as many request bodies as it holds at once; retry shortly",
                    ),
                ))
            }
        }
    };
    // A request hyper knows to have no body (no Content-Length or Transfer-Encoding, or a
    // length of 0) has nothing to wait for: no timer, no buffer.
    let bytes = if axum::body::HttpBody::is_end_stream(&body) {
        axum::body::Bytes::new()
    } else {
        match read_body(body, state.body_timeout).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(rest)) => {
                tokio::spawn(drain(rest, DRAIN_BYTES, state.body_timeout));
                return Err(Refused::AndClose(too_large()));
            }
            Err(BodyError::Slow) => {
                return Err(Refused::AndClose(ApiError::bad_request(
                    "The request body was not received in time",
                )))
            }
            Err(BodyError::Unreadable) => {
                return Err(Refused::AndClose(ApiError::bad_request(
                    "The request body could not be read",
                )))
            }
        }
    };
    if let Some(checked) = checked {
        // Hashing megabytes is work for a blocking thread, not an async worker.
        let hash = if bytes.len() > 64 * 1024 {
            let body = bytes.clone();
            tokio::task::spawn_blocking(move || auth::payload_hash(&body))
                .await
                .map_err(|e| Refused::Answer(ApiError::internal(&e)))?
        } else {
            auth::payload_hash(&bytes)
        };
        checked.verify(&parts.method, &parts.uri, &parts.headers, &hash)?;
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), permit))
}

enum BodyError {
    /// Over the limit; the rest of the body, unread.
    TooLarge(Body),
    Slow,
    Unreadable,
}

/// Reads a body of at most [`MAX_BODY_BYTES`] within `within`.
async fn read_body(mut body: Body, within: Duration) -> Result<axum::body::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(within, async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Unreadable)?;
            if let Some(data) = frame.data_ref() {
                if buf.len() + data.len() > MAX_BODY_BYTES {
                    return Err(BodyError::TooLarge(Body::empty()));
                }
                buf.extend_from_slice(data);
            }
        }
        Ok(())
    })
    .await;
    match read {
        Err(_) => Err(BodyError::Slow),
        Ok(Err(BodyError::TooLarge(_))) => Err(BodyError::TooLarge(body)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(buf.into()),
    }
}
