#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The wire protocol at its edges: pipelining, cancel requests, protocol
//! negotiation, and clients that send malformed, oversized or half-finished
//! packets (written byte by byte on raw sockets). After every bad client the
//! node must still serve a good one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_e2e::gateway::{DEMO_CUSTOMERS, Gateway, connect};
use sluice_e2e::wire::{
    self, PROTOCOL_3_0, Refusal, Wire, cancel_request, message, query, startup_packet, untagged,
};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// Opens a fresh session and runs a query: the node still works.
async fn still_serves(gw: &Gateway, after: &str) {
    let client = connect(&gw.config("demo", "e2e-after"))
        .await
        .unwrap_or_else(|e| panic!("after {after}: cannot connect: {e}"));
    let row = client
        .query_one("SELECT name FROM customers WHERE id = $1", &[&4i32])
        .await
        .unwrap_or_else(|e| panic!("after {after}: query failed: {e}"));
    assert_eq!(row.get::<_, &str>(0), "Dana Ortiz", "after {after}");
}

/// Waits until the target database runs a statement starting with `prefix`.
async fn wait_active(gw: &Gateway, prefix: &str) {
    let db = gw.db.as_ref().expect("a seeded gateway");
    let admin = connect(&db.url.parse().unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND starts_with(query, $1)",
                &[&prefix],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{prefix:?} never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn concurrent_queries_on_one_client_are_pipelined_with_their_own_results() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let client = gw.connect("e2e-pipeline").await.unwrap();

    // One prepared statement, many executions in flight at once.
    let stmt = client
        .prepare("SELECT $1::int * 2, name FROM customers WHERE id = $1 % 4 + 1")
        .await
        .unwrap();
    let results = futures::future::join_all((0..64i32).map(|i| {
        let (client, stmt) = (&client, &stmt);
        async move { client.query_one(stmt, &[&i]).await }
    }))
    .await;
    for (i, r) in (0..64i32).zip(results) {
        let row = r.unwrap();
        assert_eq!(row.get::<_, i32>(0), i * 2);
        assert_eq!(row.get::<_, &str>(1), DEMO_CUSTOMERS[(i % 4) as usize]);
    }

    // Unprepared statements (each its own Parse), with a failure in the middle
    // that must only fail its own query.
    let results = futures::future::join_all((0..40i32).map(|i| {
        let client = &client;
        async move {
            if i == 17 {
                client.query("SELECT 1 / 0", &[]).await
            } else {
                client
                    .query("SELECT $1::int + 1000 AS n, repeat('x', $1)", &[&i])
                    .await
            }
        }
    }))
    .await;
    for (i, r) in (0..40i32).zip(results) {
        if i == 17 {
            let err = r.unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err}");
        } else {
            let rows = r.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].get::<_, i32>(0), i + 1000);
            assert_eq!(rows[0].get::<_, String>(1).len(), i as usize);
        }
    }

    // Simple queries pipelined too, large results interleaved with small ones.
    let texts: Vec<String> = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                "SELECT g FROM generate_series(1, 20000) g".to_owned()
            } else {
                format!("SELECT {i}")
            }
        })
        .collect();
    let results = futures::future::join_all(texts.iter().map(|t| client.simple_query(t))).await;
    for (i, r) in results.into_iter().enumerate() {
        let rows = r
            .unwrap()
            .into_iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert_eq!(rows, if i % 2 == 0 { 20000 } else { 1 }, "query {i}");
    }
}

#[tokio::test]
async fn cancel_request_cancels_only_its_own_query() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let victim = gw.connect("e2e-cancel-victim").await.unwrap();
    let bystander = gw.connect("e2e-cancel-bystander").await.unwrap();
    let token = victim.cancel_token();

    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let r = victim.simple_query("SELECT pg_sleep(30)").await;
        (r, started.elapsed(), victim)
    });
    let other = tokio::spawn(async move {
        bystander
            .query_one("SELECT pg_sleep(3), 'still here'::text", &[])
            .await
            .map(|row| row.get::<_, String>(1))
    });
    wait_active(&gw, "SELECT pg_sleep(30)").await;
    wait_active(&gw, "SELECT pg_sleep(3)").await;
    token.cancel_query(NoTls).await.unwrap();

    let (r, elapsed, victim) = slow.await.unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        elapsed < Duration::from_secs(10),
        "cancelled after {elapsed:?}"
    );
    assert_eq!(
        other
            .await
            .unwrap()
            .expect("the other session's query was cancelled"),
        "still here"
    );
    // The cancelled session goes on.
    let msgs = victim.simple_query("SELECT 'after'").await.unwrap();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
}

#[tokio::test]
async fn a_cancel_request_needs_the_sessions_own_key() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let addr = gw.addr();
    let token = gw.ready().agent_token.clone();
    let mut s = Wire::login(addr, &token, "demo", "e2e-raw-cancel")
        .await
        .unwrap();

    // Wrong secret, then wrong pid: nothing is cancelled, nothing is said.
    s.wire
        .send(&query("SELECT pg_sleep(1.5), 'finished'"))
        .await
        .unwrap();
    wait_active(&gw, "SELECT pg_sleep(1.5)").await;
    for (pid, secret) in [
        (s.pid, s.secret.wrapping_add(1)),
        (s.pid.wrapping_add(1), s.secret),
    ] {
        let mut c = Wire::connect(addr).await.unwrap();
        c.send(&cancel_request(pid, secret)).await.unwrap();
        assert_eq!(
            c.refusal(Duration::from_secs(5)).await.unwrap(),
            Refusal::Closed,
            "a cancel request gets no answer"
        );
    }
    let msgs = s.wire.until_ready(Duration::from_secs(10)).await.unwrap();
    assert!(
        msgs.iter().any(|m| m.tag == b'D') && msgs.iter().all(|m| m.tag != b'E'),
        "the query was disturbed: {msgs:?}"
    );

    // The right key cancels.
    s.wire.send(&query("SELECT pg_sleep(30)")).await.unwrap();
    wait_active(&gw, "SELECT pg_sleep(30)").await;
    let started = Instant::now();
    let mut c = Wire::connect(addr).await.unwrap();
    c.send(&cancel_request(s.pid, s.secret)).await.unwrap();
    let msgs = s.wire.until_ready(Duration::from_secs(10)).await.unwrap();
    let err = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .expect("no error after the cancel");
    assert_eq!(err.fields()[&b'C'], "57014");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn newer_protocol_minor_versions_are_negotiated_down_to_3_0() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let mut w = Wire::connect(gw.addr()).await.unwrap();
    w.send(&startup_packet(
        PROTOCOL_3_0 + 2,
        &[("user", "agent"), ("database", "demo")],
    ))
    .await
    .unwrap();
    let first = w.recv(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(first.tag, b'v', "NegotiateProtocolVersion first: {first:?}");
    assert_eq!(&first.body[..4], &0i32.to_be_bytes(), "newest minor: 0");
    let ask = w.recv(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(ask.auth_code(), Some(3));
    w.send(&wire::password(&gw.ready().agent_token))
        .await
        .unwrap();
    let msgs = w.until_ready(Duration::from_secs(20)).await.unwrap();
    assert_eq!(msgs.last().map(|m| m.tag), Some(b'Z'), "{msgs:?}");
    let msgs = w.simple("SELECT 1").await.unwrap();
    assert!(msgs.iter().any(|m| m.tag == b'D'), "{msgs:?}");
}

async fn refusal_of(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Refusal {
    let mut w = Wire::connect(addr).await.unwrap();
    // The gateway may close before it has read everything: ignore write errors.
    let _ = w.send(bytes).await;
    w.refusal(wait).await.unwrap()
}

fn assert_fatal(r: &Refusal, code: &str, needle: &str, case: &str) {
    match r {
        Refusal::Error {
            severity,
            code: c,
            message,
            closed,
        } => {
            assert_eq!(c, code, "{case}: {message}");
            assert_eq!(severity, "FATAL", "{case}");
            assert!(message.contains(needle), "{case}: {message:?}");
            assert!(closed, "{case}: the connection stayed open");
        }
        Refusal::Closed => panic!("{case}: closed without an error, expected {code}"),
    }
}

#[tokio::test]
async fn malformed_startup_packets_are_refused() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let addr = gw.addr();
    let wait = Duration::from_secs(5);
    let mut params = PROTOCOL_3_0.to_be_bytes().to_vec();
    params.extend_from_slice(b"user\0agent\0database"); // unterminated
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "length 0",
            vec![0, 0, 0, 0],
            "08P01",
            "invalid startup packet length 0",
        ),
        (
            "length 3",
            vec![0, 0, 0, 3],
            "08P01",
            "invalid startup packet length 3",
        ),
        (
            "length 2^31",
            vec![0x80, 0, 0, 0, 0, 3, 0, 0],
            "08P01",
            "invalid startup packet length 2147483648",
        ),
        (
            "length 10001",
            [&10_001u32.to_be_bytes()[..], &PROTOCOL_3_0.to_be_bytes()].concat(),
            "08P01",
            "invalid startup packet length 10001",
        ),
        (
            "protocol 2.0",
            startup_packet(0x0002_0000, &[("user", "agent"), ("database", "demo")]),
            "08P01",
            "unsupported frontend protocol 2.0",
        ),
        (
            "protocol 4.0",
            startup_packet(0x0004_0000, &[("user", "agent")]),
            "08P01",
            "unsupported frontend protocol 4.0",
        ),
        (
            "unterminated parameters",
            untagged(&params),
            "08P01",
            "malformed startup packet",
        ),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "08P01",
            "invalid startup packet length",
        ),
        (
            "random bytes",
            vec![0, 0, 0, 16, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8],
            "08P01",
            "unsupported frontend protocol",
        ),
        (
            "a protocol extension",
            startup_packet(PROTOCOL_3_0, &[("user", "agent"), ("_pq_.evil", "1")]),
            "0A000",
            "_pq_.evil",
        ),
        (
            "options",
            startup_packet(PROTOCOL_3_0, &[("user", "agent"), ("options", "-c role=x")]),
            "0A000",
            "\"options\" is not allowed",
        ),
        (
            "replication",
            startup_packet(PROTOCOL_3_0, &[("user", "agent"), ("replication", "true")]),
            "0A000",
            "\"replication\" is not allowed",
        ),
        (
            "no user",
            startup_packet(PROTOCOL_3_0, &[("database", "demo")]),
            "28000",
            "no user name",
        ),
    ];
    for (case, bytes, code, needle) in cases {
        let started = Instant::now();
        let r = refusal_of(addr, &bytes, wait).await;
        assert_fatal(&r, code, needle, case);
        assert!(started.elapsed() < Duration::from_secs(3), "{case}: slow");
        still_serves(&gw, case).await;
    }

    // SSLRequest followed at once by more bytes (before the TLS handshake):
    // refused, never read as if encrypted.
    let mut ssl = untagged(&80_877_103u32.to_be_bytes());
    ssl.extend_from_slice(&startup_packet(PROTOCOL_3_0, &[("user", "agent")]));
    let r = refusal_of(addr, &ssl, wait).await;
    assert_fatal(
        &r,
        "08P01",
        "unexpected data after SSLRequest",
        "SSLRequest + data",
    );
    still_serves(&gw, "SSLRequest + data").await;

    // A cancel request of the wrong size.
    let r = refusal_of(addr, &untagged(&80_877_102u32.to_be_bytes()), wait).await;
    assert_fatal(
        &r,
        "08P01",
        "malformed startup packet",
        "short CancelRequest",
    );
    still_serves(&gw, "short CancelRequest").await;
}

#[tokio::test]
async fn malformed_and_oversized_messages_end_the_session_with_an_error() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let addr = gw.addr();
    let token = gw.ready().agent_token.clone();

    let mut huge_query = vec![b'Q'];
    huge_query.extend_from_slice(&(1u32 << 30).to_be_bytes());
    huge_query.extend_from_slice(b"SELECT ");
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "length 3",
            vec![b'Q', 0, 0, 0, 3],
            "08P01",
            "invalid message length 3",
        ),
        (
            "length 0",
            vec![b'Q', 0, 0, 0, 0],
            "08P01",
            "invalid message length 0",
        ),
        ("a 1 GB Query", huge_query, "54000", "exceeds the limit"),
        (
            "an unknown message type",
            message(b'z', b"whatever"),
            "08P01",
            "unexpected message type",
        ),
        (
            "a Query without its NUL",
            message(b'Q', b"SELECT 1"),
            "08P01",
            "malformed Query message",
        ),
        (
            "a Parse cut short",
            message(b'P', b"s1\0SELECT 1\0\0"),
            "08P01",
            "malformed Parse message",
        ),
    ];
    for (case, bytes, code, needle) in cases {
        let mut s = Wire::login(addr, &token, "demo", "e2e-bad-message")
            .await
            .unwrap();
        let started = Instant::now();
        let _ = s.wire.send(&bytes).await;
        let r = s.wire.refusal(Duration::from_secs(5)).await.unwrap();
        assert_fatal(&r, code, needle, case);
        assert!(started.elapsed() < Duration::from_secs(3), "{case}: slow");
        still_serves(&gw, case).await;
    }

    // The same before authentication, in place of the password.
    for (case, bytes) in [
        ("password length 2", vec![b'p', 0, 0, 0, 2]),
        ("1 GB password", {
            let mut b = vec![b'p'];
            b.extend_from_slice(&(1u32 << 30).to_be_bytes());
            b
        }),
        ("a Query instead of the password", query("SELECT 1")),
    ] {
        let mut w = Wire::connect(addr).await.unwrap();
        w.send(&startup_packet(PROTOCOL_3_0, &[("user", "agent")]))
            .await
            .unwrap();
        let ask = w.recv(Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(ask.auth_code(), Some(3), "{case}");
        let _ = w.send(&bytes).await;
        let r = w.refusal(Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.code(), Some("08P01"), "{case}: {r:?}");
        still_serves(&gw, case).await;
    }
}

#[tokio::test]
async fn clients_that_stall_are_cut_off() {
    let gw = Gateway::seeded(&["--message-timeout", "1s", "--startup-timeout", "3s"])
        .await
        .unwrap();
    let addr = gw.addr();
    let token = gw.ready().agent_token.clone();
    let within = |started: Instant, limit: u64, case: &str| {
        let took = started.elapsed();
        assert!(took < Duration::from_secs(limit), "{case}: took {took:?}");
    };

    // Half a startup packet.
    let started = Instant::now();
    let packet = startup_packet(PROTOCOL_3_0, &[("user", "agent"), ("database", "demo")]);
    let r = refusal_of(addr, &packet[..10], Duration::from_secs(10)).await;
    assert_fatal(&r, "08P01", "timed out", "half a startup packet");
    within(started, 4, "half a startup packet");
    still_serves(&gw, "half a startup packet").await;

    // Connected, then silent.
    let started = Instant::now();
    let r = refusal_of(addr, &[], Duration::from_secs(10)).await;
    assert!(
        matches!(r, Refusal::Closed) || r.code() == Some("08P01"),
        "silent client: {r:?}"
    );
    within(started, 5, "silent client");

    // A startup packet, then never the password.
    let started = Instant::now();
    let mut w = Wire::connect(addr).await.unwrap();
    w.send(&packet).await.unwrap();
    let ask = w.recv(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(ask.auth_code(), Some(3));
    let r = w.refusal(Duration::from_secs(10)).await.unwrap();
    assert_fatal(&r, "08P01", "timed out", "no password");
    within(started, 6, "no password");
    still_serves(&gw, "no password").await;

    // Half a message in an open session.
    let mut s = Wire::login(addr, &token, "demo", "e2e-stall")
        .await
        .unwrap();
    let q = query("SELECT 'this message never finishes'");
    let started = Instant::now();
    s.wire.send(&q[..12]).await.unwrap();
    let r = s.wire.refusal(Duration::from_secs(10)).await.unwrap();
    assert_fatal(
        &r,
        "08P01",
        "timed out waiting for the rest of a message",
        "half a message",
    );
    within(started, 4, "half a message");
    still_serves(&gw, "half a message").await;

    // An idle session is not a stall: it stays open past the timeouts.
    let mut s = Wire::login(addr, &token, "demo", "e2e-idle").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let msgs = s.wire.simple("SELECT 'still open'").await.unwrap();
    assert!(msgs.iter().any(|m| m.tag == b'D'), "{msgs:?}");
}

#[tokio::test]
async fn a_sessions_own_notifications_carry_the_pid_it_was_given() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let token = gw.ready().agent_token.clone();
    let mut s = Wire::login(gw.addr(), &token, "demo", "notify-self")
        .await
        .unwrap();
    s.wire
        .send(&wire::query("LISTEN sluice_self"))
        .await
        .unwrap();
    s.wire.until_ready(Duration::from_secs(10)).await.unwrap();
    s.wire
        .send(&wire::query("NOTIFY sluice_self, 'ping'"))
        .await
        .unwrap();
    let msgs = s.wire.until_ready(Duration::from_secs(10)).await.unwrap();
    let note = msgs
        .iter()
        .find(|m| m.tag == b'A')
        .expect("the notification arrives");
    let sender = i32::from_be_bytes([note.body[0], note.body[1], note.body[2], note.body[3]]);
    // libpq clients compare this with PQbackendPID to skip their own notifications.
    assert_eq!(
        sender, s.pid,
        "the sender is the pid from BackendKeyData, not the upstream's"
    );
    assert!(note.body.ends_with(b"sluice_self\0ping\0"));
}
