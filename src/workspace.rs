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

/// A folder as read from disk, not yet parsed.
pub struct Files {
    pub config: Result<Config, ManifestError>,
    pub sources: Vec<crate::manifest::Source>,
    /// Files (or the folder) that could not be read.
    pub errors: Vec<ManifestError>,
}

/// Reads `dir` (and `config`, or `dir/segmentctl.yaml`) without parsing the manifests.
pub fn read(dir: &Path, config: Option<&Path>) -> Files {
    let cfg = Config::load(dir, config);
    match crate::folder::read(dir) {
        Ok((sources, errors)) => Files {
            config: cfg,
            sources,
            errors,
        },
        Err(e) => Files {
            config: cfg,
            sources: Vec::new(),
            errors: vec![e],
        },
    }
}

/// Reads `dir` (and `config`, or `dir/segmentctl.yaml`).
///
/// Errors: every located mistake in every file, sorted by file and line.
pub fn load(dir: &Path, config: Option<&Path>) -> Result<Workspace, Vec<ManifestError>> {
    check(read(dir, config))
}

/// Parses and checks a folder read by [`read`] (pure: no I/O).
///
/// Errors: every located mistake in every file, sorted by file and line.
pub fn check(files: Files) -> Result<Workspace, Vec<ManifestError>> {
    let Files {
        config: cfg,
        sources,
        errors: read_errors,
    } = files;
    let loaded = manifest::load_sources(&sources);
    let mut errors = loaded.errors;
    errors.extend(read_errors);
    let cfg = match cfg {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let desired = if loaded.recovered.is_empty() {
        match desired::build(&loaded.documents) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.extend(e);
                None
            }
        }
    } else {
        // Documents with mistakes take part too, so that a reference they make or a name
        // they repeat is checked in this run; what is about their stand-ins is not shown.
        let mut all = loaded.documents.clone();
        all.extend(loaded.recovered.iter().map(|r| r.document.clone()));
        if let Err(e) = desired::build(&all) {
            errors.extend(e.into_iter().filter(|e| {
                !loaded
                    .recovered
                    .iter()
                    .any(|r| r.touches(&e.file, e.line, &e.path))
            }));
        }
        None
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
