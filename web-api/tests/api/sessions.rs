use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;
use sluice_control_plane::store::{EventKind, StoredEvent};

use crate::common::{Api, assert_problem};

const T0: i64 = 1_700_000_000_000_000;

/// Walks every page of `path` (which has a `?`), returning the pages.
async fn walk(api: &Api, path: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let (status, page) = api.get(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        assert!(cursor.is_some() || page["next_cursor"].is_null());
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
        assert!(pages.len() < 20, "pagination does not end");
    }
}

async fn paginates_newest_first(api: &Api) {
    // Seven sessions; two share a start time to exercise the id tie-break.
    for i in 0..7_i64 {
        let at = if i == 6 { T0 + 5 } else { T0 + i };
        api.add_session(&format!("s-{i}"), "bot", "orders", at)
            .await;
    }
    let pages = walk(api, "/api/v1/sessions?limit=3").await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["items"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    let items: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .collect();
    let ids: Vec<&str> = items.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s-6", "s-5", "s-4", "s-3", "s-2", "s-1", "s-0"]);
    let starts: Vec<i64> = items
        .iter()
        .map(|s| s["started_at_us"].as_i64().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 7, "no duplicates");

    // Default page size holds them all.
    let (_, all) = api.get("/api/v1/sessions").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 7);
    assert!(all["next_cursor"].is_null());
}

#[tokio::test]
async fn paginates_newest_first_on_sqlite() {
    paginates_newest_first(&Api::sqlite().await).await;
}

#[tokio::test]
async fn paginates_newest_first_on_postgres() {
    paginates_newest_first(&Api::postgres().await).await;
}

#[tokio::test]
async fn filters_by_identity_and_target() {
    let api = Api::sqlite().await;
    api.add_session("a", "alice", "orders", T0).await;
    api.add_session("b", "bob", "orders", T0 + 1).await;
    api.add_session("c", "alice", "billing", T0 + 2).await;
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, v) = api.get("/api/v1/sessions?identity=alice").await;
    assert_eq!(ids(&v), ["c", "a"]);
    let (_, v) = api.get("/api/v1/sessions?target=orders").await;
    assert_eq!(ids(&v), ["b", "a"]);
    let (_, v) = api
        .get("/api/v1/sessions?identity=alice&target=orders")
        .await;
    assert_eq!(ids(&v), ["a"]);
}

#[tokio::test]
async fn one_session_and_its_fields() {
    let api = Api::sqlite().await;
    api.add_session("s-1", "bot", "orders", T0).await;
    let (status, s) = api.get("/api/v1/sessions/s-1").await;
    assert_eq!(status, 200);
    assert_eq!(s["identity"], "bot");
    assert_eq!(s["identity_kind"], "agent");
    assert_eq!(s["target"], "orders");
    assert_eq!(s["groups"], serde_json::json!(["eng"]));
    assert_eq!(s["started_at_us"], T0);
    assert_eq!(s["started_at"], "2023-11-14T22:13:20.000000Z");
    assert!(s["ended_at"].is_null());

    let resp = api
        .req(Method::GET, "/api/v1/sessions/nope")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
}

#[tokio::test]
async fn bad_query_parameters_are_problems() {
    let api = Api::sqlite().await;
    for q in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "limit=-1",
        "cursor=%%%",
        "cursor=bm90LWEtY3Vyc29y",
        "idnetity=alice",
    ] {
        let resp = api
            .req(Method::GET, &format!("/api/v1/sessions?{q}"))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
    let (status, _) = api.get("/api/v1/sessions?limit=500").await;
    assert_eq!(status, 200);
}

fn statement(text: &str) -> EventKind {
    EventKind::Statement {
        text: text.to_owned(),
        decision: "allow".to_owned(),
        policy: String::new(),
        rule: String::new(),
        reason: String::new(),
        kinds: vec!["select".to_owned()],
        protocol: "simple".to_owned(),
        duration_us: 42,
        rows: 1,
        sqlstate: String::new(),
        command_tag: "SELECT 1".to_owned(),
        approval_id: String::new(),
        masked: Default::default(),
        sample: None,
        parameters: Vec::new(),
        bytes: 0,
        http: None,
    }
}

#[tokio::test]
async fn events_page_in_sequence_with_exact_text() {
    let api = Api::sqlite().await;
    api.add_session("s-1", "bot", "orders", T0).await;
    let texts = [
        "SELECT 1",
        "SELECT 'it''s' AS \"quoted\",\n  e'\\t' -- comment ünïcødé",
        "  select   *  from orders where id = $1  ",
    ];
    let mut events: Vec<StoredEvent> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| StoredEvent {
            session_id: "s-1".to_owned(),
            seq: i as u64 + 2,
            at: T0 + 1_000 * (i as i64 + 1),
            kind: statement(t),
        })
        .collect();
    events.push(StoredEvent {
        session_id: "s-1".to_owned(),
        seq: 5,
        at: T0 + 9_000,
        kind: EventKind::SessionEnd {
            reason: "client_closed".to_owned(),
            statements: 3,
            bytes_to_client: 10,
            bytes_from_client: 20,
        },
    });
    api.cp.store.append_events(&events).await.unwrap();

    let pages = walk(&api, "/api/v1/sessions/s-1/events?limit=2").await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["items"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
    let items: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .collect();
    let seqs: Vec<u64> = items.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let kinds: Vec<&str> = items.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "session_start",
            "statement",
            "statement",
            "statement",
            "session_end"
        ]
    );
    for (item, text) in items[1..4].iter().zip(texts) {
        assert_eq!(item["text"], text, "statement text byte for byte");
        assert_eq!(item["decision"], "allow");
    }
    for item in &items {
        let us = item["at_us"].as_i64().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(item["at"].as_str().unwrap()).unwrap();
        assert_eq!(at.timestamp_micros(), us, "at and at_us agree");
    }
    assert_eq!(items[4]["reason"], "client_closed");

    // The session row reflects the end event.
    let (_, s) = api.get("/api/v1/sessions/s-1").await;
    assert_eq!(s["statements"], 3);
    assert_eq!(s["end_reason"], "client_closed");
    assert_eq!(s["ended_at_us"], T0 + 9_000);
}

#[tokio::test]
async fn events_of_unknown_session_and_bad_cursor_are_problems() {
    let api = Api::sqlite().await;
    api.add_session("s-1", "bot", "orders", T0).await;
    let resp = api
        .req(Method::GET, "/api/v1/sessions/nope/events")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
    for q in [
        "cursor=abc",
        "cursor=-1",
        "limit=0",
        "limit=1001",
        "after=3",
    ] {
        let resp = api
            .req(Method::GET, &format!("/api/v1/sessions/s-1/events?{q}"))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
    let (status, page) = api.get("/api/v1/sessions/s-1/events?cursor=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"], serde_json::json!([]));
}
