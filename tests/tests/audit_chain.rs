#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The tamper-evident record end to end: real traffic through `sluice dev`,
//! a JSONL export fetched over the API and verified offline with `sluice
//! audit verify --file`, each kind of tampering of the export named at the
//! right line, and tampering of the live store (behind its append-only
//! triggers) found by online verification and by the signed checkpoints.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::gateway::{Gateway, eventually};
use sluice_e2e::process::sluice_bin;

/// Runs the `sluice` binary; returns its exit code and standard output.
fn sluice(args: &[&str]) -> (i32, String) {
    let out = Command::new(sluice_bin()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

fn verify_file(path: &Path) -> (i32, String) {
    sluice(&["audit", "verify", "--file", path.to_str().unwrap()])
}

async fn export(gw: &Gateway, id: &str) -> String {
    let r = gw.ready();
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/sessions/{id}/export?format=jsonl",
            r.api_url
        ))
        .bearer_auth(&r.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

/// Runs a session of `statements` and returns its id once it has ended.
async fn session(gw: &Gateway, app: &str, statements: &[&str]) -> String {
    let client = gw.connect(app).await.unwrap();
    for s in statements {
        let _ = client.simple_query(s).await;
    }
    drop(client);
    let s = gw
        .api()
        .ended_session(app, Duration::from_secs(20))
        .await
        .unwrap();
    s["id"].as_str().unwrap().to_owned()
}

fn write_lines(dir: &Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", lines.join("\n"))).unwrap();
    path
}

const STATEMENTS: &[&str] = &[
    "SELECT id, name FROM customers ORDER BY id",
    "SELECT count(*) FROM customers",
    "SELECT 'marker-three'",
    "SELECT no_such_column FROM customers",
    "SELECT 5",
];

#[tokio::test]
async fn exports_verify_offline_and_every_tampering_is_named() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let id = session(&gw, "e2e-chain-export", STATEMENTS).await;
    let body = export(&gw, &id).await;
    let lines: Vec<&str> = body.lines().collect();
    // Start, five statements, end, seal.
    assert_eq!(lines.len(), 8, "{body}");
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (first["v"].as_u64(), first["seq"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(lines[7].starts_with("{\"seal\":"));

    let dir = tempfile::tempdir().unwrap();
    let untouched = write_lines(dir.path(), "untouched.jsonl", &lines);
    let (code, out) = verify_file(&untouched);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("OK:") && out.contains("7 event(s)"),
        "{out}"
    );

    // Line 4 holds the third statement.
    assert!(lines[3].contains("marker-three"));
    let altered_line = lines[3].replace("marker-three", "marker-3");
    let mut altered = lines.clone();
    altered[3] = &altered_line;
    let mut removed = lines.clone();
    removed.remove(3);
    let mut reordered = lines.clone();
    reordered.swap(3, 4);
    let mut inserted = lines.clone();
    inserted.insert(4, lines[3]);
    let mut cut = lines.clone();
    cut.remove(6);
    let cases = [
        ("altered", altered, "line 4 (seq 4)", "altered"),
        ("removed", removed, "line 4 (seq 5)", "removed"),
        ("reordered", reordered, "line 4 (seq 5)", "out of order"),
        ("inserted", inserted, "line 5 (seq 4)", "again"),
        ("cut", cut, "line 7", "seal"),
    ];
    for (name, tampered, at, what) in cases {
        let path = write_lines(dir.path(), &format!("{name}.jsonl"), &tampered);
        let (code, out) = verify_file(&path);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.starts_with("TAMPERED"), "{name}: {out}");
        assert!(out.contains(&format!("first bad {at}")), "{name}: {out}");
        assert!(out.contains(what), "{name}: {out}");
    }
}

#[tokio::test]
async fn the_live_store_refuses_changes_and_tampering_behind_it_is_found() {
    let gw = Gateway::seeded(&["--audit-checkpoint-interval", "300ms"])
        .await
        .unwrap();
    let altered = session(&gw, "e2e-chain-altered", STATEMENTS).await;
    let cut = session(&gw, "e2e-chain-cut", STATEMENTS).await;
    let api = gw.api();
    let r = gw.ready();
    let online = |id: &str| {
        sluice(&[
            "audit",
            "verify",
            id,
            "--api-url",
            &r.api_url,
            "--token",
            &r.admin_token,
        ])
    };
    let (code, out) = online(&altered);
    assert_eq!(code, 0, "{out}");
    // Wait for a checkpoint to cover both sessions to their last event.
    eventually(Duration::from_secs(15), || async {
        for id in [&altered, &cut] {
            let v = api.get(&format!("/api/v1/sessions/{id}/verify")).await?;
            let signed = v["anchors"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["seq"] == v["last_seq"]));
            anyhow::ensure!(v["status"] == "intact" && signed, "{v}");
        }
        let v = api.get("/api/v1/audit/verify").await?;
        anyhow::ensure!(v["ok"] == true, "{v}");
        Ok(())
    })
    .await
    .unwrap();

    let db = gw.sluice.dir.path().join("data").join("sluice.db");
    let store = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let refused = sqlx::query("UPDATE session_events SET payload = '{}' WHERE seq = 2")
        .execute(&store)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    let refused = sqlx::query("DELETE FROM session_events")
        .execute(&store)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");

    // What the file's owner can still do: drop the triggers and tamper.
    for t in ["session_events_no_update", "session_events_no_delete"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {t}")))
            .execute(&store)
            .await
            .unwrap();
    }
    sqlx::query(
        "UPDATE session_events SET payload = replace(payload, 'marker-three', 'marker-3'), \
         statement = replace(statement, 'marker-three', 'marker-3') WHERE session_id = $1 AND seq = 4",
    )
    .bind(&altered)
    .execute(&store)
    .await
    .unwrap();
    sqlx::query("DELETE FROM session_events WHERE session_id = $1 AND seq >= 6")
        .bind(&cut)
        .execute(&store)
        .await
        .unwrap();

    let (code, out) = online(&altered);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("first bad event position 4 (seq 4)") && out.contains("altered"),
        "{out}"
    );
    let (code, out) = online(&cut);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("events 6 to 7 are missing at the end"),
        "{out}"
    );
    assert!(out.contains("checkpoint"), "{out}");
    let (code, out) = sluice(&[
        "audit",
        "verify",
        "--store",
        "--api-url",
        &r.api_url,
        "--token",
        &r.admin_token,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "session {cut}: checkpointed up to seq 7, store has seq 5"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn sessions_are_listed_shown_exported_and_replayed_from_the_cli() {
    let gw = Gateway::seeded(&[]).await.unwrap();
    let id = session(&gw, "e2e-chain-cli", STATEMENTS).await;
    let r = gw.ready();
    let api = [
        "--api-url",
        r.api_url.as_str(),
        "--token",
        r.admin_token.as_str(),
    ];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(api);
        sluice(&all)
    };
    let (code, out) = run(&["sessions", "list", "--text", "MARKER-THREE"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&id), "{out}");
    let (_, none) = run(&["sessions", "list", "--text", "never-sent"]);
    assert!(!none.contains(&id), "{none}");

    let (code, out) = run(&["sessions", "show", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("agent=> SELECT 'marker-three'"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.jsonl");
    let (code, out) = run(&["sessions", "export", &id, "-o", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(verify_file(&file).0, 0);

    let started = std::time::Instant::now();
    let (code, out) = run(&["sessions", "replay", &id, "--speed", "1000"]);
    assert_eq!(code, 0, "{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let order: Vec<usize> = STATEMENTS
        .iter()
        .map(|s| {
            out.find(&format!("=> {s}"))
                .unwrap_or_else(|| panic!("{s} in {out}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(out.contains("ERROR:  failed with SQLSTATE 42703"), "{out}");
    assert!(out.contains("-- disconnected"), "{out}");
}
