//! A Customer Profiles domain's pipeline: observe every definition (List carries no
//! criteria, so each is read), plan, and apply the plan's steps in its order.

use crate::model::profiles::DomainSpec;
use crate::plan::definitions::{
    Action, DefinitionsPlan, LiveCampaign, LiveDomain, Replacement, Step,
};
use crate::reconcile::lease::{self, Fence, Lease, LeaseError, LeaseTags};
use crate::targets::pinpoint::join_all;
use crate::targets::profiles::{Profiles, ProfilesError};

/// Reads the domain: whether it exists, every definition in full, and the campaigns whose
/// source is a segment definition (the campaign guard's).
///
/// Errors: the first failed call (after the target's retries).
pub async fn observe<P: Profiles>(p: &P, domain: &str) -> Result<LiveDomain, ProfilesError> {
    let Some(settings) = p.get_domain(domain).await? else {
        return Ok(LiveDomain {
            name: domain.to_string(),
            settings: None,
            definitions: Vec::new(),
            campaigns: Vec::new(),
        });
    };
    let items = p.list_definitions(domain).await?;
    // The client paces and bounds requests in flight; these are read together.
    let reads = items
        .iter()
        .map(|i| p.get_definition(domain, &i.name))
        .collect();
    let mut definitions = Vec::with_capacity(items.len());
    for (item, got) in items.iter().zip(join_all(reads).await) {
        match got {
            Ok(d) => definitions.push(d),
            // Deleted between the list and the read: not there.
            Err(e) if e.is_not_found() => {
                tracing::debug!(definition = %item.name, "gone before it was read")
            }
            Err(e) => return Err(e),
        }
    }
    definitions.sort_by(|a, b| a.name.cmp(&b.name));
    let mut campaigns = p.campaigns().await?;
    campaigns.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(LiveDomain {
        name: domain.to_string(),
        settings: Some(settings),
        definitions,
        campaigns,
    })
}

/// A configured domain that does not exist, and the ways to have it.
pub fn missing_domain(domain: &str, at: Option<&str>) -> String {
    format!(
        "the Customer Profiles domain {} does not exist{}: create it (aws customer-profiles create-domain --domain-name {} --default-expiration-days 366), add a Domain manifest to the folder (kind: Domain; apply then creates it), or name another with --target customer-profiles:DOMAIN",
        crate::text::safe(domain),
        at.map(|a| format!(" at {a}")).unwrap_or_default(),
        crate::text::safe(domain)
    )
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    Done,
    /// Blocked in the plan: not run.
    Skipped,
    Failed(String),
    /// Not run: an earlier step failed.
    NotRun,
    /// Not run: the apply was interrupted (the step in flight finished).
    Interrupted,
    /// Not run: the domain's lease was lost to this holder.
    LeaseLost(String),
}

/// Creates the plan's domain when it says the domain does not exist yet (with its `Domain`
/// manifest's settings, else the embedded default's own); before [`apply`], whose steps
/// need it. Returns whether it created one.
///
/// Errors: CreateDomain's (e.g. the domain created meanwhile by someone else: plan again).
pub async fn create_domain<P: Profiles>(
    p: &P,
    plan: &DefinitionsPlan,
) -> Result<bool, ProfilesError> {
    if !plan.create_domain {
        return Ok(false);
    }
    let spec = plan.domain_manifest.as_ref().map(|d| &d.spec);
    p.create_domain(&plan.domain, spec).await?;
    Ok(true)
}

/// Runs `plan` on `p`, telling `seen` each step's result as it ends. Steps run one after
/// another, in the plan's order (bases before what builds on them; deletes last, users
/// first); after a failure the rest is not run, so nothing is deleted that a failed
/// create was to replace. A rerun plans again from what is there. The domain exists (see
/// [`create_domain`]).
///
/// `stop`, once true, lets the step in flight finish (an in-place replace is its delete and
/// its create: never cut between them) and starts no other; so does a `fence` that no longer
/// holds (the domain's lease was lost).
pub async fn apply<P: Profiles>(
    p: &P,
    plan: &DefinitionsPlan,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
    fence: &Fence,
    mut seen: impl FnMut(&Step, &StepResult),
) -> Vec<StepResult> {
    let mut results = Vec::with_capacity(plan.steps.len());
    let mut failed = false;
    // The campaigns as they are when the first delete comes (read then, once).
    let mut campaigns: Option<Vec<LiveCampaign>> = None;
    for step in &plan.steps {
        let result = if stop.is_some_and(|s| *s.borrow()) {
            StepResult::Interrupted
        } else if failed {
            StepResult::NotRun
        } else if !step.blocked.is_empty() {
            StepResult::Skipped
        } else if let Err(holder) = fence.holds().await {
            failed = true;
            StepResult::LeaseLost(holder)
        } else {
            match run(p, &plan.domain, step, &mut campaigns).await {
                Ok(()) => StepResult::Done,
                Err(e) => {
                    failed = true;
                    StepResult::Failed(e.to_string())
                }
            }
        };
        seen(step, &result);
        results.push(result);
    }
    results
}

async fn run<P: Profiles>(
    p: &P,
    domain: &str,
    step: &Step,
    campaigns: &mut Option<Vec<LiveCampaign>>,
) -> Result<(), ProfilesError> {
    let new_name = step.new_name.as_deref().unwrap_or(&step.name);
    let live_name = step.live_name.as_deref().unwrap_or(&step.name);
    match step.action {
        Action::Create => create(p, domain, new_name, step).await,
        Action::Replace => {
            if step.replacement == Some(Replacement::InPlace) {
                still_planned(p, step, campaigns).await?;
                p.delete_definition(domain, live_name).await?;
            }
            create(p, domain, new_name, step).await
        }
        Action::Delete => {
            // `--repoint-campaigns`: the campaigns move to the replacement before it goes
            // (safe to repeat: a rerun finds them moved, and this delete unguarded); only
            // those that still read it.
            let reading = still_planned(p, step, campaigns).await?;
            if let Some(to) = &step.repoint_to {
                let arn = p.get_definition(domain, to).await?.arn;
                for id in &reading {
                    p.repoint_campaign(id, &arn).await?;
                }
            }
            p.delete_definition(domain, live_name).await.map(|_| ())
        }
        Action::Tag | Action::Adopt => {
            let arn = step.arn.as_deref().unwrap_or_default();
            if !step.tag_changes.add.is_empty() {
                p.tag(arn, &step.tag_changes.add).await?;
            }
            if !step.tag_changes.remove.is_empty() {
                p.untag(arn, &step.tag_changes.remove).await?;
            }
            Ok(())
        }
    }
}

/// Before a step deletes the definition it names: the campaigns in use that read it now
/// (read once per apply, at its first delete) must be among those the plan named (and
/// shown); one started on it, or moved onto it, since is an error, and nothing is deleted.
/// Returns the planned ones that still read it: one moved off it since stays where it is.
async fn still_planned<P: Profiles>(
    p: &P,
    step: &Step,
    campaigns: &mut Option<Vec<LiveCampaign>>,
) -> Result<Vec<String>, ProfilesError> {
    let Some(arn) = step.arn.as_deref() else {
        return Ok(Vec::new());
    };
    let now = match campaigns {
        Some(c) => c,
        None => campaigns.insert(p.campaigns().await?),
    };
    let reading: Vec<&LiveCampaign> = now
        .iter()
        .filter(|c| c.segment_arn == arn && c.state.in_use())
        .collect();
    let new: Vec<String> = reading
        .iter()
        .filter(|c| !step.campaigns.iter().any(|planned| planned.id == c.id))
        .map(|c| {
            format!(
                "{} (id {}, {})",
                crate::text::safe(&c.name),
                crate::text::safe(&c.id),
                c.state
            )
        })
        .collect();
    if !new.is_empty() {
        return Err(ProfilesError::Moved(format!(
            "not deleted: the campaign {} reads it since the plan was made",
            new.join(", ")
        )));
    }
    Ok(reading.iter().map(|c| c.id.clone()).collect())
}

async fn create<P: Profiles>(
    p: &P,
    domain: &str,
    name: &str,
    step: &Step,
) -> Result<(), ProfilesError> {
    match &step.spec {
        Some(spec) => p.create_definition(domain, name, spec).await.map(|_| ()),
        None => Ok(()),
    }
}

/// A step's event, for `apply --format json` and the controller's history:
/// `{"type":"step","domain","definition","live_name","action","result","message"}`;
/// `result` is done, failed or blocked (steps not run are not events).
pub fn event_json(domain: &str, step: &Step, r: &StepResult) -> Option<serde_json::Value> {
    let (result, message) = match r {
        StepResult::Done => ("done", String::new()),
        StepResult::Failed(e) => ("failed", e.clone()),
        StepResult::Skipped => ("blocked", step.blocked.join("; ")),
        StepResult::LeaseLost(who) => (
            "failed",
            format!("not started: the lease was lost to {who}"),
        ),
        StepResult::NotRun | StepResult::Interrupted => return None,
    };
    Some(serde_json::json!({
        "type": "step",
        "domain": domain,
        "definition": step.name,
        "live_name": step.new_name.as_ref().or(step.live_name.as_ref()),
        "action": step.action.verb(),
        "result": result,
        "message": message,
    }))
}

/// The event of a domain created (as `apply --format json` prints it, and the controller
/// keeps in its history), before its steps' own.
pub fn domain_event_json(domain: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "domain",
        "domain": domain,
        "action": "create",
        "result": "done",
        "message": "",
    })
}

/// The domain's ARN, which its lease is a tag on: a definition's ARN without its last two
/// parts. None for a domain with no definition (its ARN is not known without another call):
/// there, every step is a create keyed by its name, safe for two appliers at once.
pub fn domain_arn(live: &LiveDomain) -> Option<String> {
    let arn = &live.definitions.first()?.arn;
    let (domain, _) = arn.split_once("/segment-definitions/")?;
    Some(domain.to_string())
}

/// Takes the lease on the domain `arn` as `owner`'s applier, waiting up to `patience` while
/// another holds it (telling `waiting` once); no wait when `patience` is zero.
///
/// Errors: [`LeaseError::Busy`] naming the holder; [`LeaseError::Api`].
pub async fn take_lease<P: LeaseTags>(
    p: &P,
    arn: &str,
    owner: &str,
    patience: std::time::Duration,
    waiting: impl Fn(&lease::Held),
) -> Result<Lease, LeaseError> {
    let holder = lease::holder(owner);
    if patience.is_zero() {
        lease::acquire(p, arn, &holder, lease::ttl(), lease::DEFAULT_SETTLE).await
    } else {
        lease::acquire_waiting(
            p,
            arn,
            &holder,
            lease::ttl(),
            lease::DEFAULT_SETTLE,
            patience,
            waiting,
        )
        .await
    }
}

/// `{holder} is applying to the domain D (lease until T)`.
pub fn busy_message(domain: &str, held: &lease::Held) -> String {
    format!(
        "{} is applying to the domain {} (lease until {})",
        crate::text::safe(&held.holder),
        crate::text::safe(domain),
        crate::text::iso(
            time::OffsetDateTime::from_unix_timestamp(held.expires as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        )
    )
}

/// The steps two plans would run, audiences aside: equal when nothing moved between them.
pub fn same_steps(a: &DefinitionsPlan, b: &DefinitionsPlan) -> bool {
    let strip = |p: &DefinitionsPlan| -> Vec<Step> {
        p.steps
            .iter()
            .cloned()
            .map(|mut s| {
                s.audience = None;
                s
            })
            .collect()
    };
    // The settings a domain is created with matter only when it is; not where they are written.
    fn creates(p: &DefinitionsPlan) -> Option<Option<&DomainSpec>> {
        p.create_domain
            .then(|| p.domain_manifest.as_ref().map(|d| &d.spec))
    }
    creates(a) == creates(b) && strip(a) == strip(b)
}
