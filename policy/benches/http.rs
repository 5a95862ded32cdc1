//! HTTP decision cost and streaming masker throughput under the example
//! agent policy.
//!
//!     cargo bench -p sluice-policy --bench http
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_policy::http::ResponsePlan;
use sluice_policy::{HttpRequest, Policy, PolicySet, Subject};

fn agents() -> PolicySet {
    let text = include_str!("../../examples/policies/http-agents.yaml");
    PolicySet::new(vec![Policy::from_yaml(text).unwrap()])
}

fn subject() -> Subject<'static> {
    Subject {
        identity: "agent",
        groups: &[],
        target: "crm",
    }
}

fn get(path: &str) -> HttpRequest<'_> {
    HttpRequest {
        method: "GET",
        path,
        query: Some("page=2&per_page=50"),
        content_type: None,
        body: None,
    }
}

/// About `size` bytes of demo customers, with emails, card numbers and
/// API keys at masked paths and a note that the detectors clean.
fn customers(size: usize) -> Vec<u8> {
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
                 \"note\": \"prefers contact in the morning; account opened in 2021\"}}",
                i * 7 % 1000,
                i % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"]}");
    out
}

fn plan(set: &PolicySet) -> ResponsePlan {
    set.decide_http(&subject(), &get("/customers")).response
}

fn bench(c: &mut Criterion) {
    let set = agents();
    c.bench_function("decide_http GET allowed by rule", |b| {
        b.iter(|| {
            set.decide_http(
                &subject(),
                std::hint::black_box(&get("/customers/42/orders")),
            )
        })
    });
    let body = br#"{"amount": 250, "currency": "EUR", "customer": 42}"#;
    let post = HttpRequest {
        method: "POST",
        path: "/refunds",
        query: None,
        content_type: Some("application/json"),
        body: Some(body),
    };
    c.bench_function("decide_http POST with a body condition", |b| {
        b.iter(|| set.decide_http(&subject(), std::hint::black_box(&post)))
    });
    c.bench_function("decide_http refused path", |b| {
        b.iter(|| {
            set.decide_http(
                &subject(),
                std::hint::black_box(&get("/customers/%2e%2e/admin")),
            )
        })
    });

    let plan = plan(&set);
    let doc = customers(1 << 20);
    let mut g = c.benchmark_group("json masker");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.sample_size(20);
    g.bench_function("1 MiB customers, 64 KiB chunks, masks + detectors", |b| {
        let mut out = Vec::with_capacity(doc.len());
        b.iter(|| {
            out.clear();
            let mut m = plan.json_masker();
            for c in doc.chunks(64 * 1024) {
                m.push(c, &mut out).unwrap();
            }
            m.finish(&mut out).unwrap();
        })
    });
    let masks_only = PolicySet::new(vec![
        Policy::from_yaml(
            "name: m\nhttp:\n  default: allow\n  response:\n    mask:\n      - path: $..email\n        mask: email\n      - path: $..card_number\n        mask: {keep_last: 4}\n      - path: $..api_key\n        mask: redact\n",
        )
        .unwrap(),
    ]);
    let plan2 = masks_only
        .decide_http(&subject(), &get("/customers"))
        .response;
    g.bench_function("1 MiB customers, 64 KiB chunks, masks only", |b| {
        let mut out = Vec::with_capacity(doc.len());
        b.iter(|| {
            out.clear();
            let mut m = plan2.json_masker();
            for c in doc.chunks(64 * 1024) {
                m.push(c, &mut out).unwrap();
            }
            m.finish(&mut out).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
