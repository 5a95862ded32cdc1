//! The node's side of approvals: sessions ask the control plane about a
//! statement that needs approval and wait for its answer, which arrives on
//! the control link's stream and is routed back here by request id. While
//! the link is down, asking fails at once: a statement that needs approval
//! never runs without the control plane's word.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use sluice_proto::v1;
use sluice_proto::v1::node_message::Kind as Out;
use tokio::sync::mpsc;

use crate::pg::codec::frontend::BoundParam;

/// Messages waiting for the link to send them.
const OUTBOX: usize = 1024;

/// Why the control plane could not be asked, or did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// No stream to the control plane right now.
    #[error("the approval service is unreachable")]
    Disconnected,
    /// Too many requests are queued.
    #[error("the approval service is busy")]
    Busy,
    /// No answer in time.
    #[error("the approval service did not answer in time")]
    Timeout,
}

/// The routing table between sessions and the control link.
#[derive(Debug)]
pub struct Approvals {
    outbox: mpsc::Sender<v1::NodeMessage>,
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<v1::ApprovalDecision>>>,
    connected: AtomicBool,
}

impl Approvals {
    /// A table, and the receiving end of its outbox for the control link.
    pub fn new() -> (Self, mpsc::Receiver<v1::NodeMessage>) {
        let (outbox, rx) = mpsc::channel(OUTBOX);
        (
            Self {
                outbox,
                waiting: Mutex::new(HashMap::new()),
                connected: AtomicBool::new(false),
            },
            rx,
        )
    }

    /// The link says whether it has a stream.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }

    /// Sends `req` and returns a ticket that receives the control plane's
    /// answers for it.
    pub fn ask(&self, req: v1::ApprovalRequest) -> Result<Ticket<'_>, Unavailable> {
        if !self.connected.load(Ordering::Acquire) {
            return Err(Unavailable::Disconnected);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let request_id = req.request_id.clone();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(request_id.clone(), tx);
        }
        let ticket = Ticket {
            owner: self,
            request_id,
            rx,
            withdraw_on_drop: false,
        };
        self.outbox
            .try_send(v1::NodeMessage {
                kind: Some(Out::ApprovalRequest(req)),
            })
            .map_err(|_| Unavailable::Busy)?;
        Ok(ticket)
    }

    /// The requests sessions still wait on, for the control plane to
    /// resend any decision taken while the link was down.
    pub fn waiting(&self) -> Vec<String> {
        self.waiting
            .lock()
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Withdraws a request the session no longer waits for.
    pub fn cancel(&self, request_id: &str, reason: &str) {
        let _ = self.outbox.try_send(v1::NodeMessage {
            kind: Some(Out::ApprovalCancel(v1::ApprovalCancel {
                request_id: request_id.to_owned(),
                reason: reason.to_owned(),
            })),
        });
    }

    /// Routes a decision from the control plane to the session waiting for
    /// it. Returns `false` if nobody waits.
    pub fn deliver(&self, d: v1::ApprovalDecision) -> bool {
        let Ok(w) = self.waiting.lock() else {
            return false;
        };
        match w.get(&d.request_id) {
            Some(tx) => tx.send(d).is_ok(),
            None => false,
        }
    }
}

/// One session's open question to the control plane. Dropping it stops
/// routing answers to it.
#[derive(Debug)]
pub struct Ticket<'a> {
    owner: &'a Approvals,
    request_id: String,
    rx: mpsc::UnboundedReceiver<v1::ApprovalDecision>,
    withdraw_on_drop: bool,
}

impl Ticket<'_> {
    /// While set, dropping the ticket withdraws the request: a held
    /// statement whose session ends (killed, shut down) leaves no pending
    /// request behind.
    pub fn withdraw_on_drop(&mut self, on: bool) {
        self.withdraw_on_drop = on;
    }

    /// The next answer, or `Timeout` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<v1::ApprovalDecision, Unavailable> {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(d)) => Ok(d),
            Ok(None) | Err(_) => Err(Unavailable::Timeout),
        }
    }

    /// The next answer, with no time limit (held statements wait for a
    /// human); `None` if the routing table went away.
    pub async fn wait(&mut self) -> Option<v1::ApprovalDecision> {
        self.rx.recv().await
    }

    /// The node's id for this request.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.owner.waiting.lock() {
            w.remove(&self.request_id);
        }
        if self.withdraw_on_drop {
            self.owner.cancel(
                &self.request_id,
                "the session ended while the statement was held",
            );
        }
    }
}

/// What an approval is bound to: SHA-256 (version 2) over the exact
/// statement bytes, the parameter type OIDs the client declared in Parse
/// (0 for "let the server infer"), and each bound parameter's format code
/// and value (`None` for NULL). A simple-protocol Query has no types and no
/// parameters. Lengths and counts prefix every part, so no two different
/// bindings share an encoding; the version prefix keeps a request hashed by
/// an older node (version 1: text and values only) from ever matching one
/// hashed here. The control plane treats the hash as opaque: an approval
/// lets run only a statement whose binding hashes to the same value.
pub fn statement_hash(
    statement: &[u8],
    param_types: &[u32],
    params: &[BoundParam<'_>],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sluice.approval.statement.v2\0");
    h.update((statement.len() as u64).to_be_bytes());
    h.update(statement);
    h.update((param_types.len() as u64).to_be_bytes());
    for oid in param_types {
        h.update(oid.to_be_bytes());
    }
    h.update((params.len() as u64).to_be_bytes());
    for (format, value) in params {
        h.update(format.to_be_bytes());
        match value {
            None => h.update([0u8]),
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_bind_bytes_types_and_parameters() {
        let q = b"UPDATE t SET x = 1 WHERE id = 2";
        let a = statement_hash(q, &[], &[]);
        assert_eq!(a, statement_hash(q, &[], &[]));
        assert_ne!(
            a,
            statement_hash(b"UPDATE t SET x = 1 WHERE id = 3", &[], &[])
        );
        assert_ne!(
            a,
            statement_hash(b"UPDATE t SET x = 1 WHERE id = 2 ", &[], &[])
        );
        let p1 = statement_hash(b"q", &[], &[(0, Some(b"ab")), (0, Some(b"c"))]);
        let p2 = statement_hash(b"q", &[], &[(0, Some(b"a")), (0, Some(b"bc"))]);
        let p3 = statement_hash(b"q", &[], &[(0, None), (0, Some(b"c"))]);
        assert_ne!(p1, p2);
        assert_ne!(p1, p3);
        // The same value bytes read as another type, or in another format,
        // are another statement.
        let one = [(0, Some(&b"1"[..]))];
        let untyped = statement_hash(b"q $1", &[0], &one);
        assert_ne!(untyped, statement_hash(b"q $1", &[23], &one));
        assert_ne!(untyped, statement_hash(b"q $1", &[], &one));
        assert_ne!(untyped, statement_hash(b"q $1", &[0], &[(1, Some(b"1"))]));
        // Parts never run into each other: a type count is not a value.
        assert_ne!(
            statement_hash(b"q", &[0], &[]),
            statement_hash(b"q", &[], &[(0, None)])
        );
    }

    #[tokio::test]
    async fn answers_reach_the_asker_and_a_disconnected_link_refuses() {
        let (a, mut outbox) = Approvals::new();
        let req = v1::ApprovalRequest {
            request_id: "r1".into(),
            ..Default::default()
        };
        assert_eq!(a.ask(req.clone()).err(), Some(Unavailable::Disconnected));
        a.set_connected(true);
        let mut t = a.ask(req).unwrap();
        assert!(matches!(
            outbox.recv().await.and_then(|m| m.kind),
            Some(Out::ApprovalRequest(_))
        ));
        assert_eq!(a.waiting(), vec!["r1".to_owned()]);
        assert!(!a.deliver(v1::ApprovalDecision {
            request_id: "other".into(),
            ..Default::default()
        }));
        assert!(a.deliver(v1::ApprovalDecision {
            request_id: "r1".into(),
            state: "pending".into(),
            ..Default::default()
        }));
        assert_eq!(
            t.next(Duration::from_secs(5)).await.unwrap().state,
            "pending"
        );
        drop(t);
        assert!(!a.deliver(v1::ApprovalDecision {
            request_id: "r1".into(),
            ..Default::default()
        }));
        assert!(
            outbox.try_recv().is_err(),
            "an answered ticket withdraws nothing"
        );

        // A held request whose session ends is withdrawn.
        let mut t = a
            .ask(v1::ApprovalRequest {
                request_id: "r2".into(),
                ..Default::default()
            })
            .unwrap();
        let _ = outbox.recv().await;
        t.withdraw_on_drop(true);
        drop(t);
        match outbox.recv().await.and_then(|m| m.kind) {
            Some(Out::ApprovalCancel(c)) => assert_eq!(c.request_id, "r2"),
            other => panic!("expected a cancel, got {other:?}"),
        }
    }
}
