//! `segmentctl serve`: the Pinpoint Segment API, self-hosted, over SQLite.
//!
//! Connections are HTTP/1.1 only, bounded in number, and closed when a request's headers take
//! longer than [`HEADER_TIMEOUT`] (idle keep-alive connections included). Layers, outermost
//! first: request id and the request log → path and host checks → fault injection →
//! authentication (the Authorization header checked before the body is read; the body read
//! within the body timeout and a server-wide budget of bytes in flight; then the signature)
//! → router → handlers (decode, and check with `inputs` and `validate`) → store (stores).
//! Every answer carries `x-amzn-RequestId`; every error is an [`ApiError`].

pub mod auth;
pub mod endpoint;
pub mod error;
mod handlers;
pub mod inputs;
pub mod jobs;
pub mod limits;
pub mod objects;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;

pub use auth::Credentials;
pub use error::{ApiError, ErrorKind};
pub use limits::{CounterSnapshot, FaultConfig};
use store::Store;

/// Pinpoint's request payload quota: 7 MB.
pub const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;
/// How long a client may take to send its body, by default.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, by default; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may take to send a request's headers, including the wait for the
/// next request on a kept-alive connection: idle connections cannot hold the server's slots.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Request bodies held in memory at once, over all connections, by default (64 MiB): the
/// server's memory stays bounded whatever many clients upload at once.
pub const BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// How long a request waits for room in the body budget before a 429 (retryable).
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(5);

/// How the server checks who is calling.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Verify SigV4 against these credentials.
    SigV4(Credentials),
    /// Accept every request (only on a loopback address).
    None,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data: store::DataSource,
    /// Connections to PostgreSQL at most (SQLite: unused).
    pub pool: usize,
    /// How long a job stays a server's without renewal (then another replica takes it).
    pub job_lease: Duration,
    pub region: String,
    pub account_id: String,
    pub auth: Auth,
    /// Enforce Pinpoint's per-operation quotas with 429 TooManyRequestsException.
    pub rate_limits: bool,
    pub faults: FaultConfig,
    /// A request body not received within this is refused (slow or stalled clients).
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`BODY_BUDGET_BYTES`].
    pub body_budget: usize,
    /// Folders import and export jobs may name by `file://` URL.
    pub import_roots: Vec<PathBuf>,
    /// The S3 client's configuration for jobs; `None`: the standard AWS chain.
    pub s3: Option<aws_sdk_s3::Config>,
    /// `BUCKET` or `BUCKET/PREFIX` that jobs may name; empty: any the credentials reach.
    pub s3_allow: Vec<String>,
    /// Runs import and export jobs, and so holds the SQLite file's lock (one such server
    /// per file). Off for a server that only reads (the embedded server of `plan`): it
    /// neither takes the lock nor takes over jobs.
    pub run_jobs: bool,
}

impl ServerConfig {
    /// A loopback server on an ephemeral port, the way tests and the embedded default run it.
    pub fn local(data: PathBuf, auth: Auth) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: store::DataSource::Sqlite(data),
            pool: store::DEFAULT_POOL,
            job_lease: store::DEFAULT_JOB_LEASE,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            auth,
            rate_limits: false,
            faults: FaultConfig::default(),
            body_timeout: BODY_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
            body_budget: BODY_BUDGET_BYTES,
            import_roots: Vec::new(),
            s3: None,
            s3_allow: Vec::new(),
            run_jobs: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0} without authentication: --no-auth is only allowed on a loopback address")]
    NoAuthOnPublicAddress(SocketAddr),
    #[error("cannot open the database {path}")]
    Open {
        path: String,
        #[source]
        source: store::sql::DbError,
    },
    #[error("the database {path} is in use by another segmentctl server ({holder}); one server runs a SQLite file: stop that one, or use PostgreSQL for several replicas")]
    InUse { path: String, holder: String },
    #[error("cannot lock the database {path} (through {path}.lock)")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Shared by every request.
pub struct AppState {
    pub store: Arc<Store>,
    auth: Auth,
    region: String,
    rate_limits: bool,
    body_timeout: Duration,
    /// Bytes of request bodies in memory, in KiB permits.
    bodies: Arc<tokio::sync::Semaphore>,
    body_budget_kib: u32,
    limiter: limits::RateLimiter,
    refusals: limits::RefusalLog,
    pub faults: limits::Faults,
    pub counters: limits::Counters,
    pub jobs: Arc<jobs::Jobs>,
}

impl AppState {
    /// KiB of the request body budget no request holds now.
    pub fn body_budget_free_kib(&self) -> usize {
        self.bodies.available_permits()
    }
}

/// The API's routes, with OPTIONS and 405 on every resource, and `/livez` and `/readyz`
/// (unauthenticated) for probes.
pub fn router(state: Arc<AppState>) -> Router {
    use handlers as h;
    fn resource(
        m: MethodRouter<Arc<AppState>>,
        allow: &'static str,
    ) -> MethodRouter<Arc<AppState>> {
        m.options(move || async move { options(allow) }).fallback(
            move |method: Method| async move {
                ApiError::new(
                    ErrorKind::MethodNotAllowed,
                    format!("Method {method} is not allowed on this resource; allowed: {allow}"),
                )
            },
        )
    }
    let api = Router::new()
        .route(
            "/v1/apps",
            resource(post(h::create_app).get(h::get_apps), "GET, POST, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}",
            resource(
                get(h::get_app).delete(h::delete_app),
                "GET, DELETE, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/segments",
            resource(
                post(h::create_segment).get(h::get_segments),
                "GET, POST, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/segments/{segment}",
            resource(
                get(h::get_segment)
                    .put(h::update_segment)
                    .delete(h::delete_segment),
                "GET, PUT, DELETE, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/segments/{segment}/versions",
            resource(get(h::get_segment_versions), "GET, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/segments/{segment}/versions/{version}",
            resource(get(h::get_segment_version), "GET, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/campaigns",
            resource(
                post(h::create_campaign).get(h::get_campaigns),
                "GET, POST, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/campaigns/{campaign}",
            resource(
                get(h::get_campaign)
                    .put(h::update_campaign)
                    .delete(h::delete_campaign),
                "GET, PUT, DELETE, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/journeys",
            resource(
                post(h::create_journey).get(h::list_journeys),
                "GET, POST, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/journeys/{journey}",
            resource(
                get(h::get_journey)
                    .put(h::update_journey)
                    .delete(h::delete_journey),
                "GET, PUT, DELETE, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/journeys/{journey}/state",
            resource(put(h::update_journey_state), "PUT, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/segments/{segment}/jobs/import",
            resource(get(h::get_segment_import_jobs), "GET, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/segments/{segment}/jobs/export",
            resource(get(h::get_segment_export_jobs), "GET, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/endpoints",
            resource(put(h::update_endpoints_batch), "PUT, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/endpoints/{endpoint}",
            resource(
                get(h::get_endpoint)
                    .put(h::update_endpoint)
                    .delete(h::delete_endpoint),
                "GET, PUT, DELETE, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/users/{user}",
            resource(
                get(h::get_user_endpoints).delete(h::delete_user_endpoints),
                "GET, DELETE, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/jobs/import",
            resource(
                post(h::create_import_job).get(h::get_import_jobs),
                "GET, POST, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/jobs/import/{job}",
            resource(get(h::get_import_job), "GET, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/jobs/export",
            resource(
                post(h::create_export_job).get(h::get_export_jobs),
                "GET, POST, OPTIONS",
            ),
        )
        .route(
            "/v1/apps/{app}/jobs/export/{job}",
            resource(get(h::get_export_job), "GET, OPTIONS"),
        )
        .route(
            "/v1/tags/{arn}",
            resource(
                get(h::list_tags)
                    .post(h::tag_resource)
                    .delete(h::untag_resource),
                "GET, POST, DELETE, OPTIONS",
            ),
        )
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::not_found(format!("No resource at {}", uri.path()))
        })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), inject_faults))
        .layer(middleware::from_fn_with_state(state.clone(), screen))
        // Bodies are read (and bounded) by `authenticate`; the extractors take what it read.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Ready while the database answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database does not answer\n",
        )
            .into_response(),
    }
}

/// Refuses what must not reach the router: paths with `.` or `..` segments (signers
/// remove them before signing; routing on the raw path would then act on another path than
/// the one signed), and, without authentication, requests a browser on another site could
/// make (a Host other than loopback; a body that is not JSON).
async fn screen(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let dot = req.uri().path().split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase();
        matches!(
            seg.as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
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

fn options(allow: &'static str) -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static(allow),
    );
    resp
}

/// Gives every request an id, visible to handlers and on every response, and logs one line
/// per request: method, path, status, operation, latency, request id (never a secret or a
/// body).
async fn request_id(req: Request, next: Next) -> Response {
    let id = error::new_request_id();
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
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
    if path != "/livez" && path != "/readyz" {
        let op = *operation.lock().unwrap_or_else(|p| p.into_inner());
        tracing::info!(
            method = %method,
            path = %crate::text::safe(&path),
            status = resp.status().as_u16(),
            operation = op,
            latency_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
            request_id = %id,
            "request"
        );
    }
    resp
}

/// Latency, failures before the work, and responses lost after it.
async fn inject_faults(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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

/// Waits until `latency` after `from`, and not a millisecond more: tokio's timer fires on a
/// millisecond tick rounded up (a 20 ms sleep ended 20.2 to 21.3 ms later), so it covers all but the
/// last 2 ms, and a blocking-pool thread sleeps the rest to the microsecond.
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

/// Checks the Authorization header, reads the body (at most 7 MB, within the body timeout and
/// the server's budget of bytes in flight) and verifies the signature over it.
async fn authenticate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
pub(crate) fn closing(mut resp: Response) -> Response {
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
        format!("The request body is larger than {MAX_BODY_BYTES} bytes (7 MB), Pinpoint's payload quota"),
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
        && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
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
    let bytes = match read_body(body, state.body_timeout).await {
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

/// Accepts a connection only while fewer than the limit are open, so a flood of
/// connections queues in the kernel's backlog instead of exhausting memory or descriptors.
struct BoundedListener {
    inner: TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        BoundedIo {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                // Out of descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection holding its place under the limit until it closes.
struct BoundedIo {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for BoundedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BoundedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    /// The SQLite file's lock, held while the server runs.
    _lock: Option<std::fs::File>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`, for an SDK's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.state.counters.snapshot()
    }

    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Opens the configured database and brings its schema up to date.
pub fn open_store(cfg: &ServerConfig) -> Result<Store, ServeError> {
    if let store::DataSource::Sqlite(path) = &cfg.data {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let mut store =
        Store::connect(&cfg.data, &cfg.region, &cfg.account_id, cfg.pool).map_err(|source| {
            ServeError::Open {
                path: cfg.data.describe(),
                source,
            }
        })?;
    store.job_lease = cfg.job_lease;
    Ok(store)
}

/// The shared state a [`router`] serves, opened from `cfg` (for tests and fuzzing that
/// drive the router without a socket).
pub fn build_state(cfg: &ServerConfig) -> Result<Arc<AppState>, ServeError> {
    if matches!(cfg.auth, Auth::None) && !cfg.listen.ip().is_loopback() {
        return Err(ServeError::NoAuthOnPublicAddress(cfg.listen));
    }
    let store = open_store(cfg)?;
    let budget_kib = (cfg.body_budget.max(MAX_BODY_BYTES) / 1024) as u32;
    let store = Arc::new(store);
    let jobs = jobs::Jobs::new(
        store.clone(),
        objects::Objects::new(cfg.import_roots.clone(), cfg.s3.clone(), &cfg.region)
            .with_s3_allow(&cfg.s3_allow),
    );
    Ok(Arc::new(AppState {
        jobs,
        store,
        auth: cfg.auth.clone(),
        region: cfg.region.clone(),
        rate_limits: cfg.rate_limits,
        body_timeout: cfg.body_timeout,
        bodies: Arc::new(tokio::sync::Semaphore::new(budget_kib as usize)),
        body_budget_kib: budget_kib,
        limiter: limits::RateLimiter::default(),
        refusals: limits::RefusalLog::default(),
        faults: limits::Faults::new(cfg.faults),
        counters: limits::Counters::default(),
    }))
}

/// Takes the lock of a SQLite file (an advisory lock on `PATH.lock`, which records the
/// holder's pid), so that a second server cannot take over the first's running jobs.
///
/// Errors: another process holds it (named by its pid), or the lock file cannot be made.
fn lock_sqlite(path: &std::path::Path) -> Result<std::fs::File, ServeError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let shown = path.display().to_string();
    let lock_path = {
        let mut p = path.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    };
    if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    let lock_err = |source| ServeError::Lock {
        path: shown.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(lock_err)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = writeln!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = (&file).take(32).read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "a process that holds its lock".to_string(),
            };
            Err(ServeError::InUse {
                path: shown,
                holder,
            })
        }
        Err(e) => Err(lock_err(e.into())),
    }
}

/// Opens the store, binds, and serves in a background task; returns once listening.
pub async fn start(cfg: ServerConfig) -> Result<RunningServer, ServeError> {
    let lock = match &cfg.data {
        store::DataSource::Sqlite(path) if cfg.run_jobs => Some(lock_sqlite(path)?),
        _ => None,
    };
    let state = build_state(&cfg)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let only_server = state.store.dialect() == store::sql::Dialect::Sqlite;
    if cfg.run_jobs {
        state.jobs.claim(only_server, !only_server);
    }
    let app = router(state.clone());
    let (max_connections, header_timeout) = (cfg.max_connections, cfg.header_timeout);
    let task = tokio::spawn(async move {
        serve_connections(listener, app, max_connections, header_timeout, async {
            let _ = rx.await;
        })
        .await;
        Ok(())
    });
    Ok(RunningServer {
        addr,
        state,
        _lock: lock,
        shutdown: Some(tx),
        task,
    })
}

/// Serves `app` on `listener` until `shutdown`: the API's listener, and the controller's
/// admin endpoints'.
///
/// Guarantees: at most `max_connections` connections are open at once (more wait in the
/// kernel's backlog, holding no descriptor of ours); a connection that takes longer than
/// `header_timeout` to send a request's headers (the wait for the next request on a
/// kept-alive connection included) is closed. After `shutdown`, the requests in flight
/// finish (at most the body timeout) and it returns.
///
/// HTTP/2 is not offered: no SDK needs it, and its streams would multiply what one
/// connection may hold. A client that opens with the HTTP/2 preface gets its connection
/// closed.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use axum::serve::Listener as _;
    let mut listener = BoundedListener {
        inner: listener,
        permits: Arc::new(tokio::sync::Semaphore::new(max_connections.max(1))),
    };
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut app = app.clone();
                async move {
                    use tower::Service as _;
                    app.call(req.map(Body::new)).await
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(BODY_TIMEOUT, graceful.shutdown()).await;
}

/// Serves until `shutdown` resolves (the CLI passes Ctrl-C / SIGTERM).
pub async fn serve(
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let backend = match &cfg.data {
        store::DataSource::Sqlite(_) => "sqlite",
        store::DataSource::Postgres(_) => "postgres",
    };
    let database = cfg.data.describe();
    let auth = match &cfg.auth {
        Auth::SigV4(_) => "sigv4",
        Auth::None => "none (loopback only)",
    };
    let region = cfg.region.clone();
    let server = start(cfg).await?;
    tracing::info!(
        address = %server.addr,
        backend,
        database = %database,
        auth,
        region = %region,
        "serving the Pinpoint Segment API"
    );
    shutdown.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}
