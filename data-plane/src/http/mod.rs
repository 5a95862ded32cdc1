//! The HTTP gateway: agents call `/http/{target}/{path}` with their Sluice
//! token; the node decides each request from the snapshot's policies,
//! forwards what is allowed with the credential only it holds, masks what
//! comes back while it streams, and records every request in a session.
//!
//! Layout: [`listener`] accepts connections (HTTP/1.1 and HTTP/2, TLS when
//! the node has a certificate); [`host`] tells which target a request names
//! (by path, or by host name under the gateway's suffix); [`gateway`] is
//! one request's path through the node; [`headers`] filters what crosses in either direction;
//! [`upstream`] holds the pooled clients and injects credentials;
//! [`response`] streams bodies through the maskers; [`sessions`] keeps one
//! audit session per token, target and node; [`approval`] asks the control
//! plane; [`problem`] shapes every refusal as `application/problem+json`.

pub mod approval;
pub mod gateway;
pub mod headers;
pub mod host;
pub mod listener;
pub mod problem;
pub mod request;
pub mod response;
pub mod scrub;
pub mod sessions;
pub mod upstream;

use std::time::Duration;

use serde::Deserialize;

/// Limits and timeouts of the HTTP gateway, so a slow or greedy client or
/// upstream costs the node bounded memory and time.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// The most bytes of request headers (names and values) accepted (431
    /// beyond).
    pub max_header_bytes: usize,
    /// The largest request body held whole: the decision, the approval
    /// hash and the audit sample cover it. A larger one is streamed when the
    /// decision does not rest on the body and needs no approval, and
    /// refused (413) otherwise.
    pub max_request_body_bytes: usize,
    /// The largest request body streamed to the upstream (413 beyond; 0:
    /// never stream, so `max_request_body_bytes` is the limit).
    pub max_streamed_body_bytes: u64,
    /// How long a client may take to send its request body (408 after).
    #[serde(with = "humantime_serde")]
    pub request_body_timeout: Duration,
    /// How long the upstream may take to start its response (504 after).
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// How long the upstream may stall in the middle of its response body
    /// (the response is cut off after).
    #[serde(with = "humantime_serde")]
    pub upstream_stall: Duration,
    /// How long connecting to the upstream may take (502 after).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A session with no request for this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// Under a `hold` approval policy, the longest a request waits for a
    /// decision before it is answered 403 with the pending approval.
    #[serde(with = "humantime_serde")]
    pub approval_hold: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_request_body_bytes: 8 << 20,
            max_streamed_body_bytes: 1 << 30,
            request_body_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(60),
            upstream_stall: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            session_idle: Duration::from_secs(300),
            approval_hold: Duration::from_secs(60),
        }
    }
}
