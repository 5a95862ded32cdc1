use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use sha2::{Digest, Sha256};

/// Why key material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM text is not a PKCS#8 Ed25519 private key.
    #[error("not a PKCS#8 Ed25519 private key in PEM form")]
    Pem,
    /// The key set JSON is not a valid JWKS.
    #[error("invalid JSON Web Key Set: {0}")]
    Jwks(String),
}

/// An Ed25519 signing key with its key id. The key id is derived from the
/// public key, so every replica that loads the same key names it the same way.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let inner = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_inner(inner)
    }

    /// Loads a key from PKCS#8 PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let inner = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::Pem)?;
        Ok(Self::from_inner(inner))
    }

    /// The key as PKCS#8 PEM, for storing in a file readable by its owner only.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let pem = self
            .inner
            .to_pkcs8_pem(Default::default())
            .map_err(|_| KeyError::Pem)?;
        Ok(pem.to_string())
    }

    fn from_inner(inner: ed25519_dalek::SigningKey) -> Self {
        let public = inner.verifying_key().to_bytes();
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
        Self { inner, kid }
    }

    /// The key id carried in token headers and the key set.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        let doc = self.inner.to_pkcs8_der().map_err(|_| KeyError::Pem)?;
        Ok(doc.as_bytes().to_vec())
    }

    /// Signs raw bytes. Used for audit checkpoints as well as tokens.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.inner.sign(message).to_bytes()
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.verifying_key().to_bytes()
    }

    /// The public half as a JWK (RFC 8037, `OKP` / `Ed25519`).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.public_key()),
        })
    }

    /// A JWKS document holding this key's public half.
    pub fn jwks_json(keys: &[SigningKey]) -> String {
        let keys: Vec<_> = keys.iter().map(SigningKey::public_jwk).collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key_id() {
        let key = SigningKey::generate();
        let pem = key.to_pem().unwrap();
        let back = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(key.kid(), back.kid());
        assert_eq!(key.public_key(), back.public_key());
    }

    #[test]
    fn garbage_pem_is_refused() {
        assert!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }
}
