//! Arbitrary text to a decision: the parser and classifier never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_policy::{Subject, decide};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let groups = ["agents".to_owned()];
        let subject = Subject { identity: "fuzz", groups: &groups, target: "demo" };
        let _ = decide(&subject, text);
    }
});
