//! What people read: a plan as text (a terminal or a CI log), as markdown (a pull-request
//! comment), or as JSON (the saved plan); what they share (the words for blocks, warnings
//! and causes, headings, audiences, escaping). What apply did reads in `reconcile::outcome`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::plan::diff::{self, Change};
use crate::plan::{
    Action, Audience, AudienceSource, BlockReason, DeleteCause, Plan, SegmentStep, TagChange,
    Warning,
};
use crate::text::{endpoints_text, safe, thousands};

pub mod convert;
pub mod definitions;
mod markdown;
mod text;

use markdown::md_escape;
pub use markdown::{markdown, md_code, part_marker};
pub use text::text;

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

/// The plan as versioned JSON: the same document `--out` saves.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_default()
}
