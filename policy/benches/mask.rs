//! Detector scan throughput on mixed text, and lineage cost.
//!
//!     cargo bench -p sluice-policy --bench mask
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_policy::mask::Masking;
use sluice_policy::{Policy, PolicySet, Subject};

fn reference() -> Policy {
    Policy::from_yaml(include_str!("../../examples/policies/reference.yaml")).unwrap()
}

/// About 1 KiB of ordinary text with nothing to find, and the same with a
/// few secrets in it.
fn documents() -> (String, String) {
    let words = "the customer called about invoice 4471 on 2026-01-10 and asked for a refund of \
                 120.50 to be processed before the end of the month; order ids 7, 12 and 31 ";
    let mut clean = String::new();
    while clean.len() < 1024 {
        clean.push_str(words);
    }
    clean.truncate(1024);
    let mut dirty = clean.clone();
    dirty.replace_range(100..140, " contact bob.backup@corpmail.example now");
    dirty.replace_range(400..436, " key AKIAZ7QX4EXAMPLE9PLM was rotat ");
    dirty.replace_range(700..720, " ssn 123-45-6789 ok ");
    (clean, dirty)
}

fn bench(c: &mut Criterion) {
    let policy = reference();
    let m: &Masking = policy.masking().unwrap();
    let (clean, dirty) = documents();
    let mut g = c.benchmark_group("detectors");
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("scan 1 KiB, nothing found", |b| {
        let mut hits = Vec::new();
        b.iter(|| {
            hits.clear();
            m.detectors
                .scrub(std::hint::black_box(clean.as_bytes()), &mut hits)
        })
    });
    g.bench_function("scan 1 KiB, three secrets", |b| {
        let mut hits = Vec::new();
        b.iter(|| {
            hits.clear();
            m.detectors
                .scrub(std::hint::black_box(dirty.as_bytes()), &mut hits)
        })
    });
    let short = "Alice Wonder";
    g.throughput(Throughput::Bytes(short.len() as u64));
    g.bench_function("scan a 12-byte value", |b| {
        let mut hits = Vec::new();
        b.iter(|| {
            hits.clear();
            m.detectors
                .scrub(std::hint::black_box(short.as_bytes()), &mut hits)
        })
    });
    g.finish();

    let set = PolicySet::new(vec![reference()]);
    let groups = vec!["agents".to_owned()];
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    c.bench_function("decide with lineage: CTE over customers", |b| {
        b.iter(|| {
            set.decide(
                &subject,
                std::hint::black_box(
                    "WITH t AS (SELECT * FROM customers) SELECT t.name, lower(t.email) FROM t JOIN orders o ON o.customer_id = t.id",
                ),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
