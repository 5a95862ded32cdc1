//! Starting the real `sluice` binary, as a user would, and waiting until it
//! says it is ready.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Path of the `sluice` binary built alongside the tests: it sits next to
/// the test executable's directory. `cargo test --workspace` builds it, but
/// `cargo test -p sluice-e2e` does not, so [`ensure_built`] builds it too.
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/test-binary -> target/debug/sluice
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    dir.join("sluice")
}

/// Builds the `sluice` binary once per test process with the cargo running
/// the tests, so a test never runs a stale gateway. Does nothing when
/// `SLUICE_BIN` names a binary or the tests were not started by cargo.
pub fn ensure_built() -> anyhow::Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let (Err(_), Ok(cargo)) = (std::env::var("SLUICE_BIN"), std::env::var("CARGO")) else {
                return Ok(());
            };
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "sluice", "--bin", "sluice"]);
            if sluice_bin().parent().and_then(Path::file_name) == Some("release".as_ref()) {
                cmd.arg("--release");
            }
            match cmd.status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("cargo build -p sluice failed: {s}")),
                Err(e) => Err(format!("cannot run cargo build -p sluice: {e}")),
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// What `sluice dev --ready-file` writes.
#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    /// libpq URL for the demo agent, token included.
    pub pg_url: String,
    /// Base URL of the REST API.
    pub api_url: String,
    /// Admin bearer token.
    pub admin_token: String,
    /// Agent token.
    pub agent_token: String,
    /// Registered targets.
    pub targets: Vec<String>,
    /// Base URL of the HTTP gateway (`{url}/http/{target}/{path}`).
    #[serde(default)]
    pub http_gateway_url: String,
}

/// A running `sluice` process; killed when dropped.
#[derive(Debug)]
pub struct Sluice {
    child: Child,
    /// Its data directory (kept alive with the process).
    pub dir: tempfile::TempDir,
    /// What it reported once ready (for `dev`).
    pub ready: Option<Ready>,
    log: PathBuf,
}

impl Sluice {
    /// Starts `sluice dev` on free ports with extra `args`, and waits for
    /// its ready file.
    pub fn dev(args: &[&str]) -> anyhow::Result<Self> {
        Self::dev_with_env(args, &[])
    }

    /// `sluice dev ARGS` with extra environment variables.
    pub fn dev_with_env(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ready_file = dir.path().join("ready.json");
        let mut full: Vec<String> = vec![
            "dev".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--ready-file".into(),
            ready_file.display().to_string(),
        ];
        // Free loopback ports, unless the test picks the address itself.
        for flag in ["--pg-listen", "--http-listen", "--http-gateway-listen"] {
            if !args.contains(&flag) {
                full.extend([flag.to_owned(), "127.0.0.1:0".to_owned()]);
            }
        }
        full.extend(args.iter().map(|s| (*s).to_owned()));
        let mut s = Self::spawn(dir, &full, env)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file)
                && let Ok(ready) = serde_json::from_str::<Ready>(&text)
            {
                s.ready = Some(ready);
                return Ok(s);
            }
            if let Some(status) = s.child.try_wait()? {
                anyhow::bail!("sluice dev exited with {status}:\n{}", s.log());
            }
            if Instant::now() > deadline {
                anyhow::bail!("sluice dev not ready after 60s:\n{}", s.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `sluice ARGS` with `env`, in `dir`, logging to a file there.
    pub fn spawn(
        dir: tempfile::TempDir,
        args: &[String],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        ensure_built()?;
        let log = dir.path().join("sluice.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(sluice_bin());
        cmd.args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot start {}: {e} (build it with cargo build)",
                sluice_bin().display()
            )
        })?;
        Ok(Self {
            child,
            dir,
            ready: None,
            log,
        })
    }

    /// The ready file's contents (panics if this is not a `dev` process).
    pub fn ready(&self) -> &Ready {
        self.ready
            .as_ref()
            .unwrap_or_else(|| panic!("not a dev process"))
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGINT (Ctrl-C) and waits up to `timeout` for a clean exit.
    pub fn interrupt(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY-free: `kill` via the shell avoids unsafe FFI in tests.
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                anyhow::bail!("sluice did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if self.is_running() {
            // A clean stop lets the demo database shut down too.
            if self.interrupt(Duration::from_secs(10)).is_err() {
                self.kill();
            }
        }
    }
}
