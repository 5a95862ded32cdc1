//! No parser differential: the real server's own statement boundaries must be
//! the gateway's. Each text runs on a scratch copy of the demo database, and
//! the number of statements the server completes must equal the number the
//! gateway's splitter finds (and classifies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use sluice_e2e::pg::TestDb;
use sluice_policy::{classify, lexer};
use tokio_postgres::SimpleQueryMessage;

const SEED: &str = include_str!("../../examples/demo/seed.sql");

/// Texts whose statements all succeed on the scratch database, chosen to
/// hide semicolons in every place the server's lexer knows.
const TRICKY: &[&str] = &[
    r"SELECT 'a\'; SELECT 'b'",
    r"SELECT E'a\'; SELECT 1'",
    r"SELECT E'\\'; SELECT 2",
    "SELECT $a$ $b$ ; $b$ ; $a$",
    "SELECT $$;$$; SELECT 2",
    "SELECT 1 /* ; /* ; */ ; */ ; SELECT 2",
    "SELECT \"a;b\" FROM (SELECT 1 AS \"a;b\") t; SELECT 2",
    r"SELECT U&'\0041;' ; SELECT 2",
    "SELECT 1 -- ; SELECT 2\n; SELECT 3",
    "SELECT 'it''s; fine'; SELECT 2",
    "SELECT B'101'; SELECT X'1F'",
    "SELECT 1;;; SELECT 2;",
    "SELECT a$b FROM (SELECT 1 AS a$b) t; SELECT 2",
    "SELECT n'x;y'; SELECT 2",
    "SELECT 1e3; SELECT .5; SELECT 2",
];

#[derive(Deserialize)]
struct Case {
    id: String,
    sql: String,
}

/// Corpus texts with several statements that can all run on the scratch copy.
fn corpus_multi() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/corpus/guardrails.jsonl"
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Case>(l).unwrap())
        .filter(|c| lexer::split(&c.sql).is_ok_and(|p| p.len() > 1))
        .collect()
}

async fn server_count(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<usize, tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let result = client.simple_query(sql).await;
    let _ = client.batch_execute("ROLLBACK").await;
    Ok(result?
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count())
}

#[tokio::test]
async fn the_server_and_the_gateway_split_alike() {
    let db = TestDb::with_sql(SEED).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Without foreign keys every corpus statement can run (and is rolled back).
    client
        .batch_execute(
            "ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey; \
             ALTER TABLE payments DROP CONSTRAINT payments_order_id_fkey",
        )
        .await
        .unwrap();
    let mut texts: Vec<(String, String)> = TRICKY
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("tricky{i}"), (*t).to_owned()))
        .collect();
    texts.extend(corpus_multi().into_iter().map(|c| (c.id, c.sql)));
    // A text that commits inside runs last, so it cannot disturb the others.
    texts.sort_by_key(|(_, t)| t.contains("COMMIT"));
    assert!(
        texts.len() >= TRICKY.len() + 5,
        "the corpus has multi-statement cases"
    );
    let mut failures = Vec::new();
    for (id, sql) in &texts {
        let ours = lexer::split(sql).unwrap().len();
        let classified = classify::classify(sql).map(|s| s.len());
        match server_count(&client, sql).await {
            Ok(theirs) if theirs == ours && classified == Ok(ours) => {}
            Ok(theirs) => failures.push(format!(
                "{id}: server {theirs}, splitter {ours}, classifier {classified:?}: {sql}"
            )),
            Err(e) => failures.push(format!(
                "{id}: the server refused it ({e}); pick a text that runs: {sql}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn texts_the_gateway_cannot_split_are_refused_by_the_server_too() {
    let db = TestDb::create().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for sql in [
        "SELECT 'abc",
        "SELECT /* /* */ 1",
        "SELECT $x$ abc",
        "SELECT \"abc",
    ] {
        assert!(lexer::split(sql).is_err(), "{sql}");
        assert!(
            client.simple_query(sql).await.is_err(),
            "the server must reject {sql:?} too"
        );
    }
}
