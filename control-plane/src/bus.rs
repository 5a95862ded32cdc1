//! What one replica must tell the others (and its own node streams) at once.
//!
//! Every event goes to an in-process broadcast channel. With a Redis URL
//! configured, events are also published on a Redis channel, and events other
//! replicas publish there are re-broadcast locally, so a change made through
//! any replica reaches every node at once. If Redis is unreachable, replicas
//! still converge: each polls the store's configuration revision.

use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sluice_common::Shutdown;
use sluice_common::backoff::Backoff;
use tokio::sync::{broadcast, mpsc};

/// The Redis channel replicas share.
pub const CHANNEL: &str = "sluice:bus:v1";

/// An event every replica and every attached node stream may need to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BusEvent {
    /// Targets, policies or trust changed: rebuild and push snapshots.
    ConfigChanged,
    /// An approval request reached a final state: the node holding its
    /// statement (attached to any replica) must hear it at once.
    ApprovalDecided {
        /// The request.
        approval_id: String,
        /// The node that asked.
        node_id: String,
        /// The node's id for the request.
        request_id: String,
        /// approved | denied | expired | cancelled
        state: String,
        /// Who decided.
        decided_by: String,
        /// Why.
        reason: String,
    },
    /// End a session wherever it is served.
    KillSession {
        /// The session.
        session_id: String,
        /// Why, shown to the client.
        reason: String,
    },
}

/// An event on the wire, tagged with the replica that sent it so a replica
/// ignores its own echoes.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    #[serde(flatten)]
    event: BusEvent,
}

/// A broadcast bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<BusEvent>,
    remote: Option<mpsc::Sender<BusEvent>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// An in-process bus (a single replica, or `sluice dev`).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self { tx, remote: None }
    }

    /// A bus shared with other replicas through Redis at `url`.
    pub fn with_redis(url: &str, shutdown: Shutdown) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (tx, _) = broadcast::channel(1024);
        let (out_tx, out_rx) = mpsc::channel(1024);
        let origin = uuid::Uuid::new_v4().to_string();
        tokio::spawn(publish_loop(
            client.clone(),
            origin.clone(),
            out_rx,
            shutdown.clone(),
        ));
        tokio::spawn(subscribe_loop(client, origin, tx.clone(), shutdown));
        Ok(Self {
            tx,
            remote: Some(out_tx),
        })
    }

    /// Announces `event` here and, with Redis, to every other replica.
    pub fn publish(&self, event: BusEvent) {
        if let Some(remote) = &self.remote
            && remote.try_send(event.clone()).is_err()
        {
            tracing::warn!(
                "bus: Redis publisher is behind; other replicas will catch up by polling"
            );
        }
        // No local subscribers is fine: nobody needs to hear it.
        let _ = self.tx.send(event);
    }

    /// Starts listening.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

async fn publish_loop(
    client: redis::Client,
    origin: String,
    mut rx: mpsc::Receiver<BusEvent>,
    shutdown: Shutdown,
) {
    let mut conn = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let payload = match serde_json::to_string(&Envelope {
            origin: origin.clone(),
            event,
        }) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "bus: cannot encode event");
                continue;
            }
        };
        // One attempt to (re)connect per event; a lost event is recovered by polling.
        if conn.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => {
                    conn = Some(c);
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bus: cannot reach Redis");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            let sent: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(&payload)
                .query_async(c)
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "bus: publish to Redis failed");
                conn = None;
            }
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    origin: String,
    tx: broadcast::Sender<BusEvent>,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(CHANNEL).await {
                    tracing::warn!(error = %e, "bus: cannot subscribe");
                } else {
                    tracing::info!("bus: subscribed to Redis");
                    backoff.reset();
                    // Anything published while we were away: catch up.
                    let _ = tx.send(BusEvent::ConfigChanged);
                    let mut messages = pubsub.on_message();
                    loop {
                        let msg = tokio::select! {
                            () = shutdown.cancelled() => return,
                            m = messages.next() => m,
                        };
                        let Some(msg) = msg else { break };
                        match serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) {
                            Ok(env) if env.origin != origin => {
                                let _ = tx.send(env.event);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "bus: ignoring a malformed message")
                            }
                        }
                    }
                    tracing::warn!("bus: Redis subscription lost");
                }
            }
            Err(e) => tracing::warn!(error = %e, "bus: cannot reach Redis"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let env = Envelope {
            origin: "a".into(),
            event: BusEvent::KillSession {
                session_id: "s".into(),
                reason: "r".into(),
            },
        };
        let json = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back.event, env.event);
        assert_eq!(back.origin, "a");
    }

    #[tokio::test]
    async fn local_subscribers_hear_events() {
        let bus = Bus::new();
        let mut rx = bus.subscribe();
        bus.publish(BusEvent::ConfigChanged);
        assert_eq!(rx.recv().await.unwrap(), BusEvent::ConfigChanged);
    }

    #[tokio::test]
    async fn events_cross_replicas_through_redis() {
        let url =
            std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let shutdown = Shutdown::new();
        let a = Bus::with_redis(&url, shutdown.clone()).unwrap();
        let b = Bus::with_redis(&url, shutdown.clone()).unwrap();
        let mut on_b = b.subscribe();
        let kill = BusEvent::KillSession {
            session_id: uuid::Uuid::new_v4().to_string(),
            reason: "test".into(),
        };
        // Subscriptions start asynchronously: publish until B hears it.
        let heard = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                a.publish(kill.clone());
                let wait = tokio::time::sleep(Duration::from_millis(200));
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        ev = on_b.recv() => if ev.as_ref().ok() == Some(&kill) { return; },
                    }
                }
            }
        })
        .await;
        shutdown.cancel();
        assert!(heard.is_ok(), "replica B never heard replica A's event");
    }
}
