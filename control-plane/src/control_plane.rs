use std::sync::Arc;

use sluice_common::Shutdown;
use sluice_identity::{Issuer, IssuerRegistry, SigningKey, TrustStore, Verifier};
use sluice_proto::v1;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::bus::Bus;
use crate::config::ControlPlaneConfig;
use crate::node_service::NodeService;
use crate::secrets::{Kek, Keyring};
use crate::snapshot;
use crate::store::{Store, StoreError};

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
    /// Seals and opens target credentials.
    pub(crate) keyring: Arc<Keyring>,
    /// Every issuer whose tokens this replica accepts: its own and the
    /// configured external ones, with their key caches.
    trust: Arc<TrustStore>,
    config: Arc<ControlPlaneConfig>,
    snapshots: watch::Receiver<Arc<v1::Snapshot>>,
    shutdown: Shutdown,
    /// The Slack Web API, when Slack is an approval channel.
    pub(crate) slack: Option<crate::approvals::slack::SlackClient>,
    /// Delivers approval webhooks.
    pub(crate) webhook_http: reqwest::Client,
    /// The SMTP client and link key, when email is an approval channel.
    pub(crate) email: Option<(crate::approvals::email::Mailer, Arc<Vec<u8>>)>,
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
        if let Some(problem) = config.webhooks.iter().find_map(|w| w.problem()) {
            return Err(StartError::Config(format!("webhooks: {problem}")));
        }
        if let Some(problem) = config.oidc.iter().find_map(|c| c.problem()) {
            return Err(StartError::Config(format!("oidc: {problem}")));
        }
        let store = Store::connect(&config.store_url).await?;
        let key = load_signing_key(&config)?;
        let keyring = Arc::new(load_keyring(&config)?);
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
            external_issuers: config.oidc.iter().map(crate::oidc::to_proto).collect(),
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
        tokio::spawn(crate::audit::checkpointer::run(
            store.clone(),
            issuer.key().clone(),
            config.audit_checkpoint_interval,
            config.audit_retention,
            shutdown.clone(),
        ));
        let own = own_verifier(&issuer);
        let trust = Arc::new(TrustStore::new(
            Some(own),
            IssuerRegistry::default().resolve(&config.oidc),
        ));
        let slack = config
            .slack
            .as_ref()
            .map(crate::approvals::slack::SlackClient::new);
        let webhook_http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let email = match &config.email {
            Some(c) => Some((
                crate::approvals::email::Mailer::new(c)
                    .map_err(|e| StartError::Config(format!("email: {e}")))?,
                Arc::new(crate::approvals::email::link_key(
                    c.link_key.as_deref(),
                    &issuer.key().sign(crate::approvals::email::KEY_LABEL),
                )),
            )),
            None => None,
        };
        let cp = Self {
            email,
            webhook_http,
            slack,
            store,
            issuer: Arc::new(issuer),
            bus,
            keyring,
            trust,
            config: Arc::new(config),
            snapshots: rx,
            shutdown,
        };
        tokio::spawn(crate::approvals::sweep::run(
            cp.clone(),
            cp.config.approval_sweep_interval,
            cp.shutdown.clone(),
        ));
        cp.seal_legacy_secrets()
            .await
            .map_err(|e| StartError::Config(format!("target credentials: {e}")))?;
        Ok(cp)
    }

    /// The configuration this replica runs with.
    pub fn config(&self) -> &ControlPlaneConfig {
        &self.config
    }

    /// Validates tokens this replica's issuer signed.
    pub fn verifier(&self) -> Verifier {
        own_verifier(&self.issuer)
    }

    /// Validates tokens of every trusted issuer, own and external: what the
    /// REST API and credential hand-outs check callers with.
    pub fn trust(&self) -> Arc<TrustStore> {
        self.trust.clone()
    }

    /// The newest snapshot.
    pub fn current_snapshot(&self) -> Arc<v1::Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// Serves the node gRPC service on `listener` until shutdown.
    pub async fn serve_grpc(&self, listener: TcpListener) -> Result<(), StartError> {
        let svc = NodeService::new(
            self.clone(),
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

fn own_verifier(issuer: &Issuer) -> Verifier {
    // The key set is our own, so it always parses; an empty verifier
    // (refusing everything) is the fail-closed fallback.
    Verifier::from_jwks(
        issuer.issuer(),
        issuer.audience(),
        &issuer.jwks_json(),
        sluice_identity::MAX_LEEWAY_SECS,
    )
    .unwrap_or_else(|_| {
        Verifier::from_jwks("", "", r#"{"keys":[]}"#, 0)
            .unwrap_or_else(|_| unreachable!("empty key set parses"))
    })
}

/// Loads the key-encryption keys; creates the current one first when asked
/// to (development).
pub(crate) fn load_keyring(config: &ControlPlaneConfig) -> Result<Keyring, StartError> {
    let read = |path: &std::path::Path| -> Result<Kek, StartError> {
        let err = |reason: String| {
            StartError::Config(format!("secrets key {}: {reason}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Kek::from_text(&text).map_err(|e| err(e.to_string()))
    };
    let current = match &config.secrets_key_file {
        None => None,
        Some(path) => {
            if config.generate_secrets_key && !path.exists() {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                sluice_common::tls::write_private(path, Kek::generate_text().as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new secrets key");
            }
            Some(read(path)?)
        }
    };
    let previous = config
        .previous_secrets_key_files
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keyring::new(current, previous))
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
