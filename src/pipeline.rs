//! The reconciler's one pipeline, for the commands and the daemon alike: the folder is
//! loaded and checked, the settings resolved (the configuration with the command line's
//! overrides), the target observed, and the plan made. Nothing here prints: the callers
//! decide how to show what happened.

use std::path::PathBuf;

use crate::config::{Config, Target};
use crate::live::Observed;
use crate::manifest::ManifestError;
use crate::observe::{self, ObserveError, Scope};
use crate::pinpoint::Pinpoint;
use crate::plan::{self, Plan};
use crate::workspace::{self, Workspace};

/// What the command line says beside the folder.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub target: Option<Target>,
    pub prune: bool,
}

impl Overrides {
    pub fn apply_to(&self, cfg: &mut Config) {
        if let Some(t) = &self.target {
            cfg.target = t.clone();
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
    inputs.overrides.apply_to(&mut ws.config);
    Ok(ws)
}

/// What the planner needs of the settings.
pub fn planner_settings(cfg: &Config) -> plan::Settings {
    plan::Settings {
        owner: cfg.owner.clone(),
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
        owner: &ws.config.owner,
        owns,
    };
    let observed = observe::observe(p, &ws.desired, &scope).await?;
    let plan = plan::plan(&ws.desired, &observed, &planner_settings(&ws.config));
    Ok((plan, observed))
}

/// Accepts every application.
pub fn everything(_: &str) -> bool {
    true
}
