//! The controller's round on a Customer Profiles domain: the same steps as a Pinpoint round
//! (load the folder or keep the last good one, observe, plan, apply in apply mode), with the
//! domain as the one unit the health, metrics and `status` report on (key `domains/NAME`).
//!
//! A campaign in use always blocks what would delete its definition: the controller never
//! re-points a campaign nor deletes under one (no `--repoint-campaigns`, no
//! `--allow-delete-in-use`); a person does that with `apply`.

use super::metrics::Outcome;
use super::round::{load, AppOutcome, Load, RoundContext, RoundOutcome, RoundState};
use super::Mode;
use crate::plan::definitions::{self as defs, CampaignPolicy, DefinitionsPlan};
use crate::reconcile::definitions::{self as run, StepResult};
use crate::reconcile::lease::{self, LeaseError, LeaseTags};
use crate::reconcile::pipeline;
use crate::targets::profiles::Profiles;
use crate::text::safe;

/// The unit a domain is reported and sharded as.
pub fn domain_key(domain: &str) -> String {
    format!("domains/{domain}")
}

/// Runs one round on `domain` (created when missing only when `create_missing`: the
/// embedded default's own).
pub async fn round<P: Profiles + LeaseTags>(
    p: &P,
    domain: &str,
    create_missing: bool,
    cx: &RoundContext<'_>,
    state: &mut RoundState,
) -> RoundOutcome {
    let Some(Load { good, invalid, .. }) = load(cx, state).await else {
        return RoundOutcome {
            no_state: !state.has_good_state(),
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
    let key = domain_key(domain);
    out.suspended = ws.config.suspend;
    out.desired_keys = [key.clone()].into();
    if !(cx.owns)(&key) {
        out.nothing_to_do = true;
        return out;
    }
    if let Some(Err(e)) = ws
        .domain
        .as_ref()
        .map(|d| d.check_target(domain, create_missing))
    {
        out.target_error = Some(e.to_string());
        return out;
    }
    let live = match run::observe(p, domain).await {
        Ok(l) if l.present() || create_missing || ws.domain.is_some() => l,
        Ok(_) => {
            out.target_error = Some(run::missing_domain(domain, None));
            return out;
        }
        Err(e) => {
            out.target_error = Some(format!("cannot read the domain {}: {e}", safe(domain)));
            return out;
        }
    };
    let (definitions, settings) = (&ws.definitions, &ws.config);
    let planner = pipeline::planner_settings(settings);
    let replan = |live: &defs::LiveDomain| {
        defs::plan(
            definitions,
            ws.domain.as_ref(),
            live,
            &planner,
            CampaignPolicy::default(),
        )
    };
    let mut plan = replan(&live);
    for d in &plan.domain_drift {
        tracing::warn!(domain = %safe(domain), field = %safe(&d.field), "the domain differs from its Domain manifest; segmentctl never changes a domain");
    }
    out.desired_digest = Some(desired_digest(&ws));
    let managed = managed_names(&live, settings.owner());
    let applying =
        cx.mode == Mode::Apply && !settings.suspend && (!plan.is_empty() || plan.create_domain);
    let mut events = Vec::new();
    let mut leases = Vec::new();
    if let (true, Some(arn)) = (applying, run::domain_arn(&live)) {
        match run::take_lease(p, &arn, settings.owner(), std::time::Duration::ZERO, |_| {}).await {
            Ok(l) => leases.push(l),
            Err(LeaseError::Busy(held)) => {
                let mut busy = outcome(domain, &plan, None, managed.len());
                busy.result = Outcome::Busy;
                busy.error = Some(format!(
                    "{}; tried again shortly",
                    run::busy_message(domain, &held)
                ));
                out.apps = vec![busy];
                return out;
            }
            Err(e) => {
                out.target_error = Some(format!(
                    "cannot take the lease on the domain {}: {}",
                    safe(domain),
                    crate::text::error_chain(&e)
                ));
                return out;
            }
        }
        // Under the lease: what is there now (another applier may have just finished).
        match run::observe(p, domain).await {
            Ok(now) => plan = replan(&now),
            Err(e) => {
                lease::release(p, &leases[0]).await;
                out.target_error = Some(format!("cannot read the domain {}: {e}", safe(domain)));
                return out;
            }
        }
    }
    let results = if applying {
        match carry_out(p, &plan, &leases, cx, &mut events).await {
            Ok(r) => Some(r),
            Err(e) => {
                out.target_error = Some(e);
                return out;
            }
        }
    } else {
        None
    };
    out.definition_events = events;
    let managed = managed_after(&plan, results.as_deref(), &managed);
    out.apps = vec![outcome(domain, &plan, results.as_deref(), managed)];
    out
}

/// What the folder asks of the domain, as one digest: the definitions and the `Domain`
/// manifest's settings.
fn desired_digest(ws: &crate::manifests::workspace::Workspace) -> String {
    let specs: Vec<_> = ws
        .definitions
        .iter()
        .map(|d| (d.name(), &d.manifest.spec))
        .collect();
    // Without a Domain manifest, the digest of a folder written before that kind existed.
    let value = match &ws.domain {
        Some(d) => serde_json::to_value((specs, d.spec())),
        None => serde_json::to_value(&specs),
    };
    crate::plan::diff::digest(&value.unwrap_or_default())
}

/// The definitions of `live` that `owner` manages, by their names there.
fn managed_names<'a>(
    live: &'a defs::LiveDomain,
    owner: &str,
) -> std::collections::BTreeSet<&'a str> {
    live.definitions
        .iter()
        .filter(|d| {
            d.spec
                .tags
                .as_ref()
                .and_then(|t| t.get(crate::TAG_MANAGED_BY))
                .is_some_and(|o| o == owner)
        })
        .map(|d| d.name.as_str())
        .collect()
}

/// Carries out `plan` under `leases` (released after): the domain created first when it
/// does not exist yet, then every step, each logged and an event.
///
/// Errors: the domain could not be created (nothing else was tried).
async fn carry_out<P: Profiles + LeaseTags>(
    p: &P,
    plan: &DefinitionsPlan,
    leases: &[lease::Lease],
    cx: &RoundContext<'_>,
    events: &mut Vec<serde_json::Value>,
) -> Result<Vec<StepResult>, String> {
    let domain = plan.domain.as_str();
    match run::create_domain(p, plan).await {
        Ok(true) => {
            tracing::info!(domain = %safe(domain), "domain created");
            events.push(run::domain_event_json(domain));
        }
        Ok(false) => {}
        Err(e) => {
            for l in leases {
                lease::release(p, l).await;
            }
            return Err(format!("cannot create the domain {}: {e}", safe(domain)));
        }
    }
    let on_step = |step: &defs::Step, r: &StepResult| {
        log_step(domain, step, r);
        events.extend(run::event_json(domain, step, r));
    };
    let cancel = cx.cancel.as_ref();
    let results = lease::hold_while(p, leases, lease::ttl(), |fence| async move {
        run::apply(p, plan, cancel, &fence, on_step).await
    })
    .await;
    for l in leases {
        lease::release(p, l).await;
    }
    Ok(results)
}

/// How many definitions this owner manages once the round has run, from the `managed` ones
/// observed: each create or adoption done adds one, each delete done of a managed one takes
/// one away. A replace in place deletes and creates in its one step (it adds one when it
/// adopts); one under a derived name creates, and the old one goes in a delete of its own.
fn managed_after(
    plan: &DefinitionsPlan,
    results: Option<&[StepResult]>,
    managed: &std::collections::BTreeSet<&str>,
) -> usize {
    plan.steps
        .iter()
        .zip(results.unwrap_or_default())
        .filter(|(_, r)| **r == StepResult::Done)
        .fold(managed.len() as i64, |n, (s, _)| match s.action {
            defs::Action::Create | defs::Action::Adopt => n + 1,
            defs::Action::Replace
                if s.adopted || s.replacement == Some(defs::Replacement::Renamed) =>
            {
                n + 1
            }
            defs::Action::Delete if s.live_name.as_deref().is_some_and(|l| managed.contains(l)) => {
                n - 1
            }
            defs::Action::Replace | defs::Action::Tag | defs::Action::Delete => n,
        })
        .max(0) as usize
}

/// Every step's result in the log, as the Pinpoint round logs its events.
fn log_step(domain: &str, step: &defs::Step, r: &StepResult) {
    let name = safe(&step.name);
    match r {
        StepResult::Done => {
            tracing::info!(domain = %safe(domain), action = step.action.verb(), definition = %name, "applied")
        }
        StepResult::Failed(e) => {
            tracing::error!(domain = %safe(domain), action = step.action.verb(), definition = %name, error = %safe(e), "failed")
        }
        StepResult::Skipped => {
            tracing::warn!(domain = %safe(domain), action = step.action.verb(), definition = %name, "blocked")
        }
        StepResult::LeaseLost(who) => {
            tracing::warn!(domain = %safe(domain), action = step.action.verb(), definition = %name, holder = %safe(who), "not started: the lease was lost")
        }
        StepResult::NotRun | StepResult::Interrupted => {}
    }
}

/// The domain's outcome: an error when a step failed, blocked when one is blocked.
fn outcome(
    domain: &str,
    plan: &DefinitionsPlan,
    results: Option<&[StepResult]>,
    managed: usize,
) -> AppOutcome {
    let failed: Vec<String> = plan
        .steps
        .iter()
        .zip(results.unwrap_or_default())
        .filter_map(|(s, r)| match r {
            StepResult::Failed(e) => Some(format!(
                "{} {}: {}",
                s.action.verb(),
                safe(&s.name),
                safe(e)
            )),
            StepResult::LeaseLost(who) => Some(format!(
                "{} {}: not started: the lease was lost to {}",
                s.action.verb(),
                safe(&s.name),
                safe(who)
            )),
            _ => None,
        })
        .collect();
    let blocked_steps: Vec<&defs::Step> = plan
        .steps
        .iter()
        .filter(|s| !s.blocked.is_empty())
        .collect();
    let blocked = blocked_steps
        .iter()
        .map(|s| {
            format!(
                "{} {}: {}",
                s.action.verb(),
                safe(&s.name),
                safe(&s.blocked.join("; "))
            )
        })
        .collect();
    let blocked_kinds = blocked_steps
        .iter()
        .map(|s| {
            if !s.campaigns.is_empty() {
                "campaign_uses"
            } else if s.blocked.iter().any(|b| b.starts_with("protected")) {
                "protected"
            } else {
                "definition"
            }
        })
        .collect();
    let error = (!failed.is_empty()).then(|| failed.join("; "));
    AppOutcome {
        key: domain_key(domain),
        shard_key: domain_key(domain),
        app_id: Some(domain.to_string()),
        name: domain.to_string(),
        result: if error.is_some() {
            Outcome::Error
        } else if !blocked_steps.is_empty() {
            Outcome::Blocked
        } else {
            Outcome::Success
        },
        error,
        blocked,
        blocked_kinds,
        drifted: plan
            .steps
            .iter()
            .filter(|s| s.drift)
            .map(|s| s.name.clone())
            .collect(),
        managed,
    }
}
