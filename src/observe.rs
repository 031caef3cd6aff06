//! Reading the live state through the API: applications, their segments (every page, with
//! tags), campaigns and journeys.

use std::collections::BTreeMap;

use crate::api::{Api, CallError, Class};
use crate::desired::{AppKey, DesiredState};
use crate::model::{SegmentResponse, Tags};
use crate::sdk;

const PAGE: &str = "1000";

#[derive(Debug, Clone, PartialEq)]
pub struct LiveApp {
    pub id: String,
    pub name: String,
    pub tags: Tags,
    pub creation_date: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveCampaign {
    pub id: String,
    pub name: String,
    pub segment_id: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveJourney {
    pub id: String,
    pub name: String,
    pub state: String,
    pub segment_ids: Vec<String>,
}

/// One application as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSnapshot {
    pub app: LiveApp,
    pub segments: Vec<SegmentResponse>,
    pub campaigns: Vec<LiveCampaign>,
    pub journeys: Vec<LiveJourney>,
}

/// What an application of the plan looks like live.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveState {
    /// Found, with everything in it.
    Found(AppSnapshot),
    /// Declared by an Application manifest and not found: it will be created.
    Missing,
    /// It cannot be planned (an application id that does not exist, ...).
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Every application the plan considers: those in the manifests, and those that hold
    /// segments managed by this owner.
    pub apps: BTreeMap<AppKey, LiveState>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot list applications")]
    ListApps(#[source] CallError),
    #[error("{0}")]
    Unrepresentable(#[from] sdk::Unrepresentable),
}

impl ObserveError {
    pub fn call(&self) -> Option<&CallError> {
        match self {
            ObserveError::ListApps(e) => Some(e),
            ObserveError::Unrepresentable(_) => None,
        }
    }
}

fn tags_of(t: Option<&std::collections::HashMap<String, String>>) -> Tags {
    t.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Every application on the target.
pub async fn list_apps(api: &Api) -> Result<Vec<LiveApp>, CallError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api
            .call("GetApps", Class::Other, || {
                api.client
                    .get_apps()
                    .page_size(PAGE)
                    .set_token(token.clone())
                    .send()
            })
            .await?;
        let resp = page.applications_response;
        for a in resp
            .as_ref()
            .and_then(|r| r.item.as_ref())
            .into_iter()
            .flatten()
        {
            out.push(LiveApp {
                id: a.id.clone().unwrap_or_default(),
                name: a.name.clone().unwrap_or_default(),
                tags: tags_of(a.tags.as_ref()),
                creation_date: a.creation_date.clone().unwrap_or_default(),
            });
        }
        token = resp.and_then(|r| r.next_token);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Every segment of an application, every page.
pub async fn list_segments(
    api: &Api,
    app: &str,
) -> Result<Vec<SegmentResponse>, ObserveErrorOrCall> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api
            .call("GetSegments", Class::Other, || {
                api.client
                    .get_segments()
                    .application_id(app)
                    .page_size(PAGE)
                    .set_token(token.clone())
                    .send()
            })
            .await?;
        let resp = page.segments_response;
        for s in resp
            .as_ref()
            .and_then(|r| r.item.as_ref())
            .into_iter()
            .flatten()
        {
            out.push(sdk::segment_response(s)?);
        }
        token = resp.and_then(|r| r.next_token);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// A call failure or an unrepresentable answer, while reading one application.
#[derive(Debug, thiserror::Error)]
pub enum ObserveErrorOrCall {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Unrepresentable(#[from] sdk::Unrepresentable),
}

async fn campaigns(api: &Api, app: &str) -> Result<Vec<LiveCampaign>, CallError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api
            .call("GetCampaigns", Class::Other, || {
                api.client
                    .get_campaigns()
                    .application_id(app)
                    .page_size(PAGE)
                    .set_token(token.clone())
                    .send()
            })
            .await?;
        let resp = page.campaigns_response;
        for c in resp
            .as_ref()
            .and_then(|r| r.item.as_ref())
            .into_iter()
            .flatten()
        {
            out.push(LiveCampaign {
                id: c.id.clone().unwrap_or_default(),
                name: c.name.clone().unwrap_or_default(),
                segment_id: c.segment_id.clone().unwrap_or_default(),
                status: c
                    .state
                    .as_ref()
                    .and_then(|s| s.campaign_status.as_ref())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            });
        }
        token = resp.and_then(|r| r.next_token);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn journeys(api: &Api, app: &str) -> Result<Vec<LiveJourney>, CallError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api
            .call("ListJourneys", Class::Other, || {
                api.client
                    .list_journeys()
                    .application_id(app)
                    .page_size(PAGE)
                    .set_token(token.clone())
                    .send()
            })
            .await?;
        let resp = page.journeys_response;
        for j in resp
            .as_ref()
            .and_then(|r| r.item.as_ref())
            .into_iter()
            .flatten()
        {
            out.push(LiveJourney {
                id: j.id.clone().unwrap_or_default(),
                name: j.name.clone().unwrap_or_default(),
                state: j
                    .state
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                segment_ids: sdk::journey_segment_ids(j),
            });
        }
        token = resp.and_then(|r| r.next_token);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn snapshot(api: &Api, app: LiveApp) -> Result<AppSnapshot, ObserveErrorOrCall> {
    let (segments, campaigns, journeys) = tokio::join!(
        list_segments(api, &app.id),
        campaigns(api, &app.id),
        journeys(api, &app.id)
    );
    Ok(AppSnapshot {
        app,
        segments: segments?,
        campaigns: campaigns?,
        journeys: journeys?,
    })
}

/// Whether a tag set marks an object as managed by `owner`, and under which name.
pub fn managed_name<'a>(tags: Option<&'a Tags>, owner: &str) -> Option<&'a str> {
    let tags = tags?;
    (tags.get(crate::TAG_MANAGED_BY).map(String::as_str) == Some(owner))
        .then(|| tags.get(crate::TAG_NAME).map(String::as_str))
        .flatten()
}

/// Which applications to observe.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub owner: &'a str,
    /// Only applications whose shard key (an id, or `ref:<name>`) this accepts: the daemon's
    /// shard, less the applications backing off.
    pub owns: &'a (dyn Fn(&str) -> bool + Sync),
}

/// Observes every application the desired state names, and every other application that
/// holds segments managed by `owner` (so that removing all of an application's manifests is
/// seen, and guarded, rather than ignored).
///
/// Applications named by id are read at once, beside the listing of all applications; the
/// rest follow it. Requests in flight are bounded by the [`Api`].
///
/// Errors: only when the applications cannot be listed at all; a failure within one
/// application is reported as that application's [`LiveState::Error`].
pub async fn observe(
    api: &Api,
    desired: &DesiredState,
    scope: &Scope<'_>,
) -> Result<Observed, ObserveError> {
    let by_id_keys: Vec<&String> = desired
        .apps
        .iter()
        .filter(|d| (scope.owns)(&d.key.shard_key()))
        .filter_map(|d| match &d.key {
            AppKey::Id(id) => Some(id),
            AppKey::Ref(_) => None,
        })
        .collect();
    // Every application the manifests name, owned here or not: never scanned as "other".
    let declared_ids: Vec<&str> = desired
        .apps
        .iter()
        .filter_map(|d| match &d.key {
            AppKey::Id(id) => Some(id.as_str()),
            AppKey::Ref(_) => None,
        })
        .collect();
    let declared_refs: Vec<&str> = desired
        .apps
        .iter()
        .filter_map(|d| match &d.key {
            AppKey::Ref(r) => Some(r.as_str()),
            AppKey::Id(_) => None,
        })
        .collect();
    let placeholder = |id: &str| LiveApp {
        id: id.to_string(),
        name: String::new(),
        tags: Tags::new(),
        creation_date: String::new(),
    };
    let (all, direct) = tokio::join!(
        list_apps(api),
        join_all(
            by_id_keys
                .iter()
                .map(|id| snapshot(api, placeholder(id)))
                .collect()
        )
    );
    let all = all.map_err(ObserveError::ListApps)?;
    let by_id: BTreeMap<&str, &LiveApp> = all.iter().map(|a| (a.id.as_str(), a)).collect();

    let mut out = Observed::default();
    for (id, snap) in by_id_keys.iter().zip(direct) {
        let key = AppKey::Id((*id).clone());
        let state = match (snap, by_id.get(id.as_str())) {
            (Ok(mut s), Some(app)) => {
                s.app = (*app).clone();
                LiveState::Found(s)
            }
            (Err(ObserveErrorOrCall::Call(e)), _) if e.is_not_found() => LiveState::Error(format!(
                "application {id} does not exist on the target; check metadata.application and the target's region"
            )),
            (Ok(_), None) => LiveState::Error(format!("application {id} does not exist on the target; check metadata.application and the target's region")),
            (Err(e), _) => LiveState::Error(e.to_string()),
        };
        out.apps.insert(key, state);
    }

    // Applications declared by an Application manifest, found by their ownership tags.
    let mut later: Vec<(AppKey, LiveApp)> = Vec::new();
    for d in desired
        .apps
        .iter()
        .filter(|d| (scope.owns)(&d.key.shard_key()))
    {
        if let AppKey::Ref(name) = &d.key {
            let mut found: Vec<&LiveApp> = all
                .iter()
                .filter(|a| managed_name(Some(&a.tags), scope.owner) == Some(name.as_str()))
                .collect();
            found.sort_by(|a, b| (&a.creation_date, &a.id).cmp(&(&b.creation_date, &b.id)));
            match found.first() {
                Some(app) => later.push((d.key.clone(), (*app).clone())),
                None => {
                    out.apps.insert(d.key.clone(), LiveState::Missing);
                }
            }
        }
    }
    let named: Vec<String> = by_id_keys
        .iter()
        .map(|s| s.to_string())
        .chain(later.iter().map(|(_, a)| a.id.clone()))
        .collect();
    let snaps = join_all(
        later
            .iter()
            .map(|(_, app)| snapshot(api, app.clone()))
            .collect(),
    )
    .await;
    for ((key, _), snap) in later.into_iter().zip(snaps) {
        out.apps.insert(
            key,
            snap.map(LiveState::Found)
                .unwrap_or_else(|e| LiveState::Error(e.to_string())),
        );
    }

    // Applications no manifest names, in case they hold segments this owner manages.
    let others: Vec<&LiveApp> = all
        .iter()
        .filter(|a| {
            !named.contains(&a.id) && !declared_ids.contains(&a.id.as_str()) && (scope.owns)(&a.id)
        })
        .filter(|a| {
            !managed_name(Some(&a.tags), scope.owner).is_some_and(|n| declared_refs.contains(&n))
        })
        .collect();
    let listed = join_all(others.iter().map(|a| list_segments(api, &a.id)).collect()).await;
    for (app, segments) in others.into_iter().zip(listed) {
        let segments = match segments {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(app = %app.id, error = %e, "cannot list segments");
                continue;
            }
        };
        if segments
            .iter()
            .any(|s| managed_name(s.tags.as_ref(), scope.owner).is_some())
        {
            let state = match snapshot(api, app.clone()).await {
                Ok(s) => LiveState::Found(s),
                Err(e) => LiveState::Error(e.to_string()),
            };
            out.apps.insert(AppKey::Id(app.id.clone()), state);
        }
    }
    Ok(out)
}

/// Drives futures together, keeping their order.
pub async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut slots: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if slots[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => slots[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    slots
        .into_iter()
        .map(|s| s.expect("every future completed"))
        .collect()
}
