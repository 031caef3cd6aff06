//! The plan as markdown, for a pull-request comment as GitHub and GitLab render it: the
//! summary, blocked steps and warnings first, a table per application, each segment's diff
//! in a collapsed block, cut into parts that fit a comment.

use crate::plan::diff::{self, Change};
use crate::plan::{Action, AppPlan, Audience, AudienceSource, Plan, SegmentStep};
use crate::text::{plural, safe, thousands};
use std::fmt::Write as _;

use super::*;

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
pub(super) fn md_escape(s: &str) -> String {
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

/// `body` in a fenced code block of `language`: the fence is longer than any run of
/// backticks inside, so no content can close it.
pub(super) fn fenced(language: &str, body: &str) -> String {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{language}\n{body}\n{fence}")
}

/// Text inside raw HTML (the `<summary>` line): markdown does not apply there, so it is
/// escaped as HTML, control characters shown and mentions kept from forming.
pub(super) fn html_text(s: &str) -> String {
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
        let _ = writeln!(s, "\n{}", fenced("diff", &lines.join("\n")));
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
    md_blocked(&mut head, plan);
    md_warnings(&mut head, plan);
    md_counts(&mut head, plan);
    if let Some(source) = &plan.audience {
        audience_table(plan, source, &mut head);
    }

    markdown_parts(plan, head, limit).join("\n")
}

/// The blocked steps, first and in a caution box: at most `HEAD_ITEMS` of them.
fn md_blocked(head: &mut String, plan: &Plan) {
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
    if blocked.is_empty() {
        return;
    }
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

/// Errors and warnings of every application and audience, in a warning box.
fn md_warnings(head: &mut String, plan: &Plan) {
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
    if warnings.is_empty() {
        return;
    }
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

/// One row per application: how many steps of each kind.
fn md_counts(head: &mut String, plan: &Plan) {
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
