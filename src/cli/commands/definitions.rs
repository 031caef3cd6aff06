//! `plan` and `apply` for a Customer Profiles domain: a folder of `SegmentDefinition`
//! manifests, planned against the domain's definitions and applied step by step in the
//! plan's order, every step's result shown as it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::bail;

use super::apply::{confirm, ApplyArgs};
use super::plan::{Format, PlanOptions};
use super::*;
use crate::manifests::config::Target;
use crate::plan::definitions::{self as defs, Action, DefinitionsPlan, Step};
use crate::reconcile::definitions::{self as run, StepResult};
use crate::reconcile::lease;
use crate::reconcile::pipeline::Overrides;
use crate::targets::profiles::ProfilesError;
use crate::targets::ProfilesConnection;
use crate::text::{out, safe, use_colour};

/// The folder, when it goes to a Customer Profiles domain: the target names one, or the
/// target is the embedded default and the folder holds `SegmentDefinition` manifests.
///
/// Errors: the folder does not load; the configuration cannot be trusted (no owner).
pub fn definitions_workspace(inputs: &Inputs) -> anyhow::Result<Option<(Workspace, Config)>> {
    // The owner is checked on the settings; the folder's configuration is then the one
    // loaded with it (the command line's overrides, and no prune for one manifest file).
    let cfg = settings(inputs)?;
    let found = |ws: Workspace| {
        let cfg = ws.config.clone();
        (ws, cfg)
    };
    match cfg.target {
        Target::CustomerProfiles(_) => {
            let ws = load(inputs)?;
            if !ws.is_profiles() && ws.desired.apps.iter().any(|a| !a.segments.is_empty()) {
                bail!(
                    "the target is a Customer Profiles domain, but {} holds Pinpoint manifests; convert them first (segmentctl convert DIR --to customer-profiles --out DIR2), or name a Pinpoint target",
                    crate::text::safe(&inputs.dir.display().to_string())
                );
            }
            Ok(Some(found(ws)))
        }
        Target::Local { .. } => {
            let ws = load(inputs)?;
            Ok(ws.is_profiles().then(|| found(ws)))
        }
        Target::Endpoint { .. } | Target::Aws { .. } => Ok(None),
    }
}

/// Connects, observes the domain and plans.
async fn make(
    inputs: &Inputs,
    ws: &Workspace,
    cfg: &Config,
    writes: bool,
    profiles: Option<&Path>,
    policy: defs::CampaignPolicy,
) -> anyhow::Result<(DefinitionsPlan, ProfilesConnection)> {
    // An unreadable file is refused before anything is contacted.
    let records = match profiles {
        Some(f) => Some((
            f,
            crate::audience::records::open(f)
                .with_context(|| format!("cannot read {}", safe(&f.display().to_string())))?,
        )),
        None => None,
    };
    // A folder pinned to another domain is refused before anything is contacted.
    if let Some(d) = &ws.domain {
        let (domain, embedded) = match &cfg.target {
            Target::CustomerProfiles(t) => (t.domain.as_str(), false),
            _ => (
                crate::manifests::config::ProfilesTarget::EMBEDDED_DOMAIN,
                true,
            ),
        };
        if let Err(e) = d.check_target(domain, embedded) {
            bail!("{e}");
        }
    }
    let dir = inputs.dir.as_path();
    note_new_local(cfg, dir);
    let mut info = profiles_info(cfg, dir);
    let conn = naming(&info, targets::connect_profiles(cfg, dir, writes).await)?;
    let live = match run::observe(&conn.profiles, &conn.domain).await {
        Ok(l) => l,
        Err(e) => {
            let msg = profiles_error(&e, &conn);
            conn.close().await;
            return naming(&info, Err(anyhow::anyhow!("{msg}")));
        }
    };
    if ws.domain.is_none() && !live.present() && !conn.embedded {
        let msg = run::missing_domain(&conn.domain, Some(&conn.endpoint));
        conn.close().await;
        return naming(&info, Err(anyhow::anyhow!("{msg}")));
    }
    let mut plan = defs::plan(
        &ws.definitions,
        ws.domain.as_ref(),
        &live,
        &pipeline::planner_settings(cfg),
        policy,
    );
    if let Some((f, input)) = records {
        let shown = safe(&f.display().to_string()).into_owned();
        match crate::audience::profiles_impact::count(
            &mut plan,
            &live,
            input.reader,
            &shown,
            time::OffsetDateTime::now_utc(),
        ) {
            Ok(read) => plan.profiles = Some(read),
            Err(e) => {
                conn.close().await;
                bail!("cannot read {shown}: {e}");
            }
        }
    }
    if let Some(d) = live.definitions.first() {
        info.learn_account(&d.arn);
    }
    plan.target = Some(info);
    plan.dir = Some(inputs.dir.display().to_string());
    plan.domain_arn = run::domain_arn(&live);
    plan.policy = policy;
    Ok((plan, conn))
}

/// The Customer Profiles target `cfg` names, with its domain (the embedded server's own on
/// the embedded target).
fn profiles_info(cfg: &Config, dir: &Path) -> TargetInfo {
    let mut info = TargetInfo::of(cfg, dir);
    if matches!(cfg.target, Target::Local { .. }) {
        info.domain = Some(crate::manifests::config::ProfilesTarget::EMBEDDED_DOMAIN.to_string());
    }
    info
}

/// One line saying what failed on the target, and what to check.
fn profiles_error(e: &ProfilesError, conn: &ProfilesConnection) -> String {
    match e {
        ProfilesError::Call(c) if crate::targets::profiles::campaigns::read_message(c).is_some() => {
            crate::targets::profiles::campaigns::read_message(c).unwrap_or_default()
        }
        ProfilesError::Call(c) if c.is_forbidden() => format!(
            "the target refused the request ({}): check the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID), the region, and the endpoint {}",
            c.message, conn.endpoint
        ),
        ProfilesError::Call(c) if c.code == "network" => format!(
            "cannot reach the Customer Profiles API at {} ({}): check the endpoint URL, the network, and the region",
            conn.endpoint, c.message
        ),
        other => format!(
            "the Customer Profiles API at {} failed: {other}",
            conn.endpoint
        ),
    }
}

fn exit_code(p: &DefinitionsPlan, detailed: bool) -> u8 {
    if p.has_blocked() {
        exit::BLOCKED
    } else if detailed && (!p.is_empty() || p.create_domain) {
        exit::CHANGES
    } else {
        exit::OK
    }
}

/// `plan` for a Customer Profiles domain.
pub async fn plan(
    inputs: &Inputs,
    ws: &Workspace,
    cfg: &Config,
    o: &PlanOptions,
) -> anyhow::Result<u8> {
    if o.audience.is_some() {
        bail!("--endpoints counts Pinpoint endpoints; a Customer Profiles plan counts profiles: --profiles FILE");
    }
    let (p, conn) = make(inputs, ws, cfg, false, o.profiles.as_deref(), o.campaigns).await?;
    conn.close().await;
    let rendered = match o.format {
        Format::Text => crate::report::definitions::text(&p, use_colour(&std::io::stdout())),
        Format::Markdown => crate::report::definitions::markdown(&p),
        Format::Json => serde_json::to_string_pretty(&p)? + "\n",
    };
    out(&rendered);
    if let Some(file) = &o.out {
        std::fs::write(file, serde_json::to_string_pretty(&p)? + "\n")
            .with_context(|| format!("cannot write the plan to {}", file.display()))?;
        err(&format!(
            "Saved the plan to {}; apply it with: segmentctl apply {}\n",
            file.display(),
            file.display()
        ));
    }
    Ok(exit_code(&p, o.detailed_exitcode))
}

/// `apply` for a Customer Profiles domain: plan, show, confirm, run.
pub async fn apply(
    inputs: &Inputs,
    ws: &Workspace,
    cfg: &Config,
    a: &ApplyArgs,
) -> anyhow::Result<u8> {
    let policy = defs::CampaignPolicy {
        allow_delete_in_use: a.allow_delete_in_use,
        repoint: a.repoint_campaigns,
    };
    let (p, conn) = make(inputs, ws, cfg, true, None, policy).await?;
    let settings = pipeline::planner_settings(cfg);
    let replan = |live: &defs::LiveDomain| {
        defs::plan(&ws.definitions, ws.domain.as_ref(), live, &settings, policy)
    };
    show_and_run(conn, &p, a, cfg.owner(), &replan).await
}

/// `apply FILE` of a Customer Profiles plan saved with `plan --out`: for the target it was
/// made for, and only while planning again gives the same steps (nothing moved on the
/// target or in the folder since); then exactly its steps.
pub async fn apply_saved(
    file: &Path,
    text: &str,
    config: Option<&Path>,
    ov: &Overrides,
    a: &ApplyArgs,
) -> anyhow::Result<u8> {
    let saved: DefinitionsPlan = serde_json::from_str(text).with_context(|| {
        format!(
            "{} is not a segmentctl Customer Profiles plan",
            file.display()
        )
    })?;
    if saved.format_version != defs::FORMAT_VERSION {
        bail!(
            "{} has plan format {}; this segmentctl reads format {}",
            file.display(),
            saved.format_version,
            defs::FORMAT_VERSION
        );
    }
    if a.allow_delete_in_use || a.repoint_campaigns {
        bail!("a saved plan is applied as it was made: give --allow-delete-in-use or --repoint-campaigns to `plan --out`, not to `apply FILE`");
    }
    let inputs = Inputs {
        dir: std::path::PathBuf::from(saved.dir.clone().unwrap_or_else(|| ".".into())),
        config: config.map(Path::to_path_buf),
        overrides: ov.clone(),
    };
    let Some((ws, cfg)) = definitions_workspace(&inputs)? else {
        bail!(
            "{} is a Customer Profiles plan, and its folder now goes to a Pinpoint target; plan again",
            file.display()
        );
    };
    let (now, conn) = make(&inputs, &ws, &cfg, true, None, saved.policy).await?;
    let (Some(made_for), Some(here)) = (&saved.target, &now.target) else {
        conn.close().await;
        bail!(
            "{} does not say which target it was made for; plan again",
            file.display()
        );
    };
    if !made_for.same_as(here) {
        let msg = format!(
            "refusing to apply {}: it was made for {} as owner {}, and the configuration now names {} as owner {}; plan again against this target",
            file.display(),
            made_for.place(),
            safe(&made_for.owner),
            here.place(),
            safe(&here.owner)
        );
        conn.close().await;
        bail!("{msg}");
    }
    if !run::same_steps(&now, &saved) {
        conn.close().await;
        bail!(
            "refusing to apply {}: the domain or the manifests changed since it was made (planning again gives other steps); plan again",
            file.display()
        );
    }
    let settings = pipeline::planner_settings(&cfg);
    let replan = |live: &defs::LiveDomain| {
        defs::plan(
            &ws.definitions,
            ws.domain.as_ref(),
            live,
            &settings,
            saved.policy,
        )
    };
    show_and_run(conn, &saved, a, cfg.owner(), &replan).await
}

/// The end of either apply: the plan shown (text, or a JSON line); unless there is nothing
/// to do, confirmed and run, each step's result shown as it ends, then the summary.
async fn show_and_run(
    conn: ProfilesConnection,
    p: &DefinitionsPlan,
    a: &ApplyArgs,
    owner: &str,
    replan: &dyn Fn(&defs::LiveDomain) -> DefinitionsPlan,
) -> anyhow::Result<u8> {
    let colour = use_colour(&std::io::stdout());
    if a.json {
        out(&format!(
            "{}\n",
            serde_json::json!({"type": "plan", "plan": p})
        ));
    } else {
        out(&crate::report::definitions::text(p, colour));
    }
    if p.is_empty() && !p.create_domain {
        conn.close().await;
        let code = exit_code(p, false);
        if a.json {
            out(&format!("{}\n", summary_json(p, &[], false, code)));
        }
        return Ok(code);
    }
    if !a.auto_approve {
        match confirm() {
            Ok(true) => {}
            Ok(false) => {
                conn.close().await;
                err("Apply cancelled: nothing was changed.\n");
                return Ok(exit::ERROR);
            }
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        }
    }
    let leases = match lease_unmoved(&conn, p, a.wait, owner, replan).await {
        Ok(l) => l,
        Err(e) => {
            conn.close().await;
            return Err(e);
        }
    };
    match run::create_domain(&conn.profiles, p).await {
        Ok(created) => {
            if created {
                out(&domain_created(p, a.json, colour));
            }
        }
        Err(e) => {
            let msg = format!(
                "cannot create the domain {} at {}: {}",
                safe(&p.domain),
                conn.endpoint,
                profiles_error(&e, &conn)
            );
            conn.close().await;
            bail!("{msg}");
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        err("\nInterrupt received: finishing the step in flight, starting none (interrupt again to stop at once).\n");
        shutdown_signal().await;
        err("\nInterrupted again: stopping now; run apply again to finish.\n");
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    let seen = |step: &Step, r: &StepResult| {
        if a.json {
            if let Some(e) = run::event_json(&p.domain, step, r) {
                out(&format!("{e}\n"));
            }
        } else {
            out(&format!("{}\n", step_line(step, r, colour)))
        }
    };
    let (profiles, stop) = (&conn.profiles, &stop_rx);
    let results = lease::hold_while(profiles, &leases, lease::ttl(), |fence| async move {
        run::apply(profiles, p, Some(stop), &fence, seen).await
    })
    .await;
    watcher.abort();
    for l in &leases {
        lease::release(&conn.profiles, l).await;
    }
    conn.close().await;
    let interrupted = results.contains(&StepResult::Interrupted);
    let code = if interrupted {
        exit::INTERRUPTED
    } else if results
        .iter()
        .any(|r| matches!(r, StepResult::Failed(_) | StepResult::LeaseLost(_)))
    {
        exit::ERROR
    } else if results.contains(&StepResult::Skipped) {
        exit::BLOCKED
    } else {
        exit::OK
    };
    if a.json {
        out(&format!(
            "{}\n",
            summary_json(p, &results, interrupted, code)
        ));
    } else if interrupted {
        let done = results.iter().filter(|r| **r == StepResult::Done).count();
        out(&format!(
            "\nInterrupted: {done} of {} done; run apply again to finish.\n",
            crate::text::plural(results.len(), "step")
        ));
    } else {
        out(&format!("\n{}\n", outcome_line(p, &results)));
    }
    Ok(code)
}

/// The line (or JSON line) saying the domain was created, before the steps' own.
fn domain_created(p: &DefinitionsPlan, json: bool, colour: bool) -> String {
    if json {
        return format!("{}\n", run::domain_event_json(&p.domain));
    }
    let mark = if colour { "\x1b[32m✓\x1b[0m" } else { "✓" };
    format!("{mark} domain {} created\n", safe(&p.domain))
}

/// The domain's lease, taken (waiting for it with `--wait`), and the plan checked under it:
/// planning again must give the same steps, or another applier moved the domain while this
/// plan was shown. No lease for a domain whose ARN is not known (see [`run::domain_arn`]).
async fn lease_unmoved(
    conn: &ProfilesConnection,
    p: &DefinitionsPlan,
    wait: bool,
    owner: &str,
    replan: &dyn Fn(&defs::LiveDomain) -> DefinitionsPlan,
) -> anyhow::Result<Vec<lease::Lease>> {
    let Some(arn) = &p.domain_arn else {
        return Ok(Vec::new());
    };
    let patience = if wait {
        super::apply::WAIT_PATIENCE
    } else {
        std::time::Duration::ZERO
    };
    let waiting =
        |h: &lease::Held| err(&format!("Waiting: {}.\n", run::busy_message(&p.domain, h)));
    let taken = match run::take_lease(&conn.profiles, arn, owner, patience, waiting).await {
        Ok(l) => l,
        Err(lease::LeaseError::Busy(h)) => bail!(
            "{}; run again when it is done, or pass --wait to queue behind it",
            run::busy_message(&p.domain, &h)
        ),
        Err(e @ lease::LeaseError::Api(_)) => {
            bail!(
                "cannot take the lease on the domain {}: {}",
                safe(&p.domain),
                crate::text::error_chain(&e)
            )
        }
    };
    let again = run::observe(&conn.profiles, &p.domain).await;
    let moved = match &again {
        Ok(live) => !run::same_steps(&replan(live), p),
        Err(_) => true,
    };
    if moved {
        lease::release(&conn.profiles, &taken).await;
        match again {
            Err(e) => bail!("{}", profiles_error(&e, conn)),
            Ok(_) => bail!(
                "another applier changed the domain {} while this plan was shown (planning again gives other steps); nothing was applied: run apply again",
                safe(&p.domain)
            ),
        }
    }
    Ok(vec![taken])
}

/// Steps of action `a` that were done.
fn done_of(p: &DefinitionsPlan, results: &[StepResult], a: Action) -> usize {
    p.steps
        .iter()
        .zip(results)
        .filter(|(s, r)| s.action == a && **r == StepResult::Done)
        .count()
}

/// `apply --format json`'s last line, with `apply` on Pinpoint's keys: what was done, by kind.
fn summary_json(
    p: &DefinitionsPlan,
    results: &[StepResult],
    interrupted: bool,
    exit_code: u8,
) -> serde_json::Value {
    let done = |a: Action| done_of(p, results, a);
    serde_json::json!({
        "type": "summary",
        "domain": p.domain,
        "created": done(Action::Create),
        "replaced": done(Action::Replace),
        "updated": done(Action::Tag) + done(Action::Adopt),
        "deleted": done(Action::Delete),
        "blocked": p.steps.iter().filter(|s| !s.blocked.is_empty()).count(),
        "failed": results
            .iter()
            .filter(|r| matches!(r, StepResult::Failed(_) | StepResult::LeaseLost(_)))
            .count(),
        "interrupted": interrupted,
        "exit_code": exit_code,
    })
}

/// `  + create  gold: done`, `  - delete  base: failed: …`.
fn step_line(s: &Step, r: &StepResult, colour: bool) -> String {
    let what = match (s.action, s.new_name.as_deref(), s.live_name.as_deref()) {
        (Action::Create, Some(n), _) | (Action::Replace, Some(n), _) if n != s.name => {
            format!("{} as {}", safe(&s.name), safe(n))
        }
        (Action::Delete, _, Some(l)) if l != s.name => format!("{} ({})", safe(&s.name), safe(l)),
        _ => safe(&s.name).into_owned(),
    };
    let (word, code) = match r {
        StepResult::Done => ("done".to_string(), "32"),
        StepResult::Skipped => ("skipped: blocked in the plan".to_string(), "33"),
        StepResult::Failed(e) => (format!("failed: {}", safe(e)), "31"),
        StepResult::NotRun => ("not run: an earlier step failed".to_string(), "33"),
        StepResult::Interrupted => ("not run: interrupted".to_string(), "33"),
        StepResult::LeaseLost(who) => (
            format!("not started: the lease was lost to {}", safe(who)),
            "31",
        ),
    };
    let word = if colour {
        format!("\x1b[{code}m{word}\x1b[0m")
    } else {
        word
    };
    format!("  {} {what}: {word}", s.action.verb())
}

/// `Apply complete: 1 created, 1 replaced.` or what failed and what a rerun does.
fn outcome_line(p: &DefinitionsPlan, results: &[StepResult]) -> String {
    let done = |a: Action| done_of(p, results, a);
    let mut parts: Vec<String> = [
        (Action::Create, "created"),
        (Action::Replace, "replaced"),
        (Action::Tag, "tagged"),
        (Action::Adopt, "adopted"),
        (Action::Delete, "deleted"),
    ]
    .iter()
    .filter(|(a, _)| done(*a) > 0)
    .map(|(a, w)| format!("{} {w}", done(*a)))
    .collect();
    if p.create_domain {
        parts.insert(0, "the domain created".into());
    }
    let did = if parts.is_empty() {
        "nothing changed".to_string()
    } else {
        parts.join(", ")
    };
    if results.iter().any(|r| matches!(r, StepResult::Failed(_))) {
        // A write whose answer was lost or failed may have been made all the same.
        let did = if parts.is_empty() {
            "no step completed".to_string()
        } else {
            format!("completed: {did}")
        };
        format!("Apply failed: {did}; the failed step may have taken effect on the target, and the steps after it did not run. Run apply again: it plans from what is there now.")
    } else if results
        .iter()
        .any(|r| matches!(r, StepResult::LeaseLost(_)))
    {
        format!("Apply failed: {did}; the steps after the failure did not run. Run apply again: it plans from what is there now.")
    } else if results.contains(&StepResult::Skipped) {
        format!("Apply finished with blocked steps skipped: {did}.")
    } else {
        format!("Apply complete: {did}.")
    }
}

/// `import` from a Customer Profiles domain: every definition no other owner manages,
/// written as a `SegmentDefinition` manifest (bases among them by `Ref`) and tagged as
/// managed, so that a plan right after is empty.
pub async fn import(inputs: &Inputs, out_dir: &Path) -> anyhow::Result<u8> {
    let cfg = settings(inputs)?;
    let dir = inputs.dir.as_path();
    err(&format!("{}\n", profiles_info(&cfg, dir).line()));
    let conn = targets::connect_profiles(&cfg, dir, true).await?;
    let result = import_from(&conn, &cfg, out_dir).await;
    conn.close().await;
    result
}

async fn import_from(
    conn: &ProfilesConnection,
    cfg: &Config,
    out_dir: &Path,
) -> anyhow::Result<u8> {
    use crate::manifests::manifest::definition::render;
    use crate::targets::profiles::Profiles;
    let owner = cfg.owner();
    let live = run::observe(&conn.profiles, &conn.domain)
        .await
        .map_err(|e| anyhow::anyhow!("{}", profiles_error(&e, conn)))?;
    if !live.present() {
        bail!(
            "the Customer Profiles domain {} does not exist at {}",
            safe(&conn.domain),
            conn.endpoint
        );
    }
    let names = import_names(&live, owner);
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let siblings: BTreeSet<&str> = names.values().map(String::as_str).collect();
    let mut written = 0;
    for d in &live.definitions {
        let Some(name) = names.get(d.name.as_str()) else {
            continue;
        };
        let mut spec = d.spec.clone();
        // Sources by manifest name; segmentctl's own tags stay on the target.
        for s in spec
            .segment_groups
            .iter_mut()
            .flat_map(|g| g.groups.iter_mut().flatten())
            .flat_map(|g| g.source_segments.iter_mut().flatten())
        {
            if let Some(n) = s
                .segment_definition_name
                .as_deref()
                .and_then(|n| names.get(n))
            {
                s.segment_definition_name = Some(n.clone());
            }
        }
        let protect = spec
            .tags
            .as_ref()
            .and_then(|t| t.get(crate::TAG_PROTECT))
            .is_some_and(|v| v == "true");
        spec.tags = spec
            .tags
            .map(|t| {
                t.into_iter()
                    .filter(|(k, _)| !crate::plan::is_own_tag(k))
                    .collect::<crate::model::Tags>()
            })
            .filter(|t| !t.is_empty());
        let metadata = crate::manifests::manifest::definition::DefinitionMetadata {
            name: name.clone(),
            protect,
            adopt: None,
        };
        let yaml = render(&metadata, &spec, &siblings)?;
        let path = out_dir.join(format!("{name}.yaml"));
        let text = format!(
            "# Imported from the segment definition {} of the domain {}.\n{yaml}",
            safe(&d.name),
            safe(&conn.domain)
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        // Managed from now on: the ownership tags and the digest of what is there.
        let mut tags = crate::model::Tags::new();
        tags.insert(crate::TAG_MANAGED_BY.into(), owner.to_string());
        tags.insert(crate::TAG_NAME.into(), name.clone());
        tags.insert(crate::plan::TAG_DIGEST.into(), defs::digest_of(&d.spec));
        conn.profiles
            .tag(&d.arn, &tags)
            .await
            .map_err(|e| anyhow::anyhow!("{}", profiles_error(&e, conn)))?;
        written += 1;
    }
    out(&format!(
        "Imported {} from the domain {} into {}.\n",
        crate::text::plural(written, "segment definition"),
        safe(&conn.domain),
        out_dir.display()
    ));
    Ok(exit::OK)
}

/// Each definition's manifest name, for those `import` writes: its `segmentctl:name` when
/// this owner manages it (a derived name goes back to its manifest's), else its own name.
/// Left out, each said on standard error: another owner's, an older copy, a name the API's
/// rule refuses (it would name a file), a name taken by another.
fn import_names<'a>(live: &'a defs::LiveDomain, owner: &str) -> BTreeMap<&'a str, String> {
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    // Two copies for one manifest (one kept while something uses it, or left by an
    // interrupted apply): the newest is the manifest's; the next apply deletes the other.
    let mut newest: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
    for d in &live.definitions {
        let tags = d.spec.tags.as_ref();
        if tags
            .and_then(|t| t.get(crate::TAG_MANAGED_BY))
            .map(String::as_str)
            == Some(owner)
        {
            if let Some(n) = tags.and_then(|t| t.get(crate::TAG_NAME)) {
                let e = newest.entry(n.as_str()).or_insert((d.created_at, &d.name));
                if (d.created_at, d.name.as_str()) > *e {
                    *e = (d.created_at, &d.name);
                }
            }
        }
    }
    for d in &live.definitions {
        let tags = d.spec.tags.clone().unwrap_or_default();
        match tags.get(crate::TAG_MANAGED_BY) {
            Some(o) if o != owner => continue, // another installation's
            _ => {}
        }
        if let Some((_, current)) = tags
            .get(crate::TAG_NAME)
            .and_then(|n| newest.get(n.as_str()))
        {
            if *current != d.name
                && tags.get(crate::TAG_MANAGED_BY).map(String::as_str) == Some(owner)
            {
                err(&format!(
                    "note: {} is an older copy of {}, left out: the next apply deletes it once nothing uses it\n",
                    safe(&d.name),
                    safe(current)
                ));
                continue;
            }
        }
        let tagged = tags
            .get(crate::TAG_NAME)
            .filter(|n| crate::model::profiles::validate::name("", n).is_empty())
            .filter(|n| !taken.contains(n.as_str()));
        let name = tagged.cloned().unwrap_or_else(|| d.name.clone());
        // The name becomes a file name: an answer the model's name rule refuses (a path
        // separator, `..`, a control character) is never written.
        if !crate::model::profiles::validate::name("", &name).is_empty() {
            err(&format!(
                "warning: the definition {} is left out: its name is not one the API allows, and it would name the manifest's file\n",
                crate::report::Escape::Text.quote(&name)
            ));
            continue;
        }
        if !taken.insert(name.clone()) {
            err(&format!(
                "warning: {} is left out: another definition is imported as {}\n",
                safe(&d.name),
                safe(&name)
            ));
            continue;
        }
        names.insert(&d.name, name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(actions: &[&str]) -> DefinitionsPlan {
        let steps: Vec<String> = actions
            .iter()
            .enumerate()
            .map(|(i, a)| format!(r#"{{"action":"{a}","name":"d{i}"}}"#))
            .collect();
        serde_json::from_str(&format!(
            r#"{{"format_version":1,"domain":"shop","steps":[{}],"documents":1}}"#,
            steps.join(",")
        ))
        .unwrap()
    }

    /// A failed write is not said to have changed nothing: its answer may have been lost
    /// after the target made it.
    #[test]
    fn a_failed_step_may_have_taken_effect() {
        let p = plan(&["create", "create"]);
        assert_eq!(
            outcome_line(&p, &[StepResult::Failed("lost".into()), StepResult::NotRun]),
            "Apply failed: no step completed; the failed step may have taken effect on the target, and the steps after it did not run. Run apply again: it plans from what is there now."
        );
        assert_eq!(
            outcome_line(&p, &[StepResult::Done, StepResult::Failed("lost".into())]),
            "Apply failed: completed: 1 created; the failed step may have taken effect on the target, and the steps after it did not run. Run apply again: it plans from what is there now."
        );
        assert_eq!(
            outcome_line(&p, &[StepResult::Done, StepResult::Done]),
            "Apply complete: 2 created."
        );
    }
}
