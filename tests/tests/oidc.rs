#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tokens from a real OpenID provider (oidc-provider) at the gateway: they
//! reach the demo database through the node, every forgery is refused on
//! the wire with 28P01, key rotation at the IdP is picked up with one
//! refresh while sessions continue, and an IdP that cannot be reached when
//! the node starts means refusal, not trust.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sluice_e2e::gateway::{Api, Gateway, connect};
use sluice_e2e::oidc::OidcProvider;
use tokio_postgres::error::SqlState;

/// The seeded gateway trusting `idp`, with `extra` lines in its `[[oidc]]`.
async fn gateway(idp: &OidcProvider, dir: &tempfile::TempDir, extra: &str) -> Gateway {
    let path = dir.path().join("oidc.toml");
    std::fs::write(&path, idp.config_toml(extra)).unwrap();
    Gateway::seeded(&["--oidc-config", path.to_str().unwrap()])
        .await
        .unwrap()
}

async fn customers(gw: &Gateway, token: &str) -> Result<i64, tokio_postgres::Error> {
    let mut cfg = gw.config("demo", "e2e-oidc");
    cfg.password(token);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client
        .query_one("SELECT count(*) FROM customers", &[])
        .await?
        .get(0))
}

async fn refused(gw: &Gateway, token: &str) -> String {
    let err = customers(gw, token).await.expect_err("must be refused");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err}"));
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD, "{err}");
    db.message().to_owned()
}

/// `token` with its header or payload JSON changed by `f`, signature kept.
fn edit(token: &str, part: usize, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut v: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[part]).unwrap()).unwrap();
    f(&mut v);
    parts[part] = URL_SAFE_NO_PAD.encode(v.to_string());
    parts.join(".")
}

#[tokio::test]
async fn a_provider_token_reaches_the_demo_database_and_forgeries_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(&dir.path().join("keys.json"), 0, false).unwrap();
    let gw = gateway(&idp, &dir, "leeway_secs = 0\nprincipal_kind = \"agent\"").await;

    let token = idp.client_token("agent-1", None).await.unwrap();
    assert_eq!(customers(&gw, &token).await.unwrap(), 4);
    let sessions = gw.api().sessions().await.unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s.to_string().contains("agent-1") && s.to_string().contains("agent")),
        "{sessions:?}"
    );

    let wrong_aud = idp
        .client_token("agent-1", Some("urn:other"))
        .await
        .unwrap();
    assert!(refused(&gw, &wrong_aud).await.contains("audience"));

    let short = idp.client_token("short-lived", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(refused(&gw, &short).await.contains("expired"));

    let tampered = edit(&token, 1, |c| c["sub"] = "root".into());
    assert!(refused(&gw, &tampered).await.contains("signature"));

    let none = edit(&token, 0, |h| h["alg"] = "none".into());
    refused(&gw, &format!("{}.", none.rsplit_once('.').unwrap().0)).await;

    let hs = edit(&token, 0, |h| h["alg"] = "HS256".into());
    assert!(refused(&gw, &hs).await.contains("algorithm"));

    let log = gw.sluice.log();
    assert!(log.contains("auth_refused"), "refusals are logged");
    assert!(!log.contains(&token), "tokens are never logged");
}

#[tokio::test]
async fn key_rotation_at_the_provider_costs_one_refresh_and_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(&dir.path().join("keys.json"), 0, false).unwrap();
    let gw = gateway(&idp, &dir, "refresh_cooldown_secs = 2").await;
    let before = idp.client_token("agent-1", None).await.unwrap();
    let mut cfg = gw.config("demo", "e2e-oidc-long");
    cfg.password(before.as_str());
    let long = connect(&cfg).await.unwrap();

    let idp = idp.rotate().unwrap();
    assert_eq!(idp.jwks_downloads().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = idp.client_token("agent-1", None).await.unwrap();
    assert_ne!(
        kid(&before),
        kid(&after),
        "the provider signs with a new key"
    );

    // Concurrent connections with the new key: one refresh serves them all.
    let results = futures::future::join_all((0..4).map(|_| customers(&gw, &after))).await;
    for r in results {
        assert_eq!(r.unwrap(), 4);
    }
    assert_eq!(idp.jwks_downloads().await.unwrap(), 1, "one refresh");
    // A made-up key id within the cooldown causes no further download.
    let unknown = edit(&after, 0, |h| h["kid"] = "never-published".into());
    assert!(refused(&gw, &unknown).await.contains("unknown key"));
    assert_eq!(idp.jwks_downloads().await.unwrap(), 1, "cooldown holds");
    // The session opened before the rotation still works, and so do old tokens.
    let n: i64 = long
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    assert_eq!(customers(&gw, &before).await.unwrap(), 4);
}

#[tokio::test]
async fn a_provider_down_when_the_node_starts_means_refusal_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let mut idp = OidcProvider::start(&keys, 0, false).unwrap();
    let token = idp.client_token("agent-1", None).await.unwrap();
    let port = idp.port;
    idp.stop();
    let gw = gateway(&idp, &dir, "refresh_cooldown_secs = 1").await;
    let msg = refused(&gw, &token).await;
    assert!(msg.contains("could not be fetched"), "{msg}");

    let _idp = OidcProvider::start(&keys, port, false).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(customers(&gw, &token).await.unwrap(), 4);
}

#[tokio::test]
async fn provider_people_get_rest_roles_from_their_groups() {
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(&dir.path().join("keys.json"), 0, false).unwrap();
    let gw = gateway(&idp, &dir, "[oidc.group_roles]\ndba = [\"admin\"]").await;
    let api_url = gw.ready().api_url.clone();
    let http = reqwest::Client::new();
    let status = |t: String| {
        let http = http.clone();
        let url = format!("{api_url}/api/v1/targets");
        async move {
            http.get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Ada is in the IdP group `dba`, mapped to admin.
    let ada = idp.device_token("ada").await.unwrap();
    assert_eq!(status(ada.clone()).await, 200);
    let targets = Api::new(&api_url, &ada)
        .get("/api/v1/targets")
        .await
        .unwrap();
    assert!(targets.to_string().contains("demo"), "{targets}");
    // The agent's groups map to no role.
    let agent = idp.client_token("agent-1", None).await.unwrap();
    assert_eq!(status(agent.clone()).await, 403);
    // Claiming a group in a forged payload gets nowhere.
    let forged = edit(&agent, 1, |c| c["groups"] = serde_json::json!(["dba"]));
    assert_eq!(status(forged).await, 401);
    let wrong_aud = idp
        .client_token("agent-1", Some("urn:other"))
        .await
        .unwrap();
    assert_eq!(status(wrong_aud).await, 401);
    assert_eq!(status(edit(&ada, 1, |c| c["exp"] = 1.into())).await, 401);
}

/// Reads `child`'s stdout until a line contains `marker`; returns that line.
async fn line_with(
    out: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    marker: &str,
) -> String {
    let wait = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = out.next_line().await.unwrap() {
            if line.contains(marker) {
                return line;
            }
        }
        panic!("output ended before {marker:?}");
    });
    wait.await.expect("timed out waiting for output")
}

fn sluice(args: &[&str]) -> tokio::process::Child {
    sluice_e2e::process::ensure_built().unwrap();
    tokio::process::Command::new(sluice_e2e::process::sluice_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn login_then_connect_reaches_the_target_with_no_secret_in_the_client() {
    use std::os::unix::fs::PermissionsExt as _;
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(&dir.path().join("keys.json"), 0, false).unwrap();
    let gw = gateway(&idp, &dir, "").await;
    let token_file = dir.path().join("config/sluice/token.json");
    let token_arg = token_file.to_str().unwrap();

    // sluice login: prints the code, waits for approval, stores the token.
    let mut login = sluice(&[
        "login",
        "--issuer",
        &idp.issuer,
        "--client-id",
        "sluice-cli",
        "--scope",
        "openid gateway",
        "--token-file",
        token_arg,
    ]);
    let mut out = tokio::io::BufReader::new(login.stdout.take().unwrap()).lines();
    line_with(&mut out, "To sign in, open").await;
    let code_line = line_with(&mut out, "enter the code:").await;
    let code = code_line.rsplit(' ').next().unwrap().to_owned();
    idp.approve(&code, "ada").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), login.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is owner-only");

    // sluice connect: a local listener that signs clients in.
    let ca = gw.sluice.dir.path().join("data/tls-cert.pem");
    let gateway_addr = gw.addr().to_string();
    let mut connect_proc = sluice(&[
        "connect",
        "demo",
        "--gateway",
        &gateway_addr,
        "--listen",
        "127.0.0.1:0",
        "--gateway-ca",
        ca.to_str().unwrap(),
        "--token-file",
        token_arg,
    ]);
    let mut out = tokio::io::BufReader::new(connect_proc.stdout.take().unwrap()).lines();
    let line = line_with(&mut out, "Listening on").await;
    let local: std::net::SocketAddr = line.split(' ').nth(2).unwrap().parse().unwrap();

    // A client with no password at all, asking for another database name.
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(local.port())
        .user("whoever")
        .dbname("anything")
        .application_name("e2e-connect")
        .ssl_mode(tokio_postgres::config::SslMode::Prefer);
    let client = connect(&cfg).await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    let sessions = gw.api().sessions().await.unwrap();
    assert!(
        sessions.iter().any(|s| s["identity"] == "ada"),
        "the session is Ada's: {sessions:?}"
    );
    connect_proc.kill().await.unwrap();
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}
