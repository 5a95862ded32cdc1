//! The approval pages of the web UI: the queue of pending requests and one
//! page per request with its history and the Approve / Deny forms. The
//! forms act on the sign-in cookie, so besides the cookie's
//! `SameSite=Strict` every decision checks that the Origin or Referer
//! header, when sent, names this server.

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use sluice_control_plane::approvals::{
    Action, ApprovalError, Approver, Channel, State as St, effective,
};
use sluice_control_plane::store::{Approval, ApprovalEntry};

use super::pages::{layout, message};
use super::{html as page, refused, store_error};
use crate::AppState;
use crate::auth::{ApproverOrAdmin, Caller};
use crate::error::ApiError;
use crate::extract::Path;
use crate::rfc3339;

/// Pending requests shown in the queue.
const QUEUE_LIMIT: u32 = 200;
/// The longest reason kept, in bytes.
const MAX_REASON: usize = 2000;

/// The routes of the approval pages.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/approvals", get(queue))
        .route("/ui/approvals/{id}", get(request_page))
        .route("/ui/approvals/{id}/approve", post(approve))
        .route("/ui/approvals/{id}/deny", post(deny))
}

/// Whether a state-changing request comes from this server's own pages:
/// an Origin or Referer header, when present, must name the host the
/// request was sent to. Browsers send at least one of them on cross-site
/// form posts, so a forged post is refused even if a cookie rode along.
pub(crate) fn same_origin(origin: Option<&str>, referer: Option<&str>, host: Option<&str>) -> bool {
    fn authority(url: &str) -> Option<&str> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))?;
        Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
    }
    let Some(host) = host else {
        return origin.is_none() && referer.is_none();
    };
    [origin, referer]
        .into_iter()
        .flatten()
        .all(|u| authority(u).is_some_and(|a| a.eq_ignore_ascii_case(host)))
}

fn from_this_server(headers: &HeaderMap) -> bool {
    let get = |name: header::HeaderName| -> Result<Option<&str>, ()> {
        headers
            .get(name)
            .map(|v| v.to_str().map_err(drop))
            .transpose()
    };
    match (get(header::ORIGIN), get(header::REFERER), get(header::HOST)) {
        (Ok(o), Ok(r), Ok(h)) => same_origin(o, r, h),
        _ => false,
    }
}

async fn queue(
    caller: Result<Caller<ApproverOrAdmin>, ApiError>,
    State(s): State<AppState>,
) -> Response {
    if let Err(e) = &caller {
        return refused(e);
    }
    match s
        .cp
        .store
        .list_approvals(Some(St::Pending), QUEUE_LIMIT)
        .await
    {
        Ok(rows) => {
            let now = sluice_common::unix_us();
            let pending: Vec<Approval> = rows
                .into_iter()
                .filter(|a| effective(a.state, a.expires_at, now) == St::Pending)
                .collect();
            page(StatusCode::OK, queue_page(&pending))
        }
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            message("Store error", &store_error(&e)),
        ),
    }
}

async fn request_page(
    caller: Result<Caller<ApproverOrAdmin>, ApiError>,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = &caller {
        return refused(e);
    }
    match s.cp.approval(&id).await {
        Ok((a, history)) => page(StatusCode::OK, detail_page(&a, &history)),
        Err(e) => vote_error(&e),
    }
}

/// The deny form's fields (the approve form may carry a note too).
#[derive(Debug, Deserialize)]
pub(crate) struct ReasonForm {
    #[serde(default)]
    reason: String,
}

async fn approve(
    caller: Result<Caller<ApproverOrAdmin>, ApiError>,
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> Response {
    decide(caller, &s, &headers, &id, Action::Approve, &f.reason).await
}

async fn deny(
    caller: Result<Caller<ApproverOrAdmin>, ApiError>,
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ReasonForm>,
) -> Response {
    decide(caller, &s, &headers, &id, Action::Deny, &f.reason).await
}

async fn decide(
    caller: Result<Caller<ApproverOrAdmin>, ApiError>,
    s: &AppState,
    headers: &HeaderMap,
    id: &str,
    action: Action,
    reason: &str,
) -> Response {
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    if !from_this_server(headers) {
        tracing::warn!("cross-site approval form refused");
        return page(
            StatusCode::FORBIDDEN,
            message(
                "Not allowed",
                "This form can only be sent from Sluice's own pages.",
            ),
        );
    }
    let reason = reason.trim();
    if reason.len() > MAX_REASON {
        return page(
            StatusCode::BAD_REQUEST,
            message("Reason too long", "The reason may be at most 2000 bytes."),
        );
    }
    let reason = match (action, reason.is_empty()) {
        (Action::Deny, true) => {
            return page(
                StatusCode::BAD_REQUEST,
                message("Reason required", "Say why the request is denied."),
            );
        }
        (Action::Approve, true) => "approved in the web UI",
        (_, false) => reason,
    };
    let who = Approver {
        name: &caller.identity.name,
        groups: &caller.identity.groups,
    };
    match s.cp.vote(id, &who, action, Channel::Web, reason).await {
        Ok(_) => Redirect::to(&format!("/ui/approvals/{id}")).into_response(),
        Err(e) => vote_error(&e),
    }
}

fn vote_error(e: &ApprovalError) -> Response {
    use sluice_control_plane::approvals::Refusal;
    let status = match e {
        ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
        ApprovalError::Refused(Refusal::SelfApproval | Refusal::NotAnApprover(_)) => {
            StatusCode::FORBIDDEN
        }
        ApprovalError::Refused(_) | ApprovalError::Busy => StatusCode::CONFLICT,
        ApprovalError::Invalid(_) | ApprovalError::Store(_) => {
            tracing::error!(error = %e, "web UI approval error");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                message(
                    "Not recorded",
                    "The request could not be read or decided; see the control plane's log.",
                ),
            );
        }
    };
    page(status, message("Not recorded", &e.to_string()))
}

/// The queue: pending requests, newest first.
fn queue_page(items: &[Approval]) -> Markup {
    layout(
        "Pending approvals",
        &html! {
            @if items.is_empty() {
                p.muted { "Nothing is waiting for a decision." }
            } @else {
                table {
                    tr { th { "Requested" } th { "By" } th { "Target" } th { "Statement" } th { "Expires" } }
                    @for a in items {
                        tr {
                            td { a href=(format!("/ui/approvals/{}", a.id)) { (rfc3339(a.created_at)) } }
                            td { (a.identity) }
                            td { (a.target) }
                            td { pre { (a.statement) } }
                            td { (rfc3339(a.expires_at)) }
                        }
                    }
                }
            }
        },
    )
}

/// One request: what it asks, its history, and the forms while pending.
fn detail_page(a: &Approval, history: &[ApprovalEntry]) -> Markup {
    let state = effective(a.state, a.expires_at, sluice_common::unix_us());
    layout(
        &format!("Approval request {}", a.id),
        &html! {
            table {
                tr { th { "State" } td { (state.as_str()) } }
                tr { th { "Requested by" } td { (a.identity) } }
                tr { th { "Target" } td { (a.target) } }
                tr { th { "Session" } td { a href=(format!("/ui/sessions/{}", a.session_id)) { (a.session_id) } } }
                tr { th { "Policy rule" } td { (a.policy) " / " (a.rule) } }
                tr { th { "Reason" } td { (a.reason) } }
                tr { th { "Approvers" } td { (a.approvers.join(", ")) " (" (a.required) " needed)" } }
                tr { th { "Requested" } td { (rfc3339(a.created_at)) } }
                tr { th { "Expires" } td { (rfc3339(a.expires_at)) } }
            }
            h2 { "Statement" }
            pre { (a.statement) }
            h2 { "History" }
            @if history.is_empty() {
                p.muted { "No votes yet." }
            } @else {
                table {
                    tr { th { "When" } th { "Who" } th { "Action" } th { "Channel" } th { "Reason" } }
                    @for e in history {
                        tr {
                            td { (rfc3339(e.at)) }
                            td { (e.actor) }
                            td { (e.action) }
                            td { (e.channel) }
                            td { (e.reason) }
                        }
                    }
                }
            }
            @if state == St::Pending {
                h2 { "Decide" }
                form method="post" action=(format!("/ui/approvals/{}/approve", a.id)) {
                    button type="submit" { "Approve" }
                }
                form method="post" action=(format!("/ui/approvals/{}/deny", a.id)) {
                    label { "Reason " input type="text" name="reason" required maxlength="2000"; }
                    " "
                    button type="submit" { "Deny" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn only_this_server_may_post_the_forms() {
        let host = Some("sluice.example:8080");
        assert!(same_origin(None, None, host));
        assert!(same_origin(Some("https://sluice.example:8080"), None, host));
        assert!(same_origin(
            None,
            Some("http://sluice.example:8080/ui/approvals/x"),
            host
        ));
        assert!(!same_origin(Some("https://evil.example"), None, host));
        assert!(!same_origin(Some("null"), None, host));
        assert!(!same_origin(
            Some("https://sluice.example:8080"),
            Some("https://evil.example/"),
            host
        ));
        assert!(!same_origin(
            Some("https://sluice.example:8080.evil"),
            None,
            host
        ));
        assert!(!same_origin(
            Some("https://sluice.example:8080"),
            None,
            None
        ));
    }
}
