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

    // The target reached the store with its password sealed, and only the
    // control plane's key opens it again.
    let stored = api.cp.store.get_target("orders").await.unwrap().unwrap();
    assert!(stored.secret.starts_with("v1:"), "{}", stored.secret);
    assert!(!stored.secret.contains(PASSWORD));
    let identity = sluice_identity::Identity {
        name: "a".into(),
        kind: sluice_identity::PrincipalKind::Agent,
        groups: vec![],
        roles: vec![],
        token_id: "t".into(),
        expires_at: u64::MAX,
    };
    let (user, password) = api.cp.open_credential("orders", &identity).await.unwrap();
    assert_eq!((user.as_str(), password.as_str()), ("sluice", PASSWORD));
    assert_eq!(created["credential"], "sealed");
    // Nodes get to know that it is sealed, never what it is.
    let snapshot = format!("{:?}", api.cp.current_snapshot());
    assert!(!snapshot.contains(PASSWORD));

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

#[tokio::test]
async fn references_and_group_logins_are_stored_and_shown_without_secrets() {
    let api = Api::sqlite().await;
    let (status, created) = api
        .post(
            "/api/v1/targets",
            &json!({
                "name": "billing", "host": "db", "port": 5432, "database": "billing",
                "username": "gateway", "password_ref": "env:BILLING_PG_PASSWORD",
                "logins": [
                    {"group": "agents", "username": "agent_ro", "password": PASSWORD},
                    {"group": "oncall", "username": "oncall_rw", "password_ref": "file:/run/secrets/oncall"},
                ],
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["credential"], "reference");
    assert_eq!(created["password_ref"], "env:BILLING_PG_PASSWORD");
    assert_eq!(created["logins"][0]["username"], "agent_ro");
    assert_eq!(created["logins"][0]["credential"], "sealed");
    assert_eq!(
        created["logins"][1]["password_ref"],
        "file:/run/secrets/oncall"
    );
    assert!(!created.to_string().contains(PASSWORD));
    let (_, shown) = api.get("/api/v1/targets/billing").await;
    assert_eq!(shown, created);

    // The snapshot tells nodes where each credential is, never a secret.
    let snap = api.cp.current_snapshot();
    let t = snap.targets.iter().find(|t| t.name == "billing").unwrap();
    assert_eq!(t.credential, "env:BILLING_PG_PASSWORD");
    assert_eq!(t.logins[0].credential, "sealed");
    assert!(
        t.password.is_empty()
            && t.logins
                .iter()
                .all(|l| !format!("{l:?}").contains(PASSWORD))
    );

    for bad in [
        json!({"name": "x", "host": "h", "port": 1, "database": "d", "username": "u", "password": "p", "password_ref": "env:P"}),
        json!({"name": "x", "host": "h", "port": 1, "database": "d", "username": "u", "password_ref": "vault:p"}),
        json!({"name": "x", "host": "h", "port": 1, "database": "d", "username": "u", "logins": [{"group": "", "username": "u"}]}),
    ] {
        let resp = api
            .req(Method::POST, "/api/v1/targets")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
}

#[tokio::test]
async fn http_targets_take_a_base_url_and_never_return_their_credential() {
    let api = Api::sqlite().await;
    let b = json!({
        "name": "crm",
        "kind": "http",
        "base_url": "https://crm.internal/v1",
        "auth": "header:X-Api-Key",
        "password": PASSWORD,
    });
    let resp = api
        .req(Method::POST, "/api/v1/targets")
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(PASSWORD), "{text}");
    let t: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(t["kind"], "http");
    assert_eq!(t["base_url"], "https://crm.internal/v1");
    assert_eq!(t["auth"], "header:X-Api-Key");
    assert_eq!(t["credential"], "sealed");
    assert_eq!(t["custom_ca"], false);
    let stored = api.cp.store.get_target("crm").await.unwrap().unwrap();
    assert!(
        stored.secret.starts_with("v1:"),
        "sealed like a database password"
    );
    assert_eq!(stored.http.auth, "header:X-Api-Key");
    let (_, shown) = api.get("/api/v1/targets/crm").await;
    assert!(!shown.to_string().contains(PASSWORD));

    // Postgres targets show no HTTP fields.
    let (status, pg) = api.post("/api/v1/targets", &body("orders")).await;
    assert_eq!(status, 201, "{pg}");
    assert!(pg.get("base_url").is_none(), "{pg}");

    let bad = [
        (
            "base_url",
            json!({"name": "a", "kind": "http", "base_url": "ftp://x/"}),
        ),
        (
            "base_url",
            json!({"name": "a", "kind": "http", "base_url": "https://u:p@x/"}),
        ),
        (
            "auth",
            json!({"name": "a", "kind": "http", "base_url": "https://x/", "auth": "cookie:x"}),
        ),
        (
            "user:password",
            json!({"name": "a", "kind": "http", "base_url": "https://x/", "auth": "basic", "password": "nocolon"}),
        ),
        (
            "host",
            json!({"name": "a", "kind": "http", "base_url": "https://x/", "host": "x"}),
        ),
        (
            "http",
            json!({"name": "a", "host": "x", "port": 1, "database": "d", "username": "u", "base_url": "https://x/"}),
        ),
    ];
    for (mention, b) in bad {
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
            "{b}: {detail:?} should mention {mention}"
        );
        assert!(!detail.contains("nocolon"), "credential echoed: {detail}");
    }
}
