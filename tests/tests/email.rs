//! Email as an approval channel, against a real SMTP server (aiosmtpd):
//! each eligible approver is mailed a link of its own; opening it only
//! shows a confirmation page, its form decides once, and reused, expired,
//! altered or unknown-approver links are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sluice_e2e::gateway::{Gateway, eventually};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const REFUND: &str = "UPDATE orders SET status = 'refunded' WHERE id = 2";
const PUBLIC: &str = "https://sluice.example.test";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// aiosmtpd printing every received message to its stdout, which is kept.
struct SmtpSink {
    port: u16,
    out: Arc<Mutex<String>>,
    _child: tokio::process::Child,
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new("python3")
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd)");
        let out = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = out.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        eventually(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            Ok(())
        })
        .await
        .expect("aiosmtpd listens");
        SmtpSink {
            port,
            out,
            _child: child,
        }
    }

    /// Every message received so far, headers and body (transfer-decoded).
    fn messages(&self) -> Vec<String> {
        let out = self.out.lock().unwrap().clone();
        out.split("---------- MESSAGE FOLLOWS ----------")
            .skip(1)
            .filter_map(|m| m.split("------------ END MESSAGE ------------").next())
            .map(decode_qp)
            .collect()
    }
}

/// Undoes quoted-printable soft breaks and escapes.
fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Setup {
    gw: Gateway,
    smtp: SmtpSink,
    _files: tempfile::TempDir,
}

async fn setup(expires: &str) -> Setup {
    let smtp = SmtpSink::start().await;
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
        r#"[email]
smtp_host = "127.0.0.1"
smtp_port = {port}
tls = "none"
from = "Sluice <sluice@example.test>"
public_url = "{PUBLIC}"

[[email.approvers]]
identity = "alice"
email = "alice@example.test"
groups = ["dba"]

[[email.approvers]]
identity = "bob"
email = "bob@example.test"
groups = ["dba"]

[[email.approvers]]
identity = "eve"
email = "eve@example.test"
groups = ["developers"]

[[email.approvers]]
identity = "agent"
email = "agent@example.test"
groups = ["dba"]
"#,
        port = smtp.port
    );
    let file = files.path().join("email.toml");
    std::fs::write(&file, config).unwrap();
    let gw = Gateway::seeded(&[
        "--policy",
        policy_file.to_str().unwrap(),
        "--approvals-config",
        file.to_str().unwrap(),
    ])
    .await
    .unwrap();
    Setup {
        gw,
        smtp,
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

/// Waits for the mail about `id` to `to` and returns it.
async fn mail_to(smtp: &SmtpSink, to: &str, id: &str) -> String {
    eventually(Duration::from_secs(20), || async {
        smtp.messages()
            .into_iter()
            .find(|m| m.contains(&format!("To: {to}")) && m.contains(id))
            .ok_or_else(|| anyhow::anyhow!("no mail to {to} yet"))
    })
    .await
    .unwrap()
}

/// The link token in a mail (checked to point at the public URL).
fn token_in(mail: &str) -> String {
    let prefix = format!("{PUBLIC}/approvals/email/");
    let line = mail
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no link in {mail}"));
    line[prefix.len()..].trim().to_owned()
}

async fn open(gw: &Gateway, token: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}/approvals/email/{token}", gw.ready().api_url))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn submit(gw: &Gateway, token: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/approvals/email/{token}", gw.ready().api_url))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn state(gw: &Gateway, id: &str) -> Value {
    gw.api()
        .get(&format!("/api/v1/approvals/{id}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_emailed_link_confirms_then_approves_once() {
    let s = setup("15m").await;
    let c = s.gw.connect("email-approve").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    let mail = mail_to(&s.smtp, "alice@example.test", &id).await;
    assert!(
        mail.contains("From: Sluice <sluice@example.test>"),
        "{mail}"
    );
    assert!(
        mail.contains("refunded") && mail.contains("agent"),
        "{mail}"
    );
    let token = token_in(&mail);
    // Bob gets a link of his own; the requester and non-approvers get none.
    let bob = token_in(&mail_to(&s.smtp, "bob@example.test", &id).await);
    assert_ne!(bob, token);
    let to_all = s.smtp.messages().join("\n");
    assert!(
        !to_all.contains("To: eve@example.test"),
        "eve is not in dba"
    );
    assert!(
        !to_all.contains("To: agent@example.test"),
        "no self-approval mail"
    );

    // Opening the link (as a mail scanner would, twice) decides nothing.
    for _ in 0..2 {
        let (status, page) = open(&s.gw, &token).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains("alice") && page.contains("refunded"),
            "{page}"
        );
        assert!(page.contains("method=\"post\""), "{page}");
    }
    assert_eq!(state(&s.gw, &id).await["state"], "pending");

    let (status, page) = submit(&s.gw, &token, &[("decision", "approve")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("approved"), "{page}");
    let a = state(&s.gw, &id).await;
    assert_eq!(a["state"], "approved");
    assert_eq!(a["history"][0]["actor"], "alice");
    assert_eq!(a["history"][0]["channel"], "email");
    c.simple_query(REFUND).await.unwrap();

    // The used link is refused, opened or submitted.
    let (status, page) = open(&s.gw, &token).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("already used"), "{page}");
    let (status, _) = submit(&s.gw, &token, &[("decision", "approve")]).await;
    assert_eq!(status, 409);
    assert_eq!(
        state(&s.gw, &id).await["history"].as_array().unwrap().len(),
        1,
        "one vote, nothing more"
    );
}

#[tokio::test]
async fn a_denial_needs_a_reason_and_is_final() {
    let s = setup("15m").await;
    let c = s.gw.connect("email-deny").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    let token = token_in(&mail_to(&s.smtp, "bob@example.test", &id).await);
    let (status, _) = submit(&s.gw, &token, &[("decision", "deny")]).await;
    assert_eq!(status, 400, "a denial without a reason is not taken");
    let (status, _) = submit(&s.gw, &token, &[("decision", "drop table")]).await;
    assert_eq!(status, 400);
    assert_eq!(state(&s.gw, &id).await["state"], "pending");
    let (status, page) = submit(
        &s.gw,
        &token,
        &[("decision", "deny"), ("reason", "<b>not today</b>")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let a = state(&s.gw, &id).await;
    assert_eq!(a["state"], "denied");
    assert_eq!(a["history"][0]["actor"], "bob");
    assert_eq!(a["history"][0]["reason"], "<b>not today</b>");
    // Alice's own link now meets a decided request.
    let alice = token_in(&mail_to(&s.smtp, "alice@example.test", &id).await);
    let (status, page) = submit(&s.gw, &alice, &[("decision", "approve")]).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("already denied"), "{page}");
}

#[tokio::test]
async fn altered_and_foreign_links_are_refused() {
    let s = setup("15m").await;
    let c = s.gw.connect("email-forged").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    let token = token_in(&mail_to(&s.smtp, "bob@example.test", &id).await);
    let (payload, tag) = token.split_once('.').unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["i"], "bob");
    // Bob's link rewritten to decide as alice, or for eve (in no group).
    for who in ["alice", "eve", "mallory"] {
        let mut forged = claims.clone();
        forged["i"] = Value::from(who);
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let (status, page) = submit(&s.gw, &format!("{p}.{tag}"), &[("decision", "approve")]).await;
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("not valid"), "{page}");
    }
    // The same for another request.
    let mut other = claims.clone();
    other["a"] = Value::from("apr_other");
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
    let (status, _) = open(&s.gw, &format!("{p}.{tag}")).await;
    assert_eq!(status, 403);
    for junk in ["x", "x.y", "%3Cscript%3E"] {
        let (status, _) = open(&s.gw, junk).await;
        assert_eq!(status, 403, "{junk}");
    }
    assert_eq!(state(&s.gw, &id).await["state"], "pending");
    assert!(
        state(&s.gw, &id).await["history"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let s = setup("2s").await;
    let c = s.gw.connect("email-expiry").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    let token = token_in(&mail_to(&s.smtp, "alice@example.test", &id).await);
    let page = eventually(Duration::from_secs(20), || async {
        let (status, page) = open(&s.gw, &token).await;
        anyhow::ensure!(status == 410, "{status}");
        Ok(page)
    })
    .await
    .unwrap();
    assert!(page.contains("expired"), "{page}");
    let (status, _) = submit(&s.gw, &token, &[("decision", "approve")]).await;
    assert_eq!(status, 410);
    let a = state(&s.gw, &id).await;
    assert_eq!(a["state"], "expired");
    assert!(
        a["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] != "alice"),
        "{a}"
    );
}

/// The `approval_refused` records so far: (actor, approval id, reason).
async fn refusals(gw: &Gateway) -> Vec<(String, String, String)> {
    let api = gw.api();
    let listed = api.get("/api/v1/sessions?kind=approval").await.unwrap();
    let mut out = Vec::new();
    for s in listed["items"].as_array().unwrap() {
        let reason = s["end_reason"].as_str().unwrap_or_default();
        if !reason.starts_with("approval_refused") {
            continue;
        }
        for e in api.events(s["id"].as_str().unwrap()).await.unwrap() {
            assert_eq!(e["kind"], "approval_refused", "{e}");
            assert_eq!(e["channel"], "email", "{e}");
            out.push((
                e["actor"].as_str().unwrap().to_owned(),
                e["approval_id"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn refused_links_are_recorded_with_who_and_why() {
    let s = setup("15m").await;
    let c = s.gw.connect("email-refusals").await.unwrap();
    let id = approval_id(&c.simple_query(REFUND).await.unwrap_err());
    let token = token_in(&mail_to(&s.smtp, "bob@example.test", &id).await);
    assert!(refusals(&s.gw).await.is_empty(), "nothing refused yet");

    // Bob's link altered to vote as alice: refused and recorded under the
    // claimed name, without the token.
    let (payload, tag) = token.split_once('.').unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["i"] = Value::from("alice");
    let forged = format!(
        "{}.{tag}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let (status, _) = submit(&s.gw, &forged, &[("decision", "approve")]).await;
    assert_eq!(status, 403);
    // Bob's own link, used once, then reused.
    let (status, _) = submit(&s.gw, &token, &[("decision", "approve")]).await;
    assert_eq!(status, 200);
    let (status, _) = submit(&s.gw, &token, &[("decision", "approve")]).await;
    assert_eq!(status, 409);
    // A link for a request already decided (alice's own, after bob's vote).
    let alice = token_in(&mail_to(&s.smtp, "alice@example.test", &id).await);
    let (status, _) = submit(&s.gw, &alice, &[("decision", "approve")]).await;
    assert_eq!(status, 409);

    let recorded = eventually(Duration::from_secs(10), || async {
        let r = refusals(&s.gw).await;
        anyhow::ensure!(r.len() == 3, "{r:?}");
        Ok(r)
    })
    .await
    .unwrap();
    let find = |who: &str, why: &str| {
        recorded
            .iter()
            .any(|(actor, a, reason)| actor == who && a == &id && reason.contains(why))
    };
    assert!(find("alice", "not valid"), "{recorded:?}");
    assert!(find("bob", "already used"), "{recorded:?}");
    assert!(find("alice", "already approved"), "{recorded:?}");
    let all = format!("{recorded:?}");
    assert!(!all.contains(tag), "the link's signature is never recorded");
}
