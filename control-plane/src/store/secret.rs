//! Random bearer secrets (join tokens, client secrets, API keys) and the
//! one-way form in which the store keeps them.
//!
//! Every secret is 24 random bytes behind a readable prefix, so a leaked one
//! is easy to recognise and scan for. Only its SHA-256 is stored: with that
//! much entropy a fast hash is enough, and a stolen store reveals nothing
//! that can be replayed.

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// A fresh secret: `prefix` followed by 48 hex digits.
pub(crate) fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a secret.
pub(crate) fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two stored forms without an early exit, so the time taken says
/// nothing about how much of a guess was right.
pub(crate) fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_stably() {
        let a = generate("sk_");
        let b = generate("sk_");
        assert!(a.starts_with("sk_") && a.len() == 3 + 48);
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(hashes_equal(&hash(&a), &hash(&a)));
        assert!(!hashes_equal(&hash(&a), &hash(&b)));
        assert!(!hashes_equal("ab", "abc"));
    }
}
