use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::Shutdown;
use sluice_common::health::{self, Readiness};
use tokio::net::TcpListener;

use crate::config::{ConfigError, DataPlaneConfig};
use crate::control::audit::AuditSink;
use crate::control::credentials::CredentialSource;
use crate::control::link::ControlLink;
use crate::control::snapshot::SnapshotCell;
use crate::pg::client::handshake::{HandshakeConfig, acceptor};
use crate::pg::client::listener;
use crate::pg::client::session::Shared;
use crate::pg::relay::session::Limits;
use crate::pg::upstream::connect::UpstreamLimits;
use crate::sessions::Sessions;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Unsafe or inconsistent configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS material could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(#[from] sluice_common::tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The control plane's address or join token is unusable.
    #[error("control plane link: {0}")]
    Link(#[from] crate::control::link::LinkError),
}

/// A node with its listeners bound, ready to run.
pub struct BoundNode {
    config: Arc<DataPlaneConfig>,
    pg: TcpListener,
    http: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    gateway: Option<(TcpListener, crate::http::listener::Transport)>,
    snapshot: Arc<SnapshotCell>,
    credentials: CredentialSource,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { addr, source })
}

impl BoundNode {
    /// Validates the configuration, loads TLS and binds the listeners.
    pub async fn bind(config: DataPlaneConfig) -> Result<Self, NodeError> {
        config.validate()?;
        let paths = match (
            &config.tls_cert,
            &config.tls_key,
            &config.tls_self_signed_dir,
        ) {
            (Some(cert), Some(key), _) => Some(sluice_common::tls::CertPaths {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (_, _, Some(dir)) => Some(sluice_common::tls::ensure_self_signed(dir)?),
            _ => None,
        };
        let server_config = match paths {
            Some(p) => Some(sluice_common::tls::server_config(&p)?),
            None => None,
        };
        let tls = server_config.clone().map(acceptor);
        let pg = bind(config.pg_listen).await?;
        let http = bind(config.http_listen).await?;
        let gateway = match config.http_gateway_listen {
            Some(addr) => Some((
                bind(addr).await?,
                crate::http::listener::Transport {
                    tls: server_config
                        .as_deref()
                        .map(crate::http::listener::tls_acceptor),
                    plaintext: config.insecure_plaintext && addr.ip().is_loopback(),
                },
            )),
            None => None,
        };
        let snapshot = Arc::new(SnapshotCell::new(config.max_snapshot_age));
        let credentials = CredentialSource::new(&config)?;
        Ok(Self {
            config: Arc::new(config),
            pg,
            http,
            tls,
            gateway,
            snapshot,
            credentials,
        })
    }

    /// Where agents reach HTTP targets, when the gateway is on.
    pub fn http_gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Where Postgres clients connect.
    pub fn pg_addr(&self) -> std::io::Result<SocketAddr> {
        self.pg.local_addr()
    }

    /// Where health and metrics are served.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The snapshot the node decides from, to watch it become ready.
    pub fn snapshot(&self) -> Arc<SnapshotCell> {
        self.snapshot.clone()
    }

    /// Runs the node until `shutdown` fires.
    pub async fn run(self, shutdown: Shutdown) {
        let c = &self.config;
        let snapshot = self.snapshot.clone();
        let sessions = Arc::new(Sessions::default());
        let (audit, audit_rx) = AuditSink::channel(c.audit_buffer_events);
        let link = ControlLink::new(
            c.clone(),
            snapshot.clone(),
            sessions.clone(),
            audit_rx,
            audit.durability(),
            shutdown.clone(),
        );
        let approvals = link.approvals();
        let link = tokio::spawn(link.run());
        let ready = Readiness::default();
        tokio::spawn(track_readiness(
            snapshot.clone(),
            ready.clone(),
            shutdown.clone(),
        ));
        let http = tokio::spawn(health::serve(
            self.http,
            health::router(ready),
            shutdown.clone(),
        ));
        let gateway = self.gateway.map(|(listener, transport)| {
            let shared = Arc::new(crate::http::gateway::Shared {
                http: c.http_gateway,
                limits: Limits {
                    max_client_message: c.max_client_message_bytes,
                    max_server_message: c.max_server_message_bytes,
                    stall: c.message_timeout,
                    on_expiry: c.on_token_expiry,
                    drain_grace: c.token_expiry_grace,
                    strict_audit_wait: c.strict_audit_wait,
                },
                snapshot: snapshot.clone(),
                audit: audit.clone(),
                sessions: sessions.clone(),
                http_sessions: Arc::default(),
                credentials: self.credentials.clone(),
                approvals: approvals.clone(),
                clients: crate::http::upstream::Clients::default(),
                tokens: crate::auth::TokenCache::default(),
                shutdown: shutdown.clone(),
                host_suffix: c.http_gateway_host_suffix.clone(),
            });
            tracing::info!(addr = ?listener.local_addr().ok(), "HTTP gateway serving");
            tokio::spawn(crate::http::listener::serve(listener, transport, shared))
        });
        let shared = Arc::new(Shared {
            handshake: HandshakeConfig {
                tls: self.tls,
                allow_plaintext: c.insecure_plaintext,
                max_message: c.max_client_message_bytes,
                stall: c.message_timeout,
                startup: c.startup_timeout,
            },
            limits: Limits {
                max_client_message: c.max_client_message_bytes,
                max_server_message: c.max_server_message_bytes,
                stall: c.message_timeout,
                on_expiry: c.on_token_expiry,
                drain_grace: c.token_expiry_grace,
                strict_audit_wait: c.strict_audit_wait,
            },
            upstream: UpstreamLimits {
                connect_timeout: c.upstream_connect_timeout,
                max_message: c.max_server_message_bytes,
                stall: c.message_timeout,
            },
            snapshot,
            audit,
            sessions,
            credentials: self.credentials,
            approvals,
            catalogs: crate::pg::catalogs::Catalogs::new(
                UpstreamLimits {
                    connect_timeout: c.upstream_connect_timeout,
                    max_message: c.max_server_message_bytes,
                    stall: c.message_timeout,
                },
                c.catalog_ttl,
            ),
            shutdown: shutdown.clone(),
        });
        tracing::info!(pg = %c.pg_listen, node = %c.node_name, "data plane serving");
        listener::serve(self.pg, shared).await;
        if let Some(g) = gateway {
            let _ = g.await;
        }
        // Give sessions' end events a moment to reach the link before it stops.
        let _ = tokio::time::timeout(Duration::from_secs(2), link).await;
        let _ = http.await;
    }
}

async fn track_readiness(snapshot: Arc<SnapshotCell>, ready: Readiness, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => ready.set(snapshot.usable().is_ok()),
        }
    }
}
