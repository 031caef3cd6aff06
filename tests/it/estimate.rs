//! `segmentctl estimate`: audiences counted from endpoint records, plain or gzip.

use std::io::Write;
use std::process::Command;

const APP: &str = "0123456789abcdef0123456789abcdef";

fn manifests(dir: &std::path::Path) {
    let seg = |name: &str, spec: &str| {
        format!("---\napiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: {name}, application: {APP}}}\nspec:\n{spec}")
    };
    let text = [
        seg("us", "  Dimensions:\n    Location:\n      Country: {Values: [US]}\n"),
        seg("ios", "  Dimensions:\n    Demographic:\n      Platform: {Values: [iOS]}\n"),
        seg("us-ios", "  SegmentGroups:\n    Groups:\n      - SourceType: ALL\n        SourceSegments: [{Ref: us}, {Ref: ios}]\n"),
        seg("recent", "  Dimensions:\n    Behavior:\n      Recency: {RecencyType: ACTIVE, Duration: DAY_7}\n"),
    ]
    .concat();
    std::fs::write(dir.join("segments.yaml"), text).unwrap();
}

/// 6 records, one line that is not JSON and one that is not UTF-8.
fn records() -> Vec<u8> {
    let mut out = Vec::new();
    for (country, platform, date) in [
        ("US", "iOS", "2026-11-27T00:00:00Z"),
        ("US", "Android", "2026-11-01T00:00:00Z"),
        ("CA", "iOS", "2026-11-25T00:00:00Z"),
        ("US", "iOS", "2026-10-01T00:00:00Z"),
        ("FR", "Android", "2026-11-27T00:00:00Z"),
        ("MX", "iOS", "2026-11-21T00:00:00Z"),
    ] {
        writeln!(out, r#"{{"ChannelType":"APNS","Demographic":{{"Platform":"{platform}"}},"Location":{{"Country":"{country}"}},"EffectiveDate":"{date}"}}"#).unwrap();
        if out.len() < 200 {
            out.extend_from_slice(b"{not json\n\xff\xfe\n");
        }
    }
    out
}

fn estimate(dir: &std::path::Path, file: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .args(["estimate", "."])
        .arg("--endpoints")
        .arg(file)
        .args(["--as-of", "2026-11-28T00:00:00Z"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn estimate_counts_each_segment_from_plain_and_gzip_records_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path());
    let plain = dir.path().join("endpoints.jsonl");
    std::fs::write(&plain, records()).unwrap();
    let gz = dir.path().join("endpoints.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&records()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();

    let text = estimate(dir.path(), &plain);
    let expected = format!(
        "Read 6 endpoint records from {}; 2 rejected (not endpoint records) at lines 2, 3.\n\nApplication {APP}\n  SEGMENT                           ENDPOINTS     SHARE\n  ios                                       4   66.67 %\n  recent                                    4   66.67 %\n  us                                        3   50.00 %\n  us-ios                                    2   33.33 %\n",
        plain.display()
    );
    assert_eq!(text, expected);
    let text_gz = estimate(dir.path(), &gz);
    assert_eq!(
        text_gz,
        expected.replace(&plain.display().to_string(), &gz.display().to_string())
    );
}
