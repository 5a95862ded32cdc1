//! Request lines through path normalisation and the HTTP decision under the
//! example agent policy: never a panic, and nothing but a clean canonical
//! path is ever let through.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_policy::http::normalize_path;
use sluice_policy::{HttpRequest, Policy, PolicySet, Subject, Verdict};

fn set() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        let text = include_str!("../../examples/policies/http-agents.yaml");
        PolicySet::new(vec![Policy::from_yaml(text).expect("example policy")])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // method, path, query, body separated by newlines.
    let mut parts = text.splitn(4, '\n');
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let query = parts.next();
    let body = parts.next().map(str::as_bytes);
    if let Ok(p) = normalize_path(path) {
        assert_eq!(normalize_path(&p).as_deref(), Ok(p.as_str()), "stable");
    }
    let subject = Subject {
        identity: "f",
        groups: &[],
        target: "t",
    };
    let req = HttpRequest {
        method,
        path,
        query,
        content_type: Some("application/json"),
        body,
    };
    let d = set().decide_http(&subject, &req);
    if d.decision.verdict != Verdict::Deny {
        let p = d.path.expect("a forwarded request has a path");
        assert!(!p.split('/').any(|s| s == "." || s == ".."), "{p}");
        assert!(!p[1..].contains("//"), "{p}");
    }
});
