//! The gRPC service nodes attach to.

use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt as _, Stream};
use sluice_proto::v1;
use sluice_proto::v1::control_message::Kind as Out;
use sluice_proto::v1::node_message::Kind as In;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::ControlPlane;
use crate::audit;
use crate::bus::{Bus, BusEvent};
use crate::store::{JoinToken, Store};
use crate::targets::TargetError;

/// Serves `sluice.v1.NodeService`.
#[derive(Clone)]
pub struct NodeService {
    cp: ControlPlane,
    store: Store,
    bus: Bus,
    snapshots: watch::Receiver<Arc<v1::Snapshot>>,
    heartbeat_ms: u64,
    shutdown: sluice_common::Shutdown,
}

impl NodeService {
    /// A service over `store`, pushing what `snapshots` holds.
    pub fn new(
        cp: ControlPlane,
        store: Store,
        bus: Bus,
        snapshots: watch::Receiver<Arc<v1::Snapshot>>,
        heartbeat: std::time::Duration,
        shutdown: sluice_common::Shutdown,
    ) -> Self {
        Self {
            cp,
            store,
            bus,
            snapshots,
            heartbeat_ms: u64::try_from(heartbeat.as_millis()).unwrap_or(5000),
            shutdown,
        }
    }

    async fn authenticate<T>(&self, req: &Request<T>) -> Result<JoinToken, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing join token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be a Bearer join token"))?;
        match self.store.check_join_token(token).await {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(Status::unauthenticated("unknown or revoked join token")),
            Err(e) => {
                tracing::error!(error = %e, "join token check failed");
                Err(Status::unavailable("control plane store unavailable"))
            }
        }
    }
}

/// The most events stored in one transaction.
const MAX_COALESCED: usize = 8192;

/// The most waiting approval requests looked up when a node attaches.
const MAX_RESYNC: usize = 4096;

type OutStream = Pin<Box<dyn Stream<Item = Result<v1::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::node_service_server::NodeService for NodeService {
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let join = self.authenticate(&req).await?;
        let r = req.into_inner();
        if r.node_name.is_empty() || r.node_name.len() > 200 {
            return Err(Status::invalid_argument(
                "node_name must be 1 to 200 characters",
            ));
        }
        let node = self
            .store
            .register_node(&r.node_name, &r.version, &r.listen_addrs, &join.id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "node registration failed");
                Status::unavailable("control plane store unavailable")
            })?;
        tracing::info!(node_id = %node.id, node = %node.name, "node registered");
        Ok(Response::new(v1::RegisterResponse {
            node_id: node.id,
            heartbeat_interval_ms: self.heartbeat_ms,
        }))
    }

    async fn fetch_credential(
        &self,
        req: Request<v1::CredentialRequest>,
    ) -> Result<Response<v1::Credential>, Status> {
        let join = self.authenticate(&req).await?;
        let r = req.into_inner();
        // The node checked the token; check it again here, so that a join
        // token alone (a node's only secret) opens no credential.
        let identity = self
            .cp
            .trust()
            .verify(&r.access_token)
            .await
            .map_err(|e| Status::permission_denied(format!("access token: {e}")))?
            .identity;
        if self.cp.is_token_revoked(&identity.token_id) {
            return Err(Status::permission_denied("access token: revoked"));
        }
        match self.cp.open_credential(&r.target, &identity).await {
            Ok((username, password)) => {
                tracing::info!(target_name = %r.target, session_id = %r.session_id, identity = %identity.name, join_token = %join.id, upstream_user = %username, "credential handed to a node");
                Ok(Response::new(v1::Credential { username, password }))
            }
            Err(TargetError::NotFound(t)) => Err(Status::not_found(format!("no target {t:?}"))),
            Err(TargetError::NotHeld(t)) => Err(Status::failed_precondition(format!(
                "target {t:?} uses a node-local credential"
            ))),
            Err(e) => {
                tracing::error!(error = %e, target_name = %r.target, "cannot open a target credential");
                Err(Status::unavailable("the credential cannot be opened"))
            }
        }
    }

    type AttachStream = OutStream;

    async fn attach(
        &self,
        req: Request<Streaming<v1::NodeMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        self.authenticate(&req).await?;
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await? {
            Some(v1::NodeMessage {
                kind: Some(In::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let node = self
            .store
            .get_node(&hello.node_id)
            .await
            .map_err(|_| Status::unavailable("control plane store unavailable"))?
            .ok_or_else(|| Status::not_found("unknown node id: register first"))?;
        let (tx, rx) = mpsc::channel(256);
        let session = AttachedNode {
            svc: self.clone(),
            node_id: node.id.clone(),
            sent_version: hello.snapshot_version,
            waiting: hello.waiting_approvals,
            tx,
        };
        let span = tracing::info_span!("node_stream", node_id = %node.id, node = %node.name);
        tokio::spawn(session.run(inbound).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as OutStream))
    }
}

/// One attached node: relays snapshots and bus events down, stores what comes up.
struct AttachedNode {
    svc: NodeService,
    node_id: String,
    sent_version: u64,
    /// The approval requests the node said its sessions wait on.
    waiting: Vec<String>,
    tx: mpsc::Sender<Result<v1::ControlMessage, Status>>,
}

impl AttachedNode {
    async fn run(mut self, mut inbound: Streaming<v1::NodeMessage>) {
        tracing::info!("node attached");
        let mut snapshots = self.svc.snapshots.clone();
        let mut bus = self.svc.bus.subscribe();
        snapshots.mark_changed();
        let result: Result<(), Status> = async {
            // Subscribed first: a decision taken meanwhile arrives on the bus
            // too (twice at worst, which the node ignores).
            self.resync_approvals().await?;
            loop {
                tokio::select! {
                    () = self.svc.shutdown.cancelled() => return Err(Status::unavailable("control plane shutting down")),
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            return Err(Status::unavailable("control plane shutting down"));
                        }
                        let snap = snapshots.borrow_and_update().clone();
                        if snap.version != self.sent_version {
                            self.sent_version = snap.version;
                            self.send(Out::Snapshot((*snap).clone())).await?;
                        }
                    }
                    ev = bus.recv() => {
                        match ev {
                            Ok(BusEvent::KillSession { session_id, reason }) => {
                                self.send(Out::KillSession(v1::KillSession { session_id, reason })).await?;
                            }
                            Ok(BusEvent::ApprovalDecided { approval_id, node_id, request_id, state, decided_by, reason }) if node_id == self.node_id => {
                                let url = self.svc.cp.approval_url(&approval_id);
                                self.send(Out::ApprovalDecision(v1::ApprovalDecision { request_id, approval_id, state, decided_by, reason, url })).await?;
                            }
                            _ => {}
                        }
                    }
                    msg = inbound.message() => match msg? {
                        Some(v1::NodeMessage { kind: Some(In::Audit(batch)) }) => {
                            if !self.ingest_coalesced(batch.events, &mut inbound).await? {
                                return Ok(());
                            }
                        }
                        Some(m) => self.handle(m).await?,
                        None => return Ok(()),
                    },
                }
            }
        }
        .await;
        match result {
            Ok(()) => tracing::info!("node detached"),
            Err(s) => tracing::warn!(status = %s.message(), "node stream ended"),
        }
    }

    /// Sends the node every decision it missed while cut off, for the
    /// requests it said it waits on.
    async fn resync_approvals(&mut self) -> Result<(), Status> {
        let waiting = std::mem::take(&mut self.waiting);
        for request_id in waiting.iter().take(MAX_RESYNC) {
            match self.svc.cp.missed_decision(&self.node_id, request_id).await {
                Ok(Some(d)) => {
                    tracing::info!(approval_id = %d.approval_id, state = %d.state, "approval decision resent on attach");
                    self.send(Out::ApprovalDecision(d)).await?;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, request_id = %request_id, "cannot read a waiting approval on attach");
                }
            }
        }
        Ok(())
    }

    async fn send(&self, kind: Out) -> Result<(), Status> {
        self.tx
            .send(Ok(v1::ControlMessage { kind: Some(kind) }))
            .await
            .map_err(|_| Status::cancelled("node went away"))
    }

    async fn handle(&mut self, msg: v1::NodeMessage) -> Result<(), Status> {
        match msg.kind {
            Some(In::Heartbeat(_)) => {
                if let Err(e) = self.svc.store.touch_node(&self.node_id).await {
                    tracing::warn!(error = %e, "cannot record heartbeat");
                }
                self.send(Out::HeartbeatAck(v1::HeartbeatAck {
                    received_at_unix_ms: sluice_common::unix_ms(),
                }))
                .await
            }
            Some(In::Audit(batch)) => self.ingest(batch.events).await,
            Some(In::ApprovalRequest(r)) => {
                // Answered off the stream's loop, so a slow store does not
                // hold up audit acknowledgements; the node matches answers
                // by request id.
                let cp = self.svc.cp.clone();
                let node_id = self.node_id.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let d = cp.on_approval_request(&node_id, r).await;
                    let _ = tx
                        .send(Ok(v1::ControlMessage {
                            kind: Some(Out::ApprovalDecision(d)),
                        }))
                        .await;
                });
                Ok(())
            }
            Some(In::ApprovalCancel(c)) => {
                if let Err(e) = self
                    .svc
                    .cp
                    .cancel_approval(&self.node_id, &c.request_id, &c.reason)
                    .await
                {
                    tracing::info!(error = %e, request_id = %c.request_id, "approval cancel not applied");
                }
                Ok(())
            }
            Some(In::Hello(_)) => Err(Status::invalid_argument("Hello may only be sent once")),
            None => Err(Status::invalid_argument("empty message")),
        }
    }

    /// Stores `events` together with every audit batch already waiting on the
    /// stream, in one transaction, then handles whatever else was waiting.
    /// Returns `false` once the node has closed the stream.
    async fn ingest_coalesced(
        &mut self,
        mut events: Vec<v1::AuditEvent>,
        inbound: &mut Streaming<v1::NodeMessage>,
    ) -> Result<bool, Status> {
        let mut later = None;
        let mut open = true;
        while events.len() < MAX_COALESCED {
            match inbound.message().now_or_never() {
                Some(Ok(Some(v1::NodeMessage {
                    kind: Some(In::Audit(b)),
                }))) => events.extend(b.events),
                Some(Ok(Some(other))) => {
                    later = Some(other);
                    break;
                }
                Some(Ok(None)) => {
                    open = false;
                    break;
                }
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        self.ingest(events).await?;
        if let Some(m) = later {
            self.handle(m).await?;
        }
        Ok(open)
    }

    async fn ingest(&mut self, events: Vec<v1::AuditEvent>) -> Result<(), Status> {
        let events = events
            .into_iter()
            .map(|e| audit::from_proto(&self.node_id, e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Err(e) = self.svc.store.append_events(&events).await {
            // Not acknowledged: the node keeps the events and resends them
            // on its next stream.
            tracing::error!(error = %e, events = events.len(), "cannot store audit events");
            return Err(Status::unavailable("control plane store unavailable"));
        }
        metrics::counter!("sluice_cp_audit_events_stored_total").increment(events.len() as u64);
        for ack in audit::acks(&events) {
            self.send(Out::AuditAck(ack)).await?;
        }
        Ok(())
    }
}
