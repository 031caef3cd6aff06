//! Customer Profiles' segment-definition API on the same listener as Pinpoint's: domains,
//! profiles, segment definitions, their evaluation (membership, estimates, snapshots: the
//! audience evaluator's second front end), and tags (`/domains…`, `/tags/{arn}`). Requests pass the
//! same layers (their signing name `profile`, their error names, see [`super::api`]); each
//! handler decodes strictly, checks with `model::profiles::validate`, and calls the store.
//!
//! Every success is a 200, as the model says; lists page with `max-results` and
//! `next-token` and answer `Items`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::handlers::{admit, blocking, body, json, reading, ApiPath};
use super::router::resource;
use super::store::{decode_token, JobKind, Listing, Page, Resource, Store};
use super::AppState;
use crate::audience::evaluate::profiles::DefinitionCatalog;
use crate::audience::evaluate::Program;
use crate::model::profiles::validate;
use crate::model::profiles::{
    CreateDomainRequest, CreateSegmentDefinitionRequest, ProfileFields, SearchProfilesRequest,
    SegmentGroups, TagsBody,
};
use crate::model::validate::Violation;

type S = State<Arc<AppState>>;
type Result<T> = std::result::Result<T, ApiError>;

/// The routes of the Customer Profiles API.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/domains", resource(get(list_domains), "GET, OPTIONS"))
        .route(
            "/domains/{domain}",
            resource(
                post(create_domain).get(get_domain).delete(delete_domain),
                "GET, POST, DELETE, OPTIONS",
            ),
        )
        .route(
            "/domains/{domain}/profiles",
            resource(
                post(create_profile).put(update_profile),
                "POST, PUT, OPTIONS",
            ),
        )
        .route(
            "/domains/{domain}/profiles/delete",
            resource(post(delete_profile), "POST, OPTIONS"),
        )
        .route(
            "/domains/{domain}/profiles/search",
            resource(post(search_profiles), "POST, OPTIONS"),
        )
        .route(
            "/domains/{domain}/segment-definitions",
            resource(get(list_segment_definitions), "GET, OPTIONS"),
        )
        .route(
            "/domains/{domain}/segment-definitions/{name}",
            resource(
                post(create_segment_definition)
                    .get(get_segment_definition)
                    .delete(delete_segment_definition),
                "GET, POST, DELETE, OPTIONS",
            ),
        )
        .route(
            "/domains/{domain}/segment-estimates",
            resource(post(create_segment_estimate), "POST, OPTIONS"),
        )
        .route(
            "/domains/{domain}/segment-estimates/{estimate}",
            resource(get(get_segment_estimate), "GET, OPTIONS"),
        )
        .route(
            "/domains/{domain}/segments/{name}/membership",
            resource(post(get_segment_membership), "POST, OPTIONS"),
        )
        .route(
            "/domains/{domain}/segments/{name}/snapshots",
            resource(post(create_segment_snapshot), "POST, OPTIONS"),
        )
        .route(
            "/domains/{domain}/segments/{name}/snapshots/{snapshot}",
            resource(get(get_segment_snapshot), "GET, OPTIONS"),
        )
        .route(
            "/tags/{arn}",
            resource(
                get(list_tags).post(tag_resource).delete(untag_resource),
                "GET, POST, DELETE, OPTIONS",
            ),
        )
}

/// The first violation as a 400.
fn refuse(violations: Vec<Violation>) -> Result<()> {
    match violations.into_iter().next() {
        Some(v) => Err(ApiError::bad_request(v.to_string())),
        None => Ok(()),
    }
}

fn domain_name(name: &str) -> Result<()> {
    refuse(validate::name("DomainName", name))
}

fn definition_name(name: &str) -> Result<()> {
    refuse(validate::name("SegmentDefinitionName", name))
}

/// Reads `max-results` (1 to `max`, `default` when absent) and `next-token`.
fn page(query: &Option<String>, default: usize, max: usize) -> Result<Page> {
    let mut p = Page {
        size: default,
        after: 0,
    };
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "max-results" => {
                p.size = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "MaxResults: expected a whole number from 1 to {max}, found {:?}",
                            crate::text::safe(&v)
                        ))
                    })?;
            }
            "next-token" => {
                p.after = decode_token(&v).ok_or_else(|| {
                    ApiError::bad_request(
                        "NextToken: not a token returned as NextToken by this server",
                    )
                })?;
            }
            _ => {}
        }
    }
    Ok(p)
}

/// A page as Customer Profiles answers one: `Items`, and `NextToken` when more follow.
fn items<T: Serialize>(l: Listing<T>) -> Response {
    #[derive(Serialize)]
    struct Out<T> {
        #[serde(rename = "Items")]
        items: Vec<T>,
        #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
        next_token: Option<String>,
    }
    json(
        StatusCode::OK,
        &Out {
            items: l.items,
            next_token: l.next,
        },
    )
}

#[derive(Serialize)]
struct MessageOut {
    #[serde(rename = "Message")]
    message: String,
}

// ---- domains ----

/// ListDomains' default and largest page.
const DOMAINS_PAGE: usize = 100;
/// ListSegmentDefinitions' default page, and its largest (the model's 500).
const DEFINITIONS_PAGE: usize = 100;
const DEFINITIONS_MAX_PAGE: usize = 500;

async fn create_domain(
    State(s): S,
    ApiPath(domain): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.CreateDomain")?;
    domain_name(&domain)?;
    let req: CreateDomainRequest = body(&bytes, "CreateDomainRequest")?;
    refuse(validate::create_domain(&req))?;
    let out = blocking(&s, move |st| st.create_domain(&domain, &req)).await?;
    Ok(json(StatusCode::OK, &out))
}

async fn get_domain(State(s): S, ApiPath(domain): ApiPath<String>) -> Result<Response> {
    admit(&s, "profile.GetDomain")?;
    domain_name(&domain)?;
    let out = reading(&s, move |st| st.get_domain(&domain)).await?;
    Ok(json(StatusCode::OK, &out))
}

async fn list_domains(State(s): S, RawQuery(q): RawQuery) -> Result<Response> {
    admit(&s, "profile.ListDomains")?;
    let p = page(&q, DOMAINS_PAGE, DOMAINS_PAGE)?;
    Ok(items(reading(&s, move |st| st.list_domains(p)).await?))
}

async fn delete_domain(State(s): S, ApiPath(domain): ApiPath<String>) -> Result<Response> {
    admit(&s, "profile.DeleteDomain")?;
    domain_name(&domain)?;
    let message = format!("Domain {domain} deleted");
    blocking(&s, move |st| st.delete_domain(&domain)).await?;
    Ok(json(StatusCode::OK, &MessageOut { message }))
}

// ---- profiles ----

/// SearchProfiles' default page (the model's documented 20) and its largest.
const SEARCH_PAGE: usize = 20;
const SEARCH_MAX_PAGE: usize = 100;

#[derive(Serialize)]
struct ProfileIdOut {
    #[serde(rename = "ProfileId")]
    profile_id: String,
}

async fn create_profile(
    State(s): S,
    ApiPath(domain): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.CreateProfile")?;
    domain_name(&domain)?;
    let fields: ProfileFields = body(&bytes, "CreateProfileRequest")?;
    refuse(validate::profile_fields(&fields, false))?;
    let profile_id = blocking(&s, move |st| st.create_profile(&domain, &fields)).await?;
    Ok(json(StatusCode::OK, &ProfileIdOut { profile_id }))
}

/// The body of UpdateProfile or DeleteProfile: its `ProfileId`, and the other members.
fn with_profile_id(bytes: &[u8], what: &str) -> Result<(String, Map<String, Value>)> {
    let mut members: Map<String, Value> = body(bytes, what)?;
    let id = match members.remove("ProfileId") {
        Some(Value::String(id)) => id,
        Some(_) => return Err(ApiError::bad_request("ProfileId: expected a string")),
        None => return Err(ApiError::bad_request("ProfileId: missing required member")),
    };
    refuse(validate::profile_id("ProfileId", &id))?;
    Ok((id, members))
}

async fn update_profile(
    State(s): S,
    ApiPath(domain): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.UpdateProfile")?;
    domain_name(&domain)?;
    let (profile_id, members) = with_profile_id(&bytes, "UpdateProfileRequest")?;
    // The rest must be a profile's fields, decoded as strictly as a create's.
    let rest = serde_json::to_vec(&members).map_err(|e| ApiError::internal(&e))?;
    let fields: ProfileFields = body(&rest, "UpdateProfileRequest")?;
    refuse(validate::profile_fields(&fields, true))?;
    let id = profile_id.clone();
    blocking(&s, move |st| st.update_profile(&domain, &id, &members)).await?;
    Ok(json(StatusCode::OK, &ProfileIdOut { profile_id }))
}

async fn delete_profile(
    State(s): S,
    ApiPath(domain): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.DeleteProfile")?;
    domain_name(&domain)?;
    let (profile_id, rest) = with_profile_id(&bytes, "DeleteProfileRequest")?;
    if let Some(k) = rest.keys().next() {
        return Err(ApiError::bad_request(format!(
            "{}: unknown member; DeleteProfile takes ProfileId only",
            crate::text::safe(k)
        )));
    }
    let message = format!("Profile {profile_id} deleted");
    blocking(&s, move |st| st.delete_profile(&domain, &profile_id)).await?;
    Ok(json(StatusCode::OK, &MessageOut { message }))
}

async fn search_profiles(
    State(s): S,
    ApiPath(domain): ApiPath<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.SearchProfiles")?;
    domain_name(&domain)?;
    let p = page(&q, SEARCH_PAGE, SEARCH_MAX_PAGE)?;
    let req: SearchProfilesRequest = body(&bytes, "SearchProfilesRequest")?;
    refuse(validate::search_profiles(&req))?;
    let found = reading(&s, move |st| st.search_profiles(&domain, &req, p)).await?;
    let listing = Listing {
        items: found
            .items
            .into_iter()
            .map(|f| {
                let mut profile = f.profile;
                let by: Vec<Value> =
                    f.by.into_iter()
                        .map(|(k, v)| serde_json::json!({"KeyName": k, "Values": v}))
                        .collect();
                profile.insert("FoundByItems".into(), Value::Array(by));
                Value::Object(profile)
            })
            .collect(),
        next: found.next,
    };
    Ok(items(listing))
}

// ---- segment definitions ----

async fn create_segment_definition(
    State(s): S,
    ApiPath((domain, name)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.CreateSegmentDefinition")?;
    domain_name(&domain)?;
    definition_name(&name)?;
    let req: CreateSegmentDefinitionRequest = body(&bytes, "CreateSegmentDefinitionRequest")?;
    refuse(validate::create_segment_definition(&req))?;
    let out = blocking(&s, move |st| {
        st.create_segment_definition(&domain, &name, &req)
    })
    .await?;
    // Create answers the definition less its criteria.
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Created {
        segment_definition_name: String,
        display_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        created_at: crate::model::profiles::EpochSeconds,
        segment_definition_arn: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        tags: Option<crate::model::Tags>,
    }
    Ok(json(
        StatusCode::OK,
        &Created {
            segment_definition_name: out.segment_definition_name,
            display_name: out.display_name,
            description: out.description,
            created_at: out.created_at,
            segment_definition_arn: out.segment_definition_arn,
            tags: out.tags,
        },
    ))
}

async fn get_segment_definition(
    State(s): S,
    ApiPath((domain, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "profile.GetSegmentDefinition")?;
    domain_name(&domain)?;
    definition_name(&name)?;
    let out = reading(&s, move |st| st.get_segment_definition(&domain, &name)).await?;
    Ok(json(StatusCode::OK, &out))
}

async fn list_segment_definitions(
    State(s): S,
    ApiPath(domain): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "profile.ListSegmentDefinitions")?;
    domain_name(&domain)?;
    let p = page(&q, DEFINITIONS_PAGE, DEFINITIONS_MAX_PAGE)?;
    Ok(items(
        reading(&s, move |st| st.list_segment_definitions(&domain, p)).await?,
    ))
}

async fn delete_segment_definition(
    State(s): S,
    ApiPath((domain, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "profile.DeleteSegmentDefinition")?;
    domain_name(&domain)?;
    definition_name(&name)?;
    let message = format!("Segment definition {name} deleted");
    blocking(&s, move |st| st.delete_segment_definition(&domain, &name)).await?;
    Ok(json(StatusCode::OK, &MessageOut { message }))
}

// ---- evaluation ----

/// GetSegmentMembership: at most this many profiles per request (the model's 1–100).
const MAX_MEMBERSHIP_IDS: usize = 100;

/// The body of CreateSegmentEstimate.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EstimateRequest {
    #[serde(default)]
    segment_query: Option<SegmentGroups>,
    #[serde(default)]
    segment_sql_query: Option<String>,
}

/// Every source the criteria name must be a definition of the domain.
fn check_sources(
    path: &str,
    query: &SegmentGroups,
    known: &[(String, SegmentGroups)],
) -> Result<()> {
    for (gi, g) in query.groups.iter().flatten().enumerate() {
        for (si, s) in g.source_segments.iter().flatten().enumerate() {
            if let Some(n) = &s.segment_definition_name {
                if !known.iter().any(|(k, _)| k == n) {
                    return Err(ApiError::bad_request(format!(
                        "{path}.Groups[{gi}].SourceSegments[{si}].SegmentDefinitionName: segment definition {n} does not exist in this domain"
                    )));
                }
            }
        }
    }
    Ok(())
}

async fn create_segment_estimate(
    State(s): S,
    ApiPath(domain): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.CreateSegmentEstimate")?;
    domain_name(&domain)?;
    let req: EstimateRequest = body(&bytes, "CreateSegmentEstimateRequest")?;
    let query = match (req.segment_query, req.segment_sql_query) {
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "SegmentSqlQuery: is not implemented by this server (ENHANCED segments); estimate with SegmentQuery",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "SegmentQuery: missing: an estimate needs the criteria to count",
            ))
        }
        (Some(q), None) => q,
    };
    refuse(validate::segment_groups("SegmentQuery", &query))?;
    let (d, q) = (domain.clone(), query.clone());
    let job = blocking(&s, move |st| {
        let known = st.definition_catalog(&d)?;
        check_sources("SegmentQuery", &q, &known)?;
        st.create_profile_job(
            &d,
            JobKind::SegmentEstimate,
            None,
            serde_json::json!({"DomainName": d, "SegmentQuery": q}),
        )
    })
    .await?;
    let estimate_id = job["Id"].as_str().unwrap_or_default().to_string();
    s.jobs.spawn(
        super::store::jobs_app(&domain),
        JobKind::SegmentEstimate,
        job,
    );
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"DomainName": domain, "EstimateId": estimate_id}),
    ))
}

async fn get_segment_estimate(
    State(s): S,
    ApiPath((domain, id)): ApiPath<(String, String)>,
) -> Result<Response> {
    admit(&s, "profile.GetSegmentEstimate")?;
    domain_name(&domain)?;
    let (d, i) = (domain.clone(), id.clone());
    let job = reading(&s, move |st| {
        st.get_profile_job(&d, JobKind::SegmentEstimate, None, &i)
    })
    .await?;
    // RUNNING answers 202 (the model binds the status code to the answer), the end 200.
    let (status, code) = match job["JobStatus"].as_str() {
        Some("COMPLETED") => ("SUCCEEDED", StatusCode::OK),
        Some("FAILED") => ("FAILED", StatusCode::OK),
        _ => ("RUNNING", StatusCode::ACCEPTED),
    };
    let mut out = serde_json::json!({"DomainName": domain, "EstimateId": id, "Status": status});
    for k in ["Estimate", "Message"] {
        if let Some(v) = job.get(k).filter(|v| v.is_string()) {
            out[k] = v.clone();
        }
    }
    Ok(json(code, &out))
}

/// The body of GetSegmentMembership.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct MembershipRequest {
    profile_ids: Vec<String>,
}

async fn get_segment_membership(
    State(s): S,
    ApiPath((domain, name)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.GetSegmentMembership")?;
    domain_name(&domain)?;
    definition_name(&name)?;
    let req: MembershipRequest = body(&bytes, "GetSegmentMembershipRequest")?;
    let n = req.profile_ids.len();
    if n == 0 || n > MAX_MEMBERSHIP_IDS {
        return Err(ApiError::bad_request(format!(
            "ProfileIds: must list 1 to {MAX_MEMBERSHIP_IDS} profile ids, found {n}"
        )));
    }
    for (i, id) in req.profile_ids.iter().enumerate() {
        refuse(validate::profile_id(&format!("ProfileIds[{i}]"), id))?;
    }
    let out = reading(&s, move |st| {
        let definitions = st.definition_catalog(&domain)?;
        if !definitions.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::not_found(format!(
                "Segment definition {name} does not exist in domain {domain}"
            )));
        }
        let found = st.profiles_by_id(&domain, &req.profile_ids)?;
        membership(&name, &definitions, &req.profile_ids, &found)
    })
    .await?;
    Ok(json(StatusCode::OK, &out))
}

/// Which of `ids` the definition holds, evaluated over the profiles `found`; an id with no
/// profile is a failure (404) rather than ABSENT. A definition reached through too long a
/// chain of sources is refused (400) rather than answered ABSENT.
fn membership(
    name: &str,
    definitions: &[(String, SegmentGroups)],
    ids: &[String],
    found: &[(String, String)],
) -> std::result::Result<Value, ApiError> {
    let catalog = DefinitionCatalog {
        definitions: definitions.iter().map(|(n, g)| (n.clone(), g)).collect(),
    };
    let now = time::OffsetDateTime::now_utc();
    let mut program = Program::for_profiles(now);
    let node = program.add_definition(0, &catalog, name);
    program
        .refuse_too_deep()
        .map_err(|e| ApiError::bad_request(format!("Segment definition {name}: {e}")))?;
    let mut record = program.record();
    let mut out = Vec::new();
    let mut profiles = Vec::new();
    let mut failures = Vec::new();
    for id in ids {
        let Some((_, text)) = found.iter().find(|(i, _)| i == id) else {
            failures.push(
                serde_json::json!({"ProfileId": id, "Message": "Profile not found", "Status": 404}),
            );
            continue;
        };
        let present = program.read(text, &mut record).is_ok() && {
            program.run(&record, &mut out);
            out[node]
        };
        let mut entry = serde_json::json!({
            "ProfileId": id,
            "QueryResult": if present { "PRESENT" } else { "ABSENT" },
        });
        if present {
            if let Ok(p) = serde_json::from_str::<Value>(text) {
                entry["Profile"] = p;
            }
        }
        profiles.push(entry);
    }
    let at = crate::model::profiles::EpochSeconds {
        millis: (now.unix_timestamp_nanos() / 1_000_000) as i64,
    };
    Ok(serde_json::json!({
        "SegmentDefinitionName": name,
        "Profiles": profiles,
        "Failures": failures,
        "LastComputedAt": at,
    }))
}

/// The body of CreateSegmentSnapshot.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SnapshotRequest {
    data_format: String,
    #[serde(default)]
    encryption_key: Option<String>,
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    destination_uri: Option<String>,
}

async fn create_segment_snapshot(
    State(s): S,
    ApiPath((domain, name)): ApiPath<(String, String)>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.CreateSegmentSnapshot")?;
    domain_name(&domain)?;
    definition_name(&name)?;
    let req: SnapshotRequest = body(&bytes, "CreateSegmentSnapshotRequest")?;
    match req.data_format.as_str() {
        "JSONL" | "CSV" => {}
        "ORC" => {
            return Err(ApiError::bad_request(
                "DataFormat: ORC is not implemented by this server; use JSONL or CSV",
            ))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "DataFormat: {}",
                crate::model::unknown_value_message(other, &["CSV", "JSONL", "ORC"])
            )))
        }
    }
    let uri = req.destination_uri.ok_or_else(|| {
        ApiError::bad_request(
            "DestinationUri: missing: where to write the snapshot (s3://bucket/prefix, or file:// under --import-root)",
        )
    })?;
    if uri.is_empty() || uri.chars().count() > 255 {
        return Err(ApiError::bad_request(
            "DestinationUri: must be 1 to 255 characters long",
        ));
    }
    super::objects::parse(&uri)
        .map_err(|e| ApiError::bad_request(format!("DestinationUri: {e}")))?;
    for (field, v, max) in [
        ("EncryptionKey", &req.encryption_key, 255),
        ("RoleArn", &req.role_arn, 512),
    ] {
        if v.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::bad_request(format!(
                "{field}: must be at most {max} characters long"
            )));
        }
    }
    let mut job = serde_json::json!({
        "DomainName": domain,
        "SegmentDefinitionName": name,
        "DataFormat": req.data_format,
        "DestinationUri": uri,
    });
    if let Some(k) = req.encryption_key {
        job["EncryptionKey"] = k.into();
    }
    if let Some(r) = req.role_arn {
        job["RoleArn"] = r.into();
    }
    let (d, n) = (domain.clone(), name.clone());
    let job = blocking(&s, move |st| {
        st.create_profile_job(&d, JobKind::SegmentSnapshot, Some(&n), job)
    })
    .await?;
    let snapshot_id = job["Id"].as_str().unwrap_or_default().to_string();
    s.jobs.spawn(
        super::store::jobs_app(&domain),
        JobKind::SegmentSnapshot,
        job,
    );
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"SnapshotId": snapshot_id}),
    ))
}

async fn get_segment_snapshot(
    State(s): S,
    ApiPath((domain, name, id)): ApiPath<(String, String, String)>,
) -> Result<Response> {
    admit(&s, "profile.GetSegmentSnapshot")?;
    domain_name(&domain)?;
    definition_name(&name)?;
    let (d, n, i) = (domain.clone(), name.clone(), id.clone());
    let job = reading(&s, move |st| {
        st.get_profile_job(&d, JobKind::SegmentSnapshot, Some(&n), &i)
    })
    .await?;
    let status = match job["JobStatus"].as_str() {
        Some("COMPLETED") => "COMPLETED",
        Some("FAILED") => "FAILED",
        _ => "IN_PROGRESS",
    };
    let mut out = serde_json::json!({"SnapshotId": id, "Status": status});
    for k in [
        "StatusMessage",
        "DataFormat",
        "EncryptionKey",
        "RoleArn",
        "DestinationUri",
    ] {
        if let Some(v) = job.get(k).filter(|v| v.is_string()) {
            out[k] = v.clone();
        }
    }
    Ok(json(StatusCode::OK, &out))
}

// ---- tags ----

fn tagged(store: &Store, arn: &str) -> Result<Resource> {
    if !arn.starts_with("arn:") {
        return Err(ApiError::bad_request(format!(
            "resourceArn: {:?} is not an ARN; expected arn:aws:profile:<region>:<account>:domains/<domain>[/segment-definitions/<name>]",
            crate::text::safe(arn)
        )));
    }
    store.parse_profiles_arn(arn).ok_or_else(|| {
        ApiError::not_found(format!(
            "Resource {} not found on this server (region {}, account {})",
            crate::text::safe(arn),
            store.region,
            store.account_id
        ))
    })
}

async fn list_tags(State(s): S, ApiPath(arn): ApiPath<String>) -> Result<Response> {
    admit(&s, "profile.ListTagsForResource")?;
    let r = tagged(&s.store, &arn)?;
    let tags = reading(&s, move |st| st.list_tags(&r)).await?;
    Ok(json(StatusCode::OK, &TagsBody { tags }))
}

async fn tag_resource(
    State(s): S,
    ApiPath(arn): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response> {
    admit(&s, "profile.TagResource")?;
    let r = tagged(&s.store, &arn)?;
    let model: TagsBody = body(&bytes, "TagResourceRequest")?;
    refuse(validate::tags_rules("tags", &model.tags))?;
    blocking(&s, move |st| st.tag(&r, &model.tags)).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({})))
}

async fn untag_resource(
    State(s): S,
    ApiPath(arn): ApiPath<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    admit(&s, "profile.UntagResource")?;
    let r = tagged(&s.store, &arn)?;
    let keys: Vec<String> = form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.into_owned())
        .collect();
    if keys.is_empty() || keys.len() > validate::MAX_TAGS {
        return Err(ApiError::bad_request(format!(
            "tagKeys: name 1 to {} keys, each as ?tagKeys=KEY; found {}",
            validate::MAX_TAGS,
            keys.len()
        )));
    }
    blocking(&s, move |st| st.untag(&r, &keys)).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({})))
}
