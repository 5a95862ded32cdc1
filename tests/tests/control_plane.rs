#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A data-plane node and its control plane as separate processes, configured
//! from files as in production: the node keeps serving from its snapshot for
//! `max_snapshot_age` after losing the control plane, then refuses new
//! sessions (fail closed), and recovers when the control plane returns.
//! Writes under strict delivery run only once their record is stored.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_e2e::deployment::{Deployment, Options};
use sluice_e2e::gateway::{Api, connect, eventually};
use sluice_e2e::pg::TestDb;
use sluice_e2e::process::Sluice;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

const MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(3);

async fn customers(client: &Client) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM customers", &[])
        .await?
        .get(0))
}

/// Connects and counts the customers: the whole path works.
async fn session_works(d: &Deployment, token: &str, app: &str) -> anyhow::Result<Client> {
    let client = connect(&d.client_config(token, app)).await?;
    anyhow::ensure!(customers(&client).await? == 4);
    Ok(client)
}

/// A control plane, the demo target under the `observe` policy, and a node,
/// as separate processes.
struct Setup {
    db: TestDb,
    d: Deployment,
    cp: Sluice,
    dp: Sluice,
    agent: String,
    api: Api,
}

async fn deploy(max_snapshot_age: Duration) -> Setup {
    let db = TestDb::with_sql(sluice_e2e::gateway::SEED_SQL)
        .await
        .unwrap();
    let d = Deployment::new(&Options {
        max_snapshot_age,
        ..Options::default()
    })
    .unwrap();
    let cp = d.start_control_plane(0).await.unwrap();
    let admin = d.issue(&["--subject", "admin", "--role", "admin"]).unwrap();
    let agent = d
        .issue(&["--subject", "agent", "--kind", "agent", "--group", "agents"])
        .unwrap();
    let api = d.api(0, &admin);
    let observe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/observe.yaml"
    ))
    .unwrap();
    let (status, body) = api
        .post("/api/v1/policies", &json!({ "source": observe }))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .post(
            "/api/v1/targets",
            &json!({
                "name": "demo",
                "host": "127.0.0.1",
                "port": 5432,
                "database": db.name,
                "username": "postgres",
                "tls_mode": "disable",
            }),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");

    let dp = d.start_node().await.unwrap();
    Setup {
        db,
        d,
        cp,
        dp,
        agent,
        api,
    }
}

#[tokio::test]
async fn the_node_fails_closed_when_its_control_plane_is_gone_and_recovers() {
    let Setup {
        db,
        d,
        mut cp,
        dp,
        agent,
        api,
    } = deploy(MAX_SNAPSHOT_AGE).await;
    let steady = eventually(Duration::from_secs(30), || {
        session_works(&d, &agent, "e2e-steady")
    })
    .await
    .unwrap_or_else(|e| panic!("no working session: {e:#}\n{}", dp.log()));
    assert!(d.node_ready_is(true).await);

    // The control plane dies. Within the tolerance, the node goes on.
    cp.kill();
    let lost = Instant::now();
    session_works(&d, &agent, "e2e-during-outage")
        .await
        .unwrap();
    assert_eq!(customers(&steady).await.unwrap(), 4);
    assert!(
        lost.elapsed() < MAX_SNAPSHOT_AGE - Duration::from_secs(1),
        "the check within the tolerance took too long: {:?}",
        lost.elapsed()
    );

    // Past it, new sessions are refused with a clear reason...
    tokio::time::sleep_until((lost + MAX_SNAPSHOT_AGE + Duration::from_secs(2)).into()).await;
    let err = connect(&d.client_config(&agent, "e2e-refused"))
        .await
        .unwrap_err()
        .downcast::<tokio_postgres::Error>()
        .unwrap();
    let db_err = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db_err.code(),
        &SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION
    );
    assert!(
        db_err
            .message()
            .contains("lost contact with its control plane"),
        "{}",
        db_err.message()
    );
    // ...open sessions run nothing more, and the node reports itself not ready.
    let err = customers(&steady).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert!(
        err.as_db_error()
            .is_some_and(|e| e.message().contains("lost contact with its control plane")),
        "{err}"
    );
    assert!(d.node_ready_is(false).await);

    // The control plane comes back on the same ports and store.
    let _cp = d.start_control_plane(0).await.unwrap();
    eventually(Duration::from_secs(40), || {
        session_works(&d, &agent, "e2e-recovered")
    })
    .await
    .unwrap_or_else(|e| panic!("no recovery: {e:#}\n{}", dp.log()));
    assert_eq!(customers(&steady).await.unwrap(), 4);
    assert!(d.node_ready_is(true).await);

    // What happened during the outage reached the audit trail afterwards.
    let session = eventually(Duration::from_secs(20), || async {
        let sessions = api.sessions().await?;
        sessions
            .into_iter()
            .find(|s| s["application_name"] == "e2e-during-outage" && !s["ended_at"].is_null())
            .ok_or_else(|| anyhow::anyhow!("not recorded yet"))
    })
    .await
    .unwrap();
    let events = api.events(session["id"].as_str().unwrap()).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["text"] == "SELECT count(*) FROM customers" && e["rows"] == 1),
        "{events:?}"
    );
    drop(dp);
    drop(db);
}

#[tokio::test]
async fn the_node_channel_runs_over_tls_and_refuses_an_unknown_certificate() {
    let db = TestDb::with_sql(sluice_e2e::gateway::SEED_SQL)
        .await
        .unwrap();
    let d = Deployment::new(&Options {
        tls: true,
        max_snapshot_age: Duration::from_secs(60),
        ..Options::default()
    })
    .unwrap();
    let cp_config = std::fs::read_to_string(d.path("cp0.toml")).unwrap();
    assert!(cp_config.contains("[grpc_tls]") && !cp_config.contains("insecure_grpc"));
    let _cp = d.start_control_plane(0).await.unwrap();
    let admin = d.issue(&["--subject", "admin", "--role", "admin"]).unwrap();
    let agent = d
        .issue(&["--subject", "agent", "--kind", "agent", "--group", "agents"])
        .unwrap();
    let api = d.api(0, &admin);
    let observe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/observe.yaml"
    ))
    .unwrap();
    assert_eq!(
        api.post("/api/v1/policies", &json!({ "source": observe }))
            .await
            .unwrap()
            .0,
        201
    );
    let target = json!({
        "name": "demo", "host": "127.0.0.1", "port": 5432,
        "database": db.name, "username": "postgres", "tls_mode": "disable",
    });
    assert_eq!(api.post("/api/v1/targets", &target).await.unwrap().0, 201);

    let node = d.start_node().await.unwrap();
    eventually(Duration::from_secs(30), || {
        session_works(&d, &agent, "e2e-tls")
    })
    .await
    .unwrap_or_else(|e| panic!("no session over the TLS channel: {e:#}\n{}", node.log()));
    drop(node);

    // A node that trusts another certificate never gets its configuration.
    let other = tempfile::tempdir().unwrap();
    let wrong = sluice_common::tls::ensure_self_signed(other.path()).unwrap();
    let dp = std::fs::read_to_string(d.path("dp.toml")).unwrap();
    let ca_line = dp
        .lines()
        .find(|l| l.starts_with("control_plane_ca"))
        .unwrap()
        .to_owned();
    let dp = dp.replace(
        &ca_line,
        &format!("control_plane_ca = \"{}\"", wrong.cert.display()),
    );
    std::fs::write(d.path("dp.toml"), dp).unwrap();
    let node = d.start_node().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = connect(&d.client_config(&agent, "e2e-wrong-ca"))
        .await
        .unwrap_err();
    let err = err.downcast::<tokio_postgres::Error>().unwrap();
    let db_err = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db_err.code(),
        &SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION
    );
    assert!(
        db_err
            .message()
            .contains("not yet received its configuration"),
        "{}",
        db_err.message()
    );
    assert!(
        node.log().contains("control plane link down"),
        "{}",
        node.log()
    );
}

async fn status_of(db: &TestDb, id: i32) -> String {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query_one("SELECT status FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

fn is_strict_refusal(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
        && e.as_db_error()
            .is_some_and(|d| d.message().contains("strict delivery"))
}

#[tokio::test]
async fn strict_writes_run_only_once_recorded_and_are_refused_when_they_cannot_be() {
    // A long snapshot tolerance: reads go on while the control plane is
    // away, so only the delivery guarantee can refuse the write.
    let Setup {
        db,
        d,
        mut cp,
        dp,
        agent,
        api,
    } = deploy(Duration::from_secs(120)).await;
    let steady = eventually(Duration::from_secs(30), || {
        session_works(&d, &agent, "e2e-strict")
    })
    .await
    .unwrap_or_else(|e| panic!("no working session: {e:#}\n{}", dp.log()));
    let first = "UPDATE orders SET status = 'strict-1' WHERE id = 1";
    assert_eq!(steady.execute(first, &[]).await.unwrap(), 1);

    // Its intent was stored before it ran, and its outcome after.
    let events = eventually(Duration::from_secs(20), || async {
        let sessions = api.sessions().await?;
        let s = sessions
            .iter()
            .find(|s| s["application_name"] == "e2e-strict")
            .ok_or_else(|| anyhow::anyhow!("not recorded yet"))?;
        let events = api.events(s["id"].as_str().unwrap_or_default()).await?;
        anyhow::ensure!(
            events
                .iter()
                .any(|e| e["kind"] == "statement" && e["text"] == first)
        );
        Ok(events)
    })
    .await
    .unwrap();
    let intent = events
        .iter()
        .position(|e| e["kind"] == "statement_intent" && e["text"] == first)
        .unwrap_or_else(|| panic!("no intent: {events:?}"));
    let outcome = events
        .iter()
        .position(|e| e["kind"] == "statement" && e["text"] == first)
        .unwrap();
    assert!(intent < outcome, "{events:?}");
    assert_eq!(events[outcome]["rows"], 1);
    // Reads are streamed: no intent.
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "statement_intent" && e["kinds"][0] == "select"),
        "{events:?}"
    );

    // The control plane dies: the write is refused, nothing reaches the
    // database, and the session goes on for reads.
    cp.kill();
    let second = "UPDATE orders SET status = 'strict-2' WHERE id = 1";
    eventually(Duration::from_secs(20), || async {
        let c = connect(&d.client_config(&agent, "e2e-strict-probe")).await?;
        match c.execute(second, &[]).await {
            Err(e) if is_strict_refusal(&e) => Ok(()),
            other => anyhow::bail!("not refused yet: {other:?}"),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", dp.log()));
    let err = steady.execute(second, &[]).await.unwrap_err();
    assert!(is_strict_refusal(&err), "{err}");
    assert_eq!(customers(&steady).await.unwrap(), 4);
    assert_eq!(status_of(&db, 1).await, "strict-1");

    // Back again: writes run again.
    let _cp = d.start_control_plane(0).await.unwrap();
    eventually(Duration::from_secs(40), || async {
        anyhow::ensure!(steady.execute(second, &[]).await? == 1);
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("no recovery: {e:#}\n{}", dp.log()));
    assert_eq!(status_of(&db, 1).await, "strict-2");
    drop(dp);
}

#[tokio::test]
async fn a_node_killed_mid_session_leaves_a_lost_tail_not_silence() {
    let Setup {
        db,
        d,
        cp: _cp,
        mut dp,
        agent,
        api,
    } = deploy(Duration::from_secs(60)).await;
    let client = eventually(Duration::from_secs(30), || {
        session_works(&d, &agent, "e2e-killed")
    })
    .await
    .unwrap_or_else(|e| panic!("no working session: {e:#}\n{}", dp.log()));
    let id = eventually(Duration::from_secs(20), || async {
        let s = api
            .sessions()
            .await?
            .into_iter()
            .find(|s| s["application_name"] == "e2e-killed" && s["statements"] == 1)
            .ok_or_else(|| anyhow::anyhow!("not recorded yet"))?;
        Ok(s["id"].as_str().unwrap_or_default().to_owned())
    })
    .await
    .unwrap();
    let verdict = api
        .get(&format!("/api/v1/sessions/{id}/verify"))
        .await
        .unwrap();
    // Open on a live node: intact so far, and not yet ended.
    assert_eq!(verdict["status"], "intact", "{verdict}");
    assert_eq!(verdict["ended"], false);

    // The node dies without ending the session, and a new process takes
    // its place: nothing more of that session can ever arrive.
    dp.kill();
    drop(client);
    let _dp = d.start_node().await.unwrap();
    let verdict = eventually(Duration::from_secs(30), || async {
        let v = api.get(&format!("/api/v1/sessions/{id}/verify")).await?;
        anyhow::ensure!(v["lost_tail"] == true, "{v}");
        Ok(v)
    })
    .await
    .unwrap();
    assert_eq!(verdict["status"], "gaps", "{verdict}");
    assert_eq!(verdict["problem"], serde_json::Value::Null);
    drop(db);
}
