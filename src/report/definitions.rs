//! A Customer Profiles domain's plan, as text (like `terraform plan`) and as markdown (the
//! pull-request comment). Every replace says how it is carried out: in place (absent for a
//! moment) or under a new name, and what is re-pointed.

use std::fmt::Write as _;

use super::markdown::{fenced, html_text};
use super::{md_code, md_escape};
use crate::plan::definitions::{Action, DefinitionsPlan, Replacement, Step};
use crate::text::{plural, safe};

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn sign(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::Create => ("+", "32"),
        Action::Delete => ("-", "31"),
        Action::Replace => ("-/+", "33"),
        Action::Tag | Action::Adopt => ("~", "33"),
    }
}

/// `Plan: 1 to create, 2 to replace, 1 to delete.`
pub fn summary(p: &DefinitionsPlan) -> String {
    if p.is_empty() && p.create_domain {
        return "Plan: the domain to create, no definition to change.".into();
    }
    if p.is_empty() && !p.domain_drift.is_empty() {
        return "No changes: the definitions match the manifests (a domain is never changed)."
            .into();
    }
    if p.is_empty() {
        return "No changes: the domain matches the manifests.".into();
    }
    let mut parts = Vec::new();
    for (a, word) in [
        (Action::Create, "to create"),
        (Action::Replace, "to replace"),
        (Action::Tag, "to tag"),
        (Action::Adopt, "to adopt"),
        (Action::Delete, "to delete"),
    ] {
        let n = p.count(a);
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let blocked = p.steps.iter().filter(|s| !s.blocked.is_empty()).count();
    let mut out = format!("Plan: {}.", parts.join(", "));
    if blocked > 0 {
        out.push_str(&format!(" {} blocked.", plural(blocked, "step")));
    }
    out
}

/// A value of the domain's settings as JSON (users' text made safe), or `unset`.
fn setting(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "unset".into(), |v| safe(&v.to_string()).into_owned())
}

/// What the plan says of the domain itself, before its summary: created (with the `Domain`
/// manifest's settings), or where it differs from that manifest, field by field (indented).
fn domain_lines(p: &DefinitionsPlan) -> Vec<String> {
    let mut out = Vec::new();
    let domain = safe(&p.domain);
    match (&p.domain_manifest, p.create_domain) {
        (Some(m), true) => out.push(format!(
            "The domain {domain} does not exist yet: apply creates it with the settings of {}: {}.",
            safe(&m.at),
            setting(serde_json::to_value(&m.spec).ok().as_ref())
        )),
        (None, true) => out.push(format!(
            "The domain {domain} does not exist yet: apply creates it."
        )),
        (_, false) => {}
    }
    if let (Some(m), false) = (&p.domain_manifest, p.domain_drift.is_empty()) {
        out.push(format!(
            "warning: the domain {domain} differs from the Domain manifest at {}; segmentctl creates a domain but never changes one (aws customer-profiles update-domain does):",
            safe(&m.at)
        ));
        for d in &p.domain_drift {
            out.push(format!(
                "  {}: {} on the domain, {} in the manifest",
                safe(&d.field),
                setting(d.live.as_ref()),
                setting(d.desired.as_ref())
            ));
        }
    }
    out
}

/// What a step does, in words, after its name.
fn how(s: &Step) -> String {
    let what = how_carried_out(s);
    match (&s.live_name, s.adopted) {
        (Some(l), true) => format!("adopt {}, then {what}", safe(l)),
        _ => what,
    }
}

fn how_carried_out(s: &Step) -> String {
    let live = s.live_name.as_deref().map(|n| safe(n).into_owned());
    let new = s.new_name.as_deref().map(|n| safe(n).into_owned());
    match (s.action, s.replacement) {
        (Action::Create, _) => match &new {
            Some(n) if n != &s.name => format!("as {n}"),
            _ => String::new(),
        },
        (Action::Replace, Some(Replacement::InPlace)) => {
            let name = new.unwrap_or_default();
            match live {
                Some(l) if l != name => format!(
                    "delete {l}, then create {name}: absent in between; nothing builds on it"
                ),
                _ => "delete, then create under the same name: absent in between; nothing builds on it"
                    .to_string(),
            }
        }
        (Action::Replace, _) => {
            let users: Vec<String> = s.dependants.iter().map(|d| safe(d).into_owned()).collect();
            let live = live.unwrap_or_default();
            let mut why = Vec::new();
            if !users.is_empty() {
                why.push(format!(
                    "{} {} on {live}",
                    users.join(", "),
                    if users.len() == 1 { "builds" } else { "build" }
                ));
            }
            if !s.campaigns.is_empty() {
                why.push(format!(
                    "{} {live}",
                    if s.campaigns.len() == 1 {
                        "a campaign reads"
                    } else {
                        "campaigns read"
                    }
                ));
            }
            format!(
                "create {} beside it ({}), then delete {live}",
                new.unwrap_or_default(),
                why.join("; ")
            )
        }
        (Action::Tag, _) => match live {
            Some(l) if l != s.name => format!("tags only, on {l}"),
            _ => "tags only".into(),
        },
        (Action::Adopt, _) if !s.blocked.is_empty() => {
            format!("take over {}", live.unwrap_or_default())
        }
        (Action::Adopt, _) => format!(
            "take over {} as it is: tagged as managed",
            live.unwrap_or_default()
        ),
        (Action::Delete, _) => {
            let cause = s.cause.as_deref().map(safe).unwrap_or_default();
            match live {
                Some(l) if l != s.name => format!("{l}: {cause}"),
                _ => cause.into_owned(),
            }
        }
    }
}

/// `Audiences counted over 250 profiles in profiles.jsonl (1 rejected, line 4).`
fn profiles_line(r: &crate::plan::definitions::ProfilesRead) -> String {
    let mut out = format!(
        "Audiences counted over {} in {}",
        plural(r.profiles as usize, "profile"),
        safe(&r.file)
    );
    if r.rejected > 0 {
        out.push_str(&format!(
            " ({} rejected{})",
            r.rejected,
            r.first_rejected
                .map(|l| format!(", line {l}"))
                .unwrap_or_default()
        ));
    }
    out.push('.');
    out
}

/// `audience: 12 → 15 profiles (+25.0 %)`, `audience: 3 profiles (new definition)`.
fn audience_line(a: &crate::plan::definitions::ProfileAudience) -> String {
    let n = |v: u64| plural(v as usize, "profile");
    match (a.before, a.after) {
        (None, Some(after)) => format!("audience: {} (new definition)", n(after)),
        (Some(before), None) => format!("audience: {} → none (deleted)", n(before)),
        (Some(b), Some(a)) if b == a => format!("audience: {} (unchanged)", n(a)),
        (Some(b), Some(a)) => {
            let change = if b == 0 {
                String::new()
            } else {
                format!(" ({:+.1} %)", (a as f64 - b as f64) * 100.0 / b as f64)
            };
            format!("audience: {b} → {}{change}", n(a))
        }
        (None, None) => "audience: none".into(),
    }
}

/// The lines under a step: drift, audience, changes, tags, why blocked.
fn details(s: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = &s.audience {
        out.push(audience_line(a));
    }
    if s.drift {
        out.push("drift: re-created outside segmentctl since it was applied".to_string());
    }
    if s.action == Action::Create {
        if let Some(spec) = &s.spec {
            // What the manifest says, segmentctl's own tags aside.
            let mut body = spec.clone();
            body.tags = spec
                .tags
                .as_ref()
                .map(|t| {
                    t.iter()
                        .filter(|(k, _)| !crate::plan::is_own_tag(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<crate::model::Tags>()
                })
                .filter(|t| !t.is_empty());
            let v = serde_json::to_value(&body).unwrap_or_default();
            out.extend(
                crate::plan::diff::diff(&serde_json::Value::Object(Default::default()), &v)
                    .iter()
                    .map(|c| c.to_string()),
            );
        }
    }
    out.extend(s.changes.iter().map(|c| c.to_string()));
    for (k, v) in &s.tag_changes.add {
        out.push(format!("tag {}: {}", safe(k), safe(v)));
    }
    for k in &s.tag_changes.remove {
        out.push(format!("untag {}", safe(k)));
    }
    if let Some(to) = &s.repoint_to {
        for c in &s.campaigns {
            out.push(format!(
                "re-point the campaign {} (id {}, {}) to {} first",
                safe(&c.name),
                safe(&c.id),
                c.state,
                safe(to)
            ));
        }
    }
    for w in &s.warnings {
        out.push(format!("warning: {}", safe(w)));
    }
    for b in &s.blocked {
        out.push(format!("blocked: {}", safe(b)));
    }
    out
}

/// The plan as text: the target line, the summary, then each step in the order it runs.
pub fn text(p: &DefinitionsPlan, colour: bool) -> String {
    let mut out = String::new();
    if let Some(t) = &p.target {
        let _ = writeln!(out, "{}", t.line());
        let _ = writeln!(out);
    }
    for line in domain_lines(p) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{}", summary(p));
    if let Some(r) = &p.profiles {
        let _ = writeln!(out, "{}", profiles_line(r));
    }
    if !p.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Domain {} (steps in the order they run)",
            safe(&p.domain)
        );
    }
    for s in &p.steps {
        let (mark, code) = sign(s.action);
        let head = format!("{mark:>3} {:<8}", s.action.verb());
        let how = how(s);
        let _ = writeln!(
            out,
            "  {} {}{}",
            paint(colour, code, &head),
            safe(&s.name),
            if how.is_empty() {
                String::new()
            } else {
                format!(" ({how})")
            }
        );
        for d in details(s) {
            let _ = writeln!(out, "      {d}");
        }
    }
    out
}

/// Markdown for a pull-request comment: the summary, a table of steps in order, and each
/// step's changes in a collapsed block (users' text escaped: it never renders as markdown).
pub fn markdown(p: &DefinitionsPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### segmentctl plan: Customer Profiles domain {}\n",
        md_code(&p.domain)
    );
    if let Some(t) = &p.target {
        let _ = writeln!(out, "{}\n", md_escape(&t.line()));
    }
    for line in domain_lines(p) {
        let bullet = if line.starts_with("  ") { "- " } else { "" };
        let _ = writeln!(out, "{bullet}{}", md_escape(line.trim_start()));
    }
    if p.create_domain || !p.domain_drift.is_empty() {
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "**{}**\n", md_escape(&summary(p)));
    if p.is_empty() {
        return out;
    }
    let _ = writeln!(out, "| # | action | definition | how |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (i, s) in p.steps.iter().enumerate() {
        let blocked = if s.blocked.is_empty() { "" } else { " ⛔" };
        let _ = writeln!(
            out,
            "| {} | {}{blocked} | {} | {} |",
            i + 1,
            s.action.verb(),
            md_code(&s.name),
            md_escape(&how(s))
        );
    }
    for (i, s) in p.steps.iter().enumerate() {
        let lines = details(s);
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n<details><summary>{}. {} {}</summary>\n\n{}\n\n</details>",
            i + 1,
            s.action.verb(),
            html_text(&s.name),
            fenced("text", &lines.join("\n"))
        );
    }
    out
}
