//! Amazon Connect outbound campaigns (v2) on the same listener (`/v2/…`, signed for
//! `connect-campaigns`, errors named as that API names them; see [`super::api`]): the calls
//! segmentctl's campaign guard makes on a Customer Profiles target (ListCampaigns,
//! DescribeCampaign, GetCampaignState(Batch), UpdateCampaignSource) and the ones that make
//! and run a campaign (CreateCampaign, Start, Pause, Resume, Stop, DeleteCampaign).
//!
//! What a campaign does once started (calls, messages) is Connect's and not served here: a
//! campaign is its definition, its source and its state.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::json;

use super::error::ApiError;
use super::handlers::{admit, blocking, body, json, reading, ApiPath};
use super::router::resource;
use super::store::connect::IN_USE;
use super::store::{decode_token, Page};
use super::AppState;
use crate::model::campaigns::{
    self, CampaignState, CreateCampaignRequest, ListCampaignsRequest, StateBatchRequest,
    UpdateSourceRequest, MAX_PAGE, MAX_STATE_BATCH,
};
use crate::model::validate::Violation;

type S = State<Arc<AppState>>;
type Result<T> = std::result::Result<T, ApiError>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2/campaigns", resource(put(create), "PUT, OPTIONS"))
        .route(
            "/v2/campaigns-summary",
            resource(post(list), "POST, OPTIONS"),
        )
        .route(
            "/v2/campaigns-state",
            resource(post(state_batch), "POST, OPTIONS"),
        )
        .route(
            "/v2/campaigns/{id}",
            resource(get(describe).delete(delete), "GET, DELETE, OPTIONS"),
        )
        .route(
            "/v2/campaigns/{id}/state",
            resource(get(state), "GET, OPTIONS"),
        )
        .route(
            "/v2/campaigns/{id}/source",
            resource(post(update_source), "POST, OPTIONS"),
        )
        .route(
            "/v2/campaigns/{id}/start",
            resource(post(start), "POST, OPTIONS"),
        )
        .route(
            "/v2/campaigns/{id}/pause",
            resource(post(pause), "POST, OPTIONS"),
        )
        .route(
            "/v2/campaigns/{id}/resume",
            resource(post(resume), "POST, OPTIONS"),
        )
        .route(
            "/v2/campaigns/{id}/stop",
            resource(post(stop), "POST, OPTIONS"),
        )
}

/// The first violation as a 400 (`ValidationException`).
fn refuse(violations: Vec<Violation>) -> Result<()> {
    match violations.into_iter().next() {
        Some(v) => Err(ApiError::bad_request(v.to_string())),
        None => Ok(()),
    }
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

async fn create(State(s): S, bytes: Bytes) -> Result<Response> {
    admit(&s, "connect-campaigns.CreateCampaign")?;
    let req: CreateCampaignRequest = body(&bytes, "CreateCampaignRequest")?;
    refuse(campaigns::create_campaign(&req))?;
    let tags = req.tags.clone().filter(|t| !t.is_empty());
    let (id, arn) = blocking(&s, move |st| st.create_connect_campaign(&req)).await?;
    let mut out = json!({"id": id, "arn": arn});
    if let (Some(t), Some(o)) = (tags, out.as_object_mut()) {
        o.insert("tags".into(), json!(t));
    }
    Ok(json(StatusCode::OK, &out))
}

async fn describe(State(s): S, ApiPath(id): ApiPath<String>) -> Result<Response> {
    admit(&s, "connect-campaigns.DescribeCampaign")?;
    refuse(campaigns::campaign_id("id", &id))?;
    let campaign = reading(&s, move |st| st.describe_connect_campaign(&id)).await?;
    Ok(json(StatusCode::OK, &json!({ "campaign": campaign })))
}

async fn delete(State(s): S, ApiPath(id): ApiPath<String>) -> Result<Response> {
    admit(&s, "connect-campaigns.DeleteCampaign")?;
    refuse(campaigns::campaign_id("id", &id))?;
    blocking(&s, move |st| st.delete_connect_campaign(&id)).await?;
    Ok(ok())
}

async fn list(State(s): S, bytes: Bytes) -> Result<Response> {
    admit(&s, "connect-campaigns.ListCampaigns")?;
    // Every member is optional: an empty body lists the first page.
    let req: ListCampaignsRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ListCampaignsRequest::default()
    } else {
        body(&bytes, "ListCampaignsRequest")?
    };
    let size = match req.max_results {
        None => MAX_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "maxResults: expected a whole number from 1 to {MAX_PAGE}, found {n}"
            )))
        }
    };
    let after = match req.next_token.as_deref() {
        None | Some("") => 0,
        Some(t) => decode_token(t).ok_or_else(|| {
            ApiError::bad_request("nextToken: not a token returned as nextToken by this server")
        })?,
    };
    let instance = match req.filters.and_then(|f| f.instance_id_filter) {
        Some(f) if f.operator != "Eq" => {
            return Err(ApiError::bad_request(format!(
                "filters.instanceIdFilter.operator: {}",
                crate::model::unknown_value_message(&f.operator, &["Eq"])
            )))
        }
        Some(f) => Some(f.value),
        None => None,
    };
    let page = Page {
        size: size as usize,
        after,
    };
    let listing = reading(&s, move |st| {
        st.list_connect_campaigns(page, instance.as_deref())
    })
    .await?;
    let mut out = json!({ "campaignSummaryList": listing.items });
    if let (Some(t), Some(o)) = (listing.next, out.as_object_mut()) {
        o.insert("nextToken".into(), t.into());
    }
    Ok(json(StatusCode::OK, &out))
}

async fn state(State(s): S, ApiPath(id): ApiPath<String>) -> Result<Response> {
    admit(&s, "connect-campaigns.GetCampaignState")?;
    refuse(campaigns::campaign_id("id", &id))?;
    let ids = vec![id.clone()];
    let (found, _) = reading(&s, move |st| st.connect_campaign_states(&ids)).await?;
    match found.first() {
        Some((_, state)) => Ok(json(StatusCode::OK, &json!({ "state": state }))),
        None => Err(ApiError::not_found(format!("Campaign {id} does not exist"))),
    }
}

async fn state_batch(State(s): S, bytes: Bytes) -> Result<Response> {
    admit(&s, "connect-campaigns.GetCampaignStateBatch")?;
    let req: StateBatchRequest = body(&bytes, "GetCampaignStateBatchRequest")?;
    if req.campaign_ids.is_empty() || req.campaign_ids.len() > MAX_STATE_BATCH {
        return Err(ApiError::bad_request(format!(
            "campaignIds: must list 1 to {MAX_STATE_BATCH} ids, found {}",
            req.campaign_ids.len()
        )));
    }
    for (i, id) in req.campaign_ids.iter().enumerate() {
        refuse(campaigns::campaign_id(&format!("campaignIds[{i}]"), id))?;
    }
    let ids = req.campaign_ids;
    let (found, missing) = reading(&s, move |st| st.connect_campaign_states(&ids)).await?;
    let ok: Vec<_> = found
        .iter()
        .map(|(id, state)| json!({"campaignId": id, "state": state}))
        .collect();
    let failed: Vec<_> = missing
        .iter()
        .map(|id| json!({"campaignId": id, "failureCode": "ResourceNotFound"}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"successfulRequests": ok, "failedRequests": failed}),
    ))
}

async fn update_source(
    State(s): S,
    ApiPath(id): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "connect-campaigns.UpdateCampaignSource")?;
    refuse(campaigns::campaign_id("id", &id))?;
    let req: UpdateSourceRequest = body(&bytes, "UpdateCampaignSourceRequest")?;
    refuse(campaigns::source("source", &req.source))?;
    blocking(&s, move |st| {
        st.update_connect_campaign_source(&id, &req.source)
    })
    .await?;
    Ok(ok())
}

/// A state change: from one of `from` to `to`.
async fn transition(
    s: Arc<AppState>,
    id: String,
    operation: &'static str,
    from: &'static [CampaignState],
    to: CampaignState,
) -> Result<Response> {
    admit(&s, operation)?;
    refuse(campaigns::campaign_id("id", &id))?;
    let name = operation.trim_start_matches("connect-campaigns.");
    blocking(&s, move |st| {
        st.set_connect_campaign_state(&id, name, from, to)
    })
    .await?;
    Ok(ok())
}

async fn start(State(s): S, ApiPath(id): ApiPath<String>) -> Result<Response> {
    const FROM: &[CampaignState] = &[CampaignState::Initialized];
    transition(
        s,
        id,
        "connect-campaigns.StartCampaign",
        FROM,
        CampaignState::Running,
    )
    .await
}

async fn pause(State(s): S, ApiPath(id): ApiPath<String>) -> Result<Response> {
    const FROM: &[CampaignState] = &[CampaignState::Running];
    transition(
        s,
        id,
        "connect-campaigns.PauseCampaign",
        FROM,
        CampaignState::Paused,
    )
    .await
}

async fn resume(State(s): S, ApiPath(id): ApiPath<String>) -> Result<Response> {
    const FROM: &[CampaignState] = &[CampaignState::Paused];
    transition(
        s,
        id,
        "connect-campaigns.ResumeCampaign",
        FROM,
        CampaignState::Running,
    )
    .await
}

async fn stop(State(s): S, ApiPath(id): ApiPath<String>) -> Result<Response> {
    transition(
        s,
        id,
        "connect-campaigns.StopCampaign",
        IN_USE,
        CampaignState::Stopped,
    )
    .await
}
