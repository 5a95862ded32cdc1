//! Just-in-time approvals through the real gateway with the reference
//! policy: a write that needs approval is refused with SL001 naming a
//! request; once an approver approves it, exactly that statement, from the
//! same identity on the same target, runs once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::gateway::{Api, Gateway, eventually};
use sluice_e2e::wire::{self, Wire};

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

    // The approval has its own chained record: requested, approved, run.
    let record = api.events(&id).await.unwrap();
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
            ("approval_decision", "run")
        ],
        "{record:?}"
    );
    assert_eq!(record[0]["statement"], REFUND);
    assert_eq!(record[1]["actor"], "admin");
    assert_eq!(record[1]["reason"], "customer refund ticket 42");
    assert_eq!(record[2]["state"], "consumed");
    let verdict = api
        .get(&format!("/api/v1/sessions/{id}/verify"))
        .await
        .unwrap();
    assert_eq!(verdict["status"], "intact", "{verdict}");
    let listed = api.get("/api/v1/sessions?kind=approval").await.unwrap();
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str() && s["end_reason"] == "approval consumed"),
        "{listed}"
    );
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

/// A gateway whose reference policy holds statements instead, with
/// requests lapsing after `expires`.
async fn holding(expires: &str) -> (Gateway, tempfile::NamedTempFile) {
    let source = std::fs::read_to_string(repo("examples/policies/reference.yaml")).unwrap();
    let old = "  mode: answer          # refuse at once with SQLSTATE SL001; resend once approved\n  expires_after: 15m\n";
    assert!(source.contains(old));
    let held = source.replace(old, &format!("  mode: hold\n  expires_after: {expires}\n"));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), held).unwrap();
    let gw = Gateway::seeded(&["--policy", file.path().to_str().unwrap()])
        .await
        .unwrap();
    (gw, file)
}

/// Waits for the "waiting for approval" notice and returns the request id
/// its URL names.
async fn held_id(
    messages: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) -> String {
    loop {
        let m = messages.recv().await.expect("the connection ended");
        if let tokio_postgres::AsyncMessage::Notice(n) = m {
            let text = n.message();
            let url = text
                .strip_prefix("waiting for approval: ")
                .unwrap_or_else(|| panic!("unexpected notice {text:?}"));
            assert_eq!(n.code().code(), "SL001");
            return url.rsplit('/').next().unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn a_held_statement_runs_when_approved_and_fails_when_denied() {
    let (gw, _policy) = holding("15m").await;
    set_status(&gw, 2, "paid").await;
    let (c, mut messages) = gw.connect_with_messages("approvals-hold").await.unwrap();
    let c = std::sync::Arc::new(c);
    let api = gw.api();

    let running = tokio::spawn({
        let c = c.clone();
        async move { c.simple_query(REFUND).await }
    });
    let id = held_id(&mut messages).await;
    assert_eq!(order_status(&gw, 2).await, "paid", "held, not run");
    let shown = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    assert_eq!(shown["mode"], "hold");
    assert_eq!(shown["state"], "pending");
    let (status, body) = api
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    running.await.unwrap().unwrap();
    assert_eq!(order_status(&gw, 2).await, "refunded");
    let used = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    assert!(used["consumed_at"].is_string(), "{used}");

    // Denied: SL002, nothing runs, and the session goes on.
    set_status(&gw, 2, "paid").await;
    let running = tokio::spawn({
        let c = c.clone();
        async move { c.simple_query(REFUND).await }
    });
    let second = held_id(&mut messages).await;
    assert_ne!(second, id, "each held statement gets its own request");
    let (status, body) = api
        .post(
            &format!("/api/v1/approvals/{second}/deny"),
            &json!({"reason": "wrong order"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let e = running.await.unwrap().unwrap_err();
    let (code, message, _) = refusal(&e);
    assert_eq!(code, "SL002", "{message}");
    assert!(message.contains("wrong order"), "{message}");
    assert_eq!(order_status(&gw, 2).await, "paid");
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn a_held_statement_expires_with_sl003() {
    let (gw, _policy) = holding("1s").await;
    set_status(&gw, 2, "paid").await;
    let (c, mut messages) = gw.connect_with_messages("approvals-expiry").await.unwrap();
    let running = tokio::spawn(async move { c.simple_query(REFUND).await });
    let id = held_id(&mut messages).await;
    let e = running.await.unwrap().unwrap_err();
    let (code, message, _) = refusal(&e);
    assert_eq!(code, "SL003", "{message}");
    assert!(message.contains(&id), "{message}");
    // Approving after expiry is refused, and recorded as expired.
    let (status, body) = gw
        .api()
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 409, "{body}");
    let shown = gw
        .api()
        .get(&format!("/api/v1/approvals/{id}"))
        .await
        .unwrap();
    assert_eq!(shown["state"], "expired");
    assert_eq!(order_status(&gw, 2).await, "paid");
}

#[tokio::test]
async fn cancelling_or_disconnecting_withdraws_a_held_statement() {
    let (gw, _policy) = holding("15m").await;
    set_status(&gw, 2, "paid").await;
    let api = gw.api();
    let (c, mut messages) = gw.connect_with_messages("approvals-cancel").await.unwrap();
    let cancel = c.cancel_token();
    let c = std::sync::Arc::new(c);
    let running = tokio::spawn({
        let c = c.clone();
        async move { c.simple_query(REFUND).await }
    });
    let id = held_id(&mut messages).await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = running.await.unwrap().unwrap_err();
    assert_eq!(refusal(&e).0, "57014");
    let withdrawn = eventually(Duration::from_secs(10), || async {
        let a = api.get(&format!("/api/v1/approvals/{id}")).await?;
        anyhow::ensure!(a["state"] == "cancelled", "{a}");
        Ok(a)
    })
    .await
    .unwrap();
    assert_eq!(withdrawn["history"][0]["action"], "cancel");
    c.simple_query("SELECT 1").await.unwrap();

    // A client that hangs up while held withdraws its request too.
    let mut raw = Wire::login(
        gw.addr(),
        &gw.ready().agent_token,
        "demo",
        "approvals-hangup",
    )
    .await
    .unwrap()
    .wire;
    raw.send(&wire::query(REFUND)).await.unwrap();
    let second = loop {
        let m = raw
            .recv(Duration::from_secs(20))
            .await
            .unwrap()
            .expect("the gateway closed the connection");
        if m.tag == b'N' {
            let text = m.fields().get(&b'M').cloned().unwrap_or_default();
            let url = text
                .strip_prefix("waiting for approval: ")
                .unwrap()
                .to_owned();
            break url.rsplit('/').next().unwrap().to_owned();
        }
    };
    drop(raw);
    eventually(Duration::from_secs(10), || async {
        let a = api.get(&format!("/api/v1/approvals/{second}")).await?;
        anyhow::ensure!(a["state"] == "cancelled", "{a}");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(order_status(&gw, 2).await, "paid");
}

/// The refund as an agent's driver sends it: Parse, Bind with the values
/// (tokio-postgres sends them in binary), Execute, Sync.
const REFUND_PARAMS: &str = "UPDATE orders SET status = $1 WHERE id = $2";

#[tokio::test]
async fn an_extended_protocol_statement_is_approved_with_its_parameters() {
    let gw = reference().await;
    set_status(&gw, 2, "paid").await;
    set_status(&gw, 3, "paid").await;
    let c = gw.connect("approvals-extended").await.unwrap();
    let e = c
        .execute(REFUND_PARAMS, &[&"refunded", &2i32])
        .await
        .unwrap_err();
    let (code, message, hint) = refusal(&e);
    assert_eq!(code, "SL001", "{message}");
    let id = approval_id(&message);
    let url = format!("{}/api/v1/approvals/{id}", gw.ready().api_url);
    assert!(hint.contains(&url), "hint {hint:?} should name {url}");
    assert_eq!(order_status(&gw, 2).await, "paid", "nothing ran yet");
    // The refused Execute failed like any failed Execute: the session goes
    // on, extended protocol included.
    let seven: i32 = c
        .query_one("SELECT $1::int4", &[&7i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seven, 7);

    // Approvers see the values the approval is bound to.
    let api = gw.api();
    let shown = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    let statement = shown["statement"].as_str().unwrap();
    assert!(statement.starts_with(REFUND_PARAMS), "{statement}");
    assert!(statement.contains("$1 = 'refunded'"), "{statement}");
    assert!(statement.contains("$2 = \\x00000002"), "{statement}");
    // Resending the same values before approval names the same request.
    let e = c
        .execute(REFUND_PARAMS, &[&"refunded", &2i32])
        .await
        .unwrap_err();
    assert_eq!(approval_id(&refusal(&e).1), id);

    let (status, body) = api
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // The same text with another value is another statement.
    let e = c
        .execute(REFUND_PARAMS, &[&"refunded", &3i32])
        .await
        .unwrap_err();
    let (code, message, _) = refusal(&e);
    assert_eq!(code, "SL001", "{message}");
    assert_ne!(approval_id(&message), id);
    assert_eq!(order_status(&gw, 3).await, "paid");

    // The approved binding runs, once.
    let n = c
        .execute(REFUND_PARAMS, &[&"refunded", &2i32])
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(order_status(&gw, 2).await, "refunded");
    set_status(&gw, 2, "paid").await;
    let e = c
        .execute(REFUND_PARAMS, &[&"refunded", &2i32])
        .await
        .unwrap_err();
    let (code, message, _) = refusal(&e);
    assert_eq!(code, "SL001", "{message}");
    assert_ne!(
        approval_id(&message),
        id,
        "a used approval does not run twice"
    );
    assert_eq!(order_status(&gw, 2).await, "paid");
    let used = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    assert!(used["consumed_at"].is_string(), "{used}");

    // A portal started under an approval is fetched in parts without
    // asking again (the server runs its statement once).
    let mut c = c;
    set_status(&gw, 2, "paid").await;
    set_status(&gw, 3, "paid").await;
    let returning = "UPDATE orders SET status = $1 WHERE id = $2 OR id = $3 RETURNING id";
    let tx = c.transaction().await.unwrap();
    let stmt = tx.prepare(returning).await.unwrap();
    let portal = tx.bind(&stmt, &[&"refunded", &2i32, &3i32]).await.unwrap();
    let e = tx.query_portal(&portal, 1).await.unwrap_err();
    let second = approval_id(&refusal(&e).1);
    tx.rollback().await.unwrap();
    let (status, body) = api
        .post(&format!("/api/v1/approvals/{second}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let tx = c.transaction().await.unwrap();
    let stmt = tx.prepare(returning).await.unwrap();
    let portal = tx.bind(&stmt, &[&"refunded", &2i32, &3i32]).await.unwrap();
    let first = tx.query_portal(&portal, 1).await.unwrap();
    let rest = tx.query_portal(&portal, 1).await.unwrap();
    assert_eq!((first.len(), rest.len()), (1, 1));
    tx.commit().await.unwrap();
    assert_eq!(order_status(&gw, 3).await, "refunded");
}

#[tokio::test]
async fn a_held_extended_protocol_statement_runs_when_approved() {
    let (gw, _policy) = holding("15m").await;
    set_status(&gw, 2, "paid").await;
    let (c, mut messages) = gw
        .connect_with_messages("approvals-hold-extended")
        .await
        .unwrap();
    let c = std::sync::Arc::new(c);
    let api = gw.api();

    let running = tokio::spawn({
        let c = c.clone();
        async move { c.execute(REFUND_PARAMS, &[&"refunded", &2i32]).await }
    });
    let id = held_id(&mut messages).await;
    assert_eq!(order_status(&gw, 2).await, "paid", "held, not run");
    let shown = api.get(&format!("/api/v1/approvals/{id}")).await.unwrap();
    assert_eq!(shown["mode"], "hold");
    assert!(
        shown["statement"]
            .as_str()
            .unwrap()
            .contains("$2 = \\x00000002"),
        "{shown}"
    );
    let (status, body) = api
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(running.await.unwrap().unwrap(), 1);
    assert_eq!(order_status(&gw, 2).await, "refunded");

    // Denied: SL002 at the Execute, nothing runs, and the session goes on.
    set_status(&gw, 2, "paid").await;
    let running = tokio::spawn({
        let c = c.clone();
        async move { c.execute(REFUND_PARAMS, &[&"refunded", &2i32]).await }
    });
    let second = held_id(&mut messages).await;
    assert_ne!(second, id);
    let (status, body) = api
        .post(
            &format!("/api/v1/approvals/{second}/deny"),
            &json!({"reason": "wrong order"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (code, message, _) = refusal(&running.await.unwrap().unwrap_err());
    assert_eq!(code, "SL002", "{message}");
    assert!(message.contains("wrong order"), "{message}");
    assert_eq!(order_status(&gw, 2).await, "paid");
    let seven: i32 = c
        .query_one("SELECT $1::int4", &[&7i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seven, 7);
}
