use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::*;

/// The reference policy's masked columns.
struct Ref;

const MASKED: [(&str, &str); 6] = [
    ("customers", "email"),
    ("customers", "phone"),
    ("customers", "ssn"),
    ("customers", "card_number"),
    ("customers", "api_key"),
    ("app_secrets", "value"),
];

impl MaskView for Ref {
    fn rules_of(&self, schema: &str, table: &str, column: &str) -> Vec<RuleRef> {
        MASKED
            .iter()
            .position(|(t, c)| schema == "public" && *t == table && *c == column)
            .map(|rule| vec![RuleRef { policy: 0, rule }])
            .unwrap_or_default()
    }

    fn masked_columns(&self, schema: &str, table: &str) -> Vec<(String, RuleRef)> {
        MASKED
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| schema == "public" && *t == table)
            .map(|(rule, (_, c))| ((*c).to_owned(), RuleRef { policy: 0, rule }))
            .collect()
    }

    fn rule_name(&self, r: RuleRef) -> String {
        format!("public.{}.{}", MASKED[r.rule].0, MASKED[r.rule].1)
    }
}

fn rule(col: &str) -> Taint {
    let rule = MASKED.iter().position(|(_, c)| *c == col).unwrap();
    Taint::Column(RuleRef { policy: 0, rule })
}

fn run(sql: &str) -> Result<Lineage, String> {
    run_in(&sql.replacen("TABLE ", "SELECT * FROM ", 1), &Ref)
}

fn ones(sql: &str) -> Vec<Taint> {
    singles(sql, run(sql))
}

/// Each output column's taint, where every column is a single one.
fn singles(sql: &str, l: Result<Lineage, String>) -> Vec<Taint> {
    l.unwrap()
        .columns
        .into_iter()
        .map(|c| match c {
            OutCol::One(t) => t,
            OutCol::Span(s) => panic!("{sql}: span {s:?}"),
        })
        .collect()
}

fn denied(sql: &str) -> String {
    run(sql).expect_err(sql)
}

const D: Taint = Taint::Derived;
const C: Taint = Taint::Clear;

#[test]
fn direct_references_keep_the_column_mask() {
    assert_eq!(
        ones("SELECT email, ssn FROM customers"),
        [rule("email"), rule("ssn")]
    );
    assert_eq!(
        ones("SELECT email AS contact FROM customers"),
        [rule("email")]
    );
    assert_eq!(ones("SELECT c.ssn FROM customers c"), [rule("ssn")]);
    assert_eq!(
        ones("SELECT public.customers.ssn FROM customers"),
        [rule("ssn")]
    );
    assert_eq!(
        ones("SELECT x.s FROM (SELECT ssn AS s FROM customers) x"),
        [rule("ssn")]
    );
    assert_eq!(
        ones("SELECT (SELECT ssn FROM customers LIMIT 1)"),
        [rule("ssn")]
    );
    assert_eq!(ones("SELECT id, name FROM customers"), [C, C]);
    assert_eq!(ones("SELECT amount, status FROM orders"), [C, C]);
}

#[test]
fn computed_values_are_redacted_whole() {
    for sql in [
        "SELECT lower(email) FROM customers",
        "SELECT ssn || '' FROM customers",
        "SELECT substr(card_number, 1, 12) FROM customers",
        "SELECT ssn::int FROM customers",
        "SELECT CAST(ssn AS text) FROM customers",
        "SELECT md5(ssn) FROM customers",
        "SELECT string_agg(api_key, ',') FROM customers",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT json_agg(c) FROM customers c",
        "SELECT to_jsonb(a) FROM app_secrets a",
        "SELECT customers FROM customers",
        "SELECT c::text FROM customers c",
        "SELECT row_to_json(c.*) FROM customers c",
        "SELECT (c).ssn FROM customers c",
        "SELECT CASE WHEN true THEN ssn END FROM customers",
        "SELECT coalesce(phone, 'none') FROM customers",
        "SELECT length(ssn) FROM customers",
        "SELECT count(ssn) FROM customers",
        "SELECT ARRAY[ssn] FROM customers",
        "SELECT encode(convert_to(ssn, 'UTF8'), 'base64') FROM customers",
        "SELECT reverse(value) FROM app_secrets",
        "SELECT json_build_object('k', email) FROM customers",
        "SELECT (SELECT lower(ssn) FROM customers LIMIT 1)",
        "SELECT x FROM unnest(ARRAY(SELECT ssn FROM customers)) AS u(x)",
        "SELECT (SELECT string_agg(s, ',') FROM (SELECT ssn AS s FROM customers) q)",
    ] {
        assert_eq!(ones(sql), [D], "{sql}");
    }
}

#[test]
fn stars_resolve_by_name() {
    for sql in [
        "SELECT * FROM customers",
        "TABLE customers",
        "SELECT customers.* FROM customers",
        "SELECT c.* FROM customers c",
    ] {
        let l = run(sql).unwrap();
        let [OutCol::Span(s)] = l.columns.as_slice() else {
            panic!("{sql}: {l:?}")
        };
        assert_eq!(s.taint_of("ssn"), rule("ssn"), "{sql}");
        assert_eq!(s.taint_of("email"), rule("email"), "{sql}");
        assert_eq!(s.taint_of("name"), C, "{sql}");
        assert!(l.touches_masked);
    }
    // Renamed columns of a masked table hide which is which.
    let l = run("SELECT * FROM customers c(a, b, e)").unwrap();
    let [OutCol::Span(s)] = l.columns.as_slice() else {
        panic!()
    };
    assert_eq!(s.taint_of("e"), D);
    assert_eq!(ones("SELECT e FROM customers c(a, b, e)"), [D]);
}

#[test]
fn ctes_subqueries_unions_and_values_carry_masks() {
    let l = run("WITH t AS (SELECT email FROM customers) SELECT * FROM t").unwrap();
    assert_eq!(l.columns, [OutCol::One(rule("email"))]);
    assert_eq!(
        ones("WITH t AS (SELECT * FROM customers) SELECT lower(email), name FROM t"),
        [D, C]
    );
    assert_eq!(
        ones("SELECT name, email FROM customers UNION ALL SELECT 'x', 'y'"),
        [C, rule("email")]
    );
    assert_eq!(
        ones("SELECT email FROM customers UNION ALL SELECT ssn FROM customers"),
        [D]
    );
    assert_eq!(ones("SELECT * FROM (VALUES (1), (2)) v(a)"), [C]);
    assert_eq!(
        ones("VALUES ((SELECT ssn FROM customers LIMIT 1))"),
        [rule("ssn")]
    );
    assert_eq!(
        ones("SELECT a FROM (SELECT ssn FROM customers) q(a)"),
        [rule("ssn")]
    );
    assert_eq!(
        ones(
            "WITH RECURSIVE r(n, s) AS (SELECT 1, ssn FROM customers UNION ALL SELECT n + 1, s FROM r WHERE n < 3) SELECT n, s FROM r"
        ),
        [C, rule("ssn")]
    );
    assert_eq!(
        ones(
            "SELECT o.amount, (SELECT c.email FROM customers c WHERE c.id = o.customer_id) FROM orders o"
        ),
        [C, rule("email")]
    );
}

#[test]
fn masked_values_steering_the_result_are_denied() {
    for (sql, clause) in [
        ("SELECT ssn FROM customers WHERE ssn LIKE '123%'", "WHERE"),
        ("SELECT id FROM customers ORDER BY ssn", "ORDER BY"),
        ("SELECT ssn AS s FROM customers ORDER BY s", "ORDER BY"),
        ("SELECT ssn, id FROM customers ORDER BY 1", "ORDER BY"),
        ("SELECT count(*) FROM customers GROUP BY ssn", "GROUP BY"),
        (
            "SELECT count(*) FROM customers HAVING max(ssn) > '5'",
            "HAVING",
        ),
        ("SELECT DISTINCT email FROM customers", "DISTINCT"),
        (
            "SELECT DISTINCT ON (email) id FROM customers",
            "DISTINCT ON",
        ),
        (
            "SELECT o.id FROM orders o JOIN customers c ON c.ssn = '1'",
            "JOIN",
        ),
        (
            "SELECT 1 FROM customers a JOIN customers b USING (ssn)",
            "USING",
        ),
        (
            "SELECT 1 FROM customers NATURAL JOIN app_secrets",
            "NATURAL",
        ),
        (
            "SELECT row_number() OVER (ORDER BY ssn) FROM customers",
            "window",
        ),
        (
            "SELECT count(*) OVER (PARTITION BY email) FROM customers",
            "window",
        ),
        (
            "SELECT count(*) FILTER (WHERE ssn > '5') FROM customers",
            "FILTER",
        ),
        (
            "SELECT string_agg(name, ',' ORDER BY ssn) FROM customers",
            "ORDER BY",
        ),
        (
            "SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE ssn = 'x')",
            "WHERE",
        ),
        (
            "SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM customers WHERE email LIKE 'a%')",
            "WHERE",
        ),
        (
            "SELECT id FROM orders WHERE 'x' IN (SELECT ssn FROM customers)",
            "WHERE",
        ),
        (
            "SELECT ssn FROM customers UNION SELECT '123-45-6789'",
            "UNION",
        ),
        (
            "SELECT ssn FROM customers EXCEPT ALL SELECT '123-45-6789'",
            "EXCEPT",
        ),
        (
            "WITH t AS (SELECT * FROM customers) SELECT id FROM t WHERE ssn = '1'",
            "WHERE",
        ),
        (
            "SELECT id FROM customers c WHERE c::text LIKE '%1%'",
            "WHERE",
        ),
        (
            "SELECT id FROM customers LIMIT (SELECT length(ssn) FROM customers LIMIT 1)",
            "LIMIT",
        ),
        ("UPDATE customers SET name = 'x' WHERE ssn = '1'", "WHERE"),
        ("DELETE FROM customers WHERE email = 'x'", "WHERE"),
        (
            "EXPLAIN ANALYZE SELECT id FROM customers WHERE ssn = '1'",
            "WHERE",
        ),
        ("COPY customers TO STDOUT", "COPY"),
        ("COPY (SELECT id FROM orders) TO STDOUT", "COPY"),
        ("DECLARE c CURSOR FOR SELECT ssn FROM customers", "cursor"),
    ] {
        let why = denied(sql);
        assert!(why.contains(clause), "{sql}: {why}");
    }
    assert!(denied("SELECT id FROM customers WHERE ssn = '1'").contains("public.customers.ssn"));
}

#[test]
fn unmasked_predicates_and_returning_pass() {
    assert_eq!(
        ones("SELECT id FROM customers WHERE name = 'x' ORDER BY id"),
        [C]
    );
    assert_eq!(ones("SELECT count(*) FROM customers"), [C]);
    assert_eq!(ones("SELECT count(*) FROM customers GROUP BY name"), [C]);
    assert_eq!(
        ones("SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id"),
        [C]
    );
    assert_eq!(
        ones("UPDATE customers SET name = 'x' WHERE id = 1 RETURNING id, ssn"),
        [C, rule("ssn")]
    );
    assert_eq!(
        ones("INSERT INTO customers (name) VALUES ('x') RETURNING email"),
        [rule("email")]
    );
    assert_eq!(
        ones("DELETE FROM app_secrets WHERE name = 'x' RETURNING lower(value)"),
        [D]
    );
    assert!(!run("SELECT id FROM orders").unwrap().touches_masked);
    assert!(run("SELECT ssn FROM customers").unwrap().touches_masked);
}

/// Every case of the masking corpus, offline: each `masked` case is denied
/// or masks some output; each `visible` case passes with nothing masked.
#[test]
fn masking_corpus_offline() {
    let corpus = include_str!("../../../../tests/corpus/masking.jsonl");
    let mut n = 0;
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let sql = case["sql"].as_str().unwrap();
        let id = case["id"].as_str().unwrap();
        let detectors_only = case["why"].as_str().unwrap().contains("detectors");
        let result = run(sql);
        match case["expect"].as_str().unwrap() {
            "masked" if detectors_only => {
                assert!(result.is_ok(), "{id}: {result:?}");
            }
            "masked" => {
                if let Ok(l) = &result {
                    let tainted = l.columns.iter().any(|c| c.all().is_tainted());
                    assert!(tainted, "{id} {sql}: nothing masked: {l:?}");
                }
            }
            "visible" => {
                let l = result.unwrap_or_else(|e| panic!("{id}: {e}"));
                assert!(
                    l.columns.iter().all(|c| !c.all().is_tainted()),
                    "{id}: {l:?}"
                );
            }
            other => panic!("{id}: {other}"),
        }
        n += 1;
    }
    assert!(n >= 27, "{n} cases");
}

/// Positions in ORDER BY are literals: a decision that touches a masked
/// column must not be shared with the same text under other literals.
#[test]
fn masked_decisions_are_not_shared_across_literals() {
    let text = include_str!("../../../../examples/policies/reference.yaml");
    let set = crate::PolicySet::new(vec![crate::Policy::from_yaml(text).unwrap()]);
    let groups = vec!["agents".to_owned()];
    let subject = crate::Subject {
        identity: "a",
        groups: &groups,
        target: "demo",
    };
    let d = set.decide(&subject, "SELECT ssn, id FROM customers ORDER BY 2");
    assert_eq!(d.verdict, crate::Verdict::Allow, "{}", d.reason);
    assert!(!d.same_for_any_literals);
    let d = set.decide(&subject, "SELECT ssn, id FROM customers ORDER BY 1");
    assert_eq!(d.verdict, crate::Verdict::Deny);
    let d = set.decide(&subject, "SELECT abalance FROM accounts WHERE aid = 1");
    assert!(d.same_for_any_literals && d.masking.is_some());
}

/// [`Ref`] on a target whose catalog holds views over its masked tables.
struct WithViews(crate::mask::Catalog);

impl MaskView for WithViews {
    fn rules_of(&self, schema: &str, table: &str, column: &str) -> Vec<RuleRef> {
        Ref.rules_of(schema, table, column)
    }

    fn masked_columns(&self, schema: &str, table: &str) -> Vec<(String, RuleRef)> {
        Ref.masked_columns(schema, table)
    }

    fn rule_name(&self, r: RuleRef) -> String {
        Ref.rule_name(r)
    }

    fn view(&self, schema: &str, name: &str) -> Option<&ViewDef> {
        self.0.view(schema, name)
    }
}

fn views() -> WithViews {
    use crate::mask::catalog::{Catalog, RelationRow};
    let view = |oid, name: &str, def: &str| RelationRow {
        oid,
        schema: "public".into(),
        name: name.into(),
        definition: Some(def.into()),
    };
    let rows = vec![
        view(
            50,
            "contacts",
            " SELECT c.id, c.email, lower(c.ssn) AS s, c.name\n   FROM public.customers c;",
        ),
        view(
            51,
            "contacts2",
            " SELECT contacts.email FROM public.contacts;",
        ),
        view(
            52,
            "has_ssn",
            " SELECT customers.id FROM public.customers WHERE customers.ssn LIKE '1%';",
        ),
        view(53, "odd", "SELECT FROM WHERE ("),
        view(54, "loop", " SELECT loop.id FROM public.loop;"),
    ];
    WithViews(Catalog::build(1, rows, Vec::new()).unwrap())
}

fn run_in(sql: &str, view: &dyn MaskView) -> Result<Lineage, String> {
    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
    lineage(&stmts[0], view)
}

fn ones_in(sql: &str, view: &dyn MaskView) -> Vec<Taint> {
    singles(sql, run_in(sql, view))
}

#[test]
fn views_over_masked_tables_read_as_their_query() {
    let v = views();
    assert_eq!(
        ones_in("SELECT * FROM contacts", &v),
        [C, rule("email"), D, C]
    );
    assert_eq!(
        ones_in("SELECT x.email, x.name FROM public.contacts x", &v),
        [rule("email"), C]
    );
    assert_eq!(ones_in("SELECT upper(name) FROM contacts", &v), [C]);
    assert_eq!(ones_in("SELECT * FROM contacts2", &v), [rule("email")]);
    let l = run_in("SELECT email FROM contacts2", &v).unwrap();
    assert!(l.touches_masked);
    // Both views read are kept for RowDescription fields that name them.
    assert_eq!(l.views[&51].as_ref(), [rule("email")]);
    assert_eq!(l.views[&50].as_ref(), [C, rule("email"), D, C]);
    // A CTE of the same name shadows the view, as in the server.
    assert_eq!(
        ones_in(
            "WITH contacts AS (SELECT 1 AS email) SELECT email FROM contacts",
            &v
        ),
        [C]
    );
    // Without the catalog, the view is an unknown table.
    assert_eq!(ones_in("SELECT email FROM contacts", &Ref), [C]);
}

#[test]
fn views_that_steer_on_masked_values_or_cannot_be_read_are_denied() {
    let v = views();
    let e = run_in("SELECT id FROM has_ssn", &v).unwrap_err();
    assert!(
        e.contains("the view public.has_ssn uses the masked column public.customers.ssn in WHERE"),
        "{e}"
    );
    let e = run_in("SELECT id FROM contacts WHERE email = 'a@b.c'", &v).unwrap_err();
    assert!(e.starts_with("the statement uses the masked column"), "{e}");
    let e = run_in("SELECT * FROM odd", &v).unwrap_err();
    assert!(e.contains("could not be analysed"), "{e}");
    let e = run_in("SELECT * FROM loop", &v).unwrap_err();
    assert!(e.contains("nests views"), "{e}");
}

/// Asserts `sql` is denied with a reason containing `why`.
fn denied_in(sql: &str, view: &dyn MaskView, why: &str) {
    let e = run_in(sql, view).expect_err(sql);
    assert!(e.contains(why), "{sql}: {e}");
}

#[test]
fn writing_masked_values_anywhere_is_denied() {
    let v = views();
    for sql in [
        "INSERT INTO notes (body) SELECT ssn FROM customers",
        "INSERT INTO notes SELECT * FROM customers",
        "INSERT INTO notes (body) VALUES ((SELECT email FROM customers LIMIT 1))",
        "INSERT INTO notes (body) SELECT email FROM contacts",
        "UPDATE orders SET note = (SELECT lower(email) FROM customers LIMIT 1)",
        "UPDATE customers SET name = ssn",
        "CREATE TABLE copy AS SELECT * FROM customers",
        "CREATE VIEW leak AS SELECT lower(email) FROM customers",
        "CREATE VIEW leak AS SELECT * FROM contacts",
        "SELECT ssn INTO copy FROM customers",
    ] {
        denied_in(sql, &v, "the copy would not be masked");
    }
    for sql in [
        "ALTER TABLE customers RENAME TO c2",
        "ALTER TABLE public.customers RENAME COLUMN ssn TO s",
        "ALTER TABLE contacts RENAME TO c3",
        "CREATE OR REPLACE VIEW contacts AS SELECT 1 AS id",
        "MERGE INTO customers c USING staging s ON c.id = s.id WHEN MATCHED THEN UPDATE SET name = s.name",
    ] {
        denied_in(sql, &v, "which holds masked columns");
    }
    for sql in [
        "INSERT INTO orders (customer_id) SELECT id FROM customers",
        "UPDATE customers SET name = upper(name) WHERE id = 1",
        "CREATE TABLE ids AS SELECT id, name FROM customers",
        "CREATE VIEW names AS SELECT id, name FROM contacts",
        "ALTER TABLE orders RENAME TO orders_old",
        "ALTER TABLE customers ADD COLUMN nickname text",
        "MERGE INTO orders o USING staging s ON o.id = s.id WHEN MATCHED THEN DELETE",
    ] {
        run_in(sql, &v).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// RowDescription identities: a masked table's column keeps its rule, a
/// view's column what the view makes of it, and a view the statement did
/// not read is masked whole.
#[test]
fn described_columns_resolve_through_the_catalog() {
    use crate::mask::catalog::{Catalog, ColumnRow, RelationRow};
    let text = include_str!("../../../../examples/policies/reference.yaml");
    let set = crate::PolicySet::new(vec![crate::Policy::from_yaml(text).unwrap()]);
    assert!(
        set.masked_tables("demo")
            .contains(&("public".to_owned(), "customers".to_owned()))
    );
    let rel = |oid, name: &str, def: Option<&str>| RelationRow {
        oid,
        schema: "public".into(),
        name: name.into(),
        definition: def.map(str::to_owned),
    };
    let col = |relation, attnum, name: &str| ColumnRow {
        relation,
        attnum,
        name: name.into(),
    };
    let catalog = Arc::new(
        Catalog::build(
            3,
            vec![
                rel(100, "customers", None),
                rel(
                    200,
                    "contacts",
                    Some("SELECT customers.id, customers.email FROM public.customers"),
                ),
                rel(
                    300,
                    "other",
                    Some("SELECT customers.ssn FROM public.customers"),
                ),
            ],
            vec![
                col(100, 1, "id"),
                col(100, 3, "email"),
                col(200, 1, "id"),
                col(200, 2, "email"),
                col(300, 1, "ssn"),
            ],
        )
        .unwrap(),
    );
    let groups = vec!["agents".to_owned()];
    let subject = crate::Subject {
        identity: "a",
        groups: &groups,
        target: "demo",
    };
    let d = set.decide_in(&subject, "SELECT * FROM contacts", Some(&catalog));
    assert_eq!(d.verdict, crate::Verdict::Allow, "{}", d.reason);
    let plan = &d.masking.as_ref().unwrap().0;
    let l = &plan.statements[0];
    assert_eq!(l.columns.len(), 2);
    assert_eq!(plan.set.origin_taint(l, 200, 1), C);
    assert!(matches!(plan.set.origin_taint(l, 200, 2), Taint::Column(_)));
    assert!(matches!(plan.set.origin_taint(l, 100, 3), Taint::Column(_)));
    assert_eq!(plan.set.origin_taint(l, 100, 1), C);
    assert_eq!(plan.set.origin_taint(l, 300, 1), D);
    assert_eq!(plan.set.origin_taint(l, 0, 1), C);
    let d = set.decide_in(
        &subject,
        "SELECT id FROM contacts ORDER BY email",
        Some(&catalog),
    );
    assert_eq!(d.verdict, crate::Verdict::Deny);
}
