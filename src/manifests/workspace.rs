//! The manifest folder as a whole: its configuration and its manifests, read into a desired
//! state. This is the reconciler's front edge, the only part of it that reads files.

use std::path::Path;

use crate::manifests::config::Config;
use crate::manifests::desired::{self, DesiredState};
use crate::manifests::manifest::{self, ManifestError};

/// A folder, read and checked.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub config: Config,
    pub desired: DesiredState,
    /// The `SegmentDefinition` manifests (a Customer Profiles target's), bases first. A
    /// folder holds these or Pinpoint manifests, never both.
    pub definitions: Vec<manifest::DefinitionDoc>,
    /// The `Domain` manifest: the settings a missing domain is created with.
    pub domain: Option<manifest::DomainDoc>,
    /// How many manifest documents were read.
    pub documents: usize,
    /// The manifest files as read.
    pub sources: Vec<crate::manifests::manifest::Source>,
}

impl Workspace {
    /// Whether the folder is for a Customer Profiles domain (its `SegmentDefinition`
    /// manifests, or its `Domain` manifest alone).
    pub fn is_profiles(&self) -> bool {
        !self.definitions.is_empty() || self.domain.is_some()
    }
}

/// A folder as read from disk, not yet parsed.
pub struct Files {
    pub config: Result<Config, Vec<ManifestError>>,
    pub sources: Vec<crate::manifests::manifest::Source>,
    /// Files (or the folder) that could not be read.
    pub errors: Vec<ManifestError>,
}

/// Reads `dir` (and `config`, or `dir/segmentctl.yaml`) without parsing the manifests.
pub fn read(dir: &Path, config: Option<&Path>) -> Files {
    let cfg = Config::load(dir, config);
    match crate::manifests::folder::read(dir, config) {
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
    let mut ws = check(read(dir, config))?;
    resolve_sources(dir, &mut ws.desired).map(|()| ws)
}

/// Resolves every local import source inside the manifest folder `dir` (or the folder of
/// one manifest file): its canonical path, a regular file or a folder, links followed only
/// within the folder. A source that is not is a located error at `source.url`: a pull
/// request cannot make `estimate`, `sql` or `plan` read, or print, a file outside it.
pub fn resolve_sources(dir: &Path, desired: &mut DesiredState) -> Result<(), Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut root = None;
    for app in &mut desired.apps {
        for seg in &mut app.segments {
            let Some(imp) = seg.import.as_mut() else {
                continue;
            };
            let Some(local) = imp.local.clone() else {
                continue;
            };
            let root = match &root {
                Some(r) => r,
                None => match crate::manifests::folder::root_of(dir) {
                    Ok(r) => root.insert(r),
                    Err(e) => {
                        errors.push(crate::manifests::folder::file_error(
                            dir.display().to_string(),
                            format!("cannot read the folder: {e}"),
                        ));
                        return Err(errors);
                    }
                },
            };
            match crate::manifests::folder::resolve_source(root, &local) {
                Ok(path) => {
                    imp.url = desired::file_url(&path);
                    imp.local = Some(path);
                }
                Err(why) => errors.push(seg.origin.error(
                    "source.url",
                    format!("{}: {why}", crate::text::safe(&imp.source.url)),
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort();
        Err(errors)
    }
}

/// Parses and checks a folder read by [`read`] (pure: no I/O).
///
/// Errors: every located mistake in every file, sorted by file and line.
pub fn check(files: Files) -> Result<Workspace, Vec<ManifestError>> {
    check_at(files, crate::par::Priority::Normal)
}

/// As [`check`], the parsing threads at `priority` (the same result).
pub fn check_at(
    files: Files,
    priority: crate::par::Priority,
) -> Result<Workspace, Vec<ManifestError>> {
    let Files {
        config: cfg,
        sources,
        errors: read_errors,
    } = files;
    let loaded = manifest::load_sources_at(&sources, priority);
    let mut errors = loaded.errors;
    errors.extend(read_errors);
    let cfg = match cfg {
        Ok(c) => Some(c),
        Err(e) => {
            errors.extend(e);
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
    let definitions = match crate::manifests::definitions::build(&loaded.definitions) {
        Ok(d) => d,
        Err(e) => {
            errors.extend(e);
            Vec::new()
        }
    };
    let domain = crate::manifests::definitions::domain(&loaded.domains).unwrap_or_else(|e| {
        errors.extend(e);
        None
    });
    if let Some(p) = loaded.documents.first() {
        let mixed = loaded
            .definitions
            .first()
            .map(|d| (d.error("kind", ""), "SegmentDefinition"))
            .or_else(|| {
                loaded
                    .domains
                    .first()
                    .map(|d| (d.error("kind", ""), "Domain"))
            });
        if let Some((mut e, kind)) = mixed {
            e.message = format!(
                "this folder also holds Pinpoint manifests (the first at {}:{}); a folder is applied to one target: keep {kind} manifests in a folder of their own",
                p.file,
                p.line()
            );
            errors.push(e);
        }
    }
    match (cfg, desired) {
        (Some(config), Some(desired)) if errors.is_empty() => Ok(Workspace {
            config,
            desired,
            documents: loaded.documents.len() + definitions.len() + usize::from(domain.is_some()),
            definitions,
            domain,
            sources,
        }),
        _ => {
            errors.sort();
            errors.dedup();
            Err(errors)
        }
    }
}
