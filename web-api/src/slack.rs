//! `POST /integrations/slack/interactions`: Slack calls it when an approver
//! clicks Approve or Deny on a request's message. It carries no bearer
//! token: Slack signs every request with the app's signing secret, and the
//! control plane checks that signature, its freshness, replays and who
//! clicked before anything is decided.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use sluice_control_plane::approvals::slack::REASON_BLOCK;
use sluice_control_plane::approvals::slack::SlackError;
use sluice_control_plane::approvals::{SlackInteractionError, SlackReply};

use crate::AppState;

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/integrations/slack/interactions", post(interactions))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Answers Slack. A request that fails the signature, freshness or replay
/// checks gets 401 and changes nothing; a click that the approval rules
/// refuse gets 200 with the reason, which Slack shows the clicking user.
/// Deny opens a modal asking why (answered with an empty 200); its
/// submission closes the modal (empty 200) or shows why it was not taken
/// next to the reason field (`response_action: errors`).
pub(crate) async fn interactions(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ts = header(&headers, "x-slack-request-timestamp");
    let sig = header(&headers, "x-slack-signature");
    match s.cp.slack_interaction(ts, sig, &body).await {
        Ok(SlackReply::Text(text)) => reply(StatusCode::OK, &text),
        Ok(SlackReply::ModalOpened | SlackReply::CloseModal) => StatusCode::OK.into_response(),
        Ok(SlackReply::ModalError(text)) => (
            StatusCode::OK,
            axum::Json(json!({
                "response_action": "errors",
                "errors": {REASON_BLOCK: text},
            })),
        )
            .into_response(),
        Err(SlackInteractionError::NotConfigured) => {
            reply(StatusCode::NOT_FOUND, "Slack is not configured")
        }
        Err(SlackInteractionError::Slack(
            e @ (SlackError::Headers
            | SlackError::Stale
            | SlackError::BadSignature
            | SlackError::Replay),
        )) => {
            tracing::warn!(error = %e, "Slack interaction refused");
            reply(StatusCode::UNAUTHORIZED, &e.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "Slack click not taken");
            reply(StatusCode::OK, &format!("Not recorded: {e}"))
        }
    }
}

fn reply(status: StatusCode, text: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": text,
        })),
    )
        .into_response()
}
