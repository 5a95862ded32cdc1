/// Why a token was refused. The `Display` text is safe to show a client: it
/// never contains the token or key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No token was presented.
    #[error("no access token was presented")]
    Missing,
    /// The token is not a well-formed JWT.
    #[error("the access token is malformed")]
    Malformed,
    /// The header names an algorithm the key does not use.
    #[error("the access token uses an algorithm that is not accepted")]
    Algorithm,
    /// The `kid` is absent or names no trusted key.
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the access token signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the access token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// `iss` is not the trusted issuer.
    #[error("the access token was issued by an untrusted issuer")]
    Issuer,
    /// `aud` does not name this gateway.
    #[error("the access token is not meant for this gateway (audience)")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("the access token lacks a required claim: {0}")]
    Claim(String),
    /// The token id has been revoked.
    #[error("the access token has been revoked")]
    Revoked,
    /// An external identity provider's keys could not be fetched, so its
    /// tokens cannot be checked (fail closed).
    #[error("token validation is unavailable: the identity provider's keys could not be fetched")]
    IssuerUnavailable,
    /// No key set is available, so nothing can be validated.
    #[error("token validation is unavailable: no trusted keys")]
    NoKeys,
}

impl TokenError {
    pub(crate) fn from_jwt(e: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => Self::Signature,
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::Issuer,
            K::InvalidAudience => Self::Audience,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => Self::Algorithm,
            K::MissingRequiredClaim(c) => Self::Claim(c.clone()),
            K::InvalidKeyFormat | K::InvalidEddsaKey => Self::UnknownKey,
            // A claim the token lacks fails deserialisation before any
            // check runs; name it rather than calling the token malformed.
            K::Json(e) => missing_field(&e.to_string()).map_or(Self::Malformed, Self::Claim),
            _ => Self::Malformed,
        }
    }
}

/// The field serde names in a "missing field `x`" error.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_claims_are_named() {
        assert_eq!(
            missing_field("missing field `exp` at line 1 column 80").as_deref(),
            Some("exp")
        );
        assert_eq!(missing_field("expected u64"), None);
    }
}
