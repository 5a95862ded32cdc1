#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The HTTP gateway end to end: the real `sluice dev` binary in front of
//! real HTTP services nobody here wrote (httpbin echoing what it receives,
//! json-server serving the demo customers). An agent holding only its
//! Sluice token calls them through the node; the tests prove it never sees
//! the upstream credential or a masked value, that the upstream never sees
//! its token, that writes wait for approval and deletes are denied, and
//! that every request is in a verifiable session record.

use std::io::Write as _;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_e2e::gateway::{Gateway, eventually};
use sluice_e2e::http::{
    Service, broken_upstreams, httpbin, json_server, policy_file, problem, target_args,
};

const UPSTREAM_SECRET: &str = "upstream-key-7f3a9c2e51";
const BASIC: &str = "apiuser:basic-pw-93ab1c";

/// For `crm` (json-server): reads open, writes need approval, deletes
/// denied, anything unmatched denied; the demo customers' emails, cards and
/// keys masked in JSON.
const CRM_POLICY: &str = r#"
name: crm-agents
applies_to:
  groups: ["*"]
  targets: [crm]
approval:
  mode: answer
  expires_after: 15m
masking:
  detectors:
    builtin: [email, card, secret_key, aws_access_key, jwt, private_key]
http:
  default: deny
  rules:
    - name: read-customers
      methods: [GET, HEAD]
      path: /customers/**
      decision: allow
    - name: read-customer-list
      methods: [GET, HEAD]
      path: /customers
      decision: allow
    - name: writes-need-approval
      methods: [POST, PUT, PATCH]
      path: /customers
      decision: approval
    - name: no-deletes
      methods: [DELETE]
      path: /**
      decision: deny
      reason: deleting through the gateway is not allowed
  response:
    mask:
      - path: $..email
        mask: email
      - path: $..card_number
        mask: redact
      - path: $..api_key
        mask: redact
    detectors: true
    other_content: deny
"#;

/// For the echo services: everything allowed, text scanned by detectors.
const ECHO_POLICY: &str = r#"
name: echo
applies_to:
  groups: ["*"]
  targets: [bin, binb, binh, binq, hang, reset]
masking:
  detectors:
    builtin: [email, card]
http:
  default: allow
  response:
    detectors: true
    other_content: pass
"#;

struct Fixture {
    gw: Gateway,
    _services: Vec<Service>,
    _policies: Vec<tempfile::NamedTempFile>,
    http: reqwest::Client,
}

impl Fixture {
    fn url(&self, target: &str, path: &str) -> String {
        format!("{}/http/{target}{path}", self.gw.ready().http_gateway_url)
    }

    fn token(&self) -> &str {
        &self.gw.ready().agent_token
    }

    async fn call(
        &self,
        method: &str,
        target: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                self.url(target, path),
            )
            .bearer_auth(self.token());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, resp.text().await.unwrap(), headers)
    }
}

/// `sluice dev` with json-server as `crm` (API key in a header) and httpbin
/// four times: bearer, basic, header and query credentials.
async fn fixture(extra: &[&str]) -> Fixture {
    let (crm, bin) = tokio::try_join!(json_server(), httpbin()).unwrap();
    let policies = vec![
        policy_file(CRM_POLICY).unwrap(),
        policy_file(ECHO_POLICY).unwrap(),
    ];
    let mut args: Vec<String> = vec!["--no-demo".into()];
    for p in &policies {
        args.extend(["--policy".into(), p.path().display().to_string()]);
    }
    for (name, url, auth, secret) in [
        ("crm", &crm.url, "header:X-Api-Key", UPSTREAM_SECRET),
        ("bin", &bin.url, "bearer", UPSTREAM_SECRET),
        ("binb", &bin.url, "basic", BASIC),
        ("binh", &bin.url, "header:X-Api-Key", UPSTREAM_SECRET),
        ("binq", &bin.url, "query:api_key", UPSTREAM_SECRET),
    ] {
        args.extend(target_args(name, url, auth, secret));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let gw = Gateway::with_args(&args).await.unwrap();
    Fixture {
        gw,
        _services: vec![crm, bin],
        _policies: policies,
        http: reqwest::Client::new(),
    }
}

fn assert_no_secret(f: &Fixture, text: &str) {
    assert!(
        !text.contains(UPSTREAM_SECRET),
        "upstream secret leaked: {text}"
    );
    assert!(
        !text.contains("basic-pw-93ab1c"),
        "basic password leaked: {text}"
    );
    assert!(
        !text.contains("YXBpdXNlcjpiYXNpYy1wdy05M2FiMWM"),
        "basic credential leaked: {text}"
    );
    assert!(!text.contains(f.token()), "agent token echoed: {text}");
}

#[tokio::test]
async fn httpbin_gets_the_injected_credential_and_never_the_token() {
    let f = fixture(&[]).await;

    // Bearer: httpbin's /bearer answers 200 only with a bearer token, and the
    // echo of that token is scrubbed; the agent's own token never arrives.
    let (status, body, _) = f.call("GET", "bin", "/bearer", None).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&f, &body);
    let (status, body, _) = f.call("GET", "bin", "/headers", None).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&f, &body);
    let echo: Value = serde_json::from_str(&body).unwrap();
    let auth = echo["headers"]["Authorization"].as_str().unwrap();
    assert!(
        auth.contains("redacted"),
        "the injected credential reached httpbin, masked on its way back: {auth}"
    );

    // Basic: /basic-auth/USER/PW authenticates only the right pair.
    let (status, body, _) = f
        .call("GET", "binb", "/basic-auth/apiuser/basic-pw-93ab1c", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(problem(&body)["authenticated"], true);

    // Header: the API key arrives as X-Api-Key.
    let (status, body, _) = f.call("GET", "binh", "/headers", None).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&f, &body);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert!(echo["headers"]["X-Api-Key"].is_string(), "{echo}");
    assert!(
        echo["headers"].get("Authorization").is_none(),
        "the agent's token was forwarded: {echo}"
    );

    // Query: the key is appended to the query, the client's parameters kept.
    let (status, body, _) = f.call("GET", "binq", "/anything?x=1", None).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&f, &body);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["args"]["x"], "1");
    assert!(echo["args"]["api_key"].is_string(), "{echo}");
    // A client may not supply the credential's parameter itself.
    let (status, body, _) = f.call("GET", "binq", "/anything?api_key=mine", None).await;
    assert_eq!(status, 400, "{body}");

    // Proxy-Authorization works too, and neither header nor any Proxy-* or
    // hop-by-hop header reaches the upstream.
    let resp = f
        .http
        .get(f.url("binh", "/headers"))
        .header("Proxy-Authorization", format!("Bearer {}", f.token()))
        .header("Connection", "X-Hop-Secret")
        .header("X-Hop-Secret", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert_no_secret(&f, &body);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert!(
        echo["headers"].get("Proxy-Authorization").is_none(),
        "{echo}"
    );
    assert!(echo["headers"].get("X-Hop-Secret").is_none(), "{echo}");

    // Method override headers are refused before anything is decided.
    for h in [
        "X-HTTP-Method-Override",
        "X-Method-Override",
        "X-HTTP-Method",
    ] {
        let resp = f
            .http
            .post(f.url("bin", "/anything"))
            .bearer_auth(f.token())
            .header(h, "DELETE")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{h}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn json_server_reads_are_masked_writes_wait_for_approval_and_deletes_are_denied() {
    let f = fixture(&[]).await;
    let raw = [
        "alice.wonder@example.com",
        "4111111111111111",
        "sk_live_51HxQeZ2eZvKYlo2CqTmR8wPv",
        "bruno.keller@example.org",
        "5500005555555559",
        "AKIAZ7QX4EXAMPLE9PLM",
        "bob.backup@corpmail.example",
    ];

    // Reads: allowed, every sensitive value masked (by path and by detector).
    for path in ["/customers", "/customers/1", "/customers/2"] {
        let (status, body, headers) = f.call("GET", "crm", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(headers["content-type"].to_str().unwrap().contains("json"));
        for v in raw {
            assert!(!body.contains(v), "{path}: raw {v} in {body}");
        }
        assert_no_secret(&f, &body);
        let _: Value = serde_json::from_str(&body).expect("masked output is still JSON");
    }
    let (_, body, _) = f.call("GET", "crm", "/customers/1", None).await;
    assert!(
        problem(&body)["name"] == "Alice Wonder",
        "unmasked fields pass: {body}"
    );
    // A JSON response without a body (HEAD) is not an invalid document.
    let (status, body, _) = f.call("HEAD", "crm", "/customers/1", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.is_empty());

    // Path tricks and case games: refused, nothing forwarded.
    for path in [
        "/customers/%2e%2e/admin",
        "/customers/%2E%2E/admin",
        "/customers/../admin",
        "//admin",
        "/customers;x=1",
        "/customers/%2fadmin",
        "/CUSTOMERS",
        "/admin",
    ] {
        let (status, body, headers) = f.call("GET", "crm", path, None).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{path}"
        );
        assert!(!body.contains("admin area"), "{path}: {body}");
    }
    let (status, _, _) = f.call("get", "crm", "/customers", None).await;
    assert_eq!(status, 403, "a lower-case method is not GET");

    // Deletes: denied, naming the rule.
    let (status, body, _) = f.call("DELETE", "crm", "/customers/1", None).await;
    assert_eq!(status, 403, "{body}");
    let p = problem(&body);
    assert_eq!(p["rule"], "no-deletes", "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("/denied"));
    let (status, body, _) = f.call("GET", "crm", "/customers/1", None).await;
    assert_eq!(status, 200, "customer 1 still exists: {body}");

    // Writes: approval first, then exactly that request, once.
    let new = json!({"name": "Eve Example", "email": "eve@example.com"});
    let (status, body, _) = f.call("POST", "crm", "/customers", Some(new.clone())).await;
    assert_eq!(status, 403, "{body}");
    let p = problem(&body);
    assert!(
        p["type"].as_str().unwrap().ends_with("/approval-required"),
        "{p}"
    );
    let id = p["approval_id"].as_str().unwrap().to_owned();
    assert!(p["approval_url"].as_str().unwrap().contains(&id), "{p}");
    let (status, _, _) = f.call("GET", "crm", "/customers/5", None).await;
    assert_eq!(status, 404, "nothing was created before approval");
    let (status, approved) =
        f.gw.api()
            .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
            .await
            .unwrap();
    assert_eq!(status, 200, "{approved}");
    // Another body is another request: not covered by the approval.
    let other = json!({"name": "Mallory", "email": "m@example.com"});
    let (status, body, _) = f.call("POST", "crm", "/customers", Some(other)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body, _) = f.call("POST", "crm", "/customers", Some(new.clone())).await;
    assert_eq!(status, 201, "the approved request is forwarded: {body}");
    assert!(
        !body.contains("eve@example.com"),
        "the echo is masked too: {body}"
    );
    let (status, body, _) = f.call("POST", "crm", "/customers", Some(new)).await;
    assert_eq!(status, 403, "an approval is used once: {body}");

    // The record: one session for the agent on crm, every request in it,
    // with its http part, and the chain verifies.
    let api = f.gw.api();
    let session = eventually(Duration::from_secs(20), || async {
        let sessions = api.sessions().await?;
        let s = sessions
            .iter()
            .find(|s| s["target"] == "crm" && s["protocol"] == "http")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no http session on crm yet"))?;
        let events = api.events(s["id"].as_str().unwrap_or_default()).await?;
        let n = events.iter().filter(|e| e["kind"] == "statement").count();
        anyhow::ensure!(n >= 21, "{n} statements recorded so far");
        Ok((s, events))
    })
    .await
    .unwrap();
    let (s, events) = session;
    let statements: Vec<&Value> = events.iter().filter(|e| e["kind"] == "statement").collect();
    let delete = statements
        .iter()
        .find(|e| e["http"]["method"] == "DELETE")
        .unwrap();
    assert_eq!(delete["decision"], "deny");
    assert_eq!(delete["rule"], "no-deletes");
    assert_eq!(delete["http"]["status"], 403);
    let created = statements
        .iter()
        .find(|e| e["http"]["status"] == 201)
        .unwrap();
    assert_eq!(created["approval_id"], id.as_str());
    assert_eq!(created["http"]["path"], "/customers");
    let read = statements
        .iter()
        .find(|e| e["http"]["path"] == "/customers/1" && e["http"]["status"] == 200)
        .unwrap();
    let sample = read["http"]["response_sample"].as_str().unwrap();
    assert!(sample.contains("Alice"), "{sample}");
    for v in raw {
        assert!(!sample.contains(v), "raw {v} in the record: {sample}");
    }
    let all = serde_json::to_string(&events).unwrap();
    assert_no_secret(&f, &all);
    let verified = api
        .get(&format!(
            "/api/v1/sessions/{}/verify",
            s["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(verified["status"], "intact", "{verified}");
    assert!(
        verified["gaps"].as_array().unwrap().is_empty(),
        "{verified}"
    );
}

#[tokio::test]
async fn refusals_are_problems_and_broken_upstreams_fail_cleanly() {
    // An upstream that accepts and never answers, and one that resets.
    let (hang_url, reset_url) = broken_upstreams().unwrap();
    let f = fixture(&[
        "--target",
        &format!("hang={hang_url}"),
        "--target",
        &format!("reset={reset_url}"),
        "--target",
        &format!("ungoverned={hang_url}"),
        "--http-upstream-timeout",
        "2s",
        "--http-max-body",
        "4096",
        "--http-max-streamed-body",
        "8192",
    ])
    .await;

    // No token, a bad token, a token for nothing: 401 problem documents.
    let resp = f.http.get(f.url("bin", "/get")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = f
        .http
        .get(f.url("bin", "/get"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let p = problem(&resp.text().await.unwrap());
    assert!(
        p["type"].as_str().unwrap().ends_with("/unauthenticated"),
        "{p}"
    );
    let resp = f
        .http
        .get(f.url("bin", "/get"))
        .basic_auth("agent", Some(f.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "only bearer tokens are accepted");

    // Unknown targets: 404, naming nothing else.
    let (status, _, _) = f.call("GET", "nope", "/x", None).await;
    assert_eq!(status, 404);

    // A target no policy's http: section covers: nothing is served there.
    let (status, body, _) = f.call("GET", "ungoverned", "/x", None).await;
    assert_eq!(status, 503, "{body}");
    let p = problem(&body);
    assert!(
        p["detail"].as_str().unwrap().contains("no policy decides"),
        "{p}"
    );

    // Oversized headers, and a body past even what is streamed.
    let resp = f
        .http
        .get(f.url("bin", "/get"))
        .bearer_auth(f.token())
        .header("X-Big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let (status, body, _) = f
        .call(
            "POST",
            "bin",
            "/anything",
            Some(json!({"x": "b".repeat(10_000)})),
        )
        .await;
    assert_eq!(status, 413, "{body}");

    // An upstream that hangs: 504; one that resets: 502.
    let (status, body, _) = f.call("GET", "hang", "/get", None).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(problem(&body)["status"], 504);
    let (status, body, _) = f.call("GET", "reset", "/get", None).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        !body.contains("127.0.0.1"),
        "no internal address in a problem: {body}"
    );

    // The gateway is still fine afterwards.
    let (status, _, _) = f.call("GET", "bin", "/get", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_slow_client_body_times_out_with_408() {
    let f = fixture(&["--http-body-timeout", "2s"]).await;
    // Announce a body and never finish it.
    let addr =
        f.gw.ready()
            .http_gateway_url
            .trim_start_matches("http://")
            .to_owned();
    let token = f.token().to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        write!(
            s,
            "POST /http/bin/anything HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\":"
        )
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
