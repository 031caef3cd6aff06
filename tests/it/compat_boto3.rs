//! A second real client, boto3, against the server: the AWS SDKs work by changing only the
//! endpoint URL. The test provisions a virtualenv with a pinned boto3 from PyPI on first run.
//! The server may use one temporary `--import-root` folder, where boto3 writes the CSV an
//! import job reads and the export job writes its pieces.

use std::path::PathBuf;
use std::process::Command;

use crate::util;

const BOTO3: &str = "boto3==1.44.8";

/// A Python with `packages` importable (as `module`): `SEGMENTCTL_PYTHON` if set, else a
/// venv under the target directory named `venv`, created once.
pub fn python_with(venv: &str, packages: &[&str], module: &str) -> PathBuf {
    if let Some(p) = std::env::var_os("SEGMENTCTL_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(venv);
    let python = venv.join("bin").join("python");
    let has = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&python) {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv failed: these tests need python3 with the venv module"
        );
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages)
            .status();
        assert!(
            pip.is_ok_and(|s| s.success()),
            "pip install {packages:?} failed: this test needs PyPI, or SEGMENTCTL_PYTHON pointing at a Python with them"
        );
    }
    python
}

fn python_with_boto3() -> PathBuf {
    python_with("boto3-venv", &[BOTO3], "boto3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_segments_versions_tags_and_errors_unchanged() {
    // Kept until the end of the test: the script writes and reads files in it.
    let root = tempfile::tempdir().expect("tempdir");
    let t = util::start_with(|cfg| cfg.import_roots = vec![root.path().to_path_buf()]).await;
    let python = tokio::task::spawn_blocking(python_with_boto3)
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/boto3_compat.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
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
        "boto3 compatibility failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("boto3 compatibility: all checks passed"),
        "{stdout}"
    );
}
