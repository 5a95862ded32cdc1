//! Classification and decision cost, uncached and cached.
//!
//!     cargo bench -p sluice-policy --bench decide
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_policy::{DecisionCache, Policy, PolicySet, Subject, lexer};

const PGBENCH_S: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48271;";
const JOIN: &str = "SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id \
                    WHERE o.created_at > now() - interval '7 days' ORDER BY o.amount DESC LIMIT 10";

fn reference() -> PolicySet {
    let text = include_str!("../../examples/policies/reference.yaml");
    PolicySet::new(vec![Policy::from_yaml(text).unwrap()])
}

fn bench(c: &mut Criterion) {
    let set = reference();
    let groups = vec!["agents".to_owned()];
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    c.bench_function("split pgbench -S", |b| {
        b.iter(|| lexer::split(std::hint::black_box(PGBENCH_S)).unwrap())
    });
    c.bench_function("sqlparser alone pgbench -S", |b| {
        b.iter(|| {
            sqlparser::parser::Parser::parse_sql(
                &sqlparser::dialect::PostgreSqlDialect {},
                std::hint::black_box(PGBENCH_S),
            )
            .unwrap()
        })
    });
    c.bench_function("classify pgbench -S", |b| {
        b.iter(|| sluice_policy::classify::classify(std::hint::black_box(PGBENCH_S)).unwrap())
    });
    c.bench_function("decide pgbench -S (uncached)", |b| {
        b.iter(|| set.decide(&subject, std::hint::black_box(PGBENCH_S)))
    });
    c.bench_function("decide join (uncached)", |b| {
        b.iter(|| set.decide(&subject, std::hint::black_box(JOIN)))
    });
    let mut cache = DecisionCache::new(1024);
    cache.get_or_insert((1, 0), PGBENCH_S, || set.decide(&subject, PGBENCH_S));
    c.bench_function("decide pgbench -S (cached)", |b| {
        b.iter(|| {
            cache.get_or_insert((1, 0), std::hint::black_box(PGBENCH_S), || {
                unreachable!("cached")
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
