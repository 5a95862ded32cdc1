#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every token trick, each its own test, through the wire (SQLSTATE 28P01,
//! a clear message, no session) and through the REST API (401). Forgeries
//! are made with the gateway's real signing key where the attack needs
//! one, so only the check under test can stop them.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sluice_e2e::gateway::{Gateway, connect};
use sluice_identity::SigningKey;
use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;

/// One gateway for every case: they only read.
async fn gateway() -> &'static Gateway {
    static GW: OnceCell<Gateway> = OnceCell::const_new();
    GW.get_or_init(|| async { Gateway::seeded(&[]).await.unwrap() })
        .await
}

fn key(gw: &Gateway) -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pem =
            std::fs::read_to_string(gw.sluice.dir.path().join("data/signing-key.pem")).unwrap();
        SigningKey::from_pem(&pem).unwrap()
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims that would be accepted, for `gw`.
fn good_claims(gw: &Gateway) -> Value {
    json!({
        "iss": gw.ready().api_url, "aud": "sluice", "sub": "mallory",
        "iat": now(), "nbf": now(), "exp": now() + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kind": "agent", "groups": ["agents"], "roles": ["admin"],
    })
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A compact JWT of `header` and `claims` signed (EdDSA) with `key`.
fn signed(header: &Value, claims: &Value, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn eddsa(key: &SigningKey) -> Value {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()})
}

/// Asserts the token is refused on the wire with 28P01 and a message
/// containing `why`, and with 401 by the REST API.
async fn refused(gw: &Gateway, token: &str, why: &str) {
    let user = format!("attacker-{}", uuid::Uuid::new_v4().simple());
    let mut cfg = gw.config("demo", "attack");
    cfg.user(&user).password(token);
    let err = connect(&cfg).await.unwrap_err();
    let db = err
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
        .unwrap_or_else(|| panic!("not a server error: {err:?}"));
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD, "{}", db.message());
    assert!(
        db.message().contains(why),
        "{:?} lacks {why:?}",
        db.message()
    );
    // The refusal is in the record, as a session of one event.
    let api = gw.api();
    let recorded = sluice_e2e::gateway::eventually(Duration::from_secs(10), || async {
        let sessions = api
            .get(&format!("/api/v1/sessions?identity={user}"))
            .await?;
        sessions["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
            .ok_or_else(|| anyhow::anyhow!("not recorded yet"))
    })
    .await
    .unwrap();
    assert_eq!(recorded["identity_kind"], "unauthenticated");
    assert!(
        recorded["end_reason"].as_str().unwrap().contains(why),
        "{recorded}"
    );
    let events = api.events(recorded["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "auth_failure");
    assert!(
        token.len() < 16 || !events[0].to_string().contains(token),
        "the token itself is never recorded"
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/targets", gw.ready().api_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains(why),
        "REST {body} lacks {why:?}"
    );
    // The API's refusal is recorded too.
    sluice_e2e::gateway::eventually(Duration::from_secs(10), || async {
        let found = api.sessions().await?.into_iter().any(|s| {
            s["protocol"] == "http"
                && s["target"] == "GET /api/v1/targets"
                && s["end_reason"].as_str().is_some_and(|r| r.contains(why))
        });
        anyhow::ensure!(found, "the API refusal is not recorded yet");
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_correctly_forged_control_token_is_accepted() {
    // The control case: the forging machinery makes tokens that pass, so
    // every refusal below is down to the one thing each case changes.
    let gw = gateway().await;
    let token = signed(&eddsa(key(gw)), &good_claims(gw), key(gw));
    let mut cfg = gw.config("demo", "control");
    cfg.password(&token);
    let client = connect(&cfg).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn alg_none_is_refused() {
    let gw = gateway().await;
    let header = json!({"alg": "none", "typ": "JWT", "kid": key(gw).kid()});
    let token = format!("{}.{}.", b64(&header), b64(&good_claims(gw)));
    refused(gw, &token, "malformed").await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let gw = gateway().await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key(gw).kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &good_claims(gw),
        &jsonwebtoken::EncodingKey::from_secret(&key(gw).public_key()),
    )
    .unwrap();
    refused(gw, &token, "algorithm").await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let gw = gateway().await;
    let rogue = SigningKey::generate();
    refused(
        gw,
        &signed(&eddsa(&rogue), &good_claims(gw), &rogue),
        "unknown key",
    )
    .await;
    // Our kid on a rogue signature is a bad signature, not a way in.
    refused(
        gw,
        &signed(&eddsa(key(gw)), &good_claims(gw), &rogue),
        "signature",
    )
    .await;
}

#[tokio::test]
async fn an_embedded_or_referenced_key_is_ignored() {
    let gw = gateway().await;
    let rogue = SigningKey::generate();
    let header = json!({
        "alg": "EdDSA", "kid": rogue.kid(),
        "jwk": rogue.public_jwk(), "jku": "http://127.0.0.1:1/jwks.json",
    });
    refused(
        gw,
        &signed(&header, &good_claims(gw), &rogue),
        "unknown key",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let gw = gateway().await;
    let mut c = good_claims(gw);
    c["iss"] = "https://evil.example".into();
    refused(gw, &signed(&eddsa(key(gw)), &c, key(gw)), "issuer").await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let gw = gateway().await;
    let mut c = good_claims(gw);
    c["aud"] = "another-service".into();
    refused(gw, &signed(&eddsa(key(gw)), &c, key(gw)), "audience").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_leeway() {
    let gw = gateway().await;
    let mut c = good_claims(gw);
    c["iat"] = (now() - 3600).into();
    c["nbf"] = (now() - 3600).into();
    c["exp"] = (now() - 120).into();
    refused(gw, &signed(&eddsa(key(gw)), &c, key(gw)), "expired").await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let gw = gateway().await;
    let mut c = good_claims(gw);
    c["nbf"] = (now() + 600).into();
    c["exp"] = (now() + 900).into();
    refused(gw, &signed(&eddsa(key(gw)), &c, key(gw)), "not valid yet").await;
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let gw = gateway().await;
    let mut c = good_claims(gw);
    c.as_object_mut().unwrap().remove("exp");
    refused(gw, &signed(&eddsa(key(gw)), &c, key(gw)), "exp").await;
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let gw = gateway().await;
    let token = signed(&eddsa(key(gw)), &good_claims(gw), key(gw));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = good_claims(gw);
    c["sub"] = "someone-else".into();
    c["groups"] = json!(["dba"]);
    parts[1] = b64(&c);
    refused(gw, &parts.join("."), "signature").await;
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let gw = gateway().await;
    let api = gw.api();
    let (status, _) = api
        .post("/api/v1/service-accounts", &json!({"name": "revokee"}))
        .await
        .unwrap();
    assert_eq!(status, 201);
    let (_, issued) = api
        .post("/api/v1/service-accounts/revokee/tokens", &json!({}))
        .await
        .unwrap();
    let (token, id) = (
        issued["token"].as_str().unwrap().to_owned(),
        issued["id"].as_str().unwrap().to_owned(),
    );
    let resp = reqwest::Client::new()
        .delete(format!(
            "{}/api/v1/service-accounts/revokee/tokens/{id}",
            gw.ready().api_url
        ))
        .bearer_auth(&gw.ready().admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    // The node hears of the revocation with the next snapshot.
    let mut cfg = gw.config("demo", "revoked");
    cfg.password(&token);
    sluice_e2e::gateway::eventually(Duration::from_secs(10), || async {
        match connect(&cfg).await {
            Ok(_) => anyhow::bail!("still accepted"),
            Err(_) => Ok(()),
        }
    })
    .await
    .unwrap();
    refused(gw, &token, "revoked").await;
}

#[tokio::test]
async fn garbage_and_empty_passwords_are_refused() {
    let gw = gateway().await;
    refused(gw, "not-a-token", "malformed").await;
}
