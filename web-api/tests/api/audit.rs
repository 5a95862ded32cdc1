//! The auditor's endpoints over HTTP: a streamed export verifies offline
//! and its tampering is named; online verification; CSV and OCSF exports;
//! the resumable SIEM pull; search filters.

use reqwest::Method;
use serde_json::Value;
use sluice_control_plane::audit::verify::{Options, ProblemKind, Status, parse_line, verify};
use sluice_control_plane::store::{EventKind, StoredEvent};
use sluice_identity::Role;

use crate::common::{Api, assert_problem};

const T0: i64 = 1_700_000_000_000_000;

fn statement(session: &str, seq: u64, text: &str, decision: &str) -> StoredEvent {
    StoredEvent {
        session_id: session.to_owned(),
        seq,
        at: T0 + i64::try_from(seq).unwrap() * 1000,
        kind: EventKind::Statement {
            text: text.to_owned(),
            decision: decision.to_owned(),
            policy: String::new(),
            rule: String::new(),
            reason: String::new(),
            kinds: vec!["select".to_owned()],
            protocol: "simple".to_owned(),
            duration_us: 5,
            rows: 1,
            sqlstate: String::new(),
            command_tag: "SELECT 1".to_owned(),
            approval_id: String::new(),
            masked: Default::default(),
            sample: None,
            parameters: Vec::new(),
            bytes: 0,
            http: None,
        },
    }
}

/// A session `id` with a start and statements 2..=n.
async fn session(api: &Api, id: &str, n: u64) {
    api.add_session(id, "bot", "orders", T0).await;
    let events: Vec<_> = (2..=n)
        .map(|q| statement(id, q, &format!("SELECT {q}, 'a,\"b\"'"), "allow"))
        .collect();
    api.cp.store.append_events(&events).await.unwrap();
}

async fn export(api: &Api, id: &str, format: &str) -> (u16, String, String) {
    let resp = api
        .req(
            Method::GET,
            &format!("/api/v1/sessions/{id}/export?format={format}"),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

fn check(text: &str) -> sluice_control_plane::audit::verify::Report {
    let items: Vec<_> = text.lines().map(parse_line).collect();
    verify(
        &items,
        &Options {
            require_seal: true,
            ..Options::default()
        },
    )
}

#[tokio::test]
async fn a_jsonl_export_verifies_on_its_own_and_names_tampering() {
    let api = Api::postgres().await;
    // More than one export page.
    session(&api, "s-big", 2500).await;
    let (status, ct, body) = export(&api, "s-big", "jsonl").await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2501, "2500 events and a seal");
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["v"], 1);
    assert!(first["prev_hash"].is_string() && first["hash"].is_string());
    let r = check(&body);
    assert_eq!(r.status, Status::Intact, "{:?}", r.problem);
    assert_eq!(r.events, 2500);

    let altered = body.replacen("SELECT 1200,", "SELECT 1201,", 1);
    let p = check(&altered).problem.unwrap();
    assert_eq!((p.line, p.kind), (1200, ProblemKind::Modified));
    let mut removed: Vec<&str> = lines.clone();
    removed.remove(9);
    let p = check(&removed.join("\n")).problem.unwrap();
    assert_eq!((p.line, p.kind), (10, ProblemKind::Removed));
    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(4, 5);
    let p = check(&swapped.join("\n")).problem.unwrap();
    assert_eq!((p.line, p.kind), (5, ProblemKind::OutOfOrder));
}

#[tokio::test]
async fn online_verification_gives_the_verdict() {
    let api = Api::sqlite().await;
    session(&api, "s-1", 5).await;
    let auditor = api.token("erin", &[Role::Auditor]);
    let resp = api
        .anon(Method::GET, "/api/v1/sessions/s-1/verify")
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "intact", "{v}");
    assert_eq!(v["events"], 5);
    let resp = api
        .req(Method::GET, "/api/v1/sessions/none/verify")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
    let (status, v) = api.get("/api/v1/audit/verify").await;
    assert_eq!(status, 200);
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn csv_and_ocsf_exports() {
    let api = Api::sqlite().await;
    session(&api, "s-1", 3).await;
    let (status, ct, csv) = export(&api, "s-1", "csv").await;
    assert_eq!((status, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[0].starts_with("session_id,seq,"));
    assert!(
        rows[2].contains("\"SELECT 2, 'a,\"\"b\"\"'\""),
        "{}",
        rows[2]
    );
    let (status, _, ocsf) = export(&api, "s-1", "ocsf").await;
    assert_eq!(status, 200);
    let events: Vec<Value> = ocsf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["class_uid"], 3002);
    assert_eq!(events[1]["class_uid"], 6005);
    assert_eq!(
        events[1]["query_info"]["query_string"],
        "SELECT 2, 'a,\"b\"'"
    );
    let resp = api
        .req(Method::GET, "/api/v1/sessions/s-1/export?format=xml")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400).await;
    let resp = api
        .req(Method::GET, "/api/v1/sessions/none/export")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
}

#[tokio::test]
async fn the_siem_pull_resumes_where_it_stopped() {
    let api = Api::sqlite().await;
    session(&api, "a", 3).await;
    let (_, page) = api.get("/api/v1/audit/events?limit=2").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    session(&api, "b", 2).await;
    let (_, rest) = api
        .get(&format!("/api/v1/audit/events?after={cursor}"))
        .await;
    let got: Vec<(String, u64)> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["record"]["session_id"].as_str().unwrap().to_owned(),
                i["record"]["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = vec![("a".into(), 3), ("b".into(), 1), ("b".into(), 2)];
    assert_eq!(got, want);
    let end = rest["next_cursor"].as_str().unwrap();
    let (_, empty) = api.get(&format!("/api/v1/audit/events?after={end}")).await;
    assert!(empty["items"].as_array().unwrap().is_empty());
    assert_eq!(empty["next_cursor"], end);
    let resp = api
        .req(Method::GET, "/api/v1/audit/events?after=x")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400).await;
}

#[tokio::test]
async fn sessions_are_searched_by_statement_and_decision() {
    let api = Api::sqlite().await;
    session(&api, "quiet", 2).await;
    api.add_session("loud", "ann", "orders", T0 + 10).await;
    api.cp
        .store
        .append_events(&[statement("loud", 2, "DROP TABLE orders", "deny")])
        .await
        .unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, v) = api.get("/api/v1/sessions?decision=deny").await;
    assert_eq!(ids(&v), ["loud"]);
    let (_, v) = api.get("/api/v1/sessions?text=drop%20table").await;
    assert_eq!(ids(&v), ["loud"]);
    let (_, v) = api
        .get("/api/v1/sessions?kind=agent&from=2023-11-14T22:13:20Z")
        .await;
    assert_eq!(ids(&v), ["loud", "quiet"]);
    let (_, v) = api
        .get("/api/v1/sessions?to=2023-11-14T22:13:20.000005Z")
        .await;
    assert_eq!(ids(&v), ["quiet"]);
    for q in ["kind=robot", "decision=maybe", "from=yesterday"] {
        let resp = api
            .req(Method::GET, &format!("/api/v1/sessions?{q}"))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
}
