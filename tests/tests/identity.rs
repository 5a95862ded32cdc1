#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Identity through the real binary: an agent configured with nothing but a
//! client id and secret reaches the demo database; revoked and expired
//! tokens end sessions and are refused.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::gateway::{Gateway, connect, eventually};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// Creates an agent account; returns (client_id, client_secret).
async fn agent(gw: &Gateway, name: &str) -> (String, String) {
    let (status, body) = gw
        .api()
        .post(
            "/api/v1/service-accounts",
            &json!({"name": name, "groups": ["agents"]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// An admin-issued token for `account`: (token, id).
async fn issue(gw: &Gateway, account: &str, ttl_seconds: u64) -> (String, String) {
    let (status, body) = gw
        .api()
        .post(
            &format!("/api/v1/service-accounts/{account}/tokens"),
            &json!({"ttl_seconds": ttl_seconds}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    (
        body["token"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

async fn connect_as(gw: &Gateway, user: &str, token: &str, app: &str) -> anyhow::Result<Client> {
    let mut cfg = gw.config("demo", app);
    cfg.user(user).password(token);
    connect(&cfg).await
}

#[tokio::test]
async fn an_agent_with_only_a_client_secret_reaches_the_demo_database() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let (id, secret) = agent(&gw, "devin").await;
    // Exactly what an agent's runtime does: the standard OAuth2 grant.
    let resp = reqwest::Client::new()
        .post(format!("{}/oauth/token", gw.ready().api_url))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();

    let client = connect_as(&gw, "devin", token, "sa-agent").await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    drop(client);
    let session = gw
        .api()
        .ended_session("sa-agent", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(session["identity"], "devin");
    assert_eq!(session["identity_kind"], "agent");
    assert_eq!(session["groups"], json!(["agents"]));

    // The client secret itself is not a password the gateway accepts.
    let err = connect_as(&gw, "devin", &secret, "sa-secret")
        .await
        .unwrap_err();
    let db = err
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
        .expect("a server error");
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD);
}

#[tokio::test]
async fn a_revoked_token_ends_its_sessions_and_is_refused() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    agent(&gw, "cursor").await;
    let (token, id) = issue(&gw, "cursor", 600).await;
    let (other, _) = issue(&gw, "cursor", 600).await;
    let live = connect_as(&gw, "cursor", &token, "revoked-live")
        .await
        .unwrap();
    let bystander = connect_as(&gw, "cursor", &other, "bystander")
        .await
        .unwrap();
    live.simple_query("SELECT 1").await.unwrap();

    let resp = reqwest::Client::new()
        .delete(format!(
            "{}/api/v1/service-accounts/cursor/tokens/{id}",
            gw.ready().api_url
        ))
        .bearer_auth(&gw.ready().admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    // The live session is ended by the node once the revocation arrives.
    eventually(Duration::from_secs(10), || async {
        match live.simple_query("SELECT 1").await {
            Ok(_) => anyhow::bail!("still open"),
            Err(e) => Ok(e),
        }
    })
    .await
    .unwrap();
    // A new connection with it is refused, saying why.
    let err = connect_as(&gw, "cursor", &token, "revoked-new")
        .await
        .unwrap_err();
    let db = err
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
        .expect("a server error");
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD);
    assert!(db.message().contains("revoked"), "{}", db.message());
    // Another token of the same account is untouched.
    bystander.simple_query("SELECT 1").await.unwrap();
    let ended = gw
        .api()
        .ended_session("revoked-live", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        ended["end_reason"].as_str().unwrap().contains("revoked"),
        "{ended}"
    );
}

#[tokio::test]
async fn an_expired_token_ends_the_session_at_once_by_default() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    agent(&gw, "short").await;
    let (token, _) = issue(&gw, "short", 2).await;
    let client = connect_as(&gw, "short", &token, "expiring").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // A statement running across the expiry is cut off.
    let err = client.simple_query("SELECT pg_sleep(4)").await.unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("expired")),
        "{err:?}"
    );
    let ended = gw
        .api()
        .ended_session("expiring", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        ended["end_reason"].as_str().unwrap().contains("expired"),
        "{ended}"
    );
}

#[tokio::test]
async fn after_statement_mode_lets_the_statement_in_flight_finish() {
    let gw = Gateway::seeded(&["--on-token-expiry", "after-statement"])
        .await
        .unwrap();
    agent(&gw, "patient").await;
    let (token, _) = issue(&gw, "patient", 2).await;
    let client = connect_as(&gw, "patient", &token, "draining")
        .await
        .unwrap();
    let rows = client
        .simple_query("SELECT pg_sleep(4), 'finished'")
        .await
        .unwrap();
    assert!(
        rows.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(1) == Some("finished"))),
        "the statement in flight completed"
    );
    // And then the session is over.
    eventually(Duration::from_secs(5), || async {
        match client.simple_query("SELECT 1").await {
            Ok(_) => anyhow::bail!("still open"),
            Err(_) => Ok(()),
        }
    })
    .await
    .unwrap();
}
