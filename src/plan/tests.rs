//! The planner on hand-made observed states, and the reports people read (snapshots).

use super::*;
use crate::manifests::manifest::{load_sources, Source};
use crate::model::SegmentResponse;
use crate::model::Tags;
use crate::plan::live::{AppSnapshot, LiveApp, LiveCampaign, LiveJourney, LiveState, Observed};

const APP: &str = "0123456789abcdef0123456789abcdef";

fn desired(text: &str) -> DesiredState {
    let l = load_sources(&[Source {
        name: "m.yaml".into(),
        bytes: text.as_bytes().to_vec().into(),
    }]);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    crate::manifests::desired::build(&l.documents).unwrap()
}

fn seg(name: &str, body: &str) -> String {
    format!("---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: {name}\n  application: {APP}\nspec:\n{}", body.lines().map(|l| format!("  {l}\n")).collect::<String>())
}

/// A live segment as the server returns it; `managed` adds the ownership tags.
fn live(id: &str, managed: Option<&str>, version: i32, def: &str) -> SegmentResponse {
    let def: WriteSegmentRequest = serde_json::from_str(def).unwrap();
    let mut tags = Tags::new();
    if let Some(n) = managed {
        tags = ownership_tags("segmentctl", n);
        let none = |_: &str| None;
        tags.insert(
            TAG_DIGEST.into(),
            diff::fingerprint(&diff::canonical(&def, &none)),
        );
    }
    SegmentResponse {
        application_id: APP.into(),
        arn: format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{APP}/segments/{id}"),
        creation_date: "2026-11-01T00:00:00.000Z".into(),
        dimensions: def.dimensions,
        id: id.into(),
        last_modified_date: None,
        name: def.name,
        segment_groups: def.segment_groups,
        segment_type: "DIMENSIONAL".into(),
        tags: Some(tags),
        version,
        import_definition: None,
    }
}

fn observed(
    segments: Vec<SegmentResponse>,
    campaigns: Vec<LiveCampaign>,
    journeys: Vec<LiveJourney>,
) -> Observed {
    let mut o = Observed::default();
    o.apps.insert(
        AppKey::Id(APP.into()),
        LiveState::Found(AppSnapshot {
            app: LiveApp {
                id: APP.into(),
                name: "Shop".into(),
                arn: format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{APP}"),
                tags: Tags::new(),
                creation_date: String::new(),
            },
            segments,
            campaigns,
            journeys,
        }),
    );
    o
}

fn settings(prune: bool) -> Settings {
    Settings {
        owner: "segmentctl".into(),
        prune,
        max_delete_percent: 100.0,
    }
}

/// A plan with one of each kind of step a reviewer meets.
fn review_plan() -> Plan {
    let (d, o) = review_inputs();
    plan(&d, &o, &settings(true))
}

fn review_inputs() -> (DesiredState, Observed) {
    let d = desired(&[
        seg("north-america", "Name: North America\nDimensions:\n  Location:\n    Country:\n      Values: [US, CA]\n  Behavior:\n    Recency: {Duration: DAY_30, RecencyType: ACTIVE}\n"),
        seg("vip", "Name: VIP\nDimensions:\n  Metrics:\n    spend: {ComparisonOperator: GREATER_THAN, Value: 500}\n"),
        seg("new-arrivals", "Name: New arrivals\nDimensions:\n  Attributes:\n    signup: {AttributeType: AFTER, Values: ['2026-10-01T00:00:00Z']}\ntags:\n  team: growth\n"),
    ]
    .concat());
    let mut drifted = live(
        "b2",
        Some("vip"),
        4,
        r#"{"Name":"VIP","Dimensions":{"Metrics":{"spend":{"ComparisonOperator":"GREATER_THAN","Value":500}}}}"#,
    );
    // Edited by hand after segmentctl applied it: the definition no longer matches the digest.
    drifted
        .dimensions
        .as_mut()
        .unwrap()
        .metrics
        .as_mut()
        .unwrap()
        .get_mut("spend")
        .unwrap()
        .value = 100.0;
    let o = observed(
        vec![
            live(
                "a1",
                Some("north-america"),
                3,
                r#"{"Name":"North America","Dimensions":{"Location":{"Country":{"Values":["US","MX"]}},"Behavior":{"Recency":{"Duration":"DAY_7","RecencyType":"ACTIVE"}}}}"#,
            ),
            drifted,
            live(
                "c3",
                Some("black-friday"),
                1,
                r#"{"Name":"Black Friday buyers"}"#,
            ),
            live("d4", None, 1, r#"{"Name":"New arrivals"}"#),
        ],
        vec![LiveCampaign {
            id: "k1".into(),
            name: "Black Friday".into(),
            segment_id: "c3".into(),
            status: "SCHEDULED".into(),
        }],
        vec![],
    );
    (d, o)
}

#[test]
fn a_plan_from_prepared_manifests_is_the_same_plan() {
    let (mut d, o) = review_inputs();
    // Built on a live segment named by id: its canonical form needs the live state.
    d.apps[0].segments[1].spec.segment_groups = Some(crate::model::SegmentGroupList {
        groups: Some(vec![crate::model::SegmentGroup {
            source_segments: Some(vec![crate::model::SegmentReference {
                id: Some("a1".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
        include: None,
    });
    let prepared = Prepared::of(&d);
    assert!(prepared.segments[0][1].is_none());
    assert!(prepared.segments[0][0].is_some() && prepared.segments[0][2].is_some());
    for prune in [false, true] {
        assert_eq!(
            plan_prepared(&d, &o, &settings(prune), Some(&prepared)),
            plan(&d, &o, &settings(prune))
        );
    }
}

#[test]
fn the_text_report_reads_like_terraform_plan() {
    insta::assert_snapshot!(crate::report::text(&review_plan(), false));
}

#[test]
fn the_markdown_report_has_the_summary_blocked_steps_and_a_block_per_segment() {
    insta::assert_snapshot!(crate::report::markdown(
        &review_plan(),
        crate::report::MARKDOWN_LIMIT
    ));
}

#[test]
fn the_json_report_is_versioned_and_round_trips() {
    let p = review_plan();
    let json = crate::report::json(&p);
    assert!(json.contains("\"format_version\": 2"));
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn the_summary_counts_each_kind_and_the_blocked_ones() {
    let s = review_plan().summary();
    assert_eq!(
        (s.create, s.update, s.delete, s.blocked, s.drift),
        (1, 2, 1, 1, 1)
    );
    assert_eq!(
        s.line(),
        "Plan: 1 to create, 2 to update, 1 to delete (1 blocked)."
    );
}

#[test]
fn a_markdown_report_never_exceeds_the_comment_limit() {
    let text: String = (0..3000)
        .map(|i| seg(&format!("segment-{i:04}"), &format!("Name: Segment number {i} with a fairly long descriptive name\nDimensions:\n  Attributes:\n    cohort: {{Values: [a{i}, b{i}, c{i}]}}\n")))
        .collect();
    let p = plan(
        &desired(&text),
        &observed(vec![], vec![], vec![]),
        &settings(false),
    );
    let md = crate::report::markdown(&p, crate::report::MARKDOWN_LIMIT);
    // Split where each part starts: every part within the limit, every step in a table.
    let starts: Vec<usize> = md
        .match_indices("<!-- segmentctl-plan part ")
        .map(|(i, _)| i)
        .collect();
    let n = starts.len();
    assert!(n > 1, "3,000 steps do not fit one comment");
    let parts: Vec<&str> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&md.len()]))
        .map(|(a, b)| &md[*a..*b])
        .collect();
    for (k, part) in parts.iter().enumerate() {
        assert!(
            part.len() <= crate::report::MARKDOWN_LIMIT,
            "part {k}: {}",
            part.len()
        );
        assert!(
            part.starts_with(&crate::report::part_marker(k + 1, n)),
            "{part:.80}"
        );
    }
    assert!(parts[0].contains("**Plan: 3000 to create, 0 to update, 0 to delete.**"));
    for i in 0..3000 {
        assert!(
            md.contains(&format!("| + | `segment-{i:04}` |")),
            "segment-{i:04} is in the table"
        );
    }
    assert!(parts[0].contains("The table continues in the next comment"));
}

#[test]
fn unmanaged_and_other_owners_segments_are_never_planned_for_deletion() {
    let d = desired(&seg("keep", "Name: keep\n"));
    let mut other = live("x9", Some("theirs"), 1, r#"{"Name":"theirs"}"#);
    other
        .tags
        .as_mut()
        .unwrap()
        .insert(crate::TAG_MANAGED_BY.into(), "another-team".into());
    let o = observed(
        vec![
            live("k1", Some("keep"), 1, r#"{"Name":"keep"}"#),
            live("u1", None, 1, r#"{"Name":"by hand"}"#),
            other,
        ],
        vec![],
        vec![],
    );
    let p = plan(&d, &o, &settings(true));
    assert!(p.is_empty(), "{}", crate::report::text(&p, false));
}

#[test]
fn duplicates_keep_the_one_a_campaign_uses_and_delete_the_others() {
    let d = desired(&seg("vip", "Name: VIP\n"));
    let mut newer = live("z2", Some("vip"), 1, r#"{"Name":"VIP"}"#);
    newer.creation_date = "2026-11-02T00:00:00.000Z".into();
    let o = observed(
        vec![live("a1", Some("vip"), 1, r#"{"Name":"VIP"}"#), newer],
        vec![LiveCampaign {
            id: "c".into(),
            name: "Promo".into(),
            segment_id: "z2".into(),
            status: "SCHEDULED".into(),
        }],
        vec![],
    );
    let p = plan(&d, &o, &settings(false));
    let steps = &p.apps[0].steps;
    assert_eq!(steps.len(), 1);
    assert_eq!(
        (steps[0].action, steps[0].segment_id.as_deref()),
        (Action::Delete, Some("a1"))
    );
    assert!(
        crate::report::cause_words(&steps[0], crate::report::Escape::Text)
            .unwrap()
            .starts_with("duplicate: 2 live segments claim the name \"vip\"; keeping z2")
    );
    assert!(
        !steps[0].is_blocked(),
        "a duplicate is removed even without prune"
    );
}

#[test]
fn deletes_run_after_the_deleted_segments_built_on_them() {
    let d = desired(&seg("other", "Name: other\n"));
    let base = live("b1", Some("base"), 1, r#"{"Name":"base"}"#);
    let top = live(
        "t1",
        Some("top"),
        1,
        r#"{"Name":"top","SegmentGroups":{"Groups":[{"SourceSegments":[{"Id":"b1"}]}]}}"#,
    );
    let o = observed(
        vec![
            base,
            top,
            live("o1", Some("other"), 1, r#"{"Name":"other"}"#),
        ],
        vec![],
        vec![],
    );
    let p = plan(&d, &o, &settings(true));
    let order: Vec<&str> = p.apps[0].steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["top", "base"]);
    assert!(
        !p.has_blocked(),
        "a base segment deleted with its dependent is not blocked"
    );
}

#[test]
fn planning_is_deterministic() {
    assert_eq!(review_plan(), review_plan());
}

#[test]
fn the_desired_digest_follows_meaning_not_spelling() {
    let digest = |body: &str| desired_digest(&desired(&seg("s", body)));
    let base = digest("Name: S\nDimensions:\n  Location:\n    Country:\n      Values: [US, CA]\n");
    assert_eq!(
        base,
        digest("Name: S\nDimensions:\n  Location:\n    Country:\n      DimensionType: INCLUSIVE\n      Values: [CA, US]\n"),
        "set order and defaults do not count"
    );
    for other in [
        "Name: S\nDimensions:\n  Location:\n    Country:\n      Values: [US]\n",
        "Name: T\nDimensions:\n  Location:\n    Country:\n      Values: [US, CA]\n",
        "Name: S\nDimensions:\n  Location:\n    Country:\n      Values: [US, CA]\ntags:\n  team: crm\n",
    ] {
        assert_ne!(base, digest(other), "{other}");
    }
}

#[test]
fn an_application_declared_without_segments_keeps_its_managed_ones() {
    let d = desired(
        "apiVersion: segmentctl/v1\nkind: Application\nmetadata: {name: shop}\nspec: {Name: Shop}\n",
    );
    let mut o = observed(
        vec![live("k1", Some("keep"), 1, r#"{"Name":"keep"}"#)],
        vec![],
        vec![],
    );
    // The application is the one the manifest declares.
    let state = o.apps.remove(&AppKey::Id(APP.into())).unwrap();
    let LiveState::Found(mut snap) = state else {
        unreachable!()
    };
    snap.app.tags = ownership_tags("segmentctl", "shop");
    o.apps
        .insert(AppKey::Ref("shop".into()), LiveState::Found(snap));
    let p = plan(&d, &o, &settings(true));
    let step = &p.apps[0].steps[0];
    assert_eq!(step.action, Action::Delete);
    assert!(matches!(
        step.blocked[..],
        [BlockReason::NoSegmentsDeclared { managed: 1 }]
    ));
}

#[test]
fn segments_in_an_application_no_manifest_names_are_reported_not_deleted() {
    let d = desired(&seg("keep", "Name: keep\n").replace(APP, "fedcba9876543210fedcba9876543210"));
    let o = observed(
        vec![live("k1", Some("theirs"), 1, r#"{"Name":"theirs"}"#)],
        vec![],
        vec![],
    );
    let p = plan(&d, &o, &settings(true));
    let app = p
        .apps
        .iter()
        .find(|a| a.app_id.as_deref() == Some(APP))
        .unwrap();
    assert!(app.steps.is_empty());
    assert!(matches!(
        app.warnings[..],
        [Warning::NotDeclaredHere { managed: 1, .. }]
    ));
}

/// The comment as GitHub renders it (GFM): no literal `**` anywhere (emphasis inside raw
/// HTML does not render), and every step of a 500-step plan visible in the steps table.
#[test]
fn the_markdown_renders_as_github_does_with_every_step_of_a_large_plan_visible() {
    let render = |md: &str| {
        let mut options = comrak::Options::default();
        options.extension.table = true;
        options.extension.strikethrough = true;
        options.extension.autolink = true;
        options.render.r#unsafe = true;
        comrak::markdown_to_html(md, &options)
    };
    let html = render(&crate::report::markdown(
        &review_plan(),
        crate::report::MARKDOWN_LIMIT,
    ));
    assert!(!html.contains("**"), "{html}");
    assert!(html.contains("<b>blocked</b>"), "{html}");
    let text: String = (0..500)
        .map(|i| seg(&format!("segment-{i:03}"), &format!("Name: Segment {i}\nDimensions:\n  Attributes:\n    cohort: {{Values: [a{i}, b{i}]}}\n")))
        .collect();
    let p = plan(
        &desired(&text),
        &observed(vec![], vec![], vec![]),
        &settings(false),
    );
    let html = render(&crate::report::markdown(&p, crate::report::MARKDOWN_LIMIT));
    assert!(!html.contains("**"));
    for i in 0..500 {
        assert!(
            html.contains(&format!("<td><code>segment-{i:03}</code></td>")),
            "segment-{i:03} is in the rendered table"
        );
    }
}

/// A mass deletion blocks every step: the head lists the first blocked steps, and every
/// part of the comment stays within the limit.
#[test]
fn a_plan_with_a_thousand_blocked_steps_fits_the_comment_limit() {
    let d = desired(&seg("keep", "Name: keep\n"));
    let lives: Vec<SegmentResponse> = (0..1000)
        .map(|i| {
            live(
                &format!("id{i:04}"),
                Some(&format!("gone-{i:04}")),
                1,
                r#"{"Name":"gone"}"#,
            )
        })
        .collect();
    let mut st = settings(true);
    st.max_delete_percent = 50.0;
    let p = plan(&d, &observed(lives, vec![], vec![]), &st);
    assert!(p.has_blocked());
    let md = crate::report::markdown(&p, crate::report::MARKDOWN_LIMIT);
    let starts: Vec<usize> = md
        .match_indices("<!-- segmentctl-plan part ")
        .map(|(i, _)| i)
        .collect();
    for (a, b) in starts.iter().zip(starts.iter().skip(1).chain([&md.len()])) {
        assert!(
            b - a <= crate::report::MARKDOWN_LIMIT,
            "a part of {} characters",
            b - a
        );
    }
    assert!(
        md.contains("> - … 980 more: the steps table below marks each ⛔"),
        "{:.3000}",
        md
    );
    for i in 0..1000 {
        assert!(
            md.contains(&format!("`gone-{i:04}`")),
            "gone-{i:04} is in the table"
        );
    }
}
