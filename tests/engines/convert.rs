//! `convert` over the equality corpus (38 segments: every dimension family, groups, nested
//! bases, an imported segment, names with quotes, backslashes, dots and unicode): every
//! definition is written and reads back as the model's request within its rules; every
//! family that does not map exactly is reported at its line; nothing the report prints
//! carries a raw control character.

use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn the_corpus_converts_with_every_inexact_family_reported() {
    let dir = tempfile::tempdir().unwrap();
    crate::corpus::write(dir.path(), 10, crate::SEED);
    let out_dir = dir.path().join("cp");
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
            .arg("convert")
            .arg(dir.path().join("manifests"))
            .args(["--to", "customer-profiles", "--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    // GPSPoint cannot be converted: refused, nothing written.
    let (code, refused) = run(&["--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(refused["refused"], true);
    assert!(!out_dir.exists());

    // Dropping GPSPoint leaves the GPS-only segments' groups empty: refused all the same.
    let (code, dropped) = run(&["--drop-unsupported"]);
    assert_eq!(code, Some(1));
    let empty: BTreeSet<&str> = dropped["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["why"]
                .as_str()
                .unwrap()
                .contains("an empty group restricts nothing")
        })
        .map(|n| n["segment"].as_str().unwrap())
        .collect();
    let gps_only: BTreeSet<&str> = crate::corpus::segments()
        .iter()
        .filter(|(_, spec)| {
            spec.starts_with("Dimensions: {Location: {GPSPoint:") && !spec.contains("Country")
        })
        .map(|(n, _)| *n)
        .collect();
    assert!(!gps_only.is_empty());
    assert_eq!(empty, gps_only);
    // Without them, everything converts.
    let file = dir.path().join("manifests").join("segments.yaml");
    let docs: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .split("---\n")
        .filter(|d| !gps_only.iter().any(|n| d.contains(&format!("name: {n},"))))
        .map(str::to_string)
        .collect();
    std::fs::write(&file, docs.join("---\n")).unwrap();

    let (code, report) = run(&["--out", out_dir.to_str().unwrap(), "--drop-unsupported"]);
    assert_eq!(code, Some(0), "{report:#}");
    let definitions = report["definitions"].as_array().unwrap();
    assert_eq!(
        definitions.len(),
        crate::corpus::segments().len() + 1 - gps_only.len()
    );
    // The folder written reads as a Customer Profiles target's (bases among the converted
    // definitions by `Ref`), each spec strictly CreateSegmentDefinition's request, within
    // its rules.
    let ws = segmentctl::manifests::workspace::load(&out_dir, None)
        .unwrap_or_else(|e| panic!("the converted folder does not load: {e:?}"));
    assert_eq!(ws.definitions.len(), definitions.len());
    for d in &ws.definitions {
        let broken =
            segmentctl::model::profiles::validate::create_segment_definition(&d.manifest.spec);
        assert!(broken.is_empty(), "{}: {broken:?}", d.name());
    }
    // Every inexact family is named, at a line of the manifest.
    let notes = report["notes"].as_array().unwrap();
    let families: BTreeSet<String> = notes
        .iter()
        .map(|n| {
            assert!(n["line"].as_u64().unwrap() > 1, "{n}");
            let field = n["field"].as_str().unwrap();
            let family = field
                .split('.')
                .find(|p| {
                    [
                        "Attributes",
                        "Demographic",
                        "Location",
                        "Metrics",
                        "Behavior",
                        "SourceSegments",
                    ]
                    .iter()
                    .any(|f| p.starts_with(f))
                })
                .map(|p| p.split('[').next().unwrap().to_string())
                .unwrap_or_else(|| "dimension or import".into());
            format!("{} {family}", n["fit"].as_str().unwrap())
        })
        .collect();
    let expected: BTreeSet<String> = [
        "approximate Attributes",
        "approximate Behavior",
        "approximate Demographic",
        "approximate Location",
        "approximate Metrics",
        "approximate dimension or import",
        // `vip-or-nested` names a base by Id, which is in no manifest.
        "impossible SourceSegments",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(families, expected, "{notes:#?}");
    assert!(dropped["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |n| n["field"].as_str().unwrap().ends_with("Location.GPSPoint")
                && n["why"].as_str().unwrap().contains("dropped")
        ));
    // UserAttributes map exactly as LIST_CONTAINS: a note only for the other types.
    for n in notes {
        if n["field"].as_str().unwrap().contains("UserAttributes") {
            assert!(
                !n["became"].as_str().unwrap().contains("LIST_CONTAINS"),
                "{n}"
            );
        }
    }

    // The text report shows hostile names without obeying them.
    let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .arg("convert")
        .arg(dir.path().join("manifests"))
        .args(["--to", "customer-profiles", "--drop-unsupported"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the report"
    );
}
