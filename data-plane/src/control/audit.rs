//! Audit events on their way to the control plane: a bounded queue fed by
//! sessions, and the list of events sent but not yet acknowledged.

use std::collections::{HashMap, VecDeque};

use sluice_proto::v1;
use tokio::sync::mpsc;

/// Where sessions put their audit events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<v1::AuditEvent>,
}

/// The audit buffer is full: the statement must not run unrecorded.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error(
    "the gateway's audit buffer is full (the control plane is not keeping up or is unreachable)"
)]
pub struct AuditFull;

impl AuditSink {
    /// A sink and the receiver the control link drains.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<v1::AuditEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Whether the queue has no room left: new statements must be refused.
    pub fn is_full(&self) -> bool {
        self.tx.capacity() == 0
    }

    /// Queues an event without waiting.
    pub fn emit(&self, event: v1::AuditEvent) -> Result<(), AuditFull> {
        self.tx.try_send(event).map_err(|_| AuditFull)
    }
}

/// Events sent to the control plane and not yet acknowledged, oldest first.
/// They are resent on every new stream; the control plane ignores duplicates.
#[derive(Debug)]
pub struct Pending {
    events: VecDeque<v1::AuditEvent>,
    acked: HashMap<String, u64>,
    capacity: usize,
}

impl Pending {
    /// Holds at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            acked: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether another event fits.
    pub fn has_room(&self) -> bool {
        self.events.len() < self.capacity
    }

    /// Remembers an event until it is acknowledged.
    pub fn push(&mut self, event: v1::AuditEvent) {
        self.events.push_back(event);
    }

    /// Number of unacknowledged events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether everything is acknowledged.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Everything unacknowledged, in order, for resending.
    pub fn iter(&self) -> impl Iterator<Item = &v1::AuditEvent> {
        self.events.iter().filter(|e| !self.covered(e))
    }

    fn covered(&self, e: &v1::AuditEvent) -> bool {
        self.acked.get(&e.session_id).is_some_and(|&a| e.seq <= a)
    }

    /// Applies a cumulative acknowledgement. Covered events leave the queue
    /// once they reach its front (amortised O(1)); until then they count
    /// towards the capacity but are not resent.
    pub fn ack(&mut self, session_id: &str, seq: u64) {
        let entry = self.acked.entry(session_id.to_owned()).or_insert(0);
        *entry = (*entry).max(seq);
        while let Some(front) = self.events.front() {
            if !self.covered(front) {
                break;
            }
            let ended = matches!(front.payload, Some(v1::audit_event::Payload::SessionEnd(_)));
            if let Some(done) = self.events.pop_front()
                && ended
            {
                self.acked.remove(&done.session_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(session: &str, seq: u64) -> v1::AuditEvent {
        v1::AuditEvent {
            session_id: session.to_owned(),
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn acks_drop_only_what_they_cover() {
        let mut p = Pending::new(10);
        for (s, q) in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)] {
            p.push(ev(s, q));
        }
        p.ack("a", 2);
        let left: Vec<_> = p.iter().map(|e| (e.session_id.as_str(), e.seq)).collect();
        assert_eq!(left, [("b", 1), ("a", 3), ("b", 2)]);
        assert_eq!(p.len(), 4, "the acked a/2 waits behind b/1");
        p.ack("b", 2);
        p.ack("a", 3);
        assert!(p.is_empty());
    }

    #[test]
    fn capacity_is_enforced_by_the_caller() {
        let mut p = Pending::new(2);
        p.push(ev("a", 1));
        assert!(p.has_room());
        p.push(ev("a", 2));
        assert!(!p.has_room());
    }

    #[test]
    fn a_full_sink_refuses_instead_of_waiting() {
        let (sink, _rx) = AuditSink::channel(1);
        assert!(sink.emit(ev("a", 1)).is_ok());
        assert_eq!(sink.emit(ev("a", 2)), Err(AuditFull));
    }
}
