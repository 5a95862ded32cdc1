use reqwest::Method;
use serde_json::Value;

use crate::common::Api;

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let api = Api::sqlite().await;
    // No credentials needed.
    let resp = api
        .anon(Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/targets", &["get", "post"][..]),
        ("/api/v1/targets/{name}", &["get", "delete"]),
        ("/api/v1/sessions", &["get"]),
        ("/api/v1/sessions/{id}", &["get"]),
        ("/api/v1/sessions/{id}/events", &["get"]),
        ("/api/v1/nodes", &["get"]),
        ("/api/v1/join-tokens", &["get", "post"]),
        ("/api/v1/join-tokens/{id}", &["delete"]),
        ("/.well-known/jwks.json", &["get"]),
    ];
    for (path, methods) in expected {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
        for m in methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {path} missing");
            if path.starts_with("/api/") {
                assert_eq!(
                    op["security"][0]["bearer"],
                    serde_json::json!([]),
                    "{m} {path} secured"
                );
                assert!(
                    op["responses"]["401"].is_object(),
                    "{m} {path} documents 401"
                );
                assert!(
                    op["responses"]["403"].is_object(),
                    "{m} {path} documents 403"
                );
            }
        }
    }
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "operationIds are unique");
    assert_eq!(count, 12, "one operationId per operation");
    assert!(
        paths["/.well-known/jwks.json"]["get"]
            .get("security")
            .is_none(),
        "jwks is public"
    );

    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");

    let schemas = &doc["components"]["schemas"];
    for name in [
        "Problem",
        "TargetView",
        "CreateTarget",
        "SessionView",
        "EventView",
        "NodeView",
        "CreatedJoinToken",
    ] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    assert!(
        schemas["TargetView"]["properties"]
            .get("password")
            .is_none(),
        "password is not in responses"
    );
    assert_eq!(
        schemas["CreateTarget"]["properties"]["password"]["writeOnly"],
        true
    );
    assert_eq!(
        doc["components"]["responses"]["Unauthenticated"]["content"]["application/problem+json"]["schema"]
            ["$ref"],
        "#/components/schemas/Problem"
    );
}
