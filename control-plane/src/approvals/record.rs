//! Approvals in the audit trail. Each request is a record of its own,
//! keyed by the approval id and chained like a session: the request first,
//! then every vote, expiry, withdrawal and the run it allowed. The sequence
//! number is the request's version after the change, which the store bumps
//! exactly once per change under a version check, so replicas never collide.

use crate::control_plane::ControlPlane;
use crate::store::{Approval, ApprovalEntry, EventKind, StoredEvent};

/// The first event of an approval's record.
pub fn requested(a: &Approval) -> StoredEvent {
    StoredEvent {
        session_id: a.id.clone(),
        seq: 1,
        at: a.created_at,
        kind: EventKind::ApprovalRequested {
            identity: a.identity.clone(),
            target: a.target.clone(),
            session_id: a.session_id.clone(),
            statement: a.statement.clone(),
            statement_hash: a.statement_hash.clone(),
            policy: a.policy.clone(),
            rule: a.rule.clone(),
            reason: a.reason.clone(),
            mode: a.mode.clone(),
            approvers: a.approvers.clone(),
            required: u64::from(a.required),
            expires_at: a.expires_at,
        },
    }
}

/// A change to an approval, recorded at `version` (its version after the
/// change).
pub fn changed(id: &str, version: i64, entry: &ApprovalEntry, state: &str) -> StoredEvent {
    StoredEvent {
        session_id: id.to_owned(),
        seq: u64::try_from(version).unwrap_or(0),
        at: entry.at,
        kind: EventKind::ApprovalDecision {
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            channel: entry.channel.clone(),
            reason: entry.reason.clone(),
            state: state.to_owned(),
        },
    }
}

/// The record of an approved statement being released to run.
pub fn released(id: &str, version: i64, at: i64) -> StoredEvent {
    changed(
        id,
        version,
        &ApprovalEntry {
            at,
            actor: "sluice".to_owned(),
            action: "run".to_owned(),
            channel: "node".to_owned(),
            reason: "the approved statement was released to run once".to_owned(),
        },
        "consumed",
    )
}

impl ControlPlane {
    /// Appends approval events. The change has been applied; a record that
    /// cannot be stored is logged as an error.
    pub(crate) async fn record_approval(&self, events: &[StoredEvent]) {
        if let Err(e) = self.store.append_events(events).await {
            tracing::error!(error = %e, "an approval change could not be recorded in the audit trail");
        }
    }
}
