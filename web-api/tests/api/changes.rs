//! Administrative changes are recorded in the audit trail: who changed
//! which policy, target or credential, with a digest of what was stored,
//! chained and verifiable like every other record.

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::{Api, send};

fn policy(name: &str, default: &str) -> String {
    format!("name: {name}\nstatements:\n  default: {default}\n")
}

/// Every recorded change, oldest first, as (resource, name, action, event).
async fn changes(api: &Api) -> Vec<(String, String, String, Value)> {
    let (status, page) = api.get("/api/v1/sessions?kind=admin&limit=500").await;
    assert_eq!(status, 200, "{page}");
    let mut out = Vec::new();
    for s in page["items"].as_array().unwrap() {
        assert_eq!(s["identity"], "alice", "{s}");
        assert_eq!(s["statements"], 0, "{s}");
        let id = s["id"].as_str().unwrap();
        let (_, events) = api.get(&format!("/api/v1/sessions/{id}/events")).await;
        let events = events["items"].as_array().unwrap().clone();
        assert_eq!(events.len(), 1, "{events:?}");
        let e = events[0].clone();
        assert_eq!(e["kind"], "config_change", "{e}");
        assert_eq!(e["actor"], "alice");
        let (_, verdict) = api.get(&format!("/api/v1/sessions/{id}/verify")).await;
        assert_eq!(verdict["status"], "intact", "{verdict}");
        out.push((
            e["resource"].as_str().unwrap().to_owned(),
            e["name"].as_str().unwrap().to_owned(),
            e["action"].as_str().unwrap().to_owned(),
            e,
        ));
    }
    out.sort_by_key(|c| c.3["at_us"].as_i64());
    out
}

async fn policy_changes_are_recorded_with_their_digest(api: Api) {
    let v1 = policy("p1", "deny");
    let v2 = policy("p1", "allow");
    let (status, body) = api.post("/api/v1/policies", &json!({ "source": v1 })).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        api.req(Method::PUT, "/api/v1/policies/p1")
            .json(&json!({ "source": v2 })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A refused change records nothing.
    let (status, _) = api
        .post("/api/v1/policies", &json!({ "source": "name: [" }))
        .await;
    assert_eq!(status, 422);
    let (status, _) = send(api.req(Method::DELETE, "/api/v1/policies/p1")).await;
    assert_eq!(status, 204);
    let (status, key) = api
        .post(
            "/api/v1/api-keys",
            &json!({ "name": "siem", "role": "auditor" }),
        )
        .await;
    assert_eq!(status, 201, "{key}");

    let got = changes(&api).await;
    let summary: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(r, n, a, _)| (r.as_str(), n.as_str(), a.as_str()))
        .collect();
    let key_id = key["id"].as_str().unwrap();
    assert_eq!(
        summary,
        vec![
            ("policy", "p1", "created"),
            ("policy", "p1", "replaced"),
            ("policy", "p1", "deleted"),
            ("api_key", key_id, "created"),
        ]
    );
    let digest = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    assert_eq!(got[0].3["digest"], digest(&v1));
    assert_eq!(got[0].3["version"], 1);
    assert_eq!(got[1].3["digest"], digest(&v2));
    assert_eq!(got[1].3["version"], 2);
    assert!(got[2].3.get("digest").is_none());
    // The record names the key, never its secret.
    let secret = key["key"].as_str().unwrap();
    assert!(!got[3].3.to_string().contains(secret));
    // The whole store, changes included, still verifies.
    let (_, all) = api.get("/api/v1/audit/verify").await;
    assert_eq!(all["ok"], true, "{all}");
}

#[tokio::test]
async fn policy_changes_are_recorded_on_sqlite() {
    policy_changes_are_recorded_with_their_digest(Api::sqlite().await).await;
}

#[tokio::test]
async fn policy_changes_are_recorded_on_postgres() {
    policy_changes_are_recorded_with_their_digest(Api::postgres().await).await;
}
