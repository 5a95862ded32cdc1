//! Administrative changes in the audit trail: who changed which policy,
//! target, identity or credential, and when. Each change is a session of
//! one `config_change` event, so it is chained, checkpointed, searched and
//! exported with everything else.

use sha2::{Digest as _, Sha256};

use crate::control_plane::ControlPlane;
use crate::store::{EventKind, StoredEvent};

/// One change, as the caller describes it.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// Who made it.
    pub actor: &'a str,
    /// created | replaced | deleted | disabled | issued | revoked.
    pub action: &'a str,
    /// policy | target | service_account | token | api_key | join_token.
    pub resource: &'a str,
    /// The resource's name or id.
    pub name: &'a str,
    /// The version produced, for versioned resources.
    pub version: u64,
    /// The document stored, if any: only its digest is recorded.
    pub document: Option<&'a str>,
}

/// The event recording `change`, at `at` µs.
pub fn event(change: Change<'_>, at: i64) -> StoredEvent {
    StoredEvent {
        session_id: uuid::Uuid::now_v7().to_string(),
        seq: 1,
        at,
        kind: EventKind::ConfigChange {
            actor: change.actor.to_owned(),
            action: change.action.to_owned(),
            resource: change.resource.to_owned(),
            name: change.name.to_owned(),
            version: change.version,
            digest: change
                .document
                .map(|d| hex::encode(Sha256::digest(d.as_bytes())))
                .unwrap_or_default(),
        },
    }
}

impl ControlPlane {
    /// Records a change that has been applied. A change that cannot be
    /// recorded is logged as an error: it has already taken effect, and
    /// failing the caller would only hide that.
    pub async fn record_change(&self, change: Change<'_>) {
        let e = event(change, sluice_common::unix_us());
        if let Err(err) = self.store.append_events(&[e]).await {
            tracing::error!(error = %err, resource = change.resource, name = change.name, action = change.action, "a configuration change could not be recorded in the audit trail");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_records_a_digest_of_the_document_not_the_document() {
        let doc = "name: p\nstatements:\n  default: deny\n";
        let e = event(
            Change {
                actor: "alice",
                action: "replaced",
                resource: "policy",
                name: "p",
                version: 3,
                document: Some(doc),
            },
            7,
        );
        let EventKind::ConfigChange {
            digest, version, ..
        } = &e.kind
        else {
            panic!("{e:?}");
        };
        assert_eq!(digest, &hex::encode(Sha256::digest(doc.as_bytes())));
        assert_eq!(*version, 3);
        assert!(!serde_json::to_string(&e).unwrap().contains("default: deny"));
        assert_eq!((e.seq, e.at), (1, 7));
    }
}
