//! `sluice login`: the OAuth 2.0 device authorization grant (RFC 8628)
//! against the organisation's IdP. The person approves in a browser; the
//! token lands in the user's config directory, readable only by them, where
//! `sluice connect` finds it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_identity::oidc::{OidcIssuerConfig, fetch};

use crate::output;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Arguments of `sluice login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The IdP's issuer URL (its discovery document is fetched from there).
    #[arg(long, env = "SLUICE_OIDC_ISSUER")]
    pub issuer: String,
    /// The public client registered at the IdP for the device flow.
    #[arg(long, env = "SLUICE_OIDC_CLIENT_ID")]
    pub client_id: String,
    /// Scopes to request.
    #[arg(long, default_value = "openid", env = "SLUICE_OIDC_SCOPE")]
    pub scope: String,
    /// A resource indicator (RFC 8707) naming the gateway, for IdPs that
    /// set the audience from it.
    #[arg(long, env = "SLUICE_OIDC_RESOURCE")]
    pub resource: Option<String>,
    /// Where the token is stored (default: the user's config directory).
    #[arg(long, env = "SLUICE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// What is stored after a login.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredToken {
    /// The issuer that signed it.
    pub issuer: String,
    /// The access token (a bearer credential: kept owner-only).
    pub access_token: String,
    /// When it expires, seconds since the epoch (0: unknown).
    pub expires_at: u64,
}

/// Where tokens live unless `--token-file` says otherwise.
pub fn default_token_file() -> anyhow::Result<PathBuf> {
    Ok(dirs::config_dir()
        .context("no config directory for this user; pass --token-file")?
        .join("sluice")
        .join("token.json"))
}

/// Reads the stored token.
pub fn load(file: Option<&Path>) -> anyhow::Result<StoredToken> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => default_token_file()?,
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no token at {}: run `sluice login` first", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Sluice token file", path.display()))
}

/// What one poll of the token endpoint said.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// The person has not approved yet.
    Pending,
    /// Poll less often (by 5 s, RFC 8628 §3.5).
    SlowDown,
    /// Approved: the access token and its lifetime in seconds.
    Token(String, u64),
    /// Refused, expired, or not understood.
    Failed(String),
}

/// Reads a token endpoint answer (pure).
pub fn poll_result(body: &Value) -> Poll {
    if let Some(token) = body["access_token"].as_str() {
        return Poll::Token(token.to_owned(), body["expires_in"].as_u64().unwrap_or(0));
    }
    match body["error"].as_str() {
        Some("authorization_pending") => Poll::Pending,
        Some("slow_down") => Poll::SlowDown,
        Some("access_denied") => Poll::Failed("the sign-in was denied".to_owned()),
        Some("expired_token") => Poll::Failed(
            "the code expired before it was approved; run `sluice login` again".to_owned(),
        ),
        Some(other) => Poll::Failed(format!("the identity provider answered {other}")),
        None => Poll::Failed("the identity provider's answer was not understood".to_owned()),
    }
}

/// Runs the device flow and stores the token.
pub async fn run(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let http = fetch::http_client();
    let meta = fetch::discover(&http, &OidcIssuerConfig::new(&args.issuer, "-"))
        .await
        .context("cannot read the identity provider's discovery document")?;
    let device_url = meta
        .device_authorization_endpoint
        .context("the identity provider does not offer the device flow")?;
    let token_url = meta
        .token_endpoint
        .context("the identity provider has no token endpoint")?;
    let mut form = vec![
        ("client_id", args.client_id.as_str()),
        ("scope", args.scope.as_str()),
    ];
    if let Some(r) = &args.resource {
        form.push(("resource", r));
    }
    let start: Value = http
        .post(&device_url)
        .form(&form)
        .send()
        .await?
        .json()
        .await?;
    let (Some(user_code), Some(device_code)) =
        (start["user_code"].as_str(), start["device_code"].as_str())
    else {
        bail!(
            "the identity provider refused the device flow: {}",
            start["error"].as_str().unwrap_or("no code")
        );
    };
    let uri = start["verification_uri"].as_str().unwrap_or_default();
    output::stdout(&format!(
        "To sign in, open {uri}\nand enter the code: {user_code}\n{}",
        start["verification_uri_complete"]
            .as_str()
            .map(|c| format!("(or open {c})\n"))
            .unwrap_or_default()
    ));
    let mut interval = Duration::from_secs(start["interval"].as_u64().unwrap_or(5).max(1));
    let deadline = std::time::Instant::now()
        + Duration::from_secs(start["expires_in"].as_u64().unwrap_or(600));
    let mut form = vec![
        ("client_id", args.client_id.as_str()),
        ("grant_type", DEVICE_GRANT),
        ("device_code", device_code),
    ];
    if let Some(r) = &args.resource {
        form.push(("resource", r));
    }
    let (token, lifetime) = loop {
        if std::time::Instant::now() > deadline {
            bail!("the code expired before it was approved; run `sluice login` again");
        }
        tokio::time::sleep(interval).await;
        let body: Value = http
            .post(&token_url)
            .form(&form)
            .send()
            .await?
            .json()
            .await?;
        match poll_result(&body) {
            Poll::Pending => {}
            Poll::SlowDown => interval += Duration::from_secs(5),
            Poll::Token(t, lifetime) => break (t, lifetime),
            Poll::Failed(why) => bail!("sign-in failed: {why}"),
        }
    };
    let path = match &args.token_file {
        Some(p) => p.clone(),
        None => default_token_file()?,
    };
    store(
        &path,
        &StoredToken {
            issuer: args.issuer.clone(),
            access_token: token,
            expires_at: if lifetime == 0 {
                0
            } else {
                now_secs() + lifetime
            },
        },
    )?;
    output::stdout(&format!("Signed in. Token stored in {}\n", path.display()));
    Ok(ExitCode::SUCCESS)
}

fn store(path: &Path, token: &StoredToken) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Replace rather than rewrite, so a file that was once readable by
    // others does not keep its old mode.
    let _ = std::fs::remove_file(path);
    sluice_common::tls::write_private(path, &serde_json::to_vec_pretty(token)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;

    use super::*;

    #[test]
    fn token_endpoint_answers_are_read() {
        assert_eq!(
            poll_result(&json!({"error": "authorization_pending"})),
            Poll::Pending
        );
        assert_eq!(poll_result(&json!({"error": "slow_down"})), Poll::SlowDown);
        assert_eq!(
            poll_result(&json!({"access_token": "t", "expires_in": 60})),
            Poll::Token("t".into(), 60)
        );
        assert!(matches!(
            poll_result(&json!({"error": "access_denied"})),
            Poll::Failed(_)
        ));
        assert!(matches!(poll_result(&json!("garbage")), Poll::Failed(_)));
    }

    #[test]
    fn a_stored_token_is_owner_only_even_over_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let t = StoredToken {
            issuer: "i".into(),
            access_token: "a".into(),
            expires_at: 1,
        };
        store(&path, &t).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(Some(&path)).unwrap().access_token, "a");
    }
}
