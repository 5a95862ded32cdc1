//! Slack as an approval channel: a Block Kit message with Approve and Deny
//! buttons per request, and the checks on every button click Slack sends
//! back (signature, freshness, replay, who clicked). The checks and message
//! shapes are pure; [`SlackClient`] is the thin Web API client.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::store::Approval;

/// Slack's limit on a signed request's age, and ours.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// The Block Kit action ids of the two buttons.
pub const APPROVE_ACTION: &str = "sluice_approve";
/// See [`APPROVE_ACTION`].
pub const DENY_ACTION: &str = "sluice_deny";

/// The `callback_id` of the modal the Deny button opens to ask why.
pub const DENY_CALLBACK: &str = "sluice_deny_reason";
/// The modal's input block, and its text input's action id.
pub const REASON_BLOCK: &str = "sluice_reason";
/// See [`REASON_BLOCK`].
pub const REASON_ACTION: &str = "reason";
/// The longest denial reason the modal takes.
pub const MAX_REASON: usize = 500;

/// The `[slack]` configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`), sent as a Bearer token to the Web API.
    pub bot_token: String,
    /// The app's signing secret, which signs every interaction request.
    pub signing_secret: String,
    /// The channel id where requests are posted.
    pub channel: String,
    /// The Web API base URL.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Who may click: Slack users mapped to Sluice identities.
    #[serde(default)]
    pub approvers: Vec<SlackApprover>,
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("channel", &self.channel)
            .field("api_url", &self.api_url)
            .field("approvers", &self.approvers.len())
            .finish_non_exhaustive()
    }
}

fn default_api_url() -> String {
    "https://slack.com/api".to_owned()
}

/// A Sluice identity that may decide from Slack, and how its Slack user is
/// recognised: an explicit link to a Slack user id, or the verified email
/// of the Slack profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackApprover {
    /// The Sluice identity name the click is recorded as.
    pub identity: String,
    /// Its groups, checked against the policy's approver groups at click time.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The Slack user id explicitly linked to it.
    #[serde(default)]
    pub slack_user: Option<String>,
    /// Its email, matched against the clicking user's confirmed Slack email.
    #[serde(default)]
    pub email: Option<String>,
}

/// Why an interaction is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Headers missing or malformed.
    #[error("missing or malformed Slack signature headers")]
    Headers,
    /// The timestamp is too far from now.
    #[error("the request timestamp is outside the 5-minute window")]
    Stale,
    /// The signature does not match.
    #[error("the Slack signature does not verify")]
    BadSignature,
    /// The same signed request was seen before.
    #[error("this request was already handled")]
    Replay,
    /// The payload is not a button click we sent.
    #[error("unexpected interaction payload: {0}")]
    Payload(String),
    /// The Slack user maps to no approver.
    #[error("your Slack user is not linked to a Sluice approver")]
    UnknownUser,
    /// The Web API failed.
    #[error("Slack Web API: {0}")]
    Api(String),
}

/// Verifies `X-Slack-Signature` (`v0=` hex HMAC-SHA256 of `v0:{ts}:{body}`
/// under the signing secret) in constant time, and that `ts` is within
/// five minutes of `now` (seconds).
pub fn verify(
    secret: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SlackError> {
    let ts: i64 = timestamp.parse().map_err(|_| SlackError::Headers)?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(SlackError::Stale);
    }
    let hex_sig = signature.strip_prefix("v0=").ok_or(SlackError::Headers)?;
    let given = hex::decode(hex_sig).map_err(|_| SlackError::BadSignature)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SlackError::BadSignature)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| SlackError::BadSignature)
}

/// The signature Slack would send for `body` at `timestamp` (for tests and
/// the fake Web API).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A button click, as far as a decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// The Slack user who clicked.
    pub user_id: String,
    /// Approve or deny.
    pub approve: bool,
    /// The request the button belongs to.
    pub approval_id: String,
    /// What lets a modal be opened in answer (valid for 3 seconds).
    pub trigger_id: String,
}

/// The Deny modal, submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyReason {
    /// The Slack user who submitted it.
    pub user_id: String,
    /// The request it denies (the modal's `private_metadata`).
    pub approval_id: String,
    /// Why, as typed.
    pub reason: String,
}

/// An interaction Slack sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// Approve or Deny clicked on a request's message.
    Click(Click),
    /// The reason for a denial, from the modal Deny opened.
    DenyReason(DenyReason),
}

fn payload_error(what: &str) -> SlackError {
    SlackError::Payload(what.to_owned())
}

fn non_empty(v: &Value, what: &str) -> Result<String, SlackError> {
    v.as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| payload_error(what))
}

fn approval_id_of(v: &Value) -> Result<String, SlackError> {
    v.as_str()
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .map(str::to_owned)
        .ok_or_else(|| payload_error("no approval id"))
}

/// Reads an interaction (the form field `payload`, JSON): a
/// `block_actions` click on one of our buttons, or the `view_submission`
/// of our Deny modal. Anything else is refused.
pub fn parse_interaction(form_body: &[u8]) -> Result<Interaction, SlackError> {
    let payload = url::form_urlencoded::parse(form_body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| payload_error("no payload field"))?;
    let v: Value =
        serde_json::from_str(&payload).map_err(|e| SlackError::Payload(e.to_string()))?;
    let user_id = non_empty(&v["user"]["id"], "no user")?;
    match v["type"].as_str() {
        Some("block_actions") => {
            let action = &v["actions"][0];
            let approve = match action["action_id"].as_str() {
                Some(APPROVE_ACTION) => true,
                Some(DENY_ACTION) => false,
                _ => return Err(payload_error("unknown action")),
            };
            Ok(Interaction::Click(Click {
                user_id,
                approve,
                approval_id: approval_id_of(&action["value"])?,
                trigger_id: v["trigger_id"].as_str().unwrap_or_default().to_owned(),
            }))
        }
        Some("view_submission") => {
            let view = &v["view"];
            if view["callback_id"] != DENY_CALLBACK {
                return Err(payload_error("unknown view"));
            }
            let reason = view["state"]["values"][REASON_BLOCK][REASON_ACTION]["value"]
                .as_str()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| payload_error("no reason"))?;
            if reason.chars().count() > MAX_REASON {
                return Err(payload_error("the reason is too long"));
            }
            Ok(Interaction::DenyReason(DenyReason {
                user_id,
                approval_id: approval_id_of(&view["private_metadata"])?,
                reason: reason.to_owned(),
            }))
        }
        _ => Err(payload_error(
            "not a block_actions or view_submission interaction",
        )),
    }
}

/// The modal the Deny button opens: one required text input for the
/// reason; the request id rides in `private_metadata`, and Slack sends it
/// back with the submission.
pub fn deny_modal(approval_id: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": DENY_CALLBACK,
        "private_metadata": approval_id,
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "input", "block_id": REASON_BLOCK,
             "label": {"type": "plain_text", "text": "Why is this statement denied?"},
             "element": {"type": "plain_text_input", "action_id": REASON_ACTION,
                         "multiline": true, "min_length": 1, "max_length": MAX_REASON}},
        ],
    })
}

/// The approver a Slack user is: an explicit link first, else a confirmed
/// email matching an approver's (case-insensitively).
pub fn approver_for<'a>(
    approvers: &'a [SlackApprover],
    user_id: &str,
    confirmed_email: Option<&str>,
) -> Option<&'a SlackApprover> {
    approvers
        .iter()
        .find(|a| a.slack_user.as_deref() == Some(user_id))
        .or_else(|| {
            let email = confirmed_email?;
            approvers.iter().find(|a| {
                a.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            })
        })
}

fn when(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn facts(a: &Approval, url: &str) -> Vec<Value> {
    vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
            "*Approval requested* by `{}` on target `{}`\n<{}|request {}>",
            escape(&a.identity), escape(&a.target), url, a.id
        )}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
            "```{}```", escape(&a.statement).replace("```", "'''")
        )}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "policy `{}`, rule `{}`: {} | expires {}",
            escape(&a.policy), escape(&a.rule), escape(&a.reason), when(a.expires_at)
        )}]}),
    ]
}

/// The message for a pending request: what would run, who asked, where,
/// under which rule, until when, and the two buttons.
pub fn request_blocks(a: &Approval, url: &str) -> Value {
    let mut blocks = facts(a, url);
    blocks.push(
        json!({"type": "actions", "block_id": "sluice_decision", "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": a.id,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": DENY_ACTION, "style": "danger", "value": a.id,
             "text": {"type": "plain_text", "text": "Deny"}},
        ]}),
    );
    Value::Array(blocks)
}

/// The message once decided (by any channel): the facts, without buttons,
/// and who decided and why.
pub fn decided_blocks(a: &Approval, url: &str, state: &str, by: &str, reason: &str) -> Value {
    let mut blocks = facts(a, url);
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {}", escape(reason))
    };
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "*{}* by {}{why}", state, escape(by)
        )}]}),
    );
    Value::Array(blocks)
}

/// The Slack Web API, with the bot token.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl SlackClient {
    /// A client for `config`'s API URL and bot token.
    pub fn new(config: &SlackConfig) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            base: config.api_url.trim_end_matches('/').to_owned(),
            token: config.bot_token.clone(),
        }
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let resp = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| SlackError::Api(format!("{method}: {e}")))?;
        let v: Value = resp
            .json()
            .await
            .map_err(|e| SlackError::Api(format!("{method}: {e}")))?;
        if v["ok"] != true {
            return Err(SlackError::Api(format!(
                "{method}: {}",
                v["error"].as_str().unwrap_or("not ok")
            )));
        }
        Ok(v)
    }

    /// Posts a message; returns its channel and timestamp (its id).
    pub async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(String, String), SlackError> {
        let v = self
            .call(
                "chat.postMessage",
                &json!({"channel": channel, "text": text, "blocks": blocks}),
            )
            .await?;
        Ok((
            v["channel"].as_str().unwrap_or(channel).to_owned(),
            v["ts"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// Replaces a message.
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SlackError> {
        self.call(
            "chat.update",
            &json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks}),
        )
        .await
        .map(drop)
    }

    /// Opens a modal in answer to an interaction (`trigger_id`).
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        self.call(
            "views.open",
            &json!({"trigger_id": trigger_id, "view": view}),
        )
        .await
        .map(drop)
    }

    /// The user's email, if Slack says it is confirmed.
    pub async fn confirmed_email(&self, user: &str) -> Result<Option<String>, SlackError> {
        let resp = self
            .http
            .get(format!("{}/users.info", self.base))
            .bearer_auth(&self.token)
            .query(&[("user", user)])
            .send()
            .await
            .map_err(|e| SlackError::Api(format!("users.info: {e}")))?;
        let v: Value = resp
            .json()
            .await
            .map_err(|e| SlackError::Api(format!("users.info: {e}")))?;
        if v["error"] == "user_not_found" {
            return Ok(None);
        }
        if v["ok"] != true {
            return Err(SlackError::Api(format!(
                "users.info: {}",
                v["error"].as_str().unwrap_or("not ok")
            )));
        }
        let confirmed = v["user"]["is_email_confirmed"] == true;
        Ok(confirmed
            .then(|| v["user"]["profile"]["email"].as_str().map(str::to_owned))
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_exact_body_secret_and_window() {
        let body = b"payload=%7B%7D";
        let sig = sign("s3cret", "1700000000", body);
        assert_eq!(
            verify("s3cret", "1700000000", &sig, body, 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            verify("other", "1700000000", &sig, body, 1_700_000_100),
            Err(SlackError::BadSignature)
        );
        assert_eq!(
            verify("s3cret", "1700000000", &sig, b"payload=x", 1_700_000_100),
            Err(SlackError::BadSignature)
        );
        assert_eq!(
            verify("s3cret", "1700000000", &sig, body, 1_700_000_000 + 301),
            Err(SlackError::Stale)
        );
        assert_eq!(
            verify("s3cret", "1700000000", "abc", body, 1_700_000_000),
            Err(SlackError::Headers)
        );
        assert_eq!(
            verify("s3cret", "soon", &sig, body, 1_700_000_000),
            Err(SlackError::Headers)
        );
    }

    fn form(payload: &Value) -> String {
        format!(
            "payload={}",
            url::form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                .collect::<String>()
        )
    }

    #[test]
    fn clicks_and_deny_reasons_are_read_and_anything_else_refused() {
        let payload = json!({"type": "block_actions", "user": {"id": "U1"}, "trigger_id": "t.1",
            "actions": [{"action_id": APPROVE_ACTION, "value": "a-1"}]});
        assert_eq!(
            parse_interaction(form(&payload).as_bytes()),
            Ok(Interaction::Click(Click {
                user_id: "U1".into(),
                approve: true,
                approval_id: "a-1".into(),
                trigger_id: "t.1".into(),
            }))
        );
        let submitted = |callback: &str, reason: &str| {
            json!({"type": "view_submission", "user": {"id": "U2"},
                "view": {"callback_id": callback, "private_metadata": "a-2",
                         "state": {"values": {REASON_BLOCK: {REASON_ACTION:
                             {"type": "plain_text_input", "value": reason}}}}}})
        };
        assert_eq!(
            parse_interaction(form(&submitted(DENY_CALLBACK, " wrong row ")).as_bytes()),
            Ok(Interaction::DenyReason(DenyReason {
                user_id: "U2".into(),
                approval_id: "a-2".into(),
                reason: "wrong row".into(),
            }))
        );
        assert!(parse_interaction(form(&submitted("other", "x")).as_bytes()).is_err());
        assert!(parse_interaction(form(&submitted(DENY_CALLBACK, "  ")).as_bytes()).is_err());
        let long = "x".repeat(MAX_REASON + 1);
        assert!(parse_interaction(form(&submitted(DENY_CALLBACK, &long)).as_bytes()).is_err());
        assert!(parse_interaction(b"payload=%7B%22type%22%3A%22view_closed%22%7D").is_err());
        assert!(parse_interaction(b"nothing=1").is_err());
    }

    #[test]
    fn the_deny_modal_carries_the_request_and_asks_for_a_reason() {
        let v = deny_modal("a-3");
        assert_eq!(v["type"], "modal");
        assert_eq!(v["callback_id"], DENY_CALLBACK);
        assert_eq!(v["private_metadata"], "a-3");
        assert_eq!(v["blocks"][0]["type"], "input");
        assert_eq!(v["blocks"][0]["block_id"], REASON_BLOCK);
        assert_eq!(v["blocks"][0]["element"]["type"], "plain_text_input");
        assert_eq!(v["blocks"][0]["element"]["action_id"], REASON_ACTION);
    }

    #[test]
    fn users_map_by_explicit_link_then_confirmed_email() {
        let approvers = vec![
            SlackApprover {
                identity: "alice".into(),
                groups: vec![],
                slack_user: Some("U1".into()),
                email: None,
            },
            SlackApprover {
                identity: "bob".into(),
                groups: vec![],
                slack_user: None,
                email: Some("Bob@Example.com".into()),
            },
        ];
        assert_eq!(
            approver_for(&approvers, "U1", None).map(|a| a.identity.as_str()),
            Some("alice")
        );
        assert_eq!(
            approver_for(&approvers, "U2", Some("bob@example.com")).map(|a| a.identity.as_str()),
            Some("bob")
        );
        assert!(approver_for(&approvers, "U2", None).is_none());
        assert!(approver_for(&approvers, "U3", Some("eve@example.com")).is_none());
    }
}
