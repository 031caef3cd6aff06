//! The binary as a user runs it: the quickstart on the embedded default, and the exit codes.

use std::path::Path;
use std::process::Command;

use crate::util::run_cli as run;

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_quickstart_applies_on_the_embedded_default_and_exit_codes_follow_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let qs = tmp.path().join("quickstart");
    std::fs::create_dir_all(&qs).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"),
        &qs,
    );

    // Without a terminal, apply refuses unless told.
    let (code, _, stderr) = run(tmp.path(), &["apply", "quickstart"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("pass --auto-approve"), "{stderr}");

    let (code, stdout, stderr) = run(tmp.path(), &["apply", "quickstart", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(
            "Target: the embedded local server over quickstart/.segmentctl/pinpoint.db as owner quickstart (from quickstart/segmentctl.yaml).\n\nPlan: 6 to create, 0 to update, 0 to delete. 1 application to create first."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Apply complete: 6 created, 0 updated, 0 deleted; 0 blocked, 0 failed."),
        "{stdout}"
    );
    assert!(
        qs.join(".segmentctl/pinpoint.db").exists(),
        "the embedded target keeps its data in the folder"
    );

    let (code, stdout, _) = run(tmp.path(), &["plan", "quickstart", "--detailed-exitcode"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Target: the embedded local server over quickstart/.segmentctl/pinpoint.db as owner quickstart (from quickstart/segmentctl.yaml).\n\nNo changes. The live segments match the manifests.\n")
    );

    let geo = qs.join("segments/geo.yaml");
    let text = std::fs::read_to_string(&geo).unwrap();
    std::fs::write(
        &geo,
        text.replace("Values: [US, CA, MX]", "Values: [US, CA]"),
    )
    .unwrap();
    let (code, stdout, _) = run(tmp.path(), &["plan", "quickstart", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("Dimensions.Location.Country.Values: − MX"),
        "{stdout}"
    );
    let (code, _, _) = run(tmp.path(), &["plan", "quickstart"]);
    assert_eq!(code, 0, "changes without --detailed-exitcode exit 0");

    // A saved plan applies; applying it twice is refused because what it touched moved.
    let (code, _, _) = run(tmp.path(), &["plan", "quickstart", "--out", "plan.json"]);
    assert_eq!(code, 0);
    let (code, stdout, stderr) = run(tmp.path(), &["apply", "plan.json", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = run(tmp.path(), &["apply", "plan.json", "--auto-approve"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("moved: planned against version 1, now version 2"),
        "{stderr}"
    );

    // The protected segment's manifest removed, with prune: blocked, exit 3.
    let eng = qs.join("segments/engagement.yaml");
    let text = std::fs::read_to_string(&eng).unwrap();
    let cut = text
        .find("---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: vip-spenders")
        .unwrap();
    std::fs::write(&eng, &text[..cut]).unwrap();
    let (code, stdout, _) = run(tmp.path(), &["plan", "quickstart", "--prune"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("BLOCKED"), "{stdout}");
}

#[test]
fn an_unreachable_target_is_one_line_naming_what_to_check() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("segmentctl.yaml"),
        "target:\n  endpoint: {url: 'http://127.0.0.1:9', region: us-east-1}\nowner: team-a\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("a.yaml"),
        "apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {name: a, application: 0123456789abcdef0123456789abcdef}\nspec: {Name: a}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["plan", "."])
        .current_dir(tmp.path())
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "not-printed-secret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: cannot reach the Pinpoint API at http://127.0.0.1:9"),
        "{stderr}"
    );
    assert!(
        stderr.contains("check the endpoint URL, the network, and the region"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-printed-secret"));
}

/// The arguments `deploy/` gives each container, as the CLI would parse them.
fn container_args(file: &str, container: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        let containers = &v["spec"]["template"]["spec"]["containers"];
        for c in containers.as_sequence().into_iter().flatten() {
            if c["name"].as_str() == Some(container) {
                return c["args"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
            }
        }
    }
    panic!("no container {container} in {file}");
}

#[test]
fn the_kubernetes_manifests_pass_arguments_the_cli_accepts() {
    use clap::Parser;
    for (file, container) in [
        ("deploy/kubernetes/base/statefulset.yaml", "segmentctl"),
        (
            "deploy/kubernetes/overlays/with-server/server.yaml",
            "server",
        ),
    ] {
        let args = container_args(file, container);
        let parsed = segmentctl::cli::Cli::try_parse_from(
            std::iter::once("segmentctl".to_string()).chain(args.clone()),
        );
        assert!(
            parsed.is_ok(),
            "{file}: {args:?}: {}",
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
}
