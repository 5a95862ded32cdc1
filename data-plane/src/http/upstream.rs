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
    upstream: Upstream,
}

/// One target's pooled client and its base URL, parsed once so a request
/// does not parse the host again.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The client (and its keep-alive pool).
    pub client: reqwest::Client,
    base: url::Url,
}

impl Upstream {
    /// The upstream URL for a decided (normalised, so already
    /// percent-encoded) path and the raw query, below the base URL's path.
    pub fn url(&self, path: &str, query: Option<&str>) -> url::Url {
        let mut u = self.base.clone();
        let base = self.base.path().trim_end_matches('/');
        let mut full = String::with_capacity(base.len() + path.len() + 1);
        full.push_str(base);
        if !path.starts_with('/') {
            full.push('/');
        }
        full.push_str(path);
        u.set_path(&full);
        u.set_query(query.filter(|q| !q.is_empty()));
        u
    }
}

impl Clients {
    /// The client for `target`, built on first use and rebuilt when its
    /// settings change; every request to the target shares its connection
    /// pool (and so its keep-alive connections).
    pub fn for_target(
        &self,
        target: &v1::Target,
        limits: &HttpLimits,
    ) -> Result<Upstream, UpstreamError> {
        if let Ok(g) = self.by_target.lock()
            && let Some(p) = g.get(&target.name)
            && p.base_url == target.base_url
            && p.ca_pem == target.ca_pem
        {
            return Ok(p.upstream.clone());
        }
        let upstream = Upstream {
            base: base_url(target)?,
            client: build(target, limits)?,
        };
        if let Ok(mut g) = self.by_target.lock() {
            g.insert(
                target.name.clone(),
                Pooled {
                    base_url: target.base_url.clone(),
                    ca_pem: target.ca_pem.clone(),
                    upstream: upstream.clone(),
                },
            );
        }
        Ok(upstream)
    }
}

/// The target's base URL: absolute, `http` or `https`.
fn base_url(target: &v1::Target) -> Result<url::Url, UpstreamError> {
    let bad = |m: &str| UpstreamError::Config(target.name.clone(), m.to_owned());
    let u = url::Url::parse(&target.base_url).map_err(|_| bad("base_url is not a URL"))?;
    if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() || !u.has_host() {
        return Err(bad("base_url must be an http or https URL"));
    }
    Ok(u)
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

    fn upstream(base: &str) -> Upstream {
        let target = v1::Target {
            name: "t".to_owned(),
            base_url: base.to_owned(),
            ..Default::default()
        };
        Clients::default()
            .for_target(&target, &HttpLimits::default())
            .unwrap()
    }

    #[test]
    fn upstream_urls_join_base_and_decided_path() {
        let url = |base: &str, path: &str, query: Option<&str>| {
            upstream(base).url(path, query).to_string()
        };
        assert_eq!(
            url("http://h:1/v1/", "/customers", Some("a=1")),
            "http://h:1/v1/customers?a=1"
        );
        assert_eq!(url("http://h:1", "/", None), "http://h:1/");
        assert_eq!(url("http://h:1/v1", "/", Some("")), "http://h:1/v1/");
        assert_eq!(
            url(
                "https://api.example/v2/",
                "/a%20b/%C3%A9",
                Some("q=x%26y&z")
            ),
            "https://api.example/v2/a%20b/%C3%A9?q=x%26y&z"
        );
        // The same URL as parsing the joined text would give.
        for (path, query) in [("/x/y", Some("a=1&b=%2F")), ("/", None), ("/c", Some("k"))] {
            let text = format!(
                "http://h:1/base{path}{}",
                query.map(|q| format!("?{q}")).unwrap_or_default()
            );
            assert_eq!(
                upstream("http://h:1/base/").url(path, query),
                url::Url::parse(&text).unwrap()
            );
        }
        for bad in ["h:1/x", "ftp://h/", "mailto:a@b", "not a url"] {
            let target = v1::Target {
                name: "t".to_owned(),
                base_url: bad.to_owned(),
                ..Default::default()
            };
            assert!(
                Clients::default()
                    .for_target(&target, &HttpLimits::default())
                    .is_err(),
                "{bad}"
            );
        }
        assert!(query_names("a=1&api_key=2", "api_key"));
        assert!(query_names("api%5Fkey=2", "api_key"));
        assert!(!query_names("a=1", "api_key"));
    }
}
