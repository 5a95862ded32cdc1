//! A private, throwaway PostgreSQL server for `sluice dev`, loaded with the
//! demo schema, so a new user sees the whole product with one command.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// The demo schema and data (`examples/demo/seed.sql`).
pub const SEED_SQL: &str = include_str!("../../examples/demo/seed.sql");

/// The role the gateway uses: it owns the demo database but is not a superuser.
pub const GATEWAY_ROLE: &str = "sluice_gateway";

/// A running demo server; stopped and deleted when dropped.
pub struct DemoPostgres {
    child: Child,
    _dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The gateway role's password (random for each run).
    pub password: String,
}

/// Finds the server binaries: `initdb` on PATH, or the Debian location.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                // A symlinked initdb (Debian's /usr/local/bin links) still
                // needs its own directory's postgres; resolve it.
                let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_both(d))
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// initdb refuses to run as root: run the server as the `postgres` system user then.
fn run_as() -> anyhow::Result<Option<nix::unistd::User>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres")? {
        Some(u) => Ok(Some(u)),
        None => bail!(
            "running as root, and PostgreSQL refuses to run as root; create a `postgres` user or run as another user"
        ),
    }
}

fn command(program: PathBuf, user: Option<&nix::unistd::User>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    cmd
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl DemoPostgres {
    /// Creates, starts and seeds a server under a temporary directory.
    pub async fn start(bin: &Path) -> anyhow::Result<Self> {
        let user = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-demo-pg-")
            .tempdir()?;
        let root = dir.path();
        let data = root.join("data");
        if let Some(u) = &user {
            nix::unistd::chown(root, Some(u.uid), Some(u.gid)).context("chown demo directory")?;
        }
        let init = command(bin.join("initdb"), user.as_ref(), root)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "sluice_admin",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .output()
            .await
            .context("cannot run initdb")?;
        if !init.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            );
        }
        let port = free_port()?;
        let log = std::fs::File::create(root.join("postgres.log"))?;
        if let Some(u) = &user {
            nix::unistd::chown(&root.join("postgres.log"), Some(u.uid), Some(u.gid))?;
        }
        let child = command(bin.join("postgres"), user.as_ref(), root)
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
            ])
            .arg(format!("unix_socket_directories={}", root.display()))
            .args(["-c", "fsync=off"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start postgres")?;
        let password = random_password();
        let mut server = Self {
            child,
            _dir: dir,
            port,
            password,
        };
        server.seed().await?;
        Ok(server)
    }

    async fn admin(&mut self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        let socket_dir = self._dir.path().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host_path(&socket_dir)
                .port(self.port)
                .user("sluice_admin")
                .dbname(database);
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    return Ok(client);
                }
                Err(e) => {
                    if let Some(status) = self.child.try_wait()? {
                        let log = std::fs::read_to_string(socket_dir.join("postgres.log"))
                            .unwrap_or_default();
                        bail!("demo postgres exited ({status}): {}", log.trim());
                    }
                    if Instant::now() > deadline {
                        return Err(e)
                            .context("demo postgres did not accept connections within 30s");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn seed(&mut self) -> anyhow::Result<()> {
        let admin = self.admin("postgres").await?;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {GATEWAY_ROLE} LOGIN PASSWORD '{}'",
                self.password
            ))
            .await
            .context("creating the gateway role")?;
        admin
            .batch_execute(&format!("CREATE DATABASE demo OWNER {GATEWAY_ROLE}"))
            .await
            .context("creating the demo database")?;
        let demo = self.admin("demo").await?;
        demo.batch_execute(&format!("SET ROLE {GATEWAY_ROLE}; {SEED_SQL}"))
            .await
            .context("loading the demo data")?;
        Ok(())
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SIGINT: PostgreSQL's "fast" shutdown.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn random_password() -> String {
    use rand::Rng as _;
    let bytes: [u8; 18] = rand::thread_rng().r#gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
