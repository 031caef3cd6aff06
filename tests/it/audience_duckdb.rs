//! The evaluator against an independent formulation: 20 segments of every kind written as
//! SQL predicates by hand (`benches/audience/audience.py`), counted by DuckDB over the same
//! generated endpoint records. Every count must be equal.

use std::process::Command;

use crate::compat_boto3::python_with;

const DUCKDB: &str = "duckdb==2.0.1";

#[test]
fn the_evaluator_counts_what_duckdb_counts_for_twenty_segments() {
    let python = python_with("duckdb-venv", &[DUCKDB], "duckdb");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/audience/audience.py");
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new(&python)
        .args([script, "generate"])
        .arg(dir.path())
        .arg("20000")
        .status()
        .unwrap();
    assert!(ok.success());

    let ours = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .arg("estimate")
        .arg(dir.path().join("manifests"))
        .arg("--endpoints")
        .arg(dir.path().join("endpoints.jsonl"))
        .args(["--as-of", "2026-11-28T00:00:00Z", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();

    let duck = Command::new(&python)
        .args([script, "duckdb"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        duck.status.success(),
        "{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&duck.stdout).unwrap();

    assert_eq!(ours["records_read"], duck["total"]);
    assert_eq!(
        ours["records_rejected"], 1,
        "the one line that is not a record"
    );
    let segments = ours["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 20);
    let mut distinct = std::collections::BTreeSet::new();
    for s in segments {
        let name = s["segment"].as_str().unwrap();
        assert_eq!(s["endpoints"], duck[name], "segment {name}");
        distinct.insert(s["endpoints"].as_u64().unwrap());
    }
    assert!(
        distinct.len() >= 15,
        "the segments select different audiences: {distinct:?}"
    );
}
