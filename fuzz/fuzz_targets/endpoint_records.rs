//! Any bytes as a file of endpoint records: counting never panics, and every line that is
//! not blank is either read or rejected.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use segmentctl::audience::evaluate::{Catalog, Program};
use segmentctl::model::WriteSegmentRequest;

/// Two segments reading every kind of field between them (tests/it/fuzz_corpus.rs replays
/// the corpus with the same ones).
const SEGMENTS: &str = include_str!("../endpoint_segments.json");

fuzz_target!(|data: &[u8]| {
    let segments: BTreeMap<String, WriteSegmentRequest> = serde_json::from_str(SEGMENTS).unwrap();
    let mut program = Program::new(time::OffsetDateTime::UNIX_EPOCH);
    let catalog = Catalog::of(&segments);
    let nodes: Vec<_> = segments.keys().map(|n| program.add(0, &catalog, n)).collect();
    let t = segmentctl::audience::records::tally(data, &program, &nodes).unwrap();
    let lines = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count() as u64;
    assert_eq!(t.read + t.rejected, lines);
    assert!(t.counts.iter().all(|c| *c <= t.read));
});
