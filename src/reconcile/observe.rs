//! Reading the live state through the [`Pinpoint`] interface: the applications the plan
//! considers, each with its segments (every page, with tags), campaigns and journeys.

use std::collections::BTreeMap;

use crate::manifests::desired::{AppKey, DesiredState};
use crate::plan::live::{claim_order, managed_name, AppSnapshot, LiveApp, LiveState, Observed};
use crate::targets::pinpoint::{join_all, Pinpoint, PinpointError};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot list applications")]
    ListApps(#[source] PinpointError),
}

/// Everything in one application.
pub async fn snapshot<P: Pinpoint>(p: &P, app: LiveApp) -> Result<AppSnapshot, PinpointError> {
    let (segments, campaigns, journeys) = tokio::join!(
        p.list_segments(&app.id),
        p.list_campaigns(&app.id),
        p.list_journeys(&app.id)
    );
    Ok(AppSnapshot {
        app,
        segments: segments?,
        campaigns: campaigns?,
        journeys: journeys?,
    })
}

/// Everything in several applications at once. Every segment list is asked for before any
/// campaign or journey list: the largest answers come first, so the last to arrive (whose
/// decoding nothing else hides) are the small ones.
pub async fn snapshots<P: Pinpoint>(
    p: &P,
    apps: Vec<LiveApp>,
) -> Vec<Result<AppSnapshot, PinpointError>> {
    let (segments, campaigns, journeys) = tokio::join!(
        join_all(apps.iter().map(|a| p.list_segments(&a.id)).collect()),
        join_all(apps.iter().map(|a| p.list_campaigns(&a.id)).collect()),
        join_all(apps.iter().map(|a| p.list_journeys(&a.id)).collect()),
    );
    apps.into_iter()
        .zip(segments)
        .zip(campaigns.into_iter().zip(journeys))
        .map(|((app, segments), (campaigns, journeys))| {
            Ok(AppSnapshot {
                app,
                segments: segments?,
                campaigns: campaigns?,
                journeys: journeys?,
            })
        })
        .collect()
}

/// Which applications to observe.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub owner: &'a str,
    /// Only applications whose shard key (an id, or `ref:<name>`) this accepts: the daemon's
    /// shard, less the applications backing off.
    pub owns: &'a (dyn Fn(&str) -> bool + Sync),
}

fn missing_app(id: &str) -> LiveState {
    LiveState::Error(format!(
        "application {id} does not exist on the target; check metadata.application and the target's region"
    ))
}

/// Observes every application the desired state names, and every other application that
/// holds segments managed by `owner` (so that removing all of an application's manifests is
/// seen, and guarded, rather than ignored).
///
/// Applications named by id are read at once, beside the listing of all applications; the
/// rest follow it. Requests in flight are bounded by the implementation.
///
/// Errors: only when the applications cannot be listed at all; a failure within one
/// application is reported as that application's [`LiveState::Error`].
pub async fn observe<P: Pinpoint>(
    p: &P,
    desired: &DesiredState,
    scope: &Scope<'_>,
) -> Result<Observed, ObserveError> {
    observe_from(p, desired, scope, None).await
}

/// What was read before the desired state was known: the application list and the
/// applications the manifests seemed to name (see [`crate::manifests::manifest::application_hints`]).
pub struct Prefetched {
    apps: Result<Vec<LiveApp>, PinpointError>,
    snapshots: BTreeMap<String, Result<AppSnapshot, PinpointError>>,
}

/// Reads the application list and the given applications, all at once.
pub async fn prefetch<P: Pinpoint>(p: &P, ids: &[String]) -> Prefetched {
    let placeholder = |id: &str| LiveApp {
        id: id.to_string(),
        ..LiveApp::default()
    };
    let (apps, snaps) = tokio::join!(
        p.list_apps(),
        snapshots(p, ids.iter().map(|id| placeholder(id)).collect())
    );
    Prefetched {
        apps,
        snapshots: ids.iter().cloned().zip(snaps).collect(),
    }
}

/// As [`observe`], using what was prefetched where it covers what the desired state names
/// (anything else is read now; what it read beyond that is dropped).
///
/// In three phases: the applications named by id (with the application list), those
/// declared by an Application manifest (found by their tags in that list), and the others
/// that hold segments this owner manages.
pub async fn observe_from<P: Pinpoint>(
    p: &P,
    desired: &DesiredState,
    scope: &Scope<'_>,
    prefetched: Option<Prefetched>,
) -> Result<Observed, ObserveError> {
    let names = Names::of(desired, scope);
    let (all, direct) = named_by_id(p, &names.by_id, prefetched).await;
    let all = all.map_err(ObserveError::ListApps)?;
    let mut out = Observed::default();
    found_by_id(&names.by_id, direct, &all, &mut out);
    let declared = declared_by_ref(p, desired, scope, &all, &mut out).await;
    let named: Vec<&str> = names
        .by_id
        .iter()
        .map(String::as_str)
        .chain(declared.iter().map(String::as_str))
        .collect();
    others_with_managed_segments(p, &names, &named, scope, &all, &mut out).await;
    Ok(out)
}

/// The applications the manifests name.
struct Names<'a> {
    /// Named by id and owned here, in the manifests' order.
    by_id: Vec<String>,
    /// Every id the manifests name, owned here or not: never scanned as "other".
    declared_ids: Vec<&'a str>,
    /// Every Application manifest's name, owned here or not.
    declared_refs: Vec<&'a str>,
}

impl<'a> Names<'a> {
    fn of(desired: &'a DesiredState, scope: &Scope<'_>) -> Self {
        let id = |k: &'a AppKey| match k {
            AppKey::Id(id) => Some(id.as_str()),
            AppKey::Ref(_) => None,
        };
        Self {
            by_id: desired
                .apps
                .iter()
                .filter(|d| (scope.owns)(&d.key.shard_key()))
                .filter_map(|d| id(&d.key).map(str::to_string))
                .collect(),
            declared_ids: desired.apps.iter().filter_map(|d| id(&d.key)).collect(),
            declared_refs: desired
                .apps
                .iter()
                .filter_map(|d| match &d.key {
                    AppKey::Ref(r) => Some(r.as_str()),
                    AppKey::Id(_) => None,
                })
                .collect(),
        }
    }
}

/// Phase 1: the application list and every application in `ids`, all at once: what was
/// prefetched is used, the rest read now. One answer per id, in order.
async fn named_by_id<P: Pinpoint>(
    p: &P,
    ids: &[String],
    prefetched: Option<Prefetched>,
) -> (
    Result<Vec<LiveApp>, PinpointError>,
    Vec<Result<AppSnapshot, PinpointError>>,
) {
    let (prefetched_apps, mut prefetched_snaps) = match prefetched {
        Some(pre) => (Some(pre.apps), pre.snapshots),
        None => (None, BTreeMap::new()),
    };
    let list = async {
        match prefetched_apps {
            Some(apps) => apps,
            None => p.list_apps().await,
        }
    };
    let ready: Vec<Option<Result<AppSnapshot, PinpointError>>> =
        ids.iter().map(|id| prefetched_snaps.remove(id)).collect();
    let missing: Vec<LiveApp> = ids
        .iter()
        .zip(&ready)
        .filter(|(_, r)| r.is_none())
        .map(|(id, _)| LiveApp {
            id: id.clone(),
            ..LiveApp::default()
        })
        .collect();
    let (all, fetched) = tokio::join!(list, snapshots(p, missing));
    let mut fetched = fetched.into_iter();
    let direct = ready
        .into_iter()
        .map(|r| r.unwrap_or_else(|| fetched.next().expect("one answer per missing application")))
        .collect();
    (all, direct)
}

/// The state of each application named by id: found (with the listed application's
/// details), missing from the target, or the error reading it.
fn found_by_id(
    ids: &[String],
    direct: Vec<Result<AppSnapshot, PinpointError>>,
    all: &[LiveApp],
    out: &mut Observed,
) {
    let by_id: BTreeMap<&str, &LiveApp> = all.iter().map(|a| (a.id.as_str(), a)).collect();
    for (id, snap) in ids.iter().zip(direct) {
        let state = match (snap, by_id.get(id.as_str())) {
            (Ok(mut s), Some(app)) => {
                s.app = (*app).clone();
                LiveState::Found(s)
            }
            (Err(e), _) if e.is_not_found() => missing_app(id),
            (Ok(_), None) => missing_app(id),
            (Err(e), _) => LiveState::Error(e.to_string()),
        };
        out.apps.insert(AppKey::Id(id.clone()), state);
    }
}

/// Phase 2: the applications declared by an Application manifest (owned here), found by
/// their ownership tags (the first claimant when several carry the name), read; or
/// missing. Returns the ids found.
async fn declared_by_ref<P: Pinpoint>(
    p: &P,
    desired: &DesiredState,
    scope: &Scope<'_>,
    all: &[LiveApp],
    out: &mut Observed,
) -> Vec<String> {
    let mut found: Vec<(AppKey, LiveApp)> = Vec::new();
    for d in desired
        .apps
        .iter()
        .filter(|d| (scope.owns)(&d.key.shard_key()))
    {
        let AppKey::Ref(name) = &d.key else {
            continue;
        };
        let claimant = all
            .iter()
            .filter(|a| managed_name(Some(&a.tags), scope.owner) == Some(name.as_str()))
            .min_by(|a, b| {
                claim_order(&a.creation_date, &a.id).cmp(&claim_order(&b.creation_date, &b.id))
            });
        match claimant {
            Some(app) => found.push((d.key.clone(), app.clone())),
            None => {
                out.apps.insert(d.key.clone(), LiveState::Missing);
            }
        }
    }
    let ids = found.iter().map(|(_, a)| a.id.clone()).collect();
    let snaps = snapshots(p, found.iter().map(|(_, app)| app.clone()).collect()).await;
    for ((key, _), snap) in found.into_iter().zip(snaps) {
        out.apps.insert(
            key,
            snap.map(LiveState::Found)
                .unwrap_or_else(|e| LiveState::Error(e.to_string())),
        );
    }
    ids
}

/// Phase 3: applications no manifest names (owned here), in case they hold segments this
/// owner manages: each that does is read whole. One that cannot be listed is logged and
/// left out.
async fn others_with_managed_segments<P: Pinpoint>(
    p: &P,
    names: &Names<'_>,
    named: &[&str],
    scope: &Scope<'_>,
    all: &[LiveApp],
    out: &mut Observed,
) {
    let others: Vec<&LiveApp> = all
        .iter()
        .filter(|a| {
            !named.contains(&a.id.as_str())
                && !names.declared_ids.contains(&a.id.as_str())
                && (scope.owns)(&a.id)
        })
        .filter(|a| {
            !managed_name(Some(&a.tags), scope.owner)
                .is_some_and(|n| names.declared_refs.contains(&n))
        })
        .collect();
    let listed = join_all(others.iter().map(|a| p.list_segments(&a.id)).collect()).await;
    for (app, segments) in others.into_iter().zip(listed) {
        let segments = match segments {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(app = %crate::text::safe(&app.id), error = %crate::text::safe(&e.to_string()), "cannot list segments");
                continue;
            }
        };
        if segments
            .iter()
            .any(|s| managed_name(s.tags.as_ref(), scope.owner).is_some())
        {
            let state = match snapshot(p, app.clone()).await {
                Ok(s) => LiveState::Found(s),
                Err(e) => LiveState::Error(e.to_string()),
            };
            out.apps.insert(AppKey::Id(app.id.clone()), state);
        }
    }
}
