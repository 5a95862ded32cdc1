//! `GET|POST /approvals/email/{token}`: where an approval email's link
//! leads. It carries no bearer token: the link itself is signed, bound to
//! one approver and one request, and works once. GET only shows the
//! request and a confirmation form (mail scanners prefetch links, so
//! opening a link never decides); the form's POST decides.

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sluice_control_plane::approvals::email::{LinkClaims, LinkError};
use sluice_control_plane::approvals::{Action, ApprovalError, EmailLinkError};
use sluice_control_plane::store::Approval;

use crate::AppState;
use crate::extract::Path;
use crate::rfc3339;
use crate::ui::html as page;

/// The longest deny reason kept, in bytes.
const MAX_REASON: usize = 2000;

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/approvals/email/{token}", get(confirm).post(decide))
}

/// The confirmation form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    /// `approve` or `deny`.
    decision: String,
    /// Why (required to deny).
    #[serde(default)]
    reason: String,
}

/// Shows the request and the Approve / Deny form; decides nothing.
async fn confirm(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    match s.cp.email_link(&token).await {
        Ok((claims, a)) => page(StatusCode::OK, confirmation(&claims, &a, &token)),
        Err(e) => refusal(&e),
    }
}

/// Decides through the link (once), as its approver.
async fn decide(
    State(s): State<AppState>,
    Path(token): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    let reason = f.reason.trim();
    let (action, reason) = match f.decision.as_str() {
        "approve" => (
            Action::Approve,
            if reason.is_empty() {
                "approved by email"
            } else {
                reason
            },
        ),
        "deny" if !reason.is_empty() => (Action::Deny, reason),
        "deny" => {
            return page(
                StatusCode::BAD_REQUEST,
                message("Reason required", "Say why the request is denied."),
            );
        }
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                message("Not understood", "The form was not understood."),
            );
        }
    };
    if reason.len() > MAX_REASON {
        return page(
            StatusCode::BAD_REQUEST,
            message("Reason too long", "The reason may be at most 2000 bytes."),
        );
    }
    match s.cp.email_vote(&token, action, reason).await {
        Ok(a) => page(
            StatusCode::OK,
            message(
                "Recorded",
                &format!(
                    "Your {} of request {} is recorded; the request is {}.",
                    if action == Action::Approve {
                        "approval"
                    } else {
                        "denial"
                    },
                    a.id,
                    a.state.as_str()
                ),
            ),
        ),
        Err(e) => refusal(&e),
    }
}

/// The page for a refused link or vote. Store failures are not described.
fn refusal(e: &EmailLinkError) -> Response {
    let status = match e {
        EmailLinkError::NotConfigured | EmailLinkError::Approval(ApprovalError::NotFound(_)) => {
            StatusCode::NOT_FOUND
        }
        EmailLinkError::Link(LinkError::BadSignature | LinkError::UnknownApprover) => {
            StatusCode::FORBIDDEN
        }
        EmailLinkError::Link(LinkError::Expired) => StatusCode::GONE,
        EmailLinkError::Link(LinkError::Used) => StatusCode::CONFLICT,
        EmailLinkError::Approval(ApprovalError::Refused(_) | ApprovalError::Busy) => {
            StatusCode::CONFLICT
        }
        EmailLinkError::Approval(ApprovalError::Invalid(_) | ApprovalError::Store(_)) => {
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                message(
                    "Not recorded",
                    "The request could not be decided; try again later.",
                ),
            );
        }
    };
    page(status, message("Not recorded", &e.to_string()))
}

fn layout(title: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="referrer" content="no-referrer";
                title { (title) " · Sluice" }
                style { "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}pre{white-space:pre-wrap;word-break:break-all}" }
            }
            body { h1 { (title) } (body) }
        }
    }
}

fn message(title: &str, text: &str) -> Markup {
    layout(title, &html! { p { (text) } })
}

/// The confirmation page: the request, and the two forms posting back to
/// the same link.
fn confirmation(claims: &LinkClaims, a: &Approval, token: &str) -> Markup {
    let action = format!("/approvals/email/{token}");
    layout(
        "Approval request",
        &html! {
            p { "You are deciding as " strong { (claims.identity) } "." }
            table {
                tr { th { "Request" } td { (a.id) } }
                tr { th { "State" } td { (a.state.as_str()) } }
                tr { th { "Requested by" } td { (a.identity) } }
                tr { th { "Target" } td { (a.target) } }
                tr { th { "Policy rule" } td { (a.policy) " / " (a.rule) } }
                tr { th { "Reason" } td { (a.reason) } }
                tr { th { "Expires" } td { (rfc3339(a.expires_at)) } }
            }
            h2 { "Statement" }
            pre { (a.statement) }
            form method="post" action=(action) {
                input type="hidden" name="decision" value="approve";
                button type="submit" { "Approve" }
            }
            form method="post" action=(action) {
                input type="hidden" name="decision" value="deny";
                label { "Reason " input type="text" name="reason" required maxlength="2000"; }
                " "
                button type="submit" { "Deny" }
            }
        },
    )
}
