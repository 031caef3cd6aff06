//! The reconciler's one pipeline, for the commands and the daemon alike: the folder is
//! loaded and checked, the settings resolved (the configuration with the command line's
//! overrides), the target observed, and the plan made. Nothing here prints: the callers
//! decide how to show what happened.

use std::path::PathBuf;

use crate::manifests::config::{Config, Target};
use crate::manifests::manifest::ManifestError;
use crate::manifests::workspace::{self, Workspace};
use crate::plan::live::Observed;
use crate::plan::{self, Plan};
use crate::reconcile::observe::{self, ObserveError, Scope};
use crate::targets::pinpoint::Pinpoint;

/// What the command line says beside the folder.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub target: Option<Target>,
    pub owner: Option<String>,
    pub prune: bool,
}

impl Overrides {
    pub fn apply_to(&self, cfg: &mut Config) {
        if let Some(t) = &self.target {
            cfg.target = cfg.target.overridden_by(t);
        }
        if let Some(o) = &self.owner {
            cfg.owner = Some(o.clone());
        }
        if self.prune {
            cfg.prune = true;
        }
    }
}

/// Where the pipeline reads from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub dir: PathBuf,
    /// `--config FILE`, when given.
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Reads and checks the folder and resolves the settings: `workspace.config` is the
/// configuration with the overrides applied.
///
/// Errors: every located mistake in the manifests and the configuration.
pub fn load(inputs: &Inputs) -> Result<Workspace, Vec<ManifestError>> {
    let mut ws = workspace::load(&inputs.dir, inputs.config.as_deref())?;
    settle(inputs, &mut ws.config);
    definitions_on_pinpoint(&ws)?;
    Ok(ws)
}

/// A folder of `SegmentDefinition` manifests is for a Customer Profiles domain: on a
/// Pinpoint target it is an error, never an empty plan.
fn definitions_on_pinpoint(ws: &Workspace) -> Result<(), Vec<ManifestError>> {
    let first = ws
        .definitions
        .first()
        .map(|d| (d.error("kind", ""), "SegmentDefinition"))
        .or_else(|| ws.domain.as_ref().map(|d| (d.error("kind", ""), "Domain")));
    match (first, &ws.config.target) {
        (Some((mut e, kind)), Target::Endpoint { .. } | Target::Aws { .. }) => {
            e.message = format!("a {kind} is applied to a Customer Profiles domain, but the target is a Pinpoint one; set `target: {{customerProfiles: {{domain: NAME}}}}` in segmentctl.yaml, or pass --target customer-profiles:DOMAIN");
            Err(vec![e])
        }
        _ => Ok(()),
    }
}

/// The command line's overrides, and no prune for one manifest file: the segments of the
/// folder's other files are not in it, and must not read as removed.
fn settle(inputs: &Inputs, cfg: &mut crate::manifests::config::Config) {
    inputs.overrides.apply_to(cfg);
    if cfg.prune && inputs.dir.is_file() {
        cfg.prune = false;
        crate::text::err(&format!(
            "note: {} is one manifest file, so prune is off: segments declared in other files are not deleted\n",
            crate::text::safe(&inputs.dir.display().to_string())
        ));
    }
}

/// What the planner needs of the settings.
pub fn planner_settings(cfg: &Config) -> plan::Settings {
    plan::Settings {
        owner: cfg.owner().to_string(),
        prune: cfg.prune,
        max_delete_percent: cfg.max_delete_percent,
    }
}

/// Observes what `ws` names and plans it, for the applications `owns` accepts (shard keys;
/// everything for the commands).
pub async fn plan<P: Pinpoint>(
    p: &P,
    ws: &Workspace,
    owns: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(Plan, Observed), ObserveError> {
    let scope = Scope {
        owner: ws.config.owner(),
        owns,
    };
    let observed = observe::observe(p, &ws.desired, &scope).await?;
    let plan = if crate::audience::sources::any(&ws.desired) {
        let mut desired = ws.desired.clone();
        crate::audience::sources::fingerprint(&mut desired).await;
        plan::plan(&desired, &observed, &planner_settings(&ws.config))
    } else {
        plan::plan(&ws.desired, &observed, &planner_settings(&ws.config))
    };
    Ok((plan, observed))
}

/// Accepts every application.
pub fn everything(_: &str) -> bool {
    true
}

/// A folder planned against the target.
pub struct Planned {
    pub workspace: Workspace,
    pub plan: Plan,
    pub observed: Observed,
}

#[derive(Debug)]
pub enum PlanError {
    /// The folder does not load: every located mistake.
    Invalid(Vec<ManifestError>),
    Observe(ObserveError),
}

/// Reads the folder and the target at once, then plans: the manifests are parsed (on the
/// blocking threads) while the application list and the applications the files seem to
/// name are read, so the parse costs no time on a target that is far away.
///
/// Guarantees: the same plan as [`load`] followed by [`plan`]; what was read for a hint the
/// manifests do not confirm is dropped.
pub async fn load_and_plan<P: Pinpoint>(
    p: &P,
    inputs: &Inputs,
    owns: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Planned, PlanError> {
    let (dir, config) = (inputs.dir.clone(), inputs.config.clone());
    let files = tokio::task::spawn_blocking(move || workspace::read(&dir, config.as_deref()))
        .await
        .expect("reading the folder does not panic");
    let hints: Vec<String> = crate::manifests::manifest::application_hints(&files.sources)
        .into_iter()
        .filter(|id| owns(id))
        .collect();
    // The requests go out first (the first poll sends them all), then the parse starts, its
    // threads below the priority of the answers' decoding: it is needed only once the last
    // answer is in.
    let prefetch = observe::prefetch(p, &hints);
    tokio::pin!(prefetch);
    let mut early = None;
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = std::future::Future::poll(prefetch.as_mut(), cx) {
            early = Some(v);
        }
        std::task::Poll::Ready(())
    })
    .await;
    let dir = inputs.dir.clone();
    let parse = tokio::task::spawn_blocking(move || {
        let mut ws = workspace::check_at(files, crate::par::Priority::Background)?;
        workspace::resolve_sources(&dir, &mut ws.desired)?;
        // What the plan derives from the manifests alone, while the answers are awaited (not
        // when audience sources are fingerprinted into the desired state afterwards).
        let prepared =
            (!crate::audience::sources::any(&ws.desired)).then(|| plan::Prepared::of(&ws.desired));
        Ok((ws, prepared))
    });
    let prefetch = async {
        match early {
            Some(v) => v,
            None => prefetch.await,
        }
    };
    let (checked, prefetched) = tokio::join!(parse, prefetch);
    let (mut ws, prepared) = checked
        .expect("parsing does not panic")
        .map_err(PlanError::Invalid)?;
    settle(inputs, &mut ws.config);
    definitions_on_pinpoint(&ws).map_err(PlanError::Invalid)?;
    let scope = Scope {
        owner: ws.config.owner(),
        owns,
    };
    let observed = observe::observe_from(p, &ws.desired, &scope, Some(prefetched))
        .await
        .map_err(PlanError::Observe)?;
    if crate::audience::sources::any(&ws.desired) {
        crate::audience::sources::fingerprint(&mut ws.desired).await;
    }
    let plan = plan::plan_prepared(
        &ws.desired,
        &observed,
        &planner_settings(&ws.config),
        prepared.as_ref(),
    );
    Ok(Planned {
        workspace: ws,
        plan,
        observed,
    })
}
