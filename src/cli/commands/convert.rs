//! `convert`: a folder's Pinpoint segments written as Customer Profiles `SegmentDefinition`
//! manifests, with the report of every mapping that is not exact.

use std::path::{Path, PathBuf};

use crate::manifests::convert::{self, Conversion, Definition};
use crate::reconcile::pipeline::{Inputs, Overrides};
use crate::report::convert::{convert_json, convert_markdown, convert_text};
use crate::text::{out, safe};

use super::*;

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertFormat {
    Text,
    Markdown,
    Json,
}

/// What `convert` does, validated.
pub struct ConvertOptions {
    pub dir: PathBuf,
    pub config: Option<PathBuf>,
    /// Where the manifests are written: a folder that does not exist or is empty. Without
    /// it, only the report is printed.
    pub out: Option<PathBuf>,
    pub drop_unsupported: bool,
    pub format: ConvertFormat,
    /// Count each segment over these endpoint records, before (endpoints) and after
    /// (profiles).
    pub endpoints: Option<PathBuf>,
    pub as_of: Option<String>,
}

/// `convert`: prints the report; writes the manifests unless a criterion cannot be
/// converted (exit 1 then, nothing written).
pub fn convert(a: &ConvertOptions) -> anyhow::Result<u8> {
    let ws = load(&Inputs {
        dir: a.dir.clone(),
        config: a.config.clone(),
        overrides: Overrides::default(),
    })?;
    let mut c = convert::convert(&ws.desired, a.drop_unsupported);
    if let Some(file) = &a.endpoints {
        c.audiences = Some(audiences(&ws, &c, file, a.as_of.as_deref())?);
    }
    if let Some(out_dir) = &a.out {
        outside(&a.dir, out_dir)?;
    }
    // The report is printed whatever happens to the files.
    match a.format {
        ConvertFormat::Text => out(&convert_text(&c)),
        ConvertFormat::Markdown => out(&convert_markdown(&c)),
        ConvertFormat::Json => out(&format!("{:#}\n", convert_json(&c))),
    }
    if let (Some(dir), false) = (&a.out, c.refused) {
        write(dir, &c)?;
        err(&format!(
            "wrote {} to {}\n",
            crate::text::plural(c.definitions.len(), "SegmentDefinition manifest"),
            safe(&dir.display().to_string())
        ));
    }
    Ok(if c.refused { exit::ERROR } else { exit::OK })
}

/// Writes one manifest per definition into `dir` (one folder per application when there
/// are several: each is a domain of its own). `dir` must not exist or be empty: nothing of
/// what is there is overwritten, and no file is created through a link.
fn write(dir: &Path, c: &Conversion) -> anyhow::Result<()> {
    let shown = safe(&dir.display().to_string()).into_owned();
    if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return Err(anyhow::anyhow!(
            "--out {shown}: exists and is not a folder (a file or a link); give a new or empty folder"
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("--out {shown}: cannot create the folder: {e}"))?;
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("--out {shown}: cannot read the folder: {e}"))?;
    if entries.next().is_some() {
        return Err(anyhow::anyhow!(
            "--out {shown}: the folder is not empty; convert writes into a new or empty folder and never overwrites"
        ));
    }
    let apps: std::collections::BTreeSet<&str> = c
        .definitions
        .iter()
        .map(|d| d.application.as_str())
        .collect();
    for d in &c.definitions {
        let folder = if apps.len() > 1 {
            let f = dir.join(&d.application);
            std::fs::create_dir_all(&f)?;
            f
        } else {
            dir.to_path_buf()
        };
        let path = folder.join(format!("{}.yaml", d.name));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                anyhow::anyhow!("cannot write {}: {e}", safe(&path.display().to_string()))
            })?;
        let siblings: std::collections::BTreeSet<&str> = c
            .definitions
            .iter()
            .filter(|o| o.application == d.application)
            .map(|o| o.name.as_str())
            .collect();
        std::io::Write::write_all(&mut file, manifest(d, &siblings)?.as_bytes())?;
    }
    Ok(())
}

/// One `SegmentDefinition` manifest, with where it came from; a base among `siblings` (the
/// definitions written beside it) is named by `Ref`.
fn manifest(d: &Definition, siblings: &std::collections::BTreeSet<&str>) -> anyhow::Result<String> {
    use crate::manifests::manifest::definition::{render, DefinitionMetadata};
    let metadata = DefinitionMetadata {
        name: d.name.clone(),
        protect: false,
        adopt: None,
    };
    let yaml = render(&metadata, &d.spec, siblings)?;
    // The path is the user's: shown, never obeyed (a newline in it would start a document).
    Ok(format!(
        "# Converted by `segmentctl convert` from the Pinpoint segment {} ({}:{}).\n{yaml}",
        d.name,
        safe(&d.file).replace(['\n', '\r'], " "),
        d.line
    ))
}

/// `--out` may not be inside the manifest folder: the manifests written there would be
/// read back as the folder's own.
fn outside(dir: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let Ok(root) = dir.canonicalize() else {
        return Ok(()); // the folder loaded, so this does not happen; the load said why
    };
    // The nearest existing ancestor, made canonical, then the rest as given.
    let mut existing = out_dir.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(name)) => {
                rest.push(name.to_os_string());
                existing = if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                };
            }
            _ => break,
        }
    }
    let mut full = existing.canonicalize().unwrap_or(existing);
    full.extend(rest.iter().rev());
    if full.starts_with(&root) {
        return Err(anyhow::anyhow!(
            "--out {}: inside the manifest folder {}, where the written manifests would be read as its own; write them elsewhere",
            safe(&out_dir.display().to_string()),
            safe(&dir.display().to_string())
        ));
    }
    Ok(())
}

/// Each segment's audience over `file`: its endpoints by the Pinpoint segment, and its
/// profiles (the endpoints gathered by user, as `audience::profiles_of` maps them) by the
/// converted definition.
fn audiences(
    ws: &crate::manifests::workspace::Workspace,
    c: &Conversion,
    file: &Path,
    as_of: Option<&str>,
) -> anyhow::Result<convert::Audiences> {
    use crate::audience::evaluate::profiles::DefinitionCatalog;
    use crate::audience::evaluate::Program;
    use crate::audience::profiles_of::{gather, Mapping};
    use crate::audience::records;
    let [app] = ws.desired.apps.as_slice() else {
        return Err(anyhow::anyhow!(
            "--endpoints counts one application's segments; the folder has {}",
            ws.desired.apps.len()
        ));
    };
    let shown = safe(&file.display().to_string()).into_owned();
    let as_of = parse_as_of(as_of)?;
    let compiled = compile_segments(ws, as_of, &[], Unreadable::Note)?;
    let targets: Vec<_> = compiled.segments.iter().map(|s| s.node).collect();
    let tally = records::tally_input(endpoints_input(file)?, &compiled.program, &targets)
        .with_context(|| format!("cannot read {shown}"))?;

    let (members, _) = crate::audience::sources::members_by_name(app);
    let mapping = Mapping {
        number_text: convert::number_text,
        imported: members
            .iter()
            .map(|(name, m)| (convert::import_attribute(name), &**m))
            .collect(),
    };
    // Read a line at a time; the first error stops the reading and is reported.
    let mut failed = None;
    let lines = std::io::BufRead::lines(endpoints_input(file)?.reader)
        .map_while(|l| l.map_err(|e| failed = Some(e)).ok());
    let gathered = gather(lines, &mapping);
    if let Some(e) = failed {
        return Err(anyhow::anyhow!(
            "cannot read {shown}: {e} (endpoint records are UTF-8 JSON lines)"
        ));
    }
    let empty = crate::model::profiles::SegmentGroups::default();
    let catalog = DefinitionCatalog {
        definitions: c
            .definitions
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    d.spec.segment_groups.as_ref().unwrap_or(&empty),
                )
            })
            .collect(),
    };
    let mut program = Program::for_profiles(as_of);
    let nodes: Vec<_> = c
        .definitions
        .iter()
        .map(|d| program.add_definition(0, &catalog, &d.name))
        .collect();
    program.refuse_too_deep().map_err(anyhow::Error::msg)?;
    let mut profiles = vec![0u64; nodes.len()];
    let (mut record, mut out) = (program.record(), Vec::new());
    for p in &gathered.profiles {
        program
            .read(p, &mut record)
            .map_err(|e| anyhow::anyhow!("a gathered profile does not read: {e}"))?;
        program.run(&record, &mut out);
        for (count, node) in profiles.iter_mut().zip(&nodes) {
            *count += u64::from(out[*node]);
        }
    }
    let segments = compiled
        .segments
        .iter()
        .zip(&tally.counts)
        .map(|(s, endpoints)| convert::AudienceRow {
            segment: s.name.clone(),
            endpoints: *endpoints,
            profiles: c
                .definitions
                .iter()
                .position(|d| d.name == s.name)
                .map_or(0, |i| profiles[i]),
        })
        .collect();
    Ok(convert::Audiences {
        file: shown,
        endpoints: tally.read,
        profiles: gathered.profiles.len() as u64,
        segments,
    })
}
