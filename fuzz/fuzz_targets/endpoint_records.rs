//! Any bytes as a file of endpoint records: counting never panics, and every line that is
//! not blank is either read or rejected.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use segmentctl::evaluate::{Catalog, Program};
use segmentctl::model::WriteSegmentRequest;

/// One segment reading every kind of field (the same as tests/it/fuzz_corpus.rs).
const SEGMENTS: &str = r#"{
 "all": {"Dimensions": {"Demographic": {"Channel": {"Values": ["SMS"]}, "Platform": {"DimensionType": "EXCLUSIVE", "Values": ["iOS"]}},
   "Location": {"Country": {"Values": ["US"]}, "GPSPoint": {"Coordinates": {"Latitude": 47.6, "Longitude": -122.3}}},
   "Attributes": {"a": {"AttributeType": "CONTAINS", "Values": ["x"]}, "d": {"AttributeType": "BETWEEN", "Values": ["2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z"]}},
   "UserAttributes": {"u": {"Values": ["v"]}}, "Metrics": {"m": {"ComparisonOperator": "GREATER_THAN", "Value": 1}},
   "Behavior": {"Recency": {"Duration": "DAY_7", "RecencyType": "ACTIVE"}}}},
 "group": {"SegmentGroups": {"Groups": [{"SourceSegments": [{"Ref": "all"}], "SourceType": "NONE", "Dimensions": [{"Attributes": {"d": {"AttributeType": "ON", "Values": ["2026-05-01T00:00:00Z"]}}}]}]}}
}"#;

fuzz_target!(|data: &[u8]| {
    let segments: BTreeMap<String, WriteSegmentRequest> = serde_json::from_str(SEGMENTS).unwrap();
    let mut program = Program::new(time::OffsetDateTime::UNIX_EPOCH);
    let catalog = Catalog::of(&segments);
    let nodes: Vec<_> = segments.keys().map(|n| program.add(0, &catalog, n)).collect();
    let t = segmentctl::endpoints::tally(data, &program, &nodes).unwrap();
    let lines = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count() as u64;
    assert_eq!(t.read + t.rejected, lines);
    assert!(t.counts.iter().all(|c| *c <= t.read));
});
