//! The expiry sweeper: a pending request nobody reads is recorded as
//! expired once its deadline passes, so the `approval.decided` webhook and
//! the audit record happen on their own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use sluice_e2e::gateway::{Gateway, eventually};

type Received = Arc<Mutex<Vec<Value>>>;

async fn receive(State(got): State<Received>, body: Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice(&body) {
        got.lock().unwrap().push(v);
    }
    "ok"
}

#[tokio::test]
async fn a_lapsed_request_nobody_reads_is_recorded_as_expired() {
    let got: Received = Arc::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("approvals.toml");
    std::fs::write(
        &config,
        format!("[[webhooks]]\nurl = \"http://{addr}/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"),
    )
    .unwrap();
    let source = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/reference.yaml"),
    )
    .unwrap();
    let old = "  expires_after: 15m\n";
    assert!(source.contains(old));
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, source.replace(old, "  expires_after: 1s\n")).unwrap();
    let gw = Gateway::seeded(&[
        "--policy",
        policy.to_str().unwrap(),
        "--approvals-config",
        config.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let c = gw.connect("sweeper").await.unwrap();
    let e = c
        .simple_query("UPDATE orders SET status = 'refunded' WHERE id = 2")
        .await
        .unwrap_err();
    let message = e.as_db_error().unwrap().message().to_owned();
    let id = message
        .split("approval request ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();

    // Nobody reads the request: the sweeper alone records its expiry.
    let decided = eventually(Duration::from_secs(20), || async {
        got.lock()
            .unwrap()
            .iter()
            .find(|v| v["type"] == "approval.decided" && v["data"]["id"] == id.as_str())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no decision delivered yet"))
    })
    .await
    .unwrap();
    assert_eq!(decided["data"]["state"], "expired");

    let a: Value = gw
        .api()
        .get(&format!("/api/v1/approvals/{id}"))
        .await
        .unwrap();
    assert_eq!(a["state"], "expired");
    let history = a["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{a}");
    assert_eq!(history[0]["action"], "expire");
    assert_eq!(history[0]["channel"], "system");
}
