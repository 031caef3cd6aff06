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
            "Target: the embedded local server over quickstart/.segmentctl/pinpoint.db as owner quickstart (from quickstart/segmentctl.yaml).\n\nPlan: 8 to create, 0 to update, 0 to delete. 1 application to create first."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Apply complete: 8 created, 0 updated, 0 deleted; 0 blocked, 0 failed."),
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
        stdout.contains("Dimensions.Location.Country.Values: CA, US (− MX)"),
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
fn an_unreachable_target_is_named_then_one_line_says_what_to_check() {
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
    for args in [&["plan", "."][..], &["apply", ".", "--auto-approve"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
            .args(args)
            .current_dir(tmp.path())
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "not-printed-secret")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        // Where and as which owner first, as every report says it, though no report is made.
        let (first, rest) = stderr.split_once('\n').unwrap();
        assert_eq!(
        first,
        "Target: the endpoint http://127.0.0.1:9 (us-east-1) as owner team-a (from segmentctl.yaml).",
        "{stderr}"
    );
        assert!(
            rest.starts_with("error: cannot reach the Pinpoint API at http://127.0.0.1:9"),
            "{stderr}"
        );
        assert!(
            stderr.contains("check the endpoint URL, the network, and the region"),
            "{stderr}"
        );
        assert!(!stderr.contains("not-printed-secret"));
    }
}

#[test]
fn a_config_kept_among_the_manifests_is_not_read_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"),
        tmp.path(),
    );
    std::fs::create_dir(tmp.path().join("envs")).unwrap();
    std::fs::write(
        tmp.path().join("envs/prod.yaml"),
        "target:\n  local: {path: prod.db}\nowner: team-prod\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(tmp.path(), &["validate", ".", "--config", "envs/prod.yaml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Without --config it is a manifest file like any other, and does not read as one.
    let (code, _, stderr) = run(tmp.path(), &["validate", "."]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("envs/prod.yaml:1:1: target: unknown field"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(tmp.path(), &["plan", ".", "--config", "./envs/prod.yaml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("as owner team-prod (from "), "{stdout}");
    assert!(stdout.contains("prod.yaml)."), "{stdout}");
}

#[test]
fn an_endpoint_url_with_user_info_is_refused_without_showing_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("segmentctl.yaml"),
        "target:\n  endpoint: {url: 'http://bob:hunter2@127.0.0.1:9', region: us-east-1}\nowner: team-a\n",
    )
    .unwrap();
    let (code, _, stderr) = run(tmp.path(), &["validate", "."]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "endpoint.url: \"http://127.0.0.1:9\" carries user info (`user:…@`), which is not sent"
        ),
        "{stderr}"
    );
    std::fs::remove_file(tmp.path().join("segmentctl.yaml")).unwrap();
    let (code, _, flag) = run(
        tmp.path(),
        &[
            "plan",
            ".",
            "--target",
            "endpoint:https://bob:hunter2@pinpoint.internal",
            "--owner",
            "a",
        ],
    );
    assert_eq!(code, 1, "{flag}");
    assert!(
        flag.contains("--target endpoint:URL: \"https://pinpoint.internal\" carries user info"),
        "{flag}"
    );
    for out in [&stderr, &flag] {
        assert!(!out.contains("hunter2") && !out.contains("bob"), "{out}");
    }
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
        let parsed = segmentctl::cli::args::Cli::try_parse_from(
            std::iter::once("segmentctl".to_string()).chain(args.clone()),
        );
        assert!(
            parsed.is_ok(),
            "{file}: {args:?}: {}",
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

/// Completions for every shell and a man page, generated from the command definitions.
#[test]
fn completions_and_the_man_page_are_generated_from_the_cli() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (shell, mark) in [
        ("bash", "_segmentctl()"),
        ("zsh", "#compdef segmentctl"),
        ("fish", "complete -c segmentctl"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let (code, out, err) = run(here, &["completion", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(mark), "{shell}: {out}");
        assert!(
            out.contains("estimate") && out.contains("detailed-exitcode"),
            "{shell}"
        );
    }
    let (code, man, _) = run(here, &["man"]);
    assert_eq!(code, 0);
    assert!(
        man.starts_with(".ie \\n(.g .ds Aq") || man.contains(".TH segmentctl 1"),
        "{man}"
    );
    for page in [
        "segmentctl-plan",
        "segmentctl-apply",
        "segmentctl-status",
        "segmentctl-serve",
    ] {
        assert!(man.contains(&format!(".TH {page} 1")), "{page}");
    }
    assert!(
        man.contains("SEGMENTCTL_LOG"),
        "the environment is documented"
    );
    // Every page segmentctl(1) names exists: `man --out DIR` writes each to its file, and
    // `man COMMAND` prints one.
    let pages = tempfile::tempdir().unwrap();
    let (code, _, _) = run(here, &["man", "--out", pages.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    let main = std::fs::read_to_string(pages.path().join("segmentctl.1")).unwrap();
    let named: Vec<&str> = main
        .lines()
        .filter(|l| l.starts_with("segmentctl\\-") && l.ends_with("(1)"))
        .collect();
    assert!(named.len() >= 10, "{main}");
    for line in named {
        let page = line.trim_end_matches("(1)").replace("\\-", "-");
        let text = std::fs::read_to_string(pages.path().join(format!("{page}.1")))
            .unwrap_or_else(|_| panic!("segmentctl(1) names {page}(1), which is not written"));
        assert!(text.contains(&format!(".TH {page} 1")), "{page}");
    }
    let (code, plan, _) = run(here, &["man", "plan"]);
    assert_eq!(code, 0);
    assert!(plan.contains(".TH segmentctl-plan 1") && !plan.contains(".TH segmentctl-apply"));
}

/// Each command's --help has examples and documents every --format value it accepts; a
/// value a command cannot print is refused, not printed as something else.
#[test]
fn help_has_examples_and_each_format_is_one_the_command_prints() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for cmd in [
        "validate",
        "plan",
        "apply",
        "import",
        "run",
        "status",
        "estimate",
        "serve",
        "completion",
        "man",
    ] {
        let (code, out, _) = run(here, &[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Examples:"), "{cmd} --help: {out}");
    }
    let (_, top, _) = run(here, &["--help"]);
    for var in [
        "SEGMENTCTL_LOG",
        "NO_COLOR",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "Exit codes",
    ] {
        assert!(top.contains(var), "{var} in --help");
    }
    let (code, _, err) = run(
        here,
        &["estimate", "--endpoints", "x", "--format", "markdown"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("possible values: text, json"), "{err}");
    let (_, plan_help, _) = run(here, &["plan", "--help"]);
    assert!(
        plan_help.contains("markdown: the pull-request comment"),
        "{plan_help}"
    );
}

/// One manifest file is accepted wherever a folder is, its configuration discovered from
/// its folder; `import` takes DIR like every other command; `estimate` has column headers.
#[test]
fn a_single_manifest_file_is_accepted_and_estimate_has_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let qs = tmp.path().join("quickstart");
    std::fs::create_dir_all(&qs).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"),
        &qs,
    );
    let (code, out, err) = run(&qs, &["validate", "application.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 manifest"), "{out}");
    let (code, out, err) = run(&qs, &["plan", "application.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("as owner quickstart (from "),
        "its folder's config: {out}"
    );
    assert!(!qs.join("application.yaml/.segmentctl").exists());
    let (code, _, err) = run(&qs, &["validate", "endpoints.jsonl"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("neither a folder nor a manifest file"),
        "{err}"
    );
    let (code, out, err) = run(&qs, &["estimate", ".", "--endpoints", "endpoints.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("SEGMENT") && out.contains("ENDPOINTS") && out.contains("SHARE"),
        "{out}"
    );
    let (_, help, _) = run(&qs, &["import", "--help"]);
    assert!(help.contains("[DIR]"), "{help}");
}

/// An application named by an id the target lacks is an error, never "to be created".
#[test]
fn an_application_id_the_target_lacks_is_not_to_be_created() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("m.yaml"),
        "apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {name: us, application: 0123456789abcdef0123456789abcdef}\nspec: {Name: US}\n",
    )
    .unwrap();
    let (code, out, _) = run(tmp.path(), &["plan", "."]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("to be created"), "{out}");
    assert!(out.contains("Application 0123456789abcdef0123456789abcdef\n  error: application 0123456789abcdef0123456789abcdef does not exist on the target"), "{out}");
}
