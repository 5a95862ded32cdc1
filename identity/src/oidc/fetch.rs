//! Fetching an issuer's discovery document and key set over HTTP.

use std::time::Duration;

use serde::Deserialize;

use super::config::OidcIssuerConfig;
use super::keys::KeySet;

/// Why an issuer's keys could not be fetched. Logged, never shown to a
/// client (who only learns that validation is unavailable).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or the answer was not a success.
    #[error("{url}: {reason}")]
    Http {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The discovery document names another issuer (OpenID Connect
    /// Discovery 1.0 §4.3 requires them to be equal).
    #[error("discovery at {url} names issuer {found:?}, not the configured one")]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The issuer it names.
        found: String,
    },
    /// The answer did not parse.
    #[error("{url}: not a valid document: {reason}")]
    Invalid {
        /// What was fetched.
        url: String,
        /// The parse error.
        reason: String,
    },
}

/// The parts of an OpenID Provider's metadata this gateway uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// Where the key set is.
    pub jwks_uri: String,
    /// The token endpoint (device flow polling).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The device authorization endpoint (RFC 8628).
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

/// An HTTP client with short timeouts, for IdP requests.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// Fetches and checks the issuer's discovery document.
pub async fn discover(
    http: &reqwest::Client,
    cfg: &OidcIssuerConfig,
) -> Result<ProviderMetadata, FetchError> {
    let url = cfg.discovery();
    let body = get(http, &url).await?;
    let meta: ProviderMetadata = serde_json::from_str(&body).map_err(|e| FetchError::Invalid {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    if meta.issuer != cfg.issuer {
        return Err(FetchError::IssuerMismatch {
            url,
            found: meta.issuer,
        });
    }
    Ok(meta)
}

/// Fetches the issuer's key set (through discovery unless `jwks_url` is
/// configured) and keeps its usable keys.
pub async fn fetch_keys(
    http: &reqwest::Client,
    cfg: &OidcIssuerConfig,
) -> Result<KeySet, FetchError> {
    let url = match &cfg.jwks_url {
        Some(u) => u.clone(),
        None => discover(http, cfg).await?.jwks_uri,
    };
    let body = get(http, &url).await?;
    KeySet::from_jwks(&body, &cfg.algorithms).map_err(|e| FetchError::Invalid {
        url,
        reason: e.to_string(),
    })
}

async fn get(http: &reqwest::Client, url: &str) -> Result<String, FetchError> {
    let fail = |reason: String| FetchError::Http {
        url: url.to_owned(),
        reason,
    };
    let resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("status {}", resp.status())));
    }
    resp.text().await.map_err(|e| fail(e.to_string()))
}
