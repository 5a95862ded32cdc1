//! A private, throwaway PostgreSQL server: `sluice dev` runs its demo
//! database on one, and tests use one wherever they need a server whose
//! authentication method they choose (md5, SCRAM) or that they can restart.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Why the server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// A command or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The server or a setup statement failed.
    #[error("{0}")]
    Failed(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> LocalPgError {
    move |source| LocalPgError::Io { what, source }
}

/// A running server on 127.0.0.1; stopped and deleted when dropped.
pub struct LocalPostgres {
    child: Child,
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<nix::unistd::User>,
    /// TCP port on 127.0.0.1.
    pub port: u16,
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
fn run_as() -> Result<Option<nix::unistd::User>, LocalPgError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(u)) => Ok(Some(u)),
        _ => Err(LocalPgError::Failed(
            "running as root, and PostgreSQL refuses to run as root; create a `postgres` user or run as another user"
                .to_owned(),
        )),
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

fn free_port() -> Result<u16, LocalPgError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

impl LocalPostgres {
    /// Creates and starts a server whose TCP connections authenticate with
    /// `auth_host` (`scram-sha-256`, `md5`, `trust`). Local socket
    /// connections are trusted, for [`Self::admin`].
    pub async fn start(bin: &Path, auth_host: &str) -> Result<Self, LocalPgError> {
        let user = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .map_err(io("creating a temporary directory"))?;
        let root = dir.path();
        if let Some(u) = &user {
            nix::unistd::chown(root, Some(u.uid), Some(u.gid))
                .map_err(|e| LocalPgError::Failed(format!("chown {}: {e}", root.display())))?;
        }
        let init = command(bin.join("initdb"), user.as_ref(), root)
            .arg("-D")
            .arg(root.join("data"))
            .args([
                "-U",
                "sluice_admin",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
            ])
            .arg(format!("--auth-host={auth_host}"))
            .output()
            .await
            .map_err(io("running initdb"))?;
        if !init.status.success() {
            return Err(LocalPgError::Failed(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            )));
        }
        let port = free_port()?;
        let child = Self::spawn_server(bin, user.as_ref(), root, port)?;
        let mut server = Self {
            child,
            dir,
            bin: bin.to_path_buf(),
            user,
            port,
        };
        drop(server.admin("postgres").await?);
        Ok(server)
    }

    fn spawn_server(
        bin: &Path,
        user: Option<&nix::unistd::User>,
        root: &Path,
        port: u16,
    ) -> Result<Child, LocalPgError> {
        let log_path = root.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("creating the server log"))?;
        if let Some(u) = user {
            let _ = nix::unistd::chown(&log_path, Some(u.uid), Some(u.gid));
        }
        let err = log.try_clone().map_err(io("creating the server log"))?;
        command(bin.join("postgres"), user, root)
            .arg("-D")
            .arg(root.join("data"))
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
            ])
            .arg(format!("unix_socket_directories={}", root.display()))
            .args(["-c", "fsync=off"])
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io("starting postgres"))
    }

    /// A superuser connection over the local socket, retried while the
    /// server starts (up to 30 s).
    pub async fn admin(&mut self, database: &str) -> Result<tokio_postgres::Client, LocalPgError> {
        let socket_dir = self.dir.path().to_path_buf();
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
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(LocalPgError::Failed(format!(
                            "postgres exited ({status}): {}",
                            self.log().trim()
                        )));
                    }
                    if Instant::now() > deadline {
                        return Err(LocalPgError::Failed(format!(
                            "postgres did not accept connections within 30s: {e}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Runs `sql` as the superuser in `database`.
    pub async fn execute(&mut self, database: &str, sql: &str) -> Result<(), LocalPgError> {
        self.admin(database)
            .await?
            .batch_execute(sql)
            .await
            .map_err(|e| LocalPgError::Failed(format!("{e}")))
    }

    /// Creates a login role with `password` (stored with `encryption`:
    /// `scram-sha-256` or `md5`) owning a new database of the same name.
    pub async fn create_owned_database(
        &mut self,
        role: &str,
        password: &str,
        encryption: &str,
        database: &str,
    ) -> Result<(), LocalPgError> {
        self.execute(
            "postgres",
            &format!("SET password_encryption = '{encryption}'; CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        )
        .await?;
        self.execute(
            "postgres",
            &format!("CREATE DATABASE {database} OWNER {role}"),
        )
        .await
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub async fn stop_server(&mut self) {
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

    /// Restarts the server on the same port, as after a crash or upgrade.
    pub async fn restart(&mut self) -> Result<(), LocalPgError> {
        self.stop_server().await;
        self.child = Self::spawn_server(&self.bin, self.user.as_ref(), self.dir.path(), self.port)?;
        drop(self.admin("postgres").await?);
        Ok(())
    }

    /// Stops the server and deletes its files.
    pub async fn stop(mut self) {
        self.stop_server().await;
    }
}

/// A random hex password.
pub fn random_password() -> String {
    use rand::Rng as _;
    let bytes: [u8; 18] = rand::thread_rng().r#gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
