//! The upstream side: one pooled client per HTTP target (keep-alive,
//! verified TLS with the target's extra CA certificates), and the credential
//! placed on each request as the target says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use base64::Engine as _;
use sluice_proto::v1;

use super::HttpLimits;
use super::scrub::Secrets;

/// Why an upstream request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The target's settings are unusable on this node.
    #[error("target {0:?} is misconfigured: {1}")]
    Config(String, String),
}

/// Where and how the credential goes on each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// No credential.
    None,
    /// `Authorization: Bearer SECRET`.
    Bearer,
    /// `Authorization: Basic base64(user:password)`.
    Basic,
    /// `NAME: SECRET`.
    Header(HeaderName),
    /// `?NAME=SECRET` appended to the query.
    Query(String),
}

impl Placement {
    /// Parses a target's `http_auth`; unknown forms are refused.
    pub fn parse(auth: &str) -> Result<Self, String> {
        match auth.split_once(':') {
            None if auth == "bearer" || auth.is_empty() => Ok(Self::Bearer),
            None if auth == "basic" => Ok(Self::Basic),
            Some(("header", n)) => HeaderName::from_bytes(n.as_bytes())
                .map(Self::Header)
                .map_err(|_| format!("bad header name {n:?}")),
            Some(("query", n)) if !n.is_empty() => Ok(Self::Query(n.to_owned())),
            _ => Err(format!("unknown auth {auth:?}")),
        }
    }
}

/// The upstream credential of one session, kept only as long as the
/// session.
#[derive(Clone)]
pub struct Credential {
    placement: Placement,
    secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The credential `secret` (empty: none) placed as `auth` says.
    pub fn new(auth: &str, secret: String) -> Result<Self, String> {
        let placement = if secret.is_empty() {
            Placement::None
        } else {
            Placement::parse(auth)?
        };
        Ok(Self { placement, secret })
    }

    /// The query parameter the credential occupies, which clients may not
    /// send themselves.
    pub fn reserved_query(&self) -> Option<&str> {
        match &self.placement {
            Placement::Query(n) => Some(n),
            _ => None,
        }
    }

    /// Every form of the secret an echo could carry.
    pub fn add_secrets(&self, secrets: &mut Secrets) {
        if self.placement == Placement::None {
            return;
        }
        secrets.add(&self.secret);
        if self.placement == Placement::Basic
            && let Some((_, pw)) = self.secret.split_once(':')
        {
            secrets.add(pw);
            secrets.add(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(&self.secret)
            ));
        }
    }

    /// Puts the credential on a request's headers and query.
    pub fn apply(&self, headers: &mut HeaderMap, query: &mut Option<String>) -> Result<(), String> {
        let value = |v: String| {
            HeaderValue::try_from(v)
                .map_err(|_| "credential is not a valid header value".to_owned())
        };
        match &self.placement {
            Placement::None => {}
            Placement::Bearer => {
                let mut v = value(format!("Bearer {}", self.secret))?;
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
            Placement::Basic => {
                let enc = base64::engine::general_purpose::STANDARD.encode(&self.secret);
                let mut v = value(format!("Basic {enc}"))?;
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
            Placement::Header(n) => {
                let mut v = value(self.secret.clone())?;
                v.set_sensitive(true);
                headers.insert(n.clone(), v);
            }
            Placement::Query(n) => {
                let pair: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(n, &self.secret)
                    .finish();
                *query = Some(match query.take() {
                    Some(q) if !q.is_empty() => format!("{q}&{pair}"),
                    _ => pair,
                });
            }
        }
        Ok(())
    }
}

/// Whether the raw query names parameter `name`.
pub fn query_names(raw: &str, name: &str) -> bool {
    url::form_urlencoded::parse(raw.as_bytes()).any(|(k, _)| k == name)
}

/// Pooled clients, one per target configuration.
#[derive(Debug, Default)]
pub struct Clients {
    by_target: Mutex<HashMap<String, Pooled>>,
}

/// A target's client and the settings it was built from.
#[derive(Debug)]
struct Pooled {
    base_url: String,
    ca_pem: String,
    client: reqwest::Client,
}

impl Clients {
    /// The client for `target`, built on first use and rebuilt when its
    /// settings change; every request to the target shares its connection
    /// pool (and so its keep-alive connections).
    pub fn for_target(
        &self,
        target: &v1::Target,
        limits: &HttpLimits,
    ) -> Result<reqwest::Client, UpstreamError> {
        if let Ok(g) = self.by_target.lock()
            && let Some(p) = g.get(&target.name)
            && p.base_url == target.base_url
            && p.ca_pem == target.ca_pem
        {
            return Ok(p.client.clone());
        }
        let client = build(target, limits)?;
        if let Ok(mut g) = self.by_target.lock() {
            g.insert(
                target.name.clone(),
                Pooled {
                    base_url: target.base_url.clone(),
                    ca_pem: target.ca_pem.clone(),
                    client: client.clone(),
                },
            );
        }
        Ok(client)
    }
}

fn build(target: &v1::Target, limits: &HttpLimits) -> Result<reqwest::Client, UpstreamError> {
    let bad = |m: String| UpstreamError::Config(target.name.clone(), m);
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limits.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .no_proxy()
        .referer(false);
    if !target.ca_pem.is_empty() {
        let certs = reqwest::Certificate::from_pem_bundle(target.ca_pem.as_bytes())
            .map_err(|e| bad(format!("ca_pem: {e}")))?;
        if certs.is_empty() {
            return Err(bad("ca_pem holds no certificate".to_owned()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| bad(e.to_string()))
}

/// The upstream URL for a decided (normalised) path and the query.
pub fn url(base: &str, path: &str, query: Option<&str>) -> String {
    let mut u = String::with_capacity(base.len() + path.len() + 16);
    u.push_str(base.trim_end_matches('/'));
    if !path.starts_with('/') {
        u.push('/');
    }
    u.push_str(path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        u.push('?');
        u.push_str(q);
    }
    u
}

/// Shared across requests: the clients and nothing else.
pub type SharedClients = Arc<Clients>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_where_the_target_says() {
        let mut h = HeaderMap::new();
        let mut q = Some("a=1".to_owned());
        Credential::new("query:api_key", "s3cr3t&x".to_owned())
            .unwrap()
            .apply(&mut h, &mut q)
            .unwrap();
        assert_eq!(q.as_deref(), Some("a=1&api_key=s3cr3t%26x"));
        assert!(h.is_empty());
        Credential::new("basic", "user:pw".to_owned())
            .unwrap()
            .apply(&mut h, &mut q)
            .unwrap();
        assert_eq!(h["authorization"], "Basic dXNlcjpwdw==");
        Credential::new("header:X-Api-Key", "k".to_owned())
            .unwrap()
            .apply(&mut h, &mut q)
            .unwrap();
        assert_eq!(h["x-api-key"], "k");
        assert!(Credential::new("cookie:x", "k".to_owned()).is_err());
        assert!(
            !format!(
                "{:?}",
                Credential::new("bearer", "zzz-secret".to_owned()).unwrap()
            )
            .contains("zzz")
        );
    }

    #[test]
    fn upstream_urls_join_base_and_decided_path() {
        assert_eq!(
            url("http://h:1/v1/", "/customers", Some("a=1")),
            "http://h:1/v1/customers?a=1"
        );
        assert_eq!(url("http://h:1", "/", None), "http://h:1/");
        assert!(query_names("a=1&api_key=2", "api_key"));
        assert!(query_names("api%5Fkey=2", "api_key"));
        assert!(!query_names("a=1", "api_key"));
    }
}
