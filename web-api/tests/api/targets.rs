use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Api, assert_problem, send};

const PASSWORD: &str = "Sup3r-s3cret-upstream-pw";

fn body(name: &str) -> Value {
    json!({
        "name": name,
        "host": "db.internal",
        "port": 5432,
        "database": "app",
        "username": "sluice",
        "password": PASSWORD,
    })
}

/// Creates, reads, lists, refuses a duplicate of and deletes a target,
/// checking that no response ever carries the password.
async fn lifecycle(api: &Api) {
    let mut seen = Vec::new();

    let resp = api
        .req(Method::POST, "/api/v1/targets")
        .json(&body("orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let text = resp.text().await.unwrap();
    seen.push(text.clone());
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["name"], "orders");
    assert_eq!(created["kind"], "postgres", "kind defaults to postgres");
    assert_eq!(created["tls_mode"], "prefer", "tls_mode defaults to prefer");
    assert_eq!(created["port"], 5432);
    assert!(created["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(created["created_at_us"].as_i64().unwrap() > 0);

    // The target really reached the store with its password.
    let stored = api.cp.store.get_target("orders").await.unwrap().unwrap();
    assert_eq!(stored.password, PASSWORD);

    let resp = api
        .req(Method::GET, "/api/v1/targets/orders")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    seen.push(text.clone());
    let one: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(one, created);

    let resp = api
        .req(Method::GET, "/api/v1/targets")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    seen.push(text.clone());
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["name"], "orders");

    let resp = api
        .req(Method::POST, "/api/v1/targets")
        .json(&body("orders"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 409).await;
    seen.push(problem.to_string());
    assert!(problem["detail"].as_str().unwrap().contains("orders"));

    for text in &seen {
        assert!(!text.contains(PASSWORD), "password leaked in {text}");
        assert!(
            !text.contains("password"),
            "password field present in {text}"
        );
    }

    let resp = api
        .req(Method::DELETE, "/api/v1/targets/orders")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(api.cp.store.get_target("orders").await.unwrap().is_none());
    let resp = api
        .req(Method::GET, "/api/v1/targets/orders")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
    let resp = api
        .req(Method::DELETE, "/api/v1/targets/orders")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
    let (status, list) = api.get("/api/v1/targets").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    lifecycle(&Api::sqlite().await).await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    lifecycle(&Api::postgres().await).await;
}

#[tokio::test]
async fn explicit_kind_and_tls_mode_are_kept() {
    let api = Api::sqlite().await;
    let mut b = body("billing");
    b["kind"] = json!("postgres");
    b["tls_mode"] = json!("verify-full");
    b["port"] = json!(65535);
    let (status, t) = api.post("/api/v1/targets", &b).await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["tls_mode"], "verify-full");
    assert_eq!(t["port"], 65535);
}

#[tokio::test]
async fn invalid_bodies_are_refused_with_a_problem() {
    let api = Api::sqlite().await;
    let with = |field: &str, value: Value| {
        let mut b = body("ok-name");
        b[field] = value;
        b
    };
    let mut missing_host = body("ok-name");
    missing_host.as_object_mut().unwrap().remove("host");
    let cases = [
        ("uppercase name", with("name", json!("Orders")), "name"),
        ("space in name", with("name", json!("my db")), "name"),
        ("empty name", with("name", json!("")), "name"),
        ("long name", with("name", json!("a".repeat(64))), "name"),
        ("port 0", with("port", json!(0)), "port"),
        ("port too big", with("port", json!(65536)), "port"),
        ("negative port", with("port", json!(-1)), "port"),
        ("tls mode", with("tls_mode", json!("allow")), "tls_mode"),
        ("kind", with("kind", json!("mysql")), "kind"),
        ("empty host", with("host", json!("")), "host"),
        (
            "unknown field",
            with("sslmode", json!("require")),
            "sslmode",
        ),
        ("missing host", missing_host, "host"),
        ("wrong type", with("port", json!("5432")), "port"),
    ];
    for (what, b, mention) in cases {
        let resp = api
            .req(Method::POST, "/api/v1/targets")
            .json(&b)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 400).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(mention),
            "{what}: {detail:?} should mention {mention}"
        );
        assert!(!detail.contains(PASSWORD), "{what}: password echoed");
    }
    assert!(
        api.cp.store.list_targets().await.unwrap().is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn malformed_json_and_wrong_media_type_are_problems() {
    let api = Api::sqlite().await;
    let resp = api
        .req(Method::POST, "/api/v1/targets")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400).await;

    let resp = api
        .req(Method::POST, "/api/v1/targets")
        .body(body("x").to_string())
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 415).await;
    assert!(
        p["detail"].as_str().unwrap().contains("Content-Type"),
        "{p}"
    );
}

#[tokio::test]
async fn the_password_is_not_echoed_even_on_error() {
    let api = Api::sqlite().await;
    // A body that fails deserialisation right after the password.
    let raw = format!(
        r#"{{"name":"x","host":"h","port":5432,"database":"d","username":"u","password":"{PASSWORD}","port":"#
    );
    let (status, body) = send(
        api.req(Method::POST, "/api/v1/targets")
            .header("content-type", "application/json")
            .body(raw),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains(PASSWORD), "{body}");
}
