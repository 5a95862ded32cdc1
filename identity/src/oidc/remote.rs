//! One external issuer at run time: its configuration, its cached keys, and
//! the single-flight refresh around the pure cache decision.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::cache::{CachePolicy, CacheState, Decision};
use super::config::OidcIssuerConfig;
use super::fetch;
use super::validate;
use crate::claims::Identity;
use crate::error::TokenError;

/// A trusted external issuer whose keys are fetched on demand.
#[derive(Debug)]
pub struct RemoteIssuer {
    cfg: OidcIssuerConfig,
    http: reqwest::Client,
    state: Mutex<CacheState>,
    /// Held while fetching, so concurrent unknown `kid`s cause one fetch.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl RemoteIssuer {
    /// An issuer with an empty cache (the first token fetches the keys).
    pub fn new(cfg: OidcIssuerConfig) -> Self {
        Self {
            cfg,
            http: fetch::http_client(),
            state: Mutex::new(CacheState::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OidcIssuerConfig {
        &self.cfg
    }

    /// How many key-set fetches were attempted (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn policy(&self) -> CachePolicy {
        CachePolicy {
            cooldown: Duration::from_secs(self.cfg.refresh_cooldown_secs),
            max_age: Duration::from_secs(self.cfg.max_key_age_secs),
        }
    }

    fn decide(&self, kid: &str) -> Decision {
        self.decide_with(kid, self.policy())
    }

    fn decide_with(&self, kid: &str, policy: CachePolicy) -> Decision {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decide(kid, Instant::now(), policy)
    }

    /// Fetches the keys now unless the cooldown forbids it (used to warm
    /// the cache when the issuer is configured).
    pub async fn warm(&self) {
        let _ = self.keys_for("").await;
    }

    /// Validates `token` against this issuer, fetching its keys first if the
    /// cache is cold, stale, or lacks the token's `kid`.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let kid = validate::header_kid(token, &self.cfg)?;
        let keys = self.keys_for(&kid).await?;
        validate::validate(token, &self.cfg, &keys)
    }

    async fn keys_for(&self, kid: &str) -> Result<Arc<super::KeySet>, TokenError> {
        match self.decide(kid) {
            Decision::Use(keys) => return Ok(keys),
            Decision::UnknownKey => return Err(TokenError::UnknownKey),
            Decision::Unavailable => return Err(TokenError::IssuerUnavailable),
            Decision::Fetch => {}
        }
        let _flight = self.fetching.lock().await;
        // Whoever held the lock before may have fetched what we need.
        if let Decision::Fetch = self.decide(kid) {
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fetched = fetch::fetch_keys(&self.http, &self.cfg).await;
            let fetched = match fetched {
                Ok(keys) => {
                    tracing::info!(issuer = %self.cfg.issuer, keys = keys.len(), "identity provider keys fetched");
                    Some(keys)
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.cfg.issuer, error = %e, "identity provider keys unavailable");
                    None
                }
            };
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(Instant::now(), fetched);
        }
        // Decide again, this time without the option to fetch.
        let no_fetch = CachePolicy {
            cooldown: Duration::MAX,
            ..self.policy()
        };
        match self.decide_with(kid, no_fetch) {
            Decision::Use(keys) => Ok(keys),
            Decision::UnknownKey => Err(TokenError::UnknownKey),
            Decision::Unavailable | Decision::Fetch => Err(TokenError::IssuerUnavailable),
        }
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
