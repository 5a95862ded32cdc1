//! Custody of target credentials. A credential is stored in one of two
//! forms, and never in clear:
//!
//! - **sealed**: encrypted with AES-256-GCM under a key-encryption key (KEK)
//!   from configuration, `v1:<kek id>:<base64(nonce ‖ ciphertext)>`, with the
//!   target's name as associated data so a sealed value copied onto another
//!   target does not open. The control plane opens it only to hand it to a
//!   node for one session.
//! - **reference**: `ref:env:NAME` or `ref:file:PATH`, resolved by the node
//!   itself, so the control plane never holds the secret at all.
//!
//! Everything here is pure: keys and strings in, strings out.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// Why a credential could not be sealed, opened or understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// A key file does not hold 32 bytes, base64- or hex-encoded.
    #[error("a key-encryption key must be 32 bytes, base64 or hex encoded")]
    BadKey,
    /// The value names a KEK this control plane does not have.
    #[error("sealed with key {0}, which is not configured")]
    UnknownKey(String),
    /// Authentication failed: wrong key, wrong target or a modified value.
    #[error("the sealed credential does not open (altered, or sealed for another target)")]
    Open,
    /// No KEK is configured, so nothing can be sealed.
    #[error(
        "no key-encryption key is configured (secrets_key_file); store a reference (env:NAME or file:PATH) instead"
    )]
    NoKey,
    /// The stored value is in no known form.
    #[error("the stored credential is in an unknown form")]
    Form,
    /// A reference is not `env:NAME` or `file:/absolute/path`.
    #[error("a credential reference must be env:NAME or file:/absolute/path")]
    BadReference,
}

/// A key-encryption key and its id (the first 8 hex digits of its SHA-256).
#[derive(Clone)]
pub struct Kek {
    id: String,
    key: Key<Aes256Gcm>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// Reads a key from a file's text: 32 bytes as base64 or hex.
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| STANDARD.decode(text).ok().filter(|b| b.len() == 32))
            .ok_or(SecretError::BadKey)?;
        let id = hex::encode(&Sha256::digest(&bytes)[..4]);
        Ok(Self {
            id,
            key: Key::<Aes256Gcm>::from(
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| SecretError::BadKey)?,
            ),
        })
    }

    /// A fresh random key, as the text to store in a key file.
    pub fn generate_text() -> String {
        STANDARD.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// The key's id, as found in values it sealed.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current KEK, which seals, and older ones kept only to open values
/// not yet re-sealed.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    current: Option<Kek>,
    previous: Vec<Kek>,
}

/// A stored credential, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<'a> {
    /// Sealed under the KEK with this id.
    Sealed {
        /// The KEK id.
        kek: &'a str,
        /// base64(nonce ‖ ciphertext).
        blob: &'a str,
    },
    /// A reference the node resolves (`env:NAME`, `file:PATH`).
    Reference(&'a str),
    /// No credential (a target that needs no password).
    Empty,
}

/// Reads a stored value's form.
pub fn parse(stored: &str) -> Result<Stored<'_>, SecretError> {
    if stored.is_empty() {
        return Ok(Stored::Empty);
    }
    if let Some(r) = stored.strip_prefix("ref:") {
        return Ok(Stored::Reference(r));
    }
    let rest = stored.strip_prefix("v1:").ok_or(SecretError::Form)?;
    let (kek, blob) = rest.split_once(':').ok_or(SecretError::Form)?;
    Ok(Stored::Sealed { kek, blob })
}

/// Checks a reference an admin gave, and returns its stored form.
pub fn reference(r: &str) -> Result<String, SecretError> {
    let ok = match r.split_once(':') {
        Some(("env", name)) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        Some(("file", path)) => path.starts_with('/') && !path.contains('\0'),
        _ => false,
    };
    if ok {
        Ok(format!("ref:{r}"))
    } else {
        Err(SecretError::BadReference)
    }
}

impl Keyring {
    /// A keyring sealing with `current` and also opening with `previous`.
    pub fn new(current: Option<Kek>, previous: Vec<Kek>) -> Self {
        Self { current, previous }
    }

    /// This keyring with `new` as the sealing key and every key it had kept
    /// for opening: what re-sealing after a rotation needs.
    pub fn rotated(mut self, new: Kek) -> Self {
        if let Some(old) = self.current.replace(new) {
            self.previous.insert(0, old);
        }
        self
    }

    /// The id of the sealing key, if any.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(Kek::id)
    }

    /// Seals `secret` for the target named `target`.
    pub fn seal(&self, target: &str, secret: &str) -> Result<String, SecretError> {
        let kek = self.current.as_ref().ok_or(SecretError::NoKey)?;
        let cipher = Aes256Gcm::new(&kek.key);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: target.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("v1:{}:{}", kek.id, STANDARD.encode(blob)))
    }

    /// Opens a sealed value of the target named `target`.
    pub fn open(&self, target: &str, kek_id: &str, blob: &str) -> Result<String, SecretError> {
        let kek = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == kek_id)
            .ok_or_else(|| SecretError::UnknownKey(kek_id.to_owned()))?;
        let raw = STANDARD.decode(blob).map_err(|_| SecretError::Open)?;
        if raw.len() < 12 {
            return Err(SecretError::Open);
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = Aes256Gcm::new(&kek.key)
            .decrypt(
                &Nonce::from(<[u8; 12]>::try_from(nonce).map_err(|_| SecretError::Open)?),
                Payload {
                    msg: ct,
                    aad: target.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretError::Open)
    }

    /// Re-seals a stored value under the current key; references and empty
    /// values are returned as they are. `None` when nothing changes.
    pub fn reseal(&self, target: &str, stored: &str) -> Result<Option<String>, SecretError> {
        match parse(stored)? {
            Stored::Sealed { kek, blob } => {
                if Some(kek) == self.current_id() {
                    return Ok(None);
                }
                let plain = self.open(target, kek, blob)?;
                self.seal(target, &plain).map(Some)
            }
            Stored::Reference(_) | Stored::Empty => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Kek {
        Kek::from_text(&Kek::generate_text()).unwrap()
    }

    #[test]
    fn a_sealed_credential_opens_only_for_its_target_and_key() {
        let ring = Keyring::new(Some(key()), vec![]);
        let sealed = ring.seal("orders", "hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        let Stored::Sealed { kek, blob } = parse(&sealed).unwrap() else {
            panic!("sealed form expected");
        };
        assert_eq!(ring.open("orders", kek, blob).unwrap(), "hunter2");
        assert_eq!(ring.open("billing", kek, blob), Err(SecretError::Open));
        let other = Keyring::new(Some(key()), vec![]);
        assert!(matches!(
            other.open("orders", kek, blob),
            Err(SecretError::UnknownKey(_))
        ));
        // Any changed byte fails authentication.
        let mut raw = STANDARD.decode(blob).unwrap();
        raw[20] ^= 1;
        assert_eq!(
            ring.open("orders", kek, &STANDARD.encode(raw)),
            Err(SecretError::Open)
        );
        // Same secret, fresh nonce: the stored forms differ.
        assert_ne!(ring.seal("orders", "hunter2").unwrap(), sealed);
    }

    #[test]
    fn rotation_reseals_under_the_new_key_and_keeps_references() {
        let old = key();
        let before = Keyring::new(Some(old.clone()), vec![]);
        let sealed = before.seal("t", "s3cret").unwrap();
        let after = Keyring::new(Some(key()), vec![old]);
        let resealed = after.reseal("t", &sealed).unwrap().unwrap();
        let Stored::Sealed { kek, blob } = parse(&resealed).unwrap() else {
            panic!("sealed form expected");
        };
        assert_eq!(Some(kek), after.current_id());
        assert_eq!(after.open("t", kek, blob).unwrap(), "s3cret");
        assert_eq!(after.reseal("t", &resealed).unwrap(), None);
        assert_eq!(after.reseal("t", "ref:env:PGPASS").unwrap(), None);
    }

    #[test]
    fn keys_and_references_are_checked() {
        assert_eq!(Kek::from_text("short").unwrap_err(), SecretError::BadKey);
        assert!(Kek::from_text(&"ab".repeat(32)).is_ok(), "hex works too");
        assert_eq!(reference("env:PG_PASS").unwrap(), "ref:env:PG_PASS");
        assert_eq!(
            reference("file:/run/secrets/pg").unwrap(),
            "ref:file:/run/secrets/pg"
        );
        for bad in ["env:", "env:A-B", "file:relative", "vault:x", "plain"] {
            assert_eq!(reference(bad), Err(SecretError::BadReference), "{bad}");
        }
        assert_eq!(Keyring::default().seal("t", "x"), Err(SecretError::NoKey));
        assert_eq!(parse("hunter2"), Err(SecretError::Form));
        assert_eq!(parse(""), Ok(Stored::Empty));
    }
}
