//! What the API writes to its logs. A binary of its own: a scoped tracing
//! subscriber is unreliable while other tests on other threads hit the
//! same callsites.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/common.rs"]
#[allow(dead_code, reason = "shared with the api suite, which uses all of it")]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::Method;

use crate::common::Api;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request span names the route and the caller, never the token, even
/// when the token also appears in the query string.
#[tokio::test(flavor = "current_thread")]
async fn request_logs_never_contain_the_token() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let api = Api::sqlite().await;
    let token = api.admin.clone();
    let resp = api
        .req(Method::GET, &format!("/api/v1/targets?t={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = api
        .anon(Method::GET, "/api/v1/nodes")
        .bearer_auth("Zm9vYmFyLXNlY3JldA")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    drop(api);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains(r#"route="/api/v1/targets""#),
        "the request was traced: {text}"
    );
    assert!(
        text.contains("status=401"),
        "the refused request was traced: {text}"
    );
    assert!(
        text.contains("identity=alice"),
        "the caller was recorded: {text}"
    );
    assert!(!text.contains(&token), "token in logs: {text}");
    assert!(
        !text.contains("Zm9vYmFyLXNlY3JldA"),
        "bad token in logs: {text}"
    );
    assert!(
        !text.to_lowercase().contains("authorization"),
        "header in logs: {text}"
    );
}
