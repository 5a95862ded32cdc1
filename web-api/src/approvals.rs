//! `/api/v1/approvals`: statements waiting for a human, and the decisions
//! approvers take on them.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sluice_control_plane::approvals::{self, Action, ApprovalError, Approver, Channel};
use sluice_control_plane::store::{Approval, ApprovalEntry};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{ApproverOrAdmin, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::{AppState, Items, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/approvals", get(list))
        .route("/api/v1/approvals/{id}", get(show))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/deny", post(deny))
}

/// Requests returned when the caller does not say.
const DEFAULT_LIMIT: u32 = 100;
/// The most requests one answer holds.
const MAX_LIMIT: u32 = 500;
/// The longest reason an approver may give, in bytes.
const MAX_REASON: usize = 2000;

/// One entry of a request's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalEntryView {
    /// When, RFC 3339.
    pub at: String,
    /// Who: an identity, or `sluice` for the gateway itself.
    pub actor: String,
    /// `approve`, `deny`, `expire` or `cancel`.
    pub action: String,
    /// `api`, `slack`, `email`, `node` or `system`.
    pub channel: String,
    /// Why, as the actor said.
    pub reason: String,
}

impl From<ApprovalEntry> for ApprovalEntryView {
    fn from(e: ApprovalEntry) -> Self {
        Self {
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            channel: e.channel,
            reason: e.reason,
        }
    }
}

/// An approval request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    /// Id, as the client was told.
    pub id: String,
    /// `pending`, `approved`, `denied`, `expired` or `cancelled`.
    pub state: String,
    /// `answer` (the client resends once approved) or `hold`.
    pub mode: String,
    /// Who asked.
    pub identity: String,
    /// Which target.
    pub target: String,
    /// The session that asked.
    pub session_id: String,
    /// The exact statement that runs if approved.
    pub statement: String,
    /// SHA-256 (hex) over the statement bytes and bound parameters.
    pub statement_hash: String,
    /// The policy that asked for approval.
    pub policy: String,
    /// Its rule.
    pub rule: String,
    /// Why the policy asks.
    pub reason: String,
    /// Groups whose members may decide; empty means any approver.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required: u32,
    /// Created, RFC 3339.
    pub created_at: String,
    /// A pending request lapses then; an approved one must run before it.
    pub expires_at: String,
    /// Decided, RFC 3339.
    pub decided_at: Option<String>,
    /// When the approved statement ran.
    pub consumed_at: Option<String>,
    /// This request's address.
    pub url: String,
    /// Votes and state changes, oldest first (only on a single request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<ApprovalEntryView>>,
}

fn view(s: &AppState, a: Approval, history: Option<Vec<ApprovalEntry>>) -> ApprovalView {
    let now = sluice_common::unix_us();
    ApprovalView {
        state: approvals::effective(a.state, a.expires_at, now)
            .as_str()
            .to_owned(),
        url: s.cp.approval_url(&a.id),
        id: a.id,
        mode: a.mode,
        identity: a.identity,
        target: a.target,
        session_id: a.session_id,
        statement: a.statement,
        statement_hash: a.statement_hash,
        policy: a.policy,
        rule: a.rule,
        reason: a.reason,
        approvers: a.approvers,
        required: a.required,
        created_at: rfc3339(a.created_at),
        expires_at: rfc3339(a.expires_at),
        decided_at: a.decided_at.map(rfc3339),
        consumed_at: a.consumed_at.map(rfc3339),
        history: history.map(|h| h.into_iter().map(ApprovalEntryView::from).collect()),
    }
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        use sluice_control_plane::approvals::Refusal;
        match e {
            ApprovalError::NotFound(id) => Self::NotFound(format!("no approval request {id:?}")),
            ApprovalError::Refused(r @ (Refusal::SelfApproval | Refusal::NotAnApprover(_))) => {
                Self::Forbidden(r.to_string())
            }
            ApprovalError::Refused(r) => Self::Conflict(r.to_string()),
            ApprovalError::Busy => Self::Conflict(e.to_string()),
            ApprovalError::Invalid(m) => Self::BadRequest(m),
            ApprovalError::Store(s) => s.into(),
        }
    }
}

/// Filters for the list. Unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalQuery {
    /// Only requests in this state: `pending`, `approved`, `denied`,
    /// `expired` or `cancelled`.
    pub status: Option<String>,
    /// At most this many, newest first (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Lists approval requests, newest first.
#[utoipa::path(get, path = "/api/v1/approvals", operation_id = "list_approvals", tag = "approvals", security(("bearer" = ["approver", "admin"])),
    params(ApprovalQuery),
    responses(
        (status = 200, description = "Approval requests", body = Items<ApprovalView>),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    _: Caller<ApproverOrAdmin>,
    State(s): State<AppState>,
    Query(q): Query<ApprovalQuery>,
) -> Result<Json<Items<ApprovalView>>, ApiError> {
    let limit = crate::sessions::page_limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let wanted = match q.status.as_deref() {
        None => None,
        Some(name) => Some(approvals::State::parse(name).ok_or_else(|| {
            ApiError::BadRequest(
                "status must be pending, approved, denied, expired or cancelled".to_owned(),
            )
        })?),
    };
    // Lapsed requests may still be stored as pending: read both and filter
    // by the state a reader should see.
    let rows = match wanted {
        Some(approvals::State::Expired) => {
            let mut rows =
                s.cp.store
                    .list_approvals(Some(approvals::State::Pending), limit)
                    .await?;
            rows.extend(
                s.cp.store
                    .list_approvals(Some(approvals::State::Expired), limit)
                    .await?,
            );
            rows.sort_by_key(|a| std::cmp::Reverse(a.created_at));
            rows
        }
        other => s.cp.store.list_approvals(other, limit).await?,
    };
    let items: Vec<ApprovalView> = rows
        .into_iter()
        .map(|a| view(&s, a, None))
        .filter(|v| wanted.is_none_or(|w| v.state == w.as_str()))
        .take(limit as usize)
        .collect();
    Ok(Json(Items::new(items)))
}

/// One approval request with its history.
#[utoipa::path(get, path = "/api/v1/approvals/{id}", operation_id = "get_approval", tag = "approvals", security(("bearer" = ["approver", "admin"])),
    params(("id" = String, Path, description = "Approval request id")),
    responses(
        (status = 200, description = "The request", body = ApprovalView),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn show(
    _: Caller<ApproverOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    let (a, history) = s.cp.approval(&id).await?;
    Ok(Json(view(&s, a, Some(history))))
}

/// What an approver may say with a decision.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why (required to deny).
    #[serde(default)]
    pub reason: String,
}

impl DecisionBody {
    /// Reads the optional body of a vote (or a revocation): none, or
    /// `{"reason": "..."}` of bounded size; a denial must say why.
    pub(crate) fn read(
        raw: Result<Bytes, BytesRejection>,
        reason_required: bool,
    ) -> Result<Self, ApiError> {
        let bytes = raw.map_err(|r| crate::extract::from_bytes_rejection(&r))?;
        let b: Self = if bytes.iter().all(u8::is_ascii_whitespace) {
            Self::default()
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::BadRequest(format!("the body must be {{\"reason\": \"...\"}}: {e}"))
            })?
        };
        if b.reason.len() > MAX_REASON {
            return Err(ApiError::BadRequest(format!(
                "reason may be at most {MAX_REASON} bytes"
            )));
        }
        if reason_required && b.reason.trim().is_empty() {
            return Err(ApiError::BadRequest(
                "a denial needs a reason: {\"reason\": \"...\"}".to_owned(),
            ));
        }
        Ok(b)
    }
}

async fn decide(
    caller: &Caller<ApproverOrAdmin>,
    s: &AppState,
    id: &str,
    action: Action,
    reason: &str,
) -> Result<Json<ApprovalView>, ApiError> {
    let who = Approver {
        name: &caller.identity.name,
        groups: &caller.identity.groups,
    };
    let a = s.cp.vote(id, &who, action, Channel::Api, reason).await?;
    let history = s.cp.store.approval_history(id).await?;
    Ok(Json(view(s, a, Some(history))))
}

/// Approves a request. With N-of-M rules the request stays pending until
/// enough distinct approvers agree. Nobody approves their own statement.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", operation_id = "approve_approval", tag = "approvals", security(("bearer" = ["approver", "admin"])),
    params(("id" = String, Path, description = "Approval request id")),
    request_body(content = DecisionBody, description = "Optional reason", content_type = "application/json"),
    responses(
        (status = 200, description = "The request after the vote", body = ApprovalView),
        (status = 403, description = "Self-approval, or the caller is not in the policy's approver groups", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided, expired, or already approved by the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn approve(
    caller: Caller<ApproverOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ApprovalView>, ApiError> {
    let b = DecisionBody::read(raw, false)?;
    decide(&caller, &s, &id, Action::Approve, &b.reason).await
}

/// Denies a request; one denial is final.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/deny", operation_id = "deny_approval", tag = "approvals", security(("bearer" = ["approver", "admin"])),
    params(("id" = String, Path, description = "Approval request id")),
    request_body(content = DecisionBody, description = "Why", content_type = "application/json"),
    responses(
        (status = 200, description = "The request, denied", body = ApprovalView),
        (status = 400, description = "No reason given", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Self-denial, or the caller is not in the policy's approver groups", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided or expired", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn deny(
    caller: Caller<ApproverOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ApprovalView>, ApiError> {
    let b = DecisionBody::read(raw, true)?;
    decide(&caller, &s, &id, Action::Deny, &b.reason).await
}
