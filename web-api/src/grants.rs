//! `/api/v1/grants`: time-boxed access grants. Any identity asks for one on
//! a target; approvers decide it under the same rules as statements; an
//! admin or the requester revokes it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sluice_control_plane::approvals::{Action, Approver, Channel, Refusal};
use sluice_control_plane::grants::{
    self, GrantError, GrantRefusal, GrantRequest, GrantState, effective,
};
use sluice_control_plane::store::{Grant, GrantEntry, GrantFilter};
use sluice_identity::{Identity, Role};
use utoipa::{IntoParams, ToSchema};

use crate::approvals::{ApprovalEntryView, DecisionBody};
use crate::auth::{AnyIdentity, ApproverOrAdmin, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::{AppState, Items, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/grants", get(list).post(create))
        .route("/api/v1/grants/{id}", get(show))
        .route("/api/v1/grants/{id}/approve", post(approve))
        .route("/api/v1/grants/{id}/deny", post(deny))
        .route("/api/v1/grants/{id}/revoke", post(revoke))
}

/// Grants returned when the caller does not say.
const DEFAULT_LIMIT: u32 = 100;
/// The most grants one answer holds.
const MAX_LIMIT: u32 = 500;
/// An access grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    /// Id, named in the audit record of every statement it lets run.
    pub id: String,
    /// `pending`, `active`, `denied`, `expired` or `revoked`.
    pub state: String,
    /// Who asked.
    pub identity: String,
    /// Which target.
    pub target: String,
    /// A rule name of the governing policy; absent for every statement of
    /// the target that needs approval.
    pub scope: Option<String>,
    /// Why the requester needs it.
    pub reason: String,
    /// The policy whose approval rules decide it.
    pub policy: String,
    /// How long it lasts once approved, in seconds.
    pub duration_secs: i64,
    /// Groups whose members may decide; empty means any approver.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required: u32,
    /// Requested, RFC 3339.
    pub created_at: String,
    /// A pending grant lapses then.
    pub request_expires_at: String,
    /// An active grant stops applying then.
    pub expires_at: Option<String>,
    /// Approved or denied, RFC 3339.
    pub decided_at: Option<String>,
    /// Revoked or recorded as expired, RFC 3339.
    pub ended_at: Option<String>,
    /// This grant's address.
    pub url: String,
    /// Votes and state changes, oldest first (only on a single grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<ApprovalEntryView>>,
}

fn entry_view(e: GrantEntry) -> ApprovalEntryView {
    ApprovalEntryView {
        at: rfc3339(e.at),
        actor: e.actor,
        action: e.action,
        channel: e.channel,
        reason: e.reason,
    }
}

fn view(s: &AppState, g: Grant, history: Option<Vec<GrantEntry>>) -> GrantView {
    let now = sluice_common::unix_us();
    GrantView {
        state: effective(g.state, g.request_expires_at, g.expires_at, now)
            .as_str()
            .to_owned(),
        url: s.cp.grant_url(&g.id),
        id: g.id,
        identity: g.identity,
        target: g.target,
        scope: (!g.scope.is_empty()).then_some(g.scope),
        reason: g.reason,
        policy: g.policy,
        duration_secs: g.duration_us / 1_000_000,
        approvers: g.approvers,
        required: g.required,
        created_at: rfc3339(g.created_at),
        request_expires_at: rfc3339(g.request_expires_at),
        expires_at: g.expires_at.map(rfc3339),
        decided_at: g.decided_at.map(rfc3339),
        ended_at: g.ended_at.map(rfc3339),
        history: history.map(|h| h.into_iter().map(entry_view).collect()),
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::NotFound(id) => Self::NotFound(format!("no access grant {id:?}")),
            GrantError::Invalid(m) => Self::BadRequest(m),
            GrantError::Refused(
                r @ (GrantRefusal::NotAllowed(_)
                | GrantRefusal::NotRevoker
                | GrantRefusal::Vote(Refusal::SelfApproval | Refusal::NotAnApprover(_))),
            ) => Self::Forbidden(r.to_string()),
            GrantError::Refused(r @ GrantRefusal::Duration(_)) => Self::BadRequest(r.to_string()),
            GrantError::Refused(r) => Self::Conflict(r.to_string()),
            GrantError::Busy => Self::Conflict(e.to_string()),
            GrantError::Store(s) => s.into(),
        }
    }
}

/// Whether `who` sees every grant (approvers and admins) or only their own.
fn sees_all(who: &Identity) -> bool {
    who.has_role(Role::Admin) || who.has_role(Role::Approver)
}

/// A grant request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrant {
    /// The target to open.
    pub target: String,
    /// How long once approved, e.g. `30m` or `4h` (at most the policy's
    /// `approval.grants.max_duration`).
    pub duration: String,
    /// Why it is needed; shown to approvers and recorded.
    pub reason: String,
    /// A rule name of the governing policy; omit for every statement of the
    /// target that needs approval.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Requests an access grant for the caller. It is pending until approvers
/// decide it under the approval rules of the policy governing the caller on
/// the target.
#[utoipa::path(post, path = "/api/v1/grants", operation_id = "request_grant", tag = "grants", security(("bearer" = ["any"])),
    request_body(content = CreateGrant, content_type = "application/json"),
    responses(
        (status = 201, description = "The pending grant", body = GrantView),
        (status = 400, description = "Bad target, duration, scope or reason", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    caller: Caller<AnyIdentity>,
    State(s): State<AppState>,
    Json(body): Json<CreateGrant>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    let duration = grants::parse_duration(&body.duration)?;
    let g =
        s.cp.request_grant(
            &caller.identity,
            GrantRequest {
                target: body.target,
                duration,
                reason: body.reason,
                scope: body.scope,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&s, g, None))))
}

/// Filters for the list. Unknown parameters are refused.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GrantQuery {
    /// Only grants in this state: `pending`, `active`, `denied`, `expired`
    /// or `revoked`.
    pub status: Option<String>,
    /// At most this many, newest first (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Lists grants, newest first: every grant for approvers and admins, one's
/// own for anyone else.
#[utoipa::path(get, path = "/api/v1/grants", operation_id = "list_grants", tag = "grants", security(("bearer" = ["any"])),
    params(GrantQuery),
    responses(
        (status = 200, description = "Grants", body = Items<GrantView>),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    caller: Caller<AnyIdentity>,
    State(s): State<AppState>,
    Query(q): Query<GrantQuery>,
) -> Result<Json<Items<GrantView>>, ApiError> {
    let limit = crate::sessions::page_limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let wanted = match q.status.as_deref() {
        None => None,
        Some(name) => Some(GrantState::parse(name).ok_or_else(|| {
            ApiError::BadRequest(
                "status must be pending, active, denied, expired or revoked".to_owned(),
            )
        })?),
    };
    let identity = (!sees_all(&caller.identity)).then(|| caller.identity.name.clone());
    // Lapsed grants may still be stored as pending or active: read those
    // too and filter by the state a reader should see.
    let stored: Vec<Option<GrantState>> = match wanted {
        Some(GrantState::Expired) => vec![
            Some(GrantState::Pending),
            Some(GrantState::Active),
            Some(GrantState::Expired),
        ],
        other => vec![other],
    };
    let mut rows = Vec::new();
    for state in stored {
        let f = GrantFilter {
            state,
            identity: identity.clone(),
            limit,
        };
        rows.extend(s.cp.store.list_grants(&f).await?);
    }
    rows.sort_by_key(|g| std::cmp::Reverse(g.created_at));
    let items: Vec<GrantView> = rows
        .into_iter()
        .map(|g| view(&s, g, None))
        .filter(|v| wanted.is_none_or(|w| v.state == w.as_str()))
        .take(limit as usize)
        .collect();
    Ok(Json(Items::new(items)))
}

/// One grant with its history (approvers and admins see any; anyone else
/// only their own).
#[utoipa::path(get, path = "/api/v1/grants/{id}", operation_id = "get_grant", tag = "grants", security(("bearer" = ["any"])),
    params(("id" = String, Path, description = "Grant id")),
    responses(
        (status = 200, description = "The grant", body = GrantView),
        (status = 404, description = "No such grant", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn show(
    caller: Caller<AnyIdentity>,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GrantView>, ApiError> {
    let (g, history) = s.cp.grant(&id).await?;
    if !sees_all(&caller.identity) && g.identity != caller.identity.name {
        return Err(GrantError::NotFound(id).into());
    }
    Ok(Json(view(&s, g, Some(history))))
}

async fn decide(
    caller: &Caller<ApproverOrAdmin>,
    s: &AppState,
    id: &str,
    action: Action,
    reason: &str,
) -> Result<Json<GrantView>, ApiError> {
    let who = Approver {
        name: &caller.identity.name,
        groups: &caller.identity.groups,
    };
    let g =
        s.cp.vote_grant(id, &who, action, Channel::Api, reason)
            .await?;
    let history = s.cp.store.grant_history(id).await?;
    Ok(Json(view(s, g, Some(history))))
}

/// Approves a pending grant. With N-of-M rules it stays pending until
/// enough distinct approvers agree; nobody approves their own grant. Once
/// active, it lasts its duration from now.
#[utoipa::path(post, path = "/api/v1/grants/{id}/approve", operation_id = "approve_grant", tag = "grants", security(("bearer" = ["approver", "admin"])),
    params(("id" = String, Path, description = "Grant id")),
    request_body(content = DecisionBody, description = "Optional reason", content_type = "application/json"),
    responses(
        (status = 200, description = "The grant after the vote", body = GrantView),
        (status = 403, description = "Self-approval, or the caller is not in the policy's approver groups", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such grant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided, expired, or already approved by the caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn approve(
    caller: Caller<ApproverOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<GrantView>, ApiError> {
    let b = DecisionBody::read(raw, false)?;
    decide(&caller, &s, &id, Action::Approve, &b.reason).await
}

/// Denies a pending grant; one denial is final.
#[utoipa::path(post, path = "/api/v1/grants/{id}/deny", operation_id = "deny_grant", tag = "grants", security(("bearer" = ["approver", "admin"])),
    params(("id" = String, Path, description = "Grant id")),
    request_body(content = DecisionBody, description = "Why", content_type = "application/json"),
    responses(
        (status = 200, description = "The grant, denied", body = GrantView),
        (status = 400, description = "No reason given", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Self-denial, or the caller is not in the policy's approver groups", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such grant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided or expired", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn deny(
    caller: Caller<ApproverOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<GrantView>, ApiError> {
    let b = DecisionBody::read(raw, true)?;
    decide(&caller, &s, &id, Action::Deny, &b.reason).await
}

/// Revokes a pending or active grant: an admin any, anyone else their own.
/// The sessions of its identity on its target end at once.
#[utoipa::path(post, path = "/api/v1/grants/{id}/revoke", operation_id = "revoke_grant", tag = "grants", security(("bearer" = ["any"])),
    params(("id" = String, Path, description = "Grant id")),
    request_body(content = DecisionBody, description = "Optional reason", content_type = "application/json"),
    responses(
        (status = 200, description = "The grant, revoked", body = GrantView),
        (status = 404, description = "No such grant (or not the caller's)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already denied, expired or revoked", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn revoke(
    caller: Caller<AnyIdentity>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<GrantView>, ApiError> {
    let b = DecisionBody::read(raw, false)?;
    let g = s.cp.revoke_grant(&id, &caller.identity, &b.reason).await?;
    let history = s.cp.store.grant_history(&id).await?;
    Ok(Json(view(&s, g, Some(history))))
}
