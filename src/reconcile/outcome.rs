//! What the executor did, step by step: the outcome types apply returns, and how they read
//! (one line per step, a JSON event, apply's summary). The plan's own reports are `report`'s.

use serde_json::Value;

use crate::plan::{Action, BlockReason};
use crate::report::{block_words, Escape};
use crate::targets::pinpoint::PinpointError;
use crate::text::{error_chain, safe};

/// Why a step failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Api(#[from] PinpointError),
    /// The plan is not one this executor can carry out (hand-edited, or from another version).
    #[error("the plan is inconsistent: {0}")]
    Plan(&'static str),
    /// The import job ended FAILED.
    #[error("import job {job} failed: {why}")]
    Import { job: String, why: String },
    /// The wait for an import job ended before the job: a stop, or the time limit.
    #[error("{0}")]
    ImportWait(String),
}

/// Why a step was not attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A step it needs (a base segment's create, a dependent's delete) did not complete.
    Prerequisite(String),
    /// The application could not be created.
    AppUnavailable,
    /// Shutdown was asked for before it started.
    Cancelled,
    /// Another applier (named) took the application's lease while this one was paused or
    /// cut off: nothing more is started, so the two never work at once.
    LeaseLost(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Prerequisite(name) => write!(f, "{name} did not complete"),
            SkipReason::AppUnavailable => f.write_str("the application is not available"),
            SkipReason::Cancelled => f.write_str("stopped before it started (shutdown)"),
            SkipReason::LeaseLost(who) => write!(
                f,
                "not started: the lease was lost to {} (this applier was paused or cut off); run apply again",
                crate::text::safe(who)
            ),
        }
    }
}

/// What a completed step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The segment's id (for a create, the new one).
    pub id: String,
    /// The version before the step, when there was one.
    pub version_before: Option<i32>,
    /// The version after it, when known.
    pub version_after: Option<i32>,
    /// A delete found it gone already.
    pub already_gone: bool,
    /// What an import brought: size, channels, rejected rows.
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub enum StepResult {
    Done(Done),
    Failed(StepError),
    Blocked(Vec<BlockReason>),
    Skipped(SkipReason),
}

impl StepResult {
    pub fn is_done(&self) -> bool {
        matches!(self, StepResult::Done(_))
    }
    /// The metric and event label.
    pub fn label(&self) -> &'static str {
        match self {
            StepResult::Done(_) => "done",
            StepResult::Failed(_) => "failed",
            StepResult::Blocked(_) => "blocked",
            StepResult::Skipped(_) => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StepReport {
    /// The application's display name.
    pub app: String,
    /// The application's key in the plan (its id, or `ref:<name>`): unique, unlike names.
    pub app_key: String,
    /// Its id (none when it could not be created).
    pub app_id: Option<String>,
    pub name: String,
    pub action: Action,
    pub result: StepResult,
}

/// An application that could not be made ready for its steps.
#[derive(Debug, Clone)]
pub struct AppFailure {
    pub app: String,
    /// As [`StepReport::app_key`].
    pub app_key: String,
    pub error: AppError,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// The plan could not read it.
    #[error("{0}")]
    Unplanned(String),
    #[error("cannot create the application")]
    Create(#[source] PinpointError),
    #[error("cannot tag the application")]
    Tag(#[source] PinpointError),
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<StepReport>,
    /// Applications that could not be created, tagged or read.
    pub app_errors: Vec<AppFailure>,
}

impl Report {
    fn count(&self, f: impl Fn(&StepReport) -> bool) -> usize {
        self.steps.iter().filter(|s| f(s)).count()
    }
    pub fn failed(&self) -> usize {
        self.count(|s| matches!(s.result, StepResult::Failed(_) | StepResult::Skipped(_)))
            + self.app_errors.len()
    }
    pub fn blocked(&self) -> usize {
        self.count(|s| matches!(s.result, StepResult::Blocked(_)))
    }
    pub fn done(&self, action: Action) -> usize {
        self.count(|s| s.action == action && s.result.is_done())
    }

    /// `Apply complete: 5 created, 1 updated, 0 deleted; 1 blocked, 0 failed.`
    pub fn summary(&self) -> String {
        let updated = self.done(Action::Update) + self.done(Action::Adopt) + self.done(Action::Tag);
        // An import makes a new segment, or a new version of one.
        let imports = |new: bool| {
            self.count(|s| {
                s.action == Action::Import
                    && matches!(&s.result, StepResult::Done(d) if d.version_before.is_none() == new)
            })
        };
        let updated = updated + imports(false);
        format!(
            "Apply {}: {} created, {updated} updated, {} deleted; {} blocked, {} failed.",
            if self.failed() == 0 {
                "complete"
            } else {
                "incomplete"
            },
            self.done(Action::Create) + imports(true),
            self.done(Action::Delete),
            self.blocked(),
            self.failed()
        )
    }
}

impl Report {
    /// One line per step that was not simply done, and per done step when `all`.
    pub fn details(&self, all: bool) -> String {
        let mut out = String::new();
        for f in &self.app_errors {
            out.push_str(&format!(
                "  ✗ application {}: {}\n",
                crate::text::safe(&f.app),
                error_chain(&f.error)
            ));
        }
        for s in &self.steps {
            if s.result.is_done() && !all {
                continue;
            }
            out.push_str(&format!("  {}\n", event_line(s)));
        }
        out
    }
}

/// A finished step on one line, whatever the output, with ids in full so a log can be
/// searched: `✓ Shop/north-america updated (id 1c01…, v3 → v4)`,
/// `✗ Shop/us update failed: …`, `⛔ Shop/vip delete blocked: …`.
pub fn event_line(s: &StepReport) -> String {
    let subject = format!("{}/{}", safe(&s.app), safe(&s.name));
    match &s.result {
        StepResult::Done(d) => {
            let v = |v: Option<i32>| v.map(|v| format!("v{v}"));
            let versions = match (s.action, v(d.version_before), v(d.version_after)) {
                (Action::Delete, Some(b), _) => format!(", was {b}"),
                (_, Some(b), Some(a)) if b != a => format!(", {b} → {a}"),
                (_, _, Some(a)) | (_, Some(a), None) => format!(", {a}"),
                _ => String::new(),
            };
            let verb = match (s.action, d.already_gone) {
                (Action::Create, _) => "created",
                (Action::Adopt, _) => "adopted",
                (Action::Update, _) => "updated",
                (Action::Tag, _) => "tagged",
                (Action::Delete, false) => "deleted",
                (Action::Delete, true) => "was already deleted",
                (Action::Import, _) => "imported",
            };
            let note = d
                .note
                .as_deref()
                .map(|n| format!("; {}", safe(n)))
                .unwrap_or_default();
            format!("✓ {subject} {verb} (id {}{versions}{note})", safe(&d.id))
        }
        StepResult::Failed(e) => format!(
            "✗ {subject} {} failed: {}",
            s.action.verb(),
            safe(&error_chain(e))
        ),
        StepResult::Blocked(reasons) => format!(
            "⛔ {subject} {} blocked: {}",
            s.action.verb(),
            reasons
                .iter()
                .map(|b| block_words(b, Escape::Text))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        StepResult::Skipped(why) => format!(
            "- {subject} {} skipped: {}",
            s.action.verb(),
            safe(&why.to_string())
        ),
    }
}

/// A finished step as one JSON object (`apply --format json`, the controller's history):
/// `{"type":"step","application":…,"application_id":…,"segment":…,"action":…,"result":…,
/// "id":…,"version_before":…,"version_after":…,"reason":…}`.
pub fn event_json(s: &StepReport) -> Value {
    let mut v = serde_json::json!({
        "type": "step",
        "application": s.app,
        "application_key": s.app_key,
        "application_id": s.app_id,
        "segment": s.name,
        "action": s.action.verb(),
        "result": s.result.label(),
        "message": event_line(s),
    });
    let reason = match &s.result {
        StepResult::Done(d) => {
            v["id"] = d.id.clone().into();
            v["version_before"] = d.version_before.into();
            v["version_after"] = d.version_after.into();
            v["already_gone"] = d.already_gone.into();
            if let Some(note) = &d.note {
                v["note"] = note.clone().into();
            }
            None
        }
        StepResult::Failed(e) => Some(error_chain(e)),
        StepResult::Blocked(reasons) => Some(
            reasons
                .iter()
                .map(|b| block_words(b, Escape::Text))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        StepResult::Skipped(why) => Some(why.to_string()),
    };
    if let Some(r) = reason {
        v["reason"] = r.into();
    }
    v
}

/// Apply's last JSON line: the counts, whether it was interrupted, and the exit code.
pub fn summary_json(r: &Report, interrupted: bool, exit_code: u8) -> Value {
    serde_json::json!({
        "type": "summary",
        "created": r.done(Action::Create),
        "updated": r.done(Action::Update) + r.done(Action::Adopt) + r.done(Action::Tag),
        "deleted": r.done(Action::Delete),
        "blocked": r.blocked(),
        "failed": r.failed(),
        "interrupted": interrupted,
        "exit_code": exit_code,
    })
}
