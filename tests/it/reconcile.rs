//! The reconciler end to end: manifests → observe → plan → apply, against the server
//! in-process with the real SDK client.

use std::path::Path;

use aws_sdk_pinpoint::types::{
    JourneyStateRequest, SegmentCondition, StartCondition, State, WriteCampaignRequest,
    WriteJourneyRequest,
};
use segmentctl::manifests::config::RateLimits;
use segmentctl::plan::{Action, Plan};
use segmentctl::reconcile::apply::{self, Options};
use segmentctl::server::FaultConfig;
use segmentctl::targets::pinpoint::pacing::Api;
use segmentctl::targets::pinpoint::{Pinpoint, SdkPinpoint};

use crate::util::{self, named, TestServer};

pub struct Fixture {
    pub t: TestServer,
    pub api: SdkPinpoint,
    pub dir: tempfile::TempDir,
    pub app: String,
}

pub const OWNER: &str = "segmentctl";

impl Fixture {
    pub async fn new() -> Self {
        let t = util::start().await;
        let app = t.app("reconcile").await;
        let api = SdkPinpoint::new(Api::new(
            t.client.clone(),
            RateLimits {
                segment_writes: 1000.0,
                reads: 3000.0,
            },
        ));
        Self {
            t,
            api,
            dir: tempfile::tempdir().unwrap(),
            app,
        }
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
    }

    /// A Segment manifest in this fixture's application.
    pub fn segment(&self, name: &str, spec: &str) -> String {
        format!(
            "apiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: {name}\n  application: {}\nspec:\n{}",
            self.app,
            indent(spec)
        )
    }

    pub async fn plan(&self, prune: bool) -> Plan {
        plan_dir(&self.api, self.dir.path(), prune).await
    }

    pub async fn apply(&self, plan: &Plan) -> segmentctl::reconcile::outcome::Report {
        apply::apply(&self.api, plan, &Options::default()).await
    }

    /// Plans and applies until nothing is left to do (at most `max` rounds).
    pub async fn converge(&self, prune: bool, max: usize) -> usize {
        for round in 1..=max {
            let p = self.plan(prune).await;
            if p.converged() {
                return round - 1;
            }
            self.apply(&p).await;
        }
        panic!("did not converge in {max} rounds");
    }

    pub async fn live(&self) -> Vec<segmentctl::model::SegmentResponse> {
        self.api.list_segments(&self.app).await.unwrap()
    }

    pub async fn managed(&self) -> Vec<(String, segmentctl::model::SegmentResponse)> {
        self.live()
            .await
            .into_iter()
            .filter_map(|s| {
                segmentctl::plan::live::managed_name(s.tags.as_ref(), OWNER)
                    .map(|n| (n.to_string(), s.clone()))
            })
            .collect()
    }

    pub async fn id_of(&self, name: &str) -> String {
        self.managed()
            .await
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.id)
            .unwrap()
    }
}

pub fn indent(spec: &str) -> String {
    spec.lines().map(|l| format!("  {l}\n")).collect()
}

/// A plan, or None when the target or any application in it could not be observed (the
/// chaos tests poll through the same faults they inject).
pub async fn try_plan_dir(api: &SdkPinpoint, dir: &Path, prune: bool) -> Option<Plan> {
    let ws = segmentctl::manifests::workspace::load(dir, None).unwrap_or_else(|e| panic!("{e:?}"));
    let everything = |_: &str| true;
    let scope = segmentctl::reconcile::observe::Scope {
        owner: OWNER,
        owns: &everything,
    };
    let observed = segmentctl::reconcile::observe::observe(api, &ws.desired, &scope)
        .await
        .ok()?;
    let mut settings = segmentctl::reconcile::pipeline::planner_settings(&ws.config);
    settings.prune |= prune;
    let p = segmentctl::plan::plan(&ws.desired, &observed, &settings);
    // An application that could not be read has no steps: such a plan is not "no changes".
    p.apps.iter().all(|a| a.error.is_none()).then_some(p)
}

pub async fn plan_dir(api: &SdkPinpoint, dir: &Path, prune: bool) -> Plan {
    let ws = segmentctl::manifests::workspace::load(dir, None).unwrap_or_else(|e| panic!("{e:?}"));
    let everything = |_: &str| true;
    let scope = segmentctl::reconcile::observe::Scope {
        owner: OWNER,
        owns: &everything,
    };
    let observed = segmentctl::reconcile::observe::observe(api, &ws.desired, &scope)
        .await
        .unwrap();
    let mut settings = segmentctl::reconcile::pipeline::planner_settings(&ws.config);
    settings.prune |= prune;
    let p = segmentctl::plan::plan(&ws.desired, &observed, &settings);
    for a in &p.apps {
        assert!(
            a.error.is_none(),
            "{} could not be planned: {:?}",
            a.app_name,
            a.error
        );
    }
    p
}

const COUNTRY: &str =
    "Name: North America\nDimensions:\n  Location:\n    Country:\n      Values: [US, CA, MX]\n";

fn steps(p: &Plan) -> Vec<(Action, String)> {
    p.apps
        .iter()
        .flat_map(|a| a.steps.iter().map(|s| (s.action, s.name.clone())))
        .collect()
}

#[tokio::test]
async fn apply_from_empty_then_a_second_plan_is_empty() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &fx.segment("north-america", COUNTRY));
    fx.write("b.yaml", &fx.segment("na-power", "Name: NA power users\nSegmentGroups:\n  Include: ALL\n  Groups:\n    - SourceSegments:\n        - Ref: north-america\n      Dimensions:\n        - Metrics:\n            sessions: {ComparisonOperator: GREATER_THAN, Value: 10}\n"));
    let p = fx.plan(false).await;
    assert_eq!(
        steps(&p),
        [
            (Action::Create, "north-america".to_string()),
            (Action::Create, "na-power".to_string())
        ],
        "a segment is created after the segments it builds on"
    );
    let r = fx.apply(&p).await;
    assert_eq!(
        (r.done(Action::Create), r.failed()),
        (2, 0),
        "{}",
        r.details(true)
    );
    assert!(fx.plan(false).await.converged());
    let power = fx
        .managed()
        .await
        .into_iter()
        .find(|(n, _)| n == "na-power")
        .unwrap()
        .1;
    let base = fx.id_of("north-america").await;
    let refs = &power.segment_groups.unwrap().groups.unwrap()[0]
        .source_segments
        .clone()
        .unwrap()[0];
    assert_eq!(
        refs.id.as_deref(),
        Some(base.as_str()),
        "the Ref was resolved to the new id"
    );
}

#[tokio::test]
async fn a_one_field_edit_plans_exactly_that_path() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &fx.segment("north-america", COUNTRY));
    fx.converge(false, 3).await;
    fx.write(
        "a.yaml",
        &fx.segment(
            "north-america",
            &COUNTRY.replace("[US, CA, MX]", "[US, CA]"),
        ),
    );
    let p = fx.plan(false).await;
    assert_eq!(steps(&p), [(Action::Update, "north-america".to_string())]);
    let changes: Vec<String> = p.apps[0].steps[0]
        .changes
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        changes,
        ["Dimensions.Location.Country.Values: CA, US (− MX)"]
    );
    fx.apply(&p).await;
    assert!(fx.plan(false).await.converged());
    assert_eq!(fx.managed().await[0].1.version, 2);
}

#[tokio::test]
async fn a_removed_manifest_is_deleted_only_with_prune() {
    let fx = Fixture::new().await;
    for name in ["a", "b", "c"] {
        fx.write(
            &format!("{name}.yaml"),
            &fx.segment(name, &format!("Name: {name}\n")),
        );
    }
    fx.converge(false, 3).await;
    fx.remove("c.yaml");
    let p = fx.plan(false).await;
    assert!(p.converged(), "without prune nothing is deleted");
    assert!(
        p.apps[0].warnings[0]
            .to_string()
            .contains("c (plan with --prune to delete)"),
        "{:?}",
        p.apps[0].warnings
    );
    let p = fx.plan(true).await;
    assert_eq!(steps(&p), [(Action::Delete, "c".to_string())]);
    assert!(!p.has_blocked());
    fx.apply(&p).await;
    let mut names: Vec<String> = fx.managed().await.into_iter().map(|(n, _)| n).collect();
    names.sort(); // created in one wave: in no particular order
    assert_eq!(names, ["a", "b"]);
}

/// Three managed segments; the one named `victim` loses its manifest.
async fn with_victim() -> Fixture {
    let fx = Fixture::new().await;
    for name in ["keep-1", "keep-2", "victim"] {
        fx.write(
            &format!("{name}.yaml"),
            &fx.segment(name, &format!("Name: {name}\n")),
        );
    }
    fx.converge(false, 3).await;
    fx
}

fn blocked_reasons(p: &Plan) -> Vec<String> {
    p.apps
        .iter()
        .flat_map(|a| &a.steps)
        .flat_map(|s| s.blocked.iter().map(|b| b.to_string()))
        .collect()
}

#[tokio::test]
async fn deleting_a_segment_used_by_an_active_campaign_is_blocked() {
    let fx = with_victim().await;
    let id = fx.id_of("victim").await;
    fx.t.client
        .create_campaign()
        .application_id(&fx.app)
        .write_campaign_request(
            WriteCampaignRequest::builder()
                .name("Black Friday")
                .segment_id(&id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    fx.remove("victim.yaml");
    let p = fx.plan(true).await;
    assert_eq!(
        blocked_reasons(&p),
        ["campaign \"Black Friday\" (SCHEDULED) uses this segment"]
    );
    let r = fx.apply(&p).await;
    assert_eq!(r.blocked(), 1);
    assert!(
        fx.managed().await.iter().any(|(n, _)| n == "victim"),
        "not deleted"
    );

    // Explicitly allowed, it goes.
    let r = apply::apply(
        &fx.api,
        &p,
        &Options {
            allow_delete_in_use: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.done(Action::Delete), 1, "{}", r.details(true));
}

#[tokio::test]
async fn deleting_a_segment_used_by_a_live_journey_is_blocked_and_by_a_draft_one_warned() {
    let fx = with_victim().await;
    let id = fx.id_of("victim").await;
    let journey = |name: &str| {
        WriteJourneyRequest::builder()
            .name(name)
            .start_condition(
                StartCondition::builder()
                    .segment_start_condition(SegmentCondition::builder().segment_id(&id).build())
                    .build(),
            )
            .build()
    };
    let draft =
        fx.t.client
            .create_journey()
            .application_id(&fx.app)
            .write_journey_request(journey("Draft flow"))
            .send()
            .await
            .unwrap();
    let live =
        fx.t.client
            .create_journey()
            .application_id(&fx.app)
            .write_journey_request(journey("Welcome"))
            .send()
            .await
            .unwrap();
    let live_id = live.journey_response.unwrap().id.unwrap();
    fx.t.client
        .update_journey_state()
        .application_id(&fx.app)
        .journey_id(&live_id)
        .journey_state_request(JourneyStateRequest::builder().state(State::Closed).build())
        .send()
        .await
        .unwrap();
    fx.remove("victim.yaml");
    let p = fx.plan(true).await;
    assert_eq!(
        blocked_reasons(&p),
        ["journey \"Welcome\" (CLOSED) uses this segment"]
    );

    // Once the live journey is cancelled, only the draft remains: allowed, with a warning.
    fx.t.client
        .update_journey_state()
        .application_id(&fx.app)
        .journey_id(&live_id)
        .journey_state_request(
            JourneyStateRequest::builder()
                .state(State::Cancelled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let p = fx.plan(true).await;
    assert!(!p.has_blocked());
    let warnings = &p.apps[0].steps[0].warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string() == "journey \"Draft flow\" (DRAFT) refers to this segment"),
        "{warnings:?}"
    );
    drop(draft);
}

#[tokio::test]
async fn deleting_a_base_segment_of_a_kept_segment_is_blocked() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &fx.segment("base", "Name: base\n"));
    fx.write("b.yaml", &fx.segment("keep-1", "Name: keep\n"));
    fx.write("c.yaml", &fx.segment("keep-2", "Name: keep 2\n"));
    fx.converge(false, 3).await;
    // Someone builds an unmanaged segment on it.
    let base = fx.id_of("base").await;
    let req = util::built_on("built by hand", &base).build();
    let hand = util::create_segment(&fx.t.client, &fx.app, req).await;
    fx.remove("a.yaml");
    let p = fx.plan(true).await;
    assert_eq!(
        blocked_reasons(&p),
        [format!(
            "segment \"built by hand\" ({hand}) builds on this segment"
        )]
    );
}

#[tokio::test]
async fn a_protected_segment_is_not_deleted_after_its_manifest_is_gone() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &fx.segment("keep-1", "Name: a\n"));
    fx.write("b.yaml", &fx.segment("keep-2", "Name: b\n"));
    fx.write(
        "c.yaml",
        &fx.segment("vip", "Name: vip\n")
            .replace("  application:", "  protect: true\n  application:"),
    );
    fx.converge(false, 3).await;
    fx.remove("c.yaml");
    let p = fx.plan(true).await;
    let reasons = blocked_reasons(&p);
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].starts_with("protected (segmentctl:protect=true)"),
        "{reasons:?}"
    );
    let r = apply::apply(
        &fx.api,
        &p,
        &Options {
            allow_delete_in_use: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        r.blocked(),
        1,
        "protection is not lifted by --allow-delete-in-use"
    );
}

#[tokio::test]
async fn an_empty_desired_set_and_a_mass_deletion_are_blocked() {
    let fx = with_victim().await;
    // Two of three removed: 67% > 50%.
    fx.remove("victim.yaml");
    fx.remove("keep-2.yaml");
    let p = fx.plan(true).await;
    let reasons = blocked_reasons(&p);
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons
            .iter()
            .all(|r| r
                == "this plan deletes 2 of 3 managed segments (67%), over max_delete_percent 50"),
        "{reasons:?}"
    );
    // Every manifest of the application removed: the application is still observed, and
    // reported as this owner's but not declared here; nothing in it is deleted.
    fx.remove("keep-1.yaml");
    fx.write("other.yaml", "apiVersion: segmentctl/v1\nkind: Application\nmetadata: {name: other}\nspec: {Name: Other}\n");
    let p = fx.plan(true).await;
    let undeclared = p
        .apps
        .iter()
        .find(|a| a.app_id.as_deref() == Some(fx.app.as_str()))
        .expect("the application is observed");
    assert!(
        undeclared.steps.is_empty(),
        "nothing deleted: {:?}",
        undeclared.steps
    );
    let warnings: Vec<String> = undeclared.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        ["3 segments are managed by owner \"segmentctl\" here, but no manifest in this folder declares the application; another repository may use the same owner. Nothing in it is changed"]
    );
}

#[tokio::test]
async fn a_saved_plan_is_refused_when_a_segment_it_touches_moved() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &fx.segment("north-america", COUNTRY));
    fx.converge(false, 3).await;
    fx.write(
        "a.yaml",
        &fx.segment("north-america", &COUNTRY.replace("MX", "PR")),
    );
    let saved = fx.plan(false).await;
    assert!(apply::stale(&fx.api, &saved).await.unwrap().is_empty());
    // Someone else updates the segment after the review.
    let id = fx.id_of("north-america").await;
    fx.t.client
        .update_segment()
        .application_id(&fx.app)
        .segment_id(&id)
        .write_segment_request(named("hand edit"))
        .send()
        .await
        .unwrap();
    let moved = apply::stale(&fx.api, &saved).await.unwrap();
    assert_eq!(
        moved,
        [format!(
            "segment north-america ({id}) moved: planned against version 1, now version 2"
        )]
    );
}

#[tokio::test]
async fn drift_made_by_another_client_is_shown_and_corrected() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &fx.segment("north-america", COUNTRY));
    fx.converge(false, 3).await;
    let id = fx.id_of("north-america").await;
    fx.t.client
        .update_segment()
        .application_id(&fx.app)
        .segment_id(&id)
        .write_segment_request(named("North America"))
        .send()
        .await
        .unwrap();
    let p = fx.plan(false).await;
    let step = &p.apps[0].steps[0];
    assert_eq!((step.action, step.drift), (Action::Update, Some(2)));
    let text = segmentctl::report::text(&p, false);
    assert!(
        text.contains(
            "drift: changed outside segmentctl (live version 2); this update restores the manifest"
        ),
        "{text}"
    );
    fx.apply(&p).await;
    assert!(fx.plan(false).await.converged());
}

#[tokio::test]
async fn an_unmanaged_segment_with_the_same_name_is_left_alone_and_can_be_adopted() {
    let fx = Fixture::new().await;
    let hand = util::create_segment(&fx.t.client, &fx.app, named("North America")).await;
    fx.write("a.yaml", &fx.segment("north-america", COUNTRY));
    let p = fx.plan(true).await;
    assert_eq!(steps(&p), [(Action::Create, "north-america".to_string())]);
    assert!(p.apps[0].steps[0].warnings[0]
        .to_string()
        .contains(&format!("set metadata.adopt: {hand}")));

    // Adopting it instead: the existing segment is claimed and updated, nothing created.
    fx.write(
        "a.yaml",
        &fx.segment("north-america", COUNTRY).replace(
            "  application:",
            &format!("  adopt: {hand}\n  application:"),
        ),
    );
    let p = fx.plan(true).await;
    assert_eq!(steps(&p), [(Action::Adopt, "north-america".to_string())]);
    let r = fx.apply(&p).await;
    assert_eq!(r.failed(), 0, "{}", r.details(true));
    let live = fx.live().await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, hand);
    assert!(fx.plan(true).await.converged());
}

/// `segmentctl import` of the fixture's application into `imported/`, with the endpoint
/// target and the AWS environment's credentials: the exit code, the folder, and the files
/// written, sorted.
async fn import_all(fx: &Fixture) -> (u8, std::path::PathBuf, Vec<String>) {
    let cfg = format!(
        "target:\n  endpoint: {{url: '{}', region: us-east-1}}\nowner: {OWNER}\n",
        fx.t.endpoint()
    );
    fx.write("segmentctl.yaml", &cfg);
    let out = fx.dir.path().join("imported");
    // Credentials for the endpoint target come from the standard AWS environment.
    let code = {
        let _env = EnvGuard::set(&[
            ("AWS_ACCESS_KEY_ID", util::KEY),
            ("AWS_SECRET_ACCESS_KEY", util::SECRET),
        ]);
        let inputs = segmentctl::reconcile::pipeline::Inputs {
            dir: fx.dir.path().to_path_buf(),
            config: None,
            overrides: Default::default(),
        };
        segmentctl::cli::commands::import(&inputs, &fx.app, &out)
            .await
            .unwrap()
    };
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    files.sort();
    (code, out, files)
}

#[tokio::test]
async fn import_writes_manifests_that_plan_as_empty() {
    let fx = Fixture::new().await;
    let base = util::create_segment(&fx.t.client, &fx.app, named("North America")).await;
    let req = util::built_on("NA & friends!", &base)
        .tags("team", "crm")
        .build();
    util::create_segment(&fx.t.client, &fx.app, req).await;
    let (code, out, files) = import_all(&fx).await;
    assert_eq!(code, 0);
    assert_eq!(files, ["na-friends.yaml", "north-america.yaml"]);
    let text = std::fs::read_to_string(out.join("na-friends.yaml")).unwrap();
    assert!(text.contains("Ref: north-america"), "{text}");
    assert!(fx.plan(false).await.converged());
}

/// Names from the API are data: a name tag that climbs out of the folder, an absolute path,
/// or a display name made of path characters never becomes a path outside `--out`.
#[tokio::test]
async fn import_never_writes_outside_its_folder_whatever_the_tags_say() {
    let fx = Fixture::new().await;
    let outside = tempfile::tempdir().unwrap();
    let absolute = outside.path().join("abs").display().to_string();
    for (display, name_tag) in [
        ("Escaped", "../escaped".to_string()),
        ("Absolute", absolute.clone()),
        ("Nested", "a/b".to_string()),
        ("../../up", String::new()),
        ("/etc/passwd", String::new()),
    ] {
        let mut req = aws_sdk_pinpoint::types::WriteSegmentRequest::builder().name(display);
        if !name_tag.is_empty() {
            req = req
                .tags(segmentctl::TAG_MANAGED_BY, OWNER)
                .tags(segmentctl::TAG_NAME, name_tag);
        }
        util::create_segment(&fx.t.client, &fx.app, req.build()).await;
    }
    let (code, _, files) = import_all(&fx).await;
    assert_eq!(code, 0);
    assert_eq!(
        files,
        [
            "absolute.yaml",
            "escaped.yaml",
            "etc-passwd.yaml",
            "nested.yaml",
            "up.yaml"
        ]
    );
    assert!(!fx.dir.path().join("escaped.yaml").exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // What was written is what plans as empty: the refused names were replaced by the
    // checked ones in the tags too.
    assert!(fx.plan(false).await.converged());
}

/// Sets environment variables for the duration of a scope (tests in this binary that read
/// the AWS environment run one at a time through this lock).
pub struct EnvGuard {
    keys: Vec<&'static str>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl EnvGuard {
    pub fn set(vars: &[(&'static str, &str)]) -> Self {
        let lock = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in vars {
            // SAFETY: the lock serializes every test that touches these variables.
            unsafe { std::env::set_var(k, v) };
        }
        Self {
            keys: vars.iter().map(|(k, _)| *k).collect(),
            _lock: lock,
        }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for k in &self.keys {
            // SAFETY: as above.
            unsafe { std::env::remove_var(k) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_never_leave_duplicates_and_reruns_converge() {
    let fx = Fixture::new().await;
    for i in 0..100 {
        fx.write(&format!("s{i:03}.yaml"), &fx.segment(&format!("s{i:03}"), &format!("Name: segment {i}\nDimensions:\n  Attributes:\n    cohort: {{Values: [\"{i}\"]}}\n")));
    }
    fx.t.server.state.faults.set(FaultConfig {
        lost_response_rate: 0.3,
        seed: 42,
        ..Default::default()
    });
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 10, "no convergence after 10 rounds");
        // The reads go through the same faults: a plan that cannot be made is made again.
        let Some(p) = try_plan_dir(&fx.api, fx.dir.path(), false).await else {
            continue;
        };
        if p.converged() {
            break;
        }
        fx.apply(&p).await;
    }
    fx.t.server.state.faults.set(FaultConfig::default());
    let managed = fx.managed().await;
    assert_eq!(managed.len(), 100, "exactly one live segment per manifest");
    let names: std::collections::BTreeSet<&str> = managed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 100, "no duplicates");
    assert_eq!(
        fx.live().await.len(),
        100,
        "nothing unmanaged was created either"
    );
    assert!(
        fx.t.server.counters().responses_lost > 0,
        "the faults were injected"
    );
    eprintln!(
        "converged after {} apply rounds; {} responses lost",
        rounds - 1,
        fx.t.server.counters().responses_lost
    );
}
