use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_identity::{Issuer, PrincipalKind, Role, SigningKey};

use crate::common::{Api, assert_problem};

/// Every protected endpoint, with a body where it takes one.
fn protected() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/targets", None),
        (
            Method::POST,
            "/api/v1/targets",
            Some(json!({"name": "x", "host": "h", "port": 1, "database": "d", "username": "u"})),
        ),
        (Method::GET, "/api/v1/targets/x", None),
        (Method::DELETE, "/api/v1/targets/x", None),
        (Method::GET, "/api/v1/policies", None),
        (
            Method::POST,
            "/api/v1/policies",
            Some(json!({"source": "name: x\nstatements: {}\n"})),
        ),
        (Method::GET, "/api/v1/policies/x", None),
        (
            Method::PUT,
            "/api/v1/policies/x",
            Some(json!({"source": "name: x\nstatements: {}\n"})),
        ),
        (Method::DELETE, "/api/v1/policies/x", None),
        (Method::GET, "/api/v1/policies/x/versions", None),
        (
            Method::POST,
            "/api/v1/policies/check",
            Some(json!({"sql": "SELECT 1", "target": "t", "groups": []})),
        ),
        (Method::GET, "/api/v1/policies/check", None),
        (Method::GET, "/api/v1/sessions", None),
        (Method::GET, "/api/v1/sessions/x", None),
        (Method::GET, "/api/v1/sessions/x/events", None),
        (Method::GET, "/api/v1/sessions/x/verify", None),
        (Method::GET, "/api/v1/sessions/x/export", None),
        (Method::GET, "/api/v1/audit/verify", None),
        (Method::GET, "/api/v1/audit/events", None),
        (Method::GET, "/api/v1/nodes", None),
        (Method::GET, "/api/v1/join-tokens", None),
        (
            Method::POST,
            "/api/v1/join-tokens",
            Some(json!({"name": "n"})),
        ),
        (Method::DELETE, "/api/v1/join-tokens/x", None),
        (Method::GET, "/api/v1/service-accounts", None),
        (
            Method::POST,
            "/api/v1/service-accounts",
            Some(json!({"name": "x"})),
        ),
        (Method::GET, "/api/v1/service-accounts/x", None),
        (Method::DELETE, "/api/v1/service-accounts/x", None),
        (
            Method::POST,
            "/api/v1/service-accounts/x/tokens",
            Some(json!({})),
        ),
        (Method::GET, "/api/v1/service-accounts/x/tokens", None),
        (Method::DELETE, "/api/v1/service-accounts/x/tokens/y", None),
        (Method::GET, "/api/v1/api-keys", None),
        (
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "x", "role": "admin"})),
        ),
        (Method::DELETE, "/api/v1/api-keys/x", None),
    ]
}

/// Endpoints auditors may read as well as admins: the session record.
fn auditor_readable(path: &str) -> bool {
    path.starts_with("/api/v1/sessions") || path.starts_with("/api/v1/audit")
}

async fn expect_for_all(api: &Api, auth: Option<&str>, status: u16, challenge: &str) {
    expect_for(api, auth, status, challenge, |_| true).await;
}

async fn expect_for(
    api: &Api,
    auth: Option<&str>,
    status: u16,
    challenge: &str,
    which: impl Fn(&str) -> bool,
) {
    for (method, path, body) in protected().into_iter().filter(|(_, p, _)| which(p)) {
        let mut req = api.anon(method.clone(), path);
        if let Some(value) = auth {
            req = req.header("authorization", value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let www = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert_eq!(www, challenge, "{method} {path}");
        assert_problem(resp, status).await;
    }
    // Nothing was changed by any refused request.
    assert!(api.cp.store.list_targets().await.unwrap().is_empty());
    assert!(api.cp.store.list_join_tokens().await.unwrap().is_empty());
    assert!(api.cp.store.list_policies().await.unwrap().is_empty());
    assert!(
        api.cp
            .store
            .list_service_accounts()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(api.cp.store.list_api_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn no_token_is_401_with_a_bearer_challenge() {
    let api = Api::sqlite().await;
    expect_for_all(&api, None, 401, r#"Bearer realm="sluice""#).await;
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token() {
    let api = Api::sqlite().await;
    let invalid = r#"Bearer realm="sluice", error="invalid_token""#;
    expect_for_all(&api, Some("Bearer not-a-jwt"), 401, invalid).await;
    let admin = api.admin.clone();
    expect_for_all(&api, Some(&format!("Basic {admin}")), 401, invalid).await;

    // Signed by a key this control plane does not trust, claims otherwise right.
    let rogue = Issuer::new(
        "http://127.0.0.1",
        sluice_identity::DEFAULT_AUDIENCE,
        SigningKey::generate(),
    )
    .unwrap();
    let forged = rogue
        .issue(
            "mallory",
            PrincipalKind::Person,
            &[],
            &[Role::Admin],
            Duration::from_secs(300),
        )
        .unwrap()
        .token;
    expect_for_all(&api, Some(&format!("Bearer {forged}")), 401, invalid).await;

    // Our key, wrong audience.
    let other_aud = Issuer::new(
        "http://127.0.0.1",
        "someone-else",
        api.cp.issuer.key().clone(),
    )
    .unwrap();
    let token = other_aud
        .issue(
            "alice",
            PrincipalKind::Person,
            &[],
            &[Role::Admin],
            Duration::from_secs(300),
        )
        .unwrap()
        .token;
    let resp = api
        .anon(Method::GET, "/api/v1/targets")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 401).await;
    assert!(p["detail"].as_str().unwrap().contains("audience"), "{p}");
}

#[tokio::test]
async fn valid_token_without_a_role_is_403() {
    let api = Api::sqlite().await;
    let insufficient = r#"Bearer realm="sluice", error="insufficient_scope""#;
    // Which role each endpoint admits is tested in `roles.rs`; a token with
    // none is refused everywhere.
    let token = api.token("carol", &[]);
    expect_for_all(&api, Some(&format!("Bearer {token}")), 403, insufficient).await;
    let token = api.token("carol", &[Role::Auditor]);
    let resp = api
        .anon(Method::GET, "/api/v1/targets")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("admin"), "{p}");
}

#[tokio::test]
async fn auditors_read_verify_and_export_the_session_record() {
    let api = Api::sqlite().await;
    let token = api.token("erin", &[Role::Auditor]);
    for (method, path, _) in protected()
        .into_iter()
        .filter(|(_, p, _)| auditor_readable(p))
    {
        let resp = api
            .anon(method.clone(), path)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(status == 200 || status == 404, "{method} {path}: {status}");
    }
}

#[tokio::test]
async fn admin_among_other_roles_is_enough() {
    let api = Api::sqlite().await;
    let token = api.token("dave", &[Role::Auditor, Role::Admin]);
    let resp = api
        .anon(Method::GET, "/api/v1/targets")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn jwks_is_public_and_verifies_our_tokens() {
    let api = Api::sqlite().await;
    let resp = api
        .anon(Method::GET, "/.well-known/jwks.json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let text = resp.text().await.unwrap();
    let set: Value = serde_json::from_str(&text).unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], api.cp.issuer.key().kid());
    assert!(keys[0].get("d").is_none(), "no private key material");
    // The published set is enough to verify a token we issued.
    let verifier = sluice_identity::Verifier::from_jwks(
        "http://127.0.0.1",
        sluice_identity::DEFAULT_AUDIENCE,
        &text,
        0,
    )
    .unwrap();
    assert_eq!(verifier.verify(&api.admin).unwrap().name, "alice");
}
