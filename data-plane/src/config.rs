//! Data-plane configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How a node runs. Loaded from a TOML file plus `SLUICE_DP_*` environment
/// overrides by the `sluice` binary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPlaneConfig {
    /// This node's name, stable across restarts (default: the host name).
    #[serde(default = "default_node_name")]
    pub node_name: String,
    /// The control plane's gRPC URL. `http://` only for a loopback address.
    pub control_plane_url: String,
    /// A CA certificate (PEM) to trust for the control plane, beyond the
    /// system roots.
    #[serde(default)]
    pub control_plane_ca: Option<PathBuf>,
    /// The join token this node presents.
    pub join_token: String,
    /// Where Postgres clients connect.
    #[serde(default = "default_pg_listen")]
    pub pg_listen: SocketAddr,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// The certificate clients see. Without it, `tls_self_signed_dir` must
    /// name where a development certificate is generated.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Generate and use a self-signed certificate in this directory.
    #[serde(default)]
    pub tls_self_signed_dir: Option<PathBuf>,
    /// Accept clients that do not use TLS. Refused unless `pg_listen` is a
    /// loopback address: tokens must not cross a network in clear.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// How long the node keeps serving from its snapshot without hearing from
    /// the control plane; after that it refuses new sessions and statements.
    #[serde(default = "default_max_snapshot_age", with = "humantime_serde")]
    pub max_snapshot_age: Duration,
    /// How long a peer may stall in the middle of a message.
    #[serde(default = "default_message_timeout", with = "humantime_serde")]
    pub message_timeout: Duration,
    /// How long a client may take from connecting to being authenticated.
    #[serde(default = "default_startup_timeout", with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// How long connecting to a target may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// The largest message accepted from a client.
    #[serde(default = "default_max_message")]
    pub max_client_message_bytes: usize,
    /// The largest message accepted from a target.
    #[serde(default = "default_max_server_message")]
    pub max_server_message_bytes: usize,
    /// Audit events held while the control plane has not acknowledged them.
    #[serde(default = "default_audit_buffer")]
    pub audit_buffer_events: usize,
    /// When a client's access token expires mid-session: `end` (at once) or
    /// `after_statement` (once the statement in flight has finished).
    #[serde(default)]
    pub on_token_expiry: crate::pg::relay::session::OnExpiry,
    /// With `after_statement`, the longest the statement in flight may run on
    /// past the token's expiry.
    #[serde(default = "default_drain_grace", with = "humantime_serde")]
    pub token_expiry_grace: Duration,
    /// Under strict delivery, how long a statement waits for the control
    /// plane to confirm its audit record before the session is ended with
    /// the statement unsent.
    #[serde(default = "default_strict_audit_wait", with = "humantime_serde")]
    pub strict_audit_wait: Duration,
    /// How long a target's catalog (the views over masked tables and the
    /// identities of their columns) is used before it is read again; a
    /// schema change through the gateway has it read again at once. Views
    /// made outside the gateway are masked as their queries say once it has.
    #[serde(default = "default_catalog_ttl", with = "humantime_serde")]
    pub catalog_ttl: Duration,
    /// The HTTP gateway for `http` targets (`/http/{target}/{path}`); off
    /// unless an address is given. It serves TLS when the node has a
    /// certificate, plaintext (HTTP/1.1 and h2c) only with
    /// `insecure_plaintext` on a loopback address.
    #[serde(default)]
    pub http_gateway_listen: Option<SocketAddr>,
    /// Limits and timeouts of the HTTP gateway.
    #[serde(default)]
    pub http_gateway: crate::http::HttpLimits,
    /// When set (`http.sluice.internal`), a request whose host is
    /// `{target}.{suffix}` goes to that target with its path as-is, for
    /// clients that cannot add a path prefix; `/http/{target}/{path}` keeps
    /// working on any host. Point a wildcard DNS name (and, over TLS, a
    /// wildcard certificate) at the gateway.
    #[serde(default)]
    pub http_gateway_host_suffix: Option<crate::http::host::HostSuffix>,
}

fn default_strict_audit_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_catalog_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_drain_grace() -> Duration {
    Duration::from_secs(60)
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

fn default_pg_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 6432))
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

fn default_max_snapshot_age() -> Duration {
    Duration::from_secs(300)
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_startup_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_message() -> usize {
    64 << 20
}

fn default_max_server_message() -> usize {
    1 << 30
}

fn default_audit_buffer() -> usize {
    100_000
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// See the message.
    #[error("{0}")]
    Invalid(String),
}

impl DataPlaneConfig {
    /// Refuses unsafe combinations before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.insecure_plaintext && !self.pg_listen.ip().is_loopback() {
            return bad(format!(
                "insecure_plaintext is only allowed on a loopback address, not {}",
                self.pg_listen
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key must be given together".to_owned());
        }
        if self.tls_cert.is_none() && self.tls_self_signed_dir.is_none() && !self.insecure_plaintext
        {
            return bad(
                "configure tls_cert and tls_key (or tls_self_signed_dir for development)"
                    .to_owned(),
            );
        }
        if let Some(rest) = self.control_plane_url.strip_prefix("http://") {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return bad(format!(
                    "control_plane_url {} is plaintext; use https:// (plaintext is only for a loopback control plane)",
                    self.control_plane_url
                ));
            }
        } else if !self.control_plane_url.starts_with("https://") {
            return bad(
                "control_plane_url must start with https:// (or http:// for loopback)".to_owned(),
            );
        }
        if let Some(addr) = self.http_gateway_listen
            && self.insecure_plaintext
            && !addr.ip().is_loopback()
        {
            return bad(format!(
                "insecure_plaintext is only allowed on a loopback address, not the HTTP gateway's {addr}"
            ));
        }
        if self.join_token.is_empty() {
            return bad("join_token is required".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<DataPlaneConfig, serde_json::Error> {
        serde_json::from_str(&format!(
            r#"{{"control_plane_url": "https://cp", "join_token": "t"{extra}}}"#
        ))
    }

    #[test]
    fn the_gateway_host_suffix_is_checked_when_read() {
        assert!(parse("").unwrap().http_gateway_host_suffix.is_none());
        let c = parse(r#", "http_gateway_host_suffix": ".HTTP.Sluice.internal""#).unwrap();
        assert_eq!(
            c.http_gateway_host_suffix.map(|s| s.to_string()).as_deref(),
            Some("http.sluice.internal")
        );
        assert!(parse(r#", "http_gateway_host_suffix": "a..b""#).is_err());
        assert!(parse(r#", "http_gateway_host_suffix": "*.example""#).is_err());
        assert!(
            parse(r#", "http_gateway_host": "x.y""#).is_err(),
            "unknown fields are refused"
        );
    }
}
