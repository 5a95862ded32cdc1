use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::claims::{Claims, PrincipalKind, Role};
use crate::keys::{KeyError, SigningKey};

/// Signs access tokens for named principals.
pub struct Issuer {
    issuer: String,
    audience: String,
    key: SigningKey,
    encoding: EncodingKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.key.kid())
            .finish()
    }
}

/// A token just issued, with the facts a caller needs without decoding it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Its `jti`.
    pub token_id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

impl Issuer {
    /// An issuer named `issuer` (a URL) signing for `audience`.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        key: SigningKey,
    ) -> Result<Self, KeyError> {
        let encoding = EncodingKey::from_ed_der(&key.pkcs8_der()?);
        Ok(Self {
            issuer: issuer.into(),
            audience: audience.into(),
            key,
            encoding,
        })
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience (`aud`).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The key set to publish, so others can validate what this issuer signs.
    pub fn jwks_json(&self) -> String {
        SigningKey::jwks_json(std::slice::from_ref(&self.key))
    }

    /// Issues a token for `subject` valid for `ttl` from now.
    pub fn issue(
        &self,
        subject: &str,
        kind: PrincipalKind,
        groups: &[String],
        roles: &[Role],
        ttl: Duration,
    ) -> Result<IssuedToken, KeyError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_owned(),
            exp: now + ttl.as_secs(),
            iat: now,
            nbf: Some(now),
            jti: uuid::Uuid::new_v4().to_string(),
            kind,
            groups: groups.to_vec(),
            roles: roles.to_vec(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| KeyError::Jwks(e.to_string()))?;
        Ok(IssuedToken {
            token,
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }
}
