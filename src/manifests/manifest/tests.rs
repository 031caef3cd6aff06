//! Reading manifests as a user meets it: located errors, recovery, hostile input.

use super::position::parent_path;
use super::*;

fn load(text: &str) -> Loaded {
    load_sources(&[Source {
        name: "m.yaml".into(),
        bytes: text.as_bytes().to_vec().into(),
    }])
}

fn errors(text: &str) -> Vec<String> {
    load(text).errors.iter().map(|e| e.to_string()).collect()
}

const HEAD: &str = "apiVersion: segmentctl/v1\nkind: Segment\nmetadata:\n  name: vip\n  application: 0123456789abcdef0123456789abcdef\n";

#[test]
fn an_unknown_enum_value_is_located_at_its_key_with_a_suggestion() {
    let text = format!("{HEAD}spec:\n  Dimensions:\n    Demographic:\n      Platform:\n        DimensionType: INCLUDE\n        Values: [ios]\n");
    assert_eq!(
        errors(&text),
        ["m.yaml:10:9: spec.Dimensions.Demographic.Platform.DimensionType: unknown value \"INCLUDE\"; expected INCLUSIVE or EXCLUSIVE (did you mean INCLUSIVE?)"]
    );
}

#[test]
fn an_unknown_field_suggests_the_closest_known_one() {
    let text = format!("{HEAD}spec:\n  Dimension: {{}}\n");
    assert_eq!(
        errors(&text),
        ["m.yaml:7:3: spec.Dimension: unknown field \"Dimension\"; expected Name, Dimensions, SegmentGroups or tags (did you mean Dimensions?)"]
    );
}

#[test]
fn every_semantic_error_in_a_document_is_reported_in_order() {
    let text = format!(
        "{HEAD}spec:\n  Dimensions:\n    Location:\n      GPSPoint:\n        Coordinates: {{Latitude: 91, Longitude: 0}}\n        RangeInKilometers: -1\n    Attributes:\n      signup:\n        AttributeType: BETWEEN\n        Values: [\"2026-01-01T00:00:00Z\"]\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("m.yaml:10:23: spec.Dimensions.Location.GPSPoint.Coordinates.Latitude: must be between -90 and 90"), "{e:?}");
    assert!(e[1].starts_with("m.yaml:11:9: spec.Dimensions.Location.GPSPoint.RangeInKilometers: must be greater than 0"), "{e:?}");
    assert!(e[2].starts_with("m.yaml:15:9: spec.Dimensions.Attributes.signup.Values: BETWEEN takes exactly two values"), "{e:?}");
}

#[test]
fn a_key_written_twice_is_located_where_written_again_and_later_documents_are_read() {
    let text = format!(
        "{HEAD}spec:\n  Dimensions:\n    Location:\n      Country: {{DimensionType: INCLUSIVE, Values: [US]}}\n    Location:\n      Country: {{DimensionType: INCLUSIVE, Values: [CA]}}\n---\n{}spec:\n  Nme: x\n",
        HEAD.replace("vip", "other")
    );
    assert_eq!(
        errors(&text),
        [
            "m.yaml:10:5: spec.Dimensions.Location: written twice in its mapping (first on line 8); keep one",
            "m.yaml:19:3: spec.Nme: unknown field \"Nme\"; expected Name, Dimensions, SegmentGroups or tags (did you mean Name?)"
        ]
    );
}

#[test]
fn documents_are_numbered_across_separators_and_empty_ones_are_skipped() {
    let text = format!("---\n{HEAD}---\n---\n{}", HEAD.replace("vip", "Bad_Name"));
    let l = load(&text);
    assert_eq!(l.documents.len(), 2);
    assert_eq!(
        l.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        ["m.yaml:12:3: metadata.name: invalid name \"Bad_Name\"; expected lowercase letters, digits and '-' (not first or last), at most 63 characters"]
    );
}

#[test]
fn every_failing_document_of_a_long_file_is_located_on_its_own_line() {
    // 16,000 documents that each fail to read: each is located from the file's one
    // position pass (re-reading from the file's start took 20.9 s for this file).
    let n = 16_000;
    let text = "---\nkind: Segmnet\n".repeat(n);
    let l = load(&text);
    let kinds: Vec<_> = l.errors.iter().filter(|e| e.path == "kind").collect();
    assert_eq!(kinds.len(), n);
    for (i, e) in kinds.iter().enumerate() {
        assert_eq!((e.line, e.column), (2 * i + 2, 1), "{e}");
    }
}

#[test]
fn every_mistake_of_a_document_is_reported_and_its_references_checked() {
    let text = format!(
        "{}spec:\n  Dimensions:\n    Demographic:\n      Platform:\n        DimensionType: include\n        Values: [iOS]\n        Extra: 1\n    Attributes:\n      tier:\n        AttributeType: inclusive\n        Values: [gold]\n",
        HEAD
    );
    let l = load(&text);
    let shown: Vec<String> = l
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.line, e.path))
        .collect();
    assert_eq!(
        shown,
        [
            "10: spec.Dimensions.Demographic.Platform.DimensionType",
            "12: spec.Dimensions.Demographic.Platform.Extra",
            "15: spec.Dimensions.Attributes.tier.AttributeType",
        ]
    );
    // The document is kept, recovered, so its references are checked in the same run,
    // and never planned.
    assert!(l.documents.is_empty());
    assert_eq!(l.recovered.len(), 1);
    assert_eq!(l.recovered[0].document.manifest.metadata.name, "vip");
}

#[test]
fn a_failing_document_in_a_file_with_carriage_returns_is_never_dropped() {
    for eol in ["\r", "\r\r\n", "\r\n"] {
        let good = format!("{HEAD}spec:\n  Name: VIP\n").replace('\n', eol);
        let bad = HEAD
            .replace("vip", "two")
            .replace("Segment", "Segmnet")
            .replace('\n', eol);
        let l = load(&format!("{good}---{eol}{bad}spec: {{}}{eol}"));
        assert_eq!(l.documents.len(), 1, "{eol:?}");
        assert!(
            l.errors
                .iter()
                .any(|e| e.path == "kind" && e.message.contains("Segmnet")),
            "{eol:?}: {:?}",
            l.errors
        );
    }
}

#[test]
fn a_number_where_a_string_belongs_is_not_a_mistake_when_another_is_reported() {
    let text = format!(
        "{HEAD}spec:\n  Name: 2024\n  Dimensions:\n    Attributes:\n      tier:\n        AttributeType: inclusive\n        Values: [42, 1.10]\n"
    );
    let l = load(&text);
    let paths: Vec<&str> = l.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.Dimensions.Attributes.tier.AttributeType"],
        "{:?}",
        l.errors
    );
}

#[test]
fn hostile_inputs_give_errors_not_panics() {
    for text in [
        "",
        "- a\n- b\n",
        "just a string",
        "\u{0}\u{1}\u{2}",
        "a: &x [*x]",
        "key: [unclosed",
        &"[".repeat(10_000),
        "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
    ] {
        let l = load(text);
        assert!(l.documents.is_empty());
        if !text.is_empty() {
            assert!(!l.errors.is_empty(), "no error for {text:?}");
        }
    }
    let bin = load_sources(&[Source {
        name: "b.yaml".into(),
        bytes: vec![b'a', b':', b' ', 0xff, 0xfe].into(),
    }]);
    assert_eq!(
        bin.errors[0].to_string(),
        "b.yaml:1:4: the file is not UTF-8 text; manifests are UTF-8 YAML"
    );
}

#[test]
fn parent_paths_walk_up_indexes_and_quoted_keys() {
    assert_eq!(parent_path("a.b[0].c"), "a.b[0]");
    assert_eq!(parent_path("a.b[0]"), "a.b");
    assert_eq!(parent_path("a[\"x.y\"]"), "a");
    assert_eq!(parent_path("a"), "");
}
