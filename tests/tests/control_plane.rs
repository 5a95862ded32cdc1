#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A data-plane node and its control plane as separate processes, configured
//! from files as in production: the node keeps serving from its snapshot for
//! `max_snapshot_age` after losing the control plane, then refuses new
//! sessions (fail closed), and recovers when the control plane returns.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_e2e::gateway::{Api, connect, eventually, free_port};
use sluice_e2e::pg::TestDb;
use sluice_e2e::process::{Sluice, sluice_bin};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

const OBSERVE_POLICY: &str = include_str!("../../examples/policies/observe.yaml");
const MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(3);

/// Everything both processes share: configuration files, the store and the
/// signing key, on fixed ports so the control plane can come back on them.
struct Deployment {
    dir: tempfile::TempDir,
    grpc: u16,
    http: u16,
    pg: u16,
    node_http: u16,
}

impl Deployment {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            grpc: free_port().unwrap(),
            http: free_port().unwrap(),
            pg: free_port().unwrap(),
            node_http: free_port().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store_url(&self) -> String {
        format!("sqlite://{}", self.path("cp.db").display())
    }

    fn write_configs(&self) {
        let join_token = format!("sjt_e2e_{}", uuid::Uuid::new_v4().simple());
        let cp = format!(
            r#"store_url = "{store}"
grpc_listen = "127.0.0.1:{grpc}"
http_listen = "127.0.0.1:{http}"
insecure_grpc = true
issuer_url = "http://127.0.0.1:{http}"
signing_key_file = "{key}"
generate_signing_key = true
bootstrap_join_token = "{join_token}"
heartbeat_interval = "1s"
config_poll_interval = "1s"
"#,
            store = self.store_url(),
            grpc = self.grpc,
            http = self.http,
            key = self.path("signing-key.pem").display(),
        );
        let dp = format!(
            r#"node_name = "e2e-node"
control_plane_url = "http://127.0.0.1:{grpc}"
join_token = "{join_token}"
pg_listen = "127.0.0.1:{pg}"
http_listen = "127.0.0.1:{node_http}"
insecure_plaintext = true
max_snapshot_age = "{age}s"
"#,
            grpc = self.grpc,
            pg = self.pg,
            node_http = self.node_http,
            age = MAX_SNAPSHOT_AGE.as_secs(),
        );
        std::fs::write(self.path("cp.toml"), cp).unwrap();
        std::fs::write(self.path("dp.toml"), dp).unwrap();
    }

    /// Stands for an administrator having loaded the `observe` policy: the
    /// store is written before the control plane first starts.
    async fn seed_policy(&self) {
        use sluice_control_plane::store::{PutMode, Store};
        let store = Store::connect(&self.store_url()).await.unwrap();
        store
            .put_policy("observe", OBSERVE_POLICY, "e2e", PutMode::Upsert)
            .await
            .unwrap();
        store.close().await;
    }

    async fn start(&self, role: &str, config: &str) -> Sluice {
        let args = vec![
            role.to_owned(),
            "--config".to_owned(),
            self.path(config).display().to_string(),
        ];
        let log_dir = tempfile::tempdir().unwrap();
        tokio::task::spawn_blocking(move || Sluice::spawn(log_dir, &args, &[]))
            .await
            .unwrap()
            .unwrap()
    }

    async fn start_control_plane(&self) -> Sluice {
        let mut cp = self.start("control-plane", "cp.toml").await;
        let url = format!("http://127.0.0.1:{}/readyz", self.http);
        let ready = eventually(Duration::from_secs(30), || async {
            let status = reqwest::get(&url).await?.status();
            anyhow::ensure!(status.is_success(), "{status}");
            Ok(())
        })
        .await;
        assert!(cp.is_running(), "control plane exited:\n{}", cp.log());
        ready.unwrap_or_else(|e| panic!("control plane not ready: {e:#}\n{}", cp.log()));
        cp
    }

    /// `sluice token issue --config cp.toml ARGS`: the token it prints.
    fn issue(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(sluice_bin())
            .args(["token", "issue", "--config"])
            .arg(self.path("cp.toml"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn client_config(&self, token: &str, app: &str) -> Config {
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

    /// Whether the node's `/readyz` settles on `ready` (it is refreshed
    /// twice a second).
    async fn node_ready_is(&self, ready: bool) -> bool {
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

async fn customers(client: &Client) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM customers", &[])
        .await?
        .get(0))
}

/// Connects and counts the customers: the whole path works.
async fn session_works(d: &Deployment, token: &str, app: &str) -> anyhow::Result<Client> {
    let client = connect(&d.client_config(token, app)).await?;
    anyhow::ensure!(customers(&client).await? == 4);
    Ok(client)
}

fn wait_path(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_node_fails_closed_when_its_control_plane_is_gone_and_recovers() {
    let db = TestDb::with_sql(sluice_e2e::gateway::SEED_SQL)
        .await
        .unwrap();
    let d = Deployment::new();
    d.write_configs();
    d.seed_policy().await;

    let mut cp = d.start_control_plane().await;
    wait_path(&d.path("signing-key.pem"));
    let admin = d.issue(&["--subject", "admin", "--role", "admin"]);
    let agent = d.issue(&["--subject", "agent", "--kind", "agent", "--group", "agents"]);
    let api = Api::new(&format!("http://127.0.0.1:{}", d.http), &admin);
    let (status, body) = api
        .post(
            "/api/v1/targets",
            &json!({
                "name": "demo",
                "host": "127.0.0.1",
                "port": 5432,
                "database": db.name,
                "username": "postgres",
                "tls_mode": "disable",
            }),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");

    let dp = d.start("data-plane", "dp.toml").await;
    let steady = eventually(Duration::from_secs(30), || {
        session_works(&d, &agent, "e2e-steady")
    })
    .await
    .unwrap_or_else(|e| panic!("no working session: {e:#}\n{}", dp.log()));
    assert!(d.node_ready_is(true).await);

    // The control plane dies. Within the tolerance, the node goes on.
    cp.kill();
    let lost = Instant::now();
    session_works(&d, &agent, "e2e-during-outage")
        .await
        .unwrap();
    assert_eq!(customers(&steady).await.unwrap(), 4);
    assert!(
        lost.elapsed() < MAX_SNAPSHOT_AGE - Duration::from_secs(1),
        "the check within the tolerance took too long: {:?}",
        lost.elapsed()
    );

    // Past it, new sessions are refused with a clear reason...
    tokio::time::sleep_until((lost + MAX_SNAPSHOT_AGE + Duration::from_secs(2)).into()).await;
    let err = connect(&d.client_config(&agent, "e2e-refused"))
        .await
        .unwrap_err()
        .downcast::<tokio_postgres::Error>()
        .unwrap();
    let db_err = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        db_err.code(),
        &SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION
    );
    assert!(
        db_err
            .message()
            .contains("lost contact with its control plane"),
        "{}",
        db_err.message()
    );
    // ...open sessions run nothing more, and the node reports itself not ready.
    let err = customers(&steady).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert!(
        err.as_db_error()
            .is_some_and(|e| e.message().contains("lost contact with its control plane")),
        "{err}"
    );
    assert!(d.node_ready_is(false).await);

    // The control plane comes back on the same ports and store.
    let _cp = d.start_control_plane().await;
    eventually(Duration::from_secs(40), || {
        session_works(&d, &agent, "e2e-recovered")
    })
    .await
    .unwrap_or_else(|e| panic!("no recovery: {e:#}\n{}", dp.log()));
    assert_eq!(customers(&steady).await.unwrap(), 4);
    assert!(d.node_ready_is(true).await);

    // What happened during the outage reached the audit trail afterwards.
    let session = eventually(Duration::from_secs(20), || async {
        let sessions = api.sessions().await?;
        sessions
            .into_iter()
            .find(|s| s["application_name"] == "e2e-during-outage" && !s["ended_at"].is_null())
            .ok_or_else(|| anyhow::anyhow!("not recorded yet"))
    })
    .await
    .unwrap();
    let events = api.events(session["id"].as_str().unwrap()).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["text"] == "SELECT count(*) FROM customers" && e["rows"] == 1),
        "{events:?}"
    );
    drop(dp);
    drop(db);
}
