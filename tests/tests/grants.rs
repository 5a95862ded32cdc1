//! Just-in-time access grants through the real gateway with the reference
//! policy: the agent's write needs approval (SL001) until an approver grants
//! it access to the target for a while; then its writes run without
//! per-statement approval, each recorded with the grant's id, while denied
//! statements stay denied. Revoking the grant ends the agent's session, and
//! an expired grant no longer applies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::gateway::{Api, Gateway, eventually};

const REFUND: &str = "UPDATE orders SET status = 'refunded' WHERE id = 2";
const CRITICAL_DELETE: &str = "DELETE FROM customers WHERE id = 1";
const WAIT: Duration = Duration::from_secs(20);

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// A policy under which the admins may ask for grants too (so the test
/// can show that an approver cannot approve their own grant).
const ADMIN_GRANTS: &str = r"
name: admin-grants
applies_to:
  groups: [admins]
  targets: ['*']
approval:
  grants:
    allowed: true
    max_duration: 1h
statements:
  default: allow
  rules:
    - name: admin-writes-need-approval
      kinds: [update]
      decision: approval
";

async fn reference(extra: &[&str]) -> Gateway {
    let policy = repo("examples/policies/reference.yaml");
    let mut args = vec!["--policy", policy.to_str().unwrap()];
    args.extend_from_slice(extra);
    Gateway::seeded(&args).await.unwrap()
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|db| db.code().code().to_owned())
        .unwrap_or_else(|| format!("not a server error: {e}"))
}

fn agent_api(gw: &Gateway) -> Api {
    Api::new(&gw.ready().api_url, &gw.ready().agent_token)
}

async fn direct(gw: &Gateway) -> tokio_postgres::Client {
    let db = gw.db.as_ref().unwrap();
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

async fn order_status(gw: &Gateway, id: i32) -> String {
    direct(gw)
        .await
        .query_one("SELECT status FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

async fn request(api: &Api, duration: &str) -> Value {
    let (status, g) = api
        .post(
            "/api/v1/grants",
            &json!({"target": "demo", "duration": duration, "reason": "refund batch INC-7"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{g}");
    assert_eq!(g["state"], "pending");
    g
}

/// Approves grant `id` as the admin.
async fn approve(gw: &Gateway, id: &str) {
    let (status, g) = gw
        .api()
        .post(
            &format!("/api/v1/grants/{id}/approve"),
            &json!({"reason": "on call"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["state"], "active");
}

/// Waits until the node honours a grant: the write runs on a connection.
async fn runs_on(gw: &Gateway, c: &tokio_postgres::Client) {
    eventually(WAIT, || async {
        c.simple_query(REFUND)
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{}", code(&e)))
    })
    .await
    .unwrap();
    assert_eq!(order_status(gw, 2).await, "refunded");
}

#[tokio::test]
async fn a_grant_lifts_approval_until_revoked_and_never_lifts_a_denial() {
    let gw = reference(&[]).await;
    let c = gw.connect("grants-agent").await.unwrap();
    let e = c.simple_query(REFUND).await.unwrap_err();
    assert_eq!(code(&e), "SL001", "no grant yet: approval needed");

    let agent = agent_api(&gw);
    let g = request(&agent, "1h").await;
    let id = g["id"].as_str().unwrap().to_owned();
    assert_eq!(g["identity"], "agent");
    assert_eq!(g["policy"], "reference");
    assert_eq!(g["duration_secs"], 3600);

    // The agent cannot approve it (no approver role), nor see others' grants.
    let (status, _) = agent
        .post(&format!("/api/v1/grants/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 403);
    // Longer than the policy allows, or without a reason: refused.
    let (status, body) = agent
        .post(
            "/api/v1/grants",
            &json!({"target": "demo", "duration": "5h", "reason": "too long"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let (status, _) = agent
        .post(
            "/api/v1/grants",
            &json!({"target": "demo", "duration": "1h", "reason": " "}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    let pending = gw.api().get("/api/v1/grants?status=pending").await.unwrap();
    assert_eq!(pending["items"][0]["id"], id.as_str(), "{pending}");

    approve(&gw, &id).await;
    let active = agent.get("/api/v1/grants?status=active").await.unwrap();
    assert_eq!(active["items"][0]["id"], id.as_str(), "{active}");

    // The write now runs without SL001, on the open session.
    runs_on(&gw, &c).await;
    // A statement the policy denies stays denied.
    let e = c.simple_query(CRITICAL_DELETE).await.unwrap_err();
    assert_eq!(code(&e), "42501", "a grant never lifts a denial");
    let customers: i64 = direct(&gw)
        .await
        .query_one("SELECT count(*) FROM customers WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(customers, 1);

    // The statement's record names the grant.
    let session = eventually(WAIT, || async {
        let sessions = gw.api().sessions().await?;
        sessions
            .into_iter()
            .find(|s| s["application_name"] == "grants-agent")
            .ok_or_else(|| anyhow::anyhow!("session not recorded yet"))
    })
    .await
    .unwrap();
    let sid = session["id"].as_str().unwrap().to_owned();
    let ran = eventually(WAIT, || async {
        let ev = gw.api().events(&sid).await?;
        ev.into_iter()
            .find(|e| e["text"] == REFUND && e["sqlstate"].is_null() && e["kind"] == "statement")
            .ok_or_else(|| anyhow::anyhow!("not recorded yet"))
    })
    .await
    .unwrap();
    assert_eq!(ran["approval_id"], id.as_str(), "{ran}");
    assert_eq!(ran["decision"], "approval");

    // Revoking (the requester may) ends the session relying on it.
    let (status, revoked) = agent
        .post(
            &format!("/api/v1/grants/{id}/revoke"),
            &json!({"reason": "done"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    eventually(WAIT, || async {
        match c.simple_query("SELECT 1").await {
            Err(_) if c.is_closed() => Ok(()),
            other => anyhow::bail!("session still open: {other:?}"),
        }
    })
    .await
    .unwrap();
    // The node drops the grant with its next snapshot, sent at once.
    eventually(WAIT, || async {
        let c = gw.connect("grants-after-revoke").await?;
        match c.simple_query(REFUND).await {
            Err(e) if code(&e) == "SL001" => Ok(()),
            other => anyhow::bail!("a revoked grant still applies: {other:?}"),
        }
    })
    .await
    .unwrap();

    // The grant has its own chained record.
    let record = gw.api().events(&id).await.unwrap();
    let steps: Vec<(&str, &str)> = record
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("approval_requested", ""),
            ("approval_decision", "approve"),
            ("approval_decision", "revoke")
        ],
        "{record:?}"
    );
    assert_eq!(record[0]["mode"], "grant");
    assert_eq!(record[2]["state"], "revoked");
    let verdict = gw
        .api()
        .get(&format!("/api/v1/sessions/{id}/verify"))
        .await
        .unwrap();
    assert_eq!(verdict["status"], "intact", "{verdict}");
}

#[tokio::test]
async fn an_expired_grant_no_longer_applies() {
    let gw = reference(&[]).await;
    let agent = agent_api(&gw);
    let g = request(&agent, "3s").await;
    let id = g["id"].as_str().unwrap().to_owned();
    approve(&gw, &id).await;
    let c = gw.connect("grants-expiry").await.unwrap();
    runs_on(&gw, &c).await;
    // Past its window the same write needs approval again (each attempt on
    // a fresh session: the expiry also ends the sessions that relied on it).
    eventually(WAIT, || async {
        let c = gw.connect("grants-expiry-later").await?;
        match c.simple_query(REFUND).await {
            Err(e) if code(&e) == "SL001" => Ok(()),
            other => anyhow::bail!("still runs: {other:?}"),
        }
    })
    .await
    .unwrap();
    let shown = eventually(WAIT, || async {
        let g = agent.get(&format!("/api/v1/grants/{id}")).await?;
        anyhow::ensure!(g["history"].as_array().is_some_and(|h| h.len() == 2), "{g}");
        Ok(g)
    })
    .await
    .unwrap();
    assert_eq!(shown["state"], "expired");
    assert_eq!(shown["history"][1]["action"], "expire");
    let expired = gw.api().get("/api/v1/grants?status=expired").await.unwrap();
    assert_eq!(expired["items"][0]["id"], id.as_str());
}

#[tokio::test]
async fn nobody_approves_their_own_grant_and_denials_are_final() {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("admin-grants.yaml");
    std::fs::write(&extra, ADMIN_GRANTS).unwrap();
    let gw = reference(&["--policy", extra.to_str().unwrap()]).await;
    let admin = gw.api();
    // The admin, an approver, asks for a grant for itself: it cannot approve it.
    let g = request(&admin, "10m").await;
    let id = g["id"].as_str().unwrap();
    assert_eq!(g["policy"], "admin-grants");
    let (status, body) = admin
        .post(&format!("/api/v1/grants/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 403, "self-approval: {body}");
    // The agent's grant: the agent does not see the admin's, and a denied
    // grant cannot be approved afterwards.
    let agent = agent_api(&gw);
    let (status, _) = agent
        .post(&format!("/api/v1/grants/{id}/revoke"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        status, 404,
        "someone else's grant is not the agent's to revoke"
    );
    let mine = agent.get("/api/v1/grants").await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 0, "{mine}");
    let g = request(&agent, "10m").await;
    let aid = g["id"].as_str().unwrap();
    let (status, _) = admin
        .post(&format!("/api/v1/grants/{aid}/deny"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 400, "a denial needs a reason");
    let (status, denied) = admin
        .post(
            &format!("/api/v1/grants/{aid}/deny"),
            &json!({"reason": "use a ticket"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(denied["state"], "denied");
    let (status, _) = admin
        .post(&format!("/api/v1/grants/{aid}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 409, "a denial is final");
    let c = gw.connect("grants-denied").await.unwrap();
    let e = c.simple_query(REFUND).await.unwrap_err();
    assert_eq!(code(&e), "SL001");
}
