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

    // The dry run takes SQL or an HTTP request.
    let check = &doc["components"]["schemas"]["CheckRequest"]["properties"];
    assert!(
        check["sql"].is_object() && check["http"].is_object(),
        "{check}"
    );
    assert!(
        doc["components"]["schemas"]["HttpCheck"]["properties"]["method"].is_object(),
        "HttpCheck described"
    );

    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/targets", &["get", "post"][..]),
        ("/api/v1/targets/{name}", &["get", "delete"]),
        ("/api/v1/policies", &["get", "post"]),
        ("/api/v1/policies/{name}", &["get", "put", "delete"]),
        ("/api/v1/policies/{name}/versions", &["get"]),
        ("/api/v1/policies/check", &["post"]),
        ("/api/v1/sessions", &["get"]),
        ("/api/v1/sessions/{id}", &["get"]),
        ("/api/v1/sessions/{id}/events", &["get"]),
        ("/api/v1/sessions/{id}/end", &["post"]),
        ("/api/v1/nodes", &["get"]),
        ("/api/v1/join-tokens", &["get", "post"]),
        ("/api/v1/join-tokens/{id}", &["delete"]),
        ("/api/v1/service-accounts", &["get", "post"]),
        ("/api/v1/service-accounts/{name}", &["get", "delete"]),
        ("/api/v1/service-accounts/{name}/tokens", &["get", "post"]),
        ("/api/v1/service-accounts/{name}/tokens/{id}", &["delete"]),
        ("/api/v1/api-keys", &["get", "post"]),
        ("/api/v1/api-keys/{id}", &["delete"]),
        ("/api/v1/grants", &["get", "post"]),
        ("/api/v1/grants/{id}", &["get"]),
        ("/api/v1/grants/{id}/approve", &["post"]),
        ("/api/v1/grants/{id}/deny", &["post"]),
        ("/api/v1/grants/{id}/revoke", &["post"]),
        ("/oauth/token", &["post"]),
        ("/.well-known/jwks.json", &["get"]),
    ];
    for (path, methods) in expected {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
        for m in methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {path} missing");
            if path.starts_with("/api/") {
                // The admitted roles; `roles.rs` checks the code agrees.
                assert!(
                    op["security"][0]["bearer"]
                        .as_array()
                        .is_some_and(|roles| !roles.is_empty()),
                    "{m} {path} secured with its roles"
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
    assert_eq!(count, 45, "one operationId per operation");
    assert!(
        paths["/.well-known/jwks.json"]["get"]
            .get("security")
            .is_none(),
        "jwks is public"
    );
    assert!(
        paths["/oauth/token"]["post"].get("security").is_none(),
        "the token endpoint authenticates clients itself"
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
        "PolicySummary",
        "PolicyView",
        "PolicyVersionView",
        "PolicyBody",
        "CheckRequest",
        "CheckAnswer",
        "FieldError",
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
    // Policies are sent as YAML or JSON; invalid ones are 422 problems
    // whose `errors` name the field.
    for (path, method) in [
        ("/api/v1/policies", "post"),
        ("/api/v1/policies/{name}", "put"),
    ] {
        let op = &paths[path][method];
        let content = op["requestBody"]["content"].as_object().unwrap();
        for ctype in [
            "application/yaml",
            "application/x-yaml",
            "text/yaml",
            "application/json",
        ] {
            assert!(content.contains_key(ctype), "{method} {path} takes {ctype}");
        }
        assert_eq!(
            content["application/json"]["schema"]["$ref"],
            "#/components/schemas/PolicyBody"
        );
        for status in ["413", "415", "422"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    assert_eq!(
        schemas["Problem"]["properties"]["errors"]["type"][0], "array",
        "{}",
        schemas["Problem"]
    );
    assert_eq!(
        schemas["CheckAnswer"]["properties"]["decision"]["$ref"],
        "#/components/schemas/DecisionName"
    );
    assert_eq!(
        schemas["DecisionName"]["enum"],
        serde_json::json!(["allow", "approval", "deny"])
    );
    assert!(
        schemas["PolicySummary"]["properties"]
            .get("source")
            .is_none(),
        "listings carry no source"
    );
    assert_eq!(
        doc["components"]["responses"]["Unauthenticated"]["content"]["application/problem+json"]["schema"]
            ["$ref"],
        "#/components/schemas/Problem"
    );
}
