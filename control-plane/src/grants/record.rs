//! Grants in the audit trail, shaped like approvals: each grant is a record
//! of its own keyed by the grant id, chained like a session, with the
//! request first and then every vote, revocation and expiry. The sequence
//! number is the grant's version after the change, bumped exactly once per
//! change under a version check, so replicas never collide.

use super::GrantState;
use crate::control_plane::ControlPlane;
use crate::store::{EventKind, Grant, GrantEntry, StoredEvent};

/// The first event of a grant's record.
pub fn requested(g: &Grant) -> StoredEvent {
    let scope = if g.scope.is_empty() {
        "every statement needing approval".to_owned()
    } else {
        format!("rule {}", g.scope)
    };
    StoredEvent {
        session_id: g.id.clone(),
        seq: 1,
        at: g.created_at,
        kind: EventKind::ApprovalRequested {
            identity: g.identity.clone(),
            target: g.target.clone(),
            session_id: String::new(),
            statement: format!(
                "access grant on {} for {}s: {scope}",
                g.target,
                g.duration_us / 1_000_000
            ),
            statement_hash: String::new(),
            policy: g.policy.clone(),
            rule: g.scope.clone(),
            reason: g.reason.clone(),
            mode: "grant".to_owned(),
            approvers: g.approvers.clone(),
            required: u64::from(g.required),
            expires_at: g.request_expires_at,
        },
    }
}

/// A change to a grant, recorded at `version` (its version after it).
pub fn changed(id: &str, version: i64, entry: &GrantEntry, state: GrantState) -> StoredEvent {
    StoredEvent {
        session_id: id.to_owned(),
        seq: u64::try_from(version).unwrap_or(0),
        at: entry.at,
        kind: EventKind::ApprovalDecision {
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            channel: entry.channel.clone(),
            reason: entry.reason.clone(),
            state: state.as_str().to_owned(),
        },
    }
}

impl ControlPlane {
    /// Appends grant events. The change has been applied; a record that
    /// cannot be stored is logged as an error.
    pub(crate) async fn record_grant(&self, events: &[StoredEvent]) {
        if let Err(e) = self.store.append_events(events).await {
            tracing::error!(error = %e, "a grant change could not be recorded in the audit trail");
        }
    }
}
