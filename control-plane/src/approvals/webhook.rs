//! Signed generic webhooks for approvals (PagerDuty, Teams and the like),
//! following Standard Webhooks: every delivery carries `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` (`v1,` + base64 of
//! HMAC-SHA256 over `{id}.{timestamp}.{body}` under the endpoint's secret).
//! Signing is pure; delivery is one POST with a short timeout, retried a few
//! times with the same id so receivers can deduplicate.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::store::Approval;

/// One `[[webhooks]]` endpoint.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where deliveries are POSTed.
    pub url: String,
    /// The signing secret, `whsec_` followed by base64 key bytes.
    pub secret: String,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// Why the endpoint cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Some(format!("webhook url {:?} must be http(s)", self.url));
        }
        key(&self.secret)
            .is_none()
            .then(|| "webhook secret must be whsec_ followed by base64".to_owned())
    }
}

fn key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .filter(|k| !k.is_empty())
}

/// The `webhook-signature` value for a delivery; `None` for a malformed secret.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The body of a delivery about `a`: `approval.requested` or
/// `approval.decided`.
pub fn payload(kind: &str, a: &Approval, state: &str, url: &str, timestamp: i64) -> Value {
    json!({
        "type": kind,
        "timestamp": chrono::DateTime::from_timestamp(timestamp, 0).map(|t| t.to_rfc3339()),
        "data": {
            "id": a.id,
            "state": state,
            "url": url,
            "identity": a.identity,
            "target": a.target,
            "statement": a.statement,
            "statement_hash": a.statement_hash,
            "policy": a.policy,
            "rule": a.rule,
            "reason": a.reason,
            "expires_at": chrono::DateTime::from_timestamp_micros(a.expires_at).map(|t| t.to_rfc3339()),
        }
    })
}

/// Delivers `body` to every endpoint in the background.
pub fn deliver(http: &reqwest::Client, endpoints: &[WebhookConfig], body: &Value) {
    let bytes = body.to_string();
    for e in endpoints {
        let (http, e, bytes) = (http.clone(), e.clone(), bytes.clone());
        tokio::spawn(async move {
            let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
            for attempt in 0..3u32 {
                let ts = sluice_common::unix_us() / 1_000_000;
                let Some(sig) = signature(&e.secret, &id, ts, bytes.as_bytes()) else {
                    tracing::error!(url = %e.url, "webhook secret is malformed");
                    return;
                };
                let sent = http
                    .post(&e.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig)
                    .body(bytes.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => {
                        tracing::warn!(url = %e.url, status = %r.status(), attempt, "webhook refused")
                    }
                    Err(err) => {
                        tracing::warn!(url = %e.url, error = %err, attempt, "webhook failed")
                    }
                }
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example from the Standard Webhooks specification's reference
        // implementations.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(signature("nope", "id", 1, body).is_none());
    }

    #[test]
    fn endpoints_are_checked() {
        let ok = WebhookConfig {
            url: "https://hooks.example.com/x".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        };
        assert!(ok.problem().is_none());
        let bad = WebhookConfig {
            url: "ftp://x".into(),
            ..ok.clone()
        };
        assert!(bad.problem().is_some());
        let bad = WebhookConfig {
            secret: "plain".into(),
            ..ok
        };
        assert!(bad.problem().is_some());
    }
}
