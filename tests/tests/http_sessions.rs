#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The HTTP gateway's sessions and connections end to end, with the real
//! `sluice dev` binary in front of json-server and httpbin: requests held
//! for approval run once when approved and never when denied or undecided;
//! the gateway speaks TLS with HTTP/2 and HTTP/1.1 by ALPN and refuses
//! plaintext when it may not serve it, and verifies an HTTPS upstream and
//! speaks HTTP/2 to it; bodies larger than it holds stream through unless
//! the decision rests on them; an administrator ends one session; sessions end when idle, revoked or
//! expired, each recorded with its reason in a verifiable chain; a broken
//! upstream costs only the requests sent to it; and targets are reached by
//! host name under the gateway's host suffix.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_e2e::gateway::{Api, Gateway, eventually};
use sluice_e2e::http::{
    Service, broken_upstreams, httpbin, httpbin_h2, json_server, policy_file, problem, target_args,
};

const UPSTREAM_SECRET: &str = "upstream-key-5d1e8b3a07";

/// For `crm` (json-server): reads open, creating a customer held for an
/// approver's decision.
const CRM_HOLD_POLICY: &str = r#"
name: crm-hold
applies_to:
  groups: ["*"]
  targets: [crm]
approval:
  mode: hold
  expires_after: 15m
http:
  default: deny
  rules:
    - name: read-customer-list
      methods: [GET, HEAD]
      path: /customers
      decision: allow
    - name: creating-needs-approval
      methods: [POST]
      path: /customers
      decision: approval
      reason: creating customers is reviewed
  response:
    other_content: pass
"#;

/// For the echo services and the broken upstreams: everything allowed but
/// two paths, one decided on the body and one needing approval.
const ECHO_POLICY: &str = r#"
name: echo
applies_to:
  groups: ["*"]
  targets: [bin, hang, reset, h2bin, untrusted]
approval:
  mode: answer
http:
  default: allow
  rules:
    - name: big-refunds
      methods: [POST]
      path: /anything/refunds
      body: { "$.amount": ">100" }
      decision: approval
    - name: reviewed-uploads
      methods: [PUT]
      path: /anything/reviewed
      decision: approval
  response:
    other_content: pass
"#;

/// `sluice dev` with its HTTP upstreams.
struct Node {
    gw: Gateway,
    /// json-server (`crm`) or httpbin (`bin`).
    upstream: Service,
    _policies: Vec<tempfile::NamedTempFile>,
    http: reqwest::Client,
}

impl Node {
    /// `sluice dev` with json-server as `crm` (`crm == true`) or httpbin as
    /// `bin`, and `extra` flags.
    async fn start(crm: bool, extra: &[String]) -> Self {
        let (name, upstream, auth) = if crm {
            ("crm", json_server().await.unwrap(), "header:X-Api-Key")
        } else {
            ("bin", httpbin().await.unwrap(), "bearer")
        };
        let policies = vec![
            policy_file(CRM_HOLD_POLICY).unwrap(),
            policy_file(ECHO_POLICY).unwrap(),
        ];
        let mut args: Vec<String> = vec!["--no-demo".into()];
        for p in &policies {
            args.extend(["--policy".into(), p.path().display().to_string()]);
        }
        args.extend(target_args(name, &upstream.url, auth, UPSTREAM_SECRET));
        args.extend(extra.iter().cloned());
        let gw = Gateway::with_args(&args).await.unwrap();
        Self {
            gw,
            upstream,
            _policies: policies,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, target: &str, path: &str) -> String {
        format!("{}/http/{target}{path}", self.gw.ready().http_gateway_url)
    }

    fn token(&self) -> String {
        self.gw.ready().agent_token.clone()
    }

    /// `METHOD /http/TARGET/PATH` with `token`, as a task that owns what it
    /// needs (so a held request can wait while the test decides).
    fn send(
        &self,
        token: &str,
        method: &str,
        target: &str,
        path: &str,
        body: Option<Value>,
    ) -> tokio::task::JoinHandle<(StatusCode, HeaderMap, String)> {
        let mut req = self
            .http
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                self.url(target, path),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            (status, headers, resp.text().await.unwrap())
        })
    }

    async fn call(&self, token: &str, method: &str, target: &str, path: &str) -> StatusCode {
        self.send(token, method, target, path, None)
            .await
            .unwrap()
            .0
    }

    /// Customers named `name` in json-server's own data, asked directly.
    async fn customers_named(&self, name: &str) -> usize {
        let all: Vec<Value> = self
            .http
            .get(format!("{}/customers", self.upstream.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.iter().filter(|c| c["name"] == name).count()
    }
}

/// The newest pending approval request on `crm` not in `seen`.
async fn pending(api: &Api, seen: &[String]) -> Value {
    eventually(Duration::from_secs(20), || async {
        let page = api.get("/api/v1/approvals?status=pending").await?;
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["target"] == "crm" && !seen.iter().any(|s| a["id"] == s.as_str()))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no new pending approval yet"))
    })
    .await
    .unwrap()
}

fn assert_problem(status: StatusCode, headers: &HeaderMap, body: &str, want: u16) -> Value {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    problem(body)
}

#[tokio::test]
async fn held_requests_run_once_when_approved_and_never_when_denied_or_undecided() {
    let hold = 8;
    let n = Node::start(true, &["--http-approval-hold".into(), format!("{hold}s")]).await;
    let api = n.gw.api();
    let token = n.token();
    let held = json!({"name": "Held Example", "email": "held@example.com"});

    // Approved while the request waits: it is forwarded, exactly once.
    let waiting = n.send(&token, "POST", "crm", "/customers", Some(held.clone()));
    let first = pending(&api, &[]).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["mode"], "hold", "{first}");
    let shown = first["statement"].as_str().unwrap();
    assert!(shown.starts_with("POST /customers"), "{shown}");
    assert!(
        shown.contains("Held Example"),
        "the approver sees the body: {shown}"
    );
    assert_eq!(n.customers_named("Held Example").await, 0, "held, not sent");
    let (status, body) = api
        .post(&format!("/api/v1/approvals/{first_id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = waiting.await.unwrap();
    assert_eq!(status, 201, "the approved request is forwarded: {body}");
    assert_eq!(n.customers_named("Held Example").await, 1);
    let used = api
        .get(&format!("/api/v1/approvals/{first_id}"))
        .await
        .unwrap();
    assert!(used["consumed_at"].is_string(), "{used}");

    // The same request again asks again (an approval is used once), and a
    // denial answers 403 with the approver's reason; nothing is sent.
    let waiting = n.send(&token, "POST", "crm", "/customers", Some(held.clone()));
    let second = pending(&api, std::slice::from_ref(&first_id)).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .post(
            &format!("/api/v1/approvals/{second_id}/deny"),
            &json!({"reason": "no new customers today"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = waiting.await.unwrap();
    let p = assert_problem(status, &headers, &body, 403);
    assert!(
        p["type"].as_str().unwrap().ends_with("/approval-required"),
        "{p}"
    );
    assert_eq!(p["approval_id"], second_id.as_str(), "{p}");
    assert_eq!(p["rule"], "creating-needs-approval", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("denied"), "{detail}");
    assert!(detail.contains("no new customers today"), "{detail}");
    assert_eq!(n.customers_named("Held Example").await, 1);

    // Nobody decides within the hold: 403 naming the request, which is
    // withdrawn (an approval given later could not release anything).
    let started = Instant::now();
    let waiting = n.send(&token, "POST", "crm", "/customers", Some(held.clone()));
    let third = pending(&api, &[first_id.clone(), second_id.clone()]).await;
    let third_id = third["id"].as_str().unwrap().to_owned();
    let (status, headers, body) = waiting.await.unwrap();
    let waited = started.elapsed();
    let p = assert_problem(status, &headers, &body, 403);
    assert_eq!(p["approval_id"], third_id.as_str(), "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("not decided within {hold}s")) && detail.contains("withdrawn"),
        "{detail}"
    );
    assert!(
        waited >= Duration::from_secs(hold) && waited < Duration::from_secs(hold + 15),
        "answered after {waited:?}"
    );
    eventually(Duration::from_secs(10), || async {
        let a = api.get(&format!("/api/v1/approvals/{third_id}")).await?;
        anyhow::ensure!(a["state"] == "cancelled", "{a}");
        Ok(())
    })
    .await
    .unwrap();
    let (status, _) = api
        .post(&format!("/api/v1/approvals/{third_id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 409, "a withdrawn request cannot be approved");
    assert_eq!(n.customers_named("Held Example").await, 1);

    // The record: the forwarded request carries its approval, the refused
    // ones theirs, and the chain verifies.
    let s = http_session(&api, "crm", None).await;
    let id = s["id"].as_str().unwrap();
    let events = eventually(Duration::from_secs(20), || async {
        let events = api.events(id).await?;
        let posts = events
            .iter()
            .filter(|e| e["kind"] == "statement" && e["http"]["method"] == "POST")
            .count();
        anyhow::ensure!(posts == 3, "{posts} POSTs recorded so far");
        Ok(events)
    })
    .await
    .unwrap();
    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "statement" && e["http"]["status"] == 201)
        .collect();
    assert_eq!(created.len(), 1, "{events:?}");
    assert_eq!(created[0]["approval_id"], first_id.as_str());
    assert_intact(&api, id).await;
}

#[tokio::test]
async fn a_held_request_whose_token_is_revoked_is_never_sent() {
    let n = Node::start(true, &["--http-approval-hold".into(), "20s".into()]).await;
    let api = n.gw.api();
    account(&api, "held-worker").await;
    let (token, token_id) = issue(&api, "held-worker", 600).await;
    let held = json!({"name": "Revoked Example"});
    let waiting = n.send(&token, "POST", "crm", "/customers", Some(held));
    let asked = pending(&api, &[]).await;
    let id = asked["id"].as_str().unwrap().to_owned();
    let s = session_of(&api, &token_id).await;
    revoke(&n, "held-worker", &token_id).await;
    ended(&api, s["id"].as_str().unwrap(), Duration::from_secs(15)).await;
    // Whatever an approver does now, the request is not forwarded: it was
    // refused and withdrawn when its session ended.
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the held request is answered when its session ends")
        .unwrap();
    let p = assert_problem(status, &headers, &body, 403);
    assert!(
        p["detail"].as_str().unwrap().contains("session ended"),
        "{p}"
    );
    let (status, _) = api
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 409, "a withdrawn request cannot be approved");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(n.customers_named("Revoked Example").await, 0);
}

/// The HTTP session of the agent on `target`, other than `not` (waits for
/// it to be recorded).
async fn http_session(api: &Api, target: &str, not: Option<&str>) -> Value {
    eventually(Duration::from_secs(20), || async {
        api.sessions()
            .await?
            .into_iter()
            .find(|s| {
                s["target"] == target && s["protocol"] == "http" && not.is_none_or(|n| s["id"] != n)
            })
            .ok_or_else(|| anyhow::anyhow!("no http session on {target} yet"))
    })
    .await
    .unwrap()
}

/// Waits until session `id` is recorded as ended; returns its record.
async fn ended(api: &Api, id: &str, within: Duration) -> Value {
    eventually(within, || async {
        let s = api.get(&format!("/api/v1/sessions/{id}")).await?;
        anyhow::ensure!(!s["ended_at"].is_null(), "not ended yet: {s}");
        Ok(s)
    })
    .await
    .unwrap()
}

async fn assert_intact(api: &Api, id: &str) {
    let verified = eventually(Duration::from_secs(20), || async {
        let v = api.get(&format!("/api/v1/sessions/{id}/verify")).await?;
        anyhow::ensure!(v["status"] == "intact", "{v}");
        Ok(v)
    })
    .await
    .unwrap();
    assert!(
        verified["gaps"].as_array().unwrap().is_empty(),
        "{verified}"
    );
}

#[tokio::test]
async fn an_idle_session_ends_and_the_next_request_opens_another() {
    let n = Node::start(false, &["--http-session-idle".into(), "2s".into()]).await;
    let api = n.gw.api();
    let token = n.token();
    // Requests closer together than the idle limit share a session.
    for _ in 0..3 {
        assert_eq!(n.call(&token, "GET", "bin", "/get").await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first = http_session(&api, "bin", None).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    let s = ended(&api, &first_id, Duration::from_secs(20)).await;
    assert_eq!(s["end_reason"], "idle", "{s}");
    let events = api.events(&first_id).await.unwrap();
    let requests = events.iter().filter(|e| e["kind"] == "statement").count();
    assert_eq!(requests, 3, "{events:?}");
    assert_intact(&api, &first_id).await;

    // The same token again: a new session.
    assert_eq!(n.call(&token, "GET", "bin", "/get").await, 200);
    let second = http_session(&api, "bin", Some(&first_id)).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["token_id"], first["token_id"]);
}

/// Creates a service account; its tokens' sessions are the agent's.
async fn account(api: &Api, name: &str) {
    let (status, body) = api
        .post(
            "/api/v1/service-accounts",
            &json!({"name": name, "groups": ["agents"]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
}

/// A token for `account` valid `ttl` seconds: (token, id).
async fn issue(api: &Api, account: &str, ttl: u64) -> (String, String) {
    let (status, body) = api
        .post(
            &format!("/api/v1/service-accounts/{account}/tokens"),
            &json!({"ttl_seconds": ttl}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    (
        body["token"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

/// Revokes a token of `account` through the REST API.
async fn revoke(n: &Node, account: &str, token_id: &str) {
    let resp = n
        .http
        .delete(format!(
            "{}/api/v1/service-accounts/{account}/tokens/{token_id}",
            n.gw.ready().api_url
        ))
        .bearer_auth(&n.gw.ready().admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

/// The HTTP session opened by the token `token_id`.
async fn session_of(api: &Api, token_id: &str) -> Value {
    eventually(Duration::from_secs(20), || async {
        api.sessions()
            .await?
            .into_iter()
            .find(|s| s["protocol"] == "http" && s["token_id"] == token_id)
            .ok_or_else(|| anyhow::anyhow!("no http session of token {token_id} yet"))
    })
    .await
    .unwrap()
}

/// A kill reaches requests already under way: one waiting for the
/// upstream's answer is answered at once, and a response still streaming is
/// cut off (httpbin answers `/delay/10` after 10 s, and `/drip` sends its
/// bytes over 10 s).
#[tokio::test]
async fn revoking_the_token_cuts_off_its_requests_in_flight() {
    let n = Node::start(false, &[]).await;
    let api = n.gw.api();
    account(&api, "http-inflight").await;
    let (token, token_id) = issue(&api, "http-inflight", 600).await;
    assert_eq!(n.call(&token, "GET", "bin", "/get").await, 200);
    let s = session_of(&api, &token_id).await;
    let id = s["id"].as_str().unwrap().to_owned();

    let waiting = n.send(&token, "GET", "bin", "/delay/10", None);
    let drip = n
        .http
        .get(n.url("bin", "/drip?duration=10&numbytes=10&code=200&delay=0"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(drip.status(), 200);
    let streaming = tokio::spawn(drip.bytes());
    tokio::time::sleep(Duration::from_millis(500)).await;
    revoke(&n, "http-inflight", &token_id).await;

    let (status, headers, body) = waiting.await.unwrap();
    let p = assert_problem(status, &headers, &body, 401);
    assert!(
        p["detail"].as_str().unwrap().contains("session ended"),
        "{p}"
    );
    let cut = streaming.await.unwrap();
    assert!(cut.is_err(), "the streaming body ran to its end: {cut:?}");
    let s = ended(&api, &id, Duration::from_secs(15)).await;
    assert!(s["end_reason"].as_str().unwrap().contains("revoked"), "{s}");
    assert_intact(&api, &id).await;
}

/// `POST /api/v1/sessions/{id}/end`, admin only.
async fn end_session(n: &Node, id: &str, body: &str) -> (u16, Value) {
    let resp = n
        .http
        .post(format!("{}/api/v1/sessions/{id}/end", n.gw.ready().api_url))
        .bearer_auth(&n.gw.ready().admin_token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// An administrator ends one session: its request in flight is answered at
/// once, the record ends with who ended it and why, and the token (still
/// valid) opens a new session with its next request.
#[tokio::test]
async fn an_administrator_ends_one_session_and_cuts_its_request_in_flight() {
    let n = Node::start(false, &[]).await;
    let api = n.gw.api();
    account(&api, "http-ended").await;
    let (token, token_id) = issue(&api, "http-ended", 600).await;
    assert_eq!(n.call(&token, "GET", "bin", "/get").await, 200);
    let s = session_of(&api, &token_id).await;
    let id = s["id"].as_str().unwrap().to_owned();

    let waiting = n.send(&token, "GET", "bin", "/delay/10", None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, view) = end_session(&n, &id, r#"{"reason": "investigating a leak"}"#).await;
    assert_eq!(status, 202, "{view}");
    assert_eq!(view["id"], id.as_str());

    let (status, headers, body) = waiting.await.unwrap();
    let p = assert_problem(status, &headers, &body, 401);
    assert!(
        p["detail"].as_str().unwrap().contains("session ended"),
        "{p}"
    );
    let s = ended(&api, &id, Duration::from_secs(15)).await;
    let reason = s["end_reason"].as_str().unwrap();
    assert!(
        reason.contains("ended by administrator admin") && reason.contains("investigating a leak"),
        "{s}"
    );
    assert_intact(&api, &id).await;
    // The change is in the administrators' trail.
    let changes = api.admin_changes().await.unwrap();
    assert!(
        changes.iter().any(|c| c.to_string().contains(&id)),
        "no admin change names {id}: {changes:?}"
    );

    // Ended already, or unknown: refused with the reason.
    let (status, p) = end_session(&n, &id, "").await;
    assert_eq!(status, 409, "{p}");
    let (status, p) = end_session(&n, "no-such-session", "").await;
    assert_eq!(status, 404, "{p}");
    let (status, p) = end_session(&n, &id, "not json").await;
    assert_eq!(status, 400, "{p}");

    // The token was not revoked: its next request opens another session.
    assert_eq!(n.call(&token, "GET", "bin", "/get").await, 200);
    let again = http_session(&api, "bin", Some(&id)).await;
    assert!(again["ended_at"].is_null(), "{again}");
}

/// A body larger than the gateway holds (64 KiB here) is streamed to the
/// upstream as it arrives when the decision does not rest on it, counted
/// in the record; one a rule would read, one needing approval (bound to the
/// whole body) and one past the streamed limit are refused with 413.
#[tokio::test]
async fn large_bodies_stream_unless_the_decision_rests_on_them() {
    let n = Node::start(
        false,
        &[
            "--http-max-body".into(),
            "65536".into(),
            "--http-max-streamed-body".into(),
            "3000000".into(),
        ],
    )
    .await;
    let token = n.token();
    let body: String = (0..2_000_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let post = |path: &str, method: Method, body: String| {
        n.http
            .request(method, n.url("bin", path))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(body)
            .send()
    };
    let resp = post("/anything/upload", Method::POST, body.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    let data = echo["data"].as_str().unwrap();
    assert_eq!(data.len(), body.len(), "the upstream received it all");
    assert!(data == body, "the upstream received it in order");

    for (path, method, rule) in [
        (
            "/anything/refunds",
            Method::POST,
            "looks at the request's JSON body",
        ),
        ("/anything/reviewed", Method::PUT, "needs approval"),
    ] {
        let resp = post(path, method, body.clone()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let p = assert_problem(status, &headers, &text, 413);
        assert!(p["detail"].as_str().unwrap().contains(rule), "{p}");
        // The rest of the body was never read: the connection is not reused.
        assert_eq!(headers["connection"], "close");
    }
    // Small bodies on those paths are decided (and held) as before.
    let resp = post("/anything/reviewed", Method::PUT, "small".into())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Past the streamed limit: refused by its declared length at once.
    let huge: String = "x".repeat(3_500_000);
    let resp = post("/anything/upload", Method::POST, huge).await.unwrap();
    assert_eq!(resp.status(), 413);

    // The record counts every byte streamed, and samples only the head.
    let api = n.gw.api();
    let s = http_session(&api, "bin", None).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let upload = eventually(Duration::from_secs(20), || async {
        api.events(&id)
            .await?
            .into_iter()
            .find(|e| {
                e["kind"] == "statement"
                    && e["http"]["path"] == "/anything/upload"
                    && e["http"]["status"] == 200
            })
            .ok_or_else(|| anyhow::anyhow!("no upload recorded yet"))
    })
    .await
    .unwrap();
    assert_eq!(upload["http"]["request_bytes"], 2_000_000, "{upload}");
    let sample = upload["http"]["request_sample"].as_str().unwrap();
    assert!(
        sample.starts_with("abcdefghij") && sample.len() < 100_000,
        "{}",
        sample.len()
    );
}

/// An HTTPS upstream offering HTTP/2 (httpbin under hypercorn): the gateway
/// verifies its certificate against the target's CA and speaks HTTP/2 to it
/// (hypercorn logs each request's protocol version); registered without
/// that CA, the same upstream is refused with 502 and never sent the request.
#[tokio::test]
async fn an_https_upstream_is_verified_and_spoken_to_over_http2() {
    let up = httpbin_h2().await.unwrap();
    let policy = policy_file(ECHO_POLICY).unwrap();
    let mut args: Vec<String> = vec![
        "--no-demo".into(),
        "--policy".into(),
        policy.path().display().to_string(),
    ];
    args.extend(target_args("h2bin", &up.url, "bearer", UPSTREAM_SECRET));
    args.extend([
        "--target-ca".into(),
        format!("h2bin={}", up.file("cert.pem").display()),
    ]);
    args.extend(target_args("untrusted", &up.url, "bearer", UPSTREAM_SECRET));
    let gw = Gateway::with_args(&args).await.unwrap();
    let http = reqwest::Client::new();
    let url = |t: &str, p: &str| format!("{}/http/{t}{p}", gw.ready().http_gateway_url);
    let token = &gw.ready().agent_token;

    let resp = http
        .get(url("h2bin", "/anything/over-h2"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert!(
        echo["url"].as_str().unwrap().ends_with("/anything/over-h2"),
        "{echo}"
    );
    let text = echo.to_string();
    assert!(
        !text.contains(UPSTREAM_SECRET) && !text.contains(token.as_str()),
        "{text}"
    );
    let log = up.file("access.log");
    let line = eventually(Duration::from_secs(10), || async {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        log.lines()
            .find(|l| l.contains("/anything/over-h2"))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("not logged yet: {log}"))
    })
    .await
    .unwrap();
    // hypercorn prefixes its own time and level: `[...] [INFO] 2 GET /path`.
    assert!(
        line.trim_end().ends_with("] 2 GET /anything/over-h2"),
        "spoken to over HTTP/2: {line}"
    );

    let resp = http
        .get(url("untrusted", "/anything/unverified"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let log = std::fs::read_to_string(up.file("access.log")).unwrap();
    assert!(!log.contains("/anything/unverified"), "{log}");
}

/// A verified client asking for a target that does not exist is refused,
/// over either protocol, and the attempt is a session of its own: who
/// asked, for which name, ended at once with the reason.
#[tokio::test]
async fn asking_for_an_unknown_target_is_refused_and_recorded() {
    let n = Node::start(false, &[]).await;
    let api = n.gw.api();
    let (status, headers, body) = n
        .send(&n.token(), "GET", "no-such-api", "/x", None)
        .await
        .unwrap();
    assert_problem(status, &headers, &body, 404);
    let e = sluice_e2e::gateway::connect(&n.gw.config("no-such-db", "e2e-unknown"))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");

    for (target, protocol) in [("no-such-api", "http"), ("no-such-db", "postgres")] {
        let s = eventually(Duration::from_secs(20), || async {
            api.sessions()
                .await?
                .into_iter()
                .find(|s| s["target"] == target && !s["ended_at"].is_null())
                .ok_or_else(|| anyhow::anyhow!("no refused session on {target} yet"))
        })
        .await
        .unwrap();
        assert_eq!(s["protocol"], protocol, "{s}");
        assert_eq!(s["identity_kind"], "agent", "{s}");
        assert!(!s["identity"].as_str().unwrap().is_empty(), "{s}");
        let reason = s["end_reason"].as_str().unwrap();
        assert!(
            reason.starts_with("refused: ") && reason.contains("does not exist"),
            "{s}"
        );
        assert_eq!(s["statements"], 0, "{s}");
        assert_intact(&api, s["id"].as_str().unwrap()).await;
    }
}

#[tokio::test]
async fn revoking_or_expiring_the_token_ends_its_http_session() {
    let n = Node::start(false, &[]).await;
    let api = n.gw.api();
    account(&api, "http-worker").await;

    // Revoked through the REST API: the node ends the session at once,
    // recording why, and the token opens nothing more.
    let (token, token_id) = issue(&api, "http-worker", 600).await;
    assert_eq!(n.call(&token, "GET", "bin", "/get").await, 200);
    let s = session_of(&api, &token_id).await;
    let id = s["id"].as_str().unwrap().to_owned();
    revoke(&n, "http-worker", &token_id).await;
    let s = ended(&api, &id, Duration::from_secs(15)).await;
    let reason = s["end_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("killed") && reason.contains("revoked"),
        "{s}"
    );
    assert_intact(&api, &id).await;
    assert_eq!(n.call(&token, "GET", "bin", "/get").await, 401);

    // Expired: the session ends at the token's expiry, and the token is
    // refused afterwards.
    let (short, short_id) = issue(&api, "http-worker", 4).await;
    assert_eq!(n.call(&short, "GET", "bin", "/get").await, 200);
    let s = session_of(&api, &short_id).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let s = ended(&api, &id, Duration::from_secs(20)).await;
    assert_eq!(s["end_reason"], "token_expired", "{s}");
    assert_intact(&api, &id).await;
    // Refused at once, though within the verifier's clock-skew leeway.
    let (status, headers, body) = n.send(&short, "GET", "bin", "/get", None).await.unwrap();
    let p = assert_problem(status, &headers, &body, 401);
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");

    // A fresh token of the same account opens a new session.
    let (fresh, fresh_id) = issue(&api, "http-worker", 600).await;
    assert_eq!(n.call(&fresh, "GET", "bin", "/get").await, 200);
    let s = session_of(&api, &fresh_id).await;
    assert!(s["ended_at"].is_null(), "{s}");
}

#[tokio::test]
async fn a_hanging_or_resetting_upstream_costs_only_its_own_requests() {
    let (hang_url, reset_url) = broken_upstreams().unwrap();
    let timeout = 5;
    let mut extra = vec!["--http-upstream-timeout".to_owned(), format!("{timeout}s")];
    extra.extend(["--target".to_owned(), format!("hang={hang_url}")]);
    extra.extend(["--target".to_owned(), format!("reset={reset_url}")]);
    let n = Node::start(false, &extra).await;
    let token = n.token();

    // Several requests hang at once...
    let started = Instant::now();
    let hanging: Vec<_> = (0..4)
        .map(|_| n.send(&token, "GET", "hang", "/get", None))
        .collect();
    // ...while other clients' requests go through promptly, and a resetting
    // upstream answers 502 at once.
    let other = reqwest::Client::new();
    for _ in 0..5 {
        let t = Instant::now();
        let resp = other
            .get(n.url("bin", "/get"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(timeout),
            "a request to a healthy upstream waited {:?}",
            t.elapsed()
        );
        let (status, headers, body) = n.send(&token, "GET", "reset", "/get", None).await.unwrap();
        let p = assert_problem(status, &headers, &body, 502);
        assert_eq!(p["status"], 502);
        assert!(!body.contains("127.0.0.1"), "{body}");
    }
    assert!(
        hanging.iter().all(|h| !h.is_finished()),
        "the healthy requests were held up until the hanging ones timed out"
    );
    for h in hanging {
        let (status, headers, body) = h.await.unwrap();
        let p = assert_problem(status, &headers, &body, 504);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("{timeout}s"))
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(timeout) && waited < Duration::from_secs(timeout + 10),
        "504 after {waited:?}"
    );
    assert_eq!(n.call(&token, "GET", "bin", "/get").await, 200);
}

/// A TLS client trusting the node's development certificate and offering
/// `alpn`; returns what was negotiated and the answer to `GET path`.
async fn tls_get(
    cert: &Path,
    addr: &str,
    alpn: &[&[u8]],
    token: &str,
    path: &str,
) -> (Option<Vec<u8>>, hyper::Version, u16, String) {
    use http_body_util::BodyExt as _;
    let pem = std::fs::read(cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = hyper_util::rt::TokioIo::new(tls);
    let empty = http_body_util::Empty::<bytes::Bytes>::new;
    let resp = if negotiated.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("https://{addr}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", addr)
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap();
        send.send_request(req).await.unwrap()
    };
    let version = resp.version();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        negotiated,
        version,
        status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn the_gateway_speaks_tls_with_http2_by_alpn_and_refuses_plaintext() {
    // `sluice dev` serves plaintext beside TLS only when its listeners are
    // on loopback; a Postgres listener on every address makes the node
    // TLS-only, like a production node without `insecure_plaintext`.
    let n = Node::start(false, &["--pg-listen".into(), "0.0.0.0:0".into()]).await;
    let token = n.token();
    let cert = n.gw.sluice.dir.path().join("data/tls-cert.pem");
    let url = &n.gw.ready().http_gateway_url;
    let addr = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("a TLS-only gateway is announced as https: {url}"))
        .to_owned();

    let (alpn, version, status, body) =
        tls_get(&cert, &addr, &[b"h2", b"http/1.1"], &token, "/http/bin/get").await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(version, hyper::Version::HTTP_2);
    assert_eq!(status, 200, "{body}");
    let echo = problem(&body);
    assert!(echo["headers"]["Authorization"].is_string(), "{echo}");
    assert!(!body.contains(UPSTREAM_SECRET), "{body}");
    assert!(!body.contains(&token), "{body}");

    let (alpn, version, status, body) =
        tls_get(&cert, &addr, &[b"http/1.1"], &token, "/http/bin/get").await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(version, hyper::Version::HTTP_11);
    assert_eq!(status, 200, "{body}");

    // Plaintext on the same port: the connection is closed unanswered, so
    // the token sent in clear is never even read as a request.
    let answer = tokio::task::spawn_blocking({
        let addr = addr.clone();
        let token = token.clone();
        move || {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            write!(
                s,
                "GET /http/bin/get HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .unwrap();
            let mut buf = vec![0u8; 4096];
            match s.read(&mut buf) {
                Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) => Err(e.kind()),
            }
        }
    })
    .await
    .unwrap();
    match answer {
        Ok(text) => assert!(text.is_empty(), "plaintext was answered: {text}"),
        Err(kind) => assert_eq!(kind, std::io::ErrorKind::ConnectionReset),
    }
    let plain = n.url("bin", "/get").replacen("https://", "http://", 1);
    let resp = n.http.get(plain).bearer_auth(&token).send().await;
    assert!(resp.is_err(), "plaintext was served: {resp:?}");

    // The session records that its requests came over TLS.
    let s = http_session(&n.gw.api(), "bin", None).await;
    assert_eq!(s["tls"], true, "{s}");
}

#[tokio::test]
async fn targets_are_reached_by_host_name_under_the_gateway_suffix() {
    let n = Node::start(
        false,
        &["--http-host-suffix".into(), "HTTP.sluice.internal".into()],
    )
    .await;
    let token = n.token();
    let addr: std::net::SocketAddr =
        n.gw.ready()
            .http_gateway_url
            .trim_start_matches("http://")
            .parse()
            .unwrap();
    let port = addr.port();
    let mut builder = reqwest::Client::builder();
    for host in [
        "bin.http.sluice.internal",
        "nope.http.sluice.internal",
        "a.b.http.sluice.internal",
        "http.sluice.internal",
    ] {
        builder = builder.resolve(host, addr);
    }
    let client = builder.build().unwrap();
    let get = |host: &str, path: &str| {
        client
            .get(format!("http://{host}:{port}{path}"))
            .bearer_auth(&token)
            .send()
    };

    // `{target}.{suffix}`: the target, with the path and query as they are,
    // decided, credentialed and recorded like any other request.
    let resp = get("bin.http.sluice.internal", "/anything/by-host?x=1")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(!body.contains(UPSTREAM_SECRET), "{body}");
    let echo = problem(&body);
    assert!(
        echo["url"]
            .as_str()
            .unwrap()
            .ends_with("/anything/by-host?x=1"),
        "{echo}"
    );
    assert_eq!(echo["args"]["x"], "1");
    assert!(echo["headers"]["Authorization"].is_string(), "{echo}");

    // Unknown targets and hosts that are not one label under the suffix:
    // 404 problems, nothing forwarded.
    for host in ["nope.http.sluice.internal", "a.b.http.sluice.internal"] {
        let resp = get(host, "/anything").await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        let p = assert_problem(status, &headers, &body, 404);
        assert!(
            p["type"].as_str().unwrap().ends_with("/no-such-target"),
            "{p}"
        );
    }

    // HTTP/2 (prior knowledge on loopback) names the host in :authority.
    let (version, status, body) = h2c_get(
        addr,
        &format!("http://bin.http.sluice.internal:{port}/anything/by-authority"),
        &token,
    )
    .await;
    assert_eq!(version, hyper::Version::HTTP_2);
    assert_eq!(status, 200, "{body}");
    assert!(
        problem(&body)["url"]
            .as_str()
            .unwrap()
            .ends_with("/anything/by-authority"),
        "{body}"
    );

    // The path-prefix form keeps working, on the bare suffix and by address.
    let resp = get("http.sluice.internal", "/http/bin/anything/by-path")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(n.call(&token, "GET", "bin", "/anything/by-path").await, 200);
    let resp = get("http.sluice.internal", "/anything").await.unwrap();
    assert_eq!(resp.status(), 404);

    // Both forms land in the same session, with the upstream's paths.
    let api = n.gw.api();
    let s = http_session(&api, "bin", None).await;
    let events = eventually(Duration::from_secs(20), || async {
        let events = api.events(s["id"].as_str().unwrap_or_default()).await?;
        let n = events.iter().filter(|e| e["kind"] == "statement").count();
        anyhow::ensure!(n >= 3, "{n} requests recorded so far");
        Ok(events)
    })
    .await
    .unwrap();
    let paths: Vec<&str> = events
        .iter()
        .filter_map(|e| e["http"]["path"].as_str())
        .collect();
    assert!(paths.contains(&"/anything/by-host"), "{paths:?}");
    assert!(paths.contains(&"/anything/by-path"), "{paths:?}");
}

/// `GET uri` over HTTP/2 with prior knowledge (h2c) to `addr`: the URI's
/// authority travels as `:authority`, not as a `Host` header.
async fn h2c_get(
    addr: std::net::SocketAddr,
    uri: &str,
    token: &str,
) -> (hyper::Version, u16, String) {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let version = resp.version();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (version, status, String::from_utf8_lossy(&body).into_owned())
}
