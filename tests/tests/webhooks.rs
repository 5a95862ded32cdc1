//! Signed webhooks for approvals (Standard Webhooks): a receiver gets
//! `approval.requested` and `approval.decided`, each with a signature over
//! its id, timestamp and body that verifies under the endpoint's secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use sluice_control_plane::approvals::webhook::signature;
use sluice_e2e::gateway::{Gateway, eventually};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receive(State(got): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    got.lock().unwrap().push((headers, body));
    "ok"
}

#[tokio::test]
async fn requests_and_decisions_are_delivered_signed() {
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
        format!("[[webhooks]]\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\n"),
    )
    .unwrap();
    let policy =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/reference.yaml");
    let gw = Gateway::seeded(&[
        "--policy",
        policy.to_str().unwrap(),
        "--approvals-config",
        config.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let c = gw.connect("webhooks").await.unwrap();
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
    let (status, _) = gw
        .api()
        .post(
            &format!("/api/v1/approvals/{id}/deny"),
            &json!({"reason": "not today"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);

    let deliveries = eventually(Duration::from_secs(15), || async {
        let all = got.lock().unwrap().clone();
        anyhow::ensure!(all.len() >= 2, "{} deliveries so far", all.len());
        Ok(all)
    })
    .await
    .unwrap();
    let mut kinds = Vec::new();
    let mut ids = Vec::new();
    for (headers, body) in &deliveries {
        let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
        let (msg_id, ts) = (h("webhook-id"), h("webhook-timestamp"));
        let expected = signature(SECRET, &msg_id, ts.parse().unwrap(), body).unwrap();
        assert_eq!(h("webhook-signature"), expected, "the signature verifies");
        assert_ne!(
            signature("whsec_b3RoZXI=", &msg_id, ts.parse().unwrap(), body).unwrap(),
            expected,
            "and only under the endpoint's secret"
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["data"]["id"], id.as_str());
        assert_eq!(v["data"]["identity"], "agent");
        kinds.push((
            v["type"].as_str().unwrap().to_owned(),
            v["data"]["state"].as_str().unwrap().to_owned(),
        ));
        ids.push(msg_id);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("approval.decided".to_owned(), "denied".to_owned()),
            ("approval.requested".to_owned(), "pending".to_owned()),
        ]
    );
    assert_ne!(ids[0], ids[1], "each delivery has its own id");
}
