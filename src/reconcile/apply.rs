//! The executor: carries out a plan's steps, exactly as planned.
//!
//! It makes no choices. The plan names every id and ARN a step acts on, where the id of
//! every base segment comes from (a live segment, or the step that creates it), and the wave
//! each step runs in. Steps of a wave run with bounded concurrency; a step whose
//! prerequisite did not complete is skipped, not attempted; a failed step does not stop
//! independent ones. Each step is one attempt at the [`Pinpoint`] interface, which paces,
//! retries what is safe to retry and creates at most once; the caller's loop (a rerun, the
//! daemon's next round) retries the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Semaphore};

use crate::model::{Tags, WriteSegmentRequest};
use crate::plan::{Action, AppPlan, Base, Plan, SegmentStep};
use crate::reconcile::outcome::{
    AppError, AppFailure, Done, Report, SkipReason, StepError, StepReport, StepResult,
};
use crate::targets::pinpoint::{join_all, Claim, Deleted, Pinpoint, PinpointError};

/// What a finished step tells whoever watches: one per step, as it finishes.
pub type Events = Arc<dyn Fn(&StepReport) + Send + Sync>;

#[derive(Clone)]
pub struct Options {
    pub concurrency: usize,
    /// Run deletions blocked only because something still uses the segment.
    pub allow_delete_in_use: bool,
    /// Print a progress line (on a terminal).
    pub progress: bool,
    /// Set to true to stop starting new steps; steps in flight finish.
    pub cancel: Option<watch::Receiver<bool>>,
    /// Called once per finished step (done, failed, blocked or skipped).
    pub events: Option<Events>,
    /// Asked before each step starts: whether the applications' leases are still ours.
    pub fence: Option<crate::reconcile::lease::Fence>,
    /// How many steps are running now (for whoever reports an interrupt).
    pub in_flight: Arc<AtomicUsize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 8,
            allow_delete_in_use: false,
            progress: false,
            cancel: None,
            events: None,
            fence: None,
            in_flight: Arc::default(),
        }
    }
}

/// How long apply waits for one import job: an hour, or `SEGMENTCTL_IMPORT_TIMEOUT` seconds.
fn import_patience() -> std::time::Duration {
    std::env::var("SEGMENTCTL_IMPORT_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(
            std::time::Duration::from_secs(3600),
            std::time::Duration::from_secs,
        )
}

struct Run<'a, P> {
    p: &'a P,
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
            let _ = write!(
                err,
                "\r\x1b[2K[{n}/{}] {}",
                self.total,
                crate::text::safe(what)
            );
            if n == self.total {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        }
    }
}

/// Carries out the plan. Never returns early: every step gets a result.
pub async fn apply<P: Pinpoint>(p: &P, plan: &Plan, opts: &Options) -> Report {
    let total = plan.apps.iter().map(|a| a.steps.len()).sum();
    let run = Run {
        p,
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
    let results = join_all(plan.apps.iter().map(|app| run.app(app)).collect()).await;
    let mut report = Report::default();
    for (steps, err) in results {
        report.steps.extend(steps);
        report.app_errors.extend(err);
    }
    report
}

/// Where the steps of one application send their requests.
struct Target {
    app_id: String,
}

impl<P: Pinpoint> Run<'_, P> {
    fn cancelled(&self) -> bool {
        self.opts.cancel.as_ref().is_some_and(|c| *c.borrow())
    }

    fn finish(&self, report: StepReport) -> StepReport {
        self.progress
            .tick(&format!("{} {}", report.action.verb(), report.name));
        if let Some(events) = &self.opts.events {
            events(&report);
        }
        report
    }

    async fn app(&self, app: &AppPlan) -> (Vec<StepReport>, Option<AppFailure>) {
        let app_key = app.key().shard_key();
        let report = |s: &SegmentStep, app_id: Option<&str>, result: StepResult| StepReport {
            app: app.app_name.clone(),
            app_key: app_key.clone(),
            app_id: app_id.map(str::to_string),
            name: s.name.clone(),
            action: s.action,
            result,
        };
        if let Some(e) = &app.error {
            let failure = AppFailure {
                app: app.display(),
                app_key,
                error: AppError::Unplanned(e.clone()),
            };
            return (Vec::new(), Some(failure));
        }
        // The application itself first.
        let app_id = match self.app_step(app).await {
            Ok(id) => id,
            Err(error) => {
                let steps = app
                    .steps
                    .iter()
                    .map(|s| {
                        self.finish(report(
                            s,
                            None,
                            StepResult::Skipped(SkipReason::AppUnavailable),
                        ))
                    })
                    .collect();
                let failure = AppFailure {
                    app: app.display(),
                    app_key: app_key.clone(),
                    error,
                };
                return (steps, Some(failure));
            }
        };
        let Some(app_id) = app_id else {
            return (Vec::new(), None);
        };
        let target = Target { app_id };

        // Ids of the segments this plan creates, by manifest name, as their creates finish.
        let created: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
        let mut results: BTreeMap<usize, StepResult> = BTreeMap::new();
        let waves: BTreeSet<u32> = app.steps.iter().map(|s| s.wave).collect();
        for wave in waves {
            let mut futs = Vec::new();
            for (i, step) in app.steps.iter().enumerate().filter(|(_, s)| s.wave == wave) {
                if step.is_blocked()
                    && !(self.opts.allow_delete_in_use && step.only_in_use_blocks())
                {
                    let r = StepResult::Blocked(step.blocked.clone());
                    results.insert(i, self.finish(report(step, Some(&target.app_id), r)).result);
                    continue;
                }
                if let Some(missing) = self.unmet_prerequisite(app, step, &results) {
                    let r = StepResult::Skipped(SkipReason::Prerequisite(missing));
                    results.insert(i, self.finish(report(step, Some(&target.app_id), r)).result);
                    continue;
                }
                let (target, created) = (&target, &created);
                futs.push(async move {
                    let permit = self.permits.clone().acquire_owned().await;
                    let fenced = match &self.opts.fence {
                        Some(f) if !self.cancelled() => f.holds().await.err(),
                        _ => None,
                    };
                    let result = if self.cancelled() {
                        StepResult::Skipped(SkipReason::Cancelled)
                    } else if let Some(who) = fenced {
                        StepResult::Skipped(SkipReason::LeaseLost(who))
                    } else {
                        self.opts.in_flight.fetch_add(1, Ordering::SeqCst);
                        let outcome = self.step(target, step, created).await;
                        self.opts.in_flight.fetch_sub(1, Ordering::SeqCst);
                        match outcome {
                            Ok(done) => StepResult::Done(done),
                            Err(e) => StepResult::Failed(e),
                        }
                    };
                    drop(permit);
                    (
                        i,
                        self.finish(report(step, Some(&target.app_id), result))
                            .result,
                    )
                });
            }
            for (i, r) in join_all(futs).await {
                results.insert(i, r);
            }
        }
        let steps = app
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let result = results
                    .remove(&i)
                    .unwrap_or(StepResult::Failed(StepError::Plan(
                        "a step was not reached",
                    )));
                report(s, Some(&target.app_id), result)
            })
            .collect();
        (steps, None)
    }

    /// The first step this one needs that did not complete, by name.
    fn unmet_prerequisite(
        &self,
        app: &AppPlan,
        step: &SegmentStep,
        results: &BTreeMap<usize, StepResult>,
    ) -> Option<String> {
        let done = |j: usize| results.get(&j).is_some_and(StepResult::is_done);
        if step.action == Action::Delete {
            for id in &step.delete_after {
                let j = app.steps.iter().position(|o| {
                    o.action == Action::Delete && o.segment_id.as_ref() == Some(id)
                })?;
                if !done(j) {
                    return Some(app.steps[j].name.clone());
                }
            }
            return None;
        }
        for name in step.created_bases() {
            let j = app
                .steps
                .iter()
                .position(|o| o.action != Action::Delete && o.name == name);
            match j {
                Some(j) if done(j) => {}
                _ => return Some(name.to_string()),
            }
        }
        None
    }

    /// Creates or re-tags the application; returns its id (None: nothing to do here).
    async fn app_step(&self, app: &AppPlan) -> Result<Option<String>, AppError> {
        let Some(step) = &app.app_step else {
            return Ok(app.app_id.clone());
        };
        if step.create {
            let claim = Claim {
                owner: self.owner.to_string(),
                name: app.application_ref.clone().unwrap_or_default(),
            };
            let created = self
                .p
                .create_app(&step.name, &step.tags, &claim)
                .await
                .map_err(AppError::Create)?;
            return Ok(Some(created.id));
        }
        let (Some(id), Some(arn)) = (&app.app_id, &app.app_arn) else {
            return Err(AppError::Unplanned(
                "the plan has no id or ARN for the application".into(),
            ));
        };
        self.retag(arn, &step.tag_changes.add, &step.tag_changes.remove)
            .await
            .map_err(AppError::Tag)?;
        Ok(Some(id.clone()))
    }

    async fn retag(&self, arn: &str, add: &Tags, remove: &[String]) -> Result<(), PinpointError> {
        if !add.is_empty() {
            self.p.tag(arn, add).await?;
        }
        if !remove.is_empty() {
            self.p.untag(arn, remove).await?;
        }
        Ok(())
    }

    /// The definition to send: each `Ref` replaced by the id the plan names, or by the id
    /// the step that created it returned.
    fn resolved(
        step: &SegmentStep,
        created: &Mutex<BTreeMap<String, String>>,
    ) -> Result<Option<WriteSegmentRequest>, StepError> {
        let Some(spec) = &step.spec else {
            return Ok(None);
        };
        let created = created.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = spec.clone();
        for g in out
            .segment_groups
            .iter_mut()
            .flat_map(|g| g.groups.iter_mut().flatten())
        {
            for s in g.source_segments.iter_mut().flatten() {
                if let Some(name) = s.reference.take() {
                    let id = match step.bases.get(&name) {
                        Some(Base::Live { id }) => id.clone(),
                        Some(Base::Created) => created
                            .get(&name)
                            .cloned()
                            .ok_or(StepError::Plan("a base segment's create did not finish"))?,
                        None => return Err(StepError::Plan("a base segment is not resolved")),
                    };
                    s.id = Some(id);
                }
            }
        }
        Ok(Some(out))
    }

    /// An import step: the job run to its end (progress on a terminal), then the segment
    /// tagged as the plan says; what the job brought is the step's note.
    async fn import(
        &self,
        target: &Target,
        step: &SegmentStep,
        created: &Mutex<BTreeMap<String, String>>,
    ) -> Result<Done, StepError> {
        let app = target.app_id.as_str();
        let i = step
            .import
            .as_ref()
            .ok_or(StepError::Plan("an import step has no source"))?;
        let req = crate::targets::pinpoint::ImportRequest {
            url: i.url.clone(),
            format: i.format.clone(),
            role_arn: i.role_arn.clone().unwrap_or_default(),
            external_id: i.external_id.clone(),
            register_endpoints: i.register_endpoints,
            segment_id: step.segment_id.clone(),
            segment_name: step.title.clone(),
        };
        let name = step.name.clone();
        let show = self.opts.progress;
        let progress = move |n: u64| {
            if show {
                crate::text::err(&format!(
                    "  importing {}: {} rows read…\n",
                    crate::text::safe(&name),
                    crate::text::thousands(n)
                ));
            }
        };
        let outcome = {
            let stopped = async {
                match &self.opts.cancel {
                    Some(c) => {
                        let _ = c.clone().wait_for(|stop| *stop).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                outcome = self.p.import(app, &req, &progress) => outcome?,
                () = stopped => return Err(StepError::ImportWait(
                    "stopped while waiting for the import job (interrupted); the job goes on in the server, and apply run again waits for it instead of starting another".into(),
                )),
                () = tokio::time::sleep(import_patience()) => return Err(StepError::ImportWait(format!(
                    "the import job did not finish within {} s (SEGMENTCTL_IMPORT_TIMEOUT); it goes on in the server, and apply run again waits for it",
                    import_patience().as_secs()
                ))),
            }
        };
        if !outcome.completed {
            return Err(StepError::Import {
                job: outcome.job_id,
                why: outcome
                    .failures
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "no reason given".into()),
            });
        }
        let id = outcome
            .segment_id
            .clone()
            .ok_or(StepError::Plan("the import job names no segment"))?;
        let live = self.p.list_segments(app).await?;
        let seg = live
            .iter()
            .find(|s| s.id == id)
            .ok_or(StepError::Plan("the imported segment is not listed"))?;
        if step.segment_id.is_none() {
            self.retag(&seg.arn, &step.tags, &[]).await?;
        } else {
            self.retag(&seg.arn, &step.tag_changes.add, &step.tag_changes.remove)
                .await?;
        }
        created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(step.name.clone(), id.clone());
        let def = seg.import_definition.clone().unwrap_or_default();
        let mut note = format!(
            "{} endpoints",
            crate::text::thousands(def.size.max(0) as u64)
        );
        if let Some(counts) = def.channel_counts.as_ref().filter(|c| !c.is_empty()) {
            let parts: Vec<String> = counts
                .iter()
                .map(|(k, v)| format!("{k} {}", crate::text::thousands((*v).max(0) as u64)))
                .collect();
            note.push_str(&format!(": {}", parts.join(", ")));
        }
        if outcome.rejected > 0 {
            note.push_str(&format!(
                "; {} of {} rows rejected, first: {}",
                crate::text::thousands(outcome.rejected),
                crate::text::thousands(outcome.processed),
                outcome.failures.first().map(String::as_str).unwrap_or("")
            ));
        }
        Ok(Done {
            id,
            version_before: step.live_version,
            version_after: Some(seg.version),
            already_gone: false,
            note: Some(note),
        })
    }

    /// One segment step.
    async fn step(
        &self,
        target: &Target,
        step: &SegmentStep,
        created: &Mutex<BTreeMap<String, String>>,
    ) -> Result<Done, StepError> {
        let app = target.app_id.as_str();
        match step.action {
            Action::Create => {
                let mut spec = Self::resolved(step, created)?
                    .ok_or(StepError::Plan("a create has no definition"))?;
                spec.tags = Some(step.tags.clone());
                let claim = Claim {
                    owner: self.owner.to_string(),
                    name: step.name.clone(),
                };
                let made = self.p.create_segment(app, &spec, &claim).await?;
                created
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(step.name.clone(), made.id.clone());
                Ok(Done {
                    id: made.id,
                    version_before: None,
                    version_after: Some(made.version),
                    already_gone: false,
                    note: None,
                })
            }
            Action::Update | Action::Adopt | Action::Tag => {
                let id = step
                    .segment_id
                    .as_deref()
                    .ok_or(StepError::Plan("the step has no segment id"))?;
                let arn = step
                    .arn
                    .as_deref()
                    .ok_or(StepError::Plan("the step has no segment ARN"))?;
                if step.action == Action::Adopt {
                    // Claim it first: a rerun then sees it as managed and finishes the update.
                    self.retag(arn, &step.tag_changes.add, &[]).await?;
                }
                let mut version = step.live_version;
                if let Some(spec) = Self::resolved(step, created)? {
                    version = Some(self.p.update_segment(app, id, &spec).await?);
                }
                let add = if step.action == Action::Adopt {
                    Tags::new()
                } else {
                    step.tag_changes.add.clone()
                };
                self.retag(arn, &add, &step.tag_changes.remove).await?;
                Ok(Done {
                    id: id.to_string(),
                    version_before: step.live_version,
                    version_after: version,
                    already_gone: false,
                    note: None,
                })
            }
            Action::Import => self.import(target, step, created).await,
            Action::Delete => {
                let id = step
                    .segment_id
                    .as_deref()
                    .ok_or(StepError::Plan("the step has no segment id"))?;
                let gone = self.p.delete_segment(app, id).await?;
                Ok(Done {
                    id: id.to_string(),
                    version_before: step.live_version,
                    version_after: None,
                    already_gone: gone == Deleted::AlreadyGone,
                    note: None,
                })
            }
        }
    }
}

/// Whether the plan creates an application (which must exist, and be leased, before any of
/// its segment steps: see [`create_apps`]).
pub fn creates_apps(plan: &Plan) -> bool {
    plan.apps
        .iter()
        .any(|a| a.error.is_none() && a.app_step.as_ref().is_some_and(|s| s.create))
}

/// Creates the applications `plan` creates, one per name whatever other appliers do, and
/// writes their ids into the plan, so that they can be leased before any segment step runs.
///
/// Each is looked for first by its ownership tags (another applier may have made it since
/// the plan); else it is created and, after `settle`, the claimants of its name are listed:
/// every applier keeps the first in [`crate::plan::live::claim_order`], and one this applier
/// created that is not the first is deleted (nothing was created in it yet). Returns the
/// applications that could not be created, by plan index, with why.
pub async fn create_apps<P: Pinpoint>(
    p: &P,
    plan: &mut Plan,
    settle: std::time::Duration,
) -> Vec<(usize, AppError)> {
    use crate::plan::live::{claim_order, managed_name, LiveApp};
    let owner = plan.owner.clone();
    let first = |apps: Vec<LiveApp>, name: &str| {
        apps.into_iter()
            .filter(|a| managed_name(Some(&a.tags), &owner) == Some(name))
            .min_by(|a, b| {
                claim_order(&a.creation_date, &a.id).cmp(&claim_order(&b.creation_date, &b.id))
            })
    };
    let mut failures = Vec::new();
    for (i, app) in plan.apps.iter_mut().enumerate() {
        let Some(step) = app
            .app_step
            .clone()
            .filter(|s| s.create && app.error.is_none())
        else {
            continue;
        };
        let name = app.application_ref.clone().unwrap_or_default();
        let claim = Claim {
            owner: owner.clone(),
            name: name.clone(),
        };
        let found = async {
            if let Some(a) = first(p.list_apps().await?, &name) {
                return Ok((a.id, a.arn));
            }
            let created = p.create_app(&step.name, &step.tags, &claim).await?;
            tokio::time::sleep(settle).await;
            match first(p.list_apps().await?, &name) {
                Some(a) if a.id != created.id => {
                    tracing::info!(application = %crate::text::safe(&name), kept = %a.id, deleted = %created.id, "another applier created the application at the same moment; keeping the older one");
                    p.delete_app(&created.id).await?;
                    Ok((a.id, a.arn))
                }
                _ => Ok((created.id, created.arn)),
            }
        }
        .await;
        match found {
            Ok((id, arn)) => {
                app.app_id = Some(id);
                app.app_arn = Some(arn);
                app.app_step = None;
            }
            Err(e) => failures.push((i, AppError::Create(e))),
        }
    }
    failures
}

/// Why a saved plan must not run: the things it touches that moved since it was made.
pub async fn stale<P: Pinpoint>(p: &P, plan: &Plan) -> Result<Vec<String>, PinpointError> {
    use crate::plan::live::managed_name;
    let mut problems = Vec::new();
    let mut apps_cache: Option<Vec<crate::plan::live::LiveApp>> = None;
    for app in &plan.apps {
        if app.app_step.as_ref().is_some_and(|s| s.create) {
            let apps = match &apps_cache {
                Some(a) => a,
                None => apps_cache.insert(p.list_apps().await?),
            };
            let name = app.application_ref.as_deref().unwrap_or_default();
            if apps
                .iter()
                .any(|a| managed_name(Some(&a.tags), &plan.owner) == Some(name))
            {
                problems.push(format!(
                    "application {} was created since the plan was made",
                    crate::text::quoted(name)
                ));
            }
            continue;
        }
        let Some(app_id) = &app.app_id else { continue };
        if app.steps.is_empty() {
            continue;
        }
        let live = p.list_segments(app_id).await?;
        for step in &app.steps {
            let name = crate::text::safe(&step.name);
            match (&step.segment_id, step.live_version) {
                (Some(id), Some(planned)) => match live.iter().find(|s| &s.id == id) {
                    None => problems.push(format!(
                        "segment {name} ({id}) was deleted since the plan was made"
                    )),
                    Some(s) if s.version != planned => problems.push(format!(
                        "segment {name} ({id}) moved: planned against version {planned}, now version {}",
                        s.version
                    )),
                    Some(_) => {}
                },
                _ if step.action == Action::Create => {
                    if let Some(s) = live.iter().find(|s| {
                        managed_name(s.tags.as_ref(), &plan.owner) == Some(step.name.as_str())
                    }) {
                        problems.push(format!(
                            "segment {name} was created since the plan was made (id {}, version {})",
                            s.id, s.version
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(problems)
}
