//! Response bytes through the streaming JSON masker, cut into chunks at
//! fuzzer-chosen points: never a panic, the same output however the body is
//! cut, and never a value at a masked path in the output.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_policy::http::ResponsePlan;
use sluice_policy::{HttpRequest, Policy, PolicySet, Subject};

/// Every value at these keys is a secret that must never come out.
const POLICY: &str = r#"
name: fuzz
http:
  default: allow
  response:
    mask:
      - path: $..secret
        mask: redact
      - path: $..hidden
        mask: 'null'
"#;

/// The value the secrets hold in the seeds; the masker must never send it.
const MARKER: &[u8] = b"TOPSECRET";

fn plan() -> &'static ResponsePlan {
    static PLAN: OnceLock<ResponsePlan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let set = PolicySet::new(vec![Policy::from_yaml(POLICY).expect("policy")]);
        let subject = Subject {
            identity: "f",
            groups: &[],
            target: "t",
        };
        let req = HttpRequest {
            method: "GET",
            path: "/",
            query: None,
            content_type: None,
            body: None,
        };
        set.decide_http(&subject, &req).response
    })
}

fn run(chunks: &[&[u8]]) -> Option<Vec<u8>> {
    let mut m = plan().json_masker();
    let mut out = Vec::new();
    for c in chunks {
        if m.push(c, &mut out).is_err() {
            return None;
        }
    }
    m.finish(&mut out).ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let whole = run(&[body]);
    let at = usize::from(cut) % (body.len() + 1);
    let (a, b) = body.split_at(at);
    assert_eq!(run(&[a, b]), whole, "chunking changes nothing");
    if let Some(out) = whole {
        match serde_json::from_slice::<serde_json::Value>(&out) {
            Ok(v) => check(&v),
            // Only what the input already had (a lone surrogate escape,
            // which the masker passes on as received).
            Err(_) => assert!(serde_json::from_slice::<serde_json::Value>(body).is_err()),
        }
        // A secret only ever appears where no mask applies.
        if !body.windows(MARKER.len()).any(|w| w == MARKER) {
            assert!(!out.windows(MARKER.len()).any(|w| w == MARKER));
        }
    }
});

/// No masked key holds anything but its mask's form.
fn check(v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match k.as_str() {
                    "secret" => assert!(x == "****" || x.is_null(), "{x}"),
                    "hidden" => assert!(x.is_null(), "{x}"),
                    _ => check(x),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(check),
        _ => {}
    }
}
