//! A small, faithful stand-in for the Slack Web API: `chat.postMessage`,
//! `chat.update`, `views.open` and `users.info`, answering like Slack (`{"ok": false,
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
    /// `chat.postMessage`, `chat.update`, `views.open` or `users.info`.
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
    /// Trigger ids handed out with interactions, and when; each opens one
    /// view within 3 seconds, as on Slack.
    triggers: HashMap<String, std::time::Instant>,
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
            .route("/views.open", post(open_view))
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

    /// A fresh trigger id, as Slack puts in an interaction payload.
    pub fn trigger(&self) -> String {
        let id = format!("1700000000.{}", uuid::Uuid::new_v4().simple());
        if let Ok(mut g) = self.fake.inner.lock() {
            g.triggers.insert(id.clone(), std::time::Instant::now());
        }
        id
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

/// How long a trigger id lets a view be opened.
const TRIGGER_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3);

fn plain_text(v: &Value, max: usize) -> bool {
    v["type"] == "plain_text"
        && v["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty() && t.chars().count() <= max)
}

/// A modal as Slack checks it: type, a title of at most 24 characters, a
/// callback id and private metadata (at most 3000 characters), blocks with
/// input blocks whose element is a plain text input, and a submit button
/// once there is an input.
fn valid_modal(view: &Value) -> bool {
    let inputs_ok = view["blocks"].as_array().is_some_and(|blocks| {
        !blocks.is_empty()
            && blocks.iter().all(|b| {
                b["type"] == "input"
                    && b["block_id"].is_string()
                    && plain_text(&b["label"], 2000)
                    && b["element"]["type"] == "plain_text_input"
                    && b["element"]["action_id"].is_string()
            })
    });
    view["type"] == "modal"
        && plain_text(&view["title"], 24)
        && plain_text(&view["submit"], 24)
        && view["callback_id"].as_str().is_some_and(|c| !c.is_empty())
        && view["private_metadata"]
            .as_str()
            .is_some_and(|m| m.chars().count() <= 3000)
        && inputs_ok
}

async fn open_view(
    State(fake): State<Fake>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    let checked = authorised(&fake, &headers).and_then(|()| json_body(&headers, &body));
    let v = match checked {
        Ok(v) => v,
        Err(e) => return axum::Json(e),
    };
    let Some(trigger) = v["trigger_id"].as_str().filter(|t| !t.is_empty()) else {
        return axum::Json(json!({"ok": false, "error": "invalid_arguments"}));
    };
    let issued = fake
        .inner
        .lock()
        .ok()
        .and_then(|mut g| g.triggers.remove(trigger));
    match issued {
        None => return axum::Json(json!({"ok": false, "error": "invalid_trigger_id"})),
        Some(at) if at.elapsed() > TRIGGER_LIFETIME => {
            return axum::Json(json!({"ok": false, "error": "expired_trigger_id"}));
        }
        Some(_) => {}
    }
    if !valid_modal(&v["view"]) {
        return axum::Json(json!({"ok": false, "error": "invalid_arguments"}));
    }
    let view = v["view"].clone();
    record(&fake, "views.open", v);
    axum::Json(
        json!({"ok": true, "view": {"id": "V0000001", "type": "modal",
        "callback_id": view["callback_id"], "private_metadata": view["private_metadata"]}}),
    )
}
