//! Which statements must have a durable audit record before they run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_policy::{Delivery, Policy, PolicySet, Subject, Verdict};

const OPEN: &str = r#"
name: open
statements:
  default: allow
"#;

fn set(yaml: &str) -> PolicySet {
    PolicySet::new(vec![Policy::from_yaml(yaml).unwrap()])
}

fn decide(set: &PolicySet, sql: &str) -> (Verdict, Delivery) {
    let groups = vec!["agents".to_owned()];
    let d = set.decide(
        &Subject {
            identity: "agent",
            groups: &groups,
            target: "demo",
        },
        sql,
    );
    (d.verdict, d.delivery)
}

#[test]
fn by_default_writes_are_strict_and_reads_streamed() {
    let open = set(OPEN);
    for sql in [
        "SELECT 1",
        "SHOW search_path",
        "BEGIN",
        "COMMIT",
        "SET statement_timeout = 5",
        "EXPLAIN SELECT * FROM orders",
        "WITH t AS (SELECT 1) SELECT * FROM t",
    ] {
        assert_eq!(
            decide(&open, sql),
            (Verdict::Allow, Delivery::Streamed),
            "{sql}"
        );
    }
    for sql in [
        "UPDATE orders SET status = 'x' WHERE id = 1",
        "INSERT INTO orders (id) VALUES (1)",
        "DELETE FROM orders WHERE id = 1",
        "CREATE TABLE t (a int)",
        "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d",
        "SELECT * FROM orders FOR UPDATE",
        "EXPLAIN ANALYZE UPDATE orders SET status = 'x' WHERE id = 1",
        // One write makes the whole message strict.
        "SELECT 1; UPDATE orders SET status = 'x' WHERE id = 1",
    ] {
        assert_eq!(
            decide(&open, sql),
            (Verdict::Allow, Delivery::Strict),
            "{sql}"
        );
    }
}

#[test]
fn policy_sets_each_class() {
    let all_strict = set(&format!("{OPEN}audit:\n  delivery:\n    reads: strict\n"));
    assert_eq!(decide(&all_strict, "SELECT 1").1, Delivery::Strict);
    let all_streamed = set(&format!(
        "{OPEN}audit:\n  delivery:\n    writes: streamed\n"
    ));
    assert_eq!(
        decide(&all_streamed, "DELETE FROM orders WHERE id = 1").1,
        Delivery::Streamed
    );
    let typo = Policy::from_yaml(&format!("{OPEN}audit:\n  delivery:\n    write: streamed\n"));
    assert!(typo.is_err(), "unknown fields are refused");
    let bad = Policy::from_yaml(&format!(
        "{OPEN}audit:\n  delivery:\n    reads: eventually\n"
    ));
    assert!(bad.is_err());
}

#[test]
fn the_strictest_applicable_policy_wins_and_approvals_are_strict() {
    let two = PolicySet::new(vec![
        Policy::from_yaml(&format!(
            "{OPEN}audit:\n  delivery:\n    writes: streamed\n"
        ))
        .unwrap(),
        Policy::from_yaml(&OPEN.replace("name: open", "name: other")).unwrap(),
    ]);
    assert_eq!(
        decide(&two, "UPDATE orders SET status = 'x' WHERE id = 1").1,
        Delivery::Strict
    );
    let approval = set(r#"
name: careful
audit:
  delivery:
    writes: streamed
statements:
  default: allow
  rules:
    - name: writes
      kinds: [update]
      decision: approval
"#);
    assert_eq!(
        decide(&approval, "UPDATE orders SET status = 'x' WHERE id = 1"),
        (Verdict::Approval, Delivery::Strict)
    );
    // A refusal runs nothing, so it never waits.
    let deny = set("name: closed\nstatements:\n  default: deny\n");
    assert_eq!(
        decide(&deny, "DELETE FROM orders WHERE id = 1"),
        (Verdict::Deny, Delivery::Streamed)
    );
}

#[test]
fn result_samples_default_to_100_rows_or_64_kib_and_the_tightest_limit_wins() {
    let groups = vec!["agents".to_owned()];
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    let d = set(OPEN).decide(&subject, "SELECT 1");
    assert_eq!((d.sample.rows, d.sample.bytes), (100, 65536));
    let two = PolicySet::new(vec![
        Policy::from_yaml(&format!("{OPEN}audit:\n  sample:\n    rows: 10\n")).unwrap(),
        Policy::from_yaml(&format!(
            "{}audit:\n  sample:\n    rows: 50\n    bytes: 1000\n",
            OPEN.replace("name: open", "name: other")
        ))
        .unwrap(),
    ]);
    let d = two.decide(&subject, "SELECT 1");
    assert_eq!((d.sample.rows, d.sample.bytes), (10, 1000));
}
