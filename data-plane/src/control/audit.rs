//! Audit events on their way to the control plane: a bounded queue fed by
//! sessions, and the list of events sent but not yet acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::v1;
use tokio::sync::{mpsc, watch};

/// Where sessions put their audit events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<v1::AuditEvent>,
    durability: Arc<Durability>,
}

/// What the control plane has durably stored, for sessions that must wait
/// for it (strict delivery): whether the link is up, and per watched session
/// the highest acknowledged sequence number.
#[derive(Debug, Default)]
pub struct Durability {
    connected: AtomicBool,
    acked: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// A strict statement's record was not acknowledged in time.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("the control plane did not confirm the statement's audit record within {0:?}")]
pub struct NotDurable(pub Duration);

impl Durability {
    /// Whether events can reach the control plane now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Called by the link as its stream comes up or goes down.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// Applies a cumulative acknowledgement to a watched session.
    pub fn acked(&self, session_id: &str, seq: u64) {
        if let Ok(map) = self.acked.lock()
            && let Some(tx) = map.get(session_id)
        {
            tx.send_if_modified(|a| {
                let newer = seq > *a;
                *a = (*a).max(seq);
                newer
            });
        }
    }

    fn watch(&self, session_id: &str) -> Option<watch::Receiver<u64>> {
        let mut map = self.acked.lock().ok()?;
        let tx = map
            .entry(session_id.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        Some(tx.subscribe())
    }

    fn forget(&self, session_id: &str) {
        if let Ok(mut map) = self.acked.lock() {
            map.remove(session_id);
        }
    }
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
        let durability = Arc::default();
        (Self { tx, durability }, rx)
    }

    /// The acknowledgement state the control link keeps current.
    pub fn durability(&self) -> Arc<Durability> {
        self.durability.clone()
    }

    /// Whether events can reach the control plane now.
    pub fn is_connected(&self) -> bool {
        self.durability.is_connected()
    }

    /// Starts following acknowledgements of `session_id`; must be called
    /// before the event to wait for is emitted, so no ack is missed.
    pub fn watch(&self, session_id: &str) -> Option<watch::Receiver<u64>> {
        self.durability.watch(session_id)
    }

    /// Stops following a session that ended.
    pub fn forget(&self, session_id: &str) {
        self.durability.forget(session_id);
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

    #[tokio::test]
    async fn a_waiter_wakes_only_for_an_ack_that_covers_its_event() {
        let (sink, _rx) = AuditSink::channel(8);
        let d = sink.durability();
        let mut w = sink.watch("s").unwrap();
        d.acked("other", 9);
        d.acked("s", 2);
        assert_eq!(*w.borrow_and_update(), 2);
        let waiting = tokio::spawn(async move { w.wait_for(|a| *a >= 4).await.map(|a| *a) });
        d.acked("s", 3);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        d.acked("s", 5);
        assert_eq!(waiting.await.unwrap().unwrap(), 5);
        // Acks never move backwards.
        let w = sink.watch("s").unwrap();
        d.acked("s", 1);
        assert_eq!(*w.borrow(), 5);
        sink.forget("s");
        let w = sink.watch("s").unwrap();
        assert_eq!(*w.borrow(), 0);
    }

    #[test]
    fn a_full_sink_refuses_instead_of_waiting() {
        let (sink, _rx) = AuditSink::channel(1);
        assert!(sink.emit(ev("a", 1)).is_ok());
        assert_eq!(sink.emit(ev("a", 2)), Err(AuditFull));
    }
}
