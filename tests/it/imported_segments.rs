//! Imported segments as code: an ImportedSegment manifest planned, applied, unchanged on a
//! second plan, imported again when its file changes, built on by a Segment (whose export
//! equals `estimate`), and deleted only under the usual guards. The real binary against
//! `segmentctl serve`, and moto's S3 server for an s3:// source.

use std::io::Read as _;
use std::path::Path;

use aws_sdk_pinpoint::types::{ExportJobRequest, JobStatus};

use crate::imports::{export_done, S3Store};
use crate::util::{self, endpoint_config};

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run_env(dir, args, &[])
}

fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = util::segmentctl(dir);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn imported(app: &str, name: &str, title: &str, url: &str, format: &str) -> String {
    format!(
        "---\napiVersion: segmentctl/v1\nkind: ImportedSegment\nmetadata:\n  name: {name}\n  application: {app}\nspec:\n  Name: {title}\nsource:\n  url: {url}\n  format: {format}\n"
    )
}

const US_ON_VIP: &str = "Name: VIP in the US
SegmentGroups:
  Groups:
    - SourceSegments:
        - Ref: vip
      Dimensions:
        - Location:
            Country:
              Values: [US]";

const VIP: &str = "ChannelType,Address,Id,Location.Country
SMS,+15550101,vip-1,US
SMS,+15550102,vip-2,CA
EMAIL,a@example.com,vip-3,US
FAX,+1,vip-4,US
";

/// A server whose `--import-root` is a new folder, an application `name` on it, and a
/// manifest folder `manifests/` (with `data/`) inside the root, configured for the server.
async fn with_import_root(
    name: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    util::TestServer,
    String,
) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("manifests");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app(name).await;
    std::fs::write(dir.join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    (root, dir, t, app)
}

fn gunzip_lines(path: &Path) -> Vec<serde_json::Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_segment_is_planned_applied_reimported_built_on_and_deleted_under_guards() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("manifests");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("imported").await;
    std::fs::write(
        dir.join("segmentctl.yaml"),
        endpoint_config(&t, "prune: true\nmax_delete_percent: 100\n"),
    )
    .unwrap();
    std::fs::write(dir.join("data/vip.csv"), VIP).unwrap();
    std::fs::write(
        dir.join("vip.yaml"),
        imported(&app, "vip", "VIP", "data/vip.csv", "CSV")
            + &util::segment(&app, "vip-us", US_ON_VIP),
    )
    .unwrap();

    // Planned: an import, then the segment built on it in the next wave.
    let (code, out, err) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("↓ import  vip \"VIP\""), "{out}");
    assert!(out.contains("source: file://"), "{out}");
    assert!(
        out.contains("data/vip.csv (CSV): a new imported segment"),
        "{out}"
    );
    assert!(out.contains("+ create  vip-us"), "{out}");

    let (code, out, err) = run(&dir, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("imported (id ")
            && out.contains("v1; 3 endpoints: EMAIL 1, SMS 2; 1 of 4 rows rejected, first: "),
        "{out}"
    );
    assert!(
        out.contains("vip.csv:5: ChannelType: unknown value \"…\""),
        "{out}"
    );
    assert!(
        out.contains("Apply complete: 2 created, 0 updated, 0 deleted"),
        "{out}"
    );

    // Unchanged: nothing to do.
    let (code, out, err) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("No changes."), "{out}");

    // The live segment: IMPORT, owned, fingerprinted.
    let live = util::live_segments(&t, &app).await;
    let vip = live.iter().find(|s| s.name() == Some("VIP")).unwrap();
    assert_eq!(vip.segment_type().map(|t| t.as_str()), Some("IMPORT"));
    assert_eq!(util::tag(vip, "segmentctl:name").as_deref(), Some("vip"));
    assert!(util::tag(vip, "segmentctl:digest")
        .unwrap()
        .starts_with("import:"));
    let vip_id = vip.id().unwrap().to_string();
    let us_id = live
        .iter()
        .find(|s| s.name() == Some("VIP in the US"))
        .unwrap()
        .id()
        .unwrap()
        .to_string();

    // The export of the segment built on the import equals estimate over the same
    // endpoints (every endpoint, exported).
    let out_dir = root.path().join("out");
    let export = |segment: Option<String>| {
        let c = t.client.clone();
        let app = app.clone();
        let prefix = format!("file://{}/", out_dir.display());
        async move {
            let job = c
                .create_export_job()
                .application_id(&app)
                .export_job_request(
                    ExportJobRequest::builder()
                        .s3_url_prefix(prefix)
                        .role_arn("r")
                        .set_segment_id(segment)
                        .build(),
                )
                .send()
                .await
                .unwrap()
                .export_job_response
                .unwrap();
            let done = export_done(&c, &app, job.id().unwrap()).await;
            assert_eq!(done.job_status(), Some(&JobStatus::Completed), "{done:?}");
            done.id().unwrap().to_string()
        }
    };
    let all = export(None).await;
    let records = out_dir.join(&all).join("part-00000.gz");
    assert_eq!(gunzip_lines(&records).len(), 3);
    let us = export(Some(us_id)).await;
    let us_members = gunzip_lines(&out_dir.join(&us).join("part-00000.gz"));
    let ids: Vec<&str> = us_members.iter().filter_map(|e| e["Id"].as_str()).collect();
    assert_eq!(ids, ["vip-1", "vip-3"]);
    let (code, out, err) = run(
        &dir,
        &[
            "estimate",
            ".",
            "--endpoints",
            records.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let est: serde_json::Value = serde_json::from_str(&out).unwrap();
    let count = |name: &str| {
        est["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["segment"] == name)
            .unwrap()["endpoints"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        count("vip-us"),
        us_members.len() as u64,
        "export == estimate"
    );
    assert_eq!(count("vip"), 3);

    // The file changes: imported again, into the same segment, as version 2.
    std::fs::write(
        dir.join("data/vip.csv"),
        format!("{VIP}SMS,+15550105,vip-5,US\n"),
    )
    .unwrap();
    let (code, out, _) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("the source changed since the last import, which holds 3 endpoints"),
        "{out}"
    );
    let (code, out, err) = run(&dir, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("vip imported (id {vip_id}, v1 → v2; 4 endpoints")),
        "{out}"
    );
    assert!(
        out.contains("Apply complete: 0 created, 1 updated, 0 deleted"),
        "{out}"
    );
    let (code, out, _) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");

    // A campaign uses the imported segment: removing its manifests does not delete it.
    t.client
        .create_campaign()
        .application_id(&app)
        .write_campaign_request(
            aws_sdk_pinpoint::types::WriteCampaignRequest::builder()
                .name("launch")
                .segment_id(&vip_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    std::fs::write(
        dir.join("vip.yaml"),
        util::segment(&app, "other", "Name: other"),
    )
    .unwrap();
    let (code, out, _) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 3, "blocked: {out}");
    assert!(out.contains("- delete  vip \"VIP\""), "{out}");
    assert!(out.contains("campaign \"launch\""), "{out}");
    let (_, out, _) = run(&dir, &["apply", ".", "--auto-approve"]);
    assert!(out.contains("vip delete blocked"), "{out}");
    let live = util::live_segments(&t, &app).await;
    assert!(
        live.iter().any(|s| s.id() == Some(vip_id.as_str())),
        "kept while in use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_source_is_fingerprinted_by_its_etag_and_reimported_when_it_changes() {
    let s3 = S3Store::start().await;
    s3.bucket("crm").await;
    s3.put(
        "crm",
        "vip.json",
        "{\"ChannelType\":\"SMS\",\"Address\":\"+1\",\"Id\":\"a\"}\n",
    )
    .await;
    let config = s3.config.clone();
    let t = util::start_with(move |cfg| cfg.s3 = Some(config)).await;
    let app = t.app("s3").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(
        dir.path().join("vip.yaml"),
        imported(&app, "vip", "VIP", "s3://crm/vip.json", "JSON"),
    )
    .unwrap();
    let env = [
        ("AWS_ENDPOINT_URL_S3", s3.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let (code, out, err) = run_env(dir.path(), &["apply", ".", "--auto-approve"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("v1; 1 endpoints: SMS 1"), "{out}");
    let (code, out, err) = run_env(dir.path(), &["plan", ".", "--detailed-exitcode"], &env);
    let live = util::live_segments(&t, &app).await;
    assert_eq!(code, 0, "{out}{err}{:?}", live[0].tags);
    // A new object under the same key: a new ETag, so a new import.
    s3.put("crm", "vip.json", "{\"ChannelType\":\"SMS\",\"Address\":\"+1\",\"Id\":\"a\"}\n{\"ChannelType\":\"SMS\",\"Address\":\"+2\",\"Id\":\"b\"}\n").await;
    let (code, out, err) = run_env(dir.path(), &["plan", ".", "--detailed-exitcode"], &env);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("source: s3://crm/vip.json (JSON): the source changed"),
        "{out}"
    );
    let (code, out, err) = run_env(dir.path(), &["apply", ".", "--auto-approve"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("v1 → v2; 2 endpoints"), "{out}");
    // A source that cannot be read blocks its step, naming why; nothing changes.
    std::fs::write(
        dir.path().join("vip.yaml"),
        imported(&app, "vip", "VIP", "s3://crm/missing.json", "JSON"),
    )
    .unwrap();
    let (code, out, err) = run_env(dir.path(), &["plan", ".", "--detailed-exitcode"], &env);
    assert!(
        out.contains("blocked: its source \"s3://crm/missing.json\" cannot be read"),
        "{code} {out}{err}"
    );
}

#[test]
fn imported_segment_manifests_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let app = "0123456789abcdef0123456789abcdef";
    let text = format!(
        "{}{}{}",
        imported(app, "a", "A", "data/a.csv.gz", "CSV"),
        "---\napiVersion: segmentctl/v1\nkind: ImportedSegment\nmetadata:\n  name: b\n  application: 0123456789abcdef0123456789abcdef\nspec:\n  Name: B\n  Dimensions: {}\n",
        imported(app, "c", "C", "https://example.com/c.csv", "XML"),
    );
    std::fs::write(dir.path().join("m.yaml"), text).unwrap();
    let (code, out, err) = util::run_cli(dir.path(), &["validate", "."]);
    assert_eq!(code, 1, "{out}{err}");
    for expected in [
        "source.url: Pinpoint imports no compressed files",
        "spec: an ImportedSegment's spec has only Name and tags",
        "source: missing: an ImportedSegment names the file",
        "source.format: unknown value \"XML\"",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    // Two imported bases in one SourceSegments list: Pinpoint allows one.
    let text = format!(
        "{}{}{}",
        imported(app, "a", "A", "a.csv", "CSV"),
        imported(app, "c", "C", "c.csv", "CSV"),
        util::segment(
            app,
            "both",
            "Name: both\nSegmentGroups:\n  Groups:\n    - SourceSegments:\n        - Ref: a\n        - Ref: c",
        ),
    );
    std::fs::write(dir.path().join("m.yaml"), text).unwrap();
    let (code, out, err) = util::run_cli(dir.path(), &["validate", "."]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "SourceSegments[1].Ref: a SourceSegments list may name at most one imported segment"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_an_interrupted_apply_imported_is_claimed_not_duplicated() {
    let root = tempfile::tempdir().unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("claim").await;
    let dir = root.path();
    std::fs::write(dir.join("segmentctl.yaml"), endpoint_config(&t, "")).unwrap();
    std::fs::write(dir.join("vip.csv"), VIP).unwrap();
    std::fs::write(
        dir.join("vip.yaml"),
        imported(&app, "vip", "VIP", "vip.csv", "CSV"),
    )
    .unwrap();
    // What an apply stopped between the job's end and the tagging leaves: an IMPORT
    // segment of the same name and source, without segmentctl's tags.
    let url = format!(
        "file://{}",
        std::fs::canonicalize(dir.join("vip.csv"))
            .unwrap()
            .display()
    );
    let job = crate::imports::import(
        &t.client,
        &app,
        &url,
        aws_sdk_pinpoint::types::Format::Csv,
        Some("VIP"),
        None,
    )
    .await;
    let left = job.definition().unwrap().segment_id().unwrap().to_string();
    let (code, out, err) = run(dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains(&format!("↓ import  vip \"VIP\" (id {left}, version 1)")),
        "{out}"
    );
    let (code, out, err) = run(dir, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    let live = util::live_segments(&t, &app).await;
    assert_eq!(live.len(), 1, "claimed, not imported twice: {live:?}");
    assert_eq!(
        util::tag(&live[0], "segmentctl:name").as_deref(),
        Some("vip")
    );
    let (code, out, _) = run(dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");
    // The manifest turned into a dimensional Segment of the same name: the live IMPORT
    // segment is never updated as one.
    std::fs::write(
        dir.join("vip.yaml"),
        util::segment(
            &app,
            "vip",
            "Name: VIP\nDimensions:\n  Location:\n    Country:\n      Values: [US]",
        ),
    )
    .unwrap();
    let (code, out, _) = run(dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("is IMPORT and Pinpoint cannot change a segment's type"),
        "{out}"
    );
    let (_, out, _) = run(dir, &["apply", ".", "--auto-approve"]);
    assert!(out.contains("vip update blocked"), "{out}");
    let live = util::live_segments(&t, &app).await;
    assert_eq!(live[0].segment_type().map(|t| t.as_str()), Some("IMPORT"));
    assert_eq!(
        live[0].version(),
        Some(2),
        "the claim imported into it once; the blocked update changed nothing"
    );
}

/// A pull request's manifest cannot make `validate`, `estimate`, `sql` or `plan` read a
/// file outside the manifest folder, or print anything it holds: a local source resolves
/// inside the folder (links followed only within it) to a regular file or a folder, and is
/// otherwise a located error.
#[test]
fn a_local_source_outside_the_folder_is_a_located_error_and_nothing_of_it_is_printed() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.csv");
    std::fs::write(
        &secret,
        "AWS_SECRET_ACCESS_KEY=sekrit-value-123\nGITHUB_TOKEN=ghp_sekrit\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("records.jsonl"),
        "{\"Id\":\"a\",\"ChannelType\":\"SMS\"}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("leak.csv")).unwrap();
    let fifo = dir.join("fifo.csv");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a path made above.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let app = "0123456789abcdef0123456789abcdef";
    let cases = [
        (
            "/proc/self/environ".to_string(),
            "resolves outside the manifest folder",
        ),
        (
            "file:///proc/self/environ".to_string(),
            "resolves outside the manifest folder",
        ),
        (
            secret.display().to_string(),
            "resolves outside the manifest folder",
        ),
        (
            "leak.csv".to_string(),
            "resolves outside the manifest folder",
        ),
        ("fifo.csv".to_string(), "not a regular file (a FIFO)"),
    ];
    for (url, why) in cases {
        std::fs::write(
            dir.join("m.yaml"),
            imported(app, "leak", "Leak", &url, "CSV"),
        )
        .unwrap();
        for args in [
            &["validate", "."][..],
            &["estimate", ".", "--endpoints", "records.jsonl"][..],
            &["sql", ".", "--dialect", "duckdb"][..],
            &["plan", "."][..],
        ] {
            let (code, out, err) = run(dir, args);
            assert_eq!(code, 1, "{url} {args:?}: {out}{err}");
            assert!(
                err.contains(&format!("m.yaml:10:3: source.url: {url}: {why}")),
                "{url} {args:?}: {err}"
            );
            for leaked in ["sekrit", "PATH=", "HOME="] {
                assert!(
                    !out.contains(leaked) && !err.contains(leaked),
                    "{url} {args:?} printed {leaked}: {out}{err}"
                );
            }
        }
    }
    // A link that stays inside the folder is followed.
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/vip.csv"), VIP).unwrap();
    std::os::unix::fs::symlink("data/vip.csv", dir.join("vip.csv")).unwrap();
    std::fs::write(
        dir.join("m.yaml"),
        imported(app, "vip", "VIP", "vip.csv", "CSV"),
    )
    .unwrap();
    let (code, out, err) = run(dir, &["validate", "."]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The first line of a file that is not an endpoint file may be anything: what `estimate`
/// says of a bad header names its columns by position, never by what they hold.
#[test]
fn a_bad_header_is_reported_by_column_number_never_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("records.jsonl"),
        "{\"Id\":\"a\",\"ChannelType\":\"SMS\"}\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.csv"), "ChannelType,TOKEN=sekrit\nSMS,x\n").unwrap();
    let app = "0123456789abcdef0123456789abcdef";
    std::fs::write(
        dir.join("m.yaml"),
        imported(app, "n", "N", "notes.csv", "CSV"),
    )
    .unwrap();
    let (_, out, err) = run(dir, &["estimate", ".", "--endpoints", "records.jsonl"]);
    assert!(
        format!("{out}{err}").contains("column 2 of the header: not an endpoint field"),
        "{out}{err}"
    );
    assert!(
        !out.contains("sekrit") && !err.contains("sekrit"),
        "{out}{err}"
    );
}

/// `import` of an application holding an imported segment writes an `ImportedSegment` with
/// the source of its last import, never a dimensional `Segment` that would replace a list
/// with everyone; the plan right after is empty. A `Segment` with no criterion at all is
/// shown in the plan with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_an_imported_segment_with_its_source_and_the_plan_after_is_empty() {
    use aws_sdk_pinpoint::types::Format;
    let (_root, dir, t, app) = with_import_root("adopted").await;
    std::fs::write(dir.join("data/vip.csv"), VIP).unwrap();
    let source = dir.join("data/vip.csv").canonicalize().unwrap();
    let job = crate::imports::import(
        &t.client,
        &app,
        &format!("file://{}", source.display()),
        Format::Csv,
        Some("VIP list"),
        None,
    )
    .await;
    assert_eq!(job.job_status().map(|s| s.as_str()), Some("COMPLETED"));

    // Into a folder beside the manifest folder, its manifest would not load (its source is
    // outside): refused before anything is written or tagged, saying where to write instead.
    let elsewhere = dir.parent().unwrap().join("elsewhere");
    let (code, out, err) = run(
        &dir,
        &[
            "import",
            ".",
            "--application",
            &app,
            "--out",
            "../elsewhere",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "cannot import 1 imported segment: a manifest's source is read only inside the folder it is planned from (DIR when --out is inside it, else --out), and its source is not there; nothing was written or tagged\n  vip-list: its source {} is outside {} (for example --out {})",
            source.display(),
            dir.parent().unwrap().canonicalize().unwrap().join("elsewhere").display(),
            dir.canonicalize().unwrap().join("imported").display()
        )),
        "{err}"
    );
    assert!(!elsewhere.exists());

    let (code, out, err) = run(&dir, &["import", ".", "--application", &app]);
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_dir(dir.join("imported"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .find(|t| t.contains("kind: ImportedSegment"))
        .unwrap_or_else(|| panic!("an ImportedSegment manifest is written: {out}{err}"));
    assert!(written.contains("kind: ImportedSegment"), "{written}");
    assert!(written.contains("url: ../data/vip.csv"), "{written}");
    assert!(written.contains("format: CSV"), "{written}");
    assert!(!written.contains("Dimensions"), "{written}");
    let (code, out, err) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "the plan right after import is empty: {out}{err}");

    std::fs::write(
        dir.join("everyone.yaml"),
        util::segment(&app, "everyone", "Name: everyone"),
    )
    .unwrap();
    let (code, out, err) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("warning: the definition has no criterion and no base segment: it matches every endpoint of the application"),
        "{out}"
    );
}

/// Apply's wait for an import job is bounded (`SEGMENTCTL_IMPORT_TIMEOUT`): past it the step
/// fails, saying the job goes on, and a rerun waits for that same job instead of starting
/// another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_stops_waiting_for_an_import_at_its_limit_and_a_rerun_waits_for_the_same_job() {
    let (_root, dir, t, app) = with_import_root("slow").await;
    // Enough rows that the job outlasts apply's 1 s of patience and the rerun's start.
    let rows = 120_000;
    let file = sms_rows(rows);
    std::fs::write(dir.join("data/big.json"), file).unwrap();
    std::fs::write(
        dir.join("big.yaml"),
        imported(&app, "big", "Big", "data/big.json", "JSON"),
    )
    .unwrap();
    let (code, out, err) = run_env(
        &dir,
        &["apply", ".", "--auto-approve"],
        &[("SEGMENTCTL_IMPORT_TIMEOUT", "1")],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("the import job did not finish within 1 s (SEGMENTCTL_IMPORT_TIMEOUT); it goes on in the server"),
        "{out}"
    );
    let (code, out, err) = run(&dir, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    let jobs = t
        .client
        .get_import_jobs()
        .application_id(&app)
        .send()
        .await
        .unwrap()
        .import_jobs_response
        .unwrap()
        .item
        .unwrap_or_default();
    assert_eq!(jobs.len(), 1, "the rerun waited for the same job: {jobs:?}");
    let live = util::live_segments(&t, &app).await;
    assert_eq!(
        live.iter()
            .filter(|s| s.name.as_deref() == Some("Big"))
            .count(),
        1,
        "one segment named Big"
    );
    let (code, out, err) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// `n` endpoint rows (SMS, ids `e0`…) as newline-delimited JSON.
fn sms_rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("{{\"ChannelType\":\"SMS\",\"Address\":\"+1555{i:07}\",\"Id\":\"e{i}\"}}\n")
        })
        .collect()
}

/// An import job of `file` into a new segment `name`, as an apply starts one (and, here,
/// leaves it: nothing is tagged).
async fn start_import(
    t: &util::TestServer,
    app: &str,
    file: &Path,
    name: &str,
) -> aws_sdk_pinpoint::types::ImportJobResponse {
    let url = format!("file://{}", std::fs::canonicalize(file).unwrap().display());
    t.client
        .create_import_job()
        .application_id(app)
        .import_job_request(
            aws_sdk_pinpoint::types::ImportJobRequest::builder()
                .s3_url(&url)
                .format(aws_sdk_pinpoint::types::Format::Json)
                .role_arn("")
                .register_endpoints(true)
                .define_segment(true)
                .segment_name(name)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .import_job_response
        .unwrap()
}

/// An import that ended after apply stopped waiting for it, before apply could tag its new
/// segment: the rerun takes that segment (importing into it again, as its source is not
/// recorded) and makes no second segment of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_the_import_ended_untagged_takes_its_segment_and_makes_no_second() {
    let (_root, dir, t, app) = with_import_root("ended").await;
    let file = sms_rows(2_000);
    std::fs::write(dir.join("data/small.json"), file).unwrap();
    std::fs::write(
        dir.join("small.yaml"),
        imported(&app, "small", "Small", "data/small.json", "JSON"),
    )
    .unwrap();
    // As an apply that started the job and stopped waiting left it: the job, from the same
    // file under the same name, and nothing tagged.
    start_import(&t, &app, &dir.join("data/small.json"), "Small").await;
    // The job ends on its own; its segment is there, untagged.
    let jobs = || async {
        t.client
            .get_import_jobs()
            .application_id(&app)
            .send()
            .await
            .unwrap()
            .import_jobs_response
            .unwrap()
            .item
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while jobs().await[0].job_status() != Some(&JobStatus::Completed) {
        assert!(
            std::time::Instant::now() < deadline,
            "the import never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, out, err) = run(&dir, &["apply", ".", "--auto-approve"]);
    assert_eq!(code, 0, "{out}{err}");
    let live = util::live_segments(&t, &app).await;
    let small: Vec<_> = live
        .iter()
        .filter(|s| s.name.as_deref() == Some("Small"))
        .collect();
    assert_eq!(small.len(), 1, "one segment named Small: {live:?}");
    assert_eq!(
        util::tag(small[0], "segmentctl:name").as_deref(),
        Some("small")
    );
    let (code, out, err) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The race the rerun meets when an import ends between its plan and its apply: the plan
/// saw no segment (a create), and by the time it imports, the job an earlier apply started
/// has ended with the segment untagged. Apply takes that job's segment instead of
/// importing again (a second segment of the same name). A saved plan makes the race
/// deterministic: planned before the job, applied after it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_ended_after_the_plan_is_taken_not_started_again() {
    let (_root, dir, t, app) = with_import_root("race").await;
    let file = sms_rows(500);
    std::fs::write(dir.join("data/race.json"), file).unwrap();
    std::fs::write(
        dir.join("race.yaml"),
        imported(&app, "race", "Race", "data/race.json", "JSON"),
    )
    .unwrap();
    let (code, out, err) = run(&dir, &["plan", ".", "--out", "plan.json"]);
    assert_eq!(code, 0, "{out}{err}");
    let job = start_import(&t, &app, &dir.join("data/race.json"), "Race").await;
    let ended = crate::imports::import_done(&t.client, &app, job.id().unwrap()).await;
    assert_eq!(ended.job_status(), Some(&JobStatus::Completed));
    let (code, out, err) = run(&dir, &["apply", "plan.json"]);
    assert_eq!(code, 0, "{out}{err}");
    let jobs = t
        .client
        .get_import_jobs()
        .application_id(&app)
        .send()
        .await
        .unwrap()
        .import_jobs_response
        .unwrap()
        .item
        .unwrap_or_default();
    assert_eq!(jobs.len(), 1, "no second import: {out}");
    let live = util::live_segments(&t, &app).await;
    let race: Vec<_> = live
        .iter()
        .filter(|s| s.name.as_deref() == Some("Race"))
        .collect();
    assert_eq!(race.len(), 1, "one segment named Race: {live:?}");
    assert_eq!(
        util::tag(race[0], "segmentctl:name").as_deref(),
        Some("race")
    );
    let (code, out, err) = run(&dir, &["plan", ".", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// One hostile CSV file and one hostile NDJSON file: a BOM, CRLF line ends, quoted fields
/// holding commas, quotes and line ends, a quote inside an unquoted field, a row with an
/// unknown field, a bad JSON value, a duplicate key, a row that is not UTF-8, a row exactly
/// one byte over the 64 KiB limit once its line end is counted, a quoted field left open.
fn hostile_files() -> (Vec<u8>, Vec<u8>) {
    let mut csv = b"\xef\xbb\xbfId,ChannelType,Address,Location.City,Attributes.note\r\n".to_vec();
    csv.extend_from_slice(b"h-1,SMS,+15550001,\"Paris, \"\"Left Bank\"\"\r\nsecond line\",a\r\n");
    csv.extend_from_slice(b"h-2,SMS,+15550002,Lyon,\"x,y\"\r\n\r\n");
    csv.extend_from_slice(b"h-3,FAX,+15550003,Nice,b\r\n");
    // 65,536 bytes before its CRLF: the line is 65,538 bytes, over the limit.
    let head = "h-4,SMS,+15550004,";
    let tail = ",c";
    let city = "x".repeat(64 * 1024 - head.len() - tail.len());
    csv.extend_from_slice(format!("{head}{city}{tail}\r\n").as_bytes());
    csv.extend_from_slice(b"h-5,SMS,+15550005,5\" screen,d\r\n");
    csv.extend_from_slice(b"h-6,SMS,+15550006,Oslo\r\n");
    csv.extend_from_slice(b"h-7,SMS,+1555\xff\xfe,Rome,e\r\n");
    csv.extend_from_slice(b"h-8,EMAIL,h8@example.com,Bern,f\r\n");
    csv.extend_from_slice(b"h-9,SMS,+15550009,\"never closed,g\r\n");

    let mut json =
        b"\xef\xbb\xbf{\"Id\":\"j-1\",\"ChannelType\":\"SMS\",\"Address\":\"+15551001\"}\r\n"
            .to_vec();
    json.extend_from_slice(
        b"{\"Id\":\"j-2\",\"ChannelType\":\"SMS\",\"Address\":\"+15551002\",\"Shoe\":\"x\"}\n",
    );
    json.extend_from_slice(b"{\"Id\":\"j-3\",\"ChannelType\":\"SMS\",\"Address\":\"+15551003\",\"Metrics\":{\"m\":\"high\"}}\n");
    json.extend_from_slice(
        b"{\"Id\":\"j-4\",\"Id\":\"j-44\",\"ChannelType\":\"SMS\",\"Address\":\"+15551004\"}\n\n",
    );
    // 65,537 bytes before its LF: over the limit.
    let head = "{\"Id\":\"j-5\",\"ChannelType\":\"SMS\",\"Address\":\"+15551005\",\"Location\":{\"City\":\"";
    let tail = "\"}}";
    let city = "y".repeat(64 * 1024 + 1 - head.len() - tail.len());
    json.extend_from_slice(format!("{head}{city}{tail}\n").as_bytes());
    json.extend_from_slice(b"{\"Id\":\"j-6\",\"ChannelType\":\"EMAIL\",\"Address\":\"j6@example.com\",\"Attributes\":{\"a\":[\"1\",\"2\"]}}\r\n");
    json.extend_from_slice(b"{\"Id\":\"j-7\",\"ChannelType\":\"SMS\",\"Address\":\"\xff\"}\n");
    json.extend_from_slice(b"{\"Id\":\"j-8\",\"ChannelType\":\"SMS\",\"Address\":\"+15551008\",\"EndpointStatus\":\"ACTIVE\"}");
    (csv, json)
}

/// The rows the audience reader takes and refuses (`LINE: WHY`) from a file.
fn read_rows(
    path: &Path,
    format: segmentctl::audience::rows::Format,
) -> (Vec<String>, Vec<String>) {
    use segmentctl::audience::rows::{Reader, Row};
    let mut input = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = Reader::new(format);
    let (mut taken, mut refused) = (Vec::new(), Vec::new());
    while let Some(row) = reader.next_row(&mut input).unwrap() {
        match row {
            Row::Endpoint { id, .. } => taken.push(id),
            Row::Refused { line, why } => refused.push(format!("{line}: {why}")),
        }
    }
    (taken, refused)
}

/// The same hostile file fed to an import job (through the SDK, against `segmentctl serve`)
/// and to `estimate` and the audience reader: the same rows taken, the same rows refused
/// with the same reasons. Before the reader was shared, `estimate` counted the CSV row that
/// is 64 KiB before its CRLF and the JSON line one byte over 64 KiB, which the import refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_job_and_estimate_take_and_refuse_the_same_rows_of_a_hostile_file() {
    use aws_sdk_pinpoint::types::Format;
    use segmentctl::audience::rows;
    let (_root, dir, t, app) = with_import_root("hostile-rows").await;
    let (csv, json) = hostile_files();
    std::fs::write(dir.join("data/hostile.csv"), csv).unwrap();
    std::fs::write(dir.join("data/hostile.jsonl"), json).unwrap();
    std::fs::write(
        dir.join("imported.yaml"),
        imported(
            &app,
            "hostile-csv",
            "Hostile CSV",
            "data/hostile.csv",
            "CSV",
        ) + &imported(
            &app,
            "hostile-json",
            "Hostile JSON",
            "data/hostile.jsonl",
            "JSON",
        ),
    )
    .unwrap();
    // Every id either file names, as endpoint records for estimate.
    let ids: Vec<String> = (1..=9)
        .map(|i| format!("h-{i}"))
        .chain((1..=8).map(|i| format!("j-{i}")))
        .chain(["j-44".to_string()])
        .collect();
    let records: String = ids
        .iter()
        .map(|id| format!("{{\"Id\":\"{id}\",\"ChannelType\":\"SMS\",\"Address\":\"+1\"}}\n"))
        .collect();
    std::fs::write(dir.join("records.jsonl"), records).unwrap();
    let (code, out, err) = run(
        &dir,
        &[
            "estimate",
            ".",
            "--endpoints",
            "records.jsonl",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let est: serde_json::Value = serde_json::from_str(&out).unwrap();
    let estimated = |name: &str| {
        est["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["segment"] == name)
            .unwrap_or_else(|| panic!("{name} in {out}"))["endpoints"]
            .as_u64()
            .unwrap()
    };

    for (file, format, reader_format, segment, taken_expected, refused_expected) in [
        (
            "hostile.csv",
            Format::Csv,
            rows::Format::Csv,
            "hostile-csv",
            &["h-1", "h-2", "h-5", "h-8"][..],
            &[
                "6: ChannelType: unknown value \"…\"; expected PUSH, GCM, APNS, APNS_SANDBOX, APNS_VOIP, APNS_VOIP_SANDBOX, ADM, SMS, VOICE, EMAIL, BAIDU, CUSTOM or IN_APP",
                "7: the row is longer than 65536 bytes (an endpoint is at most 15 KB)",
                "9: 4 fields where the header has 5 columns",
                "10: not UTF-8 text",
                "12: a quoted field is not closed before the end of the file",
            ][..],
        ),
        (
            "hostile.jsonl",
            Format::Json,
            rows::Format::Json,
            "hostile-json",
            &["j-1", "j-6"][..],
            &["2", "3", "4", "6", "8", "9"][..],
        ),
    ] {
        let path = dir.join("data").join(file);
        let job = crate::imports::import(
            &t.client,
            &app,
            &format!("file://{}", path.display()),
            format,
            Some(segment),
            None,
        )
        .await;
        assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
        let prefix = format!("{}:", path.display());
        let job_refused: Vec<String> = job
            .failures()
            .iter()
            .map(|f| f.strip_prefix(&prefix).unwrap_or(f).to_string())
            .collect();
        let job_taken = (job.total_processed().unwrap() - job.total_failures().unwrap()) as u64;

        let (taken, refused) = read_rows(&path, reader_format);
        assert_eq!(refused, job_refused, "{file}: the same rows refused, alike");
        assert_eq!(taken.len() as u64, job_taken, "{file}: as many rows taken");
        assert_eq!(estimated(segment), job_taken, "{file}: estimate == import");
        assert_eq!(taken, taken_expected, "{file}");
        let lines: Vec<&str> = refused.iter().map(|r| r.split(':').next().unwrap()).collect();
        if reader_format == rows::Format::Csv {
            assert_eq!(refused, refused_expected, "{file}");
        } else {
            assert_eq!(lines, refused_expected, "{file}: {refused:?}");
        }
        // The endpoints the import registered are the rows taken, and only those.
        for id in &ids {
            let registered = t
                .client
                .get_endpoint()
                .application_id(&app)
                .endpoint_id(id)
                .send()
                .await
                .is_ok();
            let own = if reader_format == rows::Format::Csv { "h-" } else { "j-" };
            if id.starts_with(own) {
                assert_eq!(registered, taken.contains(id), "{file}: {id}");
            }
        }
        assert!(
            !job.failures().iter().any(|f| f.contains("Left Bank") || f.contains("xxxx")),
            "{:?}",
            job.failures()
        );
    }
}
