//! The guardrail corpus, decided offline by the reference policy: every case
//! must get the decision the corpus states.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use sluice_policy::{Policy, PolicySet, Subject, Verdict};

#[derive(Deserialize)]
struct Case {
    id: String,
    sql: String,
    expect: String,
    why: String,
}

fn reference() -> PolicySet {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/reference.yaml"
    ))
    .unwrap();
    PolicySet::new(vec![Policy::from_yaml(&text).unwrap()])
}

fn agent() -> Vec<String> {
    vec!["agents".to_owned()]
}

#[test]
fn every_guardrail_case_gets_its_decision() {
    check_corpus("guardrails.jsonl", 90);
}

#[test]
fn every_case_of_our_own_corpus_gets_its_decision() {
    check_corpus("guardrails-extra.jsonl", 60);
}

fn check_corpus(file: &str, at_least: usize) {
    let set = reference();
    let groups = agent();
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/corpus/guardrails.jsonl"
    ))
    .unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let case: Case = serde_json::from_str(line).unwrap();
        n += 1;
        let d = set.decide(&subject, &case.sql);
        let ok = match case.expect.as_str() {
            "allow" => d.verdict == Verdict::Allow,
            "approval" => d.verdict == Verdict::Approval,
            "deny" => d.verdict == Verdict::Deny,
            "block" => d.verdict != Verdict::Allow,
            other => panic!("unknown expectation {other}"),
        };
        if !ok {
            failures.push(format!(
                "{} ({}): expected {}, got {:?}: {}\n    {}",
                case.id, case.why, case.expect, d.verdict, d.reason, case.sql
            ));
        }
    }
    assert!(n >= at_least, "{file} has {n} cases");
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_documented_denial_message_is_produced() {
    let set = reference();
    let groups = agent();
    let subject = Subject {
        identity: "agent",
        groups: &groups,
        target: "demo",
    };
    let d = set.decide(&subject, "DELETE FROM customers WHERE id = 4");
    assert_eq!(
        d.reason,
        "DELETE on critical table public.customers is denied by policy \"reference\", rule \"no-critical-deletes\""
    );
    assert_eq!(d.policy.as_deref(), Some("reference"));
    assert_eq!(d.rule.as_deref(), Some("no-critical-deletes"));
}

#[test]
fn identities_outside_the_policy_are_denied() {
    let set = reference();
    let groups = vec!["interns".to_owned()];
    let subject = Subject {
        identity: "bob",
        groups: &groups,
        target: "demo",
    };
    let d = set.decide(&subject, "SELECT 1");
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.reason.contains("no policy"), "{}", d.reason);
}
