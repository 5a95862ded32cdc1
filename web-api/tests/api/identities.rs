//! Service accounts, the client-credentials grant, issued tokens and API
//! keys, through the REST API on a real store.

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_identity::PrincipalKind;

use crate::common::{Api, assert_problem, send};

async fn create_agent(api: &Api, name: &str) -> Value {
    let (status, body) = api
        .post(
            "/api/v1/service-accounts",
            &json!({"name": name, "description": "coding agent", "groups": ["agents", "eng"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn client_credentials(api: &Api, id: &str, secret: &str) -> (u16, Value) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    send(
        api.anon(Method::POST, "/oauth/token")
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials"),
    )
    .await
}

/// Waits until the newest snapshot lists `token_id` as revoked.
async fn until_revoked(api: &Api, token_id: &str) {
    for _ in 0..100 {
        if api.cp.is_token_revoked(token_id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("token {token_id} never showed up as revoked");
}

#[tokio::test]
async fn an_agent_exchanges_its_client_secret_for_a_short_lived_token() {
    let api = Api::sqlite().await;
    let created = create_agent(&api, "devin").await;
    let client_id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert!(client_id.starts_with("sa_") && secret.starts_with("scs_"));
    assert_eq!(created["owner"], "alice", "defaults to the creating admin");

    let (status, body) = client_credentials(&api, client_id, secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!(
        (890..=900).contains(&expires_in),
        "15 minutes: {expires_in}"
    );
    let identity = api
        .cp
        .verifier()
        .verify(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(identity.name, "devin");
    assert_eq!(identity.kind, PrincipalKind::Agent);
    assert_eq!(identity.groups, ["agents", "eng"]);
    assert!(identity.roles.is_empty(), "agents get no REST role");

    // The same exchange with the credentials in the body.
    let (status, _) = send(
        api.anon(Method::POST, "/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
            )),
    )
    .await;
    assert_eq!(status, 200);

    // Listed, by whom, and never with the token or the secret.
    let (status, tokens) = api.get("/api/v1/service-accounts/devin/tokens").await;
    assert_eq!(status, 200);
    let items = tokens["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|t| t["issued_by"] == "client_credentials"));
    assert!(items.iter().any(|t| t["id"] == identity.token_id.as_str()));
    let (_, listed) = api.get("/api/v1/service-accounts").await;
    let text = format!("{listed}{tokens}");
    assert!(!text.contains(secret) && !text.contains("access_token"));
}

#[tokio::test]
async fn wrong_secrets_unknown_clients_and_disabled_accounts_get_invalid_client() {
    let api = Api::postgres().await;
    let created = create_agent(&api, "cursor").await;
    let client_id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    for (id, s) in [
        (client_id, "scs_wrong"),
        ("sa_nobody", secret),
        (client_id, ""),
    ] {
        let (status, body) = client_credentials(&api, id, s).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
    }
    let (status, body) = send(
        api.anon(Method::POST, "/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=password&username=a&password=b"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    let resp = api
        .req(Method::DELETE, "/api/v1/service-accounts/cursor")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (status, _) = client_credentials(&api, client_id, secret).await;
    assert_eq!(status, 401, "a disabled account gets no token");
    let (status, body) = api.get("/api/v1/service-accounts/cursor").await;
    assert_eq!(status, 200);
    assert!(body["disabled_at"].is_string());
}

#[tokio::test]
async fn admins_issue_tokens_with_a_bounded_lifetime_and_revoke_them() {
    let api = Api::sqlite().await;
    create_agent(&api, "claude").await;
    let (status, issued) = api
        .post(
            "/api/v1/service-accounts/claude/tokens",
            &json!({"ttl_seconds": 120}),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .post(
            "/api/v1/service-accounts/claude/tokens",
            &json!({"ttl_seconds": 10 * 24 * 3600}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // A live agent token is known to the REST API but holds no role: 403.
    let resp = api
        .anon(Method::GET, "/api/v1/targets")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403).await;

    let resp = api
        .req(
            Method::DELETE,
            &format!("/api/v1/service-accounts/claude/tokens/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    until_revoked(&api, &id).await;
    let resp = api
        .anon(Method::GET, "/api/v1/targets")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 401).await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    // Revoking twice is a 404, and the snapshot nodes get names the token.
    let resp = api
        .req(
            Method::DELETE,
            &format!("/api/v1/service-accounts/claude/tokens/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
    assert!(api.cp.current_snapshot().revoked_token_ids.contains(&id));
}

#[tokio::test]
async fn disabling_an_account_revokes_its_tokens_everywhere() {
    let api = Api::sqlite().await;
    create_agent(&api, "ci-bot").await;
    let (_, issued) = api
        .post("/api/v1/service-accounts/ci-bot/tokens", &json!({}))
        .await;
    let id = issued["id"].as_str().unwrap();
    let resp = api
        .req(Method::DELETE, "/api/v1/service-accounts/ci-bot")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    until_revoked(&api, id).await;
}

#[tokio::test]
async fn service_account_input_is_validated() {
    let api = Api::sqlite().await;
    for body in [
        json!({"name": "Bad Name"}),
        json!({"name": "x", "kind": "person"}),
        json!({"name": "x", "groups": ["OK?"]}),
        json!({"name": "x", "secret": "chosen"}),
    ] {
        let resp = api
            .req(Method::POST, "/api/v1/service-accounts")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
    create_agent(&api, "dup").await;
    let resp = api
        .req(Method::POST, "/api/v1/service-accounts")
        .json(&json!({"name": "dup"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409).await;
}

#[tokio::test]
async fn an_api_key_carries_exactly_its_role_until_revoked() {
    let api = Api::postgres().await;
    let (status, created) = api
        .post(
            "/api/v1/api-keys",
            &json!({"name": "siem export", "role": "auditor"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("slk_"));
    let call = |path: &'static str| api.anon(Method::GET, path).bearer_auth(&key).send();
    assert_eq!(
        call("/api/v1/sessions").await.unwrap().status().as_u16(),
        200
    );
    assert_problem(call("/api/v1/targets").await.unwrap(), 403).await;

    let (_, listed) = api.get("/api/v1/api-keys").await;
    assert!(!listed.to_string().contains(&key), "never shown again");
    assert_eq!(listed["items"][0]["role"], "auditor");
    assert!(key.starts_with(listed["items"][0]["prefix"].as_str().unwrap()));

    let id = created["id"].as_str().unwrap();
    let resp = api
        .req(Method::DELETE, &format!("/api/v1/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let p = assert_problem(call("/api/v1/sessions").await.unwrap(), 401).await;
    assert!(p["detail"].as_str().unwrap().contains("API key"), "{p}");
    // A guessed key with the right prefix is just as unknown.
    let resp = api
        .anon(Method::GET, "/api/v1/sessions")
        .bearer_auth("slk_000000000000000000000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401).await;
    let (status, _) = api
        .post("/api/v1/api-keys", &json!({"name": "x", "role": "root"}))
        .await;
    assert_eq!(status, 400);
}
