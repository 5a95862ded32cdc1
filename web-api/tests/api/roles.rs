//! Every endpoint checks its role. The roles an operation admits are read
//! from its security requirement in the OpenAPI document, so the test covers
//! every documented endpoint and fails if the code and the document disagree.
//! The pseudo-role `any` admits every verified identity, with no role at all.

use reqwest::Method;
use serde_json::Value;
use sluice_identity::Role;

use crate::common::Api;

const ROLES: [(Role, &str); 3] = [
    (Role::Admin, "admin"),
    (Role::Approver, "approver"),
    (Role::Auditor, "auditor"),
];

/// (method, path with every parameter filled, admitted roles) per protected
/// operation.
fn operations(doc: &Value) -> Vec<(Method, String, Vec<String>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(security) = op["security"].as_array() else {
                continue;
            };
            let roles: Vec<String> = security
                .iter()
                .flat_map(|req| req["bearer"].as_array().cloned().unwrap_or_default())
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            assert!(
                !roles.is_empty(),
                "{method} {path} is protected but names no role"
            );
            let concrete = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            out.push((method, concrete, roles));
        }
    }
    out
}

async fn status(api: &Api, method: &Method, path: &str, bearer: &str) -> u16 {
    api.anon(method.clone(), path)
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_endpoint_admits_exactly_its_roles_by_token_and_by_api_key() {
    let api = Api::sqlite().await;
    let (_, doc) = api.get("/api/v1/openapi.json").await;
    let ops = operations(&doc);
    assert!(
        ops.len() >= 25,
        "only {} protected operations found",
        ops.len()
    );
    let mut keys = Vec::new();
    for (_, name) in ROLES {
        let (_, created) = api
            .post(
                "/api/v1/api-keys",
                &serde_json::json!({"name": name, "role": name}),
            )
            .await;
        keys.push(created["key"].as_str().unwrap().to_owned());
    }
    let nobody = api.token("nobody", &[]);
    for (method, path, admitted) in &ops {
        for (i, (role, name)) in ROLES.iter().enumerate() {
            let token = api.token(&format!("holder-{name}"), &[*role]);
            for (how, credential) in [("token", token.as_str()), ("API key", keys[i].as_str())] {
                let got = status(&api, method, path, credential).await;
                if admitted.iter().any(|r| r == name || r == "any") {
                    assert!(
                        got != 401 && got != 403,
                        "{method} {path}: {name} by {how} must be admitted, got {got}"
                    );
                } else {
                    assert_eq!(got, 403, "{method} {path}: {name} by {how} must be refused");
                }
            }
        }
        let got = status(&api, method, path, &nobody).await;
        if admitted.iter().any(|r| r == "any") {
            assert!(
                got != 401 && got != 403,
                "{method} {path}: any verified identity must be admitted, got {got}"
            );
        } else {
            assert_eq!(got, 403, "{method} {path}");
        }
    }
}
