use std::sync::Arc;

use sluice_common::Shutdown;
use sluice_identity::{Issuer, SigningKey, Verifier};
use sluice_proto::v1;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::bus::{Bus, BusEvent};
use crate::config::ControlPlaneConfig;
use crate::node_service::NodeService;
use crate::snapshot;
use crate::store::{NewTarget, Store, StoreError, Target};

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The signing key could not be read or created.
    #[error("signing key {path}: {reason}")]
    SigningKey {
        /// The key file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The configuration is unsafe or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A listener could not be served.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// A file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One control-plane replica's shared state; cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    /// The store.
    pub store: Store,
    /// Signs access tokens.
    pub issuer: Arc<Issuer>,
    /// Cross-replica events.
    pub bus: Bus,
    config: Arc<ControlPlaneConfig>,
    snapshots: watch::Receiver<Arc<v1::Snapshot>>,
    shutdown: Shutdown,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Opens the store, loads the signing key and starts following
    /// configuration changes. Serving is separate ([`Self::serve_grpc`]).
    pub async fn start(config: ControlPlaneConfig, shutdown: Shutdown) -> Result<Self, StartError> {
        if config.insecure_grpc && !config.grpc_listen.ip().is_loopback() {
            return Err(StartError::Config(format!(
                "insecure_grpc is only allowed on a loopback address, not {}",
                config.grpc_listen
            )));
        }
        if !config.insecure_grpc && config.grpc_tls.is_none() {
            return Err(StartError::Config(
                "grpc_tls (cert and key) is required unless insecure_grpc is set for loopback development".to_owned(),
            ));
        }
        let store = Store::connect(&config.store_url).await?;
        let key = load_signing_key(&config)?;
        let issuer =
            Issuer::new(config.issuer_url.clone(), config.audience.clone(), key).map_err(|e| {
                StartError::SigningKey {
                    path: config.signing_key_file.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        if let Some(token) = &config.bootstrap_join_token {
            store.insert_join_token("bootstrap", token).await?;
        }
        let trust = v1::TokenTrust {
            issuer: issuer.issuer().to_owned(),
            audience: issuer.audience().to_owned(),
            jwks_json: issuer.jwks_json(),
        };
        let first = snapshot::build(&store, &trust).await?;
        let (tx, rx) = watch::channel(Arc::new(first));
        let bus = match &config.redis_url {
            Some(url) => Bus::with_redis(url, shutdown.clone())
                .map_err(|e| StartError::Config(format!("redis_url: {e}")))?,
            None => Bus::new(),
        };
        tokio::spawn(snapshot::follow(
            store.clone(),
            trust,
            bus.clone(),
            tx,
            config.config_poll_interval,
            shutdown.clone(),
        ));
        Ok(Self {
            store,
            issuer: Arc::new(issuer),
            bus,
            config: Arc::new(config),
            snapshots: rx,
            shutdown,
        })
    }

    /// The configuration this replica runs with.
    pub fn config(&self) -> &ControlPlaneConfig {
        &self.config
    }

    /// Validates tokens this replica's issuer signed (for the REST API).
    pub fn verifier(&self) -> Verifier {
        // The key set is our own, so it always parses; an empty verifier
        // (refusing everything) is the fail-closed fallback.
        Verifier::from_jwks(
            self.issuer.issuer(),
            self.issuer.audience(),
            &self.issuer.jwks_json(),
            sluice_identity::MAX_LEEWAY_SECS,
        )
        .unwrap_or_else(|_| {
            Verifier::from_jwks("", "", r#"{"keys":[]}"#, 0)
                .unwrap_or_else(|_| unreachable!("empty key set parses"))
        })
    }

    /// The newest snapshot.
    pub fn current_snapshot(&self) -> Arc<v1::Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// Registers a target and tells every node.
    pub async fn create_target(&self, t: NewTarget) -> Result<Target, StoreError> {
        let target = self.store.create_target(t).await?;
        self.bus.publish(BusEvent::ConfigChanged);
        Ok(target)
    }

    /// Removes a target and tells every node.
    pub async fn delete_target(&self, name: &str) -> Result<bool, StoreError> {
        let existed = self.store.delete_target(name).await?;
        if existed {
            self.bus.publish(BusEvent::ConfigChanged);
        }
        Ok(existed)
    }

    /// Serves the node gRPC service on `listener` until shutdown.
    pub async fn serve_grpc(&self, listener: TcpListener) -> Result<(), StartError> {
        let svc = NodeService::new(
            self.store.clone(),
            self.bus.clone(),
            self.snapshots.clone(),
            self.config.heartbeat_interval,
            self.shutdown.clone(),
        );
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
        if let Some(tls) = &self.config.grpc_tls {
            let cert = std::fs::read(&tls.cert)?;
            let key = std::fs::read(&tls.key)?;
            builder = builder.tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )?;
        }
        let shutdown = self.shutdown.clone();
        builder
            .add_service(v1::node_service_server::NodeServiceServer::new(svc))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                shutdown.cancelled().await
            })
            .await?;
        Ok(())
    }
}

fn load_signing_key(config: &ControlPlaneConfig) -> Result<SigningKey, StartError> {
    let path = &config.signing_key_file;
    let err = |reason: String| StartError::SigningKey {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pem(&pem).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.generate_signing_key => {
            let key = SigningKey::generate();
            let pem = key.to_pem().map_err(|e| err(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            sluice_common::tls::write_private(path, pem.as_bytes())
                .map_err(|e| err(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated a new signing key");
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}
