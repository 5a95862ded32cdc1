//! The fetch loop against a real HTTP server serving a key set that can
//! change under it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::oidc::trust::TrustStore;
use crate::{Issuer, PrincipalKind, Role, SigningKey, Verifier};

const RSA1: &str = include_str!("testdata/rsa1.pem");
const RSA2: &str = include_str!("testdata/rsa2.pem");
const RSA1_JWK: &str = include_str!("testdata/rsa1.jwk.json");
const RSA2_JWK: &str = include_str!("testdata/rsa2.jwk.json");

struct Idp {
    base: String,
    jwks: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

async fn idp() -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwks = Arc::new(Mutex::new(format!("{{\"keys\":[{RSA1_JWK}]}}")));
    let hits = Arc::new(AtomicUsize::new(0));
    let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string();
    let (j, h) = (jwks.clone(), hits.clone());
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { discovery }),
        )
        .route(
            "/jwks",
            get(move || async move {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                j.lock().unwrap().clone()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp { base, jwks, hits }
}

fn token(iss: &str, kid: &str, pem: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let claims = json!({"iss": iss, "aud": "sluice", "sub": "bot", "exp": now + 300});
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn issuer(base: &str, cooldown: u64) -> RemoteIssuer {
    let mut cfg = OidcIssuerConfig::new(base, "sluice");
    cfg.refresh_cooldown_secs = cooldown;
    RemoteIssuer::new(cfg)
}

#[tokio::test]
async fn concurrent_unknown_kids_cause_one_fetch_and_rotation_is_picked_up() {
    let idp = idp().await;
    let remote = Arc::new(issuer(&idp.base, 0));
    remote
        .verify(&token(&idp.base, "rsa-1", RSA1))
        .await
        .unwrap();
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
    // Rotate: the IdP now signs with rsa-2.
    *idp.jwks.lock().unwrap() = format!("{{\"keys\":[{RSA2_JWK},{RSA1_JWK}]}}");
    let t = token(&idp.base, "rsa-2", RSA2);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (r, t) = (remote.clone(), t.clone());
            tokio::spawn(async move { r.verify(&t).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().name, "bot");
    }
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2, "one refresh for all");
}

#[tokio::test]
async fn the_cooldown_stops_a_flood_of_unknown_kids() {
    let idp = idp().await;
    let remote = issuer(&idp.base, 3600);
    remote
        .verify(&token(&idp.base, "rsa-1", RSA1))
        .await
        .unwrap();
    for _ in 0..5 {
        let err = remote.verify(&token(&idp.base, "nope", RSA2)).await;
        assert_eq!(err, Err(TokenError::UnknownKey));
    }
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_idp_at_cold_start_fails_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let remote = issuer(&base, 0);
    assert_eq!(
        remote.verify(&token(&base, "rsa-1", RSA1)).await,
        Err(TokenError::IssuerUnavailable)
    );
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let idp = idp().await;
    let mut cfg = OidcIssuerConfig::new(format!("{}/other", idp.base), "sluice");
    cfg.discovery_url = Some(format!("{}/.well-known/openid-configuration", idp.base));
    let remote = RemoteIssuer::new(cfg);
    let t = token(&format!("{}/other", idp.base), "rsa-1", RSA1);
    assert_eq!(remote.verify(&t).await, Err(TokenError::IssuerUnavailable));
}

#[tokio::test]
async fn the_trust_store_routes_by_issuer_to_own_or_external() {
    let idp = idp().await;
    let own = Issuer::new("https://cp.example", "sluice", SigningKey::generate()).unwrap();
    let verifier =
        Verifier::from_jwks("https://cp.example", "sluice", &own.jwks_json(), 0).unwrap();
    let store = TrustStore::new(Some(verifier), vec![Arc::new(issuer(&idp.base, 0))]);
    let ours = own
        .issue(
            "agent",
            PrincipalKind::Agent,
            &[],
            &[Role::Admin],
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let v = store.verify(&ours).await.unwrap();
    assert_eq!(
        (v.identity.kind, v.issuer.as_str()),
        (PrincipalKind::Agent, "https://cp.example")
    );
    let theirs = store
        .verify(&token(&idp.base, "rsa-1", RSA1))
        .await
        .unwrap();
    assert_eq!(theirs.issuer, idp.base);
    // A token claiming an untrusted issuer goes to the own verifier and fails there.
    let stranger = store
        .verify(&token("https://evil.example", "rsa-1", RSA1))
        .await;
    assert!(stranger.is_err());
}
