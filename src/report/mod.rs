//! What people read: a plan as text (a terminal or a CI log), as markdown (a pull-request
//! comment), or as JSON (the saved plan), and apply's summary.

use std::fmt::Write as _;

use serde_json::Value;

use crate::plan::diff::{self, Change};
use crate::plan::{
    Action, AppPlan, Audience, AudienceSource, BlockReason, DeleteCause, Plan, SegmentStep,
    TagChange, Warning,
};
use crate::text::endpoints_text;
use crate::text::{plural, safe, thousands};

/// How text from users and the API is made safe where a report shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// A terminal or a text log: control characters shown, not obeyed.
    Text,
    /// Markdown inline text (a list item, a table cell).
    Markdown,
}

impl Escape {
    /// A user string shown in double quotes.
    pub fn quote(self, s: &str) -> String {
        match self {
            Escape::Text => crate::text::quoted(s),
            Escape::Markdown => format!("\"{}\"", md_escape(s)),
        }
    }
    /// A user string or an id shown as it is.
    pub fn plain(self, s: &str) -> String {
        match self {
            Escape::Text => crate::text::safe(s).into_owned(),
            Escape::Markdown => md_escape(s),
        }
    }
}

/// Why a step is blocked, in words.
pub fn block_words(b: &BlockReason, e: Escape) -> String {
    match b {
        BlockReason::OtherOwner { segment_id, owner } => format!(
            "segment {} is managed by owner {}; segmentctl never takes another owner's segments",
            e.plain(segment_id),
            e.quote(owner)
        ),
        BlockReason::AlreadyManaged { segment_id, name } => format!(
            "segment {} is already managed as {}",
            e.plain(segment_id),
            e.quote(name)
        ),
        BlockReason::Protected => format!(
            "protected ({}=true): to delete it, apply its manifest without `protect: true` first",
            crate::TAG_PROTECT
        ),
        BlockReason::CampaignUses {
            campaign, status, ..
        } => format!(
            "campaign {} ({}) uses this segment",
            e.quote(campaign),
            e.plain(status)
        ),
        BlockReason::JourneyUses { journey, state, .. } => format!(
            "journey {} ({}) uses this segment",
            e.quote(journey),
            e.plain(state)
        ),
        BlockReason::BuiltOn {
            segment_id,
            managed_as: Some(name),
            ..
        } => {
            let _ = segment_id;
            format!("segment {} builds on this segment", e.quote(name))
        }
        BlockReason::BuiltOn {
            segment_id, title, ..
        } => format!(
            "segment {} ({}) builds on this segment",
            e.quote(title.as_deref().unwrap_or("")),
            e.plain(segment_id)
        ),
        BlockReason::DependentBlocked {
            segment_id, name, ..
        } => format!(
            "segment {} ({}) builds on this segment and its deletion is blocked",
            e.quote(name),
            e.plain(segment_id)
        ),
        BlockReason::BaseBlocked { name } => format!(
            "it builds on {}, whose step is blocked",
            e.quote(name)
        ),
        BlockReason::NoSegmentsDeclared { managed } => format!(
            "the manifests declare no segments for this application while {managed} managed segments exist; refusing to delete them all (is the folder empty, or pointing elsewhere?)"
        ),
        BlockReason::TooManyDeletes {
            deleting,
            managed,
            limit_percent,
        } => format!(
            "this plan deletes {deleting} of {managed} managed segments ({:.0}%), over max_delete_percent {}",
            *deleting as f64 * 100.0 / (*managed).max(1) as f64,
            crate::text::number(*limit_percent)
        ),
        BlockReason::TypeChange { segment_id, live } => format!(
            "the live segment {} is {} and Pinpoint cannot change a segment's type: delete it, or give this manifest another name",
            e.plain(segment_id),
            e.plain(live)
        ),
        BlockReason::SourceUnreadable { url, why } => format!(
            "its source {} cannot be read: {}",
            e.quote(url),
            e.plain(why)
        ),
    }
}

/// A warning, in words.
pub fn warning_words(w: &Warning, e: Escape) -> String {
    match w {
        Warning::MatchesEveryEndpoint => "the definition has no criterion and no base segment: it matches every endpoint of the application (a campaign on it reaches everyone)".to_string(),
        Warning::UnmanagedSameName { segment_id } => {
            let id = e.plain(segment_id);
            format!("an unmanaged segment with the same Name exists ({id}); it is left alone. To manage it instead, set metadata.adopt: {id}")
        }
        Warning::CampaignWillShowDeleted { campaign, status } => format!(
            "campaign {} ({}) uses this segment and will show it as deleted",
            e.quote(campaign),
            e.plain(status)
        ),
        Warning::JourneyRefers { journey, state } => format!(
            "journey {} ({}) refers to this segment",
            e.quote(journey),
            e.plain(state)
        ),
        Warning::AdoptTargetMissing { name, segment_id } => format!(
            "{}: metadata.adopt names segment {}, which does not exist; it will be created instead",
            e.plain(name),
            e.plain(segment_id)
        ),
        Warning::OrphansKept { names } => {
            let names: Vec<String> = names.iter().map(|n| e.plain(n)).collect();
            if names.len() == 1 {
                format!(
                    "1 managed segment has no manifest and is kept: {} (plan with --prune to delete)",
                    names[0]
                )
            } else {
                format!(
                    "managed segments have no manifest and are kept: {} (plan with --prune to delete)",
                    names.join(", ")
                )
            }
        }
        Warning::NotDeclaredHere { owner, managed } => format!(
            "{} managed by owner {} here, but no manifest in this folder declares the application; another repository may use the same owner. Nothing in it is changed",
            if *managed == 1 {
                "1 segment is".to_string()
            } else {
                format!("{managed} segments are")
            },
            e.quote(owner)
        ),
        Warning::AppNameDiffers {
            live,
            declared,
            origin,
        } => format!(
            "the application is named {} live and {} in {}; Pinpoint cannot rename an application, so the live name stays",
            e.quote(live),
            e.quote(declared),
            e.plain(origin)
        ),
    }
}

/// Why a segment is deleted, in words, when a reviewer needs telling.
pub fn cause_words(step: &SegmentStep, e: Escape) -> Option<String> {
    match &step.cause {
        Some(DeleteCause::Duplicate { kept, claimants }) => Some(format!(
            "duplicate: {claimants} live segments claim the name {}; keeping {} and deleting this one",
            e.quote(&step.name),
            e.plain(kept)
        )),
        _ => None,
    }
}

/// A step's warnings in words: its delete cause, its warnings, its audience warning.
fn step_warnings(step: &SegmentStep, e: Escape) -> Vec<String> {
    cause_words(step, e)
        .into_iter()
        .chain(step.warnings.iter().map(|w| warning_words(w, e)))
        .chain(
            step.audience
                .as_ref()
                .and_then(|a| a.warning.clone())
                .map(|w| e.plain(&w)),
        )
        .collect()
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&block_words(self, Escape::Text))
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&warning_words(self, Escape::Text))
    }
}

/// GitHub's limit on a comment body.
pub const MARKDOWN_LIMIT: usize = 65_536;

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

fn symbol(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Delete => "-",
        Action::Import => "↓",
        Action::Adopt | Action::Update | Action::Tag => "~",
    }
}

/// The leaf lines of a step's definition change: for a create, the whole definition.
fn definition_lines(step: &SegmentStep) -> Vec<Change> {
    if step.action == Action::Create {
        if let Some(spec) = &step.spec {
            let none = |_: &str| None;
            return diff::diff(
                &Value::Object(Default::default()),
                &diff::normalize(spec, &none),
            );
        }
    }
    step.changes.clone()
}

/// What an import step reads, and why it runs.
fn import_line(step: &SegmentStep) -> Option<String> {
    let i = step.import.as_ref()?;
    let why = match (&step.segment_id, &i.previous_url, i.previous_size) {
        (None, _, _) => "a new imported segment".to_string(),
        (Some(_), Some(prev), size) if prev != &i.url => format!(
            "the source moved from {}{}",
            safe(prev),
            size.map(|n| format!(" ({} endpoints)", crate::text::thousands(n.max(0) as u64)))
                .unwrap_or_default()
        ),
        (Some(_), _, size) => format!(
            "the source changed since the last import{}",
            size.map(|n| format!(
                ", which holds {} endpoints",
                crate::text::thousands(n.max(0) as u64)
            ))
            .unwrap_or_default()
        ),
    };
    Some(format!(
        "source: {} ({}): {why}",
        safe(&i.url),
        safe(&i.format)
    ))
}

fn tag_line(t: &TagChange) -> Option<String> {
    if t.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = t
        .add
        .iter()
        .filter(|(k, _)| *k != crate::plan::TAG_DIGEST)
        .map(|(k, v)| format!("+ {}={}", safe(k), safe(v)))
        .collect();
    parts.extend(
        t.remove
            .iter()
            .filter(|k| *k != crate::plan::TAG_DIGEST)
            .map(|k| format!("− {}", safe(k))),
    );
    (!parts.is_empty()).then(|| format!("tags: {}", parts.join("  ")))
}

fn heading(step: &SegmentStep) -> String {
    let mut h = format!(
        "{} {:<7} {}",
        symbol(step.action),
        step.action.verb(),
        safe(&step.name)
    );
    if let Some(title) = &step.title {
        if title != &step.name {
            h.push_str(&format!(" {}", Escape::Text.quote(title)));
        }
    }
    match (step.action, &step.segment_id, step.live_version) {
        (Action::Create, _, _) => {}
        (_, Some(id), Some(v)) => h.push_str(&format!(" (id {}, version {v})", safe(id))),
        (_, Some(id), None) => h.push_str(&format!(" (id {})", safe(id))),
        _ => {}
    }
    h
}

/// `1,204 → 1,664 endpoints (+38.2 %)`, `1,664 endpoints (new segment)`,
/// `1,204 endpoints → none (deleted)`.
fn audience_line(a: &Audience) -> String {
    let n = endpoints_text;
    match (a.before, a.after) {
        (None, Some(after)) => format!("{} (new segment)", n(after)),
        (Some(before), None) => format!("{} → none (deleted)", n(before)),
        (Some(before), Some(after)) => {
            let change = match a.change_percent {
                Some(_) if before == after => " (no change)".to_string(),
                Some(c) => format!(" ({c:+.1} %)"),
                None => String::new(),
            };
            format!("{} → {}{change}", thousands(before), n(after))
        }
        (None, None) => "not counted".to_string(),
    }
}

/// `Audiences counted over 1,000,000 endpoint records in FILE (as of …)`.
fn audience_source(a: &AudienceSource, code: &dyn Fn(&str) -> String) -> String {
    let mut line = format!(
        "Audiences counted over {} endpoint records in {} (as of {}",
        thousands(a.records_read),
        code(&a.file),
        a.as_of
    );
    if a.records_rejected > 0 {
        let shown: Vec<String> = a.rejected_lines.iter().map(u64::to_string).collect();
        let _ = write!(
            line,
            "; {} rejected, {} {}{}",
            thousands(a.records_rejected),
            if a.records_rejected == 1 {
                "line"
            } else {
                "lines"
            },
            shown.join(", "),
            if a.records_rejected as usize > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    line.push_str(").");
    line
}

/// The plan as text, like `terraform plan`: the summary first, then per application each
/// segment's changed criteria in words and values.
pub fn text(plan: &Plan, colour: bool) -> String {
    let st = Style { colour };
    let mut out = String::new();
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
    for app in &plan.apps {
        let has_content = !app.steps.is_empty()
            || !app.affected.is_empty()
            || app.app_step.is_some()
            || app.error.is_some()
            || !app.warnings.is_empty();
        if !has_content {
            continue;
        }
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
    out
}

/// A code span that no content can break out of: the fence is longer than any run of
/// backticks inside, and control characters are shown, not obeyed.
pub fn md_code(s: &str) -> String {
    let s = crate::text::safe(s);
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Markdown inline text (a list item, a table cell) that renders as the characters it
/// holds: the characters that open markdown constructs (emphasis, code, links, images, raw
/// HTML, entities, strikethrough, table cells) and those of autolinks (`:`, `www.`) are
/// backslash-escaped, as is a first character that would make a line a heading, a list or
/// a quote; control characters are shown, so no line can be forged; `@` is kept from
/// becoming a mention (GitHub makes mentions of the rendered text, after escapes).
fn md_escape(s: &str) -> String {
    let s = safe(s);
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    let mut leading_digits = true;
    for (i, c) in s.char_indices() {
        let opens = matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '&' | '|' | '~' | '!' | ':' | '$'
        ) || (i == 0 && matches!(c, '#' | '-' | '+' | '='))
            // `1.` or `1)` at the start would make an ordered list.
            || (leading_digits && i > 0 && matches!(c, '.' | ')'))
            || (c == '.' && s[..i].ends_with("www"));
        leading_digits &= c.is_ascii_digit();
        match c {
            '@' => out.push_str("@\u{2060}"),
            c if opens => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside raw HTML (the `<summary>` line): markdown does not apply there, so it is
/// escaped as HTML, control characters shown and mentions kept from forming.
fn html_text(s: &str) -> String {
    let s = safe(s);
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '@' => out.push_str("@\u{2060}"),
            c => out.push(c),
        }
    }
    out
}

/// One `diff` block line per change: additions `+`, removals `-`, a modification as both.
fn diff_lines(step: &SegmentStep) -> Vec<String> {
    let mut lines = Vec::new();
    for c in definition_lines(step) {
        match c {
            Change::Add { path, value } => {
                lines.push(format!("+ {}: {}", safe(&path), diff::shown(&value)))
            }
            Change::Remove { path, value } => {
                lines.push(format!("- {}: {}", safe(&path), diff::shown(&value)))
            }
            Change::Modify {
                path,
                before,
                after,
            } => {
                lines.push(format!("- {}: {}", safe(&path), diff::shown(&before)));
                lines.push(format!("+ {}: {}", safe(&path), diff::shown(&after)));
            }
            Change::Values {
                path,
                added,
                removed,
                result,
            } => {
                // The set before and after, in full, and what changed beside the result.
                let before: Vec<&String> = result
                    .iter()
                    .filter(|v| !added.contains(v))
                    .chain(removed.iter())
                    .collect();
                let list = |items: &[&String]| {
                    if items.is_empty() {
                        "(none)".to_string()
                    } else {
                        safe(
                            &items
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        )
                        .into_owned()
                    }
                };
                let delta: Vec<String> = added
                    .iter()
                    .map(|a| format!("+ {}", safe(a)))
                    .chain(removed.iter().map(|r| format!("− {}", safe(r))))
                    .collect();
                lines.push(format!("- {}: {}", safe(&path), list(&before)));
                lines.push(format!(
                    "+ {}: {}   ({})",
                    safe(&path),
                    list(&result.iter().collect::<Vec<_>>()),
                    delta.join(" ")
                ));
            }
        }
    }
    if let Some(line) = import_line(step) {
        lines.push(format!("+ {line}"));
    }
    if step.action == Action::Delete {
        lines.push(format!(
            "- segment {} (id {})",
            safe(&step.name),
            safe(step.segment_id.as_deref().unwrap_or("?"))
        ));
    }
    let t = &step.tag_changes;
    lines.extend(
        t.add
            .iter()
            .filter(|(k, _)| *k != crate::plan::TAG_DIGEST)
            .map(|(k, v)| format!("+ tags.{}: {}", safe(k), safe(v))),
    );
    lines.extend(
        t.remove
            .iter()
            .filter(|k| *k != crate::plan::TAG_DIGEST)
            .map(|k| format!("- tags.{}", safe(k))),
    );
    lines
}

fn details(app: &AppPlan, step: &SegmentStep) -> String {
    let mut s = String::new();
    let title = step
        .title
        .as_deref()
        .map(|t| format!(" — {}", html_text(t)))
        .unwrap_or_default();
    // The summary line is raw HTML: emphasis is written as HTML too.
    let flag = if step.is_blocked() {
        " ⛔ <b>blocked</b>"
    } else if step.drift.is_some() {
        " ⚠️ drift"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "<details><summary><b>{} {}</b> <code>{}</code>{title}{flag} <sub>({})</sub></summary>\n",
        symbol(step.action),
        step.action.verb(),
        html_text(&step.name),
        html_text(&app.app_name)
    );
    for b in &step.blocked {
        let _ = writeln!(s, "- ⛔ {}", block_words(b, Escape::Markdown));
    }
    if let Some(v) = step.drift {
        let _ = writeln!(
            s,
            "- ⚠️ changed outside segmentctl (live version {v}); this update restores the manifest"
        );
    }
    if let Some(a) = &step.audience {
        let _ = writeln!(s, "- 👥 audience: {}", audience_line(a));
    }
    for w in step_warnings(step, Escape::Markdown) {
        let _ = writeln!(s, "- ⚠️ {w}");
    }
    let lines = diff_lines(step);
    if !lines.is_empty() {
        // Every line starts with `+ ` or `- ` and holds no newline (values are shown with
        // `safe`), so no line can close the fence; the fence is longer than any backtick run
        // all the same.
        let body = lines.join("\n");
        let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest.max(2) + 1);
        let _ = writeln!(s, "\n{fence}diff\n{body}\n{fence}");
    }
    s.push_str("\n</details>\n\n");
    s
}

/// The plan as a pull-request comment: the summary and a table first, blocked steps and
/// warnings at the top, a table of every step, one collapsible block per segment. Each part
/// is at most `limit` characters and starts with its [`part_marker`]; a plan too large for
/// one comment comes in several parts, one after the other.
pub fn markdown(plan: &Plan, limit: usize) -> String {
    let summary = plan.summary();
    let mut head = String::from("### segmentctl plan\n\n");
    if let Some(t) = &plan.target {
        let mut line = format!(
            "**Target:** {} · **Owner:** {}",
            md_escape(&t.place()),
            md_code(&t.owner)
        );
        if let Some(r) = &plan.revision {
            let _ = write!(line, " · **Commit:** {}", md_code(r));
        }
        let _ = writeln!(head, "{line}\n");
        if plan.documents == 0 {
            head.push_str("> [!WARNING]\n> No manifests were found: nothing is declared.\n\n");
        }
    }
    if plan.is_empty() && summary.errors == 0 {
        head.push_str("**No changes.** The live segments match the manifests.\n");
        return part_marker(1, 1) + &head;
    }
    let _ = writeln!(head, "**{}**\n", summary.line());
    let blocked: Vec<(&AppPlan, &SegmentStep)> = plan
        .apps
        .iter()
        .flat_map(|a| {
            a.steps
                .iter()
                .filter(|s| s.is_blocked())
                .map(move |s| (a, s))
        })
        .collect();
    if !blocked.is_empty() {
        let _ = writeln!(
            head,
            "> [!CAUTION]\n> **{}** — apply will not carry {} out:",
            plural(blocked.len(), "blocked step"),
            if blocked.len() == 1 { "it" } else { "them" }
        );
        for (a, s) in blocked.iter().take(HEAD_ITEMS) {
            let reasons: Vec<String> = s
                .blocked
                .iter()
                .map(|b| block_words(b, Escape::Markdown))
                .collect();
            let _ = writeln!(
                head,
                "> - {} {} in {}: {}",
                s.action.verb(),
                md_code(&s.name),
                md_escape(&a.app_name),
                reasons.join("; ")
            );
        }
        if blocked.len() > HEAD_ITEMS {
            let _ = writeln!(
                head,
                "> - … {} more: the steps table below marks each ⛔",
                thousands((blocked.len() - HEAD_ITEMS) as u64)
            );
        }
        head.push('\n');
    }
    let mut warnings: Vec<String> = Vec::new();
    for a in &plan.apps {
        if let Some(e) = &a.error {
            warnings.push(format!(
                "**error** in {}: {}",
                md_escape(&a.display()),
                md_escape(e)
            ));
        }
        warnings.extend(a.warnings.iter().map(|w| {
            format!(
                "{}: {}",
                md_escape(&a.app_name),
                warning_words(w, Escape::Markdown)
            )
        }));
        let audiences = a
            .steps
            .iter()
            .filter_map(|s| Some((&s.name, s.audience.as_ref()?)))
            .chain(a.affected.iter().map(|x| (&x.name, &x.audience)));
        for (name, audience) in audiences {
            if let Some(w) = &audience.warning {
                warnings.push(format!(
                    "{}: {}: {}",
                    md_escape(&a.app_name),
                    md_code(name),
                    md_escape(w)
                ));
            }
        }
    }
    if !warnings.is_empty() {
        let _ = writeln!(head, "> [!WARNING]");
        for w in warnings.iter().take(HEAD_ITEMS) {
            // One warning can name many segments: at most a few hundred characters of it.
            let _ = writeln!(head, "> - {}", cut_at_line_safe(w, HEAD_WARNING_CHARS));
        }
        if warnings.len() > HEAD_ITEMS {
            let _ = writeln!(
                head,
                "> - … {} more warnings: `segmentctl plan` prints them all",
                thousands((warnings.len() - HEAD_ITEMS) as u64)
            );
        }
        head.push('\n');
    }
    head.push_str(
        "| Application | Create | Update | Delete | Blocked | Drift |\n|---|--:|--:|--:|--:|--:|\n",
    );
    for a in &plan.apps {
        let count = |f: &dyn Fn(&SegmentStep) -> bool| a.steps.iter().filter(|s| f(s)).count();
        let _ = writeln!(
            head,
            "| {} | {} | {} | {} | {} | {} |",
            md_escape(&a.display()),
            count(&|s| s.action == Action::Create
                || (s.action == Action::Import && s.segment_id.is_none())),
            count(
                &|s| matches!(s.action, Action::Update | Action::Adopt | Action::Tag)
                    || (s.action == Action::Import && s.segment_id.is_some())
            ),
            count(&|s| s.action == Action::Delete),
            count(&|s| s.is_blocked()),
            a.drifted()
        );
    }
    head.push('\n');
    if let Some(source) = &plan.audience {
        audience_table(plan, source, &mut head);
    }

    markdown_parts(plan, head, limit).join("\n")
}

/// How many blocked steps and warnings the head of the comment lists (the steps table lists
/// every step), so the head always fits one comment.
const HEAD_ITEMS: usize = 20;
/// The most of one warning the head shows.
const HEAD_WARNING_CHARS: usize = 600;

/// `s` cut to at most `max` bytes, at a space outside any code span, with `…`: a cut never
/// leaves a code span or an escape open.
fn cut_at_line_safe(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut in_code = false;
    let mut cut = 0;
    let mut prev = '\0';
    for (i, c) in s.char_indices() {
        if i > max {
            break;
        }
        // A run of backticks opens or closes a span once.
        if c == '`' && prev != '`' && prev != '\\' {
            in_code = !in_code;
        }
        if c == ' ' && !in_code && prev != '\\' {
            cut = i;
        }
        prev = c;
    }
    format!("{} …", &s[..cut])
}

/// The marker each part of the comment starts with: CI finds its comments by it, and
/// updates each part in place.
pub fn part_marker(k: usize, n: usize) -> String {
    format!("<!-- segmentctl-plan part {k} of {n} -->\n")
}

/// One row of the steps table: every step, whatever the plan's size.
fn step_row(app: &AppPlan, step: &SegmentStep) -> String {
    let mut what: Vec<String> = Vec::new();
    if step.is_blocked() {
        what.push("⛔ blocked".into());
    }
    if step.drift.is_some() {
        what.push("⚠️ drift".into());
    }
    let changed: Vec<String> = match step.action {
        Action::Create => vec!["new segment".into()],
        Action::Import => vec![format!(
            "{} from {}",
            if step.segment_id.is_none() {
                "new import"
            } else {
                "re-import"
            },
            md_code(step.import.as_ref().map(|i| i.url.as_str()).unwrap_or("?"))
        )],
        Action::Delete => vec![format!(
            "removed (id {})",
            md_escape(step.segment_id.as_deref().unwrap_or("?"))
        )],
        _ => {
            let mut paths: Vec<String> = step
                .changes
                .iter()
                .map(|c| {
                    let path = match c {
                        Change::Add { path, .. }
                        | Change::Remove { path, .. }
                        | Change::Modify { path, .. }
                        | Change::Values { path, .. } => path,
                    };
                    // The last two parts name the criterion: `Country.Values`.
                    let parts: Vec<&str> = path.rsplitn(3, '.').collect();
                    let short = if parts.len() >= 2 {
                        format!("{}.{}", parts[1], parts[0])
                    } else {
                        path.clone()
                    };
                    md_escape(&short)
                })
                .collect();
            paths.dedup();
            let t = &step.tag_changes;
            let digest = crate::plan::TAG_DIGEST;
            if t.add.keys().any(|k| k != digest) || t.remove.iter().any(|k| k != digest) {
                paths.push("tags".into());
            }
            if paths.len() > 4 {
                let more = paths.len() - 3;
                paths.truncate(3);
                paths.push(format!("{more} more"));
            }
            paths
        }
    };
    what.extend(changed);
    format!(
        "| {} | {} | {} | {} |\n",
        symbol(step.action),
        md_code(&step.name).replace('|', "\\|"),
        md_escape(&app.app_name),
        what.join(", ")
    )
}

const STEPS_HEADER: &str = "| | Segment | Application | What changes |\n|---|---|---|---|\n";

/// The comment in parts of at most `limit` characters: the summary, then a table of every
/// step, then each step's details as far as the first part allows. A table that does not fit
/// continues in further parts, so every step stays visible on the pull request.
pub fn markdown_parts(plan: &Plan, head: String, limit: usize) -> Vec<String> {
    let rows: Vec<String> = plan
        .apps
        .iter()
        .flat_map(|a| a.steps.iter().map(move |s| step_row(a, s)))
        .collect();
    // Room for the marker ("part 10 of 10"), a part heading and a closing note.
    const RESERVE: usize = 400;
    let budget = limit.saturating_sub(RESERVE);
    let mut parts: Vec<String> = Vec::new();
    let mut current = head;
    if !rows.is_empty() {
        current.push_str("#### Steps\n\n");
        current.push_str(STEPS_HEADER);
    }
    for row in &rows {
        if current.len() + row.len() > budget {
            parts.push(std::mem::take(&mut current));
            current = format!(
                "### segmentctl plan (continued)\n\n#### Steps (continued)\n\n{STEPS_HEADER}"
            );
        }
        current.push_str(row);
    }
    if !rows.is_empty() {
        current.push('\n');
    }
    let blocks: Vec<String> = plan
        .apps
        .iter()
        .flat_map(|a| a.steps.iter().map(move |s| details(a, s)))
        .collect();
    if parts.is_empty() {
        // The table fits: as many details as the first comment allows.
        let total = blocks.len();
        for (i, block) in blocks.into_iter().enumerate() {
            if current.len() + block.len() > budget {
                let _ = writeln!(
                    current,
                    "_… the details of {} are not shown: the comment would exceed GitHub's {limit}-character limit. The table above lists every step; `segmentctl plan` prints them all._",
                    plural(total - i, "more segment")
                );
                break;
            }
            current.push_str(&block);
        }
    } else {
        parts[0].push_str(
            "\n_The table continues in the next comment; `segmentctl plan` prints each step's details._\n",
        );
    }
    parts.push(current);
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| part_marker(i + 1, n) + &p)
        .collect()
}

/// How many rows the markdown audience table shows (the details below show every step).
const AUDIENCE_ROWS: usize = 50;

/// Before → after per step, flagged rows first, then the largest changes.
fn audience_table(plan: &Plan, source: &AudienceSource, out: &mut String) {
    // (application, symbol, segment, audience); `=`: unchanged, affected through its bases.
    let mut rows: Vec<(&AppPlan, &str, &str, &Audience)> = Vec::new();
    for app in &plan.apps {
        for step in &app.steps {
            if let Some(a) = &step.audience {
                rows.push((app, symbol(step.action), &step.name, a));
            }
        }
        for a in &app.affected {
            rows.push((app, "=", &a.name, &a.audience));
        }
    }
    let _ = writeln!(
        out,
        "#### Audience\n\n{}\n",
        audience_source(source, &|f| md_code(f))
    );
    if rows.is_empty() {
        return;
    }
    let moved = |x: &Audience| x.before.unwrap_or(0).abs_diff(x.after.unwrap_or(0));
    rows.sort_by(|(_, _, n1, a), (_, _, n2, b)| {
        b.warning
            .is_some()
            .cmp(&a.warning.is_some())
            .then(moved(b).cmp(&moved(a)))
            .then(n1.cmp(n2))
    });
    out.push_str("| Segment | Application | Before | After | Change |\n|---|---|--:|--:|--:|\n");
    let cell = |v: Option<u64>| v.map(thousands).unwrap_or_else(|| "—".to_string());
    for (app, symbol, name, a) in rows.iter().take(AUDIENCE_ROWS) {
        let change = match (a.change_percent, a.before, a.after) {
            (Some(_), Some(b), Some(x)) if b == x => "0 %".to_string(),
            (Some(c), _, _) => format!("{c:+.1} %"),
            (None, None, Some(_)) => "new".to_string(),
            (None, Some(_), None) => "deleted".to_string(),
            _ => "—".to_string(),
        };
        let flag = if a.warning.is_some() { " ⚠️" } else { "" };
        let _ = writeln!(
            out,
            "| {symbol} {} | {} | {} | {} | {change}{flag} |",
            md_code(name).replace('|', "\\|"),
            md_escape(&app.app_name),
            cell(a.before),
            cell(a.after)
        );
    }
    if rows.iter().any(|r| r.1 == "=") {
        out.push_str(
            "\n`=` the definition stays; the audience moves with the base segments it builds on.\n",
        );
    }
    if rows.len() > AUDIENCE_ROWS {
        let _ = writeln!(
            out,
            "\n_… {} more below._",
            plural(rows.len() - AUDIENCE_ROWS, "segment")
        );
    }
    out.push('\n');
}

/// The plan as versioned JSON: the same document `--out` saves.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_default()
}
