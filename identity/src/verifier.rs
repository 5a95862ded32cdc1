use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::MAX_LEEWAY_SECS;
use crate::claims::{Claims, Identity};
use crate::error::TokenError;
use crate::keys::KeyError;

/// Validates tokens of one issuer against its key set, locally.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Trusts the Ed25519 keys of `jwks_json` for tokens from `issuer` to
    /// `audience`. Keys of any other type are skipped: the algorithm is fixed
    /// by configuration, so an RSA or HMAC key can never be used to accept a
    /// token (this closes the "HS256 signed with the public key" confusion).
    pub fn from_jwks(
        issuer: &str,
        audience: &str,
        jwks_json: &str,
        leeway_secs: u64,
    ) -> Result<Self, KeyError> {
        let set: JwkSet =
            serde_json::from_str(jwks_json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), AlgorithmParameters::OctetKeyPair(okp)) =
                (&jwk.common.key_id, &jwk.algorithm)
            else {
                continue;
            };
            if okp.curve != EllipticCurve::Ed25519 {
                continue;
            }
            let key = DecodingKey::from_ed_components(&okp.x)
                .map_err(|e| KeyError::Jwks(e.to_string()))?;
            // The crypto backend slices the first 32 bytes; refuse anything
            // shorter here instead of letting a bad key set panic later.
            if key.as_bytes().len() != 32 {
                return Err(KeyError::Jwks(format!(
                    "key {kid} is not a 32-byte Ed25519 key"
                )));
            }
            keys.insert(kid.clone(), key);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = leeway_secs.min(MAX_LEEWAY_SECS);
        Ok(Self { keys, validation })
    }

    /// Whether any key is trusted at all.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Validates `token` and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if self.keys.is_empty() {
            return Err(TokenError::NoKeys);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| TokenError::from_jwt(&e))?;
        Ok(data.claims.into())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::{Issuer, PrincipalKind, Role, SigningKey};

    const ISS: &str = "https://cp.example";

    fn setup() -> (Issuer, Verifier) {
        let issuer = Issuer::new(ISS, "sluice", SigningKey::generate()).unwrap();
        let verifier = Verifier::from_jwks(ISS, "sluice", &issuer.jwks_json(), 30).unwrap();
        (issuer, verifier)
    }

    fn token(issuer: &Issuer) -> String {
        issuer
            .issue(
                "agent-1",
                PrincipalKind::Agent,
                &["agents".into()],
                &[Role::Auditor],
                Duration::from_secs(300),
            )
            .unwrap()
            .token
    }

    /// Re-encodes one part of a compact JWT.
    fn with_part(
        token: &str,
        index: usize,
        f: impl FnOnce(serde_json::Value) -> serde_json::Value,
    ) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[index]).unwrap()).unwrap();
        parts[index] = URL_SAFE_NO_PAD.encode(f(json).to_string());
        parts.join(".")
    }

    #[test]
    fn a_fresh_token_names_its_principal() {
        let (issuer, verifier) = setup();
        let id = verifier.verify(&token(&issuer)).unwrap();
        assert_eq!(id.name, "agent-1");
        assert_eq!(id.kind, PrincipalKind::Agent);
        assert_eq!(id.groups, vec!["agents".to_string()]);
        assert!(id.has_role(Role::Auditor));
        assert!(!id.has_role(Role::Admin));
    }

    #[test]
    fn alg_none_is_refused() {
        let (issuer, verifier) = setup();
        let t = with_part(&token(&issuer), 0, |mut h| {
            h["alg"] = "none".into();
            h
        });
        let unsigned = format!("{}.", t.rsplit_once('.').unwrap().0);
        assert!(verifier.verify(&unsigned).is_err());
        assert!(verifier.verify(&t).is_err());
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let (issuer, verifier) = setup();
        let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(token(&issuer))
            .unwrap()
            .claims;
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(issuer.key().kid().to_owned());
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&issuer.key().public_key()),
        )
        .unwrap();
        assert_eq!(verifier.verify(&forged), Err(TokenError::Algorithm));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let (issuer, verifier) = setup();
        let t = with_part(&token(&issuer), 1, |mut c| {
            c["sub"] = "admin".into();
            c
        });
        assert_eq!(verifier.verify(&t), Err(TokenError::Signature));
    }

    #[test]
    fn another_issuers_key_is_unknown() {
        let (_, verifier) = setup();
        let other = Issuer::new(ISS, "sluice", SigningKey::generate()).unwrap();
        assert_eq!(verifier.verify(&token(&other)), Err(TokenError::UnknownKey));
    }

    #[test]
    fn wrong_issuer_and_audience_are_refused() {
        let key = SigningKey::generate();
        let verifier = Verifier::from_jwks(
            ISS,
            "sluice",
            &SigningKey::jwks_json(std::slice::from_ref(&key)),
            0,
        )
        .unwrap();
        let wrong_iss = Issuer::new("https://evil.example", "sluice", key.clone()).unwrap();
        assert_eq!(verifier.verify(&token(&wrong_iss)), Err(TokenError::Issuer));
        let wrong_aud = Issuer::new(ISS, "other", key).unwrap();
        assert_eq!(
            verifier.verify(&token(&wrong_aud)),
            Err(TokenError::Audience)
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let (issuer, verifier) = setup();
        let t = issuer
            .issue("p", PrincipalKind::Person, &[], &[], Duration::ZERO)
            .unwrap()
            .token;
        // Zero TTL expires now; the 30 s leeway still accepts it, so compare
        // against a verifier with no leeway.
        let strict = Verifier::from_jwks(ISS, "sluice", &issuer.jwks_json(), 0).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(strict.verify(&t), Err(TokenError::Expired));
        assert!(verifier.verify(&t).is_ok(), "leeway applies");
    }

    #[test]
    fn garbage_is_malformed_and_empty_is_missing() {
        let (_, verifier) = setup();
        assert_eq!(verifier.verify("not-a-jwt"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify(""), Err(TokenError::Missing));
    }

    #[test]
    fn an_empty_key_set_refuses_everything() {
        let (issuer, _) = setup();
        let v = Verifier::from_jwks(ISS, "sluice", r#"{"keys":[]}"#, 0).unwrap();
        assert_eq!(v.verify(&token(&issuer)), Err(TokenError::NoKeys));
    }

    #[test]
    fn a_short_key_in_the_set_is_an_error_not_a_panic() {
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}]}"#;
        assert!(Verifier::from_jwks(ISS, "sluice", jwks, 0).is_err());
    }
}
