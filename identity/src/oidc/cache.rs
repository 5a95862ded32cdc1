//! When an issuer's cached key set may be used and when it must be fetched
//! again: a pure decision over the cache's state and the clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keys::KeySet;

/// What the cache holds and when it last tried to fetch.
#[derive(Debug, Clone, Default)]
pub struct CacheState {
    /// The last key set fetched successfully, and when.
    pub keys: Option<(Arc<KeySet>, Instant)>,
    /// When a fetch was last attempted (successful or not).
    pub last_attempt: Option<Instant>,
}

/// Timings of one issuer's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Least time between two fetches caused by unknown `kid`s or failures.
    pub cooldown: Duration,
    /// Keys older than this are not used.
    pub max_age: Duration,
}

/// What to do about a token naming `kid`.
#[derive(Debug, Clone)]
pub enum Decision {
    /// The key is cached and fresh: verify with these keys.
    Use(Arc<KeySet>),
    /// Fetch the key set (once, for everyone waiting), then decide again.
    Fetch,
    /// The key is unknown and a fetch happened too recently to try again.
    UnknownKey,
    /// No fresh key set, and none may be fetched now: refuse (fail closed).
    Unavailable,
}

impl CacheState {
    /// Decides for a token naming `kid` at `now`.
    pub fn decide(&self, kid: &str, now: Instant, policy: CachePolicy) -> Decision {
        let may_fetch = self
            .last_attempt
            .is_none_or(|t| now.saturating_duration_since(t) >= policy.cooldown);
        let fresh = self
            .keys
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) <= policy.max_age);
        match fresh {
            Some((keys, _)) if keys.contains(kid) => Decision::Use(keys.clone()),
            Some(_) if may_fetch => Decision::Fetch,
            Some(_) => Decision::UnknownKey,
            None if may_fetch => Decision::Fetch,
            None => Decision::Unavailable,
        }
    }

    /// Records a fetch attempt at `now` and, if it succeeded, its keys.
    pub fn record(&mut self, now: Instant, fetched: Option<KeySet>) {
        self.last_attempt = Some(now);
        if let Some(keys) = fetched {
            self.keys = Some((Arc::new(keys), now));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::oidc::SigningAlg;

    const POLICY: CachePolicy = CachePolicy {
        cooldown: Duration::from_secs(30),
        max_age: Duration::from_secs(3600),
    };

    fn keys() -> KeySet {
        let doc = format!("{{\"keys\":[{}]}}", include_str!("testdata/rsa1.jwk.json"));
        KeySet::from_jwks(&doc, &[SigningAlg::RS256]).unwrap()
    }

    #[test]
    fn a_cold_cache_fetches_and_a_failed_fetch_fails_closed() {
        let t0 = Instant::now();
        let mut s = CacheState::default();
        assert!(matches!(s.decide("rsa-1", t0, POLICY), Decision::Fetch));
        s.record(t0, None);
        assert!(matches!(
            s.decide("rsa-1", t0, POLICY),
            Decision::Unavailable
        ));
        let later = t0 + POLICY.cooldown;
        assert!(matches!(s.decide("rsa-1", later, POLICY), Decision::Fetch));
    }

    #[test]
    fn a_known_kid_uses_the_cache() {
        let t0 = Instant::now();
        let mut s = CacheState::default();
        s.record(t0, Some(keys()));
        assert!(matches!(s.decide("rsa-1", t0, POLICY), Decision::Use(_)));
    }

    #[test]
    fn an_unknown_kid_fetches_at_most_once_per_cooldown() {
        let t0 = Instant::now();
        let mut s = CacheState::default();
        s.record(t0, Some(keys()));
        let t1 = t0 + Duration::from_secs(5);
        assert!(matches!(s.decide("new", t1, POLICY), Decision::UnknownKey));
        let t2 = t0 + POLICY.cooldown;
        assert!(matches!(s.decide("new", t2, POLICY), Decision::Fetch));
        s.record(t2, Some(keys()));
        assert!(matches!(s.decide("new", t2, POLICY), Decision::UnknownKey));
        assert!(matches!(s.decide("rsa-1", t2, POLICY), Decision::Use(_)));
    }

    #[test]
    fn keys_past_their_maximum_age_are_not_used() {
        let t0 = Instant::now();
        let mut s = CacheState::default();
        s.record(t0, Some(keys()));
        let old = t0 + POLICY.max_age + Duration::from_secs(1);
        assert!(matches!(s.decide("rsa-1", old, POLICY), Decision::Fetch));
        s.record(old, None);
        assert!(matches!(
            s.decide("rsa-1", old, POLICY),
            Decision::Unavailable
        ));
    }
}
