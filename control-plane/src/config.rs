//! Control-plane configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How a control-plane replica runs. Loaded from a TOML file plus
/// `SLUICE_CP_*` environment overrides by the `sluice` binary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// `postgres://…` for production, `sqlite://PATH` for a single node.
    pub store_url: String,
    /// Where nodes attach over gRPC.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// Where the REST API, web pages and health endpoints are served.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// TLS for the gRPC listener. Required unless `insecure_grpc` is set.
    #[serde(default)]
    pub grpc_tls: Option<TlsFiles>,
    /// Serve gRPC in plaintext. Refused unless `grpc_listen` is a loopback
    /// address: it exists for local development only.
    #[serde(default)]
    pub insecure_grpc: bool,
    /// The `iss` of tokens this control plane signs (its public URL).
    pub issuer_url: String,
    /// The `aud` of tokens this control plane signs.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The Ed25519 signing key (PKCS#8 PEM). Every replica loads the same file.
    pub signing_key_file: PathBuf,
    /// Create the key file if it does not exist (development only).
    #[serde(default)]
    pub generate_signing_key: bool,
    /// A join token accepted from the start, so the first node can attach
    /// before anyone has used the API. Stored hashed.
    #[serde(default)]
    pub bootstrap_join_token: Option<String>,
    /// Redis, shared by every replica, so a change made through one reaches
    /// nodes attached to the others at once. Without it, replicas notice each
    /// other's changes within `config_poll_interval`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// How often nodes send heartbeats.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often a replica checks the store for changes made elsewhere.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub config_poll_interval: Duration,
    /// How long a service-account token lives when nobody says otherwise
    /// (the client-credentials grant always uses this).
    #[serde(default = "default_service_token_ttl", with = "humantime_serde")]
    pub service_token_ttl: Duration,
    /// The key-encryption key (32 bytes, base64 or hex) that seals target
    /// credentials stored in the control plane. Without it, targets can only
    /// use node-local references (`env:NAME`, `file:PATH`).
    #[serde(default)]
    pub secrets_key_file: Option<PathBuf>,
    /// Create `secrets_key_file` if it does not exist (development only).
    #[serde(default)]
    pub generate_secrets_key: bool,
    /// Older keys, kept only to open credentials sealed before a rotation
    /// (`sluice secrets rotate-key` re-seals everything under the current key).
    #[serde(default)]
    pub previous_secrets_key_files: Vec<PathBuf>,
    /// The longest lifetime an admin may give a service-account token.
    #[serde(default = "default_max_token_ttl", with = "humantime_serde")]
    pub max_token_ttl: Duration,
    /// How often the audit record's chain heads are signed into a
    /// checkpoint. Events newer than the last checkpoint are protected by
    /// their chain only, so this bounds how much an attacker with write
    /// access to the store could silently cut from the end of sessions.
    #[serde(default = "default_checkpoint", with = "humantime_serde")]
    pub audit_checkpoint_interval: Duration,
    /// How long session records are kept after a session ends; unset keeps
    /// them forever. Retired sessions are deleted under a signed tombstone,
    /// so verification tells a retention deletion from tampering.
    #[serde(default, with = "humantime_serde")]
    pub audit_retention: Option<Duration>,
    /// External OpenID Connect issuers (`[[oidc]]` tables) whose tokens the
    /// REST API and every node accept besides this control plane's own.
    #[serde(default)]
    pub oidc: Vec<sluice_identity::OidcIssuerConfig>,
    /// Slack as an approval channel: requests are posted with Approve and
    /// Deny buttons.
    #[serde(default)]
    pub slack: Option<crate::approvals::slack::SlackConfig>,
    /// Email as an approval channel: approvers are mailed a signed,
    /// single-use link per request.
    #[serde(default)]
    pub email: Option<crate::approvals::email::EmailConfig>,
    /// How often pending approval requests past their deadline are
    /// recorded as expired (so webhooks and the audit record hear of it
    /// even when nobody reads the request).
    #[serde(default = "default_approval_sweep", with = "humantime_serde")]
    pub approval_sweep_interval: Duration,
    /// Signed webhooks told about every approval request and decision.
    #[serde(default)]
    pub webhooks: Vec<crate::approvals::webhook::WebhookConfig>,
}

/// A certificate and key in PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_audience() -> String {
    sluice_identity::DEFAULT_AUDIENCE.to_owned()
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(5)
}

fn default_service_token_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_max_token_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_poll() -> Duration {
    Duration::from_secs(5)
}

fn default_approval_sweep() -> Duration {
    Duration::from_secs(5)
}

fn default_checkpoint() -> Duration {
    Duration::from_secs(60)
}
