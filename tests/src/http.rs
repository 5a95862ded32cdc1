//! Real HTTP services for the HTTP gateway tests, started per test on free
//! ports: json-server (npm, `tests/http`) serving the demo customers, and
//! httpbin (PyPI) echoing what it receives, over plain HTTP/1.1 or served
//! by hypercorn (PyPI) over TLS with HTTP/2. All stop when dropped.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::gateway::free_port;

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    dir: tempfile::TempDir,
}

impl Service {
    /// A file in the service's own directory (its log, its certificate).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stand_ins() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("http")
}

/// json-server on a private copy of `tests/http/db.json` (it writes to it).
pub async fn json_server() -> anyhow::Result<Service> {
    let bin = stand_ins().join("node_modules/json-server/lib/cli/bin.js");
    if !bin.exists() {
        bail!("json-server is not installed: run `npm ci` in tests/http (.ci/run does)");
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db.json");
    std::fs::copy(stand_ins().join("db.json"), &db)?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("json-server.log"))?;
    let child = Command::new("node")
        .arg(bin)
        .args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--quiet",
        ])
        .arg(&db)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start node")?;
    wait_up(child, format!("http://127.0.0.1:{port}"), "/customers", dir).await
}

/// httpbin (`python3 -m httpbin.core`).
pub async fn httpbin() -> anyhow::Result<Service> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?.to_string();
    let args = ["-m", "httpbin.core", "--host", "127.0.0.1", "--port", &port];
    let child = python(&dir, "httpbin.log", &args)?;
    wait_up(child, format!("http://127.0.0.1:{port}"), "/get", dir).await
}

/// httpbin served by hypercorn over TLS, offering HTTP/2 (and HTTP/1.1) by
/// ALPN, with a certificate for 127.0.0.1 made for it: `cert.pem` in its
/// directory is the CA a client must trust. Each request is logged to
/// `access.log` as `VERSION METHOD PATH` (`2 GET /get`).
pub async fn httpbin_h2() -> anyhow::Result<Service> {
    let dir = tempfile::tempdir()?;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem())?;
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())?;
    let port = free_port()?;
    let bind = format!("127.0.0.1:{port}");
    let args = [
        "-m",
        "hypercorn",
        "--certfile",
        "cert.pem",
        "--keyfile",
        "key.pem",
        "--bind",
        &bind,
        "--access-logfile",
        "access.log",
        "--access-logformat",
        "%(H)s %(m)s %(U)s",
        "httpbin:app",
    ];
    let child = python(&dir, "hypercorn.log", &args)?;
    wait_up(child, format!("https://127.0.0.1:{port}"), "/get", dir).await
}

/// `python3 ARGS` in `dir`, its output to `log` there.
fn python(dir: &tempfile::TempDir, log: &str, args: &[&str]) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.path().join(log))?;
    Command::new("python3")
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start python3 (pip install -r tests/http/requirements.txt)")
}

async fn wait_up(
    child: Child,
    url: String,
    probe: &str,
    dir: tempfile::TempDir,
) -> anyhow::Result<Service> {
    let ca = dir.path().join("cert.pem");
    let mut s = Service { child, url, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut http = reqwest::Client::builder();
    if let Ok(pem) = std::fs::read(&ca) {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let http = http.build()?;
    loop {
        if let Ok(r) = http.get(format!("{}{probe}", s.url)).send().await
            && r.status().is_success()
        {
            return Ok(s);
        }
        if let Some(status) = s.child.try_wait()? {
            bail!("{} exited with {status}", s.url);
        }
        if Instant::now() > deadline {
            bail!("{} not up after 30s", s.url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A policy file for `sluice dev --policy` holding `text`; removed when
/// dropped.
pub fn policy_file(text: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile()?;
    f.write_all(text.as_bytes())?;
    Ok(f)
}

/// A problem document (or any JSON answer) parsed; panics with the text
/// when it is not JSON, so a test failure shows what came back.
pub fn problem(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The `sluice dev` flags registering the HTTP target `name` at `url`,
/// sent its credential `secret` as `auth` (`bearer`, `header:H`, …).
pub fn target_args(name: &str, url: &str, auth: &str, secret: &str) -> Vec<String> {
    vec![
        "--target".into(),
        format!("{name}={url}"),
        "--target-auth".into(),
        format!("{name}={auth}"),
        "--target-secret".into(),
        format!("{name}={secret}"),
    ]
}

/// Two upstreams that fail as real ones do: the first accepts connections
/// and never answers, the second resets every connection. Their URLs; they
/// serve for the rest of the test process.
pub fn broken_upstreams() -> anyhow::Result<(String, String)> {
    let hang = std::net::TcpListener::bind("127.0.0.1:0")?;
    let reset = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hang_url = format!("http://{}", hang.local_addr()?);
    let reset_url = format!("http://{}", reset.local_addr()?);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hang.incoming().flatten() {
            held.push(c);
        }
    });
    std::thread::spawn(move || {
        for c in reset.incoming().flatten() {
            let s = socket2::SockRef::from(&c);
            let _ = s.set_linger(Some(std::time::Duration::ZERO));
            drop(c);
        }
    });
    Ok((hang_url, reset_url))
}
