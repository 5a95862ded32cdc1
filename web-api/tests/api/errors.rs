use reqwest::Method;

use crate::common::{Api, assert_problem};

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let api = Api::sqlite().await;
    for path in [
        "/api/v1/nope",
        "/nope",
        "/api/v2/targets",
        "/api/v1/targets/a/b",
    ] {
        let resp = api.req(Method::GET, path).send().await.unwrap();
        assert_problem(resp, 404).await;
    }
    // Unauthenticated callers get the same answer.
    let resp = api.anon(Method::GET, "/api/v1/nope").send().await.unwrap();
    assert_problem(resp, 404).await;
}

#[tokio::test]
async fn wrong_method_is_a_405_problem() {
    let api = Api::sqlite().await;
    for (method, path) in [
        (Method::PUT, "/api/v1/targets"),
        (Method::POST, "/api/v1/nodes"),
        (Method::DELETE, "/livez"),
    ] {
        let resp = api.req(method, path).send().await.unwrap();
        assert_problem(resp, 405).await;
    }
}

#[tokio::test]
async fn health_endpoints_are_served() {
    let api = Api::sqlite().await;
    let get = |path: &'static str| api.anon(Method::GET, path).send();
    assert_eq!(get("/livez").await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 503);
    api.ready.set(true);
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn store_failures_are_500_without_internal_detail() {
    let api = Api::sqlite().await;
    api.cp.store.close().await;
    let resp = api
        .req(Method::GET, "/api/v1/targets")
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 500).await;
    let detail = p["detail"].as_str().unwrap().to_lowercase();
    assert!(detail.contains("logged"), "{detail}");
    for leak in ["pool", "database", "sqlite", "closed", "sqlx"] {
        assert!(!detail.contains(leak), "{leak} leaked in {detail}");
    }
}
