//! A running gateway for one test: `sluice dev` in front of a real database,
//! with the clients a test needs (tokio-postgres, psql, the REST API).

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::pg::TestDb;
use crate::process::{Ready, Sluice};

/// The demo schema and data `sluice dev` loads (`examples/demo/seed.sql`).
pub const SEED_SQL: &str = include_str!("../../examples/demo/seed.sql");

/// The four demo customers, by id.
pub const DEMO_CUSTOMERS: [&str; 4] = ["Alice Wonder", "Bruno Keller", "Chen Yu", "Dana Ortiz"];

/// `sluice dev` and the database behind it; both go away when dropped (the
/// gateway first).
#[derive(Debug)]
pub struct Gateway {
    /// The process.
    pub sluice: Sluice,
    /// The target database, when the fixture made one.
    pub db: Option<TestDb>,
}

impl Gateway {
    /// `sluice dev` with its own demo database (a private PostgreSQL server
    /// it starts itself), exactly as a new user runs it.
    pub async fn demo(args: &[&str]) -> anyhow::Result<Self> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let sluice = start(args).await?;
        Ok(Self { sluice, db: None })
    }

    /// `sluice dev` whose target `demo` is a fresh database on the test
    /// server loaded with the demo data: much faster to start than
    /// [`Self::demo`], and the test can inspect the database directly.
    pub async fn seeded(args: &[&str]) -> anyhow::Result<Self> {
        let db = TestDb::with_sql(SEED_SQL).await?;
        let mut full = vec![
            "--target".to_owned(),
            format!("demo={}?sslmode=disable", db.url),
        ];
        full.extend(args.iter().map(|s| (*s).to_owned()));
        let sluice = start(full).await?;
        Ok(Self {
            sluice,
            db: Some(db),
        })
    }

    /// `sluice dev` with exactly these arguments (targets included).
    pub async fn with_args(args: &[String]) -> anyhow::Result<Self> {
        let sluice = start(args.to_vec()).await?;
        Ok(Self { sluice, db: None })
    }

    /// What the ready file says.
    pub fn ready(&self) -> &Ready {
        self.sluice.ready()
    }

    /// The ready file's `pg_url`.
    pub fn pg_url(&self) -> &str {
        &self.ready().pg_url
    }

    /// The Postgres listener's address.
    pub fn addr(&self) -> SocketAddr {
        let cfg: Config = self.pg_url().parse().unwrap_or_else(|_| Config::new());
        let port = cfg.get_ports().first().copied().unwrap_or(0);
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A tokio-postgres configuration for the demo agent on `database`, in
    /// plaintext (the dev gateway accepts it on loopback).
    pub fn config(&self, database: &str, application_name: &str) -> Config {
        let addr = self.addr();
        let mut cfg = Config::new();
        cfg.host(addr.ip().to_string())
            .port(addr.port())
            .user("agent")
            .password(self.ready().agent_token.as_str())
            .dbname(database)
            .application_name(application_name)
            .ssl_mode(SslMode::Disable)
            .connect_timeout(Duration::from_secs(20));
        cfg
    }

    /// A connected tokio-postgres client on the first target.
    pub async fn connect(&self, application_name: &str) -> anyhow::Result<Client> {
        connect(&self.config(self.first_target(), application_name)).await
    }

    /// A connected client and the notices and notifications its connection
    /// receives.
    pub async fn connect_with_messages(
        &self,
        application_name: &str,
    ) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<AsyncMessage>)> {
        let cfg = self.config(self.first_target(), application_name);
        let (client, mut conn) = cfg.connect(NoTls).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                let _ = tx.send(m);
            }
        });
        Ok((client, rx))
    }

    /// The first registered target's name (what `pg_url` connects to).
    pub fn first_target(&self) -> &str {
        self.ready().targets.first().map_or("demo", String::as_str)
    }

    /// The REST API as the admin.
    pub fn api(&self) -> Api {
        Api::new(&self.ready().api_url, &self.ready().admin_token)
    }
}

async fn start(args: Vec<String>) -> anyhow::Result<Sluice> {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Sluice::dev(&refs)
    })
    .await?
}

/// Connects with `cfg` in plaintext and drives the connection in the background.
pub async fn connect(cfg: &Config) -> anyhow::Result<Client> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Runs `psql` (no `.psqlrc`, stop on the first error) with `url` and `args`
/// in `dir`.
pub async fn psql(url: &str, args: &[&str], dir: &std::path::Path) -> anyhow::Result<Output> {
    let out = tokio::process::Command::new("psql")
        .arg("--no-psqlrc")
        .args(["-v", "ON_ERROR_STOP=1"])
        .arg(url)
        .args(args)
        .current_dir(dir)
        .env("PGCONNECT_TIMEOUT", "20")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run psql")?;
    Ok(out)
}

/// A command's output as text, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port nothing listens on, for a server a test starts a little later.
/// It is taken below the kernel's range for outgoing connections: a port
/// from that range (what binding port 0 gives) can be taken in the meantime
/// by any connection the test makes, to Postgres, Redis or a control plane.
pub fn free_port() -> anyhow::Result<u16> {
    const FLOOR: u32 = 10_000;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let low = outgoing_ports_start().unwrap_or(32_768);
    if low > FLOOR + 1_000 {
        // Spread over the range, apart from other test processes' picks.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
        for _ in 0..256 {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = FLOOR + seed.wrapping_add(n.wrapping_mul(7_919)) % (low - FLOOR);
            let port = u16::try_from(port)?;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The first port of the kernel's range for outgoing connections.
fn outgoing_ports_start() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The REST API with a bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// An API client for `base` (no trailing slash) with `token`.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// `POST path` with a JSON body; returns the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// The newest client sessions (first page), newest first: records of
    /// configuration changes (kind `admin`, see [`Self::admin_changes`]) and
    /// of approval requests (kind `approval`) are left out.
    pub async fn sessions(&self) -> anyhow::Result<Vec<Value>> {
        let page = self.get("/api/v1/sessions?limit=500").await?;
        let all = page["items"].as_array().cloned().unwrap_or_default();
        Ok(all
            .into_iter()
            .filter(|s| s["identity_kind"] != "admin" && s["identity_kind"] != "approval")
            .collect())
    }

    /// The recorded configuration changes, newest first.
    pub async fn admin_changes(&self) -> anyhow::Result<Vec<Value>> {
        let page = self.get("/api/v1/sessions?kind=admin&limit=500").await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    /// Every event of a session, in order.
    pub async fn events(&self, session_id: &str) -> anyhow::Result<Vec<Value>> {
        let page = self
            .get(&format!("/api/v1/sessions/{session_id}/events?limit=1000"))
            .await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    /// Waits up to `wait` for the session whose `application_name` is
    /// `app` to be recorded as ended, and returns it.
    pub async fn ended_session(&self, app: &str, wait: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let sessions = self.sessions().await?;
            let found = sessions
                .iter()
                .find(|s| s["application_name"] == app)
                .cloned();
            if let Some(s) = &found
                && !s["ended_at"].is_null()
            {
                return Ok(s.clone());
            }
            if Instant::now() > deadline {
                bail!("session {app:?} not recorded as ended within {wait:?}: {found:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until `f` succeeds, retrying every 200 ms for up to `wait`;
/// returns the last error if it never does.
pub async fn eventually<T, F, Fut>(wait: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + wait;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("still failing after {wait:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
