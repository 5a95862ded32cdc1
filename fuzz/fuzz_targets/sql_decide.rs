//! Arbitrary text to a decision under the reference policy: the splitter,
//! parser, classifier and engine never panic, whatever the text.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice_policy::{Policy, PolicySet, Subject};

static SET: LazyLock<PolicySet> = LazyLock::new(|| {
    let text = include_str!("../../examples/policies/reference.yaml");
    PolicySet::new(vec![Policy::from_yaml(text).expect("the reference policy compiles")])
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let groups = ["agents".to_owned()];
        let subject = Subject { identity: "fuzz", groups: &groups, target: "demo" };
        let _ = SET.decide(&subject, text);
    }
});
