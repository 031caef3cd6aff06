//! `segmentctl run` against the server in-process: converging, following edits, drift,
//! invalid edits, git-sync's symlink swap, sharding, and a clean stop on SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_pinpoint::types::WriteCampaignRequest;
use segmentctl::daemon::{self, DaemonConfig, Mode, RunningDaemon, Shard};
use segmentctl::manifests::config::RateLimits;
use segmentctl::reconcile::pipeline::Overrides;
use segmentctl::targets::pinpoint::pacing::Api;
use segmentctl::targets::pinpoint::{Pinpoint, SdkPinpoint};
use segmentctl::targets::Connection;

use crate::reconcile::{indent, Fixture, OWNER};
use crate::util::{self, http_get, named};

fn connection(fx: &Fixture) -> Connection {
    Connection {
        pinpoint: SdkPinpoint::new(Api::new(
            fx.t.client.clone(),
            RateLimits {
                segment_writes: 1000.0,
                reads: 3000.0,
            },
        )),
        endpoint: fx.t.endpoint(),
        server: None,
    }
}

/// A daemon with a resync every 300 ms (for drift), or none within a test's time, so that
/// only the watcher can deliver a change.
fn config(dir: &Path, mode: Mode, prune: bool) -> DaemonConfig {
    DaemonConfig {
        dir: dir.to_path_buf(),
        config_file: None,
        overrides: Overrides {
            prune,
            ..Default::default()
        },
        interval: Duration::from_millis(300),
        stuck_after: Duration::from_secs(900),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_max_connections: daemon::ADMIN_MAX_CONNECTIONS,
        admin_header_timeout: Duration::from_secs(10),
        mode,
        shard: None,
    }
}

fn watch_only(mut cfg: DaemonConfig) -> DaemonConfig {
    cfg.interval = Duration::from_secs(3600);
    cfg
}

/// The admin address a controller started with `--log-format json` logs at start.
fn admin_address(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
    loop {
        let line = lines.next().expect("a startup log line").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("a JSON log line ({e}): {line}"));
        if let Some(a) = v["fields"]["admin"].as_str() {
            return a.to_string();
        }
    }
}

/// Rounds the controller has run, every kind (`segmentctl_reconcile_duration_seconds_count`).
fn rounds_run(d: &RunningDaemon) -> u64 {
    d.shared
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("segmentctl_reconcile_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn start(fx: &Fixture, cfg: DaemonConfig) -> RunningDaemon {
    let d = daemon::start_with(cfg, connection(fx)).await.unwrap();
    assert!(
        d.ready(Duration::from_secs(10)).await,
        "ready after the first reconcile"
    );
    d
}

/// Polls until `check` holds (at most 10 s).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn country_values(fx: &Fixture, name: &str) -> Vec<String> {
    fx.managed()
        .await
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, s)| s.dimensions?.location?.country)
        .map(|c| {
            let mut v = c.values;
            v.sort();
            v
        })
        .unwrap_or_default()
}

fn geo(fx: &Fixture, name: &str, countries: &str) -> String {
    fx.segment(
        name,
        &format!(
            "Name: {name}\nDimensions:\n  Location:\n    Country:\n      Values: [{countries}]\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_converges_is_ready_and_follows_an_edit() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &geo(&fx, "na", "US, CA"));
    fx.write("b.yaml", &geo(&fx, "eu", "FR, DE"));
    let d = start(&fx, watch_only(config(fx.dir.path(), Mode::Apply, false))).await;
    assert_eq!(fx.managed().await.len(), 2);

    let (status, _, body) = util::raw(
        d.admin,
        "GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (_, _, metrics) = util::raw(
        d.admin,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        metrics.contains(&format!(
            "segmentctl_managed_segments{{application=\"{}\",name=\"reconcile\"}} 2",
            fx.app
        )),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("segmentctl_api_requests_total{operation=\"CreateSegment\",code=\"ok\"} 2"),
        "{metrics}"
    );

    fx.write("a.yaml", &geo(&fx, "na", "US, CA, MX"));
    eventually("the edit reaches the server", || async {
        country_values(&fx, "na").await == ["CA", "MX", "US"]
    })
    .await;
    d.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_prune_a_removed_manifest_is_deleted_unless_an_active_campaign_uses_it() {
    let fx = Fixture::new().await;
    for n in ["k1", "k2", "k3", "gone", "used"] {
        fx.write(&format!("{n}.yaml"), &geo(&fx, n, "US"));
    }
    let d = start(&fx, config(fx.dir.path(), Mode::Apply, true)).await;
    let used = fx.id_of("used").await;
    fx.t.client
        .create_campaign()
        .application_id(&fx.app)
        .write_campaign_request(
            WriteCampaignRequest::builder()
                .name("Launch")
                .segment_id(&used)
                .build(),
        )
        .send()
        .await
        .unwrap();
    fx.remove("gone.yaml");
    fx.remove("used.yaml");
    // The status is recorded when the round ends, after its last call.
    eventually(
        "the unused segment is deleted and the round recorded",
        || async {
            !fx.managed().await.iter().any(|(n, _)| n == "gone")
                && d.shared
                    .status()
                    .applications
                    .get(&fx.app)
                    .is_some_and(|a| !a.blocked.is_empty())
        },
    )
    .await;
    assert!(
        fx.managed().await.iter().any(|(n, _)| n == "used"),
        "the campaign's segment stays"
    );
    let st = d.shared.status();
    let app = &st.applications[&fx.app];
    assert_eq!(
        app.blocked,
        ["delete used: campaign \"Launch\" (SCHEDULED) uses this segment"]
    );
    d.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected_at_the_next_resync_in_apply_mode_and_only_reported_in_observe_mode() {
    for mode in [Mode::Apply, Mode::Observe] {
        let fx = Fixture::new().await;
        fx.write("a.yaml", &geo(&fx, "na", "US, CA"));
        fx.converge(false, 3).await;
        let d = start(&fx, config(fx.dir.path(), mode, false)).await;
        let id = fx.id_of("na").await;
        fx.t.client
            .update_segment()
            .application_id(&fx.app)
            .segment_id(&id)
            .write_segment_request(named("edited by hand"))
            .send()
            .await
            .unwrap();
        match mode {
            Mode::Apply => {
                eventually("the drift is corrected", || async {
                    country_values(&fx, "na").await == ["CA", "US"]
                })
                .await;
            }
            Mode::Observe => {
                eventually("the drift is reported", || async {
                    d.shared
                        .status()
                        .applications
                        .get(&fx.app)
                        .is_some_and(|a| a.drifted == ["na"])
                })
                .await;
                assert!(d.shared.metrics_text().contains(&format!(
                    "segmentctl_drifted_segments{{application=\"{}\",name=\"reconcile\"}} 1",
                    fx.app
                )));
                assert_eq!(
                    country_values(&fx, "na").await,
                    Vec::<String>::new(),
                    "observe mode changes nothing"
                );
            }
        }
        d.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_keeps_the_last_good_state_and_reports_the_error() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &geo(&fx, "na", "US"));
    fx.write("b.yaml", &geo(&fx, "eu", "FR"));
    let d = start(&fx, config(fx.dir.path(), Mode::Apply, true)).await;
    // b.yaml breaks: with prune on, a daemon that dropped to "no manifests" would delete eu.
    fx.write(
        "b.yaml",
        "apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {name: eu\n",
    );
    eventually("the error is reported", || async {
        !d.shared.status().manifest_errors.is_empty()
    })
    .await;
    let st = d.shared.status();
    assert!(
        st.manifest_errors[0].contains("b.yaml:"),
        "{:?}",
        st.manifest_errors
    );
    // Two full rounds on the last good state, counted, not guessed with a sleep.
    let seen = d.shared.status().rounds;
    eventually("two rounds on the last good state", || async {
        d.shared.status().rounds >= seen + 2
    })
    .await;
    assert_eq!(fx.managed().await.len(), 2, "nothing deleted");
    assert!(d
        .shared
        .metrics_text()
        .contains("segmentctl_reconcile_total{application=\"(manifests)\",result=\"invalid\"}"));
    d.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_sync_symlink_swap_is_picked_up() {
    let fx = Fixture::new().await;
    let root = tempfile::tempdir().unwrap();
    let rev = |name: &str, countries: &str| -> PathBuf {
        let dir = root.path().join(".worktrees").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), geo(&fx, "na", countries)).unwrap();
        dir
    };
    let link = root.path().join("current");
    std::os::unix::fs::symlink(rev("1111aaaa", "US"), &link).unwrap();
    let d = start(&fx, watch_only(config(&link, Mode::Apply, false))).await;
    assert_eq!(country_values(&fx, "na").await, ["US"]);
    assert_eq!(d.shared.status().revision.as_deref(), Some("1111aaaa"));

    // As git-sync does: check out the new revision, then atomically swap the link onto it.
    let next = rev("2222bbbb", "US, CA");
    let tmp = root.path().join("current.tmp");
    std::os::unix::fs::symlink(&next, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    std::fs::remove_dir_all(root.path().join(".worktrees/1111aaaa")).unwrap();
    eventually("the new revision is applied", || async {
        country_values(&fx, "na").await == ["CA", "US"]
    })
    .await;
    // The status is written when the round ends, just after the change lands.
    eventually("the status names the new revision", || async {
        d.shared.status().revision.as_deref() == Some("2222bbbb")
    })
    .await;

    // And again, so the watch followed the first swap.
    let third = rev("3333cccc", "MX");
    let tmp = root.path().join("current.tmp");
    std::os::unix::fs::symlink(&third, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    eventually("the third revision is applied", || async {
        country_values(&fx, "na").await == ["MX"]
    })
    .await;
    d.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_divide_the_applications_and_together_converge_everything() {
    let fx = Fixture::new().await;
    let shards = [Shard { index: 0, count: 2 }, Shard { index: 1, count: 2 }];
    // Application ids are random, so six of them all land on one shard one time in 32:
    // create applications until each shard owns at least two.
    let mut apps = vec![fx.app.clone()];
    let mut i = 0;
    while apps.len() < 6
        || shards
            .iter()
            .any(|s| apps.iter().filter(|a| s.owns(a)).count() < 2)
    {
        assert!(i < 64, "64 random application ids all fell on one shard");
        apps.push(fx.t.app(&format!("shard-{i}")).await);
        i += 1;
    }
    for app in &apps {
        let text = format!("apiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: s\n  application: {app}\nspec:\n{}", indent("Name: s\n"));
        fx.write(&format!("{app}.yaml"), &text);
    }
    let mut daemons = Vec::new();
    for shard in shards {
        let mut cfg = config(fx.dir.path(), Mode::Apply, false);
        cfg.shard = Some(shard);
        daemons.push(start(&fx, cfg).await);
    }
    for app in &apps {
        let segs = fx.api.list_segments(app).await.unwrap();
        assert_eq!(segs.len(), 1, "app {app} converged once");
        assert_eq!(
            segmentctl::plan::live::managed_name(segs[0].tags.as_ref(), OWNER),
            Some("s")
        );
    }
    let owned: Vec<std::collections::BTreeSet<String>> = daemons
        .iter()
        .map(|d| {
            d.shared
                .status()
                .applications
                .values()
                .map(|a| a.application.clone())
                .collect()
        })
        .collect();
    for (shard, owned) in shards.iter().zip(&owned) {
        let expected: std::collections::BTreeSet<String> =
            apps.iter().filter(|a| shard.owns(a)).cloned().collect();
        assert_eq!(
            owned, &expected,
            "shard {}/2 handles exactly the applications it owns",
            shard.index
        );
    }
    assert!(
        owned[0].is_disjoint(&owned[1]),
        "no application is handled by both: {owned:?}"
    );
    let all: std::collections::BTreeSet<String> = owned[0].union(&owned[1]).cloned().collect();
    assert_eq!(all, apps.iter().cloned().collect());
    for d in daemons {
        d.stop().await.unwrap();
    }
}

#[test]
fn sigterm_stops_the_daemon_cleanly_with_exit_code_0() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("app.yaml"),
        "apiVersion: segmentctl/v1\nkind: Application\nmetadata: {name: shop}\nspec: {Name: Shop}\n---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata: {name: us, applicationRef: shop}\nspec: {Name: US}\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args([
            "run",
            ".",
            "--admin-listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
            "--log-format",
            "json",
        ])
        .current_dir(tmp.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = admin_address(&mut lines);
    std::thread::spawn(move || for _ in lines {});
    let start = Instant::now();
    loop {
        let ready = http_get(&admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"));
        if ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "did not exit within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_saves_renames_and_a_recreated_folder_are_all_seen() {
    let fx = Fixture::new().await;
    fx.write("sub/a.yaml", &geo(&fx, "na", "US"));
    let d = start(&fx, watch_only(config(fx.dir.path(), Mode::Apply, false))).await;
    let sub = fx.dir.path().join("sub");

    // An editor's atomic save: write a temporary file, rename it over the manifest.
    std::fs::write(sub.join(".a.yaml.swp"), geo(&fx, "na", "US, CA")).unwrap();
    std::fs::rename(sub.join(".a.yaml.swp"), sub.join("a.yaml")).unwrap();
    eventually("the atomic save is applied", || async {
        country_values(&fx, "na").await == ["CA", "US"]
    })
    .await;

    // A rename to another manifest file name.
    std::fs::write(sub.join("a.yaml"), geo(&fx, "na", "MX")).unwrap();
    std::fs::rename(sub.join("a.yaml"), sub.join("renamed.yaml")).unwrap();
    eventually("the renamed file is applied", || async {
        country_values(&fx, "na").await == ["MX"]
    })
    .await;

    // The folder deleted and created again.
    let seen = rounds_run(&d);
    std::fs::remove_dir_all(&sub).unwrap();
    eventually("a round runs on the folder's removal", || async {
        rounds_run(&d) > seen
    })
    .await;
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("a.yaml"), geo(&fx, "na", "FR")).unwrap();
    eventually("the recreated folder is applied", || async {
        country_values(&fx, "na").await == ["FR"]
    })
    .await;
    d.stop().await.unwrap();
}

/// A FIFO and a link to `/dev/zero` dropped into the watched folder are invalid files: both
/// are reported within a round, nothing live changes, the loop keeps following edits, and a
/// stop still stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_a_device_link_in_the_folder_is_an_invalid_file_and_the_loop_goes_on() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &geo(&fx, "na", "US"));
    let d = start(&fx, watch_only(config(fx.dir.path(), Mode::Apply, true))).await;
    let fifo = fx.dir.path().join("x.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("/dev/zero", fx.dir.path().join("zero.yaml")).unwrap();
    fx.write("a.yaml", &geo(&fx, "na", "US, CA")); // a change the watcher delivers
    eventually("both files are reported", || async {
        d.shared.status().manifest_errors.len() == 2
    })
    .await;
    let errors = d.shared.status().manifest_errors;
    assert!(
        errors[0].contains("x.yaml") && errors[0].contains("not a regular file (a FIFO)"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("zero.yaml") && errors[1].contains("outside the manifest folder"),
        "{errors:?}"
    );
    assert_eq!(country_values(&fx, "na").await, ["US"], "nothing applied");
    // Removing them, the loop follows the edit that waited.
    std::fs::remove_file(&fifo).unwrap();
    std::fs::remove_file(fx.dir.path().join("zero.yaml")).unwrap();
    eventually("the edit is applied", || async {
        country_values(&fx, "na").await == ["CA", "US"]
    })
    .await;
    // The status is published at the round's end, just after the apply.
    eventually("the errors are cleared", || async {
        d.shared.status().manifest_errors.is_empty()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), d.stop())
        .await
        .expect("stops within 10 s")
        .unwrap();
}

/// `/livez` fails while a round runs longer than `stuck_after` (here: every answer of the
/// API delayed past it), and passes again once the round ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_fails_while_a_round_is_stuck_and_recovers() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &geo(&fx, "na", "US"));
    let mut cfg = watch_only(config(fx.dir.path(), Mode::Apply, false));
    cfg.stuck_after = Duration::from_millis(500);
    let d = start(&fx, cfg).await;
    let admin = d.admin.to_string();
    let livez = |admin: String| async move {
        tokio::task::spawn_blocking(move || http_get(&admin, "/livez").unwrap_or_default())
            .await
            .unwrap()
    };
    assert!(livez(admin.clone()).await.starts_with("HTTP/1.1 200"));
    fx.t.server
        .state
        .faults
        .set(segmentctl::server::limits::FaultConfig {
            latency: Duration::from_secs(3),
            ..Default::default()
        });
    fx.write("a.yaml", &geo(&fx, "na", "US, CA"));
    let mut answer = String::new();
    for _ in 0..100 {
        answer = livez(admin.clone()).await;
        if answer.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("stuck: the reconcile round has run for"),
        "{answer}"
    );
    fx.t.server.state.faults.set(Default::default());
    eventually("the round ends and /livez passes", || {
        let admin = admin.clone();
        async move { livez(admin).await.starts_with("HTTP/1.1 200") }
    })
    .await;
    d.stop().await.unwrap();
}

/// Each finished step is an event: kept in the bounded history of `/`, and shown by
/// `segmentctl status` against the running controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_keeps_each_step_and_segmentctl_status_shows_it() {
    let fx = Fixture::new().await;
    fx.write("a.yaml", &geo(&fx, "na", "US"));
    let d = start(&fx, watch_only(config(fx.dir.path(), Mode::Apply, false))).await;
    let id = fx.id_of("na").await;
    let history = d.shared.status().history;
    assert_eq!(history.len(), 1, "{history:?}");
    let step = &history[0].steps[0];
    assert_eq!(step["type"], "step");
    assert_eq!(step["segment"], "na");
    assert_eq!(step["action"], "create");
    assert_eq!(step["result"], "done");
    assert_eq!(step["id"], id.as_str());
    assert_eq!(step["version_after"], 1);
    // An edit: one more round in the history, the update with its versions.
    fx.write("a.yaml", &geo(&fx, "na", "US, CA"));
    eventually("the update is in the history", || async {
        d.shared.status().history.len() == 2
    })
    .await;
    let admin = format!("http://{}", d.admin);
    let out = tokio::task::spawn_blocking(move || {
        util::run_cli(Path::new("."), &["status", "--admin", &admin])
    })
    .await
    .unwrap();
    assert_eq!(out.0, 0, "{}{}", out.1, out.2);
    let text = out.1;
    assert!(text.contains(": ready, mode apply"), "{text}");
    assert!(
        text.contains(&format!("✓ reconcile/na created (id {id}, v1)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("✓ reconcile/na updated (id {id}, v1 → v2)")),
        "{text}"
    );
    assert!(text.contains("APPLICATION"), "{text}");
    d.stop().await.unwrap();
}

/// Readiness follows Kubernetes conventions, as Flux and Argo CD do: one application that
/// fails (a manifest naming a base segment that does not exist) does not keep the
/// controller unready; the other converges, and the failure shows in the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_application_does_not_keep_the_controller_unready() {
    let fx = Fixture::new().await;
    let other = util::create_app(&fx.t.client, "broken").await;
    fx.write("a.yaml", &geo(&fx, "na", "US, CA"));
    fx.write(
        "broken.yaml",
        &util::segment(
            &other,
            "on-nothing",
            "Name: on nothing\nSegmentGroups:\n  Groups:\n    - SourceSegments:\n        - Id: 0123456789abcdef0123456789abcdef",
        ),
    );
    let d = daemon::start_with(
        watch_only(config(fx.dir.path(), Mode::Apply, false)),
        connection(&fx),
    )
    .await
    .unwrap();
    assert!(
        d.ready(Duration::from_secs(20)).await,
        "ready after the first round, though one application fails"
    );
    let (status, _, body) = util::raw(
        d.admin,
        "GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(country_values(&fx, "na").await, ["CA", "US"]);
    let st = d.shared.status();
    let broken = st
        .applications
        .get(&other)
        .unwrap_or_else(|| panic!("the failing application is in the status: {st:?}"));
    assert!(broken.last_error.is_some(), "{broken:?}");
    d.stop().await.unwrap();
}

/// The admin connections `pid` holds open on `port` (its sockets whose local port is it,
/// the listening one left out), from `/proc`.
fn admin_connections(pid: u32, port: u16) -> usize {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|s| s.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 0A is LISTEN.
            local_port == Some(port) && f[3] != "0A" && inodes.contains(f[9])
        })
        .count()
}

/// A flood of requests that never finish their headers cannot hold the controller's admin
/// port (nor its descriptors, which it needs to read its folder): the admin endpoints are
/// served by the API server's listener, which serves at most `--admin-max-connections` at
/// once (the rest wait in the kernel's backlog, holding nothing of the process) and closes
/// a connection whose headers take longer than `--admin-header-timeout`. Every one of the
/// flood is closed unanswered, the process never holds more than the cap, and `/livez`
/// answers once they are gone.
#[test]
fn half_sent_admin_requests_are_closed_and_never_held_beyond_the_cap() {
    use std::io::{BufRead, BufReader, Read, Write};
    const CAP: usize = 4;
    const FLOOD: usize = 24;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("app.yaml"),
        "apiVersion: segmentctl/v1\nkind: Application\nmetadata: {name: shop}\nspec: {Name: Shop}\n",
    )
    .unwrap();
    /// Stops the controller however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args([
            "run",
            ".",
            "--admin-listen",
            "127.0.0.1:0",
            "--interval",
            "1h",
        ])
        .args(["--admin-max-connections", &CAP.to_string()])
        .args(["--admin-header-timeout", "1s", "--log-format", "json"])
        .current_dir(tmp.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let _stop = Stop(child);
    let mut lines = BufReader::new(stderr).lines();
    let admin = admin_address(&mut lines);
    std::thread::spawn(move || for _ in lines {});
    let port: u16 = admin.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(&admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut flood: Vec<Option<std::net::TcpStream>> = (0..FLOOD)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&admin).unwrap();
            s.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n").unwrap();
            s.set_nonblocking(true).unwrap();
            Some(s)
        })
        .collect();
    let (mut most_held, mut open) = (0, FLOOD);
    // A connection over the cap would be held for the header timeout (1 s), across many
    // samples; one sample over it alone is /proc read while a connection closes and the
    // next is accepted (seen under load), so two in a row fail the test.
    let mut over = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while open > 0 {
        let held = admin_connections(pid, port);
        over = if held > CAP { over + 1 } else { 0 };
        assert!(
            over < 2,
            "the controller holds {held} admin connections at once; the cap is {CAP}"
        );
        most_held = most_held.max(held);
        for slot in flood.iter_mut() {
            let Some(s) = slot else { continue };
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(0) | Err(_) => {
                    *slot = None;
                    open -= 1;
                }
                Ok(n) => panic!(
                    "a half-sent request was answered: {}",
                    String::from_utf8_lossy(&buf[..n])
                ),
            }
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {FLOOD} half-sent connections still open after 60 s (header timeout 1 s)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most_held >= 1, "the flood was seen being served");
    let live = http_get(&admin, "/livez").unwrap_or_default();
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
}
