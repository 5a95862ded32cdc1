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

/// The same documents as `customers()` in `benches/http.rs`; with
/// `address`, each note ends in an email address.
fn customers(size: usize, address: bool) -> Vec<u8> {
    let mut out = b"{\"data\": [".to_vec();
    let mut i = 0u64;
    while out.len() < size {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(
            format!(
                "{{\"id\": {i}, \"name\": \"Customer {i}\", \"email\": \"customer{i}@example.com\", \
                 \"card_number\": \"4111111111111111\", \"api_key\": \"sk_live_{i:016}\", \
                 \"balance\": {}.{:02}, \"active\": true, \"tags\": [\"retail\", \"eu\"], \
                 \"note\": \"prefers contact in the morning; account opened in 2021{}\"}}",
                i * 7 % 1000,
                i % 100,
                if address {
                    format!("; backup contact backup{i}@corpmail.example")
                } else {
                    String::new()
                }
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"]}");
    out
}

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
