#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Target credentials only the gateway knows: sealed in the control plane
//! or resolved on the node from its own environment, chosen per identity
//! group so an agent runs under a least-privileged role, and never seen by
//! a client, an API caller or the logs.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_common::local_pg::{LocalPostgres, find_bin_dir};
use sluice_e2e::gateway::{Api, connect, eventually};
use sluice_e2e::process::Sluice;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

/// Distinctive, so any appearance anywhere is unmistakable.
const OWNER_PW: &str = "Owner-pw-7Q2x-never-leaks";
const AGENT_PW: &str = "Agent-pw-K9z4-never-leaks";

const SEED_SQL: &str = include_str!("../../examples/demo/seed.sql");

async fn token_for(api_url: &str, admin: &str, name: &str, groups: &[&str]) -> String {
    let api = Api::new(api_url, admin);
    let (status, body) = api
        .post(
            "/api/v1/service-accounts",
            &json!({"name": name, "groups": groups}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .post(
            &format!("/api/v1/service-accounts/{name}/tokens"),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn credentials_stay_with_the_gateway_and_groups_get_their_own_role() {
    let Some(bin) = find_bin_dir() else {
        panic!("PostgreSQL server binaries are needed for this test");
    };
    // A server that really checks passwords (SCRAM), with an owner and a
    // read-only role that may read customers only.
    let mut pg = LocalPostgres::start(&bin, "scram-sha-256").await.unwrap();
    pg.create_owned_database("app_owner", OWNER_PW, "scram-sha-256", "app")
        .await
        .unwrap();
    pg.execute("app", &format!("SET ROLE app_owner; {SEED_SQL}"))
        .await
        .unwrap();
    pg.execute(
        "app",
        &format!(
            "CREATE ROLE agent_ro LOGIN PASSWORD '{AGENT_PW}'; \
             GRANT USAGE ON SCHEMA public TO agent_ro; \
             GRANT SELECT ON customers TO agent_ro;"
        ),
    )
    .await
    .unwrap();

    // The owner's password lives only in the node's environment.
    let sluice = tokio::task::spawn_blocking(|| {
        Sluice::dev_with_env(
            &["--no-demo"],
            &[("APP_OWNER_PASSWORD", OWNER_PW.to_owned())],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let ready = sluice.ready().clone();
    let admin = Api::new(&ready.api_url, &ready.admin_token);
    let (status, created) = admin
        .post(
            "/api/v1/targets",
            &json!({
                "name": "app", "host": "127.0.0.1", "port": pg.port, "database": "app",
                "username": "app_owner", "password_ref": "env:APP_OWNER_PASSWORD",
                "tls_mode": "disable",
                "logins": [{"group": "agents", "username": "agent_ro", "password": AGENT_PW}],
            }),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    let mut seen: Vec<String> = vec![created.to_string()];

    let ro = token_for(&ready.api_url, &ready.admin_token, "ro-agent", &["agents"]).await;
    let owner = token_for(&ready.api_url, &ready.admin_token, "owner-agent", &["ops"]).await;
    let port: u16 = ready
        .pg_url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let config = |user: &str, token: &str| {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(port)
            .user(user)
            .password(token)
            .dbname("app")
            .application_name(user)
            .ssl_mode(SslMode::Disable);
        cfg
    };

    // The agents group runs as the read-only role (its password sealed in
    // the control plane and fetched for the session) ...
    let ro_config = config("ro-agent", &ro);
    let client = eventually(Duration::from_secs(10), || connect(&ro_config))
        .await
        .unwrap();
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "agent_ro");
    let n: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    // ... so even a statement the policy allows cannot read what the role
    // was not granted.
    let err = client
        .query("SELECT * FROM app_secrets", &[])
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    seen.push(db.message().to_owned());

    // Another identity runs as the owner, whose password came from the
    // node's environment.
    let client = connect(&config("owner-agent", &owner)).await.unwrap();
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "app_owner");
    drop(client);

    // What an admin and an auditor can read about the target and sessions.
    for path in ["/api/v1/targets", "/api/v1/targets/app", "/api/v1/sessions"] {
        seen.push(admin.get(path).await.unwrap().to_string());
    }
    let sessions = admin.sessions().await.unwrap();
    for s in &sessions {
        let id = s["id"].as_str().unwrap();
        let events: Vec<Value> = admin.events(id).await.unwrap();
        seen.push(serde_json::to_string(&events).unwrap());
    }
    for text in &seen {
        assert!(
            !text.contains(OWNER_PW) && !text.contains(AGENT_PW),
            "leaked in {text}"
        );
    }
    // Nor in the whole run's log, nor in clear in the store's files.
    let log = sluice.log();
    assert!(
        log.contains("credential handed to a node"),
        "the sealed login was fetched"
    );
    assert!(
        !log.contains(OWNER_PW) && !log.contains(AGENT_PW),
        "leaked in the log"
    );
    for entry in std::fs::read_dir(sluice.dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(AGENT_PW),
                "{} holds the password in clear",
                path.display()
            );
        }
    }
    pg.stop().await;
}
