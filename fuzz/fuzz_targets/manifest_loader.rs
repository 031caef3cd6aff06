//! Any bytes as a manifest file: the loader must return documents or located errors,
//! never panic, and the desired-state step must accept whatever the loader accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segmentctl::manifests::manifest::{load_sources, Source};

fuzz_target!(|data: &[u8]| {
    let loaded = load_sources(&[Source { name: "f.yaml".into(), bytes: data.to_vec().into() }]);
    for e in &loaded.errors {
        assert!(e.line >= 1 && e.column >= 1, "unlocated: {e}");
    }
    if let Err(errors) = segmentctl::manifests::desired::build(&loaded.documents) {
        for e in &errors {
            assert!(e.line >= 1, "unlocated: {e}");
        }
    }
});
