use serde_json::json;

use crate::common::Api;

#[tokio::test]
async fn lists_registered_nodes() {
    let api = Api::sqlite().await;
    let (status, v) = api.get("/api/v1/nodes").await;
    assert_eq!(status, 200);
    assert_eq!(v["items"], json!([]));

    let join = api.cp.store.create_join_token("edge").await.unwrap();
    let addrs = vec!["10.0.0.5:6432".to_owned()];
    let node = api
        .cp
        .store
        .register_node("edge-1", "0.1.0", &addrs, &join.record.id)
        .await
        .unwrap();

    let (status, v) = api.get("/api/v1/nodes").await;
    assert_eq!(status, 200);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let n = &items[0];
    assert_eq!(n["id"], node.id.as_str());
    assert_eq!(n["name"], "edge-1");
    assert_eq!(n["version"], "0.1.0");
    assert_eq!(n["listen_addrs"], json!(["10.0.0.5:6432"]));
    assert_eq!(n["join_token_id"], join.record.id.as_str());
    assert_eq!(n["last_seen_at_us"], node.last_seen_at);
    assert!(n["registered_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !v.to_string().contains(&join.token),
        "no join secret in node listing"
    );
}
