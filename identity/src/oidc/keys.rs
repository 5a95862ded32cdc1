//! An external issuer's key set, reduced to the keys this gateway will use:
//! each key carries the one algorithm its type allows, so a token header can
//! never choose how it is checked.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};

use super::config::SigningAlg;

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Usable verification keys by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, (DecodingKey, SigningAlg)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// Keeps the keys of `jwks_json` that have a `kid`, are meant for
    /// signatures, and whose type matches one of `allowed`. Symmetric keys,
    /// weak RSA keys and malformed keys are dropped. Only a document that is
    /// not a key set at all is an error.
    pub fn from_jwks(jwks_json: &str, allowed: &[SigningAlg]) -> Result<Self, serde_json::Error> {
        let set: JwkSet = serde_json::from_str(jwks_json)?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let usable = usable_key(jwk, allowed)
                    .inspect_err(|why| tracing::debug!(kid, why, "key skipped"))
                    .ok()?;
                Some((kid, usable))
            })
            .collect();
        Ok(Self { keys })
    }

    /// The key named `kid` and the one algorithm it verifies.
    pub fn get(&self, kid: &str) -> Option<&(DecodingKey, SigningAlg)> {
        self.keys.get(kid)
    }

    /// Whether `kid` names a usable key.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key and its algorithm, or why it is not used.
fn usable_key(
    jwk: &Jwk,
    allowed: &[SigningAlg],
) -> Result<(DecodingKey, SigningAlg), &'static str> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key");
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .map_err(|_| "bad RSA modulus")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("RSA key shorter than 2048 bits");
            }
            SigningAlg::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            SigningAlg::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            let x = URL_SAFE_NO_PAD
                .decode(okp.x.trim_end_matches('='))
                .map_err(|_| "bad Ed25519 key")?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes");
            }
            SigningAlg::EdDSA
        }
        _ => return Err("unsupported key type"),
    };
    if !allowed.contains(&alg) {
        return Err("algorithm not allowed for this issuer");
    }
    // A key that states its algorithm must state the one its type implies.
    if let Some(stated) = jwk.common.key_algorithm {
        let expected = match alg {
            SigningAlg::RS256 => KeyAlgorithm::RS256,
            SigningAlg::ES256 => KeyAlgorithm::ES256,
            SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
        };
        if stated != expected {
            return Err("key states another algorithm");
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "malformed key")?;
    Ok((key, alg))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn set(keys: &[&str]) -> String {
        format!("{{\"keys\":[{}]}}", keys.join(","))
    }

    const RSA1: &str = include_str!("testdata/rsa1.jwk.json");
    const EC1: &str = include_str!("testdata/ec1.jwk.json");
    const ED1: &str = include_str!("testdata/ed1.jwk.json");
    const ALL: &[SigningAlg] = &[SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

    #[test]
    fn each_key_type_gets_its_one_algorithm() {
        let ks = KeySet::from_jwks(&set(&[RSA1, EC1, ED1]), ALL).unwrap();
        assert_eq!(ks.get("rsa-1").unwrap().1, SigningAlg::RS256);
        assert_eq!(ks.get("ec-1").unwrap().1, SigningAlg::ES256);
        assert_eq!(ks.get("ed-1").unwrap().1, SigningAlg::EdDSA);
    }

    #[test]
    fn keys_of_disallowed_algorithms_are_dropped() {
        let ks = KeySet::from_jwks(&set(&[RSA1, EC1, ED1]), &[SigningAlg::ES256]).unwrap();
        assert_eq!(ks.len(), 1);
        assert!(ks.contains("ec-1"));
    }

    #[test]
    fn symmetric_keys_and_encryption_keys_are_dropped() {
        let oct = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0"}"#;
        let enc = RSA1.replace("\"use\":\"sig\"", "\"use\":\"enc\"");
        let lying = RSA1.replace("\"alg\":\"RS256\"", "\"alg\":\"HS256\"");
        let ks = KeySet::from_jwks(&set(&[oct, &enc, &lying]), ALL).unwrap();
        assert!(ks.is_empty(), "{ks:?}");
    }

    #[test]
    fn short_rsa_and_ed25519_keys_are_dropped() {
        let short_rsa = r#"{"kty":"RSA","kid":"s","n":"AQAB","e":"AQAB"}"#;
        let short_ed = r#"{"kty":"OKP","crv":"Ed25519","kid":"e","x":"AAAA"}"#;
        let ks = KeySet::from_jwks(&set(&[short_rsa, short_ed]), ALL).unwrap();
        assert!(ks.is_empty());
    }

    #[test]
    fn a_document_that_is_not_a_key_set_is_an_error() {
        assert!(KeySet::from_jwks("<html>", ALL).is_err());
    }
}
