//! Every way a token can be forged or misused, refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::{PrincipalKind, Role};

const ISS: &str = "https://idp.example";
const AUD: &str = "sluice";
const RSA1: &str = include_str!("testdata/rsa1.pem");
const RSA2: &str = include_str!("testdata/rsa2.pem");
const EC1: &str = include_str!("testdata/ec1.pem");
const ED1: &str = include_str!("testdata/ed1.pem");
const RSA1_JWK: &str = include_str!("testdata/rsa1.jwk.json");
const RSA2_JWK: &str = include_str!("testdata/rsa2.jwk.json");
const EC1_JWK: &str = include_str!("testdata/ec1.jwk.json");
const ED1_JWK: &str = include_str!("testdata/ed1.jwk.json");

fn config() -> OidcIssuerConfig {
    let mut c = OidcIssuerConfig::new(ISS, AUD);
    c.group_roles.insert("dba".into(), vec![Role::Admin]);
    c.leeway_secs = 0;
    c
}

fn keys() -> KeySet {
    let doc = format!("{{\"keys\":[{RSA1_JWK},{EC1_JWK},{ED1_JWK}]}}");
    KeySet::from_jwks(&doc, &config().algorithms).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "ada", "exp": now() + 300, "iat": now(),
           "jti": "t-1", "groups": ["dba", "eng"]})
}

fn sign(alg: Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn rs(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa-1", RSA1, claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn each_allowed_algorithm_verifies_and_names_groups_and_roles() {
    for (alg, kid, pem) in [
        (Algorithm::RS256, "rsa-1", RSA1),
        (Algorithm::ES256, "ec-1", EC1),
        (Algorithm::EdDSA, "ed-1", ED1),
    ] {
        let id = validate(&sign(alg, kid, pem, &claims()), &config(), &keys()).unwrap();
        assert_eq!(id.name, "ada");
        assert_eq!(id.kind, PrincipalKind::Person);
        assert_eq!(id.groups, vec!["dba".to_owned(), "eng".to_owned()]);
        assert_eq!(id.roles, vec![Role::Admin]);
        assert_eq!(id.token_id, "t-1");
    }
}

#[test]
fn alg_none_is_refused() {
    let header = json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"});
    let unsigned = format!("{}.{}.", b64(&header), b64(&claims()));
    assert!(validate(&unsigned, &config(), &keys()).is_err());
    // Even with a signature copied from a genuine token.
    let genuine = rs(&claims());
    let sig = genuine.rsplit('.').next().unwrap();
    let forged = format!("{}.{}.{sig}", b64(&header), b64(&claims()));
    assert!(validate(&forged, &config(), &keys()).is_err());
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    for secret in [RSA1_JWK.as_bytes(), b"AQAB".as_slice()] {
        let forged =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(
            validate(&forged, &config(), &keys()),
            Err(TokenError::Algorithm)
        );
    }
}

#[test]
fn an_algorithm_the_key_type_does_not_imply_is_refused() {
    // ES256 header naming the RSA key: the key's type decides, not the header.
    let t = sign(Algorithm::ES256, "rsa-1", EC1, &claims());
    assert_eq!(validate(&t, &config(), &keys()), Err(TokenError::Algorithm));
}

#[test]
fn an_algorithm_the_issuer_does_not_allow_is_refused() {
    let mut cfg = config();
    cfg.algorithms = vec![SigningAlg::ES256];
    assert_eq!(
        validate(&rs(&claims()), &cfg, &keys()),
        Err(TokenError::Algorithm)
    );
}

#[test]
fn an_unknown_kid_is_refused() {
    let t = sign(Algorithm::RS256, "rsa-2", RSA2, &claims());
    assert_eq!(
        validate(&t, &config(), &keys()),
        Err(TokenError::UnknownKey)
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let t = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        validate(&t, &config(), &keys()),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn wrong_issuer_and_audience_are_refused() {
    let mut c = claims();
    c["iss"] = "https://evil.example".into();
    assert_eq!(
        validate(&rs(&c), &config(), &keys()),
        Err(TokenError::Issuer)
    );
    let mut c = claims();
    c["aud"] = "other".into();
    assert_eq!(
        validate(&rs(&c), &config(), &keys()),
        Err(TokenError::Audience)
    );
}

#[test]
fn an_expired_token_is_refused_whatever_leeway_is_configured() {
    let mut c = claims();
    c["exp"] = (now() - 120).into();
    assert_eq!(
        validate(&rs(&c), &config(), &keys()),
        Err(TokenError::Expired)
    );
    let mut lax = config();
    lax.leeway_secs = 3600;
    assert_eq!(validate(&rs(&c), &lax, &keys()), Err(TokenError::Expired));
}

#[test]
fn a_token_not_yet_valid_is_refused() {
    let mut c = claims();
    c["nbf"] = (now() + 600).into();
    assert_eq!(
        validate(&rs(&c), &config(), &keys()),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn missing_exp_aud_or_sub_is_refused() {
    for claim in ["exp", "aud", "sub"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        assert!(
            validate(&rs(&c), &config(), &keys()).is_err(),
            "{claim} missing"
        );
    }
}

#[test]
fn a_tampered_payload_is_refused() {
    let t = rs(&claims());
    let mut parts: Vec<&str> = t.split('.').collect();
    let mut c = claims();
    c["sub"] = "root".into();
    let payload = b64(&c);
    parts[1] = &payload;
    assert_eq!(
        validate(&parts.join("."), &config(), &keys()),
        Err(TokenError::Signature)
    );
}

#[test]
fn keys_embedded_in_or_referenced_by_the_header_are_ignored() {
    let attacker: Jwk = serde_json::from_str(RSA2_JWK).unwrap();
    let key = EncodingKey::from_rsa_pem(RSA2.as_bytes()).unwrap();
    for kid in ["rsa-1", "rsa-2"] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        header.jwk = Some(attacker.clone());
        header.jku = Some("https://evil.example/jwks.json".into());
        header.x5u = Some("https://evil.example/cert.pem".into());
        let t = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
        let expected = if kid == "rsa-1" {
            TokenError::Signature
        } else {
            TokenError::UnknownKey
        };
        assert_eq!(validate(&t, &config(), &keys()), Err(expected), "kid {kid}");
    }
}

#[test]
fn groups_come_from_the_configured_claim_and_bad_shapes_are_refused() {
    let mut cfg = config();
    cfg.groups_claim = "roles".into();
    cfg.principal_kind = Some(PrincipalKind::Agent);
    let mut c = claims();
    c["roles"] = "dba".into();
    let id = validate(&rs(&c), &cfg, &keys()).unwrap();
    assert_eq!(id.groups, vec!["dba".to_owned()]);
    assert_eq!(id.kind, PrincipalKind::Agent);
    c["roles"] = json!({"admin": true});
    assert_eq!(
        validate(&rs(&c), &cfg, &keys()),
        Err(TokenError::Claim("roles".into()))
    );
}

#[test]
fn the_issuer_is_peeked_without_trusting_it() {
    assert_eq!(peek_issuer(&rs(&claims())).unwrap(), ISS);
    assert_eq!(peek_issuer("x"), Err(TokenError::Malformed));
    let no_iss = format!(
        "{}.{}.",
        b64(&json!({"alg":"RS256"})),
        b64(&json!({"sub":"a"}))
    );
    assert_eq!(peek_issuer(&no_iss), Err(TokenError::Claim("iss".into())));
}
