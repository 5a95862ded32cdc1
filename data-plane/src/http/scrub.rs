//! Removes echoes of secrets from what the client receives: the credential
//! the gateway injected and the agent's own token (an API such as httpbin
//! echoes request headers back). Works on a stream: a secret split across
//! chunks is still found, because the tail that could begin one is held
//! back until the next chunk.

use std::sync::Arc;

use base64::Engine as _;
use memchr::memmem::Finder;

/// What replaces a secret.
pub const REDACTED: &[u8] = b"[redacted by sluice]";

/// Secrets shorter than this are not scrubbed: replacing every occurrence
/// of a very short string would corrupt unrelated bytes.
const MIN_SECRET: usize = 6;

/// The secrets of one request, in every form an echo may take them, each
/// with a prepared substring searcher (shared by every request of the
/// session, so a response pays only for the search). One vectorised
/// substring search per form costs far less per byte than one
/// multi-pattern automaton over all of them.
#[derive(Clone, Default)]
pub struct Secrets(Arc<[Finder<'static>]>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} forms)", self.0.len())
    }
}

impl Secrets {
    /// Adds `secret` as is, percent-encoded, JSON-escaped and in base64
    /// (as sent in basic authentication).
    pub fn add(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET {
            return;
        }
        let forms = [
            secret.to_owned(),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            serde_json::to_string(secret)
                .map(|s| s.trim_matches('"').to_owned())
                .unwrap_or_default(),
            base64::engine::general_purpose::STANDARD.encode(secret),
        ];
        let mut all: Vec<Finder<'static>> = self.0.to_vec();
        for f in forms {
            if f.len() >= MIN_SECRET && !all.iter().any(|s| s.needle() == f.as_bytes()) {
                all.push(Finder::new(f.as_bytes()).into_owned());
            }
        }
        self.0 = all.into();
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `text` contains any form of a secret.
    pub fn found_in(&self, text: &[u8]) -> bool {
        self.0.iter().any(|s| s.find(text).is_some())
    }

    fn longest(&self) -> usize {
        self.0.iter().map(|s| s.needle().len()).max().unwrap_or(0)
    }

    /// Where forms of secrets are in `text`, as spans sorted by start with
    /// overlapping ones merged: a form may overlap another (two secrets, or
    /// a secret and itself), and every byte of each must go. Allocates
    /// nothing when there is none (the usual body).
    fn spans(&self, text: &[u8]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for s in self.0.iter() {
            let mut at = 0;
            while let Some(i) = text.get(at..).and_then(|rest| s.find(rest)) {
                found.push((at + i, at + i + s.needle().len()));
                at += i + 1;
            }
        }
        found.sort_unstable();
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(found.len());
        for (start, end) in found {
            match spans.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => spans.push((start, end)),
            }
        }
        spans
    }

    /// A streaming scrubber over these secrets.
    pub fn scrubber(&self) -> Scrubber {
        Scrubber {
            secrets: self.clone(),
            held: Vec::new(),
            count: 0,
        }
    }
}

/// Scrubs one response body, chunk by chunk.
#[derive(Debug)]
pub struct Scrubber {
    secrets: Secrets,
    held: Vec<u8>,
    count: u64,
}

impl Scrubber {
    /// Starts the next piece of the body where the last one was held back:
    /// appends the held bytes to `text` (empty), after which the caller
    /// appends the piece itself and calls [`Scrubber::release`]. The body is
    /// so scrubbed in the buffer it is sent from, without a copy of its own.
    pub fn begin(&mut self, text: &mut Vec<u8>) {
        text.append(&mut self.held);
    }

    /// Scrubs `text` (begun with [`Scrubber::begin`]) and holds back its
    /// tail that could be the start of a secret; what is left is safe to
    /// send. Held bytes are scanned again with the next piece; a
    /// replacement held back among them is harmless, since it contains no
    /// secret.
    pub fn release(&mut self, text: &mut Vec<u8>) {
        if self.secrets.is_empty() {
            return;
        }
        self.replace(text);
        let keep = self.secrets.longest().saturating_sub(1);
        let cut = text.len().saturating_sub(keep);
        self.held.extend_from_slice(&text[cut..]);
        text.truncate(cut);
    }

    /// Sends what was held back.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let mut text = std::mem::take(&mut self.held);
        self.replace(&mut text);
        out.extend_from_slice(&text);
    }

    /// Secrets replaced so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Replaces every form of every secret in `text` in one pass; copies
    /// only when one is found (the usual body carries none).
    fn replace(&mut self, text: &mut Vec<u8>) {
        let spans = self.secrets.spans(text);
        if spans.is_empty() {
            return;
        }
        self.count += spans.len() as u64;
        let mut next = Vec::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            next.extend_from_slice(&text[at..start]);
            next.extend_from_slice(REDACTED);
            at = end;
        }
        next.extend_from_slice(&text[at..]);
        *text = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One piece through the scrubber, as the response pipe sends it.
    fn feed(sc: &mut Scrubber, piece: &[u8], out: &mut Vec<u8>) {
        let mut text = Vec::new();
        sc.begin(&mut text);
        text.extend_from_slice(piece);
        sc.release(&mut text);
        out.extend_from_slice(&text);
    }

    #[test]
    fn secrets_split_anywhere_are_scrubbed() {
        let mut s = Secrets::default();
        s.add("sk_upstream_123456");
        s.add("abc");
        let body = br#"{"headers":{"Authorization":"Bearer sk_upstream_123456"},"x":"sk_upstream_123456"}"#;
        for cut in 0..body.len() {
            let mut sc = s.scrubber();
            let mut out = Vec::new();
            feed(&mut sc, &body[..cut], &mut out);
            feed(&mut sc, &body[cut..], &mut out);
            sc.finish(&mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("sk_upstream"), "cut {cut}: {text}");
            assert_eq!(sc.count(), 2);
            assert!(text.contains("abc") || !body.windows(3).any(|w| w == b"abc"));
        }
    }

    #[test]
    fn overlapping_secrets_lose_every_byte() {
        let mut s = Secrets::default();
        s.add("abcdefgh");
        s.add("efghijkl");
        s.add("cdef12");
        s.add("xyzxyz");
        let mut sc = s.scrubber();
        let mut out = Vec::new();
        feed(&mut sc, b"xxabcdefghijklyy cdef12 zz xyzxyzxyz.", &mut out);
        sc.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "xx[redacted by sluice]yy [redacted by sluice] zz [redacted by sluice]."
        );
        assert_eq!(sc.count(), 3);
    }

    #[test]
    fn encoded_forms_are_found_too() {
        let mut s = Secrets::default();
        s.add("user:p@ss word");
        assert!(s.found_in(b"Basic dXNlcjpwQHNzIHdvcmQ="));
        assert!(s.found_in(b"?key=user%3Ap%40ss+word"));
        assert!(!s.found_in(b"nothing here"));
    }
}
