//! The node's one long-lived stream to the control plane: register, attach,
//! receive snapshots and acknowledgements, send heartbeats and audit events;
//! reconnect with backoff when anything breaks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_common::Shutdown;
use sluice_common::backoff::Backoff;
use sluice_proto::v1;
use sluice_proto::v1::control_message::Kind as In;
use sluice_proto::v1::node_message::Kind as Out;
use sluice_proto::v1::node_service_client::NodeServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::approvals::Approvals;
use super::audit::{Durability, Pending};
use super::snapshot::{NodeSnapshot, SnapshotCell};
use crate::config::DataPlaneConfig;
use crate::sessions::Sessions;

/// Why one attachment ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Could not connect.
    #[error("connect: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The control plane refused or failed a call.
    #[error("control plane: {0}")]
    Status(#[from] tonic::Status),
    /// The join token is not valid metadata.
    #[error("the join token contains characters not allowed in a header")]
    Token,
    /// The stream went quiet or closed.
    #[error("{0}")]
    Lost(&'static str),
    /// A CA file could not be read.
    #[error("control plane CA: {0}")]
    Ca(std::io::Error),
}

/// Events per audit batch at most.
const MAX_BATCH: usize = 1024;

/// How long a batch waits for more events once it has one.
const BATCH_LINGER: Duration = Duration::from_millis(2);

/// How to reach the control plane: its URL, TLS trust and keepalives.
pub(crate) fn endpoint(config: &DataPlaneConfig) -> Result<Endpoint, LinkError> {
    let mut endpoint = Endpoint::from_shared(config.control_plane_url.clone())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10));
    if config.control_plane_url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &config.control_plane_ca {
            let pem = std::fs::read(ca).map_err(LinkError::Ca)?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint)
}

/// Drives the link until shutdown.
pub struct ControlLink {
    config: Arc<DataPlaneConfig>,
    snapshot: Arc<SnapshotCell>,
    sessions: Arc<Sessions>,
    audit_rx: mpsc::Receiver<v1::AuditEvent>,
    durability: Arc<Durability>,
    pending: Pending,
    node_id: Option<String>,
    heartbeat: Duration,
    shutdown: Shutdown,
    approvals: Arc<Approvals>,
    approval_rx: mpsc::Receiver<v1::NodeMessage>,
}

impl ControlLink {
    /// A link that drains `audit_rx` and keeps `snapshot` current.
    pub fn new(
        config: Arc<DataPlaneConfig>,
        snapshot: Arc<SnapshotCell>,
        sessions: Arc<Sessions>,
        audit_rx: mpsc::Receiver<v1::AuditEvent>,
        durability: Arc<Durability>,
        shutdown: Shutdown,
    ) -> Self {
        let pending = Pending::new(config.audit_buffer_events);
        let (approvals, approval_rx) = Approvals::new();
        Self {
            config,
            snapshot,
            sessions,
            audit_rx,
            durability,
            pending,
            node_id: None,
            heartbeat: Duration::from_secs(5),
            shutdown,
            approvals: Arc::new(approvals),
            approval_rx,
        }
    }

    /// Where sessions ask for approvals; answers arrive through this link.
    pub fn approvals(&self) -> Arc<Approvals> {
        self.approvals.clone()
    }

    /// Runs until shutdown, reconnecting with backoff.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let started = Instant::now();
            let attached = self.attach_once().await;
            self.durability.set_connected(false);
            self.approvals.set_connected(false);
            match attached {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, pending = self.pending.len(), "control plane link down")
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            let wait = tokio::time::sleep(backoff.next_delay());
            tokio::pin!(wait);
            // Keep taking audit events while disconnected, up to the buffer's
            // capacity; past it, sessions see a full sink and refuse work.
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = &mut wait => break,
                    Some(ev) = self.audit_rx.recv(), if self.pending.has_room() => self.pending.push(ev),
                    // Sessions were told the control plane is unreachable:
                    // their requests must not surface after a reconnect.
                    Some(_) = self.approval_rx.recv() => {}
                }
            }
        }
    }

    async fn channel(&self) -> Result<Channel, LinkError> {
        Ok(endpoint(&self.config)?.connect().await?)
    }

    async fn attach_once(&mut self) -> Result<(), LinkError> {
        let channel = self.channel().await?;
        let bearer: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", self.config.join_token)
                .parse()
                .map_err(|_| LinkError::Token)?;
        let mut client =
            NodeServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", bearer.clone());
                Ok(req)
            });
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => {
                let r = client
                    .register(v1::RegisterRequest {
                        node_name: self.config.node_name.clone(),
                        version: sluice_common::VERSION.to_owned(),
                        listen_addrs: vec![self.config.pg_listen.to_string()],
                    })
                    .await?
                    .into_inner();
                self.heartbeat = Duration::from_millis(r.heartbeat_interval_ms.clamp(500, 60_000));
                tracing::info!(node_id = %r.node_id, "registered with the control plane");
                self.node_id = Some(r.node_id.clone());
                r.node_id
            }
        };
        let (tx, rx) = mpsc::channel::<v1::NodeMessage>(64);
        let send = |kind| v1::NodeMessage { kind: Some(kind) };
        let hello = send(Out::Hello(v1::Hello {
            node_id,
            snapshot_version: self.snapshot.version(),
            waiting_approvals: self.approvals.waiting(),
        }));
        tx.send(hello)
            .await
            .map_err(|_| LinkError::Lost("stream closed"))?;
        let mut inbound = match client.attach(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                // The control plane forgot us (a new store): register again.
                self.node_id = None;
                return Err(s.into());
            }
            Err(s) => return Err(s.into()),
        };
        self.snapshot.touch();
        self.durability.set_connected(true);
        self.approvals.set_connected(true);
        let backlog: Vec<_> = self.pending.iter().cloned().collect();
        for chunk in backlog.chunks(MAX_BATCH) {
            let batch = send(Out::Audit(v1::AuditBatch {
                events: chunk.to_vec(),
            }));
            tx.send(batch)
                .await
                .map_err(|_| LinkError::Lost("stream closed"))?;
        }
        let mut tick = tokio::time::interval(self.heartbeat);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                msg = inbound.message() => {
                    let msg = msg?.ok_or(LinkError::Lost("control plane closed the stream"))?;
                    last_heard = Instant::now();
                    self.snapshot.touch();
                    self.handle(msg);
                }
                Some(m) = self.approval_rx.recv() => {
                    tx.send(m).await.map_err(|_| LinkError::Lost("stream closed"))?;
                }
                Some(ev) = self.audit_rx.recv(), if self.pending.has_room() => {
                    let events = self.collect_batch(ev).await;
                    for ev in &events {
                        self.pending.push(ev.clone());
                    }
                    tx.send(send(Out::Audit(v1::AuditBatch { events }))).await.map_err(|_| LinkError::Lost("stream closed"))?;
                }
                _ = tick.tick() => {
                    if last_heard.elapsed() > self.heartbeat * 3 {
                        return Err(LinkError::Lost("control plane stopped answering heartbeats"));
                    }
                    let hb = v1::Heartbeat {
                        sent_at_unix_ms: sluice_common::unix_ms(),
                        active_sessions: u32::try_from(self.sessions.active()).unwrap_or(u32::MAX),
                    };
                    tx.send(send(Out::Heartbeat(hb))).await.map_err(|_| LinkError::Lost("stream closed"))?;
                }
            }
        }
    }

    /// Gathers a batch starting with `first`: whatever is queued, then what
    /// arrives within [`BATCH_LINGER`], up to [`MAX_BATCH`] and the room left
    /// in the unacknowledged buffer. Fewer, larger batches let the control
    /// plane write them with fewer transactions.
    async fn collect_batch(&mut self, first: v1::AuditEvent) -> Vec<v1::AuditEvent> {
        let room = self
            .config
            .audit_buffer_events
            .saturating_sub(self.pending.len());
        let limit = MAX_BATCH.min(room).max(1);
        let mut events = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        while events.len() < limit {
            match self.audit_rx.try_recv() {
                Ok(ev) => events.push(ev),
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, self.audit_rx.recv()).await {
                        Ok(Some(ev)) => events.push(ev),
                        _ => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        events
    }

    fn handle(&mut self, msg: v1::ControlMessage) {
        match msg.kind {
            Some(In::Snapshot(s)) => {
                let snap = NodeSnapshot::from_proto(s);
                self.sessions.kill_revoked(&snap.revoked_token_ids);
                self.snapshot.install(snap);
            }
            Some(In::AuditAck(a)) => {
                self.pending.ack(&a.session_id, a.seq);
                self.durability.acked(&a.session_id, a.seq);
            }
            Some(In::HeartbeatAck(_)) | None => {}
            Some(In::KillSession(k)) => self.sessions.kill(&k.session_id, &k.reason),
            Some(In::ApprovalDecision(d)) => {
                let request_id = d.request_id.clone();
                if !self.approvals.deliver(d) {
                    tracing::info!(request_id = %request_id, "approval decision for a request no session waits for");
                }
            }
        }
    }
}
