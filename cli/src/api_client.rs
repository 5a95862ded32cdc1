//! A small client for the control plane's REST API, for the client
//! commands (`sluice sessions`, `sluice audit verify`). The token is sent as
//! a bearer token and never printed; API errors are shown by their problem
//! detail.

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;

/// Where the API is and who is calling.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The control plane's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "SLUICE_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// An access token with the admin or auditor role.
    #[arg(
        long,
        env = "SLUICE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// A configured API client.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// Builds a client; both the URL and the token are required.
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let (Some(base), Some(token)) = (&args.api_url, &args.token) else {
            bail!("--api-url and --token (or SLUICE_API_URL and SLUICE_TOKEN) are required");
        };
        let url = url::Url::parse(base).context("--api-url is not a URL")?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--api-url must be http:// or https://");
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.clone(),
            http: reqwest::Client::new(),
        })
    }

    /// GET a path (starting with `/`), returning the response once its
    /// status is a success.
    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let detail = resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "no detail".to_owned());
        bail!("the API answered {status}: {detail}")
    }

    /// GET a path and parse JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.get(path)
            .await?
            .json()
            .await
            .context("the API answered with invalid JSON")
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
