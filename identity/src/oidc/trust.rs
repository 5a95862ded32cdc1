//! Every issuer a gateway trusts, behind one call: the control plane's own
//! issuer, or one of the configured external ones, chosen by the token's
//! `iss` claim (which the chosen issuer's rules then check for real).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::config::OidcIssuerConfig;
use super::remote::RemoteIssuer;
use super::validate::peek_issuer;
use crate::claims::Identity;
use crate::error::TokenError;
use crate::verifier::Verifier;

/// The issuers a node or the REST API accepts tokens from.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    own: Option<Verifier>,
    external: Vec<Arc<RemoteIssuer>>,
}

/// Which issuer verified a token: for audit and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who the token names.
    pub identity: Identity,
    /// The issuer that vouched for it.
    pub issuer: String,
}

impl TrustStore {
    /// Trusts `own` (the control plane's issuer, if any) and `external`.
    pub fn new(own: Option<Verifier>, external: Vec<Arc<RemoteIssuer>>) -> Self {
        Self { own, external }
    }

    /// Whether any issuer at all is trusted.
    pub fn is_empty(&self) -> bool {
        self.own.as_ref().is_none_or(|v| !v.has_keys()) && self.external.is_empty()
    }

    /// The external issuers.
    pub fn external(&self) -> &[Arc<RemoteIssuer>] {
        &self.external
    }

    /// Validates `token` with the issuer its `iss` names; a token naming no
    /// trusted issuer is refused as such.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let iss = peek_issuer(token)?;
        if let Some(remote) = self.external.iter().find(|r| r.config().issuer == iss) {
            let identity = remote.verify(token).await?;
            return Ok(Verified {
                identity,
                issuer: iss,
            });
        }
        match &self.own {
            Some(own) => {
                let identity = own.verify(token)?;
                Ok(Verified {
                    identity,
                    issuer: iss,
                })
            }
            None => Err(TokenError::Issuer),
        }
    }
}

/// Shares one [`RemoteIssuer`] (and so one key cache) among every trust
/// store built from the same configuration, so a new snapshot does not
/// throw the fetched keys away.
#[derive(Debug, Default)]
pub struct IssuerRegistry {
    issuers: Mutex<HashMap<OidcIssuerConfig, Weak<RemoteIssuer>>>,
}

impl IssuerRegistry {
    /// The issuer for `cfg`, reusing a live one with the same configuration.
    /// The `bool` says whether it is new (so the caller may warm it).
    pub fn issuer(&self, cfg: &OidcIssuerConfig) -> (Arc<RemoteIssuer>, bool) {
        let mut map = self.issuers.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(live) = map.get(cfg).and_then(Weak::upgrade) {
            return (live, false);
        }
        let fresh = Arc::new(RemoteIssuer::new(cfg.clone()));
        map.insert(cfg.clone(), Arc::downgrade(&fresh));
        (fresh, true)
    }

    /// Issuers for every usable configuration in `cfgs`; unusable ones are
    /// logged and left out (their tokens are then refused). New issuers
    /// start fetching their keys in the background when a runtime is
    /// present.
    pub fn resolve(&self, cfgs: &[OidcIssuerConfig]) -> Vec<Arc<RemoteIssuer>> {
        cfgs.iter()
            .filter(|c| match c.problem() {
                Some(p) => {
                    tracing::error!(problem = %p, "external issuer ignored: its tokens are refused");
                    false
                }
                None => true,
            })
            .map(|c| {
                let (issuer, new) = self.issuer(c);
                if new && let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let warm = issuer.clone();
                    rt.spawn(async move { warm.warm().await });
                }
                issuer
            })
            .collect()
    }
}
