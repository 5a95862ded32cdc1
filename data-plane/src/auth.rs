//! Access-token checks shared by every client protocol: one place decides
//! whether a token is trusted and not revoked, so the Postgres listener and
//! the HTTP gateway can never disagree about who may enter.

use std::net::SocketAddr;

use sluice_identity::Identity;

use crate::control::snapshot::NodeSnapshot;

/// Why a token was refused; the text is what the client is told (it never
/// repeats the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// The snapshot carries no usable key set.
    #[error("authentication failed: the gateway has no trusted token keys")]
    NoKeys,
    /// The token did not verify.
    #[error("authentication failed: {0}")]
    Invalid(String),
    /// The token verified but has been revoked.
    #[error("authentication failed: the access token has been revoked")]
    Revoked,
}

/// Verifies `token` against every issuer the snapshot trusts and checks it
/// is not revoked. A refusal is logged as an audit-relevant event (never
/// with the token) naming `protocol` and the claimed issuer.
pub async fn verify_token(
    snapshot: &NodeSnapshot,
    token: &str,
    peer: SocketAddr,
    protocol: &str,
) -> Result<Identity, AuthRefusal> {
    if snapshot.trust.is_empty() {
        return Err(AuthRefusal::NoKeys);
    }
    let identity = match snapshot.trust.verify(token).await {
        Ok(v) => {
            tracing::info!(identity = %v.identity.name, kind = v.identity.kind.as_str(), issuer = %v.issuer, protocol, "client authenticated");
            v.identity
        }
        Err(e) => {
            tracing::warn!(
                event = "auth_refused",
                client_addr = %peer,
                claimed_issuer = %claimed_issuer(token),
                reason = %e,
                protocol,
                "client authentication refused"
            );
            return Err(AuthRefusal::Invalid(e.to_string()));
        }
    };
    if snapshot.is_revoked(&identity.token_id) {
        return Err(AuthRefusal::Revoked);
    }
    Ok(identity)
}

/// The `iss` a token claims (unverified), bounded, for the record.
pub fn claimed_issuer(token: &str) -> String {
    let mut claimed = sluice_identity::oidc::validate::peek_issuer(token).unwrap_or_default();
    claimed.truncate(claimed.floor_char_boundary(200));
    claimed
}
