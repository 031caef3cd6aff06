//! `apply`: a folder or a saved plan carried out under leases, after a confirmation, with
//! every step's result shown as it finishes.

use super::*;
use crate::manifests::config::Config;
use crate::plan::live::TargetInfo;
use crate::plan::{self, Plan};
use crate::reconcile::apply::{self, Options};
use crate::reconcile::lease::{self, Lease, LeaseError};
use crate::reconcile::pipeline::{self, Inputs, Overrides};
use crate::targets::pinpoint::Pinpoint;
use crate::targets::{self, Connection};
use crate::text::{err, out, plural, use_colour};
use anyhow::bail;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub struct ApplyArgs {
    pub auto_approve: bool,
    pub allow_delete_in_use: bool,
    /// `--repoint-campaigns` (a Customer Profiles target).
    pub repoint_campaigns: bool,
    /// Wait for another applier's lease instead of failing.
    pub wait: bool,
    /// JSON lines instead of text: the plan, one event per step, the summary.
    pub json: bool,
}

impl ApplyArgs {
    /// The plan as apply shows it: the text plan, or one JSON line.
    fn show_plan(&self, p: &Plan) {
        if self.json {
            let line = serde_json::json!({"type": "plan", "plan": p});
            out(&format!("{line}\n"));
        } else {
            out(&crate::report::text(p, use_colour(&std::io::stdout())));
        }
    }

    /// An empty plan: nothing to apply; with JSON lines, the summary line all the same.
    fn nothing_to_do(&self, p: &Plan) -> u8 {
        let code = plan_exit(p, false);
        if self.json {
            let empty = crate::reconcile::outcome::Report::default();
            out(&format!(
                "{}\n",
                crate::reconcile::outcome::summary_json(&empty, false, code)
            ));
        }
        code
    }

    /// A message for people: standard output with text, standard error beside JSON lines.
    fn note(&self, s: &str) {
        if self.json {
            err(s);
        } else {
            out(s);
        }
    }
}

pub(super) fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to apply without confirmation: there is no terminal to ask on; review the plan, then pass --auto-approve");
    }
    err("\nApply these changes? Only 'yes' is accepted: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// How long `--wait` waits for another applier before giving up.
pub(super) const WAIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Takes the lease on every existing application the plan changes, but those in `already`.
///
/// Errors: one is held by someone else (and not `--wait`), or cannot be taken; the leases
/// taken so far are given back.
async fn lease_apps(
    p: &impl Pinpoint,
    plan: &Plan,
    owner: &str,
    wait: bool,
    already: &[Lease],
) -> anyhow::Result<Vec<Lease>> {
    let holder = lease::holder(owner);
    let mut held = Vec::new();
    for app in plan
        .apps
        .iter()
        .filter(|a| !a.steps.is_empty() || a.app_step.is_some())
    {
        let Some(arn) = &app.app_arn else { continue };
        if already.iter().any(|l| &l.app_arn == arn) {
            continue;
        }
        let patience = if wait {
            WAIT_PATIENCE
        } else {
            std::time::Duration::ZERO
        };
        let taken = lease::acquire_waiting(
            p,
            arn,
            &holder,
            lease::ttl(),
            lease::DEFAULT_SETTLE,
            patience,
            |h| {
                err(&format!(
                    "Waiting: {} is applying to {}.\n",
                    crate::text::safe(&h.holder),
                    crate::text::safe(&app.display())
                ))
            },
        )
        .await;
        match taken {
            Ok(l) => held.push(l),
            Err(e) => {
                for l in &held {
                    lease::release(p, l).await;
                }
                let why = match &e {
                    LeaseError::Busy(_) => e.to_string(),
                    LeaseError::Api(cause) => {
                        format!("{e}: {}", crate::text::error_chain(cause.as_ref()))
                    }
                };
                return Err(anyhow::anyhow!(
                    "application {}: {why}",
                    crate::text::safe(&app.display())
                ));
            }
        }
    }
    Ok(held)
}

/// Runs the plan, stopping on SIGINT or SIGTERM: steps in flight finish, none starts, and
/// the summary says how far it got.
async fn run_apply(
    p: &Plan,
    conn: &Connection,
    cfg: &Config,
    a: &ApplyArgs,
    fence: lease::Fence,
) -> u8 {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
    let running = in_flight.clone();
    let watcher = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        let n = running.load(std::sync::atomic::Ordering::SeqCst);
        err(&format!(
            "\nInterrupt received: finishing {} in flight, starting none (interrupt again to stop at once).\n",
            plural(n, "step")
        ));
        // A second signal stops at once.
        shutdown_signal().await;
        err("\nInterrupted again: stopping now; run apply again to finish.\n");
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    let progress = std::io::stderr().is_terminal() && !a.json;
    // One line per finished step, as it finishes, whatever the output.
    let json = a.json;
    let events: apply::Events =
        std::sync::Arc::new(move |s: &crate::reconcile::outcome::StepReport| {
            if json {
                out(&format!("{}\n", crate::reconcile::outcome::event_json(s)));
            } else {
                if progress {
                    err("\r\x1b[2K"); // the progress line gives way, and is drawn again
                }
                out(&format!("{}\n", crate::reconcile::outcome::event_line(s)));
            }
        });
    let opts = Options {
        concurrency: cfg.concurrency,
        allow_delete_in_use: a.allow_delete_in_use,
        progress,
        cancel: Some(stop_rx.clone()),
        events: Some(events),
        fence: Some(fence),
        in_flight,
    };
    if !a.json {
        out("\n");
    }
    let report = apply::apply(&conn.pinpoint, p, &opts).await;
    watcher.abort();
    if progress {
        // Clear a progress line that did not reach its end.
        err("\r\x1b[2K");
    }
    let interrupted = *stop_rx.borrow();
    let code = if interrupted {
        exit::INTERRUPTED
    } else if report.failed() > 0 {
        exit::ERROR
    } else if report.blocked() > 0 {
        exit::BLOCKED
    } else {
        exit::OK
    };
    if a.json {
        for f in &report.app_errors {
            let line = serde_json::json!({
                "type": "application_error",
                "application": f.app,
                "application_key": f.app_key,
                "error": crate::text::error_chain(&f.error),
            });
            out(&format!("{line}\n"));
        }
        out(&format!(
            "{}\n",
            crate::reconcile::outcome::summary_json(&report, interrupted, code)
        ));
        return code;
    }
    for f in &report.app_errors {
        out(&format!(
            "✗ application {}: {}\n",
            crate::text::safe(&f.app),
            crate::text::safe(&crate::text::error_chain(&f.error))
        ));
    }
    if interrupted {
        let total = report.steps.len();
        let done = report.steps.iter().filter(|s| s.result.is_done()).count();
        out(&format!(
            "\nInterrupted: {done} of {} done; run apply again to finish.\n",
            plural(total, "step")
        ));
        return code;
    }
    out(&format!("\n{}\n", report.summary()));
    let lost = report.steps.iter().filter_map(|s| match &s.result {
        crate::reconcile::outcome::StepResult::Skipped(
            crate::reconcile::outcome::SkipReason::LeaseLost(who),
        ) => Some(who),
        _ => None,
    });
    if let (n @ 1.., Some(who)) = (lost.clone().count(), lost.clone().next()) {
        out(&format!(
            "The lease was lost to {} while this apply was paused or cut off: {} not started, so two appliers never worked at once.\n",
            crate::text::safe(who),
            if n == 1 { "1 step was".to_string() } else { format!("{n} steps were") }
        ));
    }
    if report.failed() > 0 {
        out("Run apply again to retry: steps that completed are not repeated.\n");
    }
    code
}

/// The end of an apply, however it went: the leases released, the connection closed.
async fn release_and_close(conn: Connection, leases: &[Lease]) {
    for l in leases {
        lease::release(&conn.pinpoint, l).await;
    }
    conn.close().await;
}

/// How many times the plan is checked again (after a re-plan, after creating applications)
/// before apply gives up on a target that keeps changing.
const CHECKS: usize = 5;

/// What an apply does when the target moved under the plan: plan again (`apply DIR`), or
/// refuse (`apply plan.json`: apply does what the reviewed plan said, or nothing).
enum OnMoved<'a> {
    Replan(&'a Inputs, Option<String>),
    Refuse(&'a Path),
}

/// Leases, re-checks, confirms and runs `p`: every application it changes is leased (one
/// that the plan creates is created first, one per name whatever other appliers do, then
/// leased) before any segment step; what moved meanwhile is planned again or refused.
async fn lease_check_run(
    conn: &Connection,
    mut p: Plan,
    cfg: &Config,
    a: &ApplyArgs,
    on_moved: OnMoved<'_>,
    leases: &mut Vec<Lease>,
) -> anyhow::Result<u8> {
    // A saved plan was reviewed when it was saved, and applies without a prompt (as
    // Terraform's does); it is still refused if anything it touches moved.
    let mut approved = matches!(on_moved, OnMoved::Refuse(_));
    for _ in 0..CHECKS {
        let more = lease_apps(&conn.pinpoint, &p, cfg.owner(), a.wait, leases).await?;
        leases.extend(more);
        let moved = apply::stale(&conn.pinpoint, &p)
            .await
            .map_err(|e| call_error(e, &conn.endpoint))?;
        if !moved.is_empty() {
            let (inputs, revision) = match &on_moved {
                OnMoved::Refuse(file) => {
                    for m in &moved {
                        err(&format!("  {m}\n"));
                    }
                    bail!(
                        "refusing to apply {}: {} changed since it was made; plan again and review",
                        file.display(),
                        plural(moved.len(), "thing it touches")
                    );
                }
                OnMoved::Replan(inputs, revision) => (*inputs, revision),
            };
            a.note("\nThe target changed while the plan was made (another applier?); the plan now:\n\n");
            p = replan(conn, inputs, &p, revision.clone()).await?;
            a.show_plan(&p);
            if p.is_empty() {
                return Ok(a.nothing_to_do(&p));
            }
            approved = false;
            continue;
        }
        if !approved {
            if !a.auto_approve && !confirm()? {
                a.note("Apply cancelled.\n");
                return Ok(exit::ERROR);
            }
            approved = true;
        }
        if apply::creates_apps(&p) {
            let failed = apply::create_apps(&conn.pinpoint, &mut p, lease::DEFAULT_SETTLE).await;
            if let Some((i, e)) = failed.first() {
                bail!(
                    "application {}: {}",
                    crate::text::safe(&p.apps[*i].display()),
                    crate::text::safe(&crate::text::error_chain(e))
                );
            }
            // Lease what now exists, and look again before any segment step.
            continue;
        }
        let run = |fence| run_apply(&p, conn, cfg, a, fence);
        return Ok(lease::hold_while(&conn.pinpoint, leases, lease::ttl(), run).await);
    }
    bail!("the target kept changing while the plan was checked (another applier?); run apply again")
}

/// The plan made again from the folder, for the target and revision of `before`.
async fn replan(
    conn: &Connection,
    inputs: &Inputs,
    before: &Plan,
    revision: Option<String>,
) -> anyhow::Result<Plan> {
    let again = pipeline::load_and_plan(&conn.pinpoint, inputs, &pipeline::everything)
        .await
        .map_err(|e| match e {
            pipeline::PlanError::Invalid(errors) => {
                print_manifest_errors(&errors);
                anyhow::Error::new(Invalid {
                    count: errors.len(),
                })
            }
            pipeline::PlanError::Observe(e) => observe_error(&e, &conn.endpoint),
        })?;
    let mut next = again.plan;
    next.dir = before.dir.clone();
    next.target = before.target.clone();
    next.revision = revision;
    next.documents = again.workspace.documents;
    Ok(next)
}

/// `apply DIR`: plan, show, lease, confirm, apply.
///
/// The plan is made without a lease (an empty plan writes nothing, not even a lease); then
/// the applications it changes are leased and the plan is checked again under the lease: if
/// another applier moved anything meanwhile, it is planned again and the new plan shown.
pub async fn apply_dir(
    inputs: &Inputs,
    a: &ApplyArgs,
    revision: Option<String>,
) -> anyhow::Result<u8> {
    if let Some((ws, cfg)) = super::definitions::definitions_workspace(inputs)? {
        return super::definitions::apply(inputs, &ws, &cfg, a).await;
    }
    if a.repoint_campaigns {
        bail!("--repoint-campaigns re-points Connect campaigns on a Customer Profiles target; this folder holds Pinpoint manifests, whose campaigns name segments by id");
    }
    let (p, conn, cfg) = make_plan(inputs, None, revision.clone(), true).await?;
    show_and_run(conn, p, &cfg, a, OnMoved::Replan(inputs, revision)).await
}

/// `apply plan.json`: check the plan is for this target and owner, lease, re-observe,
/// refuse if anything the plan touches moved, then apply.
pub async fn apply_saved(
    file: &Path,
    config: Option<&Path>,
    ov: &Overrides,
    a: &ApplyArgs,
) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the plan {}", file.display()))?;
    if serde_json::from_str::<serde_json::Value>(&text)
        .is_ok_and(|v| v.get("domain").is_some() && v.get("steps").is_some())
    {
        return super::definitions::apply_saved(file, &text, config, ov, a).await;
    }
    let p: Plan = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a segmentctl plan", file.display()))?;
    if p.format_version != plan::FORMAT_VERSION {
        bail!(
            "{} has plan format {}; this segmentctl reads format {}",
            file.display(),
            p.format_version,
            plan::FORMAT_VERSION
        );
    }
    let dir = PathBuf::from(p.dir.clone().unwrap_or_else(|| ".".into()));
    let inputs = Inputs {
        dir: dir.clone(),
        config: config.map(Path::to_path_buf),
        overrides: ov.clone(),
    };
    let cfg = settings(&inputs)?;
    let here = TargetInfo::of(&cfg, &dir);
    let Some(planned_for) = &p.target else {
        bail!(
            "{} does not say which target it was made for; plan again",
            file.display()
        );
    };
    if !planned_for.same_as(&here) {
        bail!(
            "refusing to apply {}: it was made for {} as owner {}, and the configuration now names {} as owner {}; plan again against this target",
            file.display(),
            planned_for.place(),
            crate::text::safe(&planned_for.owner),
            here.place(),
            crate::text::safe(&here.owner)
        );
    }
    note_new_local(&cfg, &dir);
    let conn = naming(&here, targets::connect(&cfg, &dir).await)?;
    show_and_run(conn, p, &cfg, a, OnMoved::Refuse(file)).await
}

/// The end of either apply: the plan shown; unless it is empty, leased, checked, confirmed
/// and run; the leases and the connection released whatever happened.
async fn show_and_run(
    conn: Connection,
    p: Plan,
    cfg: &Config,
    a: &ApplyArgs,
    on_moved: OnMoved<'_>,
) -> anyhow::Result<u8> {
    a.show_plan(&p);
    if p.is_empty() {
        conn.close().await;
        return Ok(a.nothing_to_do(&p));
    }
    let mut leases = Vec::new();
    let result = lease_check_run(&conn, p, cfg, a, on_moved, &mut leases).await;
    release_and_close(conn, &leases).await;
    result
}
