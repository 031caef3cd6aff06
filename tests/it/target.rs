//! Never act on the wrong target: the configuration is found where a repository keeps it,
//! the target and owner are named in every report, the owner is required off the embedded
//! target, concurrent appliers leave no duplicate, and exit codes, credentials, interrupts
//! and closed pipes behave as documented. The binary against the server in-process.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{self, endpoint_config, live_segments, segmentctl, tag, Controller};

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = segmentctl(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn application(name: &str, display: &str) -> String {
    format!("---\napiVersion: segmentctl/v1\nkind: Application\nmetadata: {{name: {name}}}\nspec: {{Name: {display}}}\n")
}

fn segment_of(app_ref: &str, name: &str) -> String {
    format!("---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: {name}, applicationRef: {app_ref}}}\nspec:\n  Name: {name}\n  Dimensions:\n    Location:\n      Country: {{Values: [US]}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_layout_applies_to_the_endpoint_its_root_config_names() {
    let t = util::start().await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join(".git")).unwrap();
    std::fs::create_dir_all(repo.path().join("segments")).unwrap();
    std::fs::write(repo.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(
        repo.path().join("segments/shop.yaml"),
        application("shop", "Shop") + &segment_of("shop", "us"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(repo.path(), &["apply", "segments", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let first = stdout.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "Target: the endpoint {} (us-east-1) as owner team-a (from segmentctl.yaml).",
            t.endpoint()
        )
    );
    assert!(
        !repo.path().join("segments/.segmentctl").exists(),
        "no embedded database beside the manifests"
    );
    let apps = t.client.get_apps().send().await.unwrap();
    let app = apps.applications_response.unwrap().item.unwrap();
    assert_eq!(app.len(), 1);
    let live = live_segments(&t, app[0].id.as_deref().unwrap()).await;
    assert_eq!(live.len(), 1);
    assert_eq!(
        tag(&live[0], "segmentctl:managed-by").as_deref(),
        Some("team-a")
    );

    // From elsewhere, the same file is found by walking up from the manifests.
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(
        elsewhere.path(),
        &["plan", repo.path().join("segments").to_str().unwrap()],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!(
            "as owner team-a (from {}",
            repo.path().join("segmentctl.yaml").display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("No changes."), "{stdout}");

    // Outside a repository only the folder itself (and the current folder) is looked in:
    // the implicit embedded default says so on the first line.
    let loose = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(loose.path().join("m")).unwrap();
    std::fs::write(
        loose.path().join("segmentctl.yaml"),
        endpoint_config(&t, ""),
    )
    .unwrap();
    let (code, stdout, stderr) = run(
        elsewhere.path(),
        &["plan", loose.path().join("m").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("Target: the embedded local server over "),
        "{first}"
    );
    assert!(
        first.ends_with("as owner segmentctl (no segmentctl.yaml found: the embedded default)."),
        "{first}"
    );
    assert!(
        stdout.contains("warning: no manifests were found in "),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_is_named_in_every_report_and_a_saved_plan_stays_with_it() {
    let t = util::start().await;
    let other = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(
        dir.path().join("shop.yaml"),
        application("shop", "Shop") + &segment_of("shop", "us"),
    )
    .unwrap();
    let (_, text, _) = run(dir.path(), &["plan"]);
    assert!(
        text.starts_with(&format!(
            "Target: the endpoint {} (us-east-1) as owner team-a",
            t.endpoint()
        )),
        "{text}"
    );
    let (_, md, _) = run(
        dir.path(),
        &["plan", "--format", "markdown", "--revision", "0a1b2c3"],
    );
    assert!(
        md.contains(&format!(
            "**Target:** the endpoint {} (us-east-1) · **Owner:** `team-a` · **Commit:** `0a1b2c3`",
            t.endpoint().replace(':', "\\:")
        )),
        "{md}"
    );
    let (_, json, _) = run(dir.path(), &["plan", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["target"]["kind"], "endpoint");
    assert_eq!(v["target"]["address"], t.endpoint());
    assert_eq!(v["target"]["owner"], "team-a");

    let (code, _, _) = run(dir.path(), &["plan", "--out", "plan.json"]);
    assert_eq!(code, 0);
    // Another owner: refused.
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        endpoint_config(&t, "").replace("team-a", "team-b"),
    )
    .unwrap();
    let (code, _, stderr) = run(dir.path(), &["apply", "plan.json", "--auto-approve"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("it was made for the endpoint")
            && stderr.contains("as owner team-a")
            && stderr.contains("as owner team-b"),
        "{stderr}"
    );
    // Another target: refused.
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        endpoint_config(&other, ""),
    )
    .unwrap();
    let (code, _, stderr) = run(dir.path(), &["apply", "plan.json", "--auto-approve"]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&other.endpoint()), "{stderr}");
    let apps = other.client.get_apps().send().await.unwrap();
    assert!(
        apps.applications_response
            .unwrap()
            .item
            .unwrap_or_default()
            .is_empty(),
        "nothing reached the other target"
    );
    // The right one: applied.
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    let (code, stdout, stderr) = run(dir.path(), &["apply", "plan.json", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_the_local_target_the_owner_must_be_said() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let no_owner = endpoint_config(&t, "").replace("owner: team-a\n", "");
    std::fs::write(dir.path().join("segmentctl.yaml"), no_owner).unwrap();
    std::fs::write(
        dir.path().join("shop.yaml"),
        application("shop", "Shop") + &segment_of("shop", "us"),
    )
    .unwrap();
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let (code, stdout, stderr) = run(dir.path(), args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: no owner is set for the endpoint {}",
                t.endpoint()
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("set `owner: <team-or-repository>` in segmentctl.yaml or pass --owner"),
            "{stderr}"
        );
    }
    let (code, stdout, stderr) = run(dir.path(), &["plan", "--owner", "team-a"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("as owner team-a"), "{stdout}");
}

/// 50 manifests for a new application `name`, in their own file.
fn fifty(dir: &Path, name: &str) {
    let text: String = application(name, name)
        + &(0..50)
            .map(|i| segment_of(name, &format!("s{i:02}")))
            .collect::<String>();
    std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
}

/// Two `apply --auto-approve --wait` started together in `dir`; both must succeed.
fn two_applies_at_once(dir: &Path, round: usize) {
    let spawn = || {
        segmentctl(dir)
            .args(["apply", "--auto-approve", "--wait"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn managed_in(t: &util::TestServer, app_name: &str) -> (usize, usize) {
    let apps = t.client.get_apps().page_size("1000").send().await.unwrap();
    let mut segments = 0;
    let mut copies = 0;
    for a in apps.applications_response.unwrap().item.unwrap_or_default() {
        if a.name.as_deref() == Some(app_name) {
            copies += 1;
            segments += live_segments(t, a.id.as_deref().unwrap())
                .await
                .iter()
                .filter(|s| tag(s, "segmentctl:managed-by").as_deref() == Some("team-a"))
                .count();
        }
    }
    (copies, segments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliers_at_once_never_leave_duplicates() {
    let t = util::start().await;
    let root = tempfile::tempdir().unwrap();
    // CLI and CLI, five rounds.
    for round in 0..5 {
        let dir = root.path().join(format!("cli-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
        // The application exists, so that both appliers meet at its lease.
        std::fs::write(
            dir.join("app.yaml"),
            application(&format!("r{round}"), &format!("r{round}")),
        )
        .unwrap();
        let (code, _, stderr) = run(&dir, &["apply", "--auto-approve"]);
        assert_eq!(code, 0, "{stderr}");
        fifty(&dir, &format!("r{round}"));
        std::fs::remove_file(dir.join("app.yaml")).unwrap();
        two_applies_at_once(&dir, round);
        assert_eq!(
            managed_in(&t, &format!("r{round}")).await,
            (1, 50),
            "round {round}"
        );
        let (code, _, _) = run(&dir, &["plan", "--detailed-exitcode"]);
        assert_eq!(code, 0, "round {round}: the plan after both is empty");
    }

    // CLI and controller, five rounds: each round adds an application the controller sees.
    let dir = root.path().join("with-controller");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    let c = Controller::start(&dir, &["--interval", "1s"]);
    for round in 0..5 {
        let name = format!("d{round}");
        std::fs::write(dir.join(format!("{name}.yaml")), application(&name, &name)).unwrap();
        let start = Instant::now();
        while managed_in(&t, &name).await.0 == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the controller creates {name}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fifty(&dir, &name);
        let out = segmentctl(&dir)
            .args(["apply", "--auto-approve", "--wait"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = Instant::now();
        loop {
            let (code, _, _) = run(&dir, &["plan", "--detailed-exitcode"]);
            if code == 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "round {round} settles"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(managed_in(&t, &name).await, (1, 50), "round {round}");
    }
    drop(c);
}

/// The first merge of a new repository: CI's apply and another applier (a second apply, or
/// the controller) at once, with the application itself still to be created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliers_on_a_fresh_target_make_one_application_and_one_copy_of_each_segment() {
    let t = util::start().await;
    let root = tempfile::tempdir().unwrap();
    let sixty = |dir: &Path, name: &str| {
        let text: String = application(name, name)
            + &(0..60)
                .map(|i| segment_of(name, &format!("s{i:02}")))
                .collect::<String>();
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    };
    for round in 0..4 {
        let name = format!("fresh{round}");
        let dir = root.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
        sixty(&dir, &name);
        two_applies_at_once(&dir, round);
        assert_eq!(managed_in(&t, &name).await, (1, 60), "round {round}");
        let (code, _, _) = run(&dir, &["plan", "--detailed-exitcode"]);
        assert_eq!(code, 0, "round {round}: the plan after both is empty");
    }

    // The controller and an apply start together on a folder whose application is new.
    let dir = root.path().join("with-controller");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    sixty(&dir, "together");
    let c = Controller::start(&dir, &["--interval", "1s"]);
    let out = segmentctl(&dir)
        .args(["apply", "--auto-approve", "--wait"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while run(&dir, &["plan", "--detailed-exitcode"]).0 != 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the two settle");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(managed_in(&t, "together").await, (1, 60));
    drop(c);
}

/// An applier paused past its lease (a stopped process, a VM frozen) must not go on
/// creating once another applier has taken the lease: the next renewal reads the lease back,
/// finds it gone, and no further step starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_paused_past_its_lease_starts_no_step_once_another_took_it() {
    let t = util::start_with(|c| c.faults.latency = Duration::from_millis(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("segmentctl.yaml"),
        endpoint_config(&t, "concurrency: 1\n"),
    )
    .unwrap();
    std::fs::write(dir.join("app.yaml"), application("paused", "paused")).unwrap();
    assert_eq!(run(dir, &["apply", "--auto-approve"]).0, 0);
    let text: String = (0..40)
        .map(|i| segment_of("paused", &format!("s{i:02}")))
        .collect();
    std::fs::write(dir.join("segments.yaml"), text).unwrap();

    let apply = || {
        let mut c = segmentctl(dir);
        c.args(["apply", "--auto-approve"])
            .env("SEGMENTCTL_LEASE_TTL", "2");
        c
    };
    let mut a = apply()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop A once it has created its first segment.
    let mut a_out = std::io::BufReader::new(a.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut a_out, &mut line).unwrap();
        assert!(n > 0, "A ended before its first step: {seen}");
        seen.push_str(&line);
        if line.starts_with("✓") {
            break;
        }
    }
    let pid = a.id() as i32;
    // SAFETY: signals to a child of this test.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // A's lease runs out while it is stopped; B takes it and finishes the work.
    std::thread::sleep(Duration::from_secs(3));
    let b = apply().output().unwrap();
    assert_eq!(
        b.status.code(),
        Some(0),
        "B applies: {}{}",
        String::from_utf8_lossy(&b.stdout),
        String::from_utf8_lossy(&b.stderr)
    );
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let rest = {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut a_out, &mut rest).unwrap();
        rest
    };
    let status = a.wait().unwrap();
    assert_eq!(status.code(), Some(1), "A fails: {seen}{rest}");
    assert!(
        rest.contains("The lease was lost to another applier (the lease was removed) while this apply was paused or cut off"),
        "{rest}"
    );
    assert!(rest.contains("not started: the lease was lost"), "{rest}");
    // At most the step A had in flight when it stopped can have been doubled.
    let (apps, segments) = managed_in(&t, "paused").await;
    assert_eq!(apps, 1);
    assert!(
        (40..=41).contains(&segments),
        "{segments} segments for 40 names: A went on after losing its lease"
    );
    // A rerun converges.
    assert_eq!(run(dir, &["apply", "--auto-approve"]).0, 0);
    assert_eq!(managed_in(&t, "paused").await, (1, 40));
    assert_eq!(run(dir, &["plan", "--detailed-exitcode"]).0, 0);
}

/// A saved plan was reviewed when it was saved: it applies without a prompt (CI has no
/// terminal), and is still refused once what it touches moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_applies_without_a_prompt_and_is_refused_once_stale() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(
        dir.join("shop.yaml"),
        application("saved", "saved") + &segment_of("saved", "us"),
    )
    .unwrap();
    let (code, _, stderr) = run(dir, &["plan", "--out", "plan.json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("apply it with: segmentctl apply plan.json"),
        "{stderr}"
    );
    let out = segmentctl(dir)
        .args(["apply", "plan.json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(managed_in(&t, "saved").await, (1, 1));
    let (code, _, stderr) = run(dir, &["apply", "plan.json"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("was created since the plan was made"),
        "{stderr}"
    );
}

/// What a newcomer types first is answered with what works: the prompt-skipping flags of
/// other tools point at `--auto-approve`, `sql --segment` names a close match, a missing
/// folder is named without a line and column, and a new local database is said to be new
/// (its folder kept out of Git).
#[test]
fn a_newcomers_first_mistakes_are_answered_with_what_works() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--yes", "-auto-approve"] {
        let (code, _, stderr) = util::run_cli(dir.path(), &["apply", flag]);
        assert_eq!(code, 1);
        assert!(
            stderr.contains(&format!(
                "tip: to apply without a prompt, pass --auto-approve (not {flag})"
            )),
            "{stderr}"
        );
    }
    let (code, _, stderr) = util::run_cli(dir.path(), &["validate", "no-such-folder"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("no-such-folder: no such folder or manifest file"),
        "{stderr}"
    );
    std::fs::write(
        dir.path().join("shop.yaml"),
        application("shop", "Shop") + &segment_of("shop", "north-america"),
    )
    .unwrap();
    let (code, _, stderr) = util::run_cli(
        dir.path(),
        &[
            "sql",
            ".",
            "--dialect",
            "duckdb",
            "--segment",
            "north-amerika",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--segment north-amerika: no segment of that name in the manifests (did you mean north-america?)"),
        "{stderr}"
    );
    let (code, _, stderr) = util::run_cli(dir.path(), &["plan", "."]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "does not exist yet: the embedded server starts a new, empty database there."
        ),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".segmentctl/.gitignore"))
            .unwrap()
            .lines()
            .last(),
        Some("*")
    );
    let (_, _, stderr) = util::run_cli(dir.path(), &["plan", "."]);
    assert!(!stderr.contains("does not exist yet"), "{stderr}");
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["plan", "--detailed-exitcode", "--formt", "json"][..],
        &["plan", "--format", "yaml"][..],
        &["import"][..],
        &[][..],
        &["frobnicate"][..],
        &["run", "--interval", "soon"][..],
    ] {
        let (code, stdout, stderr) = util::run_cli(dir.path(), args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(!stderr.is_empty(), "{args:?}");
    }
    let (code, stdout, _) = util::run_cli(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage:"));
}

#[test]
fn without_credentials_one_line_names_what_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("segmentctl.yaml"),
        "target:\n  endpoint: {url: 'http://127.0.0.1:9', region: us-east-1}\nowner: team-a\n",
    )
    .unwrap();
    let base = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"));
        c.current_dir(dir.path())
            .args(["plan"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("no-credentials"),
            )
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        c
    };
    let started = Instant::now();
    let out = base().output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    // The target named first, then one line of error.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(
        lines[0],
        "Target: the endpoint http://127.0.0.1:9 (us-east-1) as owner team-a (from segmentctl.yaml).",
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("error: no AWS credentials"),
        "{stderr}"
    );
    for source in [
        "the environment (AWS_ACCESS_KEY_ID",
        "profile",
        "SSO",
        "web identity",
        "container credentials",
        "instance metadata",
    ] {
        assert!(stderr.contains(source), "{source} named: {stderr}");
    }
    eprintln!("no-credentials answer in {took:?}");
    // A profile that does not exist is named.
    let out = base().env("AWS_PROFILE", "nope").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.starts_with("Target: the endpoint "), "{stderr}");
    assert!(
        stderr.contains("the AWS profile \"nope\" (from AWS_PROFILE) does not exist"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_apply_says_how_far_it_got_and_a_rerun_finishes() {
    let t = util::start_with(|c| c.faults.latency = Duration::from_millis(30)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(dir.path().join("app.yaml"), application("shop", "Shop")).unwrap();
    assert_eq!(run(dir.path(), &["apply", "--auto-approve"]).0, 0);
    let text: String = (0..120)
        .map(|i| segment_of("shop", &format!("s{i:03}")))
        .collect();
    std::fs::write(dir.path().join("segments.yaml"), text).unwrap();
    let child = segmentctl(dir.path())
        .args(["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let app = t
        .client
        .get_apps()
        .send()
        .await
        .unwrap()
        .applications_response
        .unwrap()
        .item
        .unwrap()[0]
        .id
        .clone()
        .unwrap();
    let start = Instant::now();
    while live_segments(&t, &app).await.len() < 10 {
        assert!(start.elapsed() < Duration::from_secs(30), "creates start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Interrupted: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.ends_with(" of 120 steps done; run apply again to finish."),
        "{line}"
    );
    let done: usize = line["Interrupted: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(done < 120, "{line}");
    // The interrupt is acknowledged at once, before the steps in flight finish.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Interrupt received: finishing ")
            && stderr.contains(" in flight, starting none (interrupt again to stop at once)."),
        "{stderr}"
    );
    assert_eq!(
        live_segments(&t, &app).await.len(),
        done,
        "steps in flight finished, none started after"
    );
    let (code, stdout, stderr) = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(live_segments(&t, &app).await.len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_program_quietly() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    let text: String = application("shop", "Shop")
        + &(0..400)
            .map(|i| segment_of("shop", &format!("s{i:03}")))
            .collect::<String>();
    std::fs::write(dir.path().join("m.yaml"), text).unwrap();
    std::fs::write(
        dir.path().join("e.jsonl"),
        "{\"ChannelType\":\"SMS\"}\n".repeat(10),
    )
    .unwrap();
    for args in [
        &["plan"][..],
        &["plan", "--format", "markdown"][..],
        &["validate"][..],
        &["schema"][..],
        &["estimate", "--endpoints", "e.jsonl"][..],
    ] {
        // As `segmentctl … | head -1`: the reader takes a line and goes.
        let mut child = segmentctl(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::BufRead;
            let mut first = String::new();
            let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
            let _ = reader.read_line(&mut first);
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}

/// Without a terminal, apply prints a line per finished step with the id in full and the
/// versions; `--format json` prints the same as JSON lines between the plan and the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_prints_an_event_per_step_in_text_and_in_json_lines() {
    let t = util::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(
        dir.path().join("shop.yaml"),
        application("shop", "Shop") + &segment_of("shop", "us") + &segment_of("shop", "ca"),
    )
    .unwrap();
    let (code, out, err) = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    // The two creates run in one wave, so their lines come in the order they finish.
    let mut events: Vec<&str> = out.lines().filter(|l| l.starts_with("✓ ")).collect();
    events.sort_unstable();
    assert_eq!(events.len(), 2, "{out}");
    for (line, name) in events.iter().zip(["ca", "us"]) {
        let rest = line
            .strip_prefix(&format!("✓ Shop/{name} created (id "))
            .unwrap_or_else(|| panic!("{line}"));
        let (id, tail) = rest.split_at(32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
        assert_eq!(tail, ", v1)");
    }
    // An update, as JSON lines.
    std::fs::write(
        dir.path().join("shop.yaml"),
        application("shop", "Shop")
            + &segment_of("shop", "us").replace("[US]", "[US, CA]")
            + &segment_of("shop", "ca"),
    )
    .unwrap();
    let (code, out, err) = run(dir.path(), &["apply", "--auto-approve", "--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["plan", "step", "summary"], "{out}");
    assert_eq!(lines[0]["plan"]["target"]["owner"], "team-a");
    let step = &lines[1];
    assert_eq!(
        (
            step["segment"].as_str(),
            step["action"].as_str(),
            step["result"].as_str()
        ),
        (Some("us"), Some("update"), Some("done"))
    );
    assert_eq!(
        (
            step["version_before"].as_i64(),
            step["version_after"].as_i64()
        ),
        (Some(1), Some(2))
    );
    assert!(
        step["message"].as_str().unwrap().contains("updated (id "),
        "{step}"
    );
    assert_eq!(lines[2]["updated"], 1);
    assert_eq!(lines[2]["exit_code"], 0);
    // JSON lines are for programs: no confirmation, so --auto-approve is required.
    let (code, _, err) = run(dir.path(), &["apply", "--format", "json"]);
    assert_eq!(code, 1);
    assert!(err.contains("--auto-approve"), "{err}");
}
