//! Guardrails live through the proxy, with the reference policy: the corpus,
//! the refusal messages and SQLSTATEs, and the protocol-level behaviour of a
//! refusal (transactions abort, pipelines stay in order, the session goes on).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sluice_e2e::gateway::Gateway;
use tokio_postgres::error::SqlState;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

async fn reference() -> Gateway {
    let policy = repo("examples/policies/reference.yaml");
    Gateway::seeded(&["--policy", policy.to_str().unwrap()])
        .await
        .unwrap()
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

#[tokio::test]
async fn the_guardrail_corpus_passes_live() {
    corpus_check("guardrails.jsonl", 90).await;
}

#[tokio::test]
async fn our_own_guardrail_corpus_passes_live() {
    corpus_check("guardrails-extra.jsonl", 60).await;
}

/// Runs the corpus-check tool on `file` (guardrails only) through a gateway
/// with the reference policy, over TLS.
async fn corpus_check(file: &str, at_least: usize) {
    let gw = reference().await;
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("python3")
        .arg(repo("tests/corpus/corpus-check"))
        .args([
            "--pg-url",
            gw.pg_url(),
            "--sslmode",
            "require",
            "--guardrails",
        ])
        .arg(repo(&format!("tests/corpus/{file}")))
        .arg("--masking")
        .arg(empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.ends_with(" 0 failed"),
        "corpus-check: {last}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = last.split_whitespace().next().unwrap().parse().unwrap();
    assert!(passed >= at_least, "{last}");
}

#[tokio::test]
async fn refusals_name_the_policy_rule_and_sqlstate() {
    let gw = reference().await;
    let c = gw.connect("refusals").await.unwrap();
    let e = c
        .simple_query("DELETE FROM customers WHERE id = 4")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    assert!(
        message(&e).contains(
            "DELETE on critical table public.customers is denied by policy \"reference\", rule \"no-critical-deletes\""
        ),
        "{}",
        message(&e)
    );
    let e = c
        .simple_query("UPDATE orders SET status = 'sluice-test' WHERE id = 2")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "SL001");
    assert!(message(&e).contains("approval required"), "{}", message(&e));
    // Nothing reached the database.
    let db = gw.db.as_ref().unwrap();
    let (direct, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = direct
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    let status: String = direct
        .query_one("SELECT status FROM orders WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(status, "sluice-test");
    // And the session goes on.
    let rows = c
        .query("SELECT name FROM customers ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
}

#[tokio::test]
async fn a_refusal_aborts_the_transaction_like_any_error() {
    let gw = reference().await;
    let c = gw.connect("txn").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        code(&c.simple_query("DROP TABLE orders").await.unwrap_err()),
        "42501"
    );
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "the server saw the error too"
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn extended_protocol_refusals_keep_the_session_usable() {
    let gw = reference().await;
    let c = gw.connect("extended").await.unwrap();
    let e = c
        .prepare("DELETE FROM customers WHERE id = $1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    let e = c
        .query("SELECT pg_sleep($1::float8)", &[&0.0f64])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    assert!(message(&e).contains("pg_sleep"), "{}", message(&e));
    let stmt = c
        .prepare("SELECT id, amount::text FROM orders WHERE id = $1")
        .await
        .unwrap();
    for id in 1..=3i32 {
        let row = c.query_one(&stmt, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), id);
    }
}

#[tokio::test]
async fn refusals_in_a_pipeline_land_on_their_own_statement() {
    let gw = reference().await;
    let c = gw.connect("pipeline").await.unwrap();
    // tokio-postgres pipelines queries issued concurrently on one client.
    let (a, b, d) = tokio::join!(
        c.query("SELECT 1::int4", &[]),
        c.query("SELECT pg_read_file('/etc/passwd')", &[]),
        c.query("SELECT 3::int4", &[]),
    );
    assert_eq!(a.unwrap()[0].get::<_, i32>(0), 1);
    assert_eq!(code(&b.unwrap_err()), "42501");
    assert_eq!(d.unwrap()[0].get::<_, i32>(0), 3);
}

#[tokio::test]
async fn refusals_are_recorded_with_their_rule() {
    let gw = reference().await;
    let c = gw.connect("audit-refusals").await.unwrap();
    let _ = c.simple_query("TRUNCATE payments").await.unwrap_err();
    drop(c);
    let api = gw.api();
    let session = api
        .ended_session("audit-refusals", Duration::from_secs(15))
        .await
        .unwrap();
    let events = api.events(session["id"].as_str().unwrap()).await.unwrap();
    let refused = events
        .iter()
        .find(|e| e["text"] == "TRUNCATE payments")
        .expect("the refusal is recorded");
    assert_eq!(refused["decision"], "deny");
    assert_eq!(refused["policy"], "reference");
    assert_eq!(refused["sqlstate"], "42501");
    assert!(refused["reason"].as_str().unwrap().contains("TRUNCATE"));
}

#[tokio::test]
async fn a_target_with_nonstandard_strings_is_refused() {
    let db = sluice_e2e::pg::TestDb::create().await.unwrap();
    let (admin, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} SET standard_conforming_strings = off",
            db.name
        ))
        .await
        .unwrap();
    let target = format!("odd={}?sslmode=disable", db.url);
    let gw = Gateway::with_args(&["--target".to_owned(), target])
        .await
        .unwrap();
    let cfg = gw.config("odd", "scs");
    let e = sluice_e2e::gateway::connect(&cfg).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("standard_conforming_strings"),
        "{e:#}"
    );
}

#[tokio::test]
async fn the_function_call_message_is_refused() {
    use sluice_e2e::wire::{self, Refusal, Wire};
    let gw = reference().await;
    let token = gw.ready().agent_token.clone();
    let mut s = Wire::login(gw.addr(), &token, "demo", "fastpath")
        .await
        .unwrap();
    // FunctionCall: function OID 1, no argument formats, no arguments, text result.
    let body = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    s.wire.send(&wire::message(b'F', &body)).await.unwrap();
    match s.wire.refusal(Duration::from_secs(10)).await.unwrap() {
        Refusal::Error {
            code,
            message,
            closed,
            ..
        } => {
            assert_eq!(code, "42501");
            assert!(message.contains("FunctionCall"), "{message}");
            assert!(!closed, "the session goes on");
        }
        other => panic!("{other:?}"),
    }
}
