//! A real OpenID provider (`oidc-provider` from npm, `tests/oidc/`) as a
//! test's identity provider: installed with `npm ci` on first use, started
//! as a node process, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// The audience the stand-in issues its gateway tokens for.
pub const AUDIENCE: &str = "urn:sluice:gateway";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Runs `npm ci` in `tests/oidc` unless its packages are installed.
pub fn ensure_installed() -> anyhow::Result<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = provider_dir();
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .context("cannot run npm (Node.js 20+ and npm are needed for the OIDC tests)")?;
    if !status.success() {
        bail!("npm ci in {} failed: {status}", dir.display());
    }
    Ok(())
}

/// A running provider. Its signing keys live in a file of the test's
/// directory, so a restart on the same port is the same issuer.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    /// The issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// Its port.
    pub port: u16,
    keys: PathBuf,
    log: PathBuf,
}

impl OidcProvider {
    /// Starts a provider on `port` (0: any) keeping its keys in `keys`; with
    /// `rotate`, a new signing key is added in front of the old ones.
    pub fn start(keys: &Path, port: u16, rotate: bool) -> anyhow::Result<Self> {
        ensure_installed()?;
        let dir = keys.parent().context("keys file has no directory")?;
        let ready = dir.join(format!("oidc-ready-{}.json", uuid::Uuid::new_v4()));
        let log = dir.join(format!("oidc-{}.log", uuid::Uuid::new_v4()));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new("node");
        cmd.arg(provider_dir().join("provider.mjs"))
            .args(["--port", &port.to_string(), "--keys"])
            .arg(keys)
            .arg("--ready")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if rotate {
            cmd.arg("--rotate");
        }
        let mut child = cmd.spawn().context("cannot start node")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                let port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                let port = port.context("ready file without a port")?;
                return Ok(Self {
                    child,
                    issuer: format!("http://127.0.0.1:{port}"),
                    port,
                    keys: keys.to_path_buf(),
                    log,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "OIDC provider exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("OIDC provider not ready after 30s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops this provider and starts it again on the same port with a new
    /// signing key in front (key rotation at the IdP).
    pub fn rotate(mut self) -> anyhow::Result<Self> {
        self.stop();
        Self::start(&self.keys, self.port, true)
    }

    /// Stops the process.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client-credentials token for `client` (secret `{client}-secret`),
    /// for `resource` (the gateway's audience unless given).
    pub async fn client_token(
        &self,
        client: &str,
        resource: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("scope", "gateway".to_owned()),
        ];
        if let Some(r) = resource {
            form.push(("resource", r.to_owned()));
        }
        let resp: Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&form)
            .send()
            .await?
            .json()
            .await?;
        resp["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no access token: {resp}"))
    }

    /// Approves a pending device-flow user code as `account`, as a person
    /// would in the browser.
    pub async fn approve(&self, user_code: &str, account: &str) -> anyhow::Result<()> {
        let resp: Value = reqwest::Client::new()
            .post(format!("{}/test/approve", self.issuer))
            .json(&serde_json::json!({"user_code": user_code, "account": account}))
            .send()
            .await?
            .json()
            .await?;
        if resp["approved"] != Value::Bool(true) {
            bail!("user code {user_code} was not approved: {resp}");
        }
        Ok(())
    }

    /// A person's token through the device flow (client `sluice-cli`),
    /// approved as `account` without a browser.
    pub async fn device_token(&self, account: &str) -> anyhow::Result<String> {
        let http = reqwest::Client::new();
        let start: Value = http
            .post(format!("{}/device/auth", self.issuer))
            .form(&[("client_id", "sluice-cli"), ("scope", "openid gateway")])
            .send()
            .await?
            .json()
            .await?;
        let user_code = start["user_code"].as_str().context("no user code")?;
        let device_code = start["device_code"].as_str().context("no device code")?;
        self.approve(user_code, account).await?;
        let resp: Value = http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("client_id", "sluice-cli"),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code),
            ])
            .send()
            .await?
            .json()
            .await?;
        resp["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no access token: {resp}"))
    }

    /// How many times the key set has been downloaded from this process.
    pub async fn jwks_downloads(&self) -> anyhow::Result<u64> {
        let v: Value = reqwest::get(format!("{}/test/stats", self.issuer))
            .await?
            .json()
            .await?;
        v["jwks"].as_u64().context("no jwks count")
    }

    /// The `[[oidc]]` configuration trusting this provider, with `extra`
    /// TOML lines appended to the table.
    pub fn config_toml(&self, extra: &str) -> String {
        format!(
            "[[oidc]]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nalgorithms = [\"RS256\"]\n{extra}\n",
            self.issuer
        )
    }

    /// The provider's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
