//! The tamper-evident audit record: turning the events nodes send into
//! stored session events ([`from_proto`], [`acks`]), the per-session hash
//! chain ([`chain`]), signed checkpoints and export seals ([`seal`]),
//! verification ([`verify`]), export formats ([`export`]) and the periodic
//! checkpoint loop ([`checkpointer`]). Everything but the loop is pure.

pub mod chain;
pub mod changes;
pub mod checkpointer;
pub mod export;
pub mod online;
pub mod seal;
pub mod verify;

use sluice_proto::v1;
use sluice_proto::v1::audit_event::Payload;

use crate::store::{EventKind, StoredEvent};

/// Why an event from a node was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditError {
    /// The session id is not a UUID.
    #[error("event has an invalid session id")]
    SessionId,
    /// Sequence numbers start at 1.
    #[error("event has sequence number 0")]
    Seq,
    /// The event carries no payload.
    #[error("event has no payload")]
    Empty,
}

/// Converts one event, checking what the store relies on.
pub fn from_proto(node_id: &str, e: v1::AuditEvent) -> Result<StoredEvent, AuditError> {
    if uuid::Uuid::parse_str(&e.session_id).is_err() {
        return Err(AuditError::SessionId);
    }
    if e.seq == 0 {
        return Err(AuditError::Seq);
    }
    let kind = match e.payload.ok_or(AuditError::Empty)? {
        Payload::SessionStart(s) => EventKind::SessionStart {
            identity: s.identity,
            identity_kind: s.identity_kind,
            groups: s.groups,
            target: s.target,
            client_addr: s.client_addr,
            tls: s.tls,
            protocol: s.protocol,
            token_id: s.token_id,
            application_name: s.application_name,
            node_id: node_id.to_owned(),
        },
        Payload::Statement(s) => EventKind::Statement {
            text: s.text,
            decision: s.decision,
            policy: s.policy,
            rule: s.rule,
            reason: s.reason,
            kinds: s.kinds,
            protocol: s.protocol,
            duration_us: s.duration_us,
            rows: s.rows,
            sqlstate: s.sqlstate,
            command_tag: s.command_tag,
            approval_id: s.approval_id,
            masked: s.masked.into_iter().collect(),
            sample: s.sample.map(|r| crate::store::ResultSample {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.values.into_iter().map(|v| v.text).collect())
                    .collect(),
                truncated: r.truncated,
            }),
            parameters: s.parameters.into_iter().map(|v| v.text).collect(),
            bytes: s.bytes,
            http: s.http.map(|h| {
                Box::new(crate::store::HttpExchange {
                    method: h.method,
                    path: h.path,
                    query: h.query,
                    status: h.status,
                    request_bytes: h.request_bytes,
                    response_bytes: h.response_bytes,
                    request_sample: h.request_sample,
                    response_sample: h.response_sample,
                })
            }),
        },
        Payload::SessionEnd(s) => EventKind::SessionEnd {
            reason: s.reason,
            statements: s.statements,
            bytes_to_client: s.bytes_to_client,
            bytes_from_client: s.bytes_from_client,
        },
        Payload::StatementIntent(s) => EventKind::StatementIntent {
            text: s.text,
            policy: s.policy,
            rule: s.rule,
            kinds: s.kinds,
            protocol: s.protocol,
        },
        Payload::AuthFailure(a) => EventKind::AuthFailure {
            client_addr: a.client_addr,
            user: a.user,
            target: a.target,
            reason: a.reason,
            claimed_issuer: a.claimed_issuer,
            protocol: a.protocol,
            tls: a.tls,
            node_id: node_id.to_owned(),
        },
    };
    Ok(StoredEvent {
        session_id: e.session_id,
        seq: e.seq,
        at: e.at_unix_us,
        kind,
    })
}

/// The highest sequence number per session in `events`, in first-seen order:
/// what to acknowledge once they are stored.
pub fn acks(events: &[StoredEvent]) -> Vec<v1::AuditAck> {
    let mut acks: Vec<v1::AuditAck> = Vec::new();
    for e in events {
        match acks.iter_mut().find(|a| a.session_id == e.session_id) {
            Some(a) => a.seq = a.seq.max(e.seq),
            None => acks.push(v1::AuditAck {
                session_id: e.session_id.clone(),
                seq: e.seq,
            }),
        }
    }
    acks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(session: &str, seq: u64) -> v1::AuditEvent {
        v1::AuditEvent {
            session_id: session.to_owned(),
            seq,
            at_unix_us: 1,
            payload: Some(Payload::SessionEnd(v1::SessionEnd::default())),
        }
    }

    #[test]
    fn bad_events_are_refused() {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(from_proto("n", event("x", 1)), Err(AuditError::SessionId));
        assert_eq!(from_proto("n", event(&id, 0)), Err(AuditError::Seq));
        let mut empty = event(&id, 1);
        empty.payload = None;
        assert_eq!(from_proto("n", empty), Err(AuditError::Empty));
    }

    #[test]
    fn acks_take_the_highest_seq_per_session() {
        let (a, b) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let events: Vec<_> = [(&a, 1), (&b, 4), (&a, 3), (&a, 2)]
            .into_iter()
            .map(|(s, q)| from_proto("n", event(s, q)).unwrap())
            .collect();
        let acks = acks(&events);
        assert_eq!(acks.len(), 2);
        assert_eq!((acks[0].session_id.as_str(), acks[0].seq), (a.as_str(), 3));
        assert_eq!((acks[1].session_id.as_str(), acks[1].seq), (b.as_str(), 4));
    }
}
