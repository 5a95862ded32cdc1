//! A production-shaped deployment for one test: control-plane replicas and a
//! data-plane node as separate `sluice` processes configured from files,
//! sharing one store and signing key, on fixed ports so a replica can come
//! back on them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_postgres::Config;
use tokio_postgres::config::SslMode;

use crate::gateway::{Api, eventually, free_port};
use crate::process::{Sluice, sluice_bin};

/// How the deployment is shaped.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store every replica shares (`sqlite://…` is made in the test's
    /// directory when `None`).
    pub store_url: Option<String>,
    /// Redis, to share changes between replicas at once.
    pub redis_url: Option<String>,
    /// Control-plane replicas.
    pub replicas: usize,
    /// How often replicas poll the store for changes made elsewhere.
    pub poll: Duration,
    /// The node's tolerance without its control plane.
    pub max_snapshot_age: Duration,
    /// The node channel over TLS: the replicas serve a self-signed
    /// certificate, which the node trusts as its `control_plane_ca`.
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            store_url: None,
            redis_url: None,
            replicas: 1,
            poll: Duration::from_secs(1),
            max_snapshot_age: Duration::from_secs(3),
            tls: false,
        }
    }
}

/// Ports of one control-plane replica.
#[derive(Debug, Clone, Copy)]
pub struct Replica {
    /// gRPC, for nodes.
    pub grpc: u16,
    /// HTTP, for the API.
    pub http: u16,
}

/// Configuration files, ports and the shared directory.
#[derive(Debug)]
pub struct Deployment {
    dir: tempfile::TempDir,
    /// The replicas' ports; the node attaches to the first.
    pub replicas: Vec<Replica>,
    /// The node's Postgres port.
    pub pg: u16,
    /// The node's health port.
    pub node_http: u16,
    /// The store URL.
    pub store_url: String,
}

impl Deployment {
    /// Writes the configuration files.
    pub fn new(options: &Options) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store_url = options
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("cp.db").display()));
        let replicas = (0..options.replicas.max(1))
            .map(|_| {
                Ok(Replica {
                    grpc: free_port()?,
                    http: free_port()?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let d = Self {
            dir,
            replicas,
            pg: free_port()?,
            node_http: free_port()?,
            store_url,
        };
        d.write_configs(options)?;
        Ok(d)
    }

    /// A file in the deployment's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_configs(&self, o: &Options) -> anyhow::Result<()> {
        let join_token = format!("sjt_e2e_{}", uuid::Uuid::new_v4().simple());
        let redis = o
            .redis_url
            .as_ref()
            .map(|u| format!("redis_url = \"{u}\"\n"))
            .unwrap_or_default();
        let (grpc_security, scheme, ca) = if o.tls {
            let certs = sluice_common::tls::ensure_self_signed(&self.path("tls"))?;
            (
                format!(
                    "[grpc_tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                    certs.cert.display(),
                    certs.key.display()
                ),
                "https",
                format!("control_plane_ca = \"{}\"\n", certs.cert.display()),
            )
        } else {
            ("insecure_grpc = true\n".to_owned(), "http", String::new())
        };
        for (i, r) in self.replicas.iter().enumerate() {
            let cp = format!(
                "store_url = \"{store}\"\ngrpc_listen = \"127.0.0.1:{grpc}\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
                 issuer_url = \"http://sluice.test\"\nsigning_key_file = \"{key}\"\n\
                 generate_signing_key = {generate}\nbootstrap_join_token = \"{join_token}\"\n\
                 heartbeat_interval = \"1s\"\nconfig_poll_interval = \"{poll}ms\"\n{redis}{grpc_security}",
                store = self.store_url,
                grpc = r.grpc,
                http = r.http,
                key = self.path("signing-key.pem").display(),
                generate = i == 0,
                poll = o.poll.as_millis(),
            );
            std::fs::write(self.path(&format!("cp{i}.toml")), cp)?;
        }
        let dp = format!(
            "node_name = \"e2e-node\"\ncontrol_plane_url = \"{scheme}://127.0.0.1:{grpc}\"\njoin_token = \"{join_token}\"\n\
             pg_listen = \"127.0.0.1:{pg}\"\nhttp_listen = \"127.0.0.1:{node_http}\"\ninsecure_plaintext = true\n\
             max_snapshot_age = \"{age}ms\"\n{ca}",
            grpc = self.replicas[0].grpc,
            pg = self.pg,
            node_http = self.node_http,
            age = o.max_snapshot_age.as_millis(),
        );
        std::fs::write(self.path("dp.toml"), dp)?;
        Ok(())
    }

    async fn start(&self, role: &str, config: &str) -> anyhow::Result<Sluice> {
        let args = vec![
            role.to_owned(),
            "--config".to_owned(),
            self.path(config).display().to_string(),
        ];
        let log_dir = tempfile::tempdir()?;
        tokio::task::spawn_blocking(move || Sluice::spawn(log_dir, &args, &[])).await?
    }

    /// Starts replica `i` and waits until its API answers. The first replica
    /// creates the signing key; start it first.
    pub async fn start_control_plane(&self, i: usize) -> anyhow::Result<Sluice> {
        let mut cp = self.start("control-plane", &format!("cp{i}.toml")).await?;
        let url = format!("http://127.0.0.1:{}/readyz", self.replicas[i].http);
        let ready = eventually(Duration::from_secs(30), || async {
            let status = reqwest::get(&url).await?.status();
            anyhow::ensure!(status.is_success(), "{status}");
            Ok(())
        })
        .await;
        anyhow::ensure!(cp.is_running(), "control plane exited:\n{}", cp.log());
        ready.map_err(|e| anyhow::anyhow!("control plane not ready: {e:#}\n{}", cp.log()))?;
        wait_path(&self.path("signing-key.pem"))?;
        Ok(cp)
    }

    /// Starts the node.
    pub async fn start_node(&self) -> anyhow::Result<Sluice> {
        self.start("data-plane", "dp.toml").await
    }

    /// `sluice token issue --config cp0.toml ARGS`: the token it prints.
    pub fn issue(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new(sluice_bin())
            .args(["token", "issue", "--config"])
            .arg(self.path("cp0.toml"))
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// The API of replica `i` with `token`.
    pub fn api(&self, i: usize, token: &str) -> Api {
        Api::new(
            &format!("http://127.0.0.1:{}", self.replicas[i].http),
            token,
        )
    }

    /// A client configuration for the node, target `demo`, in plaintext.
    pub fn client_config(&self, token: &str, app: &str) -> Config {
        let mut cfg = Config::new();
        cfg.host("127.0.0.1")
            .port(self.pg)
            .user("agent")
            .password(token)
            .dbname("demo")
            .application_name(app)
            .ssl_mode(SslMode::Disable)
            .connect_timeout(Duration::from_secs(10));
        cfg
    }

    /// Whether the node's `/readyz` settles on `ready` within 5 s.
    pub async fn node_ready_is(&self, ready: bool) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.node_http);
        eventually(Duration::from_secs(5), || async {
            let got = matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success());
            anyhow::ensure!(got == ready);
            Ok(())
        })
        .await
        .is_ok()
    }
}

fn wait_path(p: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        anyhow::ensure!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
