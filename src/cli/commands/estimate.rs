//! `estimate`: each segment's audience over a file of endpoint records, and the segments
//! compiled into one program (shared with `sql`).

use super::*;
use crate::manifests::workspace::Workspace;
use crate::reconcile::pipeline::{Inputs, Overrides};
use crate::text::{err, out};
use std::path::Path;

/// `estimate`: per segment, how many endpoint records of FILE belong to it.
pub fn estimate(
    dir: &Path,
    config: Option<&Path>,
    endpoints: &Path,
    as_of: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    use crate::audience::records;
    let ws = load(&Inputs {
        dir: dir.to_path_buf(),
        config: config.map(Path::to_path_buf),
        overrides: Overrides::default(),
    })?;
    let as_of = parse_as_of(as_of)?;
    let compiled = compile_segments(&ws, as_of, &[], Unreadable::Note)?;
    let (program, counted) = (compiled.program, compiled.segments);
    let targets: Vec<_> = counted.iter().map(|c| c.node).collect();
    let input = endpoints_input(endpoints)?;
    let progress = input.progress.clone();
    let t = records::with_progress(&progress, || {
        records::tally_input(input, &program, &targets)
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
            .map(|(c, n)| {
                serde_json::json!({
                    "application": ws.desired.apps[c.app].key.to_string(),
                    "segment": c.name,
                    "endpoints": n,
                    "share_percent": (share(*n) * 100.0).round() / 100.0,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "format_version": 1,
            "as_of": crate::audience::impact::instant_text(as_of),
            "records_read": t.read,
            "records_rejected": t.rejected,
            "rejected_lines": t.rejected_lines,
            "segments": segments,
        });
        out(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
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
        out(&format!("{line}.\n"));
        let mut current = usize::MAX;
        for (c, n) in counted.iter().zip(&t.counts) {
            if c.app != current {
                current = c.app;
                out(&format!(
                    "\nApplication {}\n  {:<32} {:>10}  {:>8}\n",
                    crate::text::safe(&ws.desired.apps[current].key.to_string()),
                    "SEGMENT",
                    "ENDPOINTS",
                    "SHARE"
                ));
            }
            out(&format!(
                "  {:<32} {:>10}  {:>6.2} %\n",
                c.name,
                crate::text::thousands(*n),
                share(*n)
            ));
        }
    }
    Ok(exit::OK)
}

/// What to do with an imported segment whose file cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Say so on standard error; it holds no endpoint (estimate).
    Note,
    /// Fail, when a selected segment reads it (sql: the answer would be wrong).
    Refuse,
}

/// One segment compiled for counting.
#[derive(Debug, Clone)]
pub struct CompiledSegment {
    /// Its application's index in the workspace.
    pub app: usize,
    pub name: String,
    pub node: crate::audience::evaluate::NodeId,
}

/// The workspace's segments (all, or those named in `only`), with their bases, compiled.
pub struct Compiled {
    pub program: crate::audience::evaluate::Program,
    pub segments: Vec<CompiledSegment>,
}

/// Compiles the segments of every application of `ws`, base segments resolved by name and
/// imported segments by their files, as `estimate`, `plan --endpoints` and `sql` read them.
pub fn compile_segments(
    ws: &Workspace,
    as_of: time::OffsetDateTime,
    only: &[String],
    unreadable: Unreadable,
) -> anyhow::Result<Compiled> {
    use crate::audience::evaluate::{Catalog, Program};
    let mut program = Program::new(as_of);
    let mut segments = Vec::new();
    for (i, app) in ws.desired.apps.iter().enumerate() {
        let (mut imported, unread) = crate::audience::sources::members_by_name(app);
        if unreadable == Unreadable::Refuse {
            // Unknown, so that a segment reading one is found below.
            for (name, _) in &unread {
                imported.remove(name);
            }
        }
        if unreadable == Unreadable::Note {
            for (name, why) in &unread {
                err(&format!(
                    "note: imported segment {} counts no endpoint here: {}\n",
                    crate::text::safe(name),
                    crate::text::safe(why)
                ));
            }
        }
        let catalog = Catalog {
            segments: app
                .segments
                .iter()
                .filter(|s| s.import.is_none())
                .map(|s| (s.name.clone(), &s.spec))
                .collect(),
            key_of_id: Default::default(),
            imported,
        };
        for s in &app.segments {
            if only.is_empty() || only.contains(&s.name) {
                segments.push(CompiledSegment {
                    app: i,
                    name: s.name.clone(),
                    node: program.add(i, &catalog, &s.name),
                });
            }
        }
        program.refuse_too_deep().map_err(anyhow::Error::msg)?;
        if unreadable == Unreadable::Refuse {
            if let Some((name, why)) = unread
                .iter()
                .find(|(name, _)| program.unknown(i).any(|k| k == name))
            {
                anyhow::bail!(
                    "imported segment {} cannot be compiled: its file cannot be read: {}",
                    crate::text::safe(name),
                    crate::text::safe(why)
                );
            }
        }
    }
    if let Some(missing) = only
        .iter()
        .find(|n| !segments.iter().any(|s| &s.name == *n))
    {
        let names: Vec<&str> = ws
            .desired
            .apps
            .iter()
            .flat_map(|a| a.segments.iter().map(|s| s.name.as_str()))
            .collect();
        let hint = crate::model::closest(missing, &names)
            .map(|c| format!(" (did you mean {}?)", crate::text::safe(c)))
            .unwrap_or_default();
        anyhow::bail!(
            "--segment {}: no segment of that name in the manifests{hint}",
            crate::text::safe(missing)
        );
    }
    Ok(Compiled { program, segments })
}
