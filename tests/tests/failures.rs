#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Things going wrong around a session: the client vanishing mid-result, the
//! target restarting under it, a bad token, an unknown target. Each must end
//! cleanly, say clearly what happened, and leave the node serving others.

use std::time::{Duration, Instant};

use sluice_common::local_pg::{LocalPostgres, find_bin_dir, random_password};
use sluice_e2e::gateway::{Gateway, connect, describe, psql};
use sluice_e2e::wire::{self, PROTOCOL_3_0, Wire, query, startup_packet};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

const BIG_QUERY: &str = "SELECT generate_series(1, 5000000)";

/// Waits until no backend of the target runs `BIG_QUERY` any more.
async fn upstream_query_gone(gw: &Gateway) {
    let db = gw.db.as_ref().expect("a seeded gateway");
    let admin = connect(&db.url.parse().unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()",
                &[&BIG_QUERY],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream still runs the abandoned query"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serves_a_new_client(gw: &Gateway) {
    let started = Instant::now();
    let client = gw.connect("e2e-next").await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_client_that_vanishes_mid_result_leaves_the_node_healthy() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let api = gw.api();

    // A raw client reads a little of a large result and hangs up.
    let mut s = Wire::login(gw.addr(), &gw.ready().agent_token, "demo", "e2e-raw-leaver")
        .await
        .unwrap();
    s.wire.send(&query(BIG_QUERY)).await.unwrap();
    let first = s
        .wire
        .read_some(64 * 1024, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first.first(), Some(&b'T'), "RowDescription first");
    drop(s);
    serves_a_new_client(&gw).await;
    let ended = api
        .ended_session("e2e-raw-leaver", Duration::from_secs(15))
        .await
        .unwrap();
    let reason = ended["end_reason"].as_str().unwrap_or_default();
    assert!(
        ["client_closed", "client_error"].contains(&reason),
        "{ended}"
    );
    upstream_query_gone(&gw).await;

    // A tokio-postgres client whose connection is torn down mid-stream.
    let (client, conn) = gw
        .config("demo", "e2e-driver-leaver")
        .connect(NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let rows = client
        .query_raw(BIG_QUERY, std::iter::empty::<i32>())
        .await
        .unwrap();
    futures::pin_mut!(rows);
    for _ in 0..100 {
        use futures::TryStreamExt as _;
        assert!(rows.try_next().await.unwrap().is_some());
    }
    conn.abort();
    let _ = conn.await;
    serves_a_new_client(&gw).await;
    api.ended_session("e2e-driver-leaver", Duration::from_secs(15))
        .await
        .unwrap();
    upstream_query_gone(&gw).await;

    // Both are listed as ended, newest first, among the sessions that follow.
    let sessions = api.sessions().await.unwrap();
    let apps: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["application_name"].as_str())
        .collect();
    let raw = apps.iter().position(|a| *a == "e2e-raw-leaver").unwrap();
    let driver = apps.iter().position(|a| *a == "e2e-driver-leaver").unwrap();
    assert!(driver < raw, "newest first: {apps:?}");
}

/// A private server with `auth` for TCP, a database `app` owned by role
/// `gw`, and `sluice dev` in front of it.
async fn restartable_target(auth: &str) -> (LocalPostgres, Gateway) {
    let bin = find_bin_dir().expect("PostgreSQL server binaries (initdb, postgres)");
    let mut pg = LocalPostgres::start(&bin, auth).await.unwrap();
    let password = random_password();
    pg.create_owned_database("gw", &password, auth, "app")
        .await
        .unwrap();
    pg.execute(
        "app",
        "SET ROLE gw; CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2), (3)",
    )
    .await
    .unwrap();
    // The stored verifier decides the method the server asks the gateway for.
    let prefix = if auth == "md5" {
        "md5"
    } else {
        "SCRAM-SHA-256$"
    };
    let stored: bool = pg
        .admin("postgres")
        .await
        .unwrap()
        .query_one(
            "SELECT starts_with(rolpassword, $1) FROM pg_authid WHERE rolname = 'gw'",
            &[&prefix],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored, "gw's password is not stored as {auth}");
    let gw = Gateway::with_args(&[
        "--target".to_owned(),
        format!(
            "app=postgres://gw:{password}@127.0.0.1:{}/app?sslmode=disable",
            pg.port
        ),
    ])
    .await
    .unwrap();
    (pg, gw)
}

async fn count_items(gw: &Gateway, app: &str) -> Result<i64, tokio_postgres::Error> {
    let client = connect(&gw.config("app", app)).await.map_err(|e| {
        e.downcast::<tokio_postgres::Error>()
            .expect("a tokio-postgres error")
    })?;
    Ok(client
        .query_one("SELECT count(*) FROM items", &[])
        .await?
        .get(0))
}

async fn survives_an_upstream_restart(auth: &str) {
    let (mut pg, gw) = restartable_target(auth).await;
    // Authenticating upstream with `auth` works.
    assert_eq!(count_items(&gw, "e2e-first").await.unwrap(), 3);

    let client = gw.connect("e2e-before-restart").await.unwrap();
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        3
    );
    let mut raw = Wire::login(gw.addr(), &gw.ready().agent_token, "app", "e2e-raw-restart")
        .await
        .unwrap();

    pg.restart().await.unwrap();

    // The driver's next query fails: the connection is gone.
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        err.is_closed()
            || err.code() == Some(&SqlState::CONNECTION_FAILURE)
            || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "{err:?}"
    );
    // On the wire: the gateway says the target connection was lost, then closes.
    let mut fatal = Vec::new();
    while let Some(m) = raw.wire.recv(Duration::from_secs(10)).await.unwrap() {
        assert_eq!(m.tag, b'E', "{m:?}");
        let f = m.fields();
        assert_eq!(f[&b'S'], "FATAL");
        fatal.push((f[&b'C'].clone(), f[&b'M'].clone()));
    }
    assert_eq!(
        fatal.last().map(|(c, m)| (c.as_str(), m.as_str())),
        Some(("08006", "the connection to the target was lost")),
        "{fatal:?}"
    );

    // A new session works at once.
    assert_eq!(count_items(&gw, "e2e-after-restart").await.unwrap(), 3);
    let ended = gw
        .api()
        .ended_session("e2e-raw-restart", Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(ended["end_reason"], "upstream_closed", "{ended}");
    drop(gw);
    pg.stop().await;
}

#[tokio::test]
async fn an_md5_target_restarting_mid_session() {
    survives_an_upstream_restart("md5").await;
}

#[tokio::test]
async fn a_scram_target_restarting_mid_session() {
    survives_an_upstream_restart("scram-sha-256").await;
}

#[tokio::test]
async fn a_stopped_target_is_reported_unavailable() {
    let (mut pg, gw) = restartable_target("scram-sha-256").await;
    pg.stop_server().await;
    let err = count_items(&gw, "e2e-down").await.unwrap_err();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::CONNECTION_FAILURE);
    assert_eq!(db.message(), "target \"app\" is unavailable");
    // The gateway's credential and the target's address stay private.
    let text = format!("{db:?}");
    assert!(!text.contains(&pg.port.to_string()), "{text}");
    assert!(!text.contains("gw"), "{text}");
}

/// Every message until the connection closes.
async fn all_until_close(w: &mut Wire) -> Vec<wire::Msg> {
    let mut out = Vec::new();
    while let Some(m) = w.recv(Duration::from_secs(10)).await.unwrap() {
        out.push(m);
    }
    out
}

#[tokio::test]
async fn a_bad_or_missing_token_is_refused_with_28p01_and_nothing_else() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let good = gw.ready().agent_token.clone();
    // The same token with its signature altered.
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let header_only = good.split('.').next().unwrap().to_owned();

    for (case, token) in [
        ("a wrong password", "hunter2"),
        ("an empty password", ""),
        ("a tampered token", tampered.as_str()),
        ("a truncated token", header_only.as_str()),
    ] {
        let mut w = Wire::connect(gw.addr()).await.unwrap();
        w.send(&startup_packet(
            PROTOCOL_3_0,
            &[("user", "agent"), ("database", "demo")],
        ))
        .await
        .unwrap();
        let ask = w.recv(Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(ask.auth_code(), Some(3), "{case}");
        w.send(&wire::password(token)).await.unwrap();
        let msgs = all_until_close(&mut w).await;
        assert_eq!(msgs.len(), 1, "{case}: exactly one message: {msgs:?}");
        let f = msgs[0].fields();
        assert_eq!(msgs[0].tag, b'E', "{case}");
        assert_eq!(f[&b'C'], "28P01", "{case}: {f:?}");
        assert_eq!(f[&b'S'], "FATAL", "{case}");
        assert!(
            f[&b'M'].starts_with("authentication failed"),
            "{case}: {f:?}"
        );
        assert!(f[&b'H'].contains("access token"), "{case}: {f:?}");
    }

    // As drivers and psql see it.
    let mut cfg = gw.config("demo", "e2e-bad-token");
    cfg.password("not-a-token");
    let err = connect(&cfg)
        .await
        .unwrap_err()
        .downcast::<tokio_postgres::Error>()
        .unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let url = gw.pg_url().replace(&good, "not-a-token");
    let out = psql(&url, &["-c", "SELECT 1"], dir.path()).await.unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FATAL:  authentication failed"),
        "{}",
        describe(&out)
    );
    assert!(!stderr.contains(&good), "the token must not be echoed");
    // No refused sign-in became a session: each is recorded only as an
    // unauthenticated auth failure that ran nothing, and no token leaks.
    let recorded = gw.api().sessions().await.unwrap();
    for s in &recorded {
        assert_eq!(s["identity_kind"], "unauthenticated", "{s}");
        assert_eq!(s["statements"], 0, "{s}");
        let why = s["end_reason"].as_str().unwrap_or_default();
        assert!(why.starts_with("auth_failed"), "{s}");
        assert!(
            !s.to_string().contains(&good),
            "the token must not be recorded"
        );
    }
}

#[tokio::test]
async fn an_unknown_database_is_refused_with_3d000() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let err = connect(&gw.config("no_such_target", "e2e-unknown"))
        .await
        .unwrap_err()
        .downcast::<tokio_postgres::Error>()
        .unwrap();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::INVALID_CATALOG_NAME);
    assert_eq!(
        db.message(),
        "target \"no_such_target\" does not exist or is not available to you"
    );

    // On the wire: one FATAL, no AuthenticationOk.
    let mut w = Wire::connect(gw.addr()).await.unwrap();
    w.send(&startup_packet(
        PROTOCOL_3_0,
        &[("user", "agent"), ("database", "no_such_target")],
    ))
    .await
    .unwrap();
    let ask = w.recv(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(ask.auth_code(), Some(3));
    w.send(&wire::password(&gw.ready().agent_token))
        .await
        .unwrap();
    let msgs = all_until_close(&mut w).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].fields()[&b'C'], "3D000");

    // Without a database, the user name selects the target, as with Postgres.
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(gw.addr().port())
        .user("demo")
        .password(gw.ready().agent_token.as_str())
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    let client = connect(&cfg).await.unwrap();
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(Some(db.as_str()), gw.db.as_ref().map(|d| d.name.as_str()));
}
