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
    let Some((_, definitions, settings)) = good else {
        out.no_state = true;
        return out;
    };
    let key = domain_key(domain);
    out.suspended = settings.suspend;
    out.desired_keys = [key.clone()].into();
    if !(cx.owns)(&key) {
        out.nothing_to_do = true;
        return out;
    }
    let live = match run::observe(p, domain).await {
        Ok(l) if l.exists || create_missing => l,
        Ok(_) => {
            out.target_error = Some(format!(
                "the Customer Profiles domain {} does not exist: create it (aws customer-profiles create-domain --domain-name {} --default-expiration-days 366)",
                safe(domain),
                safe(domain)
            ));
            return out;
        }
        Err(e) => {
            out.target_error = Some(format!("cannot read the domain {}: {e}", safe(domain)));
            return out;
        }
    };
    let planner = pipeline::planner_settings(&settings);
    let replan = |live: &defs::LiveDomain| {
        defs::plan(&definitions, live, &planner, CampaignPolicy::default())
    };
    let mut plan = replan(&live);
    let specs: Vec<_> = definitions
        .iter()
        .map(|d| (d.name(), &d.manifest.spec))
        .collect();
    out.desired_digest = Some(crate::plan::diff::digest(
        &serde_json::to_value(&specs).unwrap_or_default(),
    ));
    let managed: std::collections::BTreeSet<&str> = live
        .definitions
        .iter()
        .filter(|d| {
            d.spec
                .tags
                .as_ref()
                .and_then(|t| t.get(crate::TAG_MANAGED_BY))
                .is_some_and(|o| *o == settings.owner())
        })
        .map(|d| d.name.as_str())
        .collect();
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
        let on_step = |step: &defs::Step, r: &StepResult| {
            log_step(domain, step, r);
            events.extend(run::event_json(domain, step, r));
        };
        let (plan, cancel) = (&plan, cx.cancel.as_ref());
        let applied = lease::hold_while(p, &leases, lease::ttl(), |fence| async move {
            run::apply(p, plan, cancel, &fence, on_step).await
        })
        .await;
        for l in &leases {
            lease::release(p, l).await;
        }
        match applied {
            Ok(r) => Some(r),
            Err(e) => {
                out.target_error = Some(format!("cannot create the domain {}: {e}", safe(domain)));
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
