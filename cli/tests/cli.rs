//! The binary's own command-line behaviour: exit codes and messages for bad
//! input, and offline token issuing. (Building this target also makes Cargo
//! build the `sluice` binary that the end-to-end suite in `tests/` starts.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

#[test]
fn help_lists_the_roles() {
    let out = sluice().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for role in ["dev", "control-plane", "data-plane", "token"] {
        assert!(text.contains(role), "--help should mention {role}:\n{text}");
    }
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = sluice()
        .args(["control-plane", "--config", "/nonexistent/cp.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cp.toml"));
}

#[test]
fn a_typo_in_the_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dp.toml");
    std::fs::write(
        &cfg,
        "control_plane_url = 'http://127.0.0.1:1'\njoin_token = 'x'\npg_listn = '127.0.0.1:0'\n",
    )
    .unwrap();
    let out = sluice()
        .args(["data-plane", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_listn"));
}

#[test]
fn plaintext_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dp.toml");
    std::fs::write(
        &cfg,
        "control_plane_url = 'http://127.0.0.1:1'\njoin_token = 'x'\npg_listen = '0.0.0.0:0'\ninsecure_plaintext = true\n",
    )
    .unwrap();
    let out = sluice()
        .args(["data-plane", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn token_issue_signs_with_the_configured_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = sluice_identity::SigningKey::generate();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, key.to_pem().unwrap()).unwrap();
    let cfg = dir.path().join("cp.toml");
    std::fs::write(
        &cfg,
        format!(
            "store_url = 'sqlite:///unused'\nissuer_url = 'https://cp.example'\nsigning_key_file = '{}'\n",
            key_path.display()
        ),
    )
    .unwrap();
    let out = sluice()
        .args([
            "token",
            "issue",
            "--subject",
            "alice",
            "--role",
            "admin",
            "--group",
            "ops",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let verifier = sluice_identity::Verifier::from_jwks(
        "https://cp.example",
        "sluice",
        &sluice_identity::SigningKey::jwks_json(&[key]),
        0,
    )
    .unwrap();
    let id = verifier.verify(token.trim()).unwrap();
    assert_eq!(id.name, "alice");
    assert_eq!(id.groups, ["ops"]);
    assert!(id.has_role(sluice_identity::Role::Admin));
}

#[test]
fn token_issue_refuses_an_unknown_role() {
    let out = sluice()
        .args(["token", "issue", "--subject", "a", "--role", "root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("root"));
}

fn reference_policy() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/reference.yaml")
}

#[test]
fn policy_check_prints_the_decision_and_exits_zero_whatever_it_is() {
    let out = sluice()
        .args([
            "policy",
            "check",
            "--group",
            "agents",
            "--format",
            "json",
            "--sql",
            "DELETE FROM customers WHERE id = 4",
            "--policy",
        ])
        .arg(reference_policy())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"], "deny");
    assert_eq!(json["rule"], "no-critical-deletes");
    assert_eq!(json["statements"][0]["kind"], "delete");
    assert!(
        json["reasons"][0]
            .as_str()
            .unwrap()
            .contains("critical table public.customers")
    );
    let out = sluice()
        .args([
            "policy", "check", "--group", "agents", "--sql", "SELECT 1", "--policy",
        ])
        .arg(reference_policy())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("allow"));
}

#[test]
fn policy_check_exits_two_on_a_bad_policy_or_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: p\nstatements:\n  rules:\n    - name: r\n      tables: nosuchset\n      decision: deny\n").unwrap();
    let out = sluice()
        .args(["policy", "check", "--sql", "SELECT 1", "--policy"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("statements.rules[0].tables"));
    let out = sluice()
        .args(["policy", "check", "--sql", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--policy is required");
}

fn example_policy(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/policies")
        .join(name)
}

#[test]
fn policy_check_decides_http_requests() {
    let json = |args: &[&str]| {
        let out = sluice()
            .args(["policy", "check", "--format", "json", "--policy"])
            .arg(example_policy("http-agents.yaml"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let j = json(&["--http", "GET /customers/7?fields=email"]);
    assert_eq!(j["decision"], "allow");
    assert_eq!(j["rule"], "read-customers");
    assert_eq!(j["path"], "/customers/7");
    assert_eq!(j["policies_applied"][0], "http-agents");
    let j = json(&["--http", "DELETE /customers/7"]);
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["rule"], "no-deletes");
    let j = json(&["--http", "GET /customers/%2e%2e/admin"]);
    assert_eq!(j["decision"], "deny");
    assert!(j["path"].is_null());
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("refund.json");
    std::fs::write(&body, r#"{"amount": 250}"#).unwrap();
    let j = json(&["--http", "POST /refunds", "--body", body.to_str().unwrap()]);
    assert_eq!(j["decision"], "approval");
    assert_eq!(j["rule"], "large-refunds-need-approval");
    let out = sluice()
        .args(["policy", "check", "--http", "PATCH /orders/1", "--policy"])
        .arg(example_policy("http-agents.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("approval"));
}

#[test]
fn policy_check_refuses_a_malformed_http_request_or_both_forms() {
    for args in [
        vec!["--http", "GET"],
        vec!["--http", "GET /a b"],
        vec!["--http", "GET /a", "--sql", "SELECT 1"],
        vec!["--body", "x.json", "--sql", "SELECT 1"],
    ] {
        let out = sluice()
            .args(["policy", "check", "--policy"])
            .arg(example_policy("http-agents.yaml"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
