//! The plan as text, like `terraform plan`: for a terminal (coloured only there) or a CI log.

use crate::plan::diff::{self, Change};
use crate::plan::{Action, AppPlan, Plan, SegmentStep};
use crate::text::safe;
use std::fmt::Write as _;

use super::*;

#[derive(Clone, Copy)]
struct Style {
    colour: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn action(&self, a: Action, text: &str) -> String {
        let code = match a {
            Action::Create => "32",
            Action::Delete => "31",
            _ => "33",
        };
        self.paint(code, text)
    }
}

/// The plan as text, like `terraform plan`: the summary first, then per application each
/// segment's changed criteria in words and values.
pub fn text(plan: &Plan, colour: bool) -> String {
    let st = Style { colour };
    let mut out = String::new();
    text_head(&mut out, plan, st);
    for app in &plan.apps {
        let has_content = !app.steps.is_empty()
            || !app.affected.is_empty()
            || app.app_step.is_some()
            || app.error.is_some()
            || !app.warnings.is_empty();
        if has_content {
            text_app(&mut out, app, st);
        }
    }
    out
}

/// The target line, the revision, and the summary.
fn text_head(out: &mut String, plan: &Plan, st: Style) {
    let summary = plan.summary();
    if let Some(t) = &plan.target {
        let _ = writeln!(out, "{}", t.line());
        if let Some(r) = &plan.revision {
            let _ = writeln!(out, "Revision: {}", crate::text::safe(r));
        }
        if plan.documents == 0 {
            let _ = writeln!(
                out,
                "{} no manifests were found in {}: nothing is declared",
                st.paint("33", "warning:"),
                crate::text::safe(plan.dir.as_deref().unwrap_or("the folder"))
            );
        }
        out.push('\n');
    }
    if plan.is_empty() && summary.errors == 0 {
        out.push_str("No changes. The live segments match the manifests.\n");
    } else {
        let _ = writeln!(out, "{}", st.paint("1", &summary.line()));
        if let Some(a) = &plan.audience {
            let _ = writeln!(out, "{}", audience_source(a, &|f| f.to_string()));
        }
    }
}

/// One application: its error, its own step, each segment step, the segments affected
/// through a changed base, and its warnings.
fn text_app(out: &mut String, app: &AppPlan, st: Style) {
    let _ = writeln!(
        out,
        "\nApplication {}",
        st.paint("1", &safe(&app.display()))
    );
    if let Some(e) = &app.error {
        let _ = writeln!(out, "  {} {}", st.paint("31", "error:"), safe(e));
    }
    if let Some(a) = &app.app_step {
        if a.create {
            let _ = writeln!(
                out,
                "  {} create application {}",
                st.paint("32", "+"),
                Escape::Text.quote(&a.name)
            );
        }
        if let Some(line) = tag_line(&a.tag_changes) {
            let _ = writeln!(out, "      {line}");
        }
    }
    for step in &app.steps {
        text_step(out, step, st);
    }
    for a in &app.affected {
        let head = format!(
            "= affected {} (id {}): unchanged, builds on {}",
            safe(&a.name),
            safe(&a.segment_id),
            safe(&a.through.join(", "))
        );
        let _ = writeln!(out, "  {}", st.paint("36", &head));
        let _ = writeln!(
            out,
            "      {} {}",
            st.paint("36", "audience:"),
            audience_line(&a.audience)
        );
        if let Some(w) = &a.audience.warning {
            let _ = writeln!(out, "      {} {}", st.paint("33", "warning:"), safe(w));
        }
    }
    for w in &app.warnings {
        let _ = writeln!(
            out,
            "  {} {}",
            st.paint("33", "warning:"),
            warning_words(w, Escape::Text)
        );
    }
}

/// One segment step: its heading, then drift, blocks, audience, import, the changed
/// criteria, tags and warnings, each on its own indented line.
fn text_step(out: &mut String, step: &SegmentStep, st: Style) {
    let mut head = st.action(step.action, &heading(step));
    if step.is_blocked() {
        head.push_str(&format!("  {}", st.paint("1;31", "BLOCKED")));
    }
    let _ = writeln!(out, "  {head}");
    if let Some(v) = step.drift {
        let _ = writeln!(
            out,
            "      {} changed outside segmentctl (live version {v}); this update restores the manifest",
            st.paint("35", "drift:")
        );
    }
    for b in &step.blocked {
        let _ = writeln!(
            out,
            "      {} {}",
            st.paint("31", "blocked:"),
            block_words(b, Escape::Text)
        );
    }
    if let Some(a) = &step.audience {
        let _ = writeln!(
            out,
            "      {} {}",
            st.paint("36", "audience:"),
            audience_line(a)
        );
    }
    if let Some(line) = import_line(step) {
        let _ = writeln!(out, "      {line}");
    }
    for c in definition_lines(step) {
        match (&c, step.action) {
            (Change::Add { path, value }, Action::Create) => {
                let _ = writeln!(out, "      {}: {}", safe(path), diff::shown(value));
            }
            _ => {
                let _ = writeln!(out, "      {c}");
            }
        }
    }
    if step.action == Action::Create {
        let user: Vec<String> = step
            .tags
            .iter()
            .filter(|(k, _)| !crate::plan::is_own_tag(k))
            .map(|(k, v)| format!("{}={}", safe(k), safe(v)))
            .collect();
        if !user.is_empty() {
            let _ = writeln!(out, "      tags: {}", user.join(", "));
        }
    } else if let Some(line) = tag_line(&step.tag_changes) {
        let _ = writeln!(out, "      {line}");
    }
    for w in step_warnings(step, Escape::Text) {
        let _ = writeln!(out, "      {} {w}", st.paint("33", "warning:"));
    }
}
