//! `segmentctl plan --endpoints`: each changed segment's audience before → after, segments
//! affected through their base segments, and the warnings, in text, markdown and JSON. Run
//! as a user runs it: the binary on the embedded default (the real server and SDK client).

use std::path::Path;

use crate::util::run_cli as run;

fn segment(name: &str, dimensions: &str) -> String {
    format!(
        "---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: {name}, applicationRef: shop}}\nspec:\n  Name: {name}\n{dimensions}"
    )
}

fn country(values: &str) -> String {
    format!("  Dimensions:\n    Location:\n      Country: {{Values: [{values}]}}\n")
}

fn write_manifests(dir: &Path, us: &str, mx: &str, with_android: bool, with_fr: bool) {
    let mut text = String::from(
        "---\napiVersion: segmentctl/v1\nkind: Application\nmetadata: {name: shop}\nspec: {Name: Shop}\n",
    );
    text += &segment("us", &country(us));
    text += &segment("mx", &country(mx));
    text += &segment("de", &country("DE"));
    text += &segment(
        "ios",
        "  Dimensions:\n    Demographic:\n      Platform: {Values: [iOS]}\n",
    );
    text += &segment(
        "us-ios",
        "  SegmentGroups:\n    Groups:\n      - SourceType: ALL\n        SourceSegments: [{Ref: us}, {Ref: ios}]\n",
    );
    if with_android {
        text += &segment(
            "android",
            "  Dimensions:\n    Demographic:\n      Platform: {Values: [Android]}\n",
        );
    }
    if with_fr {
        text += &segment("fr", &country("FR"));
    }
    std::fs::write(dir.join("segments.yaml"), text).unwrap();
}

/// 9 records and one line that is not a record (line 4).
const RECORDS: &str = r#"{"Demographic":{"Platform":"iOS"},"Location":{"Country":"US"}}
{"Demographic":{"Platform":"iOS"},"Location":{"Country":"US"}}
{"Demographic":{"Platform":"iOS"},"Location":{"Country":"US"}}
{"Demographic":{"Platform":"Android"},"Location":
{"Demographic":{"Platform":"Android"},"Location":{"Country":"US"}}
{"Demographic":{"Platform":"iOS"},"Location":{"Country":"CA"}}
{"Demographic":{"Platform":"iOS"},"Location":{"Country":"CA"}}
{"Demographic":{"Platform":"Android"},"Location":{"Country":"MX"}}
{"Demographic":{"Platform":"iOS"},"Location":{"Country":"FR"}}
{"Location":{"Country":"DE"}}
"#;

/// Live ids differ on every run: shown as `<id>`.
fn redact(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("id ") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let hex = tail.bytes().take_while(|b| b.is_ascii_hexdigit()).count();
        if hex == 32 {
            out.push_str("<id>");
            rest = &tail[32..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    let mut lines: Vec<String> = Vec::new();
    for line in out.lines() {
        // The application's id follows its name in headings and tables.
        let line = match line.find(" (") {
            Some(i)
                if line[i + 2..].len() >= 33
                    && line[i + 2..i + 34].bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                format!("{} (<app-id>{}", &line[..i], &line[i + 34..])
            }
            _ => line.to_string(),
        };
        lines.push(line);
    }
    lines.join("\n") + "\n"
}

#[test]
fn plan_shows_audience_before_and_after_with_warnings_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("segmentctl.yaml"),
        "target: {local: {}}\nowner: audience-test\nprune: true\n",
    )
    .unwrap();
    std::fs::write(dir.join("endpoints.jsonl"), RECORDS).unwrap();
    write_manifests(dir, "US, CA", "MX", true, false);
    let (code, stdout, stderr) = run(dir, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // us loses CA (6 → 4), mx matches nothing any more (1 → 0), android goes (2 → none),
    // fr is new (1); us-ios is unchanged but builds on us (5 → 3); de and ios stay.
    write_manifests(dir, "US", "XX", false, true);
    let args = [
        "plan",
        ".",
        "--endpoints",
        "endpoints.jsonl",
        "--as-of",
        "2026-11-28T00:00:00Z",
    ];
    let (code, text, stderr) = run(dir, &args);
    assert_eq!(code, 0, "{text}{stderr}");
    insta::assert_snapshot!("plan_audience_text", redact(&text));

    let (code, markdown, _) = run(dir, &[&args[..], &["--format", "markdown"]].concat());
    assert_eq!(code, 0);
    insta::assert_snapshot!("plan_audience_markdown", redact(&markdown));

    let (code, json, _) = run(
        dir,
        &[&args[..], &["--format", "json", "--out", "plan.json"]].concat(),
    );
    assert_eq!(code, 0);
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let source = &plan["audience"];
    assert_eq!(source["records_read"], 9);
    assert_eq!(source["records_rejected"], 1);
    assert_eq!(source["rejected_lines"], serde_json::json!([4]));
    assert_eq!(source["warn_percent"], 25.0);
    let app = &plan["apps"][0];
    let audience = |name: &str| {
        app["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["audience"].clone())
            .unwrap_or_else(|| panic!("no step for {name}"))
    };
    assert_eq!(
        audience("us"),
        serde_json::json!({"before": 6, "after": 4, "change_percent": -33.3,
            "warning": "the audience shrinks by 33.3 % (6 → 4), more than the 25 % threshold"})
    );
    assert_eq!(audience("mx")["before"], 1);
    assert_eq!(audience("mx")["after"], 0);
    assert_eq!(
        audience("mx")["warning"],
        "the audience becomes empty (from 1 endpoint)"
    );
    assert_eq!(audience("android"), serde_json::json!({"before": 2}));
    assert_eq!(audience("fr"), serde_json::json!({"after": 1}));
    let affected = app["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{affected:?}");
    assert_eq!(affected[0]["name"], "us-ios");
    assert_eq!(affected[0]["through"], serde_json::json!(["us"]));
    assert_eq!(affected[0]["audience"]["before"], 5);
    assert_eq!(affected[0]["audience"]["after"], 3);

    // The saved plan, audiences and all, applies; afterwards nothing changes.
    let (code, stdout, stderr) = run(dir, &["apply", "plan.json", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, _) = run(dir, &args);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Target: the embedded local server over .segmentctl/pinpoint.db as owner audience-test (from segmentctl.yaml).\n\nNo changes. The live segments match the manifests.\n")
    );
}

#[test]
fn plan_refuses_an_unreadable_endpoint_file_or_a_bad_as_of_before_connecting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // An unreachable target: a refusal before connecting never gets as far as it.
    std::fs::write(
        dir.join("segmentctl.yaml"),
        "target: {endpoint: {url: 'http://127.0.0.1:9'}}\nowner: team-a\n",
    )
    .unwrap();
    write_manifests(dir, "US", "MX", false, false);
    let (code, _, stderr) = run(dir, &["plan", ".", "--endpoints", "missing.jsonl"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read missing.jsonl"), "{stderr}");
    std::fs::write(dir.join("e.jsonl"), RECORDS).unwrap();
    let (code, _, stderr) = run(
        dir,
        &[
            "plan",
            ".",
            "--endpoints",
            "e.jsonl",
            "--as-of",
            "yesterday",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--as-of \"yesterday\" is not an ISO-8601 instant"),
        "{stderr}"
    );
    let (code, _, stderr) = run(dir, &["plan", ".", "--as-of", "2026-11-28T00:00:00Z"]);
    assert_eq!(code, 1, "a usage error: --as-of needs --endpoints");
    assert!(stderr.contains("--endpoints"), "{stderr}");
}
