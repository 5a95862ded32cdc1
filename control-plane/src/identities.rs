//! Tokens for service accounts: signed by this control plane's issuer,
//! recorded so they can be listed and revoked, and short-lived by design.

use std::time::Duration;

use sluice_identity::{IssuedToken, KeyError, PrincipalKind};

use crate::ControlPlane;
use crate::bus::BusEvent;
use crate::store::{IssuedTokenRecord, ServiceAccount, StoreError};

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The requested lifetime is longer than configuration allows.
    #[error("a token may live at most {max}s; {requested}s was asked for")]
    TtlTooLong {
        /// Seconds asked for.
        requested: u64,
        /// The configured maximum, seconds.
        max: u64,
    },
    /// The account is disabled.
    #[error("service account {0:?} is disabled")]
    Disabled(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The principal kind a service account's tokens carry.
pub fn account_kind(account: &ServiceAccount) -> PrincipalKind {
    if account.kind == "agent" {
        PrincipalKind::Agent
    } else {
        PrincipalKind::Service
    }
}

impl ControlPlane {
    /// Signs a token for `account`, valid for `ttl` (the configured default
    /// when `None`), and records it. Service-account tokens carry no REST
    /// role: agents and services reach targets only through nodes, and
    /// automation uses an API key for the REST API.
    pub async fn issue_account_token(
        &self,
        account: &ServiceAccount,
        ttl: Option<Duration>,
        issued_by: &str,
    ) -> Result<IssuedToken, IssueError> {
        if account.disabled_at.is_some() {
            return Err(IssueError::Disabled(account.name.clone()));
        }
        let max = self.config().max_token_ttl;
        let ttl = ttl.unwrap_or(self.config().service_token_ttl);
        if ttl > max {
            return Err(IssueError::TtlTooLong {
                requested: ttl.as_secs(),
                max: max.as_secs(),
            });
        }
        let kind = account_kind(account);
        let issued = self
            .issuer
            .issue(&account.name, kind, &account.groups, &[], ttl)?;
        let now = sluice_common::unix_us();
        self.store
            .record_issued_token(&IssuedTokenRecord {
                id: issued.token_id.clone(),
                subject: account.name.clone(),
                kind: kind.as_str().to_owned(),
                account_id: Some(account.id.clone()),
                issued_by: issued_by.to_owned(),
                issued_at: now,
                expires_at: i64::try_from(issued.expires_at)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000_000),
                revoked_at: None,
            })
            .await?;
        tracing::info!(account = %account.name, token_id = %issued.token_id, by = issued_by, ttl_secs = ttl.as_secs(), "token issued");
        Ok(issued)
    }

    /// Revokes one token of `account` and tells every node at once.
    pub async fn revoke_account_token(
        &self,
        account: &ServiceAccount,
        token_id: &str,
    ) -> Result<bool, StoreError> {
        let revoked = self
            .store
            .revoke_issued_token(&account.id, token_id)
            .await?;
        if revoked {
            self.bus.publish(BusEvent::ConfigChanged);
        }
        Ok(revoked)
    }

    /// Disables an account, revoking its tokens, and tells every node.
    pub async fn disable_service_account(&self, name: &str) -> Result<bool, StoreError> {
        let disabled = self.store.disable_service_account(name).await?;
        if disabled {
            self.bus.publish(BusEvent::ConfigChanged);
        }
        Ok(disabled)
    }

    /// Whether a token id is revoked, as of the newest snapshot.
    pub fn is_token_revoked(&self, token_id: &str) -> bool {
        self.current_snapshot()
            .revoked_token_ids
            .binary_search_by(|id| id.as_str().cmp(token_id))
            .is_ok()
    }
}
