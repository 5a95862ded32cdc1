//! Column masks: what a masked value becomes. Pure functions of the value
//! (and, for `hash`, the policy's key).

use sha2::{Digest, Sha256};

use super::model::MaskDoc;

/// What replaces a redacted value (or the redacted part of one). Fixed, so
/// the length of the value is not shown.
pub const REDACTED: &str = "****";

/// A checked mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask {
    /// Replaced whole.
    Redact,
    /// First N characters kept.
    KeepFirst(usize),
    /// Last N characters kept.
    KeepLast(usize),
    /// `a***@example.com`.
    Email,
    /// HMAC-SHA256 with the key, hex prefix.
    Hash(Vec<u8>),
    /// SQL NULL.
    Null,
}

/// Hex characters kept of a hash: 64 bits, enough to join on.
const HASH_HEX: usize = 16;

impl Mask {
    /// The mask for a document entry; `key` is the policy's hash key.
    pub fn from_doc(doc: MaskDoc, key: Option<&[u8]>) -> Option<Self> {
        Some(match doc {
            MaskDoc::Redact => Self::Redact,
            MaskDoc::KeepFirst(n) => Self::KeepFirst(usize::from(n)),
            MaskDoc::KeepLast(n) => Self::KeepLast(usize::from(n)),
            MaskDoc::Email => Self::Email,
            MaskDoc::Hash => Self::Hash(key?.to_vec()),
            MaskDoc::Null => Self::Null,
        })
    }

    /// The masked form of `value` (text-format bytes), or `None` for SQL NULL.
    /// A value that is not UTF-8 is redacted whole: no character boundary
    /// can be trusted.
    pub fn apply(&self, value: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(value, &mut out).then_some(out)
    }

    /// [`Mask::apply`] appending to `out`, so a row being rewritten takes
    /// the masked value without an allocation per value; `false` (nothing
    /// written) for SQL NULL.
    pub fn write_to(&self, value: &[u8], out: &mut Vec<u8>) -> bool {
        // ASCII, the usual value, is UTF-8 and its characters are bytes:
        // the same result without a validation pass or character counts.
        if value.is_ascii() {
            match self {
                Self::Redact => out.extend_from_slice(REDACTED.as_bytes()),
                Self::Null => return false,
                Self::KeepFirst(n) => keep_ascii(value, *n, true, out),
                Self::KeepLast(n) => keep_ascii(value, *n, false, out),
                Self::Email => email_ascii(value, out),
                Self::Hash(key) => write_hash(key, value, out),
            }
            return true;
        }
        let Ok(text) = std::str::from_utf8(value) else {
            match self {
                Self::Null => return false,
                Self::Hash(key) => write_hash(key, value, out),
                _ => out.extend_from_slice(REDACTED.as_bytes()),
            }
            return true;
        };
        match self {
            Self::Redact => out.extend_from_slice(REDACTED.as_bytes()),
            Self::Null => return false,
            Self::KeepFirst(n) => keep(text, *n, true, out),
            Self::KeepLast(n) => keep(text, *n, false, out),
            Self::Email => email(text, out),
            Self::Hash(key) => write_hash(key, value, out),
        }
        true
    }
}

/// Keeps `n` characters at one end. A value no longer than twice `n` is
/// redacted whole, since the kept part would be most of it.
fn keep(text: &str, n: usize, first: bool, out: &mut Vec<u8>) {
    // ASCII, the usual case: characters are bytes.
    if text.is_ascii() {
        keep_ascii(text.as_bytes(), n, first, out);
        return;
    }
    keep_chars(text, n, first, out);
}

/// [`keep`] for ASCII, whose characters are its bytes.
fn keep_ascii(b: &[u8], n: usize, first: bool, out: &mut Vec<u8>) {
    if n == 0 || b.len() <= n.saturating_mul(2) {
        out.extend_from_slice(REDACTED.as_bytes());
    } else if first {
        out.extend_from_slice(&b[..n]);
        out.extend_from_slice(REDACTED.as_bytes());
    } else {
        out.extend_from_slice(REDACTED.as_bytes());
        out.extend_from_slice(&b[b.len() - n..]);
    }
}

/// [`keep`] counting characters, for any text.
fn keep_chars(text: &str, n: usize, first: bool, out: &mut Vec<u8>) {
    let count = text.chars().count();
    if n == 0 || count <= n.saturating_mul(2) {
        out.extend_from_slice(REDACTED.as_bytes());
        return;
    }
    let boundary = |k: usize| text.char_indices().nth(k).map_or(text.len(), |(i, _)| i);
    if first {
        out.extend_from_slice(&text.as_bytes()[..boundary(n)]);
        out.extend_from_slice(REDACTED.as_bytes());
    } else {
        out.extend_from_slice(REDACTED.as_bytes());
        out.extend_from_slice(&text.as_bytes()[boundary(count - n)..]);
    }
}

/// `a***@example.com`; anything that is not `local@domain` is redacted whole.
fn email(text: &str, out: &mut Vec<u8>) {
    match text.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let first = local.chars().next().map_or(0, char::len_utf8);
            out.extend_from_slice(&local.as_bytes()[..first]);
            out.extend_from_slice(b"***@");
            out.extend_from_slice(domain.as_bytes());
        }
        _ => out.extend_from_slice(REDACTED.as_bytes()),
    }
}

/// [`email`] for ASCII: the last `@` splits it, the first byte is the
/// first character.
fn email_ascii(b: &[u8], out: &mut Vec<u8>) {
    match b.iter().rposition(|&c| c == b'@') {
        Some(at) if at > 0 && at + 1 < b.len() => {
            out.extend_from_slice(&b[..1]);
            out.extend_from_slice(b"***@");
            out.extend_from_slice(&b[at + 1..]);
        }
        _ => out.extend_from_slice(REDACTED.as_bytes()),
    }
}

/// HMAC-SHA256 (RFC 2104) of `value` under `key`, first hex characters.
pub fn hash_hex(key: &[u8], value: &[u8]) -> String {
    let mut out = Vec::with_capacity(HASH_HEX);
    write_hash(key, value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn write_hash(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    const BLOCK: usize = 64;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(value);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    for b in outer.finalize().iter().take(HASH_HEX / 2) {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(m: &Mask, v: &str) -> Option<String> {
        m.apply(v.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn redact_hides_value_and_length() {
        assert_eq!(s(&Mask::Redact, "123-45-6789").as_deref(), Some("****"));
        assert_eq!(s(&Mask::Redact, "x").as_deref(), Some("****"));
    }

    #[test]
    fn ascii_emails_agree_with_the_character_path() {
        for text in [
            "", "@", "a@", "@b", "a@b", "x.y@z.io", "a@b@c.io", "no at", "ab@@cd",
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            email_ascii(text.as_bytes(), &mut a);
            email(text, &mut b);
            assert_eq!(a, b, "{text:?}");
        }
    }

    #[test]
    fn ascii_keeps_agree_with_the_character_count() {
        for text in [
            "",
            "a",
            "ab",
            "abcd",
            "4111111111111111",
            "x@y.io",
            "0123456789",
        ] {
            for n in 0..12 {
                for first in [true, false] {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    keep(text, n, first, &mut a);
                    keep_chars(text, n, first, &mut b);
                    assert_eq!(a, b, "{text:?} {n} {first}");
                }
            }
        }
    }

    #[test]
    fn keep_last_and_first() {
        assert_eq!(
            s(&Mask::KeepLast(4), "4111111111111111").as_deref(),
            Some("****1111")
        );
        assert_eq!(
            s(&Mask::KeepLast(4), "+1-202-555-0143").as_deref(),
            Some("****0143")
        );
        assert_eq!(
            s(&Mask::KeepFirst(2), "abcdefgh").as_deref(),
            Some("ab****")
        );
        // Too short to keep anything safely.
        assert_eq!(s(&Mask::KeepLast(4), "12345678").as_deref(), Some("****"));
        assert_eq!(s(&Mask::KeepFirst(0), "abcdefgh").as_deref(), Some("****"));
        // Characters, not bytes.
        assert_eq!(s(&Mask::KeepFirst(1), "ééééé").as_deref(), Some("é****"));
    }

    #[test]
    fn email_keeps_first_letter_and_domain() {
        assert_eq!(
            s(&Mask::Email, "alice.wonder@example.com").as_deref(),
            Some("a***@example.com")
        );
        assert_eq!(s(&Mask::Email, "not an email").as_deref(), Some("****"));
        assert_eq!(s(&Mask::Email, "@example.com").as_deref(), Some("****"));
    }

    #[test]
    fn hash_is_keyed_stable_and_matches_rfc4231() {
        // RFC 4231 test case 2.
        let full = hash_hex(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(full, "5bdcc146bf60754e");
        let a = Mask::Hash(b"k1".to_vec());
        let b = Mask::Hash(b"k2".to_vec());
        assert_eq!(s(&a, "123-45-6789"), s(&a, "123-45-6789"));
        assert_ne!(s(&a, "123-45-6789"), s(&b, "123-45-6789"));
        assert_ne!(s(&a, "123-45-6789"), s(&a, "987-65-4320"));
    }

    #[test]
    fn null_and_non_utf8() {
        assert_eq!(Mask::Null.apply(b"x"), None);
        assert_eq!(
            Mask::KeepLast(1).apply(&[0xff, 0xfe, 0x41, 0x42, 0x43]),
            Some(b"****".to_vec())
        );
    }
}
