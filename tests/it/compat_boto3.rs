//! A second real client, boto3, against the server: the AWS SDKs work by changing only the
//! endpoint URL. The test provisions a virtualenv with a pinned boto3 from PyPI on first run.
//! The server may use one temporary `--import-root` folder, where boto3 writes the CSV an
//! import job reads and the export job writes its pieces.

use std::path::PathBuf;

use crate::util;

const BOTO3: &str = "boto3==1.44.8";

pub use crate::python::python_with;

fn python_with_boto3() -> PathBuf {
    python_with("boto3-venv", &[BOTO3], "boto3")
}

/// Runs `tests/compat/SCRIPT` with boto3 against a server whose import root is a folder
/// of its own; it passes when the script exits 0 having printed `passed`.
async fn run_script(script: &str, passed: &str) {
    // Kept until the end of the test: the script writes and reads files in it.
    let root = tempfile::tempdir().expect("tempdir");
    let t = util::start_with(|cfg| cfg.import_roots = vec![root.path().to_path_buf()]).await;
    let python = tokio::task::spawn_blocking(python_with_boto3)
        .await
        .unwrap();
    let path = format!("{}/tests/compat/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python)
        .arg(path)
        .arg(t.endpoint())
        .arg(util::KEY)
        .arg(util::SECRET)
        .arg(root.path())
        .output()
        .await
        .expect("run the boto3 script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(passed), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_segments_versions_tags_and_errors_unchanged() {
    run_script("boto3_compat.py", "boto3 compatibility: all checks passed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_customer_profiles_segments_unchanged() {
    run_script(
        "boto3_profiles.py",
        "boto3 customer-profiles compatibility: all checks passed",
    )
    .await;
}
