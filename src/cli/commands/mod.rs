//! The reconciler's commands: plan, apply, import and estimate. Each strings the pipeline's
//! stages together and decides what to print; the stages live in their modules.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::manifests::config::Config;
use crate::manifests::manifest::ManifestError;
use crate::manifests::workspace::Workspace;
use crate::plan::live::TargetInfo;
use crate::plan::{self, Plan};
use crate::reconcile::apply::{self, Options};
use crate::reconcile::lease::{self, Lease, LeaseError};
use crate::reconcile::observe::ObserveError;
use crate::reconcile::pipeline::{self, Inputs, Overrides};
use crate::targets::pinpoint::{Pinpoint, PinpointError};
use crate::targets::{self, target_error, Connection};
use crate::text::{err, out, plural, use_colour};

/// Exit codes: the contract with scripts and CI.
pub mod exit {
    pub const OK: u8 = 0;
    /// An error, including a usage error.
    pub const ERROR: u8 = 1;
    /// `--detailed-exitcode`: the plan has changes.
    pub const CHANGES: u8 = 2;
    /// The plan has blocked steps.
    pub const BLOCKED: u8 = 3;
    /// Stopped by SIGINT or SIGTERM: 128 + SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

/// Manifest errors, already printed; the command exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{count} manifest errors")]
pub struct Invalid {
    pub count: usize,
}

pub fn print_manifest_errors(errors: &[ManifestError]) {
    for e in errors {
        err(&format!("{e}\n"));
    }
    let files: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    err(&format!(
        "{} in {}\n",
        plural(errors.len(), "error"),
        plural(files.len(), "file")
    ));
}

/// Loads the folder and resolves the settings, printing located errors.
pub fn load(inputs: &Inputs) -> anyhow::Result<Workspace> {
    pipeline::load(inputs).map_err(|errors| {
        print_manifest_errors(&errors);
        anyhow::Error::new(Invalid {
            count: errors.len(),
        })
    })
}

/// The settings a command acts on: the configuration found for the folder with the command
/// line's overrides, refused when it cannot be trusted with the target (no owner off the
/// embedded target). A configuration that does not load is reported with the manifests'
/// errors, before anything is contacted.
pub fn settings(inputs: &Inputs) -> anyhow::Result<Config> {
    let mut cfg = match Config::load(&inputs.dir, inputs.config.as_deref()) {
        Ok(c) => c,
        Err(_) => {
            return Err(load(inputs)
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the configuration does not load")))
        }
    };
    inputs.overrides.apply_to(&mut cfg);
    if let Some(problem) = cfg.owner_problem() {
        bail!("{problem}");
    }
    Ok(cfg)
}

fn observe_error(e: &ObserveError, endpoint: &str) -> anyhow::Error {
    match e {
        ObserveError::ListApps(PinpointError::Call(call)) => {
            anyhow::anyhow!("{}", target_error(call, endpoint))
        }
        other => anyhow::anyhow!("{}", crate::text::error_chain(other)),
    }
}

fn call_error(e: PinpointError, endpoint: &str) -> anyhow::Error {
    match e {
        PinpointError::Call(c) => anyhow::anyhow!("{}", target_error(&c, endpoint)),
        other => anyhow::anyhow!("{other}"),
    }
}

/// The commit the plan is made from: `--revision`, or what CI says.
pub fn revision(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_string)
        .or_else(|| std::env::var("GITHUB_SHA").ok())
        .or_else(|| std::env::var("CI_COMMIT_SHA").ok())
        .filter(|r| !r.is_empty())
}

/// What a plan was made for, with what observing taught (the account).
fn target_info(cfg: &Config, dir: &Path, observed: &crate::plan::live::Observed) -> TargetInfo {
    let mut info = TargetInfo::of(cfg, dir);
    for state in observed.apps.values() {
        if let crate::plan::live::LiveState::Found(s) = state {
            info.learn_account(&s.app.arn);
        }
    }
    info
}

/// Says so when the embedded target's database does not exist yet (a mistyped
/// `--target local:PATH` would otherwise plan against an empty target without a word).
fn note_new_local(cfg: &Config, dir: &Path) {
    if let Some(path) = cfg.local_path(dir).filter(|p| !p.exists()) {
        err(&format!(
            "note: {} does not exist yet: the embedded server starts a new, empty database there.\n",
            crate::text::safe(&path.display().to_string())
        ));
    }
}

/// Reads the folder, observes the target and plans; `writes`: the connection will apply
/// (an embedded server then runs jobs and holds its database's lock).
pub async fn make_plan(
    inputs: &Inputs,
    audience: Option<&AudienceOptions>,
    revision: Option<String>,
    writes: bool,
) -> anyhow::Result<(Plan, Connection, Config)> {
    let dir = inputs.dir.as_path();
    let settings = settings(inputs)?;
    // Refuse a bad --as-of or an unreadable file before connecting.
    let audience = match audience {
        Some(a) => Some((
            a,
            parse_as_of(a.as_of.as_deref())?,
            endpoints_input(&a.endpoints)?,
        )),
        None => None,
    };
    // The embedded target starts a server over a file beside the configuration: only for
    // manifests that load. Any other target is read while the manifests are parsed.
    if matches!(
        settings.target,
        crate::manifests::config::Target::Local { .. }
    ) {
        load(inputs)?;
    }
    note_new_local(&settings, dir);
    let conn = targets::connect_for(&settings, dir, writes).await?;
    let planned = match pipeline::load_and_plan(&conn.pinpoint, inputs, &pipeline::everything).await
    {
        Ok(planned) => planned,
        Err(e) => {
            let err = match e {
                pipeline::PlanError::Invalid(errors) => {
                    print_manifest_errors(&errors);
                    anyhow::Error::new(Invalid {
                        count: errors.len(),
                    })
                }
                pipeline::PlanError::Observe(e) => observe_error(&e, &conn.endpoint),
            };
            conn.close().await;
            return Err(err);
        }
    };
    let pipeline::Planned {
        workspace: ws,
        plan: mut p,
        observed,
    } = planned;
    p.dir = std::fs::canonicalize(dir)
        .ok()
        .map(|d| d.display().to_string());
    p.target = Some(target_info(&ws.config, dir, &observed));
    p.revision = revision;
    p.documents = ws.documents;
    if let Some((a, as_of, input)) = audience {
        let progress = input.progress.clone();
        let counted = crate::audience::records::with_progress(&progress, || {
            crate::audience::impact::annotate(
                &mut p,
                &ws.desired,
                &observed,
                input,
                &a.endpoints.display().to_string(),
                as_of,
                ws.config.audience_change_warn_percent,
            )
        })
        .with_context(|| format!("cannot read {}", a.endpoints.display()));
        if let Err(e) = counted {
            conn.close().await;
            return Err(e);
        }
    }
    Ok((p, conn, ws.config))
}

/// `--endpoints FILE --as-of TIME`: count audiences over endpoint records.
pub struct AudienceOptions {
    pub endpoints: PathBuf,
    pub as_of: Option<String>,
}

fn endpoints_input(path: &Path) -> anyhow::Result<crate::audience::records::Input> {
    crate::audience::records::open(path).with_context(|| format!("cannot read {}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: a terminal or a CI log.
    Text,
    /// A pull-request comment, as GitHub and GitLab render it.
    Markdown,
    /// The versioned plan document (the same that --out saves).
    Json,
}

pub struct PlanOptions {
    pub format: Format,
    pub out: Option<PathBuf>,
    pub detailed_exitcode: bool,
    pub audience: Option<AudienceOptions>,
    pub revision: Option<String>,
}

pub async fn plan_command(inputs: &Inputs, o: &PlanOptions) -> anyhow::Result<u8> {
    let (p, conn, _) = make_plan(inputs, o.audience.as_ref(), o.revision.clone(), false).await?;
    conn.close().await;
    let colour = use_colour(&std::io::stdout());
    let rendered = match o.format {
        Format::Text => crate::report::text(&p, colour),
        Format::Markdown => crate::report::markdown(&p, crate::report::MARKDOWN_LIMIT),
        Format::Json => crate::report::json(&p) + "\n",
    };
    out(&rendered);
    if let Some(file) = &o.out {
        std::fs::write(file, crate::report::json(&p) + "\n")
            .with_context(|| format!("cannot write the plan to {}", file.display()))?;
        err(&format!(
            "Saved the plan to {}; apply it with: segmentctl apply {}\n",
            file.display(),
            file.display()
        ));
    }
    Ok(plan_exit(&p, o.detailed_exitcode))
}

pub fn plan_exit(p: &Plan, detailed: bool) -> u8 {
    if p.apps.iter().any(|a| a.error.is_some()) {
        exit::ERROR
    } else if p.has_blocked() {
        exit::BLOCKED
    } else if detailed && !p.is_empty() {
        exit::CHANGES
    } else {
        exit::OK
    }
}

pub struct ApplyArgs {
    pub auto_approve: bool,
    pub allow_delete_in_use: bool,
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

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to apply without confirmation: there is no terminal to ask on; review the plan, then pass --auto-approve");
    }
    err("\nApply these changes? Only 'yes' is accepted: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// How long `--wait` waits for another applier before giving up.
const WAIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

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
                    LeaseError::Api(cause) => format!("{e}: {}", crate::text::error_chain(cause)),
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
    let (p, conn, cfg) = make_plan(inputs, None, revision.clone(), true).await?;
    a.show_plan(&p);
    if p.is_empty() {
        conn.close().await;
        return Ok(a.nothing_to_do(&p));
    }
    let mut leases = Vec::new();
    let on_moved = OnMoved::Replan(inputs, revision);
    let result = lease_check_run(&conn, p, &cfg, a, on_moved, &mut leases).await;
    release_and_close(conn, &leases).await;
    result
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
    let conn = targets::connect(&cfg, &dir).await?;
    a.show_plan(&p);
    if p.is_empty() {
        conn.close().await;
        return Ok(a.nothing_to_do(&p));
    }
    let mut leases = Vec::new();
    let result = lease_check_run(&conn, p, &cfg, a, OnMoved::Refuse(file), &mut leases).await;
    release_and_close(conn, &leases).await;
    result
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A manifest name from a segment's display name.
fn slug(name: &str, id: &str, taken: &mut std::collections::BTreeSet<String>) -> String {
    let mut s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let mut s = s
        .trim_matches('-')
        .chars()
        .take(55)
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    if s.is_empty() {
        let short: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect::<String>()
            .to_lowercase();
        s = format!("segment-{short}");
    }
    let mut candidate = s.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{s}-{n}");
        n += 1;
    }
    candidate
}

/// `import`: writes manifests for an application's live segments and adopts them (tags them
/// as managed), so that a plan right after is empty.
///
/// Names come from the API (tags anyone with access can set): a `segmentctl:name` that is
/// not a valid manifest name is not used; the file is named after a checked name only.
pub async fn import(inputs: &Inputs, app: &str, out_dir: &Path) -> anyhow::Result<u8> {
    use crate::manifests::manifest::{Kind, Manifest, Metadata, API_VERSION};
    let cfg = settings(inputs)?;
    note_new_local(&cfg, &inputs.dir);
    let conn = targets::connect(&cfg, &inputs.dir).await?;
    let info = TargetInfo::of(&cfg, &inputs.dir);
    err(&format!("{}\n", info.line()));
    let owner = cfg.owner().to_string();
    let result = async {
        let live = conn.pinpoint.list_segments(app).await.map_err(|e| match e {
            e if e.is_not_found() => {
                anyhow::anyhow!("application {app} does not exist on the target")
            }
            other => call_error(other, &conn.endpoint),
        })?;
        let mut taken = std::collections::BTreeSet::new();
        let mut chosen: Vec<(String, &crate::model::SegmentResponse)> = Vec::new();
        for s in &live {
            let tags = s.tags.clone().unwrap_or_default();
            match (
                tags.get(crate::TAG_MANAGED_BY),
                crate::plan::live::managed_name(s.tags.as_ref(), &owner),
            ) {
                (Some(o), _) if o != &owner => continue, // another installation's
                (_, Some(n)) if crate::manifests::manifest::name_problem(n).is_none() && !taken.contains(n) => {
                    taken.insert(n.to_string());
                    chosen.push((n.to_string(), s));
                }
                (_, Some(n)) => {
                    err(&format!(
                        "warning: segment {} carries the name tag {}, which is not a manifest name; it is named after its display name instead\n",
                        crate::text::safe(&s.id),
                        crate::report::Escape::Text.quote(n)
                    ));
                    chosen.push((String::new(), s));
                }
                _ => chosen.push((String::new(), s)),
            }
        }
        for (name, s) in chosen.iter_mut() {
            if name.is_empty() {
                *name = slug(s.name.as_deref().unwrap_or(""), &s.id, &mut taken);
            }
        }
        let by_id: std::collections::BTreeMap<String, String> = chosen
            .iter()
            .map(|(n, s)| (s.id.clone(), n.clone()))
            .collect();
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let mut written = 0;
        // Imported segments are tagged once every manifest is written: their digest needs
        // the source's fingerprint, read as a plan reads it.
        let mut imported: Vec<(&str, &crate::model::SegmentResponse)> = Vec::new();
        let out_canonical = out_dir.canonicalize().unwrap_or_else(|_| out_dir.to_path_buf());
        for (name, s) in &chosen {
            debug_assert!(crate::manifests::manifest::name_problem(name).is_none());
            if let Some(def) = s.import_definition.as_ref().filter(|_| s.is_import()) {
                let m = imported_manifest(name, app, s, def, &out_canonical);
                write_imported(out_dir, s, &m, ", an imported segment: its endpoints come from its source")?;
                imported.push((name, s));
                written += 1;
                continue;
            }
            let mut spec = crate::plan::diff::canonical(&s.definition(), &|id| by_id.get(id).cloned());
            spec.tags = user_tags(s);
            let m = Manifest {
                api_version: API_VERSION.into(),
                kind: Kind::Segment,
                metadata: Metadata {
                    name: name.clone(),
                    application: Some(app.to_string()),
                    application_ref: None,
                    protect: protected(s),
                    adopt: None,
                },
                spec,
                source: None,
            };
            write_imported(out_dir, s, &m, "")?;
            // Adopt: the ownership tags, and the digest of what is now the manifest.
            let canon = crate::plan::diff::canonical(&s.definition(), &|id| by_id.get(id).cloned());
            let mut tags = plan::ownership_tags(&owner, name);
            tags.insert(plan::TAG_DIGEST.into(), crate::plan::diff::fingerprint(&canon));
            conn.pinpoint
                .tag(&s.arn, &tags)
                .await
                .map_err(|e| call_error(e, &conn.endpoint))?;
            written += 1;
        }
        if !imported.is_empty() {
            tag_imported(&conn, inputs, &owner, &imported).await?;
        }
        out(&format!(
            "Imported {} from application {app} into {}.\n",
            plural(written, "segment"),
            out_dir.display()
        ));
        Ok(exit::OK)
    }
    .await;
    conn.close().await;
    result
}

/// The tags of a live segment that are the user's (not segmentctl's).
fn user_tags(s: &crate::model::SegmentResponse) -> Option<crate::model::Tags> {
    let tags: crate::model::Tags = s
        .tags
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !plan::is_own_tag(k))
        .collect();
    (!tags.is_empty()).then_some(tags)
}

/// Whether a live segment carries the protection tag.
fn protected(s: &crate::model::SegmentResponse) -> bool {
    s.tags
        .as_ref()
        .and_then(|t| t.get(crate::TAG_PROTECT))
        .is_some_and(|v| v == "true")
}

/// Writes the manifest `import` made of the live segment `s` to `OUT/NAME.yaml`, under a
/// comment naming where it came from (`what` said after the version).
fn write_imported(
    out_dir: &Path,
    s: &crate::model::SegmentResponse,
    m: &crate::manifests::manifest::Manifest,
    what: &str,
) -> anyhow::Result<()> {
    let path = out_dir.join(format!("{}.yaml", m.metadata.name));
    let text = format!(
        "# Imported from segment {} (version {}){what}.\n{}",
        crate::text::safe(&s.id),
        s.version,
        crate::manifests::manifest::to_yaml(std::slice::from_ref(m))?
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// An `ImportedSegment` manifest for a live IMPORT segment: its name and tags, and the
/// source of its last import (a `file://` source as a path relative to the manifest, when it
/// lies beside it).
fn imported_manifest(
    name: &str,
    app: &str,
    s: &crate::model::SegmentResponse,
    def: &crate::model::ImportDefinition,
    out_dir: &Path,
) -> crate::manifests::manifest::Manifest {
    use crate::manifests::manifest::{
        ImportFormat, ImportSource, Kind, Manifest, Metadata, API_VERSION,
    };
    let spec = crate::model::WriteSegmentRequest {
        name: s.name.clone(),
        tags: user_tags(s),
        ..Default::default()
    };
    let url = match crate::server::objects::parse(&def.s3_url) {
        Ok(crate::server::objects::Location::File(path)) => relative_to(out_dir, &path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| def.s3_url.clone()),
        _ => def.s3_url.clone(),
    };
    Manifest {
        api_version: API_VERSION.into(),
        kind: Kind::ImportedSegment,
        metadata: Metadata {
            name: name.to_string(),
            application: Some(app.to_string()),
            application_ref: None,
            protect: protected(s),
            adopt: None,
        },
        spec,
        source: Some(ImportSource {
            url,
            format: if def.format.eq_ignore_ascii_case("CSV") {
                ImportFormat::Csv
            } else {
                ImportFormat::Json
            },
            role_arn: Some(def.role_arn.clone()).filter(|r| !r.is_empty()),
            external_id: Some(def.external_id.clone()).filter(|r| !r.is_empty()),
            register_endpoints: None,
        }),
    }
}

/// `path` relative to the folder `base` (`../imports/vip.csv`), when both are absolute.
fn relative_to(base: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    if !base.is_absolute() || !path.is_absolute() {
        return None;
    }
    let b: Vec<Component> = base.components().collect();
    let p: Vec<Component> = path.components().collect();
    let common = b.iter().zip(&p).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    Some(out)
}

/// Tags the imported segments `import` wrote manifests for as managed, with the digest a
/// plan computes from their manifests (their sources fingerprinted as a plan does), so the
/// plan right after is empty. When the folder does not load, or a source cannot be read,
/// they are adopted without the digest, and the next apply imports them again.
async fn tag_imported(
    conn: &Connection,
    inputs: &Inputs,
    owner: &str,
    imported: &[(&str, &crate::model::SegmentResponse)],
) -> anyhow::Result<()> {
    let dir = inputs.dir.clone();
    let config = inputs.config.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        crate::manifests::workspace::load(&dir, config.as_deref())
    })
    .await
    .map_err(|e| anyhow::anyhow!("reading the folder failed: {e}"))?;
    let mut desired = match loaded {
        Ok(ws) => Some(ws.desired),
        Err(errors) => {
            err(&format!(
                "warning: {} does not load ({}); imported segments are adopted without their source's fingerprint, and the next apply imports them again\n",
                inputs.dir.display(),
                errors.first().map(|e| e.to_string()).unwrap_or_default()
            ));
            None
        }
    };
    if let Some(d) = desired.as_mut() {
        crate::audience::sources::fingerprint(d).await;
    }
    for (name, s) in imported {
        let mut tags = plan::ownership_tags(owner, name);
        let spec = desired.as_ref().and_then(|d| {
            d.apps
                .iter()
                .find(|a| a.key == crate::manifests::desired::AppKey::Id(s.application_id.clone()))?
                .segments
                .iter()
                .find(|x| x.name == *name)
        });
        match spec.and_then(|x| Some((x.spec.name.as_deref(), x.import.as_ref()?))) {
            Some((title, imp)) if matches!(imp.etag, Some(Ok(_))) => {
                tags.insert(plan::TAG_DIGEST.into(), plan::import_digest(title, imp));
            }
            Some((_, imp)) => {
                if let Some(Err(why)) = &imp.etag {
                    err(&format!(
                        "warning: the source of {} cannot be read ({}); the next apply imports it again\n",
                        crate::text::safe(name),
                        crate::text::safe(why)
                    ));
                }
            }
            None => {}
        }
        conn.pinpoint
            .tag(&s.arn, &tags)
            .await
            .map_err(|e| call_error(e, &conn.endpoint))?;
    }
    Ok(())
}

/// `--as-of`: an instant, or `now` (the default).
fn parse_as_of(as_of: Option<&str>) -> anyhow::Result<time::OffsetDateTime> {
    match as_of {
        None | Some("now") => Ok(time::OffsetDateTime::now_utc()),
        Some(t) => crate::model::validate::parse_instant(t).ok_or_else(|| {
            anyhow::anyhow!("--as-of {t:?} is not an ISO-8601 instant such as 2026-11-28T00:00:00Z")
        }),
    }
}

/// `estimate`: per segment, how many endpoint records of FILE belong to it.
pub fn estimate(
    dir: &Path,
    config: Option<&Path>,
    endpoints: &Path,
    as_of: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    use crate::audience::records;
    let ws = load(&Inputs {
        dir: dir.to_path_buf(),
        config: config.map(Path::to_path_buf),
        overrides: Overrides::default(),
    })?;
    let as_of = parse_as_of(as_of)?;
    let compiled = compile_segments(&ws, as_of, &[], Unreadable::Note)?;
    let (program, counted) = (compiled.program, compiled.segments);
    let targets: Vec<_> = counted.iter().map(|c| c.node).collect();
    let input = endpoints_input(endpoints)?;
    let progress = input.progress.clone();
    let t = records::with_progress(&progress, || {
        records::tally_input(input, &program, &targets)
    })
    .with_context(|| format!("cannot read {}", endpoints.display()))?;
    let share = |n: u64| {
        if t.read == 0 {
            0.0
        } else {
            n as f64 * 100.0 / t.read as f64
        }
    };
    if json {
        let segments: Vec<serde_json::Value> = counted
            .iter()
            .zip(&t.counts)
            .map(|(c, n)| {
                serde_json::json!({
                    "application": ws.desired.apps[c.app].key.to_string(),
                    "segment": c.name,
                    "endpoints": n,
                    "share_percent": (share(*n) * 100.0).round() / 100.0,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "format_version": 1,
            "as_of": crate::audience::impact::instant_text(as_of),
            "records_read": t.read,
            "records_rejected": t.rejected,
            "rejected_lines": t.rejected_lines,
            "segments": segments,
        });
        out(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    } else {
        let mut line = format!(
            "Read {} endpoint records from {}",
            crate::text::thousands(t.read),
            endpoints.display()
        );
        if t.rejected > 0 {
            let shown: Vec<String> = t.rejected_lines.iter().map(u64::to_string).collect();
            line.push_str(&format!(
                "; {} rejected (not endpoint records) at {} {}{}",
                t.rejected,
                if shown.len() == 1 { "line" } else { "lines" },
                shown.join(", "),
                if t.rejected as usize > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ));
        }
        out(&format!("{line}.\n"));
        let mut current = usize::MAX;
        for (c, n) in counted.iter().zip(&t.counts) {
            if c.app != current {
                current = c.app;
                out(&format!(
                    "\nApplication {}\n  {:<32} {:>10}  {:>8}\n",
                    crate::text::safe(&ws.desired.apps[current].key.to_string()),
                    "SEGMENT",
                    "ENDPOINTS",
                    "SHARE"
                ));
            }
            out(&format!(
                "  {:<32} {:>10}  {:>6.2} %\n",
                c.name,
                crate::text::thousands(*n),
                share(*n)
            ));
        }
    }
    Ok(exit::OK)
}

/// `sql`: the selected segments (with their bases) as one query for an engine.
pub fn sql(a: &crate::cli::SqlArgs) -> anyhow::Result<u8> {
    use crate::audience::evaluate::sql::{Dialect, Input, Output};
    use crate::cli::SqlDialect;
    let dialect = match a.dialect {
        SqlDialect::Spark => Dialect::Spark,
        SqlDialect::Duckdb => Dialect::DuckDb,
        SqlDialect::Postgres => Dialect::Postgres,
    };
    if let Some(t) = &a.table {
        let plain = |p: &str| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !t.split('.').all(plain) {
            return Err(anyhow::anyhow!(
                "--table {}: expected a table name such as endpoints or analytics.endpoints (letters, digits, _ and .)",
                crate::text::safe(t)
            ));
        }
    }
    let input = Input {
        table: a.table.clone(),
        files: a.files.clone(),
    };
    if a.schema {
        out(&dialect.schema(&input));
        return Ok(exit::OK);
    }
    let ws = load(&Inputs {
        dir: a.dir.clone(),
        config: a.config.clone(),
        overrides: Overrides::default(),
    })?;
    let as_of = parse_as_of(a.as_of.as_deref())?;
    let compiled = compile_segments(&ws, as_of, &a.segments, Unreadable::Refuse)?;
    let several = ws.desired.apps.len() > 1;
    let columns: Vec<(String, crate::audience::evaluate::NodeId)> = compiled
        .segments
        .iter()
        .map(|c| {
            let label = if several {
                format!("{}/{}", ws.desired.apps[c.app].key, c.name)
            } else {
                c.name.clone()
            };
            (label, c.node)
        })
        .collect();
    let program = compiled.program;
    let output = if a.members {
        match columns.as_slice() {
            [(_, node)] => Output::Members(*node),
            _ => {
                return Err(anyhow::anyhow!(
                "--members lists the members of one segment: name it with --segment ({} selected)",
                columns.len()
            ))
            }
        }
    } else {
        Output::Counts(columns.clone())
    };
    let what = match &output {
        Output::Counts(_) => format!(
            "the number of records, then each segment's audience ({} segments)",
            columns.len()
        ),
        Output::Members(_) => "the Id of each endpoint in the segment, ordered".to_string(),
    };
    out(&format!(
        "-- segmentctl sql --dialect {}: {what}, as of {}.\n-- The evaluator's semantics (README, Audiences); recency is fixed at that instant.\n{}",
        dialect.name(),
        crate::audience::impact::instant_text(as_of),
        program.sql(dialect, &input, &output)
    ));
    Ok(exit::OK)
}

/// What to do with an imported segment whose file cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Say so on standard error; it holds no endpoint (estimate).
    Note,
    /// Fail, when a selected segment reads it (sql: the answer would be wrong).
    Refuse,
}

/// One segment compiled for counting.
#[derive(Debug, Clone)]
pub struct CompiledSegment {
    /// Its application's index in the workspace.
    pub app: usize,
    pub name: String,
    pub node: crate::audience::evaluate::NodeId,
}

/// The workspace's segments (all, or those named in `only`), with their bases, compiled.
pub struct Compiled {
    pub program: crate::audience::evaluate::Program,
    pub segments: Vec<CompiledSegment>,
}

/// Compiles the segments of every application of `ws`, base segments resolved by name and
/// imported segments by their files, as `estimate`, `plan --endpoints` and `sql` read them.
pub fn compile_segments(
    ws: &Workspace,
    as_of: time::OffsetDateTime,
    only: &[String],
    unreadable: Unreadable,
) -> anyhow::Result<Compiled> {
    use crate::audience::evaluate::{Catalog, Program};
    let mut program = Program::new(as_of);
    let mut segments = Vec::new();
    for (i, app) in ws.desired.apps.iter().enumerate() {
        let (mut imported, unread) = crate::audience::sources::members_by_name(app);
        if unreadable == Unreadable::Refuse {
            // Unknown, so that a segment reading one is found below.
            for (name, _) in &unread {
                imported.remove(name);
            }
        }
        if unreadable == Unreadable::Note {
            for (name, why) in &unread {
                err(&format!(
                    "note: imported segment {} counts no endpoint here: {}\n",
                    crate::text::safe(name),
                    crate::text::safe(why)
                ));
            }
        }
        let catalog = Catalog {
            segments: app
                .segments
                .iter()
                .filter(|s| s.import.is_none())
                .map(|s| (s.name.clone(), &s.spec))
                .collect(),
            key_of_id: Default::default(),
            imported,
        };
        for s in &app.segments {
            if only.is_empty() || only.contains(&s.name) {
                segments.push(CompiledSegment {
                    app: i,
                    name: s.name.clone(),
                    node: program.add(i, &catalog, &s.name),
                });
            }
        }
        if unreadable == Unreadable::Refuse {
            if let Some((name, why)) = unread
                .iter()
                .find(|(name, _)| program.unknown(i).any(|k| k == name))
            {
                anyhow::bail!(
                    "imported segment {} cannot be compiled: its file cannot be read: {}",
                    crate::text::safe(name),
                    crate::text::safe(why)
                );
            }
        }
    }
    if let Some(missing) = only
        .iter()
        .find(|n| !segments.iter().any(|s| &s.name == *n))
    {
        let names: Vec<&str> = ws
            .desired
            .apps
            .iter()
            .flat_map(|a| a.segments.iter().map(|s| s.name.as_str()))
            .collect();
        let hint = crate::model::closest(missing, &names)
            .map(|c| format!(" (did you mean {}?)", crate::text::safe(c)))
            .unwrap_or_default();
        anyhow::bail!(
            "--segment {}: no segment of that name in the manifests{hint}",
            crate::text::safe(missing)
        );
    }
    Ok(Compiled { program, segments })
}
