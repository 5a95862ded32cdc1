//! Masking DataRows: an 8-column row with 2 masked columns and detectors on
//! every other text column, against the same row with nothing to mask.
//!
//!     cargo bench -p sluice-data-plane --bench mask_rows
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_data_plane::pg::mask::{ExecMask, wire};
use sluice_policy::{Policy, PolicySet, Subject};

fn row_desc(fields: &[(&str, u32)]) -> Vec<u8> {
    let mut b = (fields.len() as i16).to_be_bytes().to_vec();
    for (name, ty) in fields {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&ty.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    b
}

fn bench(c: &mut Criterion) {
    let text = include_str!("../../examples/policies/reference.yaml");
    let set = PolicySet::new(vec![Policy::from_yaml(text).unwrap()]);
    let groups = vec!["agents".to_owned()];
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    let sql =
        "SELECT id, name, email, ssn, notes, created_at, name AS n2, notes AS n3 FROM customers";
    let plan = set.decide(&subject, sql).masking.unwrap().0;
    let desc = row_desc(&[
        ("id", 23),
        ("name", 25),
        ("email", 25),
        ("ssn", 25),
        ("notes", 25),
        ("created_at", 1184),
        ("n2", 25),
        ("n3", 25),
    ]);
    let values: [&[u8]; 8] = [
        b"1",
        b"Alice Wonder",
        b"alice.wonder@example.com",
        b"123-45-6789",
        b"called about invoice 4471; wants a refund before the end of the month",
        b"2026-01-10 09:30:00+00",
        b"Alice Wonder",
        b"no notes",
    ];
    let row = wire::encode_data_row(values.iter().map(|v| Some(*v)));
    let mut g = c.benchmark_group("mask_rows");
    g.throughput(Throughput::Bytes(row.len() as u64));
    g.bench_function("8 columns, 2 masked, detectors on 4", |b| {
        let mut m = ExecMask::simple(Arc::clone(&plan));
        m.on_row_description(&desc);
        b.iter(|| m.on_data_row(std::hint::black_box(&row)))
    });
    let clean_plan = set
        .decide(
            &subject,
            "SELECT id, name, name, name, name, created_at, name AS n2, name AS n3 FROM customers",
        )
        .masking
        .unwrap()
        .0;
    g.bench_function("8 columns, nothing masked, detectors on 6", |b| {
        let mut m = ExecMask::simple(Arc::clone(&clean_plan));
        m.on_row_description(&desc);
        let clean: [&[u8]; 8] = [
            b"1",
            b"Alice Wonder",
            b"Alice Wonder",
            b"Alice Wonder",
            b"Alice Wonder",
            b"2026-01-10 09:30:00+00",
            b"Alice Wonder",
            b"no notes",
        ];
        let row = wire::encode_data_row(clean.iter().map(|v| Some(*v)));
        b.iter(|| m.on_data_row(std::hint::black_box(&row)))
    });
    bench_wide(&mut g);
    g.finish();
}

/// A row of `bench/masking.sh`'s table under its masking policy: 2 masked
/// columns and every built-in detector on the other 6.
fn bench_wide(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let policy = "name: wide
statements:
  default: deny
  rules:
    - name: reads
      kinds: [select]
      decision: allow
masking:
  columns:
    wide.email: email
    wide.ssn: redact
  detectors:
    builtin: [email, card, ssn, phone, iban, aws_access_key, jwt, private_key, secret_key]
";
    let set = PolicySet::new(vec![Policy::from_yaml(policy).unwrap()]);
    let groups = vec!["agents".to_owned()];
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "bench",
    };
    let sql = "SELECT id, name, city, status, ref, email, ssn, notes FROM wide";
    let plan = set.decide(&subject, sql).masking.unwrap().0;
    let desc = row_desc(&[
        ("id", 23),
        ("name", 25),
        ("city", 25),
        ("status", 25),
        ("ref", 25),
        ("email", 25),
        ("ssn", 25),
        ("notes", 25),
    ]);
    let values: [&[u8]; 8] = [
        b"654321",
        b"Customer 654321",
        b"Zurich",
        b"open",
        b"REF-654321",
        b"user654321@example.com",
        b"321-45-6789",
        b"called about invoice 654321 and asked for a refund before the end of the month",
    ];
    let row = wire::encode_data_row(values.iter().map(|v| Some(*v)));
    g.bench_function("bench/masking.sh row: 2 masked, detectors on 6", |b| {
        let mut m = ExecMask::simple(Arc::clone(&plan));
        m.on_row_description(&desc);
        b.iter(|| m.on_data_row(std::hint::black_box(&row)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
