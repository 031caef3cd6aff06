//! The executor: carries out a plan's steps, exactly as planned.
//!
//! Steps run with bounded concurrency, level by level (a segment after the segments it
//! builds on; a deleted segment after the deleted segments built on it). Each step is tried
//! until it succeeds or fails for good; a failed step does not stop independent ones.
//! CreateSegment and CreateApp are not idempotent: after an unknown outcome (a 5xx, a lost
//! response, a timeout) the executor looks for the object by its ownership tags before it
//! tries again, so a failure never produces a duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Semaphore};

use crate::api::{Api, CallError, Class, Outcome};
use crate::model::{SegmentResponse, Tags, WriteSegmentRequest};
use crate::observe::{self, managed_name};
use crate::plan::{Action, AppPlan, Plan, SegmentStep};

#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    /// Run deletions blocked only because something still uses the segment.
    pub allow_delete_in_use: bool,
    /// Print a progress line (on a terminal).
    pub progress: bool,
    /// Set to true to stop starting new steps; steps in flight finish.
    pub cancel: Option<watch::Receiver<bool>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 8,
            allow_delete_in_use: false,
            progress: false,
            cancel: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    Done(String),
    Failed(String),
    Blocked(String),
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub app: String,
    pub name: String,
    pub action: Action,
    pub result: StepResult,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<StepReport>,
    /// Applications that could not be created or read.
    pub app_errors: Vec<(String, String)>,
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
        self.count(|s| s.action == action && matches!(s.result, StepResult::Done(_)))
    }

    /// `Apply complete: 5 created, 1 updated, 0 deleted; 1 blocked, 0 failed.`
    pub fn summary(&self) -> String {
        let updated = self.done(Action::Update) + self.done(Action::Adopt) + self.done(Action::Tag);
        format!(
            "Apply {}: {} created, {updated} updated, {} deleted; {} blocked, {} failed.",
            if self.failed() == 0 {
                "complete"
            } else {
                "incomplete"
            },
            self.done(Action::Create),
            self.done(Action::Delete),
            self.blocked(),
            self.failed()
        )
    }

    /// One line per step that was not simply done, and per done step when `all`.
    pub fn details(&self, all: bool) -> String {
        let mut out = String::new();
        for (app, e) in &self.app_errors {
            out.push_str(&format!("  ✗ application {app}: {e}\n"));
        }
        for s in &self.steps {
            let (mark, text) = match &s.result {
                StepResult::Done(t) if all => ("✓", t.as_str()),
                StepResult::Done(_) => continue,
                StepResult::Failed(t) => ("✗", t.as_str()),
                StepResult::Blocked(t) => ("⛔", t.as_str()),
                StepResult::Skipped(t) => ("-", t.as_str()),
            };
            out.push_str(&format!(
                "  {mark} {:<7} {} ({}): {text}\n",
                s.action.verb(),
                s.name,
                s.app
            ));
        }
        out
    }
}

struct Run<'a> {
    api: &'a Api,
    owner: &'a str,
    opts: &'a Options,
    permits: Arc<Semaphore>,
    progress: Progress,
}

#[derive(Clone)]
struct Progress {
    on: bool,
    done: Arc<AtomicUsize>,
    total: usize,
}

impl Progress {
    fn tick(&self, what: &str) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.on {
            use std::io::Write;
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K[{n}/{}] {what}", self.total);
            if n == self.total {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        }
    }
}

/// Carries out the plan. Never returns early: every step gets a result.
pub async fn apply(api: &Api, plan: &Plan, opts: &Options) -> Report {
    let total = plan.apps.iter().map(|a| a.steps.len()).sum();
    let run = Run {
        api,
        owner: &plan.owner,
        opts,
        permits: Arc::new(Semaphore::new(opts.concurrency.max(1))),
        progress: Progress {
            on: opts.progress && total > 0,
            done: Arc::new(AtomicUsize::new(0)),
            total,
        },
    };
    // Applications are independent: drive them together.
    let results = observe::join_all(plan.apps.iter().map(|app| run.app(app)).collect()).await;
    let mut report = Report::default();
    for (steps, err) in results {
        report.steps.extend(steps);
        report.app_errors.extend(err);
    }
    report
}

/// The live ids and ARNs of an application's segments, by id and by managed name.
#[derive(Default, Clone)]
struct Index {
    arn_by_id: BTreeMap<String, String>,
    id_by_name: BTreeMap<String, String>,
}

impl Index {
    fn from(segments: &[SegmentResponse], owner: &str) -> Self {
        let mut ix = Index::default();
        let mut sorted: Vec<&SegmentResponse> = segments.iter().collect();
        sorted.sort_by(|a, b| (&a.creation_date, &a.id).cmp(&(&b.creation_date, &b.id)));
        for s in sorted {
            ix.arn_by_id.insert(s.id.clone(), s.arn.clone());
            if let Some(n) = managed_name(s.tags.as_ref(), owner) {
                ix.id_by_name
                    .entry(n.to_string())
                    .or_insert_with(|| s.id.clone());
            }
        }
        ix
    }
}

fn segment_arn(app_arn_prefix: &str, id: &str) -> String {
    format!("{app_arn_prefix}/segments/{id}")
}

impl Run<'_> {
    fn cancelled(&self) -> bool {
        self.opts.cancel.as_ref().is_some_and(|c| *c.borrow())
    }

    async fn app(&self, app: &AppPlan) -> (Vec<StepReport>, Option<(String, String)>) {
        let label = app.app_name.clone();
        let report = |s: &SegmentStep, result: StepResult| StepReport {
            app: label.clone(),
            name: s.name.clone(),
            action: s.action,
            result,
        };
        if let Some(e) = &app.error {
            return (Vec::new(), Some((app.display(), e.clone())));
        }
        // The application itself first.
        let app_id = match self.app_step(app).await {
            Ok(id) => id,
            Err(e) => {
                let steps = app
                    .steps
                    .iter()
                    .map(|s| {
                        report(
                            s,
                            StepResult::Skipped(format!("application not available: {e}")),
                        )
                    })
                    .collect();
                return (steps, Some((app.display(), e)));
            }
        };
        let Some(app_id) = app_id else {
            return (Vec::new(), None);
        };
        let live = match observe::list_segments(self.api, &app_id).await {
            Ok(l) => l,
            Err(e) => {
                let steps = app
                    .steps
                    .iter()
                    .map(|s| {
                        report(
                            s,
                            StepResult::Skipped(format!("cannot read the application: {e}")),
                        )
                    })
                    .collect();
                return (steps, Some((app.display(), e.to_string())));
            }
        };
        let index = Arc::new(Mutex::new(Index::from(&live, self.owner)));
        let arn_prefix = live
            .first()
            .and_then(|s| s.arn.rsplit_once("/segments/").map(|(p, _)| p.to_string()))
            .unwrap_or_default();
        let arn_prefix = if arn_prefix.is_empty() {
            self.app_arn(&app_id).await
        } else {
            arn_prefix
        };

        let mut results: BTreeMap<usize, StepResult> = BTreeMap::new();
        // Creates, adoptions and updates by dependency level, then deletes by their order.
        let in_plan: BTreeMap<&str, usize> = app
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.action != Action::Delete)
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut level: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, s) in app.steps.iter().enumerate() {
            let l = if s.action == Action::Delete {
                let deps: Vec<usize> = s
                    .delete_after
                    .iter()
                    .filter_map(|id| {
                        app.steps
                            .iter()
                            .position(|o| o.segment_id.as_deref() == Some(id))
                    })
                    .collect();
                1000 + deps
                    .iter()
                    .filter_map(|d| level.get(d))
                    .map(|l| l - 999)
                    .max()
                    .unwrap_or(0)
            } else {
                s.depends_on
                    .iter()
                    .filter_map(|d| in_plan.get(d.as_str()))
                    .filter_map(|d| level.get(d))
                    .map(|l| l + 1)
                    .max()
                    .unwrap_or(0)
            };
            level.insert(i, l);
        }
        let levels: BTreeSet<usize> = level.values().copied().collect();
        for l in levels {
            let batch: Vec<usize> = level
                .iter()
                .filter(|(_, v)| **v == l)
                .map(|(i, _)| *i)
                .collect();
            let mut futs = Vec::new();
            for i in batch {
                let step = &app.steps[i];
                // A step whose base segment or dependent failed is not attempted.
                let failed_dep = step
                    .depends_on
                    .iter()
                    .chain(step.delete_after.iter())
                    .find(|d| {
                        app.steps.iter().enumerate().any(|(j, o)| {
                            (o.name == **d && o.action != Action::Delete
                                || o.segment_id.as_deref() == Some(d.as_str())
                                    && step.action == Action::Delete)
                                && results
                                    .get(&j)
                                    .is_some_and(|r| !matches!(r, StepResult::Done(_)))
                        })
                    })
                    .cloned();
                if let Some(dep) = failed_dep {
                    results.insert(i, StepResult::Skipped(format!("{dep} did not complete")));
                    self.progress.tick(&step.name);
                    continue;
                }
                if step.is_blocked()
                    && !(self.opts.allow_delete_in_use && step.only_in_use_blocks())
                {
                    let reasons: Vec<&str> =
                        step.blocked.iter().map(|b| b.reason.as_str()).collect();
                    results.insert(i, StepResult::Blocked(reasons.join("; ")));
                    self.progress.tick(&step.name);
                    continue;
                }
                let (index, app_id, arn_prefix) =
                    (index.clone(), app_id.clone(), arn_prefix.clone());
                futs.push(Box::pin(async move {
                    let permit = self.permits.clone().acquire_owned().await;
                    if self.cancelled() {
                        drop(permit);
                        return (
                            i,
                            StepResult::Skipped("stopped before it started (shutdown)".into()),
                        );
                    }
                    let r = self.step(&app_id, &arn_prefix, step, &index).await;
                    drop(permit);
                    self.progress
                        .tick(&format!("{} {}", step.action.verb(), step.name));
                    (
                        i,
                        match r {
                            Ok(detail) => StepResult::Done(detail),
                            Err(e) => StepResult::Failed(e),
                        },
                    )
                }));
            }
            for (i, r) in observe::join_all(futs).await {
                results.insert(i, r);
            }
        }
        let steps = app
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                report(
                    s,
                    results
                        .remove(&i)
                        .unwrap_or(StepResult::Skipped("not reached".into())),
                )
            })
            .collect();
        (steps, None)
    }

    async fn app_arn(&self, app_id: &str) -> String {
        match self
            .api
            .call("GetApp", Class::Other, || {
                self.api.client.get_app().application_id(app_id).send()
            })
            .await
        {
            Ok(out) => out
                .application_response
                .and_then(|a| a.arn)
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Creates or re-tags the application; returns its id (None: nothing to do here).
    async fn app_step(&self, app: &AppPlan) -> Result<Option<String>, String> {
        let Some(step) = &app.app_step else {
            return Ok(app.app_id.clone());
        };
        let name = app.application_ref.clone().unwrap_or_default();
        if step.create {
            let find = || async {
                let apps = observe::list_apps(self.api)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut mine: Vec<_> = apps
                    .into_iter()
                    .filter(|a| managed_name(Some(&a.tags), self.owner) == Some(name.as_str()))
                    .collect();
                mine.sort_by(|a, b| (&a.creation_date, &a.id).cmp(&(&b.creation_date, &b.id)));
                Ok::<_, String>(mine.into_iter().next().map(|a| a.id))
            };
            let id = self
                .create_once_only(
                    "CreateApp",
                    Class::Other,
                    || async {
                        let req = aws_sdk_pinpoint::types::CreateApplicationRequest::builder()
                            .name(&step.name)
                            .set_tags(Some(step.tags.clone().into_iter().collect()))
                            .build();
                        let out = self
                            .api
                            .once("CreateApp", Class::Other, || {
                                self.api
                                    .client
                                    .create_app()
                                    .create_application_request(req)
                                    .send()
                            })
                            .await?;
                        Ok(out
                            .application_response
                            .and_then(|a| a.id)
                            .unwrap_or_default())
                    },
                    find,
                )
                .await?;
            return Ok(Some(id));
        }
        let id = app.app_id.clone().ok_or("no application id")?;
        let arn = self.app_arn(&id).await;
        self.retag(&arn, &step.tag_changes.add, &step.tag_changes.remove)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(id))
    }

    /// Runs a non-idempotent create until it is known to have happened exactly once.
    async fn create_once_only<C, CF, L, LF>(
        &self,
        operation: &'static str,
        _class: Class,
        create: C,
        lookup: L,
    ) -> Result<String, String>
    where
        C: Fn() -> CF,
        CF: std::future::Future<Output = Result<String, CallError>>,
        L: Fn() -> LF,
        LF: std::future::Future<Output = Result<Option<String>, String>>,
    {
        let mut attempt = 0;
        loop {
            match create().await {
                Ok(id) => return Ok(id),
                Err(e) if attempt + 1 >= self.api.retry.attempts || !e.retryable => {
                    if e.outcome == Outcome::Unknown {
                        if let Ok(Some(id)) = lookup().await {
                            return Ok(id);
                        }
                    }
                    return Err(e.to_string());
                }
                Err(e) => {
                    tokio::time::sleep(self.api.retry.delay(attempt)).await;
                    attempt += 1;
                    if e.outcome == Outcome::Unknown {
                        // It may have been created: look before creating again.
                        match lookup().await {
                            Ok(Some(id)) => {
                                tracing::info!(operation, %id, "found after an unanswered create; not creating again");
                                return Ok(id);
                            }
                            Ok(None) => {}
                            Err(lookup_err) => {
                                return Err(format!(
                                    "{e}; and the check for it failed: {lookup_err}"
                                ))
                            }
                        }
                    }
                }
            }
        }
    }

    /// Replaces `Ref` base segments with the ids they now have.
    fn resolve(
        spec: &WriteSegmentRequest,
        index: &Mutex<Index>,
    ) -> Result<WriteSegmentRequest, String> {
        let ix = index.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = spec.clone();
        if let Some(groups) = &mut out.segment_groups {
            for g in groups.groups.iter_mut().flatten() {
                for s in g.source_segments.iter_mut().flatten() {
                    if let Some(name) = s.reference.take() {
                        let id = ix
                            .id_by_name
                            .get(&name)
                            .ok_or_else(|| format!("base segment {name:?} does not exist live"))?;
                        s.id = Some(id.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn retag(&self, arn: &str, add: &Tags, remove: &[String]) -> Result<(), CallError> {
        if !add.is_empty() {
            let model = aws_sdk_pinpoint::types::TagsModel::builder()
                .set_tags(Some(add.clone().into_iter().collect()))
                .build();
            self.api
                .call("TagResource", Class::Other, || {
                    self.api
                        .client
                        .tag_resource()
                        .resource_arn(arn)
                        .tags_model(model.clone())
                        .send()
                })
                .await?;
        }
        if !remove.is_empty() {
            self.api
                .call("UntagResource", Class::Other, || {
                    self.api
                        .client
                        .untag_resource()
                        .resource_arn(arn)
                        .set_tag_keys(Some(remove.to_vec()))
                        .send()
                })
                .await?;
        }
        Ok(())
    }

    /// One segment step. Returns a short description of what was done.
    async fn step(
        &self,
        app: &str,
        arn_prefix: &str,
        step: &SegmentStep,
        index: &Mutex<Index>,
    ) -> Result<String, String> {
        let api = self.api;
        match step.action {
            Action::Create => {
                let spec = step
                    .spec
                    .as_ref()
                    .ok_or("the plan has no definition for this create")?;
                let mut spec = Self::resolve(spec, index)?;
                spec.tags = Some(step.tags.clone());
                let body = crate::sdk::write_request(&spec);
                let name = step.name.clone();
                let find = || async {
                    let segs = observe::list_segments(api, app)
                        .await
                        .map_err(|e| e.to_string())?;
                    let ix = Index::from(&segs, self.owner);
                    Ok::<_, String>(ix.id_by_name.get(&name).cloned())
                };
                let id = self
                    .create_once_only(
                        "CreateSegment",
                        Class::SegmentWrite,
                        || async {
                            let out = api
                                .once("CreateSegment", Class::SegmentWrite, || {
                                    api.client
                                        .create_segment()
                                        .application_id(app)
                                        .write_segment_request(body.clone())
                                        .send()
                                })
                                .await?;
                            Ok(out.segment_response.and_then(|s| s.id).unwrap_or_default())
                        },
                        find,
                    )
                    .await?;
                let mut ix = index.lock().unwrap_or_else(|p| p.into_inner());
                ix.id_by_name.insert(step.name.clone(), id.clone());
                ix.arn_by_id
                    .insert(id.clone(), segment_arn(arn_prefix, &id));
                Ok(format!("created {id}"))
            }
            Action::Update | Action::Adopt | Action::Tag => {
                let id = step
                    .segment_id
                    .clone()
                    .ok_or("the plan has no segment id")?;
                let arn = index
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .arn_by_id
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("segment {id} no longer exists"))?;
                if step.action == Action::Adopt {
                    // Claim it first: a rerun then sees it as managed and finishes the update.
                    self.retag(&arn, &step.tag_changes.add, &[])
                        .await
                        .map_err(|e| e.to_string())?;
                }
                if let Some(spec) = &step.spec {
                    let body = crate::sdk::write_request(&Self::resolve(spec, index)?);
                    api.call("UpdateSegment", Class::SegmentWrite, || {
                        api.client
                            .update_segment()
                            .application_id(app)
                            .segment_id(&id)
                            .write_segment_request(body.clone())
                            .send()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                }
                let add = if step.action == Action::Adopt {
                    Tags::new()
                } else {
                    step.tag_changes.add.clone()
                };
                self.retag(&arn, &add, &step.tag_changes.remove)
                    .await
                    .map_err(|e| e.to_string())?;
                if step.action == Action::Adopt {
                    index
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .id_by_name
                        .insert(step.name.clone(), id.clone());
                }
                Ok(format!(
                    "{} {id}",
                    if step.action == Action::Adopt {
                        "adopted"
                    } else {
                        "updated"
                    }
                ))
            }
            Action::Delete => {
                let id = step
                    .segment_id
                    .clone()
                    .ok_or("the plan has no segment id")?;
                match api
                    .call("DeleteSegment", Class::SegmentWrite, || {
                        api.client
                            .delete_segment()
                            .application_id(app)
                            .segment_id(&id)
                            .send()
                    })
                    .await
                {
                    Ok(_) => Ok(format!("deleted {id}")),
                    Err(e) if e.is_not_found() => Ok(format!("{id} was already deleted")),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

/// Why a saved plan must not run: the things it touches that moved since it was made.
pub async fn stale(api: &Api, plan: &Plan) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let mut apps_cache: Option<Vec<observe::LiveApp>> = None;
    for app in &plan.apps {
        if app.app_step.as_ref().is_some_and(|s| s.create) {
            let apps = match &apps_cache {
                Some(a) => a,
                None => {
                    apps_cache.insert(observe::list_apps(api).await.map_err(|e| e.to_string())?)
                }
            };
            let name = app.application_ref.as_deref().unwrap_or_default();
            if apps
                .iter()
                .any(|a| managed_name(Some(&a.tags), &plan.owner) == Some(name))
            {
                problems.push(format!(
                    "application {name:?} was created since the plan was made"
                ));
            }
            continue;
        }
        let Some(app_id) = &app.app_id else { continue };
        if app.steps.is_empty() {
            continue;
        }
        let live = observe::list_segments(api, app_id)
            .await
            .map_err(|e| e.to_string())?;
        for step in &app.steps {
            match (&step.segment_id, step.live_version) {
                (Some(id), Some(planned)) => match live.iter().find(|s| &s.id == id) {
                    None => problems.push(format!("segment {} ({id}) was deleted since the plan was made", step.name)),
                    Some(s) if s.version != planned => problems.push(format!(
                        "segment {} ({id}) moved: planned against version {planned}, now version {}",
                        step.name, s.version
                    )),
                    Some(_) => {}
                },
                _ if step.action == Action::Create => {
                    if let Some(s) = live.iter().find(|s| managed_name(s.tags.as_ref(), &plan.owner) == Some(step.name.as_str())) {
                        problems.push(format!("segment {} was created since the plan was made (id {}, version {})", step.name, s.id, s.version));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(problems)
}
