//! Python for the tests that drive a second client or engine (boto3, moto, DuckDB, PySpark):
//! a virtualenv under the target directory, created once, with pinned packages from PyPI.

use std::path::PathBuf;
use std::process::Command;

/// A Python with `packages` importable (as `module`): `SEGMENTCTL_PYTHON` if set, else a
/// venv under the target directory named `venv`, created once.
pub fn python_with(venv: &str, packages: &[&str], module: &str) -> PathBuf {
    // Tests of one binary that need the same venv must not create it at once.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATING.lock().unwrap_or_else(|e| e.into_inner());
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
