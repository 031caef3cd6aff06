//! The commands: one file each (plan, apply, import, estimate, sql), with what they share
//! here (loading the folder, making a plan, exit codes, the shutdown signal). Each strings
//! the pipeline's stages together and decides what to print; the stages live in their
//! modules. They take plain options: the arguments are `cli::args`'.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::manifests::config::Config;
use crate::manifests::manifest::ManifestError;
use crate::manifests::workspace::Workspace;
use crate::plan::live::TargetInfo;
use crate::plan::Plan;
use crate::reconcile::observe::ObserveError;
use crate::reconcile::pipeline::{self, Inputs};
use crate::targets::pinpoint::PinpointError;
use crate::targets::{self, target_error, Connection};
use crate::text::{err, plural};

mod apply;
mod convert;
mod definitions;
mod estimate;
mod import;
mod plan;
pub mod serve;
mod sql;

pub use apply::{apply_dir, apply_saved, ApplyArgs};
pub use convert::{convert, ConvertFormat, ConvertOptions};
pub use definitions::import as import_definitions;
pub use estimate::{compile_segments, estimate, Compiled, CompiledSegment, Unreadable};
pub use import::import;
pub use plan::{plan_command, plan_exit, Format, PlanOptions};
pub use sql::{sql, SqlOptions};

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
    if let Some(problem) = cfg.problem() {
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

/// `result`, saying first on an error which target and owner it came from (the plan's
/// report would have said it): no failure leaves its target unnamed.
pub fn naming<T, E>(info: &TargetInfo, result: Result<T, E>) -> Result<T, E> {
    if result.is_err() {
        err(&format!("{}\n", info.line()));
    }
    result
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
    // manifests that load, which the callers checked ([`definitions::definitions_workspace`]
    // loads the folder for it). Any other target is read while the manifests are parsed.
    note_new_local(&settings, dir);
    let info = TargetInfo::of(&settings, dir);
    let conn = naming(&info, targets::connect_for(&settings, dir, writes).await)?;
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
                pipeline::PlanError::Observe(e) => {
                    err(&format!("{}\n", info.line()));
                    observe_error(&e, &conn.endpoint)
                }
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

/// `--as-of`: an instant, or `now` (the default).
fn parse_as_of(as_of: Option<&str>) -> anyhow::Result<time::OffsetDateTime> {
    match as_of {
        None | Some("now") => Ok(time::OffsetDateTime::now_utc()),
        Some(t) => crate::model::validate::parse_instant(t).ok_or_else(|| {
            anyhow::anyhow!("--as-of {t:?} is not an ISO-8601 instant such as 2026-11-28T00:00:00Z")
        }),
    }
}
