//! Approval latency: from a signed Slack "Approve" click hitting the
//! interaction endpoint to the held statement's first result message on the
//! client's connection. `sluice dev` with the reference policy in hold mode,
//! a fake Slack Web API, one raw client connection; prints p50, p90, p99 and
//! max over N approvals.
//!
//!     cargo run --release -p sluice-e2e --example approval_bench -- 200
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_control_plane::approvals::slack::sign;
use sluice_e2e::gateway::Gateway;
use sluice_e2e::slack::FakeSlack;
use sluice_e2e::wire::{self, Wire};

const SECRET: &str = "bench-signing-secret";

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let slack = FakeSlack::start("xoxb-bench").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/reference.yaml"
    ))
    .unwrap();
    let policy = source.replace(
        "  mode: answer          # refuse at once with SQLSTATE SL001; resend once approved\n",
        "  mode: hold\n",
    );
    assert!(policy.contains("mode: hold"));
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    std::fs::write(
        dir.path().join("slack.toml"),
        format!(
            "[slack]\nbot_token = \"xoxb-bench\"\nsigning_secret = \"{SECRET}\"\nchannel = \"C0BENCH\"\napi_url = \"{}\"\n\n\
             [[slack.approvers]]\nidentity = \"approver\"\nslack_user = \"U0BENCH\"\n",
            slack.url
        ),
    )
    .unwrap();
    let gw = Gateway::seeded(&[
        "--policy",
        dir.path().join("policy.yaml").to_str().unwrap(),
        "--approvals-config",
        dir.path().join("slack.toml").to_str().unwrap(),
    ])
    .await
    .unwrap();
    let endpoint = format!("{}/integrations/slack/interactions", gw.ready().api_url);
    let http = reqwest::Client::new();
    let mut client = Wire::login(gw.addr(), &gw.ready().agent_token, "demo", "approval-bench")
        .await
        .unwrap()
        .wire;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let sql = format!("UPDATE orders SET status = 'bench-{i}' WHERE id = 2");
        client.send(&wire::query(&sql)).await.unwrap();
        let id = loop {
            let m = client.recv(Duration::from_secs(30)).await.unwrap().unwrap();
            if m.tag == b'N' {
                let text = m.fields().get(&b'M').cloned().unwrap_or_default();
                break text.rsplit('/').next().unwrap().to_owned();
            }
        };
        let payload = json!({"type": "block_actions", "user": {"id": "U0BENCH"},
            "actions": [{"action_id": "sluice_approve", "value": id}]});
        let body = format!(
            "payload={}",
            url::form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                .collect::<String>()
        );
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let sig = sign(SECRET, &ts, body.as_bytes());
        let request = http
            .post(&endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", sig)
            .body(body);
        let started = Instant::now();
        let click = tokio::spawn(request.send());
        let first = client.recv(Duration::from_secs(30)).await.unwrap().unwrap();
        let took = started.elapsed();
        assert_eq!(first.tag, b'C', "the held UPDATE completes: {first:?}");
        client.until_ready(Duration::from_secs(30)).await.unwrap();
        let resp = click.await.unwrap().unwrap();
        assert!(resp.status().is_success());
        samples.push(took);
    }
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "approvals: {n}  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}
