//! Customer Profiles as a target: `SegmentDefinition` manifests planned and applied by the
//! binary (and, for the chaos test, by the library) through `aws-sdk-customerprofiles`
//! against `segmentctl serve`; what is live is read back with the SDK.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use aws_sdk_customerprofiles::types::{
    Dimension, Group, IncludeOptions, ProfileAttributes, ProfileDimension, SegmentGroup,
    SourceSegment, StringDimensionType,
};
use segmentctl::manifests::config::RateLimits;
use segmentctl::plan::definitions::{self as defs, LiveDomain};
use segmentctl::plan::Settings;
use segmentctl::reconcile::definitions as run;
use segmentctl::server::FaultConfig;
use segmentctl::targets::pacing::{Api, RetryPolicy};
use segmentctl::targets::profiles::SdkProfiles;

use crate::util::{self, profiles_client, segmentctl, TestServer};

const OWNER: &str = "team-a";

fn config(t: &TestServer, domain: &str, extra: &str) -> String {
    format!(
        "target:\n  customerProfiles: {{domain: {domain}, endpoint: '{}', region: us-east-1}}\nowner: {OWNER}\n{extra}",
        t.endpoint()
    )
}

/// A `SegmentDefinition` manifest: `country` values on `Address.Country`, and `sources`
/// (manifest names, by `Ref`).
fn definition(name: &str, countries: &[&str], sources: &[&str]) -> String {
    let mut out = format!(
        "apiVersion: segmentctl/v1\nkind: SegmentDefinition\nmetadata:\n  name: {name}\nspec:\n  DisplayName: {name}\n  SegmentGroups:\n    Groups:\n    - Dimensions:\n      - ProfileAttributes:\n          Address:\n            Country: {{DimensionType: INCLUSIVE, Values: [{}]}}\n",
        countries.join(", ")
    );
    if !sources.is_empty() {
        out.push_str("      SourceSegments:\n");
        for s in sources {
            out.push_str(&format!("      - Ref: {s}\n"));
        }
        out.push_str("      SourceType: ALL\n");
    }
    out
}

fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = segmentctl(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn create_domain(t: &TestServer, domain: &str) {
    profiles_client(t)
        .create_domain()
        .domain_name(domain)
        .default_expiration_days(30)
        .send()
        .await
        .unwrap();
}

/// Every definition of the domain: name → (sources, `segmentctl:name` tag).
async fn live(t: &TestServer, domain: &str) -> BTreeMap<String, (Vec<String>, Option<String>)> {
    let c = profiles_client(t);
    let list = c
        .list_segment_definitions()
        .domain_name(domain)
        .send()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for item in list.items() {
        let name = item.segment_definition_name().unwrap().to_string();
        // A controller may delete it between the list and the read (the daemon test polls).
        let got = match c
            .get_segment_definition()
            .domain_name(domain)
            .segment_definition_name(&name)
            .send()
            .await
        {
            Ok(got) => got,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                continue
            }
            Err(e) => panic!("GetSegmentDefinition: {e:?}"),
        };
        let sources = got
            .segment_groups()
            .map(|g| {
                g.groups()
                    .iter()
                    .flat_map(|g| g.source_segments())
                    .filter_map(|s| s.segment_definition_name().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let tag = got.tags().and_then(|t| t.get("segmentctl:name")).cloned();
        out.insert(name, (sources, tag));
    }
    out
}

fn redact(text: &str, t: &TestServer) -> String {
    let text = text.replace(&t.endpoint(), "<endpoint>");
    // Derived names end in 8 hex characters of the content.
    regex_lite::Regex::new(r"-[0-9a-f]{8}\b")
        .unwrap()
        .replace_all(&text, "-<hex>")
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_created_replaced_in_place_or_renamed_with_their_users_and_pruned() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US"], &[])).unwrap();
    std::fs::write(d.join("leaf.yaml"), definition("leaf", &["FR"], &[])).unwrap();
    std::fs::write(
        d.join("user.yaml"),
        definition("user", &["US", "CA"], &["base"]),
    )
    .unwrap();

    // A domain that does not exist is named, and nothing is created.
    let (code, _, stderr) = cli(d, &["plan", "."]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the Customer Profiles domain shop does not exist at"),
        "{stderr}"
    );
    create_domain(&t, "shop").await;

    let (code, stdout, stderr) = cli(d, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{stderr}");
    insta::assert_snapshot!("profiles_target_create", redact(&stdout, &t));
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Apply complete: 3 created."), "{stdout}");
    let now = live(&t, "shop").await;
    assert_eq!(
        now.keys().map(String::as_str).collect::<Vec<_>>(),
        ["base", "leaf", "user"]
    );
    assert_eq!(now["user"].0, ["base"]);
    assert_eq!(now["leaf"].1.as_deref(), Some("leaf"));
    let (code, stdout, _) = cli(d, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("No changes"), "{stdout}");

    // The base changes and a definition builds on it: created under a derived name, its
    // user re-created on it, then the old base deleted. The leaf is replaced in place.
    std::fs::write(d.join("base.yaml"), definition("base", &["US", "MX"], &[])).unwrap();
    std::fs::write(d.join("leaf.yaml"), definition("leaf", &["FR", "DE"], &[])).unwrap();
    let (code, stdout, stderr) = cli(d, &["plan", "."]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("profiles_target_replace", redact(&stdout, &t));
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    insta::assert_snapshot!(
        "profiles_target_replace_applied",
        redact(&stdout[stdout.find("  replace").unwrap()..], &t)
    );
    let now = live(&t, "shop").await;
    let base: Vec<&String> = now.keys().filter(|n| n.starts_with("base-")).collect();
    assert_eq!(base.len(), 1, "{now:?}");
    assert!(
        !now.contains_key("base"),
        "the old base is deleted: {now:?}"
    );
    assert_eq!(now[base[0]].1.as_deref(), Some("base"));
    assert_eq!(&now["user"].0, &[base[0].clone()], "the user is re-pointed");
    let (code, stdout, _) = cli(d, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{stdout}");

    // A manifest removed: kept without prune, deleted with it.
    std::fs::remove_file(d.join("leaf.yaml")).unwrap();
    let (code, stdout, _) = cli(d, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{stdout}");
    std::fs::write(
        d.join("segmentctl.yaml"),
        config(&t, "shop", "prune: true\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("- delete   leaf (its manifest is gone (prune))"),
        "{stdout}"
    );
    assert!(!live(&t, "shop").await.contains_key("leaf"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_domain_an_unmanaged_name_drift_and_mistakes_are_each_said() {
    let t = util::start().await;
    create_domain(&t, "staging").await;
    create_domain(&t, "prod").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "staging", "")).unwrap();
    std::fs::write(d.join("a.yaml"), definition("a", &["US"], &[])).unwrap();
    let (code, _, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stderr}");

    // The same folder on another domain of the configured target: its endpoint is kept.
    let (code, stdout, stderr) = cli(
        d,
        &[
            "plan",
            ".",
            "--target",
            "customer-profiles:prod",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "Target: the Customer Profiles domain prod at {} (us-east-1, account",
            t.endpoint()
        )) || stdout.starts_with(&format!(
            "Target: the Customer Profiles domain prod at {} (us-east-1)",
            t.endpoint()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("Plan: 1 to create."), "{stdout}");
    assert!(live(&t, "prod").await.is_empty(), "a plan changes nothing");

    // Someone re-creates the definition with other criteria, keeping its tags: drift.
    let c = profiles_client(&t);
    let got = c
        .get_segment_definition()
        .domain_name("staging")
        .segment_definition_name("a")
        .send()
        .await
        .unwrap();
    c.delete_segment_definition()
        .domain_name("staging")
        .segment_definition_name("a")
        .send()
        .await
        .unwrap();
    let other = SegmentGroup::builder()
        .groups(
            Group::builder()
                .dimensions(Dimension::ProfileAttributes(
                    ProfileAttributes::builder()
                        .first_name(
                            ProfileDimension::builder()
                                .dimension_type(StringDimensionType::Inclusive)
                                .values("Ann")
                                .build()
                                .unwrap(),
                        )
                        .build(),
                ))
                .build(),
        )
        .include(IncludeOptions::All)
        .build();
    c.create_segment_definition()
        .domain_name("staging")
        .segment_definition_name("a")
        .display_name("a")
        .segment_groups(other)
        .set_tags(got.tags().cloned())
        .send()
        .await
        .unwrap();
    // And an unmanaged definition holds the name a new manifest wants.
    c.create_segment_definition()
        .domain_name("staging")
        .segment_definition_name("taken")
        .display_name("someone else's")
        .segment_groups(
            SegmentGroup::builder()
                .groups(
                    Group::builder()
                        .source_segments(
                            SourceSegment::builder()
                                .segment_definition_name("a")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    std::fs::write(d.join("taken.yaml"), definition("taken", &["US"], &[])).unwrap();
    let (code, stdout, stderr) = cli(d, &["plan", "."]);
    assert_eq!(code, 3, "blocked: {stdout}{stderr}");
    insta::assert_snapshot!("profiles_target_drift_and_clash", redact(&stdout, &t));
    // The blocked create is skipped; the drifted definition is renamed (something unmanaged
    // builds on it), and the old one kept while it is used.
    let (code, stdout, _) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 3, "{stdout}");
    let now = live(&t, "staging").await;
    assert!(now.contains_key("a"), "still used by taken: {now:?}");
    assert_eq!(now["taken"].0, ["a"]);
    assert_eq!(
        now.keys().filter(|n| n.starts_with("a-")).count(),
        1,
        "{now:?}"
    );

    // Mistakes across manifests, located, and nothing contacted.
    let bad = tempfile::tempdir().unwrap();
    let b = bad.path();
    std::fs::write(b.join("segmentctl.yaml"), config(&t, "staging", "")).unwrap();
    std::fs::write(
        b.join("a.yaml"),
        definition("north", &["US"], &["nrth"]) + "---\n" + &definition("north", &["CA"], &[]),
    )
    .unwrap();
    std::fs::write(
        b.join("b.yaml"),
        definition("x", &["US"], &["y"]) + "---\n" + &definition("y", &["US"], &["x"]),
    )
    .unwrap();
    std::fs::write(
        b.join("c.yaml"),
        "apiVersion: segmentctl/v1\nkind: SegmentDefinition\nmetadata: {name: bad name}\nspec:\n  DisplayName: ''\n  SegmentGroups:\n    Groups:\n    - SourceSegments:\n      - {Ref: x, SegmentDefinitionName: y}\n      Dimensions:\n      - {}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = cli(b, &["plan", "."]);
    assert_eq!(code, 1, "{stdout}");
    insta::assert_snapshot!("profiles_target_mistakes", stderr);
}

fn chaos_api(t: &TestServer) -> SdkProfiles {
    let mut api = Api::new(
        util::profiles_client(t),
        RateLimits {
            segment_writes: 200.0,
            reads: 1000.0,
        },
    );
    api.retry = RetryPolicy {
        attempts: 6,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(200),
    };
    let mut campaigns = Api::new(
        util::campaigns_client(t),
        RateLimits {
            segment_writes: 200.0,
            reads: 1000.0,
        },
    );
    campaigns.counters = api.counters.clone();
    SdkProfiles::new(api, campaigns)
}

/// A folder of chains: `c<k>-0` a base, each `c<k>-<i>` building on the one before.
fn chains(dir: &Path, countries: &[&str]) {
    for k in 0..4 {
        for i in 0..5 {
            let name = format!("c{k}-{i}");
            let sources: Vec<String> = (i > 0)
                .then(|| format!("c{k}-{}", i - 1))
                .into_iter()
                .collect();
            let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
            let c = if i == 0 { countries } else { &["US"][..] };
            std::fs::write(
                dir.join(format!("{name}.yaml")),
                definition(&name, c, &sources),
            )
            .unwrap();
        }
    }
}

/// Plans and applies until the plan is empty, with `appliers` appliers at once.
async fn converge(t: &TestServer, dir: &Path, appliers: usize) -> usize {
    let ws = segmentctl::manifests::workspace::load(dir, None).unwrap();
    let settings = Settings {
        owner: OWNER.into(),
        prune: true,
        max_delete_percent: 100.0,
    };
    for round in 0..20 {
        let mut runs = Vec::new();
        for _ in 0..appliers {
            let api = chaos_api(t);
            let ws = ws.clone();
            let settings = settings.clone();
            runs.push(tokio::spawn(async move {
                let Ok(live) = run::observe(&api, "shop").await else {
                    return false;
                };
                let p = defs::plan(&ws.definitions, None, &live, &settings, Default::default());
                if p.is_empty() {
                    return true;
                }
                let none = segmentctl::reconcile::lease::Fence::none();
                run::apply(&api, &p, None, &none, |_, _| {}).await;
                false
            }));
        }
        let mut done = true;
        for r in runs {
            done &= r.await.unwrap();
        }
        if done {
            return round;
        }
    }
    panic!("no convergence in 20 rounds");
}

/// The invariants: one live definition per manifest, equal to it, its sources the live
/// names of its bases; nothing else but the unmanaged definition.
async fn check(t: &TestServer, dir: &Path) {
    let ws = segmentctl::manifests::workspace::load(dir, None).unwrap();
    t.server.state.faults.set(FaultConfig::default());
    let live: LiveDomain = run::observe(&chaos_api(t), "shop").await.unwrap();
    let p = defs::plan(
        &ws.definitions,
        None,
        &live,
        &Settings {
            owner: OWNER.into(),
            prune: true,
            max_delete_percent: 100.0,
        },
        Default::default(),
    );
    assert!(p.is_empty(), "{p:#?}");
    let mut by_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &live.definitions {
        let tag = d
            .spec
            .tags
            .as_ref()
            .and_then(|t| t.get("segmentctl:name"))
            .cloned();
        by_tag
            .entry(tag.unwrap_or_default())
            .or_default()
            .push(d.name.clone());
    }
    assert_eq!(
        by_tag.get("").map(Vec::len),
        Some(1),
        "the unmanaged one, untouched"
    );
    let names: BTreeSet<&str> = ws.definitions.iter().map(|d| d.name()).collect();
    for n in &names {
        assert_eq!(by_tag.get(*n).map(Vec::len), Some(1), "{n}: {by_tag:?}");
    }
    assert_eq!(by_tag.len(), names.len() + 1, "{by_tag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_converge_under_lost_responses_and_two_appliers() {
    let t = util::start_with(|c| c.rate_limits = true).await;
    create_domain(&t, "shop").await;
    profiles_client(&t)
        .create_segment_definition()
        .domain_name("shop")
        .segment_definition_name("unmanaged")
        .display_name("not ours")
        .segment_groups(
            SegmentGroup::builder()
                .groups(Group::builder().build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    chains(dir.path(), &["US"]);
    t.server.state.faults.set(FaultConfig {
        fault_rate: 0.15,
        lost_response_rate: 0.15,
        latency: Duration::from_millis(2),
        seed: 20261206,
    });
    converge(&t, dir.path(), 2).await;
    check(&t, dir.path()).await;
    // Every base changes: every chain is re-created under derived names, bases first.
    chains(dir.path(), &["US", "CA"]);
    t.server.state.faults.set(FaultConfig {
        fault_rate: 0.15,
        lost_response_rate: 0.15,
        latency: Duration::from_millis(2),
        seed: 20261207,
    });
    converge(&t, dir.path(), 2).await;
    let c = t.server.counters();
    assert!(c.responses_lost > 0 && c.faults_injected > 0, "{c:?}");
    check(&t, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_the_domains_definitions_and_a_plan_right_after_is_empty() {
    let t = util::start().await;
    create_domain(&t, "shop").await;
    let c = profiles_client(&t);
    let country = |v: &str| {
        SegmentGroup::builder()
            .groups(
                Group::builder()
                    .dimensions(Dimension::ProfileAttributes(
                        ProfileAttributes::builder()
                            .first_name(
                                ProfileDimension::builder()
                                    .dimension_type(StringDimensionType::BeginsWith)
                                    .values(v)
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    ))
                    .build(),
            )
            .build()
    };
    for (name, tags) in [
        ("gold", vec![("team", "crm")]),
        ("theirs", vec![("segmentctl:managed-by", "team-b")]),
    ] {
        let mut req = c
            .create_segment_definition()
            .domain_name("shop")
            .segment_definition_name(name)
            .display_name(format!("{name} display"))
            .segment_groups(country("A"));
        for (k, v) in tags {
            req = req.tags(k, v);
        }
        req.send().await.unwrap();
    }
    c.create_segment_definition()
        .domain_name("shop")
        .segment_definition_name("gold-fr")
        .display_name("gold in FR")
        .segment_groups(
            SegmentGroup::builder()
                .groups(
                    Group::builder()
                        .source_segments(
                            SourceSegment::builder()
                                .segment_definition_name("gold")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    let (code, stdout, stderr) = cli(d, &["import", ".", "--out", "imported"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Imported 2 segment definitions from the domain shop into imported."),
        "{stdout}"
    );
    let mut files: Vec<String> = std::fs::read_dir(d.join("imported"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["gold-fr.yaml", "gold.yaml"],
        "another owner's is left out"
    );
    insta::assert_snapshot!(
        "profiles_target_imported",
        std::fs::read_to_string(d.join("imported/gold-fr.yaml")).unwrap()
            + "---\n"
            + &std::fs::read_to_string(d.join("imported/gold.yaml")).unwrap()
    );
    std::fs::write(
        d.join("imported/segmentctl.yaml"),
        config(&t, "shop", "prune: true\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = cli(&d.join("imported"), &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("No changes"), "{stdout}");
    // A Pinpoint import still needs its application.
    let (code, _, stderr) = cli(d, &["import", ".", "--application", "x"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--application names a Pinpoint application"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_takes_over_an_unmanaged_definition_as_it_is_or_replaces_it() {
    use aws_sdk_customerprofiles::types::AddressDimension;
    let t = util::start().await;
    create_domain(&t, "shop").await;
    let c = profiles_client(&t);
    for (name, country) in [("match", "US"), ("differ", "FR")] {
        c.create_segment_definition()
            .domain_name("shop")
            .segment_definition_name(name)
            .display_name(name)
            .segment_groups(
                SegmentGroup::builder()
                    .groups(
                        Group::builder()
                            .dimensions(Dimension::ProfileAttributes(
                                ProfileAttributes::builder()
                                    .address(
                                        AddressDimension::builder()
                                            .country(
                                                ProfileDimension::builder()
                                                    .dimension_type(StringDimensionType::Inclusive)
                                                    .values(country)
                                                    .build()
                                                    .unwrap(),
                                            )
                                            .build(),
                                    )
                                    .build(),
                            ))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    let adopting = |name: &str, target: &str| {
        definition(name, &["US"], &[]).replace(
            &format!("  name: {name}\n"),
            &format!("  name: {name}\n  adopt: {target}\n"),
        )
    };
    std::fs::write(d.join("match.yaml"), adopting("match", "match")).unwrap();
    std::fs::write(d.join("differ.yaml"), adopting("differ", "differ")).unwrap();
    std::fs::write(d.join("ghost.yaml"), adopting("ghost", "nothing-here")).unwrap();
    let (code, stdout, _) = cli(d, &["plan", "."]);
    assert_eq!(code, 3, "{stdout}");
    insta::assert_snapshot!("profiles_target_adopt", redact(&stdout, &t));
    std::fs::remove_file(d.join("ghost.yaml")).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let now = live(&t, "shop").await;
    assert_eq!(now["match"].1.as_deref(), Some("match"));
    assert_eq!(now["differ"].1.as_deref(), Some("differ"));
    let (code, stdout, _) = cli(d, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_manifest_file_never_prunes_and_a_pinpoint_target_refuses_definitions() {
    let t = util::start().await;
    create_domain(&t, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("segmentctl.yaml"),
        config(&t, "shop", "prune: true\n"),
    )
    .unwrap();
    std::fs::write(d.join("a.yaml"), definition("a", &["US"], &[])).unwrap();
    std::fs::write(d.join("b.yaml"), definition("b", &["FR"], &[])).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    std::fs::write(d.join("a.yaml"), definition("a", &["US", "CA"], &[])).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", "a.yaml", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("so prune is off"), "{stderr}");
    assert!(stdout.contains("Apply complete: 1 replaced."), "{stdout}");
    assert!(live(&t, "shop").await.contains_key("b"), "b is kept");

    // The same folder with a Pinpoint target: an error, not an empty plan.
    std::fs::write(d.join("segmentctl.yaml"), util::endpoint_config(&t, "")).unwrap();
    let (code, stdout, stderr) = cli(d, &["plan", "."]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("kind: a SegmentDefinition is applied to a Customer Profiles domain, but the target is a Pinpoint one"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_profiles_counts_each_definition_before_and_after() {
    let t = util::start().await;
    create_domain(&t, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("segmentctl.yaml"),
        config(&t, "shop", "prune: true\n"),
    )
    .unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US"], &[])).unwrap();
    std::fs::write(
        d.join("user.yaml"),
        definition("user", &["US", "MX"], &["base"]),
    )
    .unwrap();
    std::fs::write(d.join("gone.yaml"), definition("gone", &["FR"], &[])).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let profile = |id: u32, country: &str| {
        format!("{{\"ProfileId\":\"{id:032x}\",\"Address\":{{\"Country\":\"{country}\"}}}}\n")
    };
    let records: String = [(1, "US"), (2, "US"), (3, "US"), (4, "MX"), (5, "FR")]
        .iter()
        .map(|(i, c)| profile(*i, c))
        .collect::<String>()
        + "not a profile\n";
    std::fs::write(d.join("profiles.jsonl"), records).unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US", "MX"], &[])).unwrap();
    std::fs::write(d.join("new.yaml"), definition("new", &["FR", "MX"], &[])).unwrap();
    std::fs::remove_file(d.join("gone.yaml")).unwrap();
    let (code, stdout, stderr) = cli(d, &["plan", ".", "--profiles", "profiles.jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("profiles_target_plan_profiles", redact(&stdout, &t));
    let (code, _, stderr) = cli(d, &["plan", ".", "--profiles", "missing.jsonl"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read missing.jsonl"), "{stderr}");
}

/// A server listing a definition name the API forbids (here put straight into the store,
/// as a broken or hostile endpoint would list it): `import` fails naming it, and writes no
/// file at all, inside `--out` or out of it. (Were such a definition also readable, its
/// name is checked again before it names a file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_nothing_for_a_name_the_api_forbids() {
    let t = util::start().await;
    create_domain(&t, "shop").await;
    let req: segmentctl::model::profiles::CreateSegmentDefinitionRequest = serde_yaml::from_str(
        "DisplayName: x\nSegmentGroups: {Groups: [{Dimensions: [{ProfileAttributes: {FirstName: {DimensionType: INCLUSIVE, Values: [A]}}}]}]}",
    )
    .unwrap();
    let store = t.server.state.store.clone();
    tokio::task::spawn_blocking(move || {
        store
            .create_segment_definition("shop", "../escaped", &req)
            .unwrap();
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("work")).unwrap();
    std::fs::write(d.join("work/segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    let (code, stdout, stderr) = cli(&d.join("work"), &["import", ".", "--out", "imported"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("\"../escaped\" is not a name"), "{stderr}");
    assert!(!d.join("escaped.yaml").exists());
    assert!(!d.join("work/imported").exists(), "nothing written");
}

/// The definition a campaign reads, by name.
async fn campaign_source(t: &TestServer, id: &str) -> String {
    let got = util::campaigns_client(t)
        .describe_campaign()
        .id(id)
        .send()
        .await
        .unwrap();
    let arn = got
        .campaign()
        .unwrap()
        .source()
        .unwrap()
        .as_customer_profiles_segment_arn()
        .unwrap()
        .clone();
    arn.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_in_use_blocks_a_replace_or_delete_until_re_pointed_or_allowed() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    std::fs::write(d.join("solo.yaml"), definition("solo", &["US"], &[])).unwrap();
    std::fs::write(d.join("other.yaml"), definition("other", &["FR"], &[])).unwrap();
    std::fs::write(d.join("keep.yaml"), definition("keep", &["DE"], &[])).unwrap();
    create_domain(&t, "shop").await;
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let spring = util::campaign_on(&t, "spring", "shop", "solo", true).await;
    let ended = util::campaign_on(&t, "winter", "shop", "other", false).await;

    // A campaign in use: the changed definition is re-created beside it, and that is blocked
    // with the campaign named; nothing changes.
    std::fs::write(d.join("solo.yaml"), definition("solo", &["US", "CA"], &[])).unwrap();
    std::fs::write(
        d.join("other.yaml"),
        definition("other", &["FR", "BE"], &[]),
    )
    .unwrap();
    let (code, stdout, stderr) = cli(d, &["plan", "."]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    insta::assert_snapshot!(
        "profiles_target_campaign_blocks",
        redact(&stdout, &t)
            .replace(&spring, "<spring>")
            .replace(&ended, "<winter>")
    );
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.contains("replace solo as solo-"), "{stdout}");
    assert!(
        stdout.contains(": skipped: blocked in the plan"),
        "{stdout}"
    );
    let names: Vec<String> = live(&t, "shop").await.into_keys().collect();
    assert_eq!(
        names,
        ["keep", "other", "solo"],
        "only the ended campaign's definition was replaced in place"
    );
    assert_eq!(campaign_source(&t, &spring).await, "solo");

    // Asked: the campaign moves to the new definition before the old one goes.
    let (code, stdout, stderr) = cli(d, &["plan", ".", "--repoint-campaigns"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    insta::assert_snapshot!(
        "profiles_target_campaign_repointed",
        redact(&stdout, &t).replace(&spring, "<spring>")
    );
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve", "--repoint-campaigns"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let now = campaign_source(&t, &spring).await;
    assert!(
        now.starts_with("solo-") && now.len() == "solo-".len() + 8,
        "{now}"
    );
    let names: BTreeSet<String> = live(&t, "shop").await.into_keys().collect();
    assert!(!names.contains("solo") && names.contains(&now), "{names:?}");
    let (code, stdout, _) = cli(d, &["plan", "."]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("No changes"), "{stdout}");

    // A delete (prune) of what a campaign in use reads: blocked, then allowed by the flag.
    std::fs::remove_file(d.join("solo.yaml")).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve", "--prune"]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("blocked: the campaign spring (id {spring}, Running) reads it: point the campaign at another segment first, or --allow-delete-in-use deletes it anyway")),
        "{stdout}"
    );
    assert!(live(&t, "shop").await.contains_key(&now));
    let (code, stdout, stderr) = cli(
        d,
        &[
            "apply",
            ".",
            "--auto-approve",
            "--prune",
            "--allow-delete-in-use",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("warning: the campaign spring (id ")
            && stdout.contains("deleted anyway (--allow-delete-in-use)"),
        "{stdout}"
    );
    assert!(!live(&t, "shop").await.contains_key(&now));
    // The campaign is left as it was: segmentctl never re-points without being asked.
    assert_eq!(campaign_source(&t, &spring).await, now);
}

/// `segmentctl run` on the domain `shop` of the folder `d`, over the connection `run` opens
/// for this configuration (with the test's credentials); a round every `interval`.
async fn daemon_on(
    t: &TestServer,
    d: &Path,
    interval: Duration,
) -> segmentctl::daemon::RunningDaemon {
    use segmentctl::daemon::{self, DaemonConfig, Mode};
    let conn = segmentctl::targets::ProfilesConnection {
        profiles: chaos_api(t),
        endpoint: t.endpoint(),
        domain: "shop".into(),
        embedded: false,
        server: None,
    };
    let cfg = DaemonConfig {
        dir: d.to_path_buf(),
        config_file: None,
        overrides: Default::default(),
        interval,
        stuck_after: interval.max(Duration::from_secs(900)) * 2,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_max_connections: daemon::ADMIN_MAX_CONNECTIONS,
        admin_header_timeout: Duration::from_secs(10),
        mode: Mode::Apply,
        shard: None,
    };
    daemon::start_reconciling(cfg, daemon::Reconciled::Profiles(conn))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reconciles_a_domain_with_health_metrics_and_status() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US"], &[])).unwrap();
    std::fs::write(d.join("user.yaml"), definition("user", &["CA"], &["base"])).unwrap();
    create_domain(&t, "shop").await;
    let running = daemon_on(&t, d, Duration::from_millis(300)).await;
    assert!(
        running.ready(Duration::from_secs(10)).await,
        "ready after the first round"
    );
    let names: Vec<String> = live(&t, "shop").await.into_keys().collect();
    assert_eq!(names, ["base", "user"]);
    let status = || serde_json::to_value(running.shared.status()).unwrap();
    let s = status();
    assert_eq!(s["target"]["domain"], "shop", "{s:#}");
    let app = &s["applications"]["domains/shop"];
    assert_eq!(app["result"], "success", "{s:#}");
    assert_eq!(app["managed_segments"], 2, "{s:#}");
    let steps = &s["history"][0]["steps"];
    assert_eq!(steps[0]["definition"], "base", "{s:#}");
    assert_eq!(steps[0]["action"], "create", "{s:#}");
    assert_eq!(steps[0]["result"], "done", "{s:#}");
    assert_eq!(steps[1]["definition"], "user", "{s:#}");
    let metrics = running.shared.metrics_text();
    assert!(
        metrics.contains("segmentctl_reconcile_total{application=\"domains/shop\",name=\"shop\",result=\"success\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("operation=\"CreateSegmentDefinition\",code=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("operation=\"ListCampaigns\",code=\"ok\"}"),
        "{metrics}"
    );

    // Drift is corrected: a definition deleted behind its back comes back.
    profiles_client(&t)
        .delete_segment_definition()
        .domain_name("shop")
        .segment_definition_name("user")
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !live(&t, "shop").await.contains_key("user") {
        assert!(std::time::Instant::now() < deadline, "user re-created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A campaign in use blocks the re-create an edit needs: the domain reports blocked, the
    // campaign named, and nothing changes.
    let spring = util::campaign_on(&t, "spring", "shop", "user", true).await;
    std::fs::write(
        d.join("user.yaml"),
        definition("user", &["CA", "MX"], &["base"]),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = status();
        let app = &s["applications"]["domains/shop"];
        if app["result"] == "blocked" {
            let blocked = app["blocked"][0].as_str().unwrap();
            assert!(
                blocked.starts_with(&format!(
                    "replace user: the campaign spring (id {spring}, Running) reads user"
                )),
                "{blocked}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "blocked: {s:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running
        .shared
        .metrics_text()
        .contains("segmentctl_blocked_steps{application=\"domains/shop\""));
    let names: Vec<String> = live(&t, "shop").await.into_keys().collect();
    assert_eq!(names, ["base", "user"]);
    assert_eq!(campaign_source(&t, &spring).await, "user");

    // The campaign stopped, the edits are carried out: base is re-created under a derived
    // name (user builds on it), user re-created in place on it, the old base deleted.
    util::campaigns_client(&t)
        .stop_campaign()
        .id(&spring)
        .send()
        .await
        .unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US", "PR"], &[])).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = live(&t, "shop").await.into_keys().collect();
        if names.iter().any(|n| n.starts_with("base-")) && !names.contains(&"base".to_string()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "base replaced: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_applies_exactly_or_is_refused_and_apply_speaks_json_lines() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    std::fs::write(d.join("a.yaml"), definition("a", &["US"], &[])).unwrap();
    std::fs::write(d.join("b.yaml"), definition("b", &["FR"], &["a"])).unwrap();
    create_domain(&t, "shop").await;
    create_domain(&t, "other").await;

    // JSON lines: the plan, a step event each, the summary.
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve", "--format", "json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0]["type"], "plan");
    assert_eq!(lines[0]["plan"]["domain"], "shop");
    for (line, name) in lines[1..3].iter().zip(["a", "b"]) {
        assert_eq!(line["type"], "step");
        assert_eq!(line["definition"], name);
        assert_eq!(line["action"], "create");
        assert_eq!(line["result"], "done");
    }
    assert_eq!(
        lines[3],
        serde_json::json!({"type": "summary", "domain": "shop", "created": 2, "replaced": 0,
            "updated": 0, "deleted": 0, "blocked": 0, "failed": 0, "interrupted": false,
            "exit_code": 0})
    );

    // A saved plan is applied as it was made.
    std::fs::write(d.join("a.yaml"), definition("a", &["US", "CA"], &[])).unwrap();
    let saved = d.join("change.json");
    let (code, stdout, stderr) = cli(d, &["plan", ".", "--out", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("Saved the plan to"), "{stderr}");
    let other = d.join("other.json");
    std::fs::copy(&saved, &other).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", saved.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Apply complete: 2 replaced, 1 deleted."),
        "{stdout}"
    );
    let (code, stdout, _) = cli(d, &["plan", "."]);
    assert_eq!(code, 0);
    assert!(stdout.contains("No changes"), "{stdout}");

    // Planning again gives other steps now (it was applied): refused, nothing changed.
    let before = live(&t, "shop").await;
    let (code, stdout, stderr) = cli(d, &["apply", other.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("the domain or the manifests changed since it was made (planning again gives other steps); plan again"),
        "{stderr}"
    );
    assert_eq!(live(&t, "shop").await, before);

    // Made for one domain, never applied to another.
    std::fs::write(d.join("b.yaml"), definition("b", &["FR", "BE"], &["a"])).unwrap();
    let (code, _, stderr) = cli(d, &["plan", ".", "--out", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = cli(
        d,
        &[
            "apply",
            saved.to_str().unwrap(),
            "--auto-approve",
            "--target",
            "customer-profiles:other",
        ],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("it was made for the Customer Profiles domain shop at"),
        "{stderr}"
    );
    assert!(live(&t, "other").await.is_empty());
    // Flags belong to the plan, not to applying it.
    let (code, _, stderr) = cli(
        d,
        &[
            "apply",
            saved.to_str().unwrap(),
            "--auto-approve",
            "--repoint-campaigns",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("a saved plan is applied as it was made"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_waits_for_or_refuses_another_appliers_lease_on_the_domain() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    std::fs::write(d.join("a.yaml"), definition("a", &["US"], &[])).unwrap();
    create_domain(&t, "shop").await;
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Apply complete: 1 created."), "{stdout}");
    // The first apply took and gave back the lease: the domain carries none.
    let domain_arn = "arn:aws:profile:us-east-1:000000000000:domains/shop";
    let tags = profiles_client(&t)
        .list_tags_for_resource()
        .resource_arn(domain_arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .is_none_or(|t| !t.contains_key("segmentctl:lease")),
        "{tags:?}"
    );

    // Another applier (another host) holds the domain's lease.
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 60;
    profiles_client(&t)
        .tag_resource()
        .resource_arn(domain_arn)
        .tags(
            "segmentctl:lease",
            format!("tok123 {expires} ci@runner-7.4242"),
        )
        .send()
        .await
        .unwrap();
    std::fs::write(d.join("a.yaml"), definition("a", &["US", "CA"], &[])).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("ci@runner-7.4242 is applying to the domain shop (lease until ")
            && stderr.contains("run again when it is done, or pass --wait to queue behind it"),
        "{stderr}"
    );
    assert!(!stdout.contains("replace a:"), "nothing ran: {stdout}");

    // --wait queues behind it: the lease is given back a moment later, and the apply runs.
    let waiter = {
        let d = d.to_path_buf();
        std::thread::spawn(move || cli(&d, &["apply", ".", "--auto-approve", "--wait"]))
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    profiles_client(&t)
        .untag_resource()
        .resource_arn(domain_arn)
        .tag_keys("segmentctl:lease")
        .send()
        .await
        .unwrap();
    let (code, stdout, stderr) = waiter.join().unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("Waiting: ci@runner-7.4242 is applying to the domain shop"),
        "{stderr}"
    );
    assert!(stdout.contains("Apply complete: 1 replaced."), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_counts_a_definition_re_created_under_a_derived_name_once() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US"], &[])).unwrap();
    std::fs::write(d.join("user.yaml"), definition("user", &["CA"], &["base"])).unwrap();
    create_domain(&t, "shop").await;
    // Rounds only when the folder changes: the status keeps the round that acted.
    let running = daemon_on(&t, d, Duration::from_secs(3600)).await;
    assert!(running.ready(Duration::from_secs(10)).await);
    let status = || serde_json::to_value(running.shared.status()).unwrap();
    assert_eq!(
        status()["applications"]["domains/shop"]["managed_segments"],
        2
    );

    // base changes and user builds on it: base is re-created as base-<hex> (one create,
    // one delete), user re-created in place. Two definitions before, two after.
    std::fs::write(d.join("base.yaml"), definition("base", &["US", "PR"], &[])).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = status();
        if s["history"].as_array().is_some_and(|h| h.len() >= 2) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a second round: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<String> = live(&t, "shop").await.into_keys().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("base-"), "{names:?}");
    let app = &s["applications"]["domains/shop"];
    assert_eq!(app["result"], "success", "{s:#}");
    assert_eq!(app["managed_segments"], 2, "{s:#}");

    // An unmanaged definition adopted and changed, re-created in place under the manifest's
    // name: one more managed.
    let groups = SegmentGroup::builder()
        .groups(
            Group::builder()
                .dimensions(Dimension::ProfileAttributes(
                    ProfileAttributes::builder()
                        .first_name(
                            ProfileDimension::builder()
                                .dimension_type(StringDimensionType::Inclusive)
                                .values("Ada")
                                .build()
                                .unwrap(),
                        )
                        .build(),
                ))
                .build(),
        )
        .build();
    profiles_client(&t)
        .create_segment_definition()
        .domain_name("shop")
        .segment_definition_name("legacy")
        .display_name("legacy")
        .segment_groups(groups)
        .send()
        .await
        .unwrap();
    std::fs::write(
        d.join("vip.yaml"),
        definition("vip", &["JP"], &[]).replace("  name: vip\n", "  name: vip\n  adopt: legacy\n"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = status();
        if s["history"].as_array().is_some_and(|h| h.len() >= 3) {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "a third round: {s:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<String> = live(&t, "shop").await.into_keys().collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"vip".to_string()), "{names:?}");
    let app = &s["applications"]["domains/shop"];
    assert_eq!(app["result"], "success", "{s:#}");
    assert_eq!(app["managed_segments"], 3, "{s:#}");
    running.stop().await.unwrap();
}

/// The plan is made, shown and confirmed before it runs: a campaign that starts reading a
/// definition in between (or is moved off one) is seen when the delete comes, not only when
/// the plan was made. Neither a campaign nor a person's re-point is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_that_changes_between_plan_and_apply_is_seen_before_a_delete() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    for (n, c) in [("solo", "US"), ("moved", "FR"), ("keep", "DE")] {
        std::fs::write(d.join(format!("{n}.yaml")), definition(n, &[c], &[])).unwrap();
    }
    create_domain(&t, "shop").await;
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let spring = util::campaign_on(&t, "spring", "shop", "moved", true).await;

    // solo's manifest is gone (prune), moved changes (re-created beside its campaign, which
    // is re-pointed as asked).
    std::fs::remove_file(d.join("solo.yaml")).unwrap();
    std::fs::write(
        d.join("moved.yaml"),
        definition("moved", &["FR", "BE"], &[]),
    )
    .unwrap();
    let ws = segmentctl::manifests::workspace::load(d, None).unwrap();
    let settings = Settings {
        owner: OWNER.into(),
        prune: true,
        max_delete_percent: 100.0,
    };
    let api = chaos_api(&t);
    let live = run::observe(&api, "shop").await.unwrap();
    let policy = defs::CampaignPolicy {
        allow_delete_in_use: false,
        repoint: true,
    };
    let p = defs::plan(&ws.definitions, None, &live, &settings, policy);
    assert!(p.steps.iter().all(|s| s.blocked.is_empty()), "{p:#?}");

    // Meanwhile: a campaign starts on solo; a person moves spring to keep.
    let summer = util::campaign_on(&t, "summer", "shop", "solo", true).await;
    let keep_arn = profiles_client(&t)
        .get_segment_definition()
        .domain_name("shop")
        .segment_definition_name("keep")
        .send()
        .await
        .unwrap()
        .segment_definition_arn()
        .to_string();
    util::campaigns_client(&t)
        .update_campaign_source()
        .id(&spring)
        .source(aws_sdk_connectcampaignsv2::types::Source::CustomerProfilesSegmentArn(keep_arn))
        .send()
        .await
        .unwrap();

    let results = run::apply(
        &api,
        &p,
        None,
        &segmentctl::reconcile::lease::Fence::none(),
        |_, _| {},
    )
    .await;
    let names: BTreeSet<String> = live_names(&t).await;
    assert!(
        names.contains("solo"),
        "the definition summer reads is kept: {names:?} {results:?}"
    );
    assert_eq!(campaign_source(&t, &summer).await, "solo");
    assert_eq!(
        campaign_source(&t, &spring).await,
        "keep",
        "the person's re-point stands"
    );
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            run::StepResult::Failed(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        failed[0].contains(&format!("summer (id {summer}, Running)")),
        "{failed:?}"
    );
}

async fn live_names(t: &TestServer) -> BTreeSet<String> {
    live(t, "shop").await.into_keys().collect()
}

/// A campaign read that fails for another reason than a refusal does not send the user to
/// the credentials (here the network: nothing listens), and a refusal does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_read_that_fails_is_not_blamed_on_the_credentials() {
    use segmentctl::targets::profiles::campaigns;
    let limits = RateLimits {
        segment_writes: 200.0,
        reads: 1000.0,
    };
    let quick = |client| {
        let mut api = Api::new(client, limits);
        api.retry = RetryPolicy {
            attempts: 1,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(1),
        };
        api
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let conf = segmentctl::targets::profiles::endpoint_config(&nobody, "us-east-1", "k", "s");
    let Err(segmentctl::targets::profiles::ProfilesError::Call(e)) =
        campaigns::read(&quick(aws_sdk_connectcampaignsv2::Client::new(&conf))).await
    else {
        panic!("a read from nowhere fails")
    };
    let said = campaigns::read_message(&e).unwrap();
    assert!(
        said.contains("cannot read the Connect outbound campaigns")
            && said.contains("(ListCampaigns: ")
            && !said.contains("the credentials need"),
        "{said}"
    );
    let t = util::start().await;
    let conf = segmentctl::targets::profiles::endpoint_config(
        &t.endpoint(),
        "us-east-1",
        util::KEY,
        "wrong",
    );
    let Err(segmentctl::targets::profiles::ProfilesError::Call(e)) =
        campaigns::read(&quick(aws_sdk_connectcampaignsv2::Client::new(&conf))).await
    else {
        panic!("a read with a wrong secret fails")
    };
    let said = campaigns::read_message(&e).unwrap();
    assert!(
        said.contains("the credentials need connect-campaigns:ListCampaigns"),
        "{said}"
    );
}

/// A `Domain` manifest: profiles kept 45 days, one tag.
const DOMAIN: &str = "apiVersion: segmentctl/v1\nkind: Domain\nspec:\n  DefaultExpirationDays: 45\n  Tags: {team: growth}\n";

async fn expiration_days(t: &TestServer, domain: &str) -> (i32, Option<String>) {
    let got = profiles_client(t)
        .get_domain()
        .domain_name(domain)
        .send()
        .await
        .unwrap();
    let team = got.tags().and_then(|t| t.get("team")).cloned();
    (got.default_expiration_days().unwrap(), team)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_manifest_creates_a_missing_domain_and_never_changes_nor_deletes_one() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("segmentctl.yaml"),
        config(&t, "shop", "prune: true\n"),
    )
    .unwrap();
    std::fs::write(d.join("domain.yaml"), DOMAIN).unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US"], &[])).unwrap();

    // The missing domain is created as the manifest gives it, before the definitions.
    let (code, stdout, stderr) = cli(d, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{stderr}");
    insta::assert_snapshot!("profiles_domain_create", redact(&stdout, &t));
    let (code, stdout, stderr) = cli(d, &["plan", ".", "--format", "markdown"]);
    assert_eq!(code, 0, "{stderr}");
    let escaped = t.endpoint().replace(':', "\\:");
    insta::assert_snapshot!(
        "profiles_domain_create_markdown",
        redact(&stdout.replace(&escaped, "<endpoint>"), &t)
    );
    let listed = profiles_client(&t).list_domains().send().await.unwrap();
    assert!(listed.items().is_empty(), "a plan creates nothing");
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let created = stdout.find("✓ domain shop created").expect(&stdout);
    assert!(
        created < stdout.find("create base: done").unwrap(),
        "{stdout}"
    );
    assert_eq!(
        expiration_days(&t, "shop").await,
        (45, Some("growth".into()))
    );
    assert_eq!(live(&t, "shop").await.len(), 1);
    let (code, stdout, _) = cli(d, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("No changes"), "{stdout}");
    assert!(!stdout.contains("warning"), "{stdout}");

    // The domain's settings differ from the manifest: said, field by field, and never
    // changed (an exit code of no changes: nothing segmentctl would do).
    std::fs::write(
        d.join("domain.yaml"),
        DOMAIN.replace("45", "90").replace("growth", "ads"),
    )
    .unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    insta::assert_snapshot!("profiles_domain_drift", redact(&stdout, &t));
    assert_eq!(
        expiration_days(&t, "shop").await,
        (45, Some("growth".into()))
    );

    // Its manifest gone, the domain stays (prune deletes definitions, never a domain).
    std::fs::remove_file(d.join("domain.yaml")).unwrap();
    let (code, stdout, _) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(expiration_days(&t, "shop").await.0, 45);

    // A Domain manifest that names another domain than the target's: refused, located, and
    // nothing created; the target may be named on the command line to match.
    std::fs::write(
        d.join("domain.yaml"),
        DOMAIN.replace("kind: Domain\n", "kind: Domain\nmetadata: {name: prod}\n"),
    )
    .unwrap();
    let before = t.server.counters().requests;
    let (code, stdout, stderr) = cli(d, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("domain.yaml:3:") && stderr.contains("metadata.name: this folder is for domain \"prod\", but the target is domain \"shop\""),
        "{stderr}"
    );
    assert_eq!(
        t.server.counters().requests,
        before,
        "refused before contacting"
    );
    let (code, stdout, stderr) = cli(
        d,
        &[
            "apply",
            ".",
            "--auto-approve",
            "--format",
            "json",
            "--target",
            "customer-profiles:prod",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "plan", "{stdout}");
    assert_eq!(lines[0]["plan"]["create_domain"], true, "{stdout}");
    assert_eq!(
        lines[1],
        serde_json::json!({"type": "domain", "domain": "prod", "action": "create", "result": "done", "message": ""})
    );
    assert_eq!(lines[2]["definition"], "base", "{stdout}");
    assert_eq!(expiration_days(&t, "prod").await.0, 45);

    // Mistakes in a Domain manifest, located, and nothing contacted.
    let bad = tempfile::tempdir().unwrap();
    let b = bad.path();
    std::fs::write(b.join("segmentctl.yaml"), config(&t, "new", "")).unwrap();
    std::fs::write(
        b.join("domain.yaml"),
        "apiVersion: segmentctl/v1\nkind: Domain\nmetadata: {name: 'no spaces'}\nspec:\n  DefaultExpirationDays: 0\n  Matching: {Enabled: true}\n---\napiVersion: segmentctl/v1\nkind: Domain\nspec:\n  DefaultExpirationDay: 30\n---\napiVersion: segmentctl/v1\nkind: Domain\nspec: {DefaultExpirationDays: 30, Tags: {'segmentctl:owner': me}}\n---\napiVersion: segmentctl/v1\nkind: Domain\nspec: {DefaultExpirationDays: 30}\n---\napiVersion: segmentctl/v1\nkind: Domain\nspec: {DefaultExpirationDays: 60}\n",
    )
    .unwrap();
    std::fs::write(
        b.join("shop.yaml"),
        "apiVersion: segmentctl/v1\nkind: Application\nmetadata: {name: shop}\nspec: {Name: Shop}\n",
    )
    .unwrap();
    let before = t.server.counters().requests;
    let (code, stdout, stderr) = cli(b, &["plan", "."]);
    assert_eq!(code, 1, "{stdout}");
    insta::assert_snapshot!("profiles_domain_mistakes", stderr);
    assert_eq!(t.server.counters().requests, before, "nothing contacted");

    // A Domain manifest alone: the domain is the plan's one change, and a Pinpoint target
    // refuses it.
    let solo = tempfile::tempdir().unwrap();
    let o = solo.path();
    std::fs::write(o.join("segmentctl.yaml"), config(&t, "solo", "")).unwrap();
    std::fs::write(o.join("domain.yaml"), DOMAIN).unwrap();
    let (code, stdout, stderr) = cli(o, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("Plan: the domain to create, no definition to change."),
        "{stdout}"
    );
    let (code, stdout, stderr) = cli(o, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Apply complete: the domain created."),
        "{stdout}"
    );
    assert_eq!(expiration_days(&t, "solo").await.0, 45);
    std::fs::write(o.join("segmentctl.yaml"), util::endpoint_config(&t, "")).unwrap();
    let (code, stdout, stderr) = cli(o, &["plan", "."]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("domain.yaml:2:1: kind: a Domain is applied to a Customer Profiles domain, but the target is a Pinpoint one"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_created_meanwhile_is_taken_when_its_settings_are_these_and_a_saved_plan_sees_the_manifest_move(
) {
    use segmentctl::model::profiles::DomainSpec;
    use segmentctl::targets::profiles::Profiles;
    let t = util::start().await;
    let api = chaos_api(&t);
    let spec = DomainSpec {
        default_expiration_days: 45,
        tags: Some([("team".to_string(), "growth".to_string())].into()),
        ..Default::default()
    };
    // A second create of the same settings (a lost answer retried, or another applier
    // with the same folder) finds the domain as it would have made it: done.
    api.create_domain("twice", Some(&spec)).await.unwrap();
    api.create_domain("twice", Some(&spec)).await.unwrap();
    // Other settings: the domain is someone else's; said, and nothing changed.
    let other = DomainSpec {
        default_expiration_days: 90,
        ..spec.clone()
    };
    let e = api.create_domain("twice", Some(&other)).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the domain twice was created meanwhile, with other settings than these; plan again"
    );
    assert_eq!(expiration_days(&t, "twice").await.0, 45);

    // A saved plan that creates the domain is refused once the manifest's settings move.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "saved", "")).unwrap();
    std::fs::write(d.join("domain.yaml"), DOMAIN).unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US"], &[])).unwrap();
    let plan = d.join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    let (code, stdout, stderr) = cli(d, &["plan", ".", "--out", plan_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    std::fs::write(d.join("domain.yaml"), DOMAIN.replace("45", "90")).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", plan_arg, "--auto-approve"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("changed since it was made"), "{stderr}");
    assert!(profiles_client(&t)
        .get_domain()
        .domain_name("saved")
        .send()
        .await
        .is_err());
    // Only where the manifest is written moving (a comment above it) is no change.
    std::fs::write(d.join("domain.yaml"), DOMAIN).unwrap();
    let (code, _, stderr) = cli(d, &["plan", ".", "--out", plan_arg]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(d.join("domain.yaml"), format!("# settings\n{DOMAIN}")).unwrap();
    let (code, stdout, stderr) = cli(d, &["apply", plan_arg, "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(expiration_days(&t, "saved").await.0, 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_creates_the_domain_its_manifest_gives_before_the_definitions() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("segmentctl.yaml"), config(&t, "shop", "")).unwrap();
    std::fs::write(d.join("domain.yaml"), DOMAIN).unwrap();
    std::fs::write(d.join("base.yaml"), definition("base", &["US"], &[])).unwrap();
    let running = daemon_on(&t, d, Duration::from_millis(300)).await;
    assert!(running.ready(Duration::from_secs(10)).await);
    assert_eq!(
        expiration_days(&t, "shop").await,
        (45, Some("growth".into()))
    );
    let s = serde_json::to_value(running.shared.status()).unwrap();
    let steps = &s["history"][0]["steps"];
    assert_eq!(steps[0]["type"], "domain", "{s:#}");
    assert_eq!(steps[0]["action"], "create", "{s:#}");
    assert_eq!(steps[1]["definition"], "base", "{s:#}");
    assert_eq!(s["applications"]["domains/shop"]["result"], "success");
    running.stop().await.unwrap();
}
