//! The manifest folder as a whole: its configuration and its manifests, read into a desired
//! state. This is the reconciler's front edge, the only part of it that reads files.

use std::path::Path;

use crate::config::Config;
use crate::desired::{self, DesiredState};
use crate::manifest::{self, ManifestError};

/// A folder, read and checked.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub config: Config,
    pub desired: DesiredState,
    /// How many manifest documents were read.
    pub documents: usize,
    /// The manifest files as read.
    pub sources: Vec<crate::manifest::Source>,
}

/// Reads `dir` (and `config`, or `dir/segmentctl.yaml`).
///
/// Errors: every located mistake in every file, sorted by file and line.
pub fn load(dir: &Path, config: Option<&Path>) -> Result<Workspace, Vec<ManifestError>> {
    let cfg = Config::load(dir, config);
    let loaded = manifest::load_dir(dir).map_err(|e| vec![e])?;
    let sources = loaded.sources;
    let mut errors = loaded.errors;
    let cfg = match cfg {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let desired = match desired::build(&loaded.documents) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    match (cfg, desired) {
        (Some(config), Some(desired)) if errors.is_empty() => Ok(Workspace {
            config,
            desired,
            documents: loaded.documents.len(),
            sources,
        }),
        _ => {
            errors.sort();
            errors.dedup();
            Err(errors)
        }
    }
}
