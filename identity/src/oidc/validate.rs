//! Validating one token of an external issuer against keys already at hand:
//! pure, so every attack can be tested without a network.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use super::config::{OidcIssuerConfig, SigningAlg};
use super::keys::KeySet;
use crate::MAX_LEEWAY_SECS;
use crate::claims::Identity;
use crate::error::TokenError;

/// The `iss` a token claims, read without checking anything. Used only to
/// pick which issuer's rules the token must then pass.
pub fn peek_issuer(token: &str) -> Result<String, TokenError> {
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    match claims.get("iss") {
        Some(Value::String(iss)) => Ok(iss.clone()),
        _ => Err(TokenError::Claim("iss".to_owned())),
    }
}

/// The `kid` a token's header names, after refusing any algorithm the
/// issuer does not allow. Header keys (`jwk`, `jku`, `x5u`, `x5c`) are never
/// read.
pub fn header_kid(token: &str, cfg: &OidcIssuerConfig) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !cfg.algorithms.iter().any(|a| a.jwt() == header.alg) {
        return Err(TokenError::Algorithm);
    }
    header.kid.ok_or(TokenError::UnknownKey)
}

/// Checks `token` completely: algorithm allowed and equal to the one the
/// key's type implies, signature, `iss`, `aud`, `exp` (required), `nbf`
/// (when present), `sub` (required), with at most 60 s of leeway. Returns
/// the identity with groups from the configured claim and roles from the
/// group mapping.
pub fn validate(
    token: &str,
    cfg: &OidcIssuerConfig,
    keys: &KeySet,
) -> Result<Identity, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let kid = header_kid(token, cfg)?;
    let (key, alg) = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != alg.jwt() {
        return Err(TokenError::Algorithm);
    }
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation(cfg, *alg))
        .map_err(|e| TokenError::from_jwt(&e))?;
    identity(&data.claims, cfg)
}

fn validation(cfg: &OidcIssuerConfig, alg: SigningAlg) -> Validation {
    let mut v = Validation::new(alg.jwt());
    v.set_issuer(&[&cfg.issuer]);
    v.set_audience(&[&cfg.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.leeway = cfg.leeway_secs.min(MAX_LEEWAY_SECS);
    v
}

/// The identity a verified claim set names.
fn identity(claims: &Map<String, Value>, cfg: &OidcIssuerConfig) -> Result<Identity, TokenError> {
    let name = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(TokenError::Claim("sub".to_owned())),
    };
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| TokenError::Claim("exp".to_owned()))?;
    let groups = groups(claims.get(&cfg.groups_claim), &cfg.groups_claim)?;
    let token_id = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(Identity {
        name,
        kind: cfg.principal_kind.unwrap_or_default(),
        roles: cfg.roles_for(&groups),
        groups,
        token_id,
        expires_at,
    })
}

/// Groups from a claim that is absent (none), one string, or a list of
/// strings. Anything else is refused rather than guessed at.
fn groups(value: Option<&Value>, claim: &str) -> Result<Vec<String>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| TokenError::Claim(claim.to_owned()))
            })
            .collect(),
        Some(_) => Err(TokenError::Claim(claim.to_owned())),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
