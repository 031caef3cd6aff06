//! Manifest validation as a user meets it: each class of mistake in `examples/invalid/`
//! gives its located error (snapshot-tested), and the quickstart validates.

use std::path::Path;

use segmentctl::manifests::manifest::{self, Source};

/// The errors one file gives on its own, one per line.
fn errors_of(path: &Path) -> String {
    let source = Source {
        name: format!(
            "examples/invalid/{}",
            path.file_name().unwrap().to_string_lossy()
        ),
        bytes: std::fs::read(path).unwrap().into(),
    };
    let files = segmentctl::manifests::workspace::Files {
        config: Ok(Default::default()),
        sources: vec![source],
        errors: Vec::new(),
    };
    match segmentctl::manifests::workspace::check(files) {
        Ok(_) => String::new(),
        Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
    }
}

#[test]
fn every_invalid_example_gives_its_located_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/invalid");
    let files = segmentctl::manifests::folder::list(&dir).unwrap();
    assert!(files.len() >= 19, "one manifest per class of mistake");
    for file in files {
        let segmentctl::manifests::folder::Entry::Manifest(file) = file else {
            panic!("{file:?} is not read");
        };
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let text = errors_of(&file);
        assert!(!text.is_empty(), "{stem} gives no error");
        insta::assert_snapshot!(stem, text);
    }
}

fn segmentctl(args: &[&str]) -> (i32, String, String) {
    crate::util::run_cli(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

#[test]
fn validate_reports_every_error_of_every_file_sorted_and_exits_1() {
    let (code, stdout, stderr) = segmentctl(&["validate", "examples/invalid"]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    insta::assert_snapshot!("validate_examples_invalid", stderr);
}

#[test]
fn the_quickstart_validates() {
    let (code, stdout, stderr) = segmentctl(&["validate", "examples/quickstart"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(stdout, "9 manifests OK (1 application, 8 segments)\n");
}

#[test]
fn a_missing_folder_is_one_clear_error() {
    let (code, _, stderr) = segmentctl(&["validate", "no/such/folder"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "no/such/folder: no such folder or manifest file\n1 error in 1 file\n"
    );
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/manifest.schema.json"),
    )
    .unwrap();
    let generated = serde_json::to_string_pretty(&manifest::json_schema()).unwrap();
    assert_eq!(
        committed.trim_end(),
        generated,
        "regenerate with: segmentctl schema > schema/manifest.schema.json"
    );
    let (code, stdout, _) = segmentctl(&["schema"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim_end(), generated);
}
