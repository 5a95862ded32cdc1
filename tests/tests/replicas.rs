//! Two control-plane replicas on one Postgres store and Redis: a policy
//! change or an approval made through one replica reaches a node attached to
//! the other at once (the replicas' store polling is set to an hour, so only
//! the Redis bus can carry it). And a node without its control plane refuses
//! what needs approval.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_e2e::deployment::{Deployment, Options};
use sluice_e2e::gateway::{SEED_SQL, connect, eventually};
use sluice_e2e::pg::TestDb;
use tokio_postgres::error::SqlState;

const LOCKDOWN: &str =
    "name: lockdown\napplies_to:\n  groups: [agents]\nstatements:\n  default: deny\n";

#[tokio::test]
async fn a_change_on_one_replica_reaches_nodes_of_the_other_at_once() {
    let target = TestDb::with_sql(SEED_SQL).await.unwrap();
    let store = TestDb::create().await.unwrap();
    let redis =
        std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let d = Deployment::new(&Options {
        store_url: Some(store.url.clone()),
        redis_url: Some(redis),
        replicas: 2,
        poll: Duration::from_secs(3600),
        max_snapshot_age: Duration::from_secs(60),
        tls: false,
    })
    .unwrap();
    let _a = d.start_control_plane(0).await.unwrap();
    let _b = d.start_control_plane(1).await.unwrap();
    let admin = d.issue(&["--subject", "admin", "--role", "admin"]).unwrap();
    let agent = d
        .issue(&["--subject", "agent", "--kind", "agent", "--group", "agents"])
        .unwrap();
    let (on_a, on_b) = (d.api(0, &admin), d.api(1, &admin));
    let observe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/observe.yaml"
    ))
    .unwrap();
    let (status, body) = on_a
        .post("/api/v1/policies", &json!({ "source": observe }))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let target_body = json!({
        "name": "demo", "host": "127.0.0.1", "port": 5432,
        "database": target.name, "username": "postgres", "tls_mode": "disable",
    });
    let (status, body) = on_a.post("/api/v1/targets", &target_body).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let node = d.start_node().await.unwrap();
    let client = eventually(Duration::from_secs(30), || async {
        let c = connect(&d.client_config(&agent, "replicas")).await?;
        c.simple_query("SELECT 1").await?;
        Ok(c)
    })
    .await
    .unwrap_or_else(|e| panic!("no session through the node: {e:#}\n{}", node.log()));

    // The lockdown goes in through replica B; the node is attached to A.
    let (status, body) = on_b
        .post("/api/v1/policies", &json!({ "source": LOCKDOWN }))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let changed = Instant::now();
    let refused = eventually(Duration::from_secs(10), || async {
        match client.simple_query("SELECT count(*) FROM customers").await {
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Ok(e),
            other => anyhow::bail!("not refused yet: {other:?}"),
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the node never heard of replica B's change: {e:#}\n{}",
            node.log()
        )
    });
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        changed.elapsed()
    );
    let msg = refused.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("lockdown"), "{msg}");
}

/// The reference policy, holding statements for approval.
fn holding_reference() -> String {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/reference.yaml"
    ))
    .unwrap();
    let old =
        "  mode: answer          # refuse at once with SQLSTATE SL001; resend once approved\n";
    assert!(source.contains(old));
    source.replace(old, "  mode: hold\n")
}

#[tokio::test]
async fn an_approval_on_one_replica_releases_a_statement_held_through_the_other() {
    let target = TestDb::with_sql(SEED_SQL).await.unwrap();
    let store = TestDb::create().await.unwrap();
    let redis =
        std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let d = Deployment::new(&Options {
        store_url: Some(store.url.clone()),
        redis_url: Some(redis),
        replicas: 2,
        poll: Duration::from_secs(3600),
        max_snapshot_age: Duration::from_secs(60),
        tls: false,
    })
    .unwrap();
    let _a = d.start_control_plane(0).await.unwrap();
    let _b = d.start_control_plane(1).await.unwrap();
    let admin = d.issue(&["--subject", "admin", "--role", "admin"]).unwrap();
    let agent = d
        .issue(&["--subject", "agent", "--kind", "agent", "--group", "agents"])
        .unwrap();
    let (on_a, on_b) = (d.api(0, &admin), d.api(1, &admin));
    let (status, body) = on_a
        .post(
            "/api/v1/policies",
            &json!({ "source": holding_reference() }),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let target_body = json!({
        "name": "demo", "host": "127.0.0.1", "port": 5432,
        "database": target.name, "username": "postgres", "tls_mode": "disable",
    });
    let (status, body) = on_a.post("/api/v1/targets", &target_body).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let node = d.start_node().await.unwrap();
    let client = eventually(Duration::from_secs(30), || async {
        let c = connect(&d.client_config(&agent, "replicas-approval")).await?;
        c.simple_query("SELECT 1").await?;
        Ok(c)
    })
    .await
    .unwrap_or_else(|e| panic!("no session through the node: {e:#}\n{}", node.log()));

    // The node (attached to A) holds the statement; B sees the request in
    // the shared store.
    let client = std::sync::Arc::new(client);
    let held = tokio::spawn({
        let c = client.clone();
        async move {
            c.simple_query("UPDATE orders SET status = 'refunded' WHERE id = 3")
                .await
        }
    });
    let id = eventually(Duration::from_secs(20), || async {
        let list = on_b.get("/api/v1/approvals?status=pending").await?;
        let id = list["items"][0]["id"].as_str().map(str::to_owned);
        id.ok_or_else(|| anyhow::anyhow!("no pending request yet"))
    })
    .await
    .unwrap();
    assert!(
        !held.is_finished(),
        "the statement must wait for a decision"
    );
    let (status, body) = on_b
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Only Redis can carry the decision to A (store polling is an hour).
    held.await
        .unwrap()
        .unwrap_or_else(|e| panic!("the held statement failed: {e}\n{}", node.log()));
    let (direct, conn) = tokio_postgres::connect(&target.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let status: String = direct
        .query_one("SELECT status FROM orders WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "refunded");
}

#[tokio::test]
async fn statements_needing_approval_are_refused_while_the_control_plane_is_unreachable() {
    let target = TestDb::with_sql(SEED_SQL).await.unwrap();
    let d = Deployment::new(&Options {
        max_snapshot_age: Duration::from_secs(120),
        ..Options::default()
    })
    .unwrap();
    let cp = d.start_control_plane(0).await.unwrap();
    let admin = d.issue(&["--subject", "admin", "--role", "admin"]).unwrap();
    let agent = d
        .issue(&["--subject", "agent", "--kind", "agent", "--group", "agents"])
        .unwrap();
    let api = d.api(0, &admin);
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/reference.yaml"
    ))
    .unwrap();
    let (status, body) = api
        .post("/api/v1/policies", &json!({ "source": reference }))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let target_body = json!({
        "name": "demo", "host": "127.0.0.1", "port": 5432,
        "database": target.name, "username": "postgres", "tls_mode": "disable",
    });
    let (status, body) = api.post("/api/v1/targets", &target_body).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let node = d.start_node().await.unwrap();
    let client = eventually(Duration::from_secs(30), || async {
        let c = connect(&d.client_config(&agent, "approvals-unreachable")).await?;
        c.simple_query("SELECT 1").await?;
        Ok(c)
    })
    .await
    .unwrap_or_else(|e| panic!("no session through the node: {e:#}\n{}", node.log()));
    let refund = "UPDATE orders SET status = 'refunded' WHERE id = 3";
    let e = client.simple_query(refund).await.unwrap_err();
    assert!(
        e.as_db_error().unwrap().message().contains("is pending"),
        "with the control plane up, a request is made: {e}"
    );

    drop(cp);
    // The snapshot is still fresh enough for reads; a statement that needs
    // approval is refused, and nothing runs.
    let refused = eventually(Duration::from_secs(20), || async {
        let e = match client.simple_query(refund).await {
            Err(e) => e,
            Ok(_) => anyhow::bail!("the statement ran"),
        };
        let db = e
            .as_db_error()
            .map(|d| (d.code().code().to_owned(), d.message().to_owned()));
        match db {
            Some((code, m)) if m.contains("unreachable") => Ok((code, m)),
            other => anyhow::bail!("not refused as unreachable yet: {other:?}"),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log()));
    assert_eq!(refused.0, "SL001", "{}", refused.1);
    client
        .simple_query("SELECT count(*) FROM customers")
        .await
        .unwrap();
    let (direct, conn) = tokio_postgres::connect(&target.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let status: String = direct
        .query_one("SELECT status FROM orders WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(status, "refunded");
}

#[tokio::test]
async fn a_decision_made_while_the_node_is_cut_off_reaches_it_when_it_reattaches() {
    let target = TestDb::with_sql(SEED_SQL).await.unwrap();
    let store = TestDb::create().await.unwrap();
    let redis =
        std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let d = Deployment::new(&Options {
        store_url: Some(store.url.clone()),
        redis_url: Some(redis),
        replicas: 2,
        poll: Duration::from_secs(3600),
        max_snapshot_age: Duration::from_secs(300),
        tls: false,
    })
    .unwrap();
    let mut a = d.start_control_plane(0).await.unwrap();
    let _b = d.start_control_plane(1).await.unwrap();
    let admin = d.issue(&["--subject", "admin", "--role", "admin"]).unwrap();
    let agent = d
        .issue(&["--subject", "agent", "--kind", "agent", "--group", "agents"])
        .unwrap();
    let on_b = d.api(1, &admin);
    let (status, body) = on_b
        .post(
            "/api/v1/policies",
            &json!({ "source": holding_reference() }),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let target_body = json!({
        "name": "demo", "host": "127.0.0.1", "port": 5432,
        "database": target.name, "username": "postgres", "tls_mode": "disable",
    });
    let (status, body) = on_b.post("/api/v1/targets", &target_body).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let node = d.start_node().await.unwrap();
    let client = eventually(Duration::from_secs(30), || async {
        let c = connect(&d.client_config(&agent, "replicas-resync")).await?;
        c.simple_query("SELECT 1").await?;
        Ok(c)
    })
    .await
    .unwrap_or_else(|e| panic!("no session through the node: {e:#}\n{}", node.log()));

    let client = std::sync::Arc::new(client);
    let held = tokio::spawn({
        let c = client.clone();
        async move {
            c.simple_query("UPDATE orders SET status = 'refunded' WHERE id = 3")
                .await
        }
    });
    let id = eventually(Duration::from_secs(20), || async {
        let list = on_b.get("/api/v1/approvals?status=pending").await?;
        let id = list["items"][0]["id"].as_str().map(str::to_owned);
        id.ok_or_else(|| anyhow::anyhow!("no pending request yet"))
    })
    .await
    .unwrap();

    // The node's control plane goes away; the decision is taken on B, and
    // its bus message reaches no replica the node is attached to (A is
    // gone before the decision is taken).
    a.kill();
    assert!(!a.is_running());
    let (status, body) = on_b
        .post(
            &format!("/api/v1/approvals/{id}/approve"),
            &json!({"reason": "approved while the node was away"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!held.is_finished(), "nobody could tell the node yet");

    // A comes back; the node reattaches and is told what it missed.
    let _a = d.start_control_plane(0).await.unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .unwrap_or_else(|_| panic!("the held statement never heard\n{}", node.log()));
    ran.unwrap()
        .unwrap_or_else(|e| panic!("the held statement failed: {e}\n{}", node.log()));
    let (direct, conn) = tokio_postgres::connect(&target.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let status: String = direct
        .query_one("SELECT status FROM orders WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "refunded");
}
