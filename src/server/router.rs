//! The API's routes: one router per resource (apps, segments, campaigns, journeys,
//! endpoints, jobs, tags; Customer Profiles' domains and segment definitions), merged, each answering OPTIONS and 405 on every path; the probes
//! beside them; the middleware layers around them (see [`super::middleware`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;

use super::handlers as h;
use super::middleware::{authenticate, inject_faults, request_id, screen};
use super::{ApiError, AppState, ErrorKind, MAX_BODY_BYTES};

/// The API's routes, with OPTIONS and 405 on every resource, and `/livez` and `/readyz`
/// (unauthenticated) for probes.
pub fn router(state: Arc<AppState>) -> Router {
    let api: Router = Router::new()
        .merge(apps())
        .merge(segments())
        .merge(campaigns())
        .merge(journeys())
        .merge(endpoints())
        .merge(jobs())
        .merge(tags())
        .merge(super::profiles::routes())
        .merge(super::connect::routes())
        .fallback(|uri: axum::http::Uri| async move { no_route(uri.path()) })
        .with_state(state.clone());
    // The layers wrap the API's router once, outermost first, rather than each of its routes
    // (as `Router::layer` does): a request passes four layers, not four boxed services
    // cloned inside one another for every route it could take.
    let api = tower::ServiceBuilder::new()
        // Bodies are read (and bounded) by `authenticate`; the extractors take what it read.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), screen))
        .layer(middleware::from_fn_with_state(state.clone(), inject_faults))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .service(api);
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback_service(api)
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// What a path no route takes is answered. Under a Customer Profiles domain it is an
/// operation this server does not implement (object types, calculated attributes,
/// integrations, …): a 400 that says so, rather than the 404 a missing domain gets, which a
/// client would read as "no such domain".
fn no_route(path: &str) -> ApiError {
    let mut parts = path.trim_start_matches('/').split('/');
    if parts.next() == Some("domains") && parts.next().is_some_and(|d| !d.is_empty()) {
        // What this server serves under a domain: another path there is no resource.
        const SERVED: [&str; 4] = [
            "profiles",
            "segment-definitions",
            "segment-estimates",
            "segments",
        ];
        if let Some(what) = parts
            .next()
            .filter(|w| !w.is_empty() && !SERVED.contains(w))
        {
            return ApiError::bad_request(format!(
                "{}: not implemented by this server, which serves a domain's profiles, segment definitions, estimates, memberships and snapshots",
                crate::text::safe(&what.chars().take(64).collect::<String>())
            ));
        }
    }
    ApiError::not_found(format!("No resource at {path}"))
}

/// The routes of one kind of resource.
type Routes = Router<Arc<AppState>>;

/// A resource's methods, answering OPTIONS with `allow` and any other method with a 405.
pub(super) fn resource(
    m: MethodRouter<Arc<AppState>>,
    allow: &'static str,
) -> MethodRouter<Arc<AppState>> {
    m.options(move || async move { options(allow) })
        .fallback(move |method: Method| async move {
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!("Method {method} is not allowed on this resource; allowed: {allow}"),
            )
        })
}

fn apps() -> Routes {
    Router::new()
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
}

fn segments() -> Routes {
    Router::new()
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
}

fn campaigns() -> Routes {
    Router::new()
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
}

fn journeys() -> Routes {
    Router::new()
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
}

fn endpoints() -> Routes {
    Router::new()
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
}

/// Import and export jobs, of an application and of a segment.
fn jobs() -> Routes {
    Router::new()
        .route(
            "/v1/apps/{app}/segments/{segment}/jobs/import",
            resource(get(h::get_segment_import_jobs), "GET, OPTIONS"),
        )
        .route(
            "/v1/apps/{app}/segments/{segment}/jobs/export",
            resource(get(h::get_segment_export_jobs), "GET, OPTIONS"),
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
}

fn tags() -> Routes {
    Router::new().route(
        "/v1/tags/{arn}",
        resource(
            get(h::list_tags)
                .post(h::tag_resource)
                .delete(h::untag_resource),
            "GET, POST, DELETE, OPTIONS",
        ),
    )
}

/// How long `/readyz` waits for the database before it answers 503.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// 200 when the database answers within [`READY_WITHIN`], 503 otherwise. A database that
/// accepts connections and never answers (stopped, or cut off mid-request) is not ready
/// either: the check is bounded (and on PostgreSQL holds no thread), and while one waits on
/// it the next answer 503 at once rather than queue behind it.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let not_ready = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the database {why}\n"),
        )
            .into_response()
    };
    let Ok(_permit) = state.probe.clone().try_acquire_owned() else {
        return not_ready("has not answered the check before this one yet");
    };
    match state.store.ping_within(READY_WITHIN).await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(super::store::Unready::Failed) => not_ready("does not answer"),
        Err(super::store::Unready::Slow) => not_ready(&format!(
            "has not answered within {} s",
            READY_WITHIN.as_secs()
        )),
    }
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
