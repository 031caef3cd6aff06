//! The reconciler's commands: plan, apply and import. Each wires the pipeline stages
//! together; the stages themselves live in their modules.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::apply::{self, Options};
use crate::config::Config;
use crate::manifest::ManifestError;
use crate::observe::ObserveError;
use crate::pinpoint::{Pinpoint, PinpointError};
use crate::pipeline::{self, Inputs, Overrides};
use crate::plan::{self, Plan};
use crate::target::{self, target_error, Connection};
use crate::text::{plural, use_colour};
use crate::workspace::Workspace;

/// Exit codes: the contract with scripts and CI.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const CHANGES: u8 = 2;
    pub const BLOCKED: u8 = 3;
}

/// Manifest errors, already printed; the command exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{count} manifest errors")]
pub struct Invalid {
    pub count: usize,
}

pub fn print_manifest_errors(errors: &[ManifestError]) {
    let mut err = std::io::stderr().lock();
    for e in errors {
        let _ = writeln!(err, "{e}");
    }
    let files: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    let _ = writeln!(
        err,
        "{} in {}",
        plural(errors.len(), "error"),
        plural(files.len(), "file")
    );
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

fn observe_error(e: &ObserveError, endpoint: &str) -> anyhow::Error {
    match e {
        ObserveError::ListApps(PinpointError::Call(call)) => {
            anyhow::anyhow!("{}", target_error(call, endpoint))
        }
        other => anyhow::anyhow!("{}", apply::error_chain(other)),
    }
}

/// Reads the folder, observes the target and plans.
pub async fn make_plan(
    inputs: &Inputs,
    audience: Option<&AudienceOptions>,
) -> anyhow::Result<(Plan, Connection, Config)> {
    let ws = load(inputs)?;
    let dir = inputs.dir.as_path();
    // Refuse a bad --as-of or an unreadable file before connecting.
    let audience = match audience {
        Some(a) => Some((
            a,
            parse_as_of(a.as_of.as_deref())?,
            endpoints_input(&a.endpoints)?,
        )),
        None => None,
    };
    let conn = target::connect(&ws.config, dir).await?;
    let (mut p, observed) = match pipeline::plan(&conn.pinpoint, &ws, &pipeline::everything).await {
        Ok(planned) => planned,
        Err(e) => {
            let err = observe_error(&e, &conn.endpoint);
            conn.close().await;
            return Err(err);
        }
    };
    p.dir = std::fs::canonicalize(dir)
        .ok()
        .map(|d| d.display().to_string());
    if let Some((a, as_of, input)) = audience {
        let counted = crate::endpoints::with_progress(&input.progress, || {
            crate::audience::annotate(
                &mut p,
                &ws.desired,
                &observed,
                input.reader,
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

fn endpoints_input(path: &Path) -> anyhow::Result<crate::endpoints::Input> {
    crate::endpoints::open(path).with_context(|| format!("cannot read {}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

pub struct PlanOptions {
    pub format: Format,
    pub out: Option<PathBuf>,
    pub detailed_exitcode: bool,
    pub audience: Option<AudienceOptions>,
}

pub async fn plan_command(inputs: &Inputs, o: &PlanOptions) -> anyhow::Result<u8> {
    let (p, conn, _) = make_plan(inputs, o.audience.as_ref()).await?;
    conn.close().await;
    let colour = use_colour(&std::io::stdout());
    let rendered = match o.format {
        Format::Text => crate::report::text(&p, colour),
        Format::Markdown => crate::report::markdown(&p, crate::report::MARKDOWN_LIMIT),
        Format::Json => crate::report::json(&p) + "\n",
    };
    print!("{rendered}");
    if let Some(out) = &o.out {
        std::fs::write(out, crate::report::json(&p) + "\n")
            .with_context(|| format!("cannot write the plan to {}", out.display()))?;
        eprintln!(
            "Saved the plan to {}; apply it with: segmentctl apply {}",
            out.display(),
            out.display()
        );
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
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to apply without confirmation: there is no terminal to ask on; review the plan, then pass --auto-approve");
    }
    eprint!("\nApply these changes? Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

async fn run_apply(p: &Plan, conn: &Connection, cfg: &Config, a: &ApplyArgs) -> u8 {
    let opts = Options {
        concurrency: cfg.concurrency,
        allow_delete_in_use: a.allow_delete_in_use,
        progress: std::io::stderr().is_terminal(),
        cancel: None,
        events: None,
    };
    let report = apply::apply(&conn.pinpoint, p, &opts).await;
    println!("\n{}", report.summary());
    print!("{}", report.details(false));
    if report.failed() > 0 {
        println!("Run apply again to retry: steps that completed are not repeated.");
        exit::ERROR
    } else if report.blocked() > 0 {
        exit::BLOCKED
    } else {
        exit::OK
    }
}

/// Shows the plan, asks (unless `--auto-approve`), and applies it.
async fn show_confirm_apply(
    p: &Plan,
    conn: &Connection,
    cfg: &Config,
    a: &ApplyArgs,
) -> anyhow::Result<u8> {
    print!("{}", crate::report::text(p, use_colour(&std::io::stdout())));
    if p.is_empty() {
        return Ok(plan_exit(p, false));
    }
    if !a.auto_approve && !confirm()? {
        println!("Apply cancelled.");
        return Ok(exit::ERROR);
    }
    Ok(run_apply(p, conn, cfg, a).await)
}

/// `apply DIR`: plan, show, confirm, apply.
pub async fn apply_dir(inputs: &Inputs, a: &ApplyArgs) -> anyhow::Result<u8> {
    let (p, conn, cfg) = make_plan(inputs, None).await?;
    let result = show_confirm_apply(&p, &conn, &cfg, a).await;
    conn.close().await;
    result
}

/// `apply plan.json`: re-observe, refuse if anything the plan touches moved, then apply.
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
    let mut cfg = Config::load(&dir, config).map_err(|e| anyhow::anyhow!("{e}"))?;
    ov.apply_to(&mut cfg);
    if cfg.owner != p.owner {
        bail!(
            "the plan was made for owner {:?}, the configuration says {:?}",
            p.owner,
            cfg.owner
        );
    }
    let conn = target::connect(&cfg, &dir).await?;
    let result = async {
        let moved = apply::stale(&conn.pinpoint, &p)
            .await
            .map_err(|e| anyhow::anyhow!("cannot re-check the target: {e}"))?;
        if !moved.is_empty() {
            for m in &moved {
                eprintln!("  {m}");
            }
            bail!(
                "refusing to apply {}: {} changed since it was made; plan again and review",
                file.display(),
                plural(moved.len(), "thing it touches")
            );
        }
        show_confirm_apply(&p, &conn, &cfg, a).await
    }
    .await;
    conn.close().await;
    result
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
        s = format!("segment-{}", &id[..id.len().min(8)]);
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
pub async fn import(
    dir: &Path,
    config: Option<&Path>,
    ov: &Overrides,
    app: &str,
    out: &Path,
) -> anyhow::Result<u8> {
    use crate::manifest::{Kind, Manifest, Metadata, API_VERSION};
    let mut cfg = Config::load(dir, config).map_err(|e| anyhow::anyhow!("{e}"))?;
    ov.apply_to(&mut cfg);
    let conn = target::connect(&cfg, dir).await?;
    let result = async {
        let live = conn
            .pinpoint
            .list_segments(app)
            .await
            .map_err(|e| match e {
                e if e.is_not_found() => {
                    anyhow::anyhow!("application {app} does not exist on the target")
                }
                PinpointError::Call(c) => anyhow::anyhow!("{}", target_error(&c, &conn.endpoint)),
                other => anyhow::anyhow!("{other}"),
            })?;
        let mut taken = std::collections::BTreeSet::new();
        let mut chosen: Vec<(String, &crate::model::SegmentResponse)> = Vec::new();
        for s in &live {
            let tags = s.tags.clone().unwrap_or_default();
            match (
                tags.get(crate::TAG_MANAGED_BY),
                crate::live::managed_name(s.tags.as_ref(), &cfg.owner),
            ) {
                (Some(o), _) if o != &cfg.owner => continue, // another installation's
                (_, Some(n)) => {
                    taken.insert(n.to_string());
                    chosen.push((n.to_string(), s));
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
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut written = 0;
        for (name, s) in &chosen {
            let mut spec = crate::diff::canonical(&s.definition(), &|id| by_id.get(id).cloned());
            let user_tags: crate::model::Tags = s
                .tags
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !plan::is_own_tag(k))
                .collect();
            spec.tags = (!user_tags.is_empty()).then_some(user_tags);
            let protect = s
                .tags
                .as_ref()
                .and_then(|t| t.get(crate::TAG_PROTECT))
                .is_some_and(|v| v == "true");
            let m = Manifest {
                api_version: API_VERSION.into(),
                kind: Kind::Segment,
                metadata: Metadata {
                    name: name.clone(),
                    application: Some(app.to_string()),
                    application_ref: None,
                    protect,
                    adopt: None,
                },
                spec,
            };
            let path = out.join(format!("{name}.yaml"));
            let text = format!(
                "# Imported from segment {} (version {}).\n{}",
                s.id,
                s.version,
                crate::manifest::to_yaml(&[m])?
            );
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            // Adopt: the ownership tags, and the digest of what is now the manifest.
            let canon = crate::diff::canonical(&s.definition(), &|id| by_id.get(id).cloned());
            let mut tags = plan::ownership_tags(&cfg.owner, name);
            tags.insert(plan::TAG_DIGEST.into(), crate::diff::fingerprint(&canon));
            conn.pinpoint
                .tag(&s.arn, &tags)
                .await
                .map_err(|e| match e {
                    PinpointError::Call(c) => {
                        anyhow::anyhow!("{}", target_error(&c, &conn.endpoint))
                    }
                    other => anyhow::anyhow!("{other}"),
                })?;
            written += 1;
        }
        println!(
            "Imported {} from application {app} into {}.",
            plural(written, "segment"),
            out.display()
        );
        Ok(exit::OK)
    }
    .await;
    conn.close().await;
    result
}

/// `--as-of`: an instant, or `now` (the default).
fn parse_as_of(as_of: Option<&str>) -> anyhow::Result<time::OffsetDateTime> {
    match as_of {
        None | Some("now") => Ok(time::OffsetDateTime::now_utc()),
        Some(t) => crate::validate::parse_instant(t).ok_or_else(|| {
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
    use crate::endpoints;
    use crate::evaluate::{Catalog, Program};
    let ws = load(&Inputs {
        dir: dir.to_path_buf(),
        config: config.map(Path::to_path_buf),
        overrides: Overrides::default(),
    })?;
    let as_of = parse_as_of(as_of)?;
    let mut program = Program::new(as_of);
    // Per segment counted: its application (index) and name, and its node.
    let mut counted: Vec<(usize, &str)> = Vec::new();
    let mut targets = Vec::new();
    for (i, app) in ws.desired.apps.iter().enumerate() {
        let catalog = Catalog {
            segments: app
                .segments
                .iter()
                .map(|s| (s.name.clone(), &s.spec))
                .collect(),
            key_of_id: Default::default(),
        };
        for s in &app.segments {
            counted.push((i, &s.name));
            targets.push(program.add(i, &catalog, &s.name));
        }
    }
    let input = endpoints_input(endpoints)?;
    let t = endpoints::with_progress(&input.progress, || {
        endpoints::tally(input.reader, &program, &targets)
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
            .map(|((app, segment), n)| {
                serde_json::json!({
                    "application": ws.desired.apps[*app].key.to_string(),
                    "segment": segment,
                    "endpoints": n,
                    "share_percent": (share(*n) * 100.0).round() / 100.0,
                })
            })
            .collect();
        let out = serde_json::json!({
            "format_version": 1,
            "as_of": crate::audience::instant_text(as_of),
            "records_read": t.read,
            "records_rejected": t.rejected,
            "rejected_lines": t.rejected_lines,
            "segments": segments,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
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
        println!("{line}.");
        let mut current = usize::MAX;
        for ((app, segment), n) in counted.iter().zip(&t.counts) {
            if *app != current {
                current = *app;
                println!("\nApplication {}", ws.desired.apps[current].key);
            }
            println!("  {:<32} {:>10}  {:>6.2} %", segment, n, share(*n));
        }
    }
    Ok(exit::OK)
}
