use reqwest::Method;
use serde_json::json;

use crate::common::{Api, assert_problem};

#[tokio::test]
async fn create_list_and_revoke() {
    let api = Api::sqlite().await;
    let (status, created) = api
        .post("/api/v1/join-tokens", &json!({"name": "edge eu-west"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sjt_"));
    assert_eq!(created["name"], "edge eu-west");
    // The secret shown is the one the store accepts.
    let live = api
        .cp
        .store
        .check_join_token(&secret)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.id, id);

    let (status, list) = api.get("/api/v1/join-tokens").await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains(&secret), "secret listed: {text}");
    assert!(!text.contains("\"token\""), "token field listed: {text}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert!(items[0]["revoked_at"].is_null());

    let resp = api
        .req(Method::DELETE, &format!("/api/v1/join-tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(
        api.cp
            .store
            .check_join_token(&secret)
            .await
            .unwrap()
            .is_none(),
        "revoked in the store"
    );

    let (_, list) = api.get("/api/v1/join-tokens").await;
    assert!(
        list["items"][0]["revoked_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(list["items"][0]["revoked_at_us"].as_i64().unwrap() > 0);

    // Revoking again, or an unknown id, finds no live token.
    let resp = api
        .req(Method::DELETE, &format!("/api/v1/join-tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
    let resp = api
        .req(Method::DELETE, "/api/v1/join-tokens/unknown")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
}

#[tokio::test]
async fn names_are_validated() {
    let api = Api::sqlite().await;
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({}),
        json!({"name": "a\nb"}),
    ] {
        let resp = api
            .req(Method::POST, "/api/v1/join-tokens")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
    assert!(api.cp.store.list_join_tokens().await.unwrap().is_empty());
}
