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

#[path = "support/customers.rs"]
mod customers;

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
    let doc = customers::customers(1 << 20, false);
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
