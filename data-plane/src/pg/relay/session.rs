//! What a session knows about itself: who, where, its audit sequence, and
//! how it decides statements.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_identity::Identity;
use sluice_policy::{Decision, DecisionCache, Delivery, Subject, Verdict};
use sluice_proto::v1;
use sluice_proto::v1::audit_event::Payload;

use super::tracker::Exec;
use crate::control::audit::{AuditFull, AuditSink, NotDurable};
use crate::control::snapshot::SnapshotCell;

/// Decisions a session remembers.
const DECISION_CACHE_SIZE: usize = 1024;

/// Message-size and timing limits for a session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest client message.
    pub max_client_message: usize,
    /// Largest server message.
    pub max_server_message: usize,
    /// Longest stall mid-message.
    pub stall: Duration,
    /// When the client's token expires: end at once, or after the statement
    /// in flight.
    pub on_expiry: OnExpiry,
    /// The longest a session ending "after the statement in flight" waits
    /// for that statement.
    pub drain_grace: Duration,
    /// The longest a strict statement waits for its record to be confirmed.
    pub strict_audit_wait: Duration,
}

/// What happens to a session when its access token expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// End the session at the moment of expiry, cutting off any statement.
    #[default]
    End,
    /// Let the statement in flight finish (up to the drain grace), then end.
    AfterStatement,
}

/// One session's identity, counters and audit trail.
#[derive(Debug)]
pub struct SessionCtx {
    /// Session id (UUIDv7).
    pub session_id: String,
    /// Who.
    pub identity: Identity,
    /// Which target.
    pub target: String,
    /// Limits.
    pub limits: Limits,
    sink: AuditSink,
    snapshot: Arc<SnapshotCell>,
    seq: AtomicU64,
    cache: Mutex<DecisionCache>,
    statements: AtomicU64,
    bytes_to_client: AtomicU64,
    bytes_from_client: AtomicU64,
}

impl SessionCtx {
    /// A new session.
    pub fn new(
        identity: Identity,
        target: String,
        limits: Limits,
        sink: AuditSink,
        snapshot: Arc<SnapshotCell>,
    ) -> Self {
        Self {
            session_id: uuid::Uuid::now_v7().to_string(),
            identity,
            target,
            limits,
            sink,
            snapshot,
            seq: AtomicU64::new(0),
            cache: Mutex::new(DecisionCache::new(DECISION_CACHE_SIZE)),
            statements: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            bytes_from_client: AtomicU64::new(0),
        }
    }

    /// Appends an event to the session's audit trail.
    pub fn emit(&self, payload: Payload) -> Result<(), AuditFull> {
        self.emit_seq(payload).map(|_| ())
    }

    /// Appends an event and returns its sequence number.
    fn emit_seq(&self, payload: Payload) -> Result<u64, AuditFull> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let event = v1::AuditEvent {
            session_id: self.session_id.clone(),
            seq,
            at_unix_us: sluice_common::unix_us(),
            payload: Some(payload),
        };
        self.sink.emit(event).map(|()| seq).inspect_err(|_| {
            // The sequence number is burnt: the control plane sees a gap,
            // which is what happened.
            metrics::counter!("sluice_audit_events_dropped_total").increment(1);
            tracing::error!(seq, "audit buffer full: event dropped");
        })
    }

    /// Records that a strict statement is about to be forwarded, and
    /// returns the event's sequence number to wait for with
    /// [`Self::durable`].
    pub fn intend(&self, exec: &Exec) -> Result<u64, AuditFull> {
        // Follow acks before emitting, so the one for this event is not missed.
        if self.sink.watch(&self.session_id).is_none() {
            return Err(AuditFull);
        }
        let d = &exec.decision;
        self.emit_seq(Payload::StatementIntent(v1::StatementIntent {
            text: exec.text.to_string(),
            policy: d.policy.clone().unwrap_or_default(),
            rule: d.rule.clone().unwrap_or_default(),
            kinds: d.kinds.clone(),
            protocol: exec.protocol.as_str().to_owned(),
        }))
    }

    /// Waits until the control plane has stored every event of this session
    /// up to `seq`, or the strict wait runs out.
    pub async fn durable(&self, seq: u64) -> Result<(), NotDurable> {
        let limit = self.limits.strict_audit_wait;
        let mut acks = self.sink.watch(&self.session_id).ok_or(NotDurable(limit))?;
        match tokio::time::timeout(limit, acks.wait_for(|a| *a >= seq)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NotDurable(limit)),
        }
    }

    /// Decides one statement text for this session. Checks that always
    /// depend on the moment (a stale snapshot, a full audit buffer) come
    /// first; the policy's answer for a given text is cached per version.
    pub fn decide(&self, text: &[u8]) -> Arc<Decision> {
        let Ok(text) = std::str::from_utf8(text) else {
            return Arc::new(refusal("the statement is not valid UTF-8"));
        };
        let snapshot = match self.snapshot.usable() {
            Ok(s) => s,
            Err(e) => return Arc::new(refusal(&e.to_string())),
        };
        if self.sink.is_full() {
            return Arc::new(refusal(&AuditFull.to_string()));
        }
        let policies = match &snapshot.policies {
            Ok(p) => p,
            Err(e) => return Arc::new(refusal(e)),
        };
        let subject = Subject {
            identity: &self.identity.name,
            groups: &self.identity.groups,
            target: &self.target,
        };
        let decision = match self.cache.lock() {
            Ok(mut cache) => {
                cache.get_or_insert(snapshot.version, text, || policies.decide(&subject, text))
            }
            Err(_) => Arc::new(policies.decide(&subject, text)),
        };
        if decision.verdict == Verdict::Allow
            && decision.delivery == Delivery::Strict
            && !self.sink.is_connected()
        {
            return Arc::new(Decision {
                kinds: decision.kinds.clone(),
                policy: decision.policy.clone(),
                ..refusal(STRICT_UNREACHABLE)
            });
        }
        decision
    }

    /// Records a finished (or refused) statement.
    pub fn record(&self, exec: &Exec) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let d = &exec.decision;
        metrics::counter!("sluice_statements_total", "decision" => d.verdict.as_str()).increment(1);
        let duration_us = if d.verdict == Verdict::Allow {
            u64::try_from(exec.started.elapsed().as_micros()).unwrap_or(u64::MAX)
        } else {
            0
        };
        let command_tag = if exec.skipped {
            "(not executed: an earlier message failed)".to_owned()
        } else {
            exec.command_tag.clone()
        };
        let _ = self.emit(Payload::Statement(v1::Statement {
            text: exec.text.to_string(),
            decision: d.verdict.as_str().to_owned(),
            rule: d.rule.clone().unwrap_or_default(),
            reason: d.reason.clone(),
            kinds: d.kinds.clone(),
            protocol: exec.protocol.as_str().to_owned(),
            duration_us,
            rows: exec.rows,
            sqlstate: exec.sqlstate.clone(),
            command_tag,
            approval_id: String::new(),
            policy: d.policy.clone().unwrap_or_default(),
            policy_version: String::new(),
            masked: exec
                .mask
                .as_ref()
                .map(|m| m.counts.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
            sample: exec.sample.as_ref().and_then(|s| s.to_proto()),
        }));
    }

    /// Counts bytes received from the client.
    pub fn add_from_client(&self, n: usize) {
        self.bytes_from_client
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes sent to the client.
    pub fn add_to_client(&self, n: usize) {
        self.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The end-of-session event.
    pub fn end_event(&self, reason: &str) -> Payload {
        Payload::SessionEnd(v1::SessionEnd {
            reason: reason.to_owned(),
            statements: self.statements.load(Ordering::Relaxed),
            bytes_to_client: self.bytes_to_client.load(Ordering::Relaxed),
            bytes_from_client: self.bytes_from_client.load(Ordering::Relaxed),
        })
    }
}

/// Why a strict statement is refused while the control plane is out of reach.
const STRICT_UNREACHABLE: &str = "policy requires this statement's audit record to be stored before it runs (strict delivery), and the control plane is unreachable; nothing was run";

impl Drop for SessionCtx {
    fn drop(&mut self) {
        self.sink.forget(&self.session_id);
    }
}

fn refusal(reason: &str) -> Decision {
    Decision::deny(reason)
}
