//! Masks about 10 MB of demo customers once under the example agent policy
//! (masks and detectors), for instruction counts of the JSON masker:
//!
//!     cargo build --release -p sluice-policy --example json_mask
//!     valgrind --tool=callgrind target/release/examples/json_mask
//!
//! An argument `masks` uses the masks without the detectors; `address`
//! puts an email address in every note, as `bench/http.sh`'s document does,
//! for the email detector to find; a second one sets the size in bytes.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use sluice_policy::{HttpRequest, Policy, PolicySet, Subject};

#[path = "../benches/support/customers.rs"]
mod customers;

use customers::customers;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let size: usize = args.next().map_or(10_000_000, |s| s.parse().unwrap());
    let yaml = if mode == "masks" {
        "name: m\nhttp:\n  default: allow\n  response:\n    mask:\n      - path: $..email\n        mask: email\n      - path: $..card_number\n        mask: {keep_last: 4}\n      - path: $..api_key\n        mask: redact\n".to_owned()
    } else {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/policies/http-agents.yaml"
        ))
        .unwrap()
    };
    let set = PolicySet::new(vec![Policy::from_yaml(&yaml).unwrap()]);
    let subject = Subject {
        identity: "agent",
        groups: &[],
        target: "crm",
    };
    let request = HttpRequest {
        method: "GET",
        path: "/customers",
        query: Some("page=2&per_page=50"),
        content_type: None,
        body: None,
    };
    let plan = set.decide_http(&subject, &request).response;
    let doc = customers(size, mode == "address");
    let mut out = Vec::with_capacity(doc.len());
    let mut m = plan.json_masker();
    for c in doc.chunks(64 * 1024) {
        m.push(c, &mut out).unwrap();
    }
    m.finish(&mut out).unwrap();
    // A digest of the output, so a change in behaviour shows.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &out {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    println!(
        "in {} bytes, out {} bytes, fnv {h:016x}, counts {:?}",
        doc.len(),
        out.len(),
        m.counts()
    );
}
