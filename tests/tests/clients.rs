#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Real clients through the gateway: tokio-postgres (simple and extended
//! protocol, transactions, errors, COPY, LISTEN/NOTIFY, notices), sqlx with a
//! pool, psql with the ready file's URL over TLS, and pgbench.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, TryStreamExt as _};
use sluice_e2e::gateway::{DEMO_CUSTOMERS, Gateway, describe, psql};
use sluice_e2e::pg::TestDb;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

fn simple_rows(msgs: &[SimpleQueryMessage], col: usize) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(col).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .collect()
}

fn completions(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn tokio_postgres_simple_query_protocol() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let client = gw.connect("e2e-simple").await.unwrap();

    let msgs = client
        .simple_query("SELECT id, name FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(simple_rows(&msgs, 1), DEMO_CUSTOMERS);
    assert_eq!(completions(&msgs), [4]);

    client
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             INSERT INTO notes VALUES (1, 'a'), (2, 'b');
             UPDATE notes SET body = 'c' WHERE id = 2",
        )
        .await
        .unwrap();
    let msgs = client
        .simple_query("SELECT body FROM notes ORDER BY id")
        .await
        .unwrap();
    assert_eq!(simple_rows(&msgs, 0), ["a", "c"]);

    // Several statements in one Query: every result comes back, in order.
    let msgs = client
        .simple_query("SELECT 1; SELECT 2 UNION ALL SELECT 3; DELETE FROM notes")
        .await
        .unwrap();
    assert_eq!(simple_rows(&msgs, 0), ["1", "2", "3"]);
    assert_eq!(completions(&msgs), [1, 2, 2]);

    // An error in the middle of a multi-statement Query stops it there.
    let err = client
        .simple_query(
            "INSERT INTO notes VALUES (9, 'x'); SELECT 1/0; INSERT INTO notes VALUES (10, 'y')",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err}");
    let msgs = client
        .simple_query("SELECT count(*) FROM notes")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&msgs, 0),
        ["0"],
        "an implicit transaction rolls back as a whole"
    );
}

#[tokio::test]
async fn tokio_postgres_extended_protocol() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let client = gw.connect("e2e-extended").await.unwrap();

    let row = client
        .query_one(
            "SELECT $1::int + $2::int AS sum, $3::text AS label, $4::float8 AS f, $5::bytea AS b, $6::text IS NULL AS n",
            &[&2i32, &40i32, &"label", &1.5f64, &vec![0u8, 1, 255], &None::<&str>],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("sum"), 42);
    assert_eq!(row.get::<_, &str>("label"), "label");
    assert!((row.get::<_, f64>("f") - 1.5).abs() < f64::EPSILON);
    assert_eq!(row.get::<_, Vec<u8>>("b"), [0, 1, 255]);
    assert!(row.get::<_, bool>("n"));

    // A prepared statement used many times with different parameters.
    let stmt = client
        .prepare("SELECT name FROM customers WHERE id = $1")
        .await
        .unwrap();
    for _ in 0..3 {
        for (id, name) in (1i32..).zip(DEMO_CUSTOMERS) {
            let row = client.query_one(&stmt, &[&id]).await.unwrap();
            assert_eq!(row.get::<_, &str>(0), name);
        }
    }
    assert!(client.query_opt(&stmt, &[&99i32]).await.unwrap().is_none());

    // Transactions: COMMIT keeps, ROLLBACK discards.
    client
        .batch_execute("CREATE TABLE ledger (id int PRIMARY KEY, amount numeric NOT NULL)")
        .await
        .unwrap();
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO ledger VALUES ($1, 10)", &[&1i32])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO ledger VALUES ($1, 20)", &[&2i32])
        .await
        .unwrap();
    let inside = tx
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap();
    assert_eq!(inside.get::<_, i64>(0), 2, "visible inside the transaction");
    tx.rollback().await.unwrap();
    let ids: Vec<i32> = client
        .query("SELECT id FROM ledger ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1]);

    // Errors leave the session usable, in both protocols.
    let err = client
        .query("SELECT 1 / $1::int", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err}");
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err}");
    let err = client
        .query("SELECT * FROM no_such_table WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    // What the gateway cannot parse it refuses itself, in both protocols,
    // and the session goes on.
    let err = client.prepare("SELEC oops").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let err = client.simple_query("SELEC oops").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let err = client
        .execute("INSERT INTO ledger VALUES ($1, 1)", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION), "{err}");
    let row = client.query_one(&stmt, &[&2i32]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "Bruno Keller");

    // An error inside an explicit transaction aborts it until ROLLBACK.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute("INSERT INTO ledger VALUES ($1, 30)", &[&3i32])
        .await
        .unwrap();
    assert!(client.query("SELECT 1/0", &[]).await.is_err());
    let err = client.query_one(&stmt, &[&1i32]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM ledger", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the aborted transaction's insert is gone");
}

#[tokio::test]
async fn sqlx_pool_with_binds_and_several_connections() {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

    let gw = Gateway::seeded(&[]).await.unwrap();
    let opts = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(gw.addr().port())
        .username("agent")
        .password(&gw.ready().agent_token)
        .database("demo")
        .ssl_mode(PgSslMode::Disable)
        .application_name("e2e-sqlx");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .connect_with(opts)
        .await
        .unwrap();

    let name: String = sqlx::query_scalar("SELECT name FROM customers WHERE id = $1")
        .bind(2i32)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, "Bruno Keller");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers WHERE email LIKE $1")
        .bind("%@example.com")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO orders (customer_id, amount, status) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(3i32)
    .bind(9.5f64)
    .bind("new")
    .fetch_one(&pool)
    .await
    .unwrap();
    let (status, amount): (String, f64) =
        sqlx::query_as("SELECT status, amount::float8 FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), amount), ("new", 9.5));
    // The same statement again and again: sqlx reuses its prepared statement.
    for (id, want) in (1i32..).zip(DEMO_CUSTOMERS).cycle().take(12) {
        let got: String = sqlx::query_scalar("SELECT name FROM customers WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(got, want);
    }
    let err = sqlx::query("SELECT 1 / $1")
        .bind(0i32)
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("22012")
    );

    // Concurrent queries hold several connections at once, each its own
    // upstream backend.
    let tasks = (0..8).map(|i| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i32, i32)>(
                "SELECT pg_backend_pid(), $1::int FROM (SELECT pg_sleep(0.3)) s",
            )
            .bind(i)
            .fetch_one(&pool)
            .await
        }
    });
    let results = futures::future::try_join_all(tasks).await.unwrap();
    let echoed: Vec<i32> = results.iter().map(|r| r.1).collect();
    assert_eq!(echoed, (0..8).collect::<Vec<_>>());
    let mut backends: Vec<i32> = results.iter().map(|r| r.0).collect();
    backends.sort_unstable();
    backends.dedup();
    assert!(
        backends.len() >= 2,
        "expected several upstream backends, got {backends:?}"
    );
    assert!(pool.size() >= 2, "pool size {}", pool.size());
    pool.close().await;
}

#[tokio::test]
async fn psql_with_the_ready_url_over_tls_on_the_demo_database() {
    let gw = Gateway::demo(&[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.pg_url();
    assert!(url.contains("sslmode=require"), "{url}");

    let out = psql(url, &["-c", "SELECT * FROM customers"], dir.path())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(4 rows)"), "{stdout}");
    for name in DEMO_CUSTOMERS {
        assert!(stdout.contains(name), "{name} missing from {stdout}");
    }

    // The connection really is encrypted, and the session says so.
    let out = psql(
        url,
        &["-c", "\\conninfo", "-c", "SET application_name = 'x'"],
        dir.path(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SSL connection"), "{stdout}");
    let sessions = gw.api().sessions().await.unwrap();
    assert!(!sessions.is_empty());
    assert!(
        sessions
            .iter()
            .all(|s| s["tls"] == true && s["target"] == "demo"),
        "{sessions:?}"
    );
}

#[tokio::test]
async fn psql_copy_both_directions() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = gw.pg_url();

    let out = psql(
        url,
        &[
            "-c",
            "\\copy (SELECT id, name FROM customers ORDER BY id) TO 'out.csv' WITH (FORMAT csv)",
        ],
        dir.path(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let exported = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(
        exported,
        "1,Alice Wonder\n2,Bruno Keller\n3,Chen Yu\n4,Dana Ortiz\n"
    );

    std::fs::write(
        dir.path().join("in.csv"),
        "Eve Adams,eve@example.com\nFrank Ho,frank@example.com\n",
    )
    .unwrap();
    let out = psql(
        url,
        &[
            "-c",
            "\\copy customers(name, email) FROM 'in.csv' WITH (FORMAT csv)",
            "-At",
            "-c",
            "SELECT name FROM customers WHERE id > 4 ORDER BY id",
        ],
        dir.path(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("COPY 2"), "{stdout}");
    assert!(stdout.ends_with("Eve Adams\nFrank Ho\n"), "{stdout}");

    // A COPY that fails half-way leaves nothing behind and psql says why.
    std::fs::write(
        dir.path().join("bad.csv"),
        "Gus,gus@example.com\nno-email-column\n",
    )
    .unwrap();
    let out = psql(
        url,
        &[
            "-c",
            "\\copy customers(name, email) FROM 'bad.csv' WITH (FORMAT csv)",
        ],
        dir.path(),
    )
    .await
    .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing data for column"),
        "{}",
        describe(&out)
    );
    let out = psql(
        url,
        &["-At", "-c", "SELECT count(*) FROM customers"],
        dir.path(),
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "6\n",
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn tokio_postgres_copy_out_and_in() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let client = gw.connect("e2e-copy").await.unwrap();

    let stream = client
        .copy_out("COPY (SELECT id, name FROM customers ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(
        text,
        "1\tAlice Wonder\n2\tBruno Keller\n3\tChen Yu\n4\tDana Ortiz\n"
    );

    client
        .batch_execute("CREATE TABLE imported (id int, label text)")
        .await
        .unwrap();
    let sink = client
        .copy_in::<_, Bytes>("COPY imported FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\tone\n2\ttwo\n"))
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"3\tthree\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 3);
    // The session goes on normally after a COPY, in both protocols.
    let labels: Vec<String> = client
        .query("SELECT label FROM imported ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels, ["one", "two", "three"]);
    let msgs = client
        .simple_query("SELECT count(*) FROM imported")
        .await
        .unwrap();
    assert_eq!(simple_rows(&msgs, 0), ["3"]);

    // Bad data: the COPY fails with the server's error, nothing is kept,
    // and the session is still usable.
    let sink = client
        .copy_in::<_, Bytes>("COPY imported FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let sent = sink
        .send(Bytes::from_static(b"4\tfour\nnot-a-number\tx\n"))
        .await;
    let err = match sent {
        Err(e) => e,
        Ok(()) => sink.finish().await.unwrap_err(),
    };
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{err}"
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM imported", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // A copy the client abandons (the sink dropped unfinished) is rolled back.
    {
        let sink = client
            .copy_in::<_, Bytes>("COPY imported FROM STDIN")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(Bytes::from_static(b"5\tfive\n")).await.unwrap();
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM imported", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

async fn next_message(rx: &mut tokio::sync::mpsc::UnboundedReceiver<AsyncMessage>) -> AsyncMessage {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no message within 10s")
        .expect("connection closed")
}

#[tokio::test]
async fn listen_notify_between_two_sessions_and_notices() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let (listener, mut rx) = gw.connect_with_messages("e2e-listener").await.unwrap();
    listener
        .batch_execute("LISTEN sluice_events")
        .await
        .unwrap();
    let notifier = gw.connect("e2e-notifier").await.unwrap();

    notifier
        .execute("SELECT pg_notify('sluice_events', $1)", &[&"first"])
        .await
        .unwrap();
    notifier
        .batch_execute("NOTIFY sluice_events, 'second'")
        .await
        .unwrap();
    // Delivered while the listener sits idle: nothing asked for them.
    for want in ["first", "second"] {
        match next_message(&mut rx).await {
            AsyncMessage::Notification(n) => {
                assert_eq!((n.channel(), n.payload()), ("sluice_events", want));
            }
            other => panic!("expected a notification, got {other:?}"),
        }
    }
    // Notifications sent inside a transaction arrive only at COMMIT.
    notifier
        .batch_execute("BEGIN; NOTIFY sluice_events, 'third'")
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "delivered before COMMIT"
    );
    notifier.batch_execute("COMMIT").await.unwrap();
    match next_message(&mut rx).await {
        AsyncMessage::Notification(n) => assert_eq!(n.payload(), "third"),
        other => panic!("expected a notification, got {other:?}"),
    }

    // A NOTICE reaches the client. (`DO $$ RAISE NOTICE ... $$` is not
    // parsed by the gateway, so refused: the server's own notices serve.)
    listener
        .batch_execute("DROP TABLE IF EXISTS nothing_here")
        .await
        .unwrap();
    match next_message(&mut rx).await {
        AsyncMessage::Notice(n) => {
            assert_eq!(n.severity(), "NOTICE");
            assert_eq!(
                n.message(),
                "table \"nothing_here\" does not exist, skipping"
            );
        }
        other => panic!("expected a notice, got {other:?}"),
    }
    // Also in the extended protocol, and with psql.
    listener.execute("ROLLBACK", &[]).await.unwrap();
    match next_message(&mut rx).await {
        AsyncMessage::Notice(n) => {
            assert_eq!(
                (n.severity(), n.message()),
                ("WARNING", "there is no transaction in progress")
            );
        }
        other => panic!("expected a notice, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let out = psql(
        gw.pg_url(),
        &["-c", "DROP TABLE IF EXISTS nothing_here"],
        dir.path(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("NOTICE:  table \"nothing_here\" does not exist, skipping"),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn pgbench_through_the_gateway_in_every_query_mode() {
    let db = TestDb::create().await.unwrap();
    let init = tokio::process::Command::new("pgbench")
        .args(["-i", "-s", "1", "-q"])
        .arg(&db.url)
        .output()
        .await
        .unwrap();
    assert!(init.status.success(), "{}", describe(&init));

    let gw = Gateway::with_args(&[
        "--target".to_owned(),
        format!("bench={}?sslmode=disable", db.url),
    ])
    .await
    .unwrap();
    assert_eq!(gw.first_target(), "bench");
    for mode in ["simple", "extended", "prepared"] {
        let out = tokio::process::Command::new("pgbench")
            .args(["-S", "-T", "3", "-c", "4", "-M", mode])
            .arg(gw.pg_url())
            .env("PGCONNECT_TIMEOUT", "20")
            .output()
            .await
            .unwrap();
        let report = describe(&out);
        assert!(out.status.success(), "-M {mode}: {report}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("query mode: {mode}")),
            "-M {mode}: {report}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0 "),
            "-M {mode}: {report}"
        );
        let processed: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            processed > 100,
            "-M {mode}: only {processed} transactions: {report}"
        );
    }
    drop(gw);
    drop(db);
}
