//! `segmentctl convert --to customer-profiles`: the quickstart's Pinpoint segments as
//! SegmentDefinition manifests. A segment that cannot be converted (GPSPoint) refuses the
//! whole conversion and writes nothing; with `--drop-unsupported` every manifest is
//! written, reads back as the model's CreateSegmentDefinition request, passes its rules,
//! and is created on `segmentctl serve` through the real `aws-sdk-customerprofiles`, bases
//! first. The report, as text and as markdown rendered as GitHub does, is snapshotted.

use std::path::Path;
use std::process::Command;

use segmentctl::model::profiles::CreateSegmentDefinitionRequest;

use crate::util;

fn convert(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .arg("convert")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart"))
        .args(["--to", "customer-profiles"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(env!("CARGO_MANIFEST_DIR"), "."),
        String::from_utf8_lossy(&out.stderr).replace(env!("CARGO_MANIFEST_DIR"), "."),
    )
}

/// Each manifest written to `dir`: its name and its spec, read strictly as the model's
/// request (an unknown or misspelt member is an error) and checked by its rules.
fn written(dir: &Path) -> Vec<(String, CreateSegmentDefinitionRequest)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["apiVersion"], "segmentctl/v1", "{text}");
        assert_eq!(doc["kind"], "SegmentDefinition", "{text}");
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        assert_eq!(f.file_stem().unwrap().to_str().unwrap(), name);
        // A base among the converted definitions is named by `Ref` (the manifest's name,
        // which is the definition's): read here as the name it stands for.
        let mut spec_doc = doc["spec"].clone();
        for g in spec_doc["SegmentGroups"]["Groups"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            for src in g["SourceSegments"].as_array_mut().into_iter().flatten() {
                let src = src.as_object_mut().unwrap();
                let r = src.remove("Ref").expect("a converted base is named by Ref");
                src.insert("SegmentDefinitionName".into(), r);
            }
        }
        let spec: CreateSegmentDefinitionRequest =
            segmentctl::model::strict::from_slice(spec_doc.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let broken = segmentctl::model::profiles::validate::create_segment_definition(&spec);
        assert!(broken.is_empty(), "{name}: {broken:?}");
        out.push((name, spec));
    }
    out
}

#[test]
fn a_segment_that_cannot_be_converted_refuses_the_conversion_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("cp");
    let (code, report, err) = convert(&["--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{report}{err}");
    assert!(!out_dir.exists(), "nothing is written");
    assert!(
        report.contains("✗ spec.Dimensions.Location.GPSPoint (line 25)")
            && report.contains("refused (drop it with --drop-unsupported"),
        "{report}"
    );
    insta::assert_snapshot!("convert_report_text", report);

    // A folder that is not empty is never written into.
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("mine.yaml"), "kept").unwrap();
    let (code, _, err) = convert(&["--out", out_dir.to_str().unwrap(), "--drop-unsupported"]);
    assert_eq!(code, 1);
    assert!(err.contains("the folder is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("mine.yaml")).unwrap(),
        "kept"
    );
}

#[test]
fn the_report_renders_as_a_table_on_github_and_as_json() {
    let (code, md, _) = convert(&["--format", "markdown"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("convert_report_markdown", md);
    let html = crate::spoof::render_as_github(&md);
    let (code, json, _) = convert(&["--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let notes = v["notes"].as_array().unwrap();
    assert_eq!(v["refused"], true);
    assert_eq!(v["definitions"].as_array().unwrap().len(), 8);
    // One row per note, plus the header row: no cell broke the table.
    assert_eq!(html.matches("<tr>").count(), notes.len() + 1, "{html}");
    assert!(notes
        .iter()
        .any(|n| n["fit"] == "impossible" && n["field"] == "spec.Dimensions.Location.GPSPoint"));
    for n in notes {
        assert!(n["line"].as_u64().unwrap() > 0, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_definitions_are_created_on_the_server_bases_first() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("cp");
    let (code, report, err) = convert(&["--out", out_dir.to_str().unwrap(), "--drop-unsupported"]);
    assert_eq!(code, 0, "{report}{err}");
    assert!(err.contains("wrote 8 SegmentDefinition manifests"), "{err}");
    assert!(report.contains("dropped (--drop-unsupported)"), "{report}");
    let mut pending = written(&out_dir);
    assert_eq!(pending.len(), 8);

    // The manifests are what `sql --customer-profiles` reads: one column per definition.
    let mut sql = Command::new(env!("CARGO_BIN_EXE_segmentctl"));
    sql.args(["sql", "--dialect", "duckdb"]);
    for (name, _) in &pending {
        sql.arg("--customer-profiles")
            .arg(out_dir.join(format!("{name}.yaml")));
    }
    let sql = sql.output().unwrap();
    let text = String::from_utf8_lossy(&sql.stdout);
    assert!(
        sql.status.success(),
        "{}",
        String::from_utf8_lossy(&sql.stderr)
    );
    for (name, _) in &pending {
        assert!(text.contains(&format!("AS \"{name}\"")), "{name}: {text}");
    }

    let t = util::start().await;
    let cp = util::profiles_client(&t);
    cp.create_domain()
        .domain_name("shop")
        .default_expiration_days(30)
        .send()
        .await
        .expect("CreateDomain");
    let mut created: Vec<String> = Vec::new();
    while !pending.is_empty() {
        // A definition whose sources exist already.
        let i = pending
            .iter()
            .position(|(_, spec)| {
                spec.segment_groups
                    .iter()
                    .flat_map(|g| g.groups.iter().flatten())
                    .flat_map(|g| g.source_segments.iter().flatten())
                    .all(|s| created.contains(s.segment_definition_name.as_ref().unwrap()))
            })
            .expect("every source is among the converted definitions");
        let (name, spec) = pending.remove(i);
        let groups = serde_json::to_value(spec.segment_groups.as_ref().unwrap()).unwrap();
        let mut req = cp
            .create_segment_definition()
            .domain_name("shop")
            .segment_definition_name(&name)
            .display_name(&spec.display_name)
            .set_description(spec.description.clone())
            .segment_groups(crate::profiles_duckdb::groups(&groups));
        for (k, v) in spec.tags.iter().flatten() {
            req = req.tags(k, v);
        }
        req.send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let got = cp
            .get_segment_definition()
            .domain_name("shop")
            .segment_definition_name(&name)
            .send()
            .await
            .unwrap();
        assert_eq!(got.display_name(), Some(spec.display_name.as_str()));
        created.push(name);
    }
    assert!(
        created.iter().position(|n| n == "vip-customers")
            < created.iter().position(|n| n == "vip-in-the-us")
    );
}

fn convert_dir(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .arg("convert")
        .arg(dir)
        .args(["--to", "customer-profiles"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const APP_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const APP_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn doc(name: &str, app: &str, spec: &str) -> String {
    format!("apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: {name}, application: {app}}}\nspec:\n  Name: {name}\n  {spec}\n")
}

/// What may not be dropped is refused even with --drop-unsupported: a definition that
/// breaks Customer Profiles' rules (a metric of 301 digits), a group left empty (a
/// GPS-only segment would match everyone). A list-valued attribute compared other than by
/// LIST_CONTAINS is said to be approximate; a `|` in a name does not split the markdown
/// table; several applications are written to a folder each, named by the application.
#[test]
fn what_cannot_be_dropped_is_refused_and_applications_get_a_folder_each() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    let keep = [
        doc(
            "not-gold",
            APP_A,
            "Dimensions: {UserAttributes: {tier: {AttributeType: EXCLUSIVE, Values: [gold]}}}",
        ),
        doc(
            "piped",
            APP_B,
            "Dimensions: {Attributes: {'a|b': {Values: [x]}}}",
        ),
    ];
    let refused = [
        doc("huge", APP_A, "Dimensions: {Metrics: {m: {ComparisonOperator: GREATER_THAN, Value: 1e300}}}"),
        doc("near", APP_A, "Dimensions: {Location: {GPSPoint: {Coordinates: {Latitude: 47.6, Longitude: -122.3}}}}"),
    ];
    std::fs::write(
        m.join("s.yaml"),
        [&keep[..], &refused[..]].concat().join("---\n"),
    )
    .unwrap();
    let out_dir = dir.path().join("cp");
    let out = out_dir.to_str().unwrap();

    let (code, json, _) = convert_dir(
        &m,
        &["--out", out, "--drop-unsupported", "--format", "json"],
    );
    assert_eq!(code, 1, "{json}");
    assert!(!out_dir.exists(), "nothing is written");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let why = |segment: &str| -> Vec<String> {
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["segment"] == segment)
            .map(|n| {
                format!(
                    "{} {}",
                    n["fit"].as_str().unwrap(),
                    n["why"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert!(
        why("huge").iter().any(|w| w
            .starts_with("impossible the definition breaks Customer Profiles' rules")
            && w.contains("nothing here can be dropped")),
        "{:?}",
        why("huge")
    );
    assert!(
        why("near")
            .iter()
            .any(|w| w.contains("an empty group restricts nothing")),
        "{:?}",
        why("near")
    );
    assert!(
        why("not-gold")
            .iter()
            .any(|w| w.starts_with("approximate EXCLUSIVE compares the profile's whole value")),
        "{:?}",
        why("not-gold")
    );

    // The markdown table keeps one row per note with a `|` in a key.
    let (_, md, _) = convert_dir(&m, &["--format", "markdown"]);
    let html = crate::spoof::render_as_github(&md);
    assert_eq!(
        html.matches("<tr>").count(),
        v["notes"].as_array().unwrap().len() + 1,
        "{md}"
    );

    // --out inside the folder is refused: the manifests would be read as its own.
    let (code, _, err) = convert_dir(&m, &["--out", m.join("cp").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("inside the manifest folder"), "{err}");
    assert!(!m.join("cp").exists());

    // Without the refused segments: a folder per application, by its id.
    std::fs::write(m.join("s.yaml"), keep.join("---\n")).unwrap();
    let (code, text, err) = convert_dir(&m, &["--out", out]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(out_dir.join(APP_A).join("not-gold.yaml").is_file());
    assert!(out_dir.join(APP_B).join("piped.yaml").is_file());
    // A file where the folder should be is named as such.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let (code, _, err) = convert_dir(&m, &["--out", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("exists and is not a folder"), "{err}");
}

/// `--endpoints`: each segment's endpoints (the same as `estimate`'s) beside its converted
/// definition's profiles, the endpoints gathered by user. North America's profiles are
/// counted here by hand from the file (one per user, the first endpoint's country), and the
/// imported segment's are its members' users.
#[test]
fn endpoints_before_and_profiles_after_are_counted_side_by_side() {
    let root = env!("CARGO_MANIFEST_DIR");
    let file = format!("{root}/examples/quickstart/endpoints.jsonl");
    let as_of = ["--as-of", "2026-11-28T00:00:00Z"];
    let (code, json, err) = convert(
        &[
            &[
                "--drop-unsupported",
                "--format",
                "json",
                "--endpoints",
                &file,
            ][..],
            &as_of[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let a = &v["audiences"];
    let row = |name: &str| {
        a["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["segment"] == name)
            .unwrap_or_else(|| panic!("{name}: {a}"))
            .clone()
    };

    // Endpoints: what `estimate` counts.
    let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args([
            "estimate",
            &format!("{root}/examples/quickstart"),
            "--endpoints",
            &file,
            "--format",
            "json",
        ])
        .args(as_of)
        .output()
        .unwrap();
    let estimate: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in estimate["segments"].as_array().unwrap() {
        assert_eq!(
            row(s["segment"].as_str().unwrap())["endpoints"],
            s["endpoints"],
            "{s}"
        );
    }

    // Profiles: one per user; a user's country is its first endpoint's.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut country: std::collections::BTreeMap<String, String> = Default::default();
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let user = e["User"]["UserId"].as_str().unwrap().to_string();
        if let Some(c) = e["Location"]["Country"].as_str() {
            country.entry(user).or_insert_with(|| c.to_string());
        }
    }
    let distinct_users = text
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["User"]["UserId"].as_str().unwrap().to_string()
        })
        .collect::<std::collections::BTreeSet<String>>()
        .len();
    assert_eq!(a["endpoints"], text.lines().count());
    assert_eq!(a["profiles"], distinct_users);
    let north_america = country
        .values()
        .filter(|c| ["US", "CA", "MX"].contains(&c.as_str()))
        .count();
    assert_eq!(row("north-america")["profiles"], north_america);
    assert!(row("north-america")["profiles"].as_u64() < row("north-america")["endpoints"].as_u64());
    // Imported: every member listed is a user of one profile here.
    assert_eq!(
        row("vip-customers")["profiles"],
        row("vip-customers")["endpoints"]
    );
    // Recency is a calculated attribute, not computed here: no profile.
    assert_eq!(row("ios-power-users")["profiles"], 0);

    // The same records gzipped count the same; a line that is not UTF-8 is an error that
    // names the file, not a partial count.
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("endpoints.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let (code, zipped, err) = convert(
        &[
            &[
                "--drop-unsupported",
                "--format",
                "json",
                "--endpoints",
                gz.to_str().unwrap(),
            ][..],
            &as_of[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    let zipped: serde_json::Value = serde_json::from_str(&zipped).unwrap();
    assert_eq!(zipped["audiences"]["segments"], a["segments"]);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, [text.as_bytes(), b"\xff\xfe\n"].concat()).unwrap();
    let (code, out, err) = convert(&["--drop-unsupported", "--endpoints", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("bad.jsonl") && err.contains("UTF-8"), "{err}");

    let (_, text, _) = convert(
        &[
            &["--drop-unsupported", "--endpoints", &file][..],
            &as_of[..],
        ]
        .concat(),
    );
    let table = &text[text
        .find("\nAudiences over")
        .expect("the audiences follow the notes")..];
    insta::assert_snapshot!("convert_audiences_text", table.replace(root, "."));
}

/// `examples/customer-profiles/segments` is what `convert` writes for the quickstart, and
/// reads as a folder of the Customer Profiles target.
#[test]
fn the_customer_profiles_example_is_the_quickstart_converted() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("cp");
    let (code, report, err) = convert(&["--out", out_dir.to_str().unwrap(), "--drop-unsupported"]);
    assert_eq!(code, 0, "{report}{err}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/customer-profiles");
    let mut names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut committed: Vec<_> = std::fs::read_dir(example.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    committed.sort();
    assert_eq!(names, committed);
    for n in &names {
        assert_eq!(
            std::fs::read_to_string(out_dir.join(n))
                .unwrap()
                .replace(concat!(env!("CARGO_MANIFEST_DIR"), "/"), ""),
            std::fs::read_to_string(example.join("segments").join(n)).unwrap(),
            "{n:?}: regenerate examples/customer-profiles/segments with convert (see its segmentctl.yaml)"
        );
    }
    let (code, stdout, stderr) = util::run_cli(&example, &["validate", "."]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "8 manifests OK (8 segment definitions, for a Customer Profiles domain)\n"
    );
}
