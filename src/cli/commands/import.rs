//! `import`: an application's live segments written as manifests, tagged as managed.

use super::*;
use crate::plan::live::TargetInfo;
use crate::plan::{self};
use crate::reconcile::pipeline::Inputs;
use crate::targets::pinpoint::Pinpoint;
use crate::targets::{self, Connection};
use crate::text::{err, out, plural};
use std::path::{Path, PathBuf};

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
    let info = TargetInfo::of(&cfg, &inputs.dir);
    err(&format!("{}\n", info.line()));
    let conn = targets::connect(&cfg, &inputs.dir).await?;
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
        outside_sources(&chosen, &inputs.dir, out_dir)?;
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

/// Refuses, before anything is written or tagged, to import an IMPORT segment whose
/// `file://` source lies outside the folder its manifest will be planned from: `dir` when
/// `out_dir` is inside it, else `out_dir`. A manifest's source is read only inside the
/// manifest folder, so that manifest would not load. Nothing outside is read or copied
/// here: the path comes from the target.
fn outside_sources(
    chosen: &[(String, &crate::model::SegmentResponse)],
    dir: &Path,
    out_dir: &Path,
) -> anyhow::Result<()> {
    use crate::server::objects::{parse, Location};
    let (dir, out) = (resolved(dir), resolved(out_dir));
    let root = if out.starts_with(&dir) { &dir } else { &out };
    let shown = |p: &Path| crate::text::safe(&p.display().to_string()).into_owned();
    let mut outside = Vec::new();
    for (name, s) in chosen {
        let Some(def) = s.import_definition.as_ref().filter(|_| s.is_import()) else {
            continue;
        };
        let Ok(Location::File(path)) = parse(&def.s3_url) else {
            continue;
        };
        let source = resolved(&path);
        if source.starts_with(root) {
            continue;
        }
        let fix = if source.starts_with(&dir) {
            format!("for example --out {}", shown(&dir.join("imported")))
        } else if source.is_file() {
            format!(
                "for example --out {}",
                shown(source.parent().unwrap_or(&source))
            )
        } else {
            "the file is not on this machine: a path on the target's own".to_string()
        };
        outside.push(format!(
            "{name}: its source {} is outside {} ({fix})",
            shown(&source),
            shown(root)
        ));
    }
    if outside.is_empty() {
        return Ok(());
    }
    bail!(
        "cannot import {}: a manifest's source is read only inside the folder it is planned from (DIR when --out is inside it, else --out), and {} not there; nothing was written or tagged\n  {}",
        plural(outside.len(), "imported segment"),
        if outside.len() == 1 { "its source is" } else { "their sources are" },
        outside.join("\n  ")
    )
}

/// `path` as the file system will find it, whether or not it exists yet: absolute, `.` and
/// `..` taken lexically, and links resolved in its deepest existing ancestor.
fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut lexical = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    out.extend(rest.iter().rev());
    out
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
