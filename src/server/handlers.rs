//! One function per API operation: decode the request, check it, call the store, encode.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::inputs;
use super::store::{
    decode_token, Listing, Page, Resource, Store, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
use super::AppState;
use crate::model::validate::{self, Context};
use crate::model::{CreateApplicationRequest, TagsModel, WriteSegmentRequest};

type S = State<Arc<AppState>>;

/// Path parameters, percent-decoded; a segment that does not decode (`%ZZ`, invalid UTF-8)
/// is a 400 BadRequestException like any other bad input, not axum's plain-text rejection.
pub struct ApiPath<T>(pub T);

impl<T, St> FromRequestParts<St> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::bad_request(format!(
                "the request path does not decode: {}",
                e.body_text()
            ))),
        }
    }
}
type Result<T> = std::result::Result<T, ApiError>;

pub(super) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut resp = (status, bytes).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

/// A 200 whose body the store rendered already (its stored bytes, spliced): written out as
/// it is, neither parsed nor copied again.
fn rendered(body: Box<serde_json::value::RawValue>) -> Response {
    let text: Box<str> = body.into();
    answer(Bytes::from(String::from(text)))
}

/// A 200 with a JSON body already made.
fn answer(body: Bytes) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn listing<T: Serialize>(l: Listing<T>) -> Response {
    #[derive(Serialize)]
    struct Out<T> {
        #[serde(rename = "Item")]
        item: Vec<T>,
        #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
        next_token: Option<String>,
    }
    json(
        StatusCode::OK,
        &Out {
            item: l.items,
            next_token: l.next,
        },
    )
}

/// Decodes a JSON body, naming the field path on failure.
pub(super) fn body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "the request body is empty; expected a {what} JSON object"
        )));
    }
    crate::model::strict::from_slice(bytes).map_err(|e| {
        if e.path.is_empty() {
            ApiError::bad_request(format!("invalid {what}: {}", e.inner))
        } else {
            ApiError::bad_request(e.to_string())
        }
    })
}

fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>> {
    body::<Map<String, Value>>(bytes, what)
}

/// Reads `page-size` and `token` from the query string.
fn page(query: &Option<String>) -> Result<Page> {
    let mut p = Page {
        size: DEFAULT_PAGE_SIZE,
        after: 0,
    };
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "page-size" => {
                p.size = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "page-size: expected a whole number from 1 to {MAX_PAGE_SIZE}, found {v:?}"
                        ))
                    })?;
            }
            "token" => {
                p.after = decode_token(&v).ok_or_else(|| {
                    ApiError::bad_request("token: not a token returned as NextToken by this server")
                })?;
            }
            _ => {}
        }
    }
    Ok(p)
}

pub(super) fn admit(state: &AppState, operation: &'static str) -> Result<()> {
    super::error::set_operation(operation);
    if state.rate_limits && !state.limiter.admit(operation) {
        state
            .counters
            .throttled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::new(
            super::error::ErrorKind::TooManyRequests,
            format!(
                "Too many requests: {operation} is limited to {} per second",
                super::limits::quota(operation)
            ),
        ));
    }
    Ok(())
}

/// Runs a store call that only reads: inline on SQLite (a local file: microseconds), off
/// the async workers on PostgreSQL (a network round trip, on a blocking client).
pub(super) async fn reading<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    if state.store.dialect() == super::store::sql::Dialect::Sqlite {
        return f(&state.store);
    }
    blocking(state, f).await
}

/// Runs a store call that writes, off the async workers (it waits for fsync).
pub(super) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(&e))?
}

fn segment_request(bytes: &[u8]) -> Result<WriteSegmentRequest> {
    let req: WriteSegmentRequest = body(bytes, "WriteSegmentRequest")?;
    if let Some(v) = validate::write_segment_request(&req, Context::Server)
        .into_iter()
        .next()
    {
        return Err(ApiError::bad_request(v.to_string()));
    }
    Ok(req)
}

// ---- apps ----

pub async fn create_app(State(s): S, bytes: Bytes) -> Result<Response> {
    admit(&s, "CreateApp")?;
    let req: CreateApplicationRequest = body(&bytes, "CreateApplicationRequest")?;
    let name = req
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Name: missing required member"))?;
    let tags = req.tags.unwrap_or_default();
    if let Some(v) = validate::tags_rules("tags", &tags).first() {
        return Err(ApiError::bad_request(v.to_string()));
    }
    let app = blocking(&s, move |st| st.create_app(&name, &tags)).await?;
    Ok(json(StatusCode::CREATED, &app))
}

pub async fn get_app(State(s): S, ApiPath(app): ApiPath<String>) -> Result<Response> {
    admit(&s, "GetApp")?;
    Ok(json(
        StatusCode::OK,
        &reading(&s, move |st| st.get_app(&app)).await?,
    ))
}

pub async fn get_apps(State(s): S, RawQuery(q): RawQuery) -> Result<Response> {
    admit(&s, "GetApps")?;
    Ok(listing(
        reading(&s, move |st| st.list_apps(page(&q)?)).await?,
    ))
}

pub async fn delete_app(State(s): S, ApiPath(app): ApiPath<String>) -> Result<Response> {
    admit(&s, "DeleteApp")?;
    let out = blocking(&s, move |st| st.delete_app(&app)).await?;
    Ok(json(StatusCode::OK, &out))
}

// ---- segments ----

pub async fn create_segment(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "CreateSegment")?;
    let req = segment_request(&bytes)?;
    let out = blocking(&s, move |st| st.create_segment(&app, &req)).await?;
    Ok(json(StatusCode::CREATED, &out))
}

pub async fn get_segment(
    State(s): S,
    ApiPath((app, seg)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "GetSegment")?;
    if s.store.dialect() == super::store::sql::Dialect::Sqlite {
        // A local file: read inline, the answer kept until the next write.
        return Ok(answer(s.store.segment_answer(&app, &seg)?));
    }
    // PostgreSQL: the answer kept while the segment's row says it stands.
    if let Some(body) = s.store.checked_segment_answer(&app, &seg).await? {
        return Ok(answer(body));
    }
    // Not there: the read says why (no such application, or segment).
    Ok(rendered(
        reading(&s, move |st| st.get_segment(&app, &seg, None)).await?,
    ))
}

/// A segment's version: found by one awaited statement where the store can (PostgreSQL),
/// else (or when missing, to say why) read as every other read is.
async fn segment(
    s: &Arc<AppState>,
    app: String,
    seg: String,
    v: Option<i32>,
) -> Result<Box<serde_json::value::RawValue>> {
    if let Some(found) = s.store.find_segment(&app, &seg, v).await? {
        return Ok(found);
    }
    reading(s, move |st| st.get_segment(&app, &seg, v)).await
}

pub async fn get_segments(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "GetSegments")?;
    Ok(listing(
        reading(&s, move |st| st.list_segments(&app, page(&q)?)).await?,
    ))
}

pub async fn update_segment(
    State(s): S,
    ApiPath((app, seg)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "UpdateSegment")?;
    let req = segment_request(&bytes)?;
    if let Some(done) = s.store.update_segment_at_once(&app, &seg, &req).await? {
        return Ok(rendered(done));
    }
    Ok(rendered(
        blocking(&s, move |st| st.update_segment(&app, &seg, &req)).await?,
    ))
}

pub async fn delete_segment(
    State(s): S,
    ApiPath((app, seg)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "DeleteSegment")?;
    let out = blocking(&s, move |st| st.delete_segment(&app, &seg)).await?;
    Ok(json(StatusCode::OK, &out))
}

pub async fn get_segment_version(
    State(s): S,
    ApiPath((app, seg, version)): ApiPath<(String, String, String)>,
) -> Result<Response> {
    admit(&s, "GetSegmentVersion")?;
    let v: i32 = version.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::bad_request(format!(
            "version: expected a version number (1 or more), found {version:?}"
        ))
    })?;
    Ok(rendered(segment(&s, app, seg, Some(v)).await?))
}

pub async fn get_segment_versions(
    State(s): S,
    ApiPath((app, seg)): ApiPath<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "GetSegmentVersions")?;
    Ok(listing(
        reading(&s, move |st| {
            st.list_segment_versions(&app, &seg, page(&q)?)
        })
        .await?,
    ))
}

// ---- campaigns ----

pub async fn create_campaign(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "CreateCampaign")?;
    let input = inputs::campaign(object(&bytes, "WriteCampaignRequest")?)?;
    let out = blocking(&s, move |st| st.create_campaign(&app, input)).await?;
    Ok(json(StatusCode::CREATED, &out))
}

pub async fn get_campaign(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "GetCampaign")?;
    Ok(json(
        StatusCode::OK,
        &reading(&s, move |st| st.get_campaign(&app, &id)).await?,
    ))
}

pub async fn get_campaigns(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "GetCampaigns")?;
    Ok(listing(
        reading(&s, move |st| st.list_campaigns(&app, page(&q)?)).await?,
    ))
}

pub async fn update_campaign(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "UpdateCampaign")?;
    let input = inputs::campaign(object(&bytes, "WriteCampaignRequest")?)?;
    let out = blocking(&s, move |st| st.update_campaign(&app, &id, input)).await?;
    Ok(json(StatusCode::OK, &out))
}

pub async fn delete_campaign(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "DeleteCampaign")?;
    let out = blocking(&s, move |st| st.delete_campaign(&app, &id)).await?;
    Ok(json(StatusCode::OK, &out))
}

// ---- journeys ----

pub async fn create_journey(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "CreateJourney")?;
    let input = inputs::journey(object(&bytes, "WriteJourneyRequest")?)?;
    let out = blocking(&s, move |st| st.create_journey(&app, input)).await?;
    Ok(json(StatusCode::CREATED, &out))
}

pub async fn get_journey(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "GetJourney")?;
    Ok(json(
        StatusCode::OK,
        &reading(&s, move |st| st.get_journey(&app, &id)).await?,
    ))
}

pub async fn list_journeys(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "ListJourneys")?;
    Ok(listing(
        reading(&s, move |st| st.list_journeys(&app, page(&q)?)).await?,
    ))
}

pub async fn update_journey(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "UpdateJourney")?;
    let input = inputs::journey(object(&bytes, "WriteJourneyRequest")?)?;
    let out = blocking(&s, move |st| st.update_journey(&app, &id, input)).await?;
    Ok(json(StatusCode::OK, &out))
}

pub async fn update_journey_state(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "UpdateJourneyState")?;
    let state = inputs::journey_state(&object(&bytes, "JourneyStateRequest")?)?;
    let out = blocking(&s, move |st| st.update_journey_state(&app, &id, &state)).await?;
    Ok(json(StatusCode::OK, &out))
}

pub async fn delete_journey(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "DeleteJourney")?;
    let out = blocking(&s, move |st| st.delete_journey(&app, &id)).await?;
    Ok(json(StatusCode::OK, &out))
}

// ---- tags ----

fn resource(store: &Store, arn: &str) -> Result<Resource> {
    if !arn.starts_with("arn:") {
        return Err(ApiError::bad_request(format!(
            "resource-arn: {arn:?} is not an ARN; expected arn:aws:mobiletargeting:<region>:<account>:apps/<id>[/segments/<id>]"
        )));
    }
    store.parse_arn(arn).ok_or_else(|| {
        ApiError::not_found(format!(
            "Resource {arn} not found on this server (region {}, account {})",
            store.region, store.account_id
        ))
    })
}

pub async fn list_tags(State(s): S, ApiPath(arn): ApiPath<String>) -> Result<Response> {
    admit(&s, "ListTagsForResource")?;
    let r = resource(&s.store, &arn)?;
    let tags = reading(&s, move |st| st.list_tags(&r)).await?;
    Ok(json(StatusCode::OK, &TagsModel { tags }))
}

pub async fn tag_resource(
    State(s): S,
    ApiPath(arn): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "TagResource")?;
    let r = resource(&s.store, &arn)?;
    let model: TagsModel = body(&bytes, "TagsModel")?;
    blocking(&s, move |st| st.tag(&r, &model.tags)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn untag_resource(
    State(s): S,
    ApiPath(arn): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "UntagResource")?;
    let r = resource(&s.store, &arn)?;
    let keys: Vec<String> = form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.into_owned())
        .collect();
    if keys.is_empty() {
        return Err(ApiError::bad_request(
            "tagKeys: missing required member; name each key as ?tagKeys=KEY",
        ));
    }
    blocking(&s, move |st| st.untag(&r, &keys)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- endpoints ----

fn accepted() -> Response {
    json(
        StatusCode::ACCEPTED,
        &crate::model::MessageBody {
            message: "Accepted".into(),
            request_id: super::error::current_request_id(),
        },
    )
}

fn items(list: Vec<super::store::EndpointBody>, status: StatusCode) -> Response {
    #[derive(Serialize)]
    struct Out {
        #[serde(rename = "Item")]
        item: Vec<super::store::EndpointBody>,
    }
    json(status, &Out { item: list })
}

fn endpoint_id(field: &str, id: &str) -> Result<()> {
    Ok(super::endpoint::check_id(field, id)?)
}

pub async fn update_endpoint(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    use super::endpoint::{Endpoint, Origin};
    admit(&s, "UpdateEndpoint")?;
    endpoint_id("endpoint-id", &id)?;
    let req: Endpoint = body(&bytes, "EndpointRequest")?;
    req.check_request("", Origin::Request { batch: false })?;
    let rid = super::error::current_request_id();
    blocking(&s, move |st| {
        st.update_endpoints(&app, vec![(id, req)], |_| String::new(), &rid)
    })
    .await?;
    Ok(accepted())
}

pub async fn update_endpoints_batch(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    use super::endpoint::{BatchRequest, Origin, MAX_BATCH_ITEMS};
    admit(&s, "UpdateEndpointsBatch")?;
    let req: BatchRequest = body(&bytes, "EndpointBatchRequest")?;
    let list = req
        .item
        .ok_or_else(|| ApiError::bad_request("Item: missing required member"))?;
    if list.is_empty() || list.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::bad_request(format!(
            "Item: expected 1 to {MAX_BATCH_ITEMS} endpoints, found {}",
            list.len()
        )));
    }
    let mut batch = Vec::with_capacity(list.len());
    for (i, mut e) in list.into_iter().enumerate() {
        e.check_request(&format!("Item[{i}]."), Origin::Request { batch: true })?;
        let id = e.id.take().unwrap_or_default();
        batch.push((id, e));
    }
    let rid = super::error::current_request_id();
    blocking(&s, move |st| {
        st.update_endpoints(&app, batch, |i| format!("Item[{i}]"), &rid)
    })
    .await?;
    Ok(accepted())
}

pub async fn get_endpoint(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "GetEndpoint")?;
    Ok(json(
        StatusCode::OK,
        &reading(&s, move |st| st.get_endpoint(&app, &id)).await?,
    ))
}

pub async fn delete_endpoint(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "DeleteEndpoint")?;
    let out = blocking(&s, move |st| st.delete_endpoint(&app, &id)).await?;
    Ok(json(StatusCode::ACCEPTED, &out))
}

pub async fn get_user_endpoints(
    State(s): S,
    ApiPath((app, user)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "GetUserEndpoints")?;
    Ok(items(
        reading(&s, move |st| st.user_endpoints(&app, &user)).await?,
        StatusCode::OK,
    ))
}

pub async fn delete_user_endpoints(
    State(s): S,
    ApiPath((app, user)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "DeleteUserEndpoints")?;
    let out = blocking(&s, move |st| st.delete_user_endpoints(&app, &user)).await?;
    Ok(items(out, StatusCode::ACCEPTED))
}

// ---- import and export jobs ----

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportJobRequest {
    #[serde(rename = "DefineSegment")]
    define_segment: Option<bool>,
    #[serde(rename = "ExternalId")]
    external_id: Option<String>,
    #[serde(rename = "Format")]
    format: Option<String>,
    #[serde(rename = "RegisterEndpoints")]
    register_endpoints: Option<bool>,
    #[serde(rename = "RoleArn")]
    role_arn: Option<String>,
    #[serde(rename = "S3Url")]
    s3_url: Option<String>,
    #[serde(rename = "SegmentId")]
    segment_id: Option<String>,
    #[serde(rename = "SegmentName")]
    segment_name: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportJobRequest {
    #[serde(rename = "RoleArn")]
    role_arn: Option<String>,
    #[serde(rename = "S3UrlPrefix")]
    s3_url_prefix: Option<String>,
    #[serde(rename = "SegmentId")]
    segment_id: Option<String>,
    #[serde(rename = "SegmentVersion")]
    segment_version: Option<i32>,
}

fn required(v: Option<String>, field: &str) -> Result<String> {
    v.ok_or_else(|| ApiError::bad_request(format!("{field}: missing required member")))
}

/// The longest a job's URL is (a file path's `PATH_MAX`; an S3 key is at most 1,024
/// bytes), its role ARN (IAM's limit) and its external id (STS's).
const MAX_JOB_URL: usize = 4096;
const MAX_ROLE_ARN: usize = 2048;
const MAX_EXTERNAL_ID: usize = 1224;

/// `value` of `field` is at most `max` characters, as a segment's Name is at CreateSegment.
fn at_most(field: &str, value: &str, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n > max {
        return Err(ApiError::bad_request(format!(
            "{field}: is {n} characters long; at most {max} are accepted"
        )));
    }
    Ok(())
}

fn job_url(url: &str, field: &str) -> Result<()> {
    at_most(field, url, MAX_JOB_URL)?;
    super::objects::parse(url)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

fn counters() -> Value {
    serde_json::json!({
        "CompletedPieces": 0, "FailedPieces": 0, "Failures": [], "TotalFailures": 0,
        "TotalPieces": 0, "TotalProcessed": 0,
    })
}

pub async fn create_import_job(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    use super::store::JobKind;
    admit(&s, "CreateImportJob")?;
    let req: ImportJobRequest = body(&bytes, "ImportJobRequest")?;
    let format = required(req.format, "Format")?;
    if format != "CSV" && format != "JSON" {
        return Err(ApiError::bad_request(format!(
            "Format: expected CSV or JSON, found {:?}",
            crate::text::safe(&format)
        )));
    }
    let url = required(req.s3_url, "S3Url")?;
    job_url(&url, "S3Url")?;
    let role = required(req.role_arn, "RoleArn")?;
    at_most("RoleArn", &role, MAX_ROLE_ARN)?;
    if let Some(id) = &req.external_id {
        at_most("ExternalId", id, MAX_EXTERNAL_ID)?;
    }
    if let Some(name) = &req.segment_name {
        at_most("SegmentName", name, crate::model::validate::MAX_NAME_LEN)?;
    }
    let define = req.define_segment.unwrap_or(false);
    let segment = req.segment_id.filter(|s| !s.is_empty());
    if define && segment.is_none() && req.segment_name.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "SegmentName: required when DefineSegment is true and no SegmentId is given",
        ));
    }
    if let Some(seg) = &segment {
        let (app, id) = (app.clone(), seg.clone());
        let current = reading(&s, move |st| st.segment_at(&app, &id, None)).await?;
        if !current.is_import() {
            return Err(ApiError::bad_request(format!(
                "SegmentId: segment {seg} is DIMENSIONAL; an import job updates only IMPORT segments"
            )));
        }
    }
    let mut def = serde_json::json!({
        "DefineSegment": define,
        "Format": format,
        "RegisterEndpoints": req.register_endpoints.unwrap_or(true),
        "RoleArn": role,
        "S3Url": url,
    });
    for (k, v) in [
        ("ExternalId", req.external_id),
        ("SegmentId", segment.clone()),
        ("SegmentName", req.segment_name),
    ] {
        if let Some(v) = v {
            def[k] = Value::String(v);
        }
    }
    let mut job = counters();
    job["Definition"] = def;
    let app2 = app.clone();
    let job = blocking(&s, move |st| {
        st.create_job(&app2, JobKind::Import, segment.as_deref(), job)
    })
    .await?;
    s.jobs.spawn(app, JobKind::Import, job.clone());
    Ok(json(StatusCode::CREATED, &job))
}

pub async fn create_export_job(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    use super::store::JobKind;
    admit(&s, "CreateExportJob")?;
    let req: ExportJobRequest = body(&bytes, "ExportJobRequest")?;
    let prefix = required(req.s3_url_prefix, "S3UrlPrefix")?;
    job_url(&prefix, "S3UrlPrefix")?;
    let role = required(req.role_arn, "RoleArn")?;
    at_most("RoleArn", &role, MAX_ROLE_ARN)?;
    let segment = req.segment_id.filter(|s| !s.is_empty());
    if let Some(seg) = &segment {
        let (app, seg, version) = (app.clone(), seg.clone(), req.segment_version);
        reading(&s, move |st| st.segment_at(&app, &seg, version)).await?;
    } else if req.segment_version.is_some() {
        return Err(ApiError::bad_request(
            "SegmentVersion: given without SegmentId",
        ));
    }
    let mut def = serde_json::json!({ "RoleArn": role, "S3UrlPrefix": prefix });
    if let Some(seg) = &segment {
        def["SegmentId"] = Value::String(seg.clone());
    }
    if let Some(v) = req.segment_version {
        def["SegmentVersion"] = v.into();
    }
    let mut job = counters();
    job["Definition"] = def;
    let app2 = app.clone();
    let job = blocking(&s, move |st| {
        st.create_job(&app2, JobKind::Export, segment.as_deref(), job)
    })
    .await?;
    s.jobs.spawn(app, JobKind::Export, job.clone());
    Ok(json(StatusCode::ACCEPTED, &job))
}

pub async fn get_import_job(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "GetImportJob")?;
    let job = reading(&s, move |st| {
        st.get_job(&app, super::store::JobKind::Import, &id)
    })
    .await?;
    Ok(json(StatusCode::OK, &job))
}

pub async fn get_export_job(
    State(s): S,
    ApiPath((app, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "GetExportJob")?;
    let job = reading(&s, move |st| {
        st.get_job(&app, super::store::JobKind::Export, &id)
    })
    .await?;
    Ok(json(StatusCode::OK, &job))
}

pub async fn get_import_jobs(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "GetImportJobs")?;
    let l = reading(&s, move |st| {
        st.list_jobs(&app, super::store::JobKind::Import, None, page(&q)?)
    })
    .await?;
    Ok(listing(l))
}

pub async fn get_export_jobs(
    State(s): S,
    ApiPath(app): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "GetExportJobs")?;
    let l = reading(&s, move |st| {
        st.list_jobs(&app, super::store::JobKind::Export, None, page(&q)?)
    })
    .await?;
    Ok(listing(l))
}

pub async fn get_segment_import_jobs(
    State(s): S,
    ApiPath((app, seg)): ApiPath<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "GetSegmentImportJobs")?;
    let l = reading(&s, move |st| {
        st.list_jobs(&app, super::store::JobKind::Import, Some(&seg), page(&q)?)
    })
    .await?;
    Ok(listing(l))
}

pub async fn get_segment_export_jobs(
    State(s): S,
    ApiPath((app, seg)): ApiPath<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "GetSegmentExportJobs")?;
    let l = reading(&s, move |st| {
        st.list_jobs(&app, super::store::JobKind::Export, Some(&seg), page(&q)?)
    })
    .await?;
    Ok(listing(l))
}
