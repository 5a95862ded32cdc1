//! Signed statements by the control plane about sessions' chain heads:
//! checkpoints (periodic, covering every session whose head moved, chained
//! to each other) and export seals (the last line of an export, so a
//! truncated file is detected). Pure: building the bytes to sign and
//! checking a signature need no I/O.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_identity::SigningKey;

use super::chain::{GENESIS, Head, canonical_string};

/// Prefix of a checkpoint's signed message.
const CHECKPOINT_DOMAIN: &[u8] = b"sluice.audit.checkpoint.v1\n";
/// Prefix of an export seal's signed message.
const SEAL_DOMAIN: &[u8] = b"sluice.audit.seal.v1\n";

/// Why a signature did not check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The public key is not 32 bytes of base64url.
    #[error("the public key is not a base64url Ed25519 key")]
    PublicKey,
    /// The signature is not 64 bytes of base64url.
    #[error("the signature is not a base64url Ed25519 signature")]
    Encoding,
    /// The signature does not match the message and key.
    #[error("the signature does not match")]
    Mismatch,
    /// The signer is not the key the verifier was told to trust.
    #[error("signed by key {0}, not by the trusted key")]
    Untrusted(String),
}

/// Checks an Ed25519 signature (both in base64url, as stored and exported).
pub fn check_signature(
    public_key: &str,
    message: &[u8],
    signature: &str,
) -> Result<(), SignatureError> {
    let key: [u8; 32] = URL_SAFE_NO_PAD
        .decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::PublicKey)?;
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::Encoding)?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| SignatureError::PublicKey)?;
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| SignatureError::Mismatch)
}

/// A key's public half in base64url, as checkpoints and seals carry it.
pub fn public_key_b64(key: &SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(key.public_key())
}

fn sign_b64(key: &SigningKey, message: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(key.sign(message))
}

/// A checkpoint: the heads of every session whose chain moved since the
/// previous checkpoint, linked to that checkpoint by hash. Together, the
/// checkpoints name the last known (seq, hash) of every session ever
/// recorded, so a session whose events were deleted or cut short no longer
/// matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Position in the checkpoint chain, from 1.
    pub seq: u64,
    /// When it was made, µs.
    pub created_at: i64,
    /// Hash of the previous checkpoint, or the genesis hash.
    pub prev_hash: String,
    /// Heads recorded, sorted by session id.
    pub heads: Vec<Head>,
}

impl Checkpoint {
    /// SHA-256 over the canonical encoding, lowercase hex.
    pub fn hash(&self) -> String {
        let heads: Vec<Value> = self
            .heads
            .iter()
            .map(|h| json!([h.session_id, h.seq, h.hash]))
            .collect();
        let body = json!({
            "v": 1,
            "seq": self.seq,
            "created_at": self.created_at,
            "prev_hash": self.prev_hash,
            "heads": heads,
        });
        hex::encode(Sha256::digest(canonical_string(&body).as_bytes()))
    }

    /// The bytes signed: a domain prefix and the hash.
    pub fn message(&self) -> Vec<u8> {
        [CHECKPOINT_DOMAIN, self.hash().as_bytes()].concat()
    }

    /// Signs it with the control plane's key.
    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        SignedCheckpoint {
            hash: self.hash(),
            signature: sign_b64(key, &self.message()),
            key_id: key.kid().to_owned(),
            public_key: public_key_b64(key),
            checkpoint: self,
        }
    }
}

/// A checkpoint with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// What was signed.
    pub checkpoint: Checkpoint,
    /// The checkpoint's hash as stored.
    pub hash: String,
    /// Key id of the signer.
    pub key_id: String,
    /// Public key of the signer, base64url.
    pub public_key: String,
    /// Ed25519 signature over [`Checkpoint::message`], base64url.
    pub signature: String,
}

impl SignedCheckpoint {
    /// Checks the stored hash, the signature and, if given, that the signer
    /// is the trusted key.
    pub fn check(&self, trusted_public_key: Option<&str>) -> Result<(), CheckpointError> {
        if self.checkpoint.hash() != self.hash {
            return Err(CheckpointError::Hash(self.checkpoint.seq));
        }
        check_signature(
            &self.public_key,
            &self.checkpoint.message(),
            &self.signature,
        )
        .map_err(|e| CheckpointError::Signature(self.checkpoint.seq, e))?;
        match trusted_public_key {
            Some(k) if k != self.public_key => Err(CheckpointError::Signature(
                self.checkpoint.seq,
                SignatureError::Untrusted(self.key_id.clone()),
            )),
            _ => Ok(()),
        }
    }
}

/// Why the checkpoint chain does not check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// Its content does not match its hash: heads were changed or removed.
    #[error("checkpoint {0}: content does not match its hash")]
    Hash(u64),
    /// Its signature is bad.
    #[error("checkpoint {0}: {1}")]
    Signature(u64, SignatureError),
    /// It does not follow the checkpoint before it.
    #[error(
        "checkpoint {0} does not link to the one before it (a checkpoint was removed or altered)"
    )]
    Link(u64),
}

/// Checks a whole checkpoint chain, oldest first: hashes, signatures,
/// numbering and links. Returns the last known head of every session.
pub fn check_checkpoints(
    chain: &[SignedCheckpoint],
    trusted_public_key: Option<&str>,
) -> Result<HashMap<String, (u64, String)>, CheckpointError> {
    let mut prev = GENESIS.to_owned();
    let mut heads = HashMap::new();
    for (i, c) in chain.iter().enumerate() {
        c.check(trusted_public_key)?;
        if c.checkpoint.prev_hash != prev || c.checkpoint.seq != i as u64 + 1 {
            return Err(CheckpointError::Link(c.checkpoint.seq));
        }
        prev = c.hash.clone();
        for h in &c.checkpoint.heads {
            heads.insert(h.session_id.clone(), (h.seq, h.hash.clone()));
        }
    }
    Ok(heads)
}

/// What changed since the last checkpoint.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeadChanges {
    /// Heads that are new or moved, sorted by session id: the next
    /// checkpoint's content.
    pub moved: Vec<Head>,
    /// Sessions a checkpoint recorded that the store no longer reaches, or
    /// reaches only at an earlier or different event: deleted or truncated.
    pub lost: Vec<LostHead>,
}

/// A checkpointed head the store no longer matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostHead {
    /// The session.
    pub session_id: String,
    /// What the checkpoint recorded.
    pub checkpointed: (u64, String),
    /// What the store has now, if anything.
    pub stored: Option<(u64, String)>,
}

/// Prefix of a head's hash that records a session deleted by retention: a
/// signed checkpoint saying "this session ended at (seq, hash) and was
/// removed". The store lets a session's events be deleted only once such a
/// head exists, and verification no longer expects the session.
pub const TOMBSTONE: &str = "deleted:";

/// Whether a checkpointed head records a retired session.
pub fn is_tombstone(hash: &str) -> bool {
    hash.starts_with(TOMBSTONE)
}

/// The tombstones to sign for `expired` sessions: only those whose stored
/// head a checkpoint already covers exactly, so nothing is deleted that was
/// never signed (the rest wait for the next checkpoint).
pub fn tombstones(expired: &[Head], checkpointed: &HashMap<String, (u64, String)>) -> Vec<Head> {
    let mut out: Vec<Head> = expired
        .iter()
        .filter(|h| {
            checkpointed
                .get(&h.session_id)
                .is_some_and(|(seq, hash)| *seq == h.seq && *hash == h.hash)
        })
        .map(|h| Head {
            session_id: h.session_id.clone(),
            seq: h.seq,
            hash: format!("{TOMBSTONE}{}", h.hash),
        })
        .collect();
    out.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    out
}

/// Compares the store's current heads with the last checkpointed ones.
pub fn head_changes(
    current: &[Head],
    checkpointed: &HashMap<String, (u64, String)>,
) -> HeadChanges {
    let mut out = HeadChanges::default();
    let mut seen = std::collections::HashSet::new();
    for h in current {
        seen.insert(h.session_id.as_str());
        match checkpointed.get(&h.session_id) {
            Some((seq, hash)) if *seq == h.seq && *hash == h.hash => {}
            Some((seq, hash)) if *seq >= h.seq => out.lost.push(LostHead {
                session_id: h.session_id.clone(),
                checkpointed: (*seq, hash.clone()),
                stored: Some((h.seq, h.hash.clone())),
            }),
            _ => out.moved.push(h.clone()),
        }
    }
    for (id, head) in checkpointed {
        if !seen.contains(id.as_str()) && !is_tombstone(&head.1) {
            out.lost.push(LostHead {
                session_id: id.clone(),
                checkpointed: head.clone(),
                stored: None,
            });
        }
    }
    out.moved.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    out.lost.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    out
}

/// The last line of an export: the control plane's signed statement of how
/// the session's chain ended when it was exported. Removing events from the
/// end of a file, or the seal itself, is then detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// Schema version.
    pub v: u64,
    /// The session.
    pub session_id: String,
    /// Events in the export.
    pub events: u64,
    /// Sequence number of the last event.
    pub last_seq: u64,
    /// Hash of the last event.
    pub last_hash: String,
    /// When the export was made, µs.
    pub exported_at: i64,
    /// Key id of the signer.
    pub key_id: String,
    /// Public key of the signer, base64url.
    pub public_key: String,
    /// Ed25519 signature over everything above, base64url.
    pub signature: String,
}

impl Seal {
    fn message(&self) -> Vec<u8> {
        let body = json!({
            "v": self.v,
            "session_id": self.session_id,
            "events": self.events,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "exported_at": self.exported_at,
            "key_id": self.key_id,
            "public_key": self.public_key,
        });
        [SEAL_DOMAIN, canonical_string(&body).as_bytes()].concat()
    }

    /// Seals the end of an export.
    pub fn sign(
        key: &SigningKey,
        session_id: &str,
        events: u64,
        last: Option<(u64, String)>,
        exported_at: i64,
    ) -> Self {
        let (last_seq, last_hash) = last.unwrap_or((0, GENESIS.to_owned()));
        let mut seal = Self {
            v: 1,
            session_id: session_id.to_owned(),
            events,
            last_seq,
            last_hash,
            exported_at,
            key_id: key.kid().to_owned(),
            public_key: public_key_b64(key),
            signature: String::new(),
        };
        seal.signature = sign_b64(key, &seal.message());
        seal
    }

    /// Checks the signature and, if given, the signer.
    pub fn check(&self, trusted_public_key: Option<&str>) -> Result<(), SignatureError> {
        check_signature(&self.public_key, &self.message(), &self.signature)?;
        match trusted_public_key {
            Some(k) if k != self.public_key => Err(SignatureError::Untrusted(self.key_id.clone())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str, seq: u64, h: &str) -> Head {
        Head {
            session_id: s.to_owned(),
            seq,
            hash: h.to_owned(),
        }
    }

    fn chain_of(key: &SigningKey, n: u64) -> Vec<SignedCheckpoint> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let c = Checkpoint {
                    seq,
                    created_at: 1,
                    prev_hash: prev.clone(),
                    heads: vec![head(&format!("s{seq}"), seq, "h")],
                }
                .sign(key);
                prev = c.hash.clone();
                c
            })
            .collect()
    }

    #[test]
    fn a_checkpoint_chain_checks_and_names_what_breaks_it() {
        let key = SigningKey::generate();
        let chain = chain_of(&key, 3);
        let heads = check_checkpoints(&chain, Some(&public_key_b64(&key))).unwrap();
        assert_eq!(heads.len(), 3);

        let mut altered = chain.clone();
        altered[1].checkpoint.heads[0].seq = 1;
        assert_eq!(
            check_checkpoints(&altered, None),
            Err(CheckpointError::Hash(2))
        );

        let mut removed = chain.clone();
        removed.remove(1);
        assert_eq!(
            check_checkpoints(&removed, None),
            Err(CheckpointError::Link(3))
        );

        let other = SigningKey::generate();
        let forged = chain_of(&other, 3);
        assert!(matches!(
            check_checkpoints(&forged, Some(&public_key_b64(&key))),
            Err(CheckpointError::Signature(1, SignatureError::Untrusted(_)))
        ));
        let mut bad_sig = chain.clone();
        bad_sig[0].signature = chain[1].signature.clone();
        assert!(matches!(
            check_checkpoints(&bad_sig, None),
            Err(CheckpointError::Signature(1, SignatureError::Mismatch))
        ));
    }

    #[test]
    fn head_changes_find_moved_new_deleted_and_truncated_sessions() {
        let checkpointed = HashMap::from([
            ("same".to_owned(), (3, "h3".to_owned())),
            ("moved".to_owned(), (1, "h1".to_owned())),
            ("cut".to_owned(), (5, "h5".to_owned())),
            ("gone".to_owned(), (2, "h2".to_owned())),
        ]);
        let current = vec![
            head("same", 3, "h3"),
            head("moved", 2, "h2"),
            head("cut", 4, "h4"),
            head("new", 1, "n1"),
        ];
        let c = head_changes(&current, &checkpointed);
        let moved: Vec<&str> = c.moved.iter().map(|h| h.session_id.as_str()).collect();
        assert_eq!(moved, vec!["moved", "new"]);
        let lost: Vec<&str> = c.lost.iter().map(|h| h.session_id.as_str()).collect();
        assert_eq!(lost, vec!["cut", "gone"]);
        assert_eq!(c.lost[1].stored, None);
    }

    #[test]
    fn only_fully_checkpointed_sessions_are_retired_and_then_no_longer_expected() {
        let checkpointed = HashMap::from([
            ("signed".to_owned(), (3, "h3".to_owned())),
            ("grew".to_owned(), (1, "h1".to_owned())),
        ]);
        let expired = vec![
            head("signed", 3, "h3"),
            head("grew", 2, "h2"),
            head("never", 1, "n1"),
        ];
        let t = tombstones(&expired, &checkpointed);
        assert_eq!(t, vec![head("signed", 3, "deleted:h3")]);
        assert!(is_tombstone(&t[0].hash));
        // Once the tombstone is signed, the session's absence is expected;
        // an unsigned deletion of another session is still lost.
        let after = HashMap::from([
            ("signed".to_owned(), (3, "deleted:h3".to_owned())),
            ("grew".to_owned(), (1, "h1".to_owned())),
        ]);
        let c = head_changes(&[], &after);
        let lost: Vec<&str> = c.lost.iter().map(|h| h.session_id.as_str()).collect();
        assert_eq!(lost, vec!["grew"]);
    }

    #[test]
    fn seals_check_and_refuse_changes() {
        let key = SigningKey::generate();
        let seal = Seal::sign(&key, "s", 3, Some((3, "h".to_owned())), 7);
        assert_eq!(seal.check(Some(&public_key_b64(&key))), Ok(()));
        let mut cut = seal.clone();
        cut.last_seq = 2;
        assert_eq!(cut.check(None), Err(SignatureError::Mismatch));
        let other = SigningKey::generate();
        assert!(matches!(
            seal.check(Some(&public_key_b64(&other))),
            Err(SignatureError::Untrusted(_))
        ));
    }
}
