//! A small, faithful stand-in for the Slack Web API: `chat.postMessage`,
//! `chat.update` and `users.info`, answering like Slack (`{"ok": false,
//! "error": ...}` with HTTP 200 on a bad call), refusing calls without the
//! bot token as `Authorization: Bearer xoxb-…`, checking the payload shapes
//! Slack requires, and recording every call for the test to inspect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `chat.postMessage`, `chat.update` or `users.info`.
    pub method: String,
    /// The JSON body (or, for `users.info`, the query as an object).
    pub body: Value,
}

/// A Slack user the fake knows.
#[derive(Debug, Clone)]
pub struct User {
    /// Email on the profile.
    pub email: String,
    /// Whether Slack says the email is confirmed.
    pub confirmed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<Call>,
    users: HashMap<String, User>,
    next_ts: u64,
}

#[derive(Clone)]
struct Fake {
    token: String,
    inner: Arc<Mutex<Inner>>,
}

/// The running fake; it stops when the test's runtime ends.
#[derive(Clone)]
pub struct FakeSlack {
    /// Base URL to configure as the Web API URL.
    pub url: String,
    fake: Fake,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack").field("url", &self.url).finish()
    }
}

impl FakeSlack {
    /// Starts a fake accepting only `bot_token` (which must be `xoxb-…`).
    pub async fn start(bot_token: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bot_token.starts_with("xoxb-"),
            "bot tokens start with xoxb-"
        );
        let fake = Fake {
            token: bot_token.to_owned(),
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/chat.postMessage", post(post_message))
            .route("/chat.update", post(update))
            .route("/users.info", get(users_info))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            fake,
        })
    }

    /// Adds a user `users.info` knows.
    pub fn add_user(&self, id: &str, user: User) {
        if let Ok(mut g) = self.fake.inner.lock() {
            g.users.insert(id.to_owned(), user);
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.fake
            .inner
            .lock()
            .map(|g| g.calls.clone())
            .unwrap_or_default()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }
}

fn authorised(fake: &Fake, headers: &HeaderMap) -> Result<(), Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match auth.strip_prefix("Bearer ") {
        None => Err(json!({"ok": false, "error": "not_authed"})),
        Some(t) if t == fake.token => Ok(()),
        Some(_) => Err(json!({"ok": false, "error": "invalid_auth"})),
    }
}

fn json_body(headers: &HeaderMap, body: &str) -> Result<Value, Value> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/json") {
        return Err(json!({"ok": false, "error": "invalid_form_data"}));
    }
    serde_json::from_str(body).map_err(|_| json!({"ok": false, "error": "invalid_json"}))
}

/// Block Kit as Slack checks it: an array of blocks with known types; every
/// button has an action id, a value and a plain-text label.
fn valid_blocks(blocks: &Value) -> bool {
    let Some(list) = blocks.as_array() else {
        return false;
    };
    !list.is_empty()
        && list.iter().all(|b| match b["type"].as_str() {
            Some("section") => b["text"]["type"].is_string() && b["text"]["text"].is_string(),
            Some("context") => b["elements"].as_array().is_some_and(|e| !e.is_empty()),
            Some("actions") => b["elements"].as_array().is_some_and(|e| {
                !e.is_empty()
                    && e.iter().all(|x| {
                        x["type"] == "button"
                            && x["action_id"].is_string()
                            && x["value"].is_string()
                            && x["text"]["type"] == "plain_text"
                    })
            }),
            _ => false,
        })
}

fn record(fake: &Fake, method: &str, body: Value) -> u64 {
    let Ok(mut g) = fake.inner.lock() else {
        return 0;
    };
    g.calls.push(Call {
        method: method.to_owned(),
        body,
    });
    g.next_ts += 1;
    g.next_ts
}

async fn post_message(
    State(fake): State<Fake>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    let checked = authorised(&fake, &headers).and_then(|()| json_body(&headers, &body));
    let v = match checked {
        Ok(v) => v,
        Err(e) => return axum::Json(e),
    };
    let Some(channel) = v["channel"].as_str().map(str::to_owned) else {
        return axum::Json(json!({"ok": false, "error": "channel_not_found"}));
    };
    if !v["text"].is_string() || !valid_blocks(&v["blocks"]) {
        return axum::Json(json!({"ok": false, "error": "invalid_blocks"}));
    }
    let n = record(&fake, "chat.postMessage", v);
    axum::Json(json!({"ok": true, "channel": channel, "ts": format!("1700000000.{n:06}")}))
}

async fn update(State(fake): State<Fake>, headers: HeaderMap, body: String) -> axum::Json<Value> {
    let checked = authorised(&fake, &headers).and_then(|()| json_body(&headers, &body));
    let v = match checked {
        Ok(v) => v,
        Err(e) => return axum::Json(e),
    };
    if !v["channel"].is_string() || !v["ts"].is_string() {
        return axum::Json(json!({"ok": false, "error": "message_not_found"}));
    }
    if !valid_blocks(&v["blocks"]) {
        return axum::Json(json!({"ok": false, "error": "invalid_blocks"}));
    }
    let (channel, ts) = (v["channel"].clone(), v["ts"].clone());
    record(&fake, "chat.update", v);
    axum::Json(json!({"ok": true, "channel": channel, "ts": ts}))
}

async fn users_info(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    if let Err(e) = authorised(&fake, &headers) {
        return axum::Json(e);
    }
    let id = q.get("user").cloned().unwrap_or_default();
    record(&fake, "users.info", json!({"user": id}));
    let user = fake
        .inner
        .lock()
        .ok()
        .and_then(|g| g.users.get(&id).cloned());
    match user {
        Some(u) => axum::Json(json!({"ok": true, "user": {
            "id": id, "is_email_confirmed": u.confirmed,
            "profile": {"email": u.email},
        }})),
        None => axum::Json(json!({"ok": false, "error": "user_not_found"})),
    }
}
