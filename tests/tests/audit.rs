#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The audit trail of Postgres sessions as the REST API shows it: sessions
//! newest first, and each session's statements in order with their exact
//! text, row counts and, for failures, their SQLSTATE.

use std::time::Duration;

use serde_json::Value;
use sluice_e2e::gateway::Gateway;
use tokio_postgres::error::SqlState;

/// One recorded statement, reduced to what this test checks.
#[derive(Debug, PartialEq, Eq)]
struct Recorded {
    text: String,
    protocol: String,
    decision: String,
    rows: u64,
    sqlstate: Option<String>,
    command_tag: Option<String>,
}

impl Recorded {
    fn of(e: &Value) -> Self {
        let opt = |k: &str| e[k].as_str().map(str::to_owned);
        Self {
            text: opt("text").unwrap_or_default(),
            protocol: opt("protocol").unwrap_or_default(),
            decision: opt("decision").unwrap_or_default(),
            rows: e["rows"].as_u64().unwrap_or(u64::MAX),
            sqlstate: opt("sqlstate"),
            command_tag: opt("command_tag"),
        }
    }

    fn ok(text: &str, protocol: &str, rows: u64, tag: &str) -> Self {
        Self {
            text: text.to_owned(),
            protocol: protocol.to_owned(),
            decision: "allow".to_owned(),
            rows,
            sqlstate: None,
            command_tag: Some(tag.to_owned()),
        }
    }

    fn failed(text: &str, protocol: &str, decision: &str, sqlstate: &str) -> Self {
        Self {
            text: text.to_owned(),
            protocol: protocol.to_owned(),
            decision: decision.to_owned(),
            rows: 0,
            sqlstate: Some(sqlstate.to_owned()),
            command_tag: None,
        }
    }
}

#[tokio::test]
async fn sessions_and_their_statements_are_recorded_exactly_and_in_order() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let api = gw.api();

    // An earlier session, to see the order of the list.
    let first = gw.connect("e2e-audit-first").await.unwrap();
    first.simple_query("SELECT 1").await.unwrap();
    drop(first);
    api.ended_session("e2e-audit-first", Duration::from_secs(15))
        .await
        .unwrap();

    let client = gw.connect("e2e-audit").await.unwrap();
    let odd_text = "  SELECT /* exact, bytes */ 'x' AS \"y\"\n\t, 42  ";
    client
        .simple_query("SELECT id, name FROM customers ORDER BY id")
        .await
        .unwrap();
    let rows = client
        .query("SELECT name FROM customers WHERE id = $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let updated = client
        .execute(
            "UPDATE orders SET status = $1 WHERE customer_id = $2",
            &[&"checked", &1i32],
        )
        .await
        .unwrap();
    assert_eq!(updated, 2);
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    let err = client
        .query("SELECT 1 / $1::int", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    client.simple_query(odd_text).await.unwrap();
    client
        .batch_execute("INSERT INTO feature_flags VALUES ('audit', true); SELECT 1")
        .await
        .unwrap();
    let err = client.simple_query("SELEC oops").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    drop(client);

    let session = api
        .ended_session("e2e-audit", Duration::from_secs(15))
        .await
        .unwrap();
    let id = session["id"].as_str().unwrap().to_owned();

    // The list: newest first.
    let sessions = api.sessions().await.unwrap();
    let apps: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["application_name"].as_str())
        .collect();
    assert_eq!(apps, ["e2e-audit", "e2e-audit-first"], "{sessions:?}");
    // Loading the policy at start is on record as a configuration change.
    let changes = api.admin_changes().await.unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["identity"] == "sluice dev" && c["target"] == "policy observe"),
        "{changes:?}"
    );
    assert_eq!(sessions[0]["id"], id.as_str());
    for (field, want) in [
        ("identity", "agent"),
        ("identity_kind", "agent"),
        ("target", "demo"),
        ("protocol", "postgres"),
        ("end_reason", "client_closed"),
    ] {
        assert_eq!(session[field], want, "{field}: {session}");
    }
    assert_eq!(session["tls"], false);
    assert_eq!(session["statements"], 8, "{session}");
    assert!(session["started_at_us"].as_i64() <= session["ended_at_us"].as_i64());

    // The events: start, the statements in order, end; sequence without gaps.
    let events = api.events(&id).await.unwrap();
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.first().unwrap()["kind"], "session_start");
    assert_eq!(events.first().unwrap()["application_name"], "e2e-audit");
    let end = events.last().unwrap();
    assert_eq!(end["kind"], "session_end");
    assert_eq!(end["reason"], "client_closed");
    assert_eq!(end["statements"], 8);
    assert!(end["bytes_to_client"].as_u64().unwrap() > 0);

    let statements: Vec<Recorded> = events
        .iter()
        .filter(|e| e["kind"] == "statement")
        .map(Recorded::of)
        .collect();
    let want = [
        Recorded::ok(
            "SELECT id, name FROM customers ORDER BY id",
            "simple",
            4,
            "SELECT 4",
        ),
        Recorded::ok(
            "SELECT name FROM customers WHERE id = $1",
            "extended",
            1,
            "SELECT 1",
        ),
        Recorded::ok(
            "UPDATE orders SET status = $1 WHERE customer_id = $2",
            "extended",
            2,
            "UPDATE 2",
        ),
        Recorded::failed("SELECT 1/0", "simple", "allow", "22012"),
        Recorded::failed("SELECT 1 / $1::int", "extended", "allow", "22012"),
        Recorded::ok(odd_text, "simple", 1, "SELECT 1"),
        Recorded::ok(
            "INSERT INTO feature_flags VALUES ('audit', true); SELECT 1",
            "simple",
            2,
            "SELECT 1",
        ),
        Recorded::failed("SELEC oops", "simple", "deny", "42501"),
    ];
    assert_eq!(statements.len(), want.len(), "{statements:#?}");
    for (got, want) in statements.iter().zip(&want) {
        assert_eq!(got, want);
    }
    let refused = events.iter().find(|e| e["text"] == "SELEC oops").unwrap();
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("could not be parsed")),
        "{refused}"
    );

    // Unknown sessions are a 404, not an empty list.
    let missing = api
        .get("/api/v1/sessions/00000000-0000-0000-0000-000000000000/events")
        .await;
    assert!(missing.unwrap_err().to_string().contains("404"));
}

/// The recorded statement event whose text is `text`, once stored.
async fn recorded_statement(gw: &Gateway, app: &str, text: &str) -> Value {
    let api = gw.api();
    let session = api
        .ended_session(app, Duration::from_secs(15))
        .await
        .unwrap();
    let events = api.events(session["id"].as_str().unwrap()).await.unwrap();
    events
        .into_iter()
        .find(|e| e["kind"] == "statement" && e["text"] == text)
        .unwrap_or_else(|| panic!("no statement {text:?} recorded"))
}

#[tokio::test]
async fn the_record_keeps_a_bounded_masked_sample_of_each_result() {
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/reference.yaml"
    );
    let gw = Gateway::seeded(&["--policy", policy]).await.unwrap();
    let client = gw.connect("e2e-sample").await.unwrap();
    let masked = "SELECT name, email, ssn FROM customers ORDER BY id";
    client.simple_query(masked).await.unwrap();
    let many = "SELECT g FROM generate_series(1, 1000) AS g";
    client.simple_query(many).await.unwrap();
    drop(client);

    let e = recorded_statement(&gw, "e2e-sample", masked).await;
    let sample = &e["sample"];
    assert_eq!(
        sample["columns"],
        serde_json::json!(["name", "email", "ssn"])
    );
    let rows = sample["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{sample}");
    assert_eq!(rows[0][0], "Alice Wonder");
    assert_eq!(sample["truncated"], false);
    // Exactly what the client saw: masked, never the raw value.
    let text = e.to_string();
    for raw in ["alice.wonder@example.com", "123-45-6789"] {
        assert!(!text.contains(raw), "{raw} in the record: {text}");
    }
    assert!(
        rows[0][1].as_str().unwrap().ends_with("@example.com"),
        "{sample}"
    );

    // The reference policy keeps the first 100 rows and says it cut.
    let e = recorded_statement(&gw, "e2e-sample", many).await;
    let rows = e["sample"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 100);
    assert_eq!(rows[99][0], "100");
    assert_eq!(e["sample"]["truncated"], true);
    assert_eq!(e["rows"], 1000);
}

#[tokio::test]
async fn bound_parameters_are_redacted_unless_policy_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("keep.yaml");
    std::fs::write(
        &keep,
        "name: keep\naudit:\n  parameters: keep\nstatements:\n  default: allow\n",
    )
    .unwrap();
    let redacting = Gateway::seeded(&[]).await.unwrap();
    let keeping = Gateway::seeded(&["--policy", keep.to_str().unwrap()])
        .await
        .unwrap();
    let text = "SELECT name FROM customers WHERE id = $1 OR name = $2";
    for gw in [&redacting, &keeping] {
        let c = gw.connect("e2e-params").await.unwrap();
        let rows = c.query(text, &[&2i32, &"Dana Ortiz"]).await.unwrap();
        assert_eq!(rows.len(), 2);
        drop(c);
    }
    let e = recorded_statement(&redacting, "e2e-params", text).await;
    assert_eq!(
        e["parameters"],
        serde_json::json!(["<redacted: 4 bytes>", "<redacted: 10 bytes>"]),
        "{e}"
    );
    assert!(e["bytes"].as_u64().unwrap() > 0, "{e}");
    let e = recorded_statement(&keeping, "e2e-params", text).await;
    assert_eq!(
        e["parameters"],
        serde_json::json!(["<4 bytes, binary>", "Dana Ortiz"]),
        "{e}"
    );
}
