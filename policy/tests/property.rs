//! Writes and DDL disguised every way the grammar allows (comments for
//! spaces, case, quoting, qualification, CTEs, EXPLAIN ANALYZE, stacking)
//! are never allowed by the reference policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use sluice_policy::{Policy, PolicySet, Subject, Verdict};

/// Statements the reference policy must never allow. Written with single
/// spaces between tokens and none inside literals, so spaces can be rewritten.
const DANGEROUS: &[&str] = &[
    "DELETE FROM customers WHERE id = 1",
    "DELETE FROM orders",
    "UPDATE orders SET status = 'x'",
    "UPDATE orders SET status = 'x' WHERE id = 1",
    "INSERT INTO feature_flags VALUES ('a', true)",
    "DROP TABLE orders",
    "TRUNCATE payments",
    "ALTER TABLE orders ADD COLUMN x int",
    "GRANT ALL ON customers TO public",
    "CREATE TABLE loot AS SELECT * FROM customers",
    "COPY customers TO STDOUT",
    "SELECT pg_sleep(1)",
    "SELECT * FROM orders WHERE pg_sleep(1) IS NULL",
    "SET ROLE postgres",
    "SET search_path = evil",
    "DELETE FROM payments WHERE id = 2",
    "LOCK TABLE orders",
    "SELECT * INTO loot FROM customers",
    "PREPARE p AS SELECT 1",
    "VACUUM orders",
    "SELECT set_config('role', 'x', false)",
];

/// Statements that may carry a data-modifying CTE or EXPLAIN ANALYZE.
fn is_dml(s: &str) -> bool {
    s.starts_with("DELETE") || s.starts_with("UPDATE") || s.starts_with("INSERT")
}

fn reference() -> PolicySet {
    let text = include_str!("../../examples/policies/reference.yaml");
    PolicySet::new(vec![Policy::from_yaml(text).unwrap()])
}

#[derive(Debug, Clone)]
enum Disguise {
    Spaces(u8),
    Case(u64),
    QuoteTables,
    Qualify,
    Cte,
    ExplainAnalyze,
    Before,
    After,
    Transaction,
    TrailingSemicolon,
}

fn disguise() -> impl Strategy<Value = Disguise> {
    prop_oneof![
        (0u8..5).prop_map(Disguise::Spaces),
        any::<u64>().prop_map(Disguise::Case),
        Just(Disguise::QuoteTables),
        Just(Disguise::Qualify),
        Just(Disguise::Cte),
        Just(Disguise::ExplainAnalyze),
        Just(Disguise::Before),
        Just(Disguise::After),
        Just(Disguise::Transaction),
        Just(Disguise::TrailingSemicolon),
    ]
}

const TABLES: &[&str] = &["customers", "orders", "payments", "feature_flags"];

fn apply(sql: &str, d: &Disguise) -> String {
    match d {
        Disguise::Spaces(k) => {
            let sep = ["/**/", " /* ; */ ", "\n\t", " -- c\n", " /* /* ; */ */ "][usize::from(*k)];
            // Only spaces outside quotes: the bases have no spaces inside literals.
            sql.replace(' ', sep)
        }
        Disguise::Case(bits) => sql
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect(),
        Disguise::QuoteTables => TABLES.iter().fold(sql.to_owned(), |s, t| {
            s.replace(&format!(" {t}"), &format!(" \"{t}\""))
        }),
        Disguise::Qualify => TABLES.iter().fold(sql.to_owned(), |s, t| {
            s.replace(&format!(" {t}"), &format!(" public.{t}"))
        }),
        Disguise::Cte if is_dml(sql) => format!("WITH w AS ({sql} RETURNING 1) SELECT * FROM w"),
        Disguise::ExplainAnalyze if is_dml(sql) => format!("EXPLAIN ANALYZE {sql}"),
        Disguise::Cte | Disguise::ExplainAnalyze => sql.to_owned(),
        Disguise::Before => format!("SELECT 1; {sql}"),
        Disguise::After => format!("{sql}; SELECT 1"),
        Disguise::Transaction => format!("BEGIN; {sql}; COMMIT"),
        Disguise::TrailingSemicolon => format!("{sql};"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn disguised_writes_and_ddl_are_never_allowed(
        base in 0..DANGEROUS.len(),
        disguises in prop::collection::vec(disguise(), 0..4),
    ) {
        let set = reference();
        let groups = vec!["agents".to_owned()];
        let subject = Subject { identity: "agent", groups: &groups, target: "demo" };
        let sql = disguises.iter().fold(DANGEROUS[base].to_owned(), |s, d| apply(&s, d));
        let d = set.decide(&subject, &sql);
        prop_assert_ne!(d.verdict, Verdict::Allow, "allowed: {}\n  ({})", sql, d.reason);
    }

    #[test]
    fn any_text_gets_a_decision_without_panicking(text in "\\PC{0,200}") {
        let set = reference();
        let groups = vec!["agents".to_owned()];
        let subject = Subject { identity: "agent", groups: &groups, target: "demo" };
        let _ = set.decide(&subject, &text);
    }
}

#[test]
fn every_base_statement_is_refused_plainly() {
    let set = reference();
    let groups = vec!["agents".to_owned()];
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    for sql in DANGEROUS {
        assert_ne!(set.decide(&subject, sql).verdict, Verdict::Allow, "{sql}");
    }
}
