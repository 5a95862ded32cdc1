//! What one replica must tell the others (and its own node streams) at once.
//!
//! In a single process this is an in-process broadcast channel; with several
//! replicas the same events also travel through Redis.

use tokio::sync::broadcast;

/// An event every replica and every attached node stream may need to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Targets, policies or trust changed: rebuild and push snapshots.
    ConfigChanged,
    /// End a session wherever it is served.
    KillSession {
        /// The session.
        session_id: String,
        /// Why, shown to the client.
        reason: String,
    },
}

/// A broadcast bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<BusEvent>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// An in-process bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self { tx }
    }

    /// Announces `event` to every subscriber.
    pub fn publish(&self, event: BusEvent) {
        // No subscribers is fine: nobody needs to hear it.
        let _ = self.tx.send(event);
    }

    /// Starts listening.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}
