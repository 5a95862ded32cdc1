//! A real control plane on a real store, its router served on a loopback
//! port, and a client that calls it as an admin would.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use sluice_common::Shutdown;
use sluice_common::health::Readiness;
use sluice_control_plane::store::{EventKind, StoredEvent};
use sluice_control_plane::{ControlPlane, ControlPlaneConfig};
use sluice_e2e::pg::TestDb;
use sluice_identity::{PrincipalKind, Role};

/// A running API and what it needs to stay alive.
pub struct Api {
    pub cp: ControlPlane,
    pub ready: Readiness,
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
    _db: Option<TestDb>,
}

impl Api {
    /// On a fresh SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        Self::start(url, dir, None).await
    }

    /// On a fresh Postgres database.
    pub async fn postgres() -> Self {
        let db = TestDb::create().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        Self::start(db.url.clone(), dir, Some(db)).await
    }

    async fn start(store_url: String, dir: tempfile::TempDir, db: Option<TestDb>) -> Self {
        // Built from JSON like the real config file, so fields added later
        // with defaults do not break these tests.
        let config: ControlPlaneConfig = serde_json::from_value(json!({
            "store_url": store_url,
            "grpc_listen": "127.0.0.1:0",
            "insecure_grpc": true,
            "issuer_url": "http://127.0.0.1",
            "signing_key_file": dir.path().join("signing.pem"),
            "generate_signing_key": true,
            "secrets_key_file": dir.path().join("secrets.key"),
            "generate_secrets_key": true,
        }))
        .unwrap();
        let shutdown = Shutdown::new();
        let cp = ControlPlane::start(config, shutdown.clone()).await.unwrap();
        let ready = Readiness::default();
        let router = sluice_web_api::router(cp.clone(), ready.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(sluice_web_api::serve(listener, router, shutdown.clone()));
        let admin = token_for(&cp, "alice", &[Role::Admin]);
        Self {
            cp,
            ready,
            base,
            http: reqwest::Client::new(),
            admin,
            shutdown,
            _dir: dir,
            _db: db,
        }
    }

    /// A token for `name` holding `roles`.
    pub fn token(&self, name: &str, roles: &[Role]) -> String {
        token_for(&self.cp, name, roles)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A request as the admin.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(&self.admin)
    }

    /// GET as the admin, returning status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.req(Method::GET, path)).await
    }

    /// POST JSON as the admin.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        send(self.req(Method::POST, path).json(body)).await
    }

    /// Records a session start for `identity` on `target` at `at` µs.
    pub async fn add_session(&self, id: &str, identity: &str, target: &str, at: i64) {
        let start = EventKind::SessionStart {
            identity: identity.to_owned(),
            identity_kind: "agent".to_owned(),
            groups: vec!["eng".to_owned()],
            target: target.to_owned(),
            client_addr: "127.0.0.1:5555".to_owned(),
            tls: true,
            protocol: "postgres".to_owned(),
            token_id: "tok-1".to_owned(),
            application_name: "psql".to_owned(),
            node_id: "node-1".to_owned(),
        };
        self.cp
            .store
            .append_events(&[StoredEvent {
                session_id: id.to_owned(),
                seq: 1,
                at,
                kind: start,
            }])
            .await
            .unwrap();
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn token_for(cp: &ControlPlane, name: &str, roles: &[Role]) -> String {
    cp.issuer
        .issue(
            name,
            PrincipalKind::Person,
            &[],
            roles,
            Duration::from_secs(300),
        )
        .unwrap()
        .token
}

/// Sends and returns the status and the body as JSON (`Null` if empty).
pub async fn send(req: RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, body)
}

/// Asserts `resp` is an RFC 9457 problem with `status`, and returns its body.
pub async fn assert_problem(resp: Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ctype = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(ctype, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status, "status member: {body}");
    assert_eq!(body["type"], "about:blank");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title: {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail: {body}"
    );
    body
}
