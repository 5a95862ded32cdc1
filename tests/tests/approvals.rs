//! Just-in-time approvals through the real gateway with the reference
//! policy: a write that needs approval is refused with SL001 naming a
//! request; once an approver approves it, exactly that statement, from the
//! same identity on the same target, runs once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::gateway::{Api, Gateway, eventually};

const REFUND: &str = "UPDATE orders SET status = 'refunded' WHERE id = 2";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

async fn reference() -> Gateway {
    let policy = repo("examples/policies/reference.yaml");
    Gateway::seeded(&["--policy", policy.to_str().unwrap()])
        .await
        .unwrap()
}

/// The SQLSTATE, message and hint of a failed statement.
fn refusal(e: &tokio_postgres::Error) -> (String, String, String) {
    let db = e.as_db_error().expect("a server error");
    (
        db.code().code().to_owned(),
        db.message().to_owned(),
        db.hint().unwrap_or_default().to_owned(),
    )
}

/// The approval id named in an SL001 message.
fn approval_id(message: &str) -> String {
    let after = message
        .split("approval request ")
        .nth(1)
        .unwrap_or_else(|| panic!("no approval id in {message:?}"));
    after.split_whitespace().next().unwrap().to_owned()
}

async fn order_status(gw: &Gateway, id: i32) -> String {
    let db = gw.db.as_ref().unwrap();
    let (direct, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    direct
        .query_one("SELECT status FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

async fn set_status(gw: &Gateway, id: i32, status: &str) {
    let db = gw.db.as_ref().unwrap();
    let (direct, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    direct
        .execute(
            "UPDATE orders SET status = $2 WHERE id = $1",
            &[&id, &status],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_approved_statement_runs_once_and_only_that_statement() {
    let gw = reference().await;
    set_status(&gw, 2, "paid").await;
    let c = gw.connect("approvals-contract").await.unwrap();
    let e = c.simple_query(REFUND).await.unwrap_err();
    let (code, message, hint) = refusal(&e);
    assert_eq!(code, "SL001", "{message}");
    let id = approval_id(&message);
    let api = gw.api();
    let url = format!("{}/api/v1/approvals/{id}", gw.ready().api_url);
    assert!(hint.contains(&url), "hint {hint:?} should name {url}");
    assert_eq!(order_status(&gw, 2).await, "paid", "nothing ran yet");

    // Sending it again before approval names the same pending request.
    let e = c.simple_query(REFUND).await.unwrap_err();
    assert_eq!(approval_id(&refusal(&e).1), id);

    let pending = api.get("/api/v1/approvals?status=pending").await.unwrap();
    let listed: Vec<&str> = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(listed, vec![id.as_str()]);
    let shown = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["statement"], REFUND);
    assert_eq!(shown["identity"], "agent");
    assert_eq!(shown["policy"], "reference");
    assert_eq!(shown["rule"], "writes-need-approval");

    let (status, approved) = api
        .post(
            &format!("/api/v1/approvals/{id}/approve"),
            &json!({"reason": "customer refund ticket 42"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["history"][0]["actor"], "admin");
    assert_eq!(approved["history"][0]["channel"], "api");

    // A different statement is not covered by the approval.
    let other = "UPDATE orders SET status = 'refunded' WHERE id = 3";
    let e = c.simple_query(other).await.unwrap_err();
    let (code, message, _) = refusal(&e);
    assert_eq!(code, "SL001");
    assert_ne!(approval_id(&message), id);
    assert_ne!(order_status(&gw, 3).await, "refunded");

    // The approved statement runs, once.
    c.simple_query(REFUND).await.unwrap();
    assert_eq!(order_status(&gw, 2).await, "refunded");
    set_status(&gw, 2, "paid").await;
    let e = c.simple_query(REFUND).await.unwrap_err();
    let (code, message, _) = refusal(&e);
    assert_eq!(code, "SL001");
    assert_ne!(
        approval_id(&message),
        id,
        "a used approval does not run twice"
    );
    assert_eq!(order_status(&gw, 2).await, "paid");

    let used = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    assert!(used["consumed_at"].is_string(), "{used}");

    // The statement that ran carries its approval id in the session record.
    drop(c);
    let session = api
        .ended_session("approvals-contract", Duration::from_secs(20))
        .await
        .unwrap();
    let events = eventually(Duration::from_secs(20), || async {
        let ev = api.events(session["id"].as_str().unwrap()).await?;
        let ran: Vec<Value> = ev
            .into_iter()
            .filter(|e| e["approval_id"] == id.as_str() && e["sqlstate"].is_null())
            .collect();
        anyhow::ensure!(!ran.is_empty(), "not recorded yet");
        Ok(ran)
    })
    .await
    .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["decision"], "approval");
    assert_eq!(events[0]["text"], REFUND);
}

#[tokio::test]
async fn only_approvers_decide_and_a_decision_is_final() {
    let gw = reference().await;
    let c = gw.connect("approvals-identity").await.unwrap();
    let id = approval_id(&refusal(&c.simple_query(REFUND).await.unwrap_err()).1);
    let api = gw.api();
    let (status, _) = api
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The demo agent's own token cannot approve anything (no approver role),
    // and a denial of an approved request is refused.
    let agent_api = Api::new(&gw.ready().api_url, &gw.ready().agent_token);
    let (status, _) = agent_api
        .post(
            &format!("/api/v1/approvals/{id}/deny"),
            &json!({"reason": "no"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    let (status, body) = api
        .post(
            &format!("/api/v1/approvals/{id}/deny"),
            &json!({"reason": "late"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    // Neither refused call touched the approval: it is still unused.
    let shown = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    assert!(shown["consumed_at"].is_null());
}

#[tokio::test]
async fn a_denied_request_does_not_run_and_records_the_reason() {
    let gw = reference().await;
    set_status(&gw, 2, "paid").await;
    let c = gw.connect("approvals-deny").await.unwrap();
    let id = approval_id(&refusal(&c.simple_query(REFUND).await.unwrap_err()).1);
    let api = gw.api();
    let (status, body) = api
        .post(&format!("/api/v1/approvals/{id}/deny"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 400, "a denial needs a reason: {body}");
    let (status, denied) = api
        .post(
            &format!("/api/v1/approvals/{id}/deny"),
            &json!({"reason": "not this one"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{denied}");
    assert_eq!(denied["state"], "denied");
    assert_eq!(denied["history"][0]["action"], "deny");
    assert_eq!(denied["history"][0]["reason"], "not this one");
    let (status, _) = api
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 409, "a denial is final");
    let e = c.simple_query(REFUND).await.unwrap_err();
    let (code, message, _) = refusal(&e);
    assert_eq!(code, "SL001");
    assert_ne!(approval_id(&message), id);
    assert_eq!(order_status(&gw, 2).await, "paid");
    let (status, _) = api
        .post("/api/v1/approvals/no-such-id/approve", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 404);
}
