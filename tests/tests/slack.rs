//! Slack as an approval channel, against a faithful fake of the Slack Web
//! API: requests are posted with Approve / Deny buttons, signed clicks
//! decide them, the message is updated once decided, and every forged,
//! stale, replayed or unauthorised click is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_control_plane::approvals::slack::sign;
use sluice_e2e::gateway::{Gateway, eventually};
use sluice_e2e::slack::{FakeSlack, User};

const BOT_TOKEN: &str = "xoxb-1111-2222-test";
const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const REFUND: &str = "UPDATE orders SET status = 'refunded' WHERE id = 2";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

struct Setup {
    gw: Gateway,
    slack: FakeSlack,
    _files: tempfile::TempDir,
}

/// A gateway whose reference policy needs an approver of group `dba`,
/// with requests lapsing after `expires`, posting to the fake Slack.
async fn setup(expires: &str) -> Setup {
    let slack = FakeSlack::start(BOT_TOKEN).await.unwrap();
    slack.add_user(
        "U0BOB",
        User {
            email: "bob@example.com".into(),
            confirmed: true,
        },
    );
    slack.add_user(
        "U0EVE",
        User {
            email: "eve@example.com".into(),
            confirmed: true,
        },
    );
    slack.add_user(
        "U0MAL",
        User {
            email: "mallory@example.com".into(),
            confirmed: false,
        },
    );
    let files = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(repo("examples/policies/reference.yaml")).unwrap();
    let old = "  expires_after: 15m\n";
    assert!(source.contains(old));
    let policy = source.replace(
        old,
        &format!("  expires_after: {expires}\n  approvers: [dba]\n"),
    );
    let policy_file = files.path().join("policy.yaml");
    std::fs::write(&policy_file, policy).unwrap();
    let config = format!(
        r#"[slack]
bot_token = "{BOT_TOKEN}"
signing_secret = "{SIGNING_SECRET}"
channel = "C0APPROVALS"
api_url = "{url}"

[[slack.approvers]]
identity = "alice"
groups = ["dba"]
slack_user = "U0ALICE"

[[slack.approvers]]
identity = "bob"
groups = ["dba"]
email = "bob@example.com"

[[slack.approvers]]
identity = "eve"
groups = ["developers"]
email = "eve@example.com"

[[slack.approvers]]
identity = "mallory"
groups = ["dba"]
email = "mallory@example.com"

[[slack.approvers]]
identity = "agent"
groups = ["dba"]
slack_user = "U0AGENT"
"#,
        url = slack.url
    );
    let slack_file = files.path().join("slack.toml");
    std::fs::write(&slack_file, config).unwrap();
    let gw = Gateway::seeded(&[
        "--policy",
        policy_file.to_str().unwrap(),
        "--approvals-config",
        slack_file.to_str().unwrap(),
    ])
    .await
    .unwrap();
    Setup {
        gw,
        slack,
        _files: files,
    }
}

fn approval_id(e: &tokio_postgres::Error) -> String {
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "SL001");
    let m = db.message();
    m.split("approval request ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no id in {m:?}"))
        .to_owned()
}

/// The form body Slack sends for a click on `action` by `user`.
fn click_body(user: &str, action: &str, id: &str) -> String {
    click_body_with_trigger(user, action, id, "")
}

fn form(payload: &Value) -> String {
    format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
    )
}

/// A click carrying the trigger id Slack hands out with it.
fn click_body_with_trigger(user: &str, action: &str, id: &str, trigger: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "trigger_id": trigger,
        "user": {"id": user, "username": user},
        "actions": [{"action_id": action, "block_id": "sluice_decision", "value": id, "type": "button",
                     "action_ts": format!("{}.000100", now())}],
        "channel": {"id": "C0APPROVALS"},
    });
    format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
    )
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The form body Slack sends when `user` submits the Deny modal `view`
/// (as opened) with `reason` typed in.
fn submission_body(user: &str, view: &Value, reason: &str) -> String {
    let block = view["blocks"][0]["block_id"].as_str().unwrap();
    let action = view["blocks"][0]["element"]["action_id"].as_str().unwrap();
    form(&json!({
        "type": "view_submission",
        "user": {"id": user, "username": user},
        "view": {
            "id": "V0000001",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {"values": {block: {action: {"type": "plain_text_input", "value": reason}}}},
        },
    }))
}

/// Signs and delivers `body` now; returns the status and the whole answer.
async fn deliver_signed(gw: &Gateway, body: &str) -> (u16, Value) {
    let ts = now().to_string();
    let sig = sign(SIGNING_SECRET, &ts, body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/integrations/slack/interactions",
            gw.ready().api_url
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Posts `body` to the interaction endpoint with the given timestamp and
/// signature; returns the status and the text Slack would show.
async fn deliver(gw: &Gateway, body: &str, ts: &str, signature: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/integrations/slack/interactions",
            gw.ready().api_url
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (status, v["text"].as_str().unwrap_or_default().to_owned())
}

/// A correctly signed, fresh click.
async fn click(gw: &Gateway, user: &str, action: &str, id: &str) -> (u16, String) {
    let body = click_body(user, action, id);
    let ts = now().to_string();
    let sig = sign(SIGNING_SECRET, &ts, body.as_bytes());
    deliver(gw, &body, &ts, &sig).await
}

async fn state(gw: &Gateway, id: &str) -> Value {
    gw.api()
        .get(&format!("/api/v1/approvals/{id}"))
        .await
        .unwrap()
}

/// Waits for the request's message to be posted and returns it.
async fn posted(slack: &FakeSlack, id: &str) -> Value {
    eventually(Duration::from_secs(10), || async {
        slack
            .calls_of("chat.postMessage")
            .into_iter()
            .map(|c| c.body)
            .find(|b| b.to_string().contains(id))
            .ok_or_else(|| anyhow::anyhow!("not posted yet"))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_slack_click_approves_and_the_message_is_updated() {
    let s = setup("15m").await;
    let c = s.gw.connect("slack-approve").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    let msg = posted(&s.slack, &id).await;
    assert_eq!(msg["channel"], "C0APPROVALS");
    let text = msg["blocks"].to_string();
    for fact in [
        "agent",
        "demo",
        "refunded",
        "reference",
        "writes-need-approval",
        "expires",
    ] {
        assert!(
            text.contains(fact),
            "the message should show {fact}: {text}"
        );
    }
    let buttons = msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap()["elements"]
        .clone();
    assert_eq!(buttons[0]["action_id"], "sluice_approve");
    assert_eq!(buttons[1]["action_id"], "sluice_deny");
    assert_eq!(buttons[0]["value"], id.as_str());

    // Alice is linked explicitly and in the approver group.
    let (status, text) = click(&s.gw, "U0ALICE", "sluice_approve", &id).await;
    assert_eq!(status, 200);
    assert!(text.contains("approved"), "{text}");
    let a = state(&s.gw, &id).await;
    assert_eq!(a["state"], "approved");
    assert_eq!(a["history"][0]["actor"], "alice");
    assert_eq!(a["history"][0]["channel"], "slack");
    let updated = eventually(Duration::from_secs(10), || async {
        s.slack
            .calls_of("chat.update")
            .into_iter()
            .map(|c| c.body)
            .find(|b| b.to_string().contains(&id))
            .ok_or_else(|| anyhow::anyhow!("not updated yet"))
    })
    .await
    .unwrap();
    assert_eq!(updated["channel"], "C0APPROVALS");
    assert!(updated["ts"].is_string());
    assert!(
        !updated["blocks"].to_string().contains("sluice_approve"),
        "no buttons once decided"
    );
    assert!(updated["blocks"].to_string().contains("approved"));
    c.simple_query(REFUND).await.unwrap();
}

#[tokio::test]
async fn email_mapped_users_decide_and_approver_groups_bind_every_channel() {
    let s = setup("15m").await;
    let c = s.gw.connect("slack-deny").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    posted(&s.slack, &id).await;
    // Bob is recognised by his confirmed email (users.info) and denies,
    // giving his reason in the modal Deny opens.
    deny_with_reason(&s, "U0BOB", &id, "not during the freeze").await;
    assert_eq!(state(&s.gw, &id).await["state"], "denied");
    assert!(
        s.slack
            .calls_of("users.info")
            .iter()
            .any(|c| c.body["user"] == "U0BOB"),
        "the email came from users.info"
    );
    assert_eq!(state(&s.gw, &id).await["history"][0]["actor"], "bob");

    // The policy's approver groups bind the REST API too.
    let other = "UPDATE orders SET status = 'refunded' WHERE id = 3";
    let id2 = approval_id(&c.simple_query(other).await.unwrap_err());
    posted(&s.slack, &id2).await;
    let (status, _) =
        s.gw.api()
            .post(
                &format!("/api/v1/approvals/{id2}/deny"),
                &json!({"reason": "no"}),
            )
            .await
            .unwrap();
    // The admin is not in group dba.
    assert_eq!(status, 403);
    // Each decided request's message is updated exactly once.
    let (status, _) = click(&s.gw, "U0ALICE", "sluice_approve", &id2).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), || async {
        let n = s
            .slack
            .calls_of("chat.update")
            .iter()
            .filter(|c| c.body.to_string().contains(&id2))
            .count();
        anyhow::ensure!(n == 1, "updates: {n}");
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn forged_stale_replayed_and_unauthorised_clicks_are_refused() {
    let s = setup("15m").await;
    let c = s.gw.connect("slack-negative").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    posted(&s.slack, &id).await;
    let body = click_body("U0ALICE", "sluice_approve", &id);
    let ts = now().to_string();

    // Bad signature: another secret, or none.
    let forged = sign("not-the-secret", &ts, body.as_bytes());
    assert_eq!(deliver(&s.gw, &body, &ts, &forged).await.0, 401);
    assert_eq!(deliver(&s.gw, &body, &ts, "").await.0, 401);
    // A valid signature over another body.
    let sig = sign(SIGNING_SECRET, &ts, body.as_bytes());
    let tampered = click_body(
        "U0ALICE",
        "sluice_approve",
        "01a00000-0000-7000-8000-000000000000",
    );
    assert_eq!(deliver(&s.gw, &tampered, &ts, &sig).await.0, 401);
    // Stale: correctly signed, but six minutes old.
    let old = (now() - 360).to_string();
    let stale = sign(SIGNING_SECRET, &old, body.as_bytes());
    assert_eq!(deliver(&s.gw, &body, &old, &stale).await.0, 401);

    // Self-approval: the agent's own Slack user.
    let (status, text) = click(&s.gw, "U0AGENT", "sluice_approve", &id).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("Not recorded") && text.contains("made it"),
        "{text}"
    );
    // Outside the approver group.
    let (_, text) = click(&s.gw, "U0EVE", "sluice_approve", &id).await;
    assert!(
        text.contains("Not recorded") && text.contains("dba"),
        "{text}"
    );
    // An unconfirmed email maps to nobody; an unknown user neither.
    let (_, text) = click(&s.gw, "U0MAL", "sluice_approve", &id).await;
    assert!(text.contains("not linked"), "{text}");
    let (_, text) = click(&s.gw, "U0NOBODY", "sluice_approve", &id).await;
    assert!(text.contains("not linked"), "{text}");
    assert_eq!(
        state(&s.gw, &id).await["state"],
        "pending",
        "nothing was decided"
    );

    // The genuine click works once; its replay is refused.
    let (status, text) = deliver(&s.gw, &body, &ts, &sig).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("approved"), "{text}");
    let (status, _) = deliver(&s.gw, &body, &ts, &sig).await;
    assert_eq!(status, 401, "a replayed click is refused");
    assert_eq!(
        state(&s.gw, &id).await["history"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_slack_approval_after_expiry_is_refused() {
    let s = setup("1s").await;
    let c = s.gw.connect("slack-expiry").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    posted(&s.slack, &id).await;
    eventually(Duration::from_secs(10), || async {
        let a = s.gw.api().get(&format!("/api/v1/approvals/{id}")).await?;
        anyhow::ensure!(a["state"] == "expired", "{a}");
        Ok(())
    })
    .await
    .unwrap();
    let (status, text) = click(&s.gw, "U0ALICE", "sluice_approve", &id).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("Not recorded") && text.contains("expired"),
        "{text}"
    );
    assert_eq!(state(&s.gw, &id).await["state"], "expired");
    // The resent statement does not run on the lapsed request.
    let again = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    assert_ne!(again, id);
}

/// Clicks Deny as `user`, checks the modal that opens, and submits it with
/// `reason`.
async fn deny_with_reason(s: &Setup, user: &str, id: &str, reason: &str) {
    let before = s.slack.calls_of("views.open").len();
    let trigger = s.slack.trigger();
    let body = click_body_with_trigger(user, "sluice_deny", id, &trigger);
    let (status, answer) = deliver_signed(&s.gw, &body).await;
    assert_eq!(status, 200, "{answer}");
    let opened = s.slack.calls_of("views.open");
    assert_eq!(opened.len(), before + 1, "Deny opens one modal");
    let call = &opened[before].body;
    assert_eq!(call["trigger_id"], trigger.as_str());
    let view = &call["view"];
    assert_eq!(view["type"], "modal");
    assert_eq!(view["private_metadata"], id);
    assert_eq!(
        state(&s.gw, id).await["state"],
        "pending",
        "nothing is decided before the reason is given"
    );
    let (status, answer) = deliver_signed(&s.gw, &submission_body(user, view, reason)).await;
    assert_eq!(status, 200);
    assert!(
        answer.is_null(),
        "an empty answer closes the modal: {answer}"
    );
}

#[tokio::test]
async fn slack_deny_asks_for_a_reason_and_records_it() {
    let s = setup("15m").await;
    let c = s.gw.connect("slack-deny-reason").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    posted(&s.slack, &id).await;

    // A Deny click without a valid trigger id opens nothing and decides
    // nothing (the fake refuses it as Slack would).
    let (_, text) = click(&s.gw, "U0ALICE", "sluice_deny", &id).await;
    assert!(text.contains("Not recorded"), "{text}");
    assert!(s.slack.calls_of("views.open").is_empty());

    deny_with_reason(&s, "U0ALICE", &id, "refunds go through the billing team").await;
    let a = state(&s.gw, &id).await;
    assert_eq!(a["state"], "denied");
    assert_eq!(a["history"][0]["actor"], "alice");
    assert_eq!(a["history"][0]["action"], "deny");
    assert_eq!(a["history"][0]["channel"], "slack");
    assert_eq!(
        a["history"][0]["reason"],
        "refunds go through the billing team"
    );
    let updated = eventually(Duration::from_secs(10), || async {
        s.slack
            .calls_of("chat.update")
            .into_iter()
            .map(|c| c.body)
            .find(|b| b.to_string().contains(&id))
            .ok_or_else(|| anyhow::anyhow!("not updated yet"))
    })
    .await
    .unwrap();
    let blocks = updated["blocks"].to_string();
    assert!(blocks.contains("denied"), "{blocks}");
    assert!(
        blocks.contains("refunds go through the billing team"),
        "{blocks}"
    );
    // The audit record of the approval carries the reason too.
    let record = s.gw.api().events(&id).await.unwrap();
    assert!(
        record.iter().any(|e| e["action"] == "deny"
            && e["reason"] == "refunds go through the billing team"
            && e["actor"] == "alice"),
        "{record:?}"
    );

    // A submission for a request already decided shows why in the modal.
    let view = sluice_control_plane::approvals::slack::deny_modal(&id);
    let (status, answer) = deliver_signed(&s.gw, &submission_body("U0BOB", &view, "again")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response_action"], "errors", "{answer}");
    assert!(
        answer["errors"]["sluice_reason"]
            .as_str()
            .unwrap()
            .contains("Not recorded"),
        "{answer}"
    );
    // A submission without a reason is refused (Slack requires the field,
    // a forged one gets nothing).
    let id2 = approval_id(
        &c.simple_query("UPDATE orders SET status = 'refunded' WHERE id = 3")
            .await
            .unwrap_err(),
    );
    let view = sluice_control_plane::approvals::slack::deny_modal(&id2);
    let (_, answer) = deliver_signed(&s.gw, &submission_body("U0ALICE", &view, "  ")).await;
    assert!(answer.to_string().contains("Not recorded"), "{answer}");
    assert_eq!(state(&s.gw, &id2).await["state"], "pending");
}
