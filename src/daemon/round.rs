//! One reconcile round of the controller: load the folder (or keep the last good one,
//! settings included), observe the applications this instance owns and that are due, plan,
//! apply, and say what happened to each application. What to do next (backoff, requeue,
//! readiness) is [`super::policy`]'s to decide.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch as signal;

use super::Mode;
use crate::manifests::config::Config;
use crate::manifests::manifest::Source;
use crate::plan::{AppPlan, Plan};
use crate::reconcile::apply;
use crate::reconcile::observe::ObserveError;
use crate::reconcile::outcome::{Report, StepReport, StepResult};
use crate::reconcile::pipeline::{self, Inputs};
use crate::targets::pinpoint::{Pinpoint, PinpointError};

use crate::manifests::workspace::Workspace;

use super::metrics::Outcome;

/// What the controller keeps of the last folder that loaded: the files' bytes (one compact
/// copy, parsed again only if the folder stops loading), the settings they came with, and
/// each application's fingerprint. Keeping no parsed structures between rounds lets the
/// memory of a round over many segments go back to the system.
pub struct LastGood {
    sources: Vec<Source>,
    settings: Config,
    fingerprints: BTreeMap<String, String>,
}

impl LastGood {
    /// The last good folder, read again, its local sources resolved in `dir`.
    fn workspace(&self, dir: &std::path::Path) -> Option<Workspace> {
        let mut ws = crate::manifests::workspace::check(crate::manifests::workspace::Files {
            config: Ok(self.settings.clone()),
            sources: self.sources.clone(),
            errors: Vec::new(),
        })
        .ok()?;
        crate::manifests::workspace::resolve_sources(dir, &mut ws.desired).ok()?;
        Some(ws)
    }
}

/// What a round needs to know besides the folder.
pub struct RoundContext<'a> {
    pub inputs: &'a Inputs,
    pub mode: Mode,
    /// The owner and target this controller started with: a configuration that names
    /// others is refused until a restart, never followed silently.
    pub identity: &'a Identity,
    /// Applications (by shard key) this instance owns and that are due now.
    pub owns: &'a (dyn Fn(&str) -> bool + Sync),
    /// A full round (a resync): every owned application is planned. Otherwise only those
    /// whose desired state changed since the last round (a change of the folder).
    pub full: bool,
    pub cancel: Option<signal::Receiver<bool>>,
    pub events: Option<apply::Events>,
}

/// The owner and target a controller acts as.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub owner: String,
    pub target: crate::manifests::config::Target,
    pub rate_limits: crate::manifests::config::RateLimits,
}

impl Identity {
    pub fn of(cfg: &Config) -> Self {
        Self {
            owner: cfg.owner().to_string(),
            target: cfg.target.clone(),
            rate_limits: cfg.rate_limits,
        }
    }

    /// Why `cfg` cannot be followed by a running controller, if it cannot.
    fn refuses(&self, cfg: &Config) -> Option<String> {
        let restart = "segmentctl run keeps the owner, target and rate limits it started with; restart it to change them";
        if let Some(problem) = cfg.problem() {
            Some(problem)
        } else if cfg.owner() != self.owner {
            Some(format!(
                "owner changed from {:?} to {:?}: {restart}",
                self.owner,
                cfg.owner()
            ))
        } else if cfg.target != self.target {
            Some(format!("the target changed: {restart}"))
        } else if cfg.rate_limits != self.rate_limits {
            Some(format!("rate_limits changed: {restart}"))
        } else {
            None
        }
    }
}

/// What happened to one application in a round.
#[derive(Debug, Clone)]
pub struct AppOutcome {
    /// The application's key: its id, or `ref:<name>` while an Application manifest's
    /// application does not exist yet.
    pub key: String,
    /// The key it is sharded and backed off by (see [`crate::manifests::desired::AppKey::shard_key`]).
    pub shard_key: String,
    /// Its id, when it exists (after the round).
    pub app_id: Option<String>,
    /// Its display name, for people.
    pub name: String,
    pub result: Outcome,
    pub error: Option<String>,
    /// `delete used: campaign "Launch" (SCHEDULED) uses this segment`.
    pub blocked: Vec<String>,
    /// Labels of the block reasons, for metrics.
    pub blocked_kinds: Vec<&'static str>,
    pub drifted: Vec<String>,
    pub managed: usize,
}

/// What happened in a round.
#[derive(Debug, Clone, Default)]
pub struct RoundOutcome {
    /// Why the folder (manifests or configuration) did not load; the last good state was
    /// used, if there was one.
    pub invalid: Vec<String>,
    /// Set when the target could not be observed at all.
    pub target_error: Option<String>,
    /// Nothing the round covers changed: nothing was observed.
    pub nothing_to_do: bool,
    /// No good state exists yet (the folder never loaded).
    pub no_state: bool,
    pub suspended: bool,
    pub desired_digest: Option<String>,
    /// The shard keys of every application the desired state in force names.
    pub desired_keys: BTreeSet<String>,
    pub apps: Vec<AppOutcome>,
    /// Every step applied, in the order they finished.
    pub events: Vec<StepReport>,
    /// A Customer Profiles round's steps, as the history shows them (JSON events).
    pub definition_events: Vec<serde_json::Value>,
}

impl RoundOutcome {
    /// The round observed the target and planned every application it covers, and none of
    /// them failed.
    pub fn succeeded(&self) -> bool {
        !self.no_state
            && self.target_error.is_none()
            && self.apps.iter().all(|a| a.result != Outcome::Error)
    }
}

/// The state a controller carries from round to round.
#[derive(Default)]
pub struct RoundState {
    last_good: Option<LastGood>,
}

impl RoundState {
    pub fn has_good_state(&self) -> bool {
        self.last_good.is_some()
    }
}

/// The shard keys of the applications whose desired state differs; `None` when one was
/// removed (a removal is checked by a full round, whose scan sees what it leaves behind).
fn changed_apps(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Option<BTreeSet<String>> {
    if old.keys().any(|k| !new.contains_key(k)) {
        return None;
    }
    Some(
        new.iter()
            .filter(|(k, v)| old.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect(),
    )
}

/// What step 1 found.
pub(super) struct Load {
    /// The folder (manifests and settings) to use: as read, or the last good one (none
    /// when the folder never loaded).
    pub good: Option<Workspace>,
    /// The applications to limit the round to (shard keys), when only some changed.
    pub only: Option<BTreeSet<String>>,
    /// Why the folder did not load.
    pub invalid: Vec<String>,
}

/// Step 1: the folder, or the last good one, settings included. The folder is read on a
/// blocking thread, never on the async ones that serve `/livez` and answer a stop.
///
/// Returns `None` when asked to stop while reading.
pub(super) async fn load(cx: &RoundContext<'_>, state: &mut RoundState) -> Option<Load> {
    let inputs = cx.inputs.clone();
    let read = tokio::task::spawn_blocking(move || pipeline::load(&inputs));
    let read = match cx.cancel.clone() {
        Some(mut stop) => tokio::select! {
            r = read => r,
            _ = stop.wait_for(|s| *s) => return None,
        },
        None => read.await,
    };
    let loaded: Result<Workspace, Vec<String>> = match read {
        Ok(Ok(ws)) => match cx.identity.refuses(&ws.config) {
            Some(why) => Err(vec![why]),
            None => Ok(ws),
        },
        Ok(Err(errors)) => Err(errors.iter().map(|e| e.to_string()).collect()),
        Err(panicked) => Err(vec![format!("reading the folder failed: {panicked}")]),
    };
    match loaded {
        Ok(ws) => {
            let prints = ws.desired.fingerprints();
            let only = if cx.full {
                None
            } else {
                state
                    .last_good
                    .as_ref()
                    .and_then(|old| changed_apps(&old.fingerprints, &prints))
            };
            state.last_good = Some(LastGood {
                sources: ws.sources.clone(),
                settings: ws.config.clone(),
                fingerprints: prints,
            });
            Some(Load {
                good: Some(ws),
                only,
                invalid: Vec::new(),
            })
        }
        Err(errors) => {
            let kept = state
                .last_good
                .as_ref()
                .and_then(|good| good.workspace(&cx.inputs.dir));
            Some(Load {
                good: kept,
                only: None,
                invalid: errors,
            })
        }
    }
}

/// Runs one round.
///
/// Guarantees: a folder or configuration that does not load changes nothing live beyond
/// what the last good state (manifests and settings) says; in observe mode, or suspended,
/// nothing is written.
pub async fn round<P: Pinpoint>(
    p: &P,
    cx: &RoundContext<'_>,
    state: &mut RoundState,
) -> RoundOutcome {
    let Some(Load {
        good,
        only,
        invalid,
    }) = load(cx, state).await
    else {
        return RoundOutcome {
            no_state: state.last_good.is_none(),
            nothing_to_do: true,
            ..Default::default()
        };
    };
    let mut out = RoundOutcome {
        invalid,
        ..Default::default()
    };
    let Some(ws) = good else {
        out.no_state = true;
        return out;
    };
    out.suspended = ws.config.suspend;
    out.desired_keys = ws.desired.apps.iter().map(|a| a.key.shard_key()).collect();
    if only.as_ref().is_some_and(BTreeSet::is_empty) {
        out.nothing_to_do = true;
        return out;
    }
    let owns = |key: &str| (cx.owns)(key) && only.as_ref().is_none_or(|o| o.contains(key));
    let plan = match pipeline::plan(p, &ws, &owns).await {
        Ok((plan, _)) => plan,
        Err(ObserveError::ListApps(e)) => {
            out.target_error = Some(observe_message(&e));
            return out;
        }
    };
    out.desired_digest = Some(plan.desired_digest.clone());
    let applying = cx.mode == Mode::Apply && !ws.config.suspend && !plan.is_empty();
    if !applying {
        out.apps = outcomes(&plan, None);
        return out;
    }
    let mut plan = plan;
    let applied = match apply_under_leases(p, cx, &ws, &mut plan, &owns).await {
        Ok(applied) => applied,
        Err(e) => {
            out.target_error = Some(e);
            return out;
        }
    };
    out.apps = merged_outcomes(&plan, &applied);
    out.events = applied.report.map(|(_, r)| r.steps).unwrap_or_default();
    out
}

/// What applying a plan under leases came to.
struct Applied {
    /// The plan made again under the leases, and what apply did with it.
    report: Option<(Plan, Report)>,
    /// Applications another applier holds, by shard key, and who.
    busy: BTreeMap<String, String>,
    /// Applications that could not be created, by shard key, and why.
    failed: BTreeMap<String, String>,
}

/// Creates the applications the plan creates (one per name, whatever other appliers do),
/// leases every application that changes, plans it again under the leases (what was planned
/// before may have been changed by another applier meanwhile), applies that, and releases
/// the leases.
///
/// Errors: the target could not be listed for the plan under the leases (the leases are
/// released first).
async fn apply_under_leases<P: Pinpoint>(
    p: &P,
    cx: &RoundContext<'_>,
    ws: &Workspace,
    plan: &mut Plan,
    owns: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Applied, String> {
    use crate::reconcile::lease;
    let created = apply::create_apps(p, plan, lease::DEFAULT_SETTLE).await;
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for (i, e) in created {
        let app = &plan.apps[i];
        let why = crate::text::error_chain(&e);
        tracing::warn!(application = %crate::text::safe(&app.display()), error = %crate::text::safe(&why), "cannot create the application; trying again next round");
        failed.insert(app.key().shard_key(), why);
    }
    let (leases, busy) = lease_changes(p, plan, ws.config.owner()).await;
    let leased: BTreeSet<String> = leases.iter().map(|(k, _)| k.clone()).collect();
    let under_lease = |key: &str| owns(key) && leased.contains(key);
    let report = if leased.is_empty() {
        Ok(None)
    } else {
        match pipeline::plan(p, ws, &under_lease).await {
            Ok((again, _)) => {
                let held: Vec<lease::Lease> = leases.iter().map(|(_, l)| l.clone()).collect();
                let run = |fence| {
                    let opts = apply::Options {
                        concurrency: ws.config.concurrency,
                        allow_delete_in_use: false,
                        progress: false,
                        cancel: cx.cancel.clone(),
                        events: cx.events.clone(),
                        fence: Some(fence),
                        in_flight: Default::default(),
                    };
                    let again = &again;
                    async move { apply::apply(p, again, &opts).await }
                };
                let report = lease::hold_while(p, &held, lease::ttl(), run).await;
                Ok(Some((again, report)))
            }
            Err(ObserveError::ListApps(e)) => Err(observe_message(&e)),
        }
    };
    for (_, l) in &leases {
        lease::release(p, l).await;
    }
    Ok(Applied {
        report: report?,
        busy,
        failed,
    })
}

/// Each application's outcome: as planned, or as the plan under the lease was applied,
/// busy when another applier held it, failed when it could not be created.
fn merged_outcomes(plan: &Plan, applied: &Applied) -> Vec<AppOutcome> {
    let mut apps = outcomes(plan, None);
    if let Some((again, report)) = &applied.report {
        let redone = outcomes(again, Some(report));
        for a in apps.iter_mut() {
            if let Some(r) = redone.iter().find(|r| r.shard_key == a.shard_key) {
                *a = r.clone();
            }
        }
    }
    for a in apps.iter_mut() {
        if let Some(holder) = applied.busy.get(&a.shard_key) {
            a.result = Outcome::Busy;
            a.error = Some(format!("{holder} is applying to it; tried again shortly"));
        }
        if let Some(why) = applied.failed.get(&a.shard_key) {
            a.result = Outcome::Error;
            a.error = Some(format!("cannot create the application: {why}"));
        }
    }
    apps
}

/// Takes the lease on every existing application the plan changes; returns the leases (by
/// shard key) and, for the applications someone else holds, who.
async fn lease_changes<P: Pinpoint>(
    p: &P,
    plan: &Plan,
    owner: &str,
) -> (
    Vec<(String, crate::reconcile::lease::Lease)>,
    BTreeMap<String, String>,
) {
    use crate::reconcile::lease::{self, LeaseError};
    let holder = lease::holder(owner);
    let mut leases = Vec::new();
    let mut busy = BTreeMap::new();
    for app in plan
        .apps
        .iter()
        .filter(|a| a.app_step.is_some() || !a.steps.is_empty())
    {
        let Some(arn) = &app.app_arn else { continue };
        let key = app.key().shard_key();
        match lease::acquire(p, arn, &holder, lease::ttl(), lease::DEFAULT_SETTLE).await {
            Ok(l) => leases.push((key, l)),
            Err(LeaseError::Busy(h)) => {
                busy.insert(key, h.holder);
            }
            Err(e @ LeaseError::Api(_)) => {
                tracing::warn!(application = %crate::text::safe(&app.display()), error = %crate::text::safe(&crate::text::error_chain(&e)), "cannot take the lease; trying again shortly");
                busy.insert(key, "a lease that cannot be read".to_string());
            }
        }
    }
    (leases, busy)
}

fn observe_message(e: &PinpointError) -> String {
    match e {
        PinpointError::Call(c) => crate::targets::target_error(c, "the target"),
        other => other.to_string(),
    }
}

/// Step 3: each application's outcome, from its plan and what applying it did.
fn outcomes(plan: &Plan, report: Option<&crate::reconcile::outcome::Report>) -> Vec<AppOutcome> {
    plan.apps
        .iter()
        .map(|app| {
            let key = app.key().shard_key();
            let steps: Vec<&StepReport> = report
                .into_iter()
                .flat_map(|r| &r.steps)
                .filter(|s| s.app_key == key)
                .collect();
            let failed: Vec<String> = steps
                .iter()
                .filter(|s| matches!(s.result, StepResult::Failed(_) | StepResult::Skipped(_)))
                .map(|s| crate::reconcile::outcome::event_line(s))
                .chain(
                    report
                        .into_iter()
                        .flat_map(|r| &r.app_errors)
                        .filter(|f| f.app_key == key)
                        .map(|f| crate::text::error_chain(&f.error)),
                )
                .collect();
            let blocked: Vec<String> = app
                .steps
                .iter()
                .filter(|s| s.is_blocked())
                .map(|s| {
                    format!(
                        "{} {}: {}",
                        s.action.verb(),
                        crate::text::safe(&s.name),
                        s.blocked
                            .iter()
                            .map(|b| b.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })
                .collect();
            let error = app
                .error
                .clone()
                .or_else(|| (!failed.is_empty()).then(|| failed.join("; ")));
            let result = if error.is_some() {
                Outcome::Error
            } else if !blocked.is_empty() {
                Outcome::Blocked
            } else {
                Outcome::Success
            };
            let created_id = steps.iter().find_map(|s| s.app_id.clone());
            AppOutcome {
                key: app_key(app, created_id.as_deref()),
                shard_key: key.clone(),
                app_id: app.app_id.clone().or(created_id),
                name: app.app_name.clone(),
                result,
                error,
                blocked,
                blocked_kinds: app
                    .steps
                    .iter()
                    .flat_map(|s| s.blocked.iter().map(|b| b.label()))
                    .collect(),
                drifted: app
                    .steps
                    .iter()
                    .filter(|s| s.drift.is_some())
                    .map(|s| s.name.clone())
                    .collect(),
                managed: app.managed,
            }
        })
        .collect()
}

/// An application's key: its id once it exists, else the manifest's `ref:<name>`.
fn app_key(app: &AppPlan, created: Option<&str>) -> String {
    match (&app.app_id, created) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => app.key().shard_key(),
    }
}
