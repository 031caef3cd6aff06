//! What `convert` reports: every mapping that is not exact, per segment and field, located,
//! as text (a terminal or a CI log), markdown (the migration's pull request) or JSON.

use std::fmt::Write as _;

use serde_json::json;

use super::markdown::{md_code, md_escape};
use crate::manifests::convert::{Conversion, Fit, Note};
use crate::text::{plural, safe, thousands};

fn summary(c: &Conversion) -> String {
    let approximate = c.notes.iter().filter(|n| n.fit == Fit::Approximate).count();
    let impossible = c.notes.len() - approximate;
    let segments = c.definitions.len();
    let mut s = format!(
        "{} → {}; {} not exact ({approximate} approximate, {impossible} impossible)",
        plural(segments, "Pinpoint segment"),
        plural(segments, "Customer Profiles segment definition"),
        plural(c.notes.len(), "mapping"),
    );
    if c.refused {
        s.push_str(" (refused: nothing written)");
    }
    s
}

fn fit_word(fit: Fit) -> &'static str {
    match fit {
        Fit::Approximate => "approximate",
        Fit::Impossible => "impossible",
    }
}

fn mark(fit: Fit) -> &'static str {
    match fit {
        Fit::Approximate => "~",
        Fit::Impossible => "✗",
    }
}

/// The notes of each segment, in the order the segments were converted.
fn by_segment(c: &Conversion) -> Vec<(&crate::manifests::convert::Definition, Vec<&Note>)> {
    c.definitions
        .iter()
        .map(|d| {
            let notes = c
                .notes
                .iter()
                .filter(|n| n.application == d.application && n.segment == d.name)
                .collect();
            (d, notes)
        })
        .collect()
}

/// Why the two counts differ, in one line.
const AUDIENCE_NOTE: &str = "Pinpoint counts endpoints, Customer Profiles counts profiles (one per user); calculated attributes (recency) are not computed here, so criteria on them match no profile";

/// The report as text.
pub fn convert_text(c: &Conversion) -> String {
    let mut out = format!("segmentctl convert: {}\n", summary(c));
    for (d, notes) in by_segment(c) {
        let _ = write!(out, "\n{} ({}:{})", safe(&d.name), safe(&d.file), d.line);
        if notes.is_empty() {
            out.push_str(": exact\n");
            continue;
        }
        out.push('\n');
        for n in notes {
            let became = if n.became.is_empty() {
                String::new()
            } else {
                format!(" → {}", safe(&n.became))
            };
            let _ = writeln!(
                out,
                "  {} {} (line {}){became}\n      {}: {}",
                mark(n.fit),
                safe(&n.field),
                n.line,
                fit_word(n.fit),
                safe(&n.why)
            );
        }
    }
    if let Some(a) = &c.audiences {
        let _ = write!(
            out,
            "\nAudiences over {}: {} endpoints → {} profiles\n({AUDIENCE_NOTE}).\n  {:<32} {:>10} {:>10}\n",
            a.file,
            thousands(a.endpoints),
            thousands(a.profiles),
            "SEGMENT",
            "ENDPOINTS",
            "PROFILES"
        );
        for r in &a.segments {
            let _ = writeln!(
                out,
                "  {:<32} {:>10} {:>10}",
                safe(&r.segment),
                thousands(r.endpoints),
                thousands(r.profiles)
            );
        }
    }
    out
}

/// A code span in a table cell: GitHub splits a row at every `|`, in code spans too.
fn cell_code(s: &str) -> String {
    md_code(s).replace('|', "\\|")
}

/// The report as markdown: a summary, then one table row per mapping that is not exact.
pub fn convert_markdown(c: &Conversion) -> String {
    let mut out = format!(
        "### segmentctl convert → Customer Profiles\n\n{}\n",
        md_escape(&summary(c))
    );
    let exact: Vec<String> = by_segment(c)
        .iter()
        .filter(|(_, notes)| notes.is_empty())
        .map(|(d, _)| md_code(&d.name))
        .collect();
    if !exact.is_empty() {
        let _ = write!(out, "\nExact: {}.\n", exact.join(", "));
    }
    if let Some(a) = &c.audiences {
        let _ = write!(
            out,
            "\nAudiences over {}: {} endpoints → {} profiles ({}).\n\n| segment | endpoints | profiles |\n|---|--:|--:|\n",
            md_code(&a.file),
            thousands(a.endpoints),
            thousands(a.profiles),
            md_escape(AUDIENCE_NOTE)
        );
        for r in &a.segments {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell_code(&r.segment),
                thousands(r.endpoints),
                thousands(r.profiles)
            );
        }
    }
    if c.notes.is_empty() {
        return out;
    }
    out.push_str("\n| segment | field | fit | becomes | why |\n|---|---|---|---|---|\n");
    for n in &c.notes {
        let _ = writeln!(
            out,
            "| {} | {} ({}:{}) | {} | {} | {} |",
            cell_code(&n.segment),
            cell_code(&n.field),
            md_escape(&n.file),
            n.line,
            match n.fit {
                Fit::Approximate => "approximate",
                Fit::Impossible => "**impossible**",
            },
            if n.became.is_empty() {
                "–".to_string()
            } else {
                cell_code(&n.became)
            },
            md_escape(&n.why)
        );
    }
    out
}

/// The report as JSON: the definitions' names and sources, and every note.
pub fn convert_json(c: &Conversion) -> serde_json::Value {
    json!({
        "refused": c.refused,
        "definitions": c.definitions.iter().map(|d| json!({
            "application": d.application,
            "name": d.name,
            "file": d.file,
            "line": d.line,
        })).collect::<Vec<_>>(),
        "notes": c.notes,
        "audiences": c.audiences,
    })
}
