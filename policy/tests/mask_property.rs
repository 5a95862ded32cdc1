//! Property: any expression built over a masked column, in any of several
//! query shapes, is either denied or comes out masked; the same through a
//! view over the masked table, and through a view over that view.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::sync::Arc;

use sluice_policy::mask::OutCol;
use sluice_policy::mask::catalog::{Catalog, RelationRow};
use sluice_policy::{Decision, Policy, PolicySet, Subject, Verdict};

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ssn".to_owned()),
        Just("email".to_owned()),
        Just("c.card_number".to_owned()),
        Just("customers.api_key".to_owned()),
        Just("c".to_owned()),
        Just("c.*".to_owned()),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("lower({e})")),
            inner.clone().prop_map(|e| format!("reverse({e}::text)")),
            inner.clone().prop_map(|e| format!("({e})::text")),
            inner.clone().prop_map(|e| format!("md5({e}::text)")),
            inner
                .clone()
                .prop_map(|e| format!("substr({e}::text, 2, 5)")),
            inner
                .clone()
                .prop_map(|e| format!("coalesce({e}::text, 'x')")),
            inner.clone().prop_map(|e| format!("({e}::text || '-')")),
            inner
                .clone()
                .prop_map(|e| format!("CASE WHEN true THEN {e}::text END")),
            inner
                .clone()
                .prop_map(|e| format!("string_agg({e}::text, ',')")),
            inner
                .clone()
                .prop_map(|e| format!("json_build_object('k', {e})")),
            inner.clone().prop_map(|e| format!("row_to_json(({e}, 1))")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("concat({a}, {b})")),
        ]
    })
}

fn query() -> impl Strategy<Value = String> {
    let e = expr().prop_filter("a bare c.* is a select item, not a value", |e| e != "c.*");
    (e, 0..6usize).prop_map(|(e, shape)| match shape {
        0 => format!("SELECT {e} FROM customers c"),
        1 => format!("SELECT x.a FROM (SELECT {e} AS a FROM customers c) x"),
        2 => format!("WITH t AS (SELECT {e} AS a FROM customers c) SELECT * FROM t"),
        3 => format!("SELECT {e} FROM customers c UNION ALL SELECT 'z'"),
        4 => format!("SELECT (SELECT {e} FROM customers c LIMIT 1)"),
        _ => format!("SELECT id FROM customers c WHERE {e}::text LIKE 'a%'"),
    })
}

/// Views as the server writes them back (`pg_get_viewdef`, schema-qualified
/// under an empty search path): one over the table, one over that view.
fn views() -> Arc<Catalog> {
    const COLS: &str = "id, name, email, phone, ssn, card_number, api_key, notes";
    let view = |oid, name: &str, from: &str| RelationRow {
        oid,
        schema: "public".into(),
        name: name.into(),
        definition: Some(format!(" SELECT {COLS}\n   FROM public.{from};")),
    };
    let rows = vec![
        view(1, "cust_view", "customers"),
        view(2, "cust_view2", "cust_view"),
    ];
    Arc::new(Catalog::build(1, rows, Vec::new()).unwrap())
}

fn assert_masked(d: Decision, sql: &str) -> Result<(), TestCaseError> {
    if d.verdict == Verdict::Allow {
        let plan = d.masking.expect("masking applies").0;
        for l in &plan.statements {
            prop_assert!(!l.columns.is_empty(), "{}", sql);
            for c in &l.columns {
                let tainted = match c {
                    OutCol::One(t) => t.is_tainted(),
                    OutCol::Span(s) => s.fallback.is_tainted() || !s.by_name.is_empty(),
                };
                prop_assert!(tainted, "{} came out unmasked: {:?}", sql, l);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn masked_values_never_come_out_raw(sql in query(), through in 0..3usize) {
        let text = include_str!("../../examples/policies/reference.yaml");
        let set = PolicySet::new(vec![Policy::from_yaml(text).unwrap()]);
        let groups = vec!["agents".to_owned()];
        let subject = Subject { identity: "a", groups: &groups, target: "demo" };
        let catalog = views();
        let sql = match through {
            0 => sql,
            1 => sql.replace("customers", "cust_view"),
            _ => sql.replace("customers", "cust_view2"),
        };
        assert_masked(set.decide_in(&subject, &sql, Some(&catalog)), &sql)?;
    }
}
