//! `/api/v1/sessions`: who connected where and when, newest first; and
//! ending one that is open.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sluice_control_plane::bus::BusEvent;
use sluice_control_plane::store::{SessionFilter, SessionRow};
use utoipa::{IntoParams, ToSchema};

use crate::approvals::DecisionBody;
use crate::auth::{AdminOnly, AuditorOrAdmin, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::{AppState, Page, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", get(list))
        .route("/api/v1/sessions/{id}", get(show))
        .route("/api/v1/sessions/{id}/end", post(end))
}

/// Sessions returned per page when the caller does not say.
const DEFAULT_LIMIT: u32 = 50;
/// The most sessions one page may hold.
const MAX_LIMIT: u32 = 500;

/// A recorded session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Session id, chosen by the node.
    pub id: String,
    /// The node that served it.
    pub node_id: String,
    /// Who connected.
    pub identity: String,
    /// `person`, `agent` or `service`; `unauthenticated` for a refused
    /// sign-in; `admin` for a configuration change.
    pub identity_kind: String,
    /// Their identity groups when they connected.
    pub groups: Vec<String>,
    /// The target they reached.
    pub target: String,
    /// Their address as the node saw it.
    pub client_addr: String,
    /// Whether the client connection used TLS.
    pub tls: bool,
    /// Wire protocol, `postgres`.
    pub protocol: String,
    /// The client's self-reported application name.
    pub application_name: String,
    /// Id of the token used, to tie the session to its credential.
    pub token_id: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// Start, µs since the epoch.
    pub started_at_us: i64,
    /// End, RFC 3339; absent while the session is open.
    pub ended_at: Option<String>,
    /// End, µs since the epoch.
    pub ended_at_us: Option<i64>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Statements recorded so far.
    pub statements: i64,
}

impl From<SessionRow> for SessionView {
    fn from(r: SessionRow) -> Self {
        Self {
            started_at: rfc3339(r.started_at),
            started_at_us: r.started_at,
            ended_at: r.ended_at.map(rfc3339),
            ended_at_us: r.ended_at,
            id: r.id,
            node_id: r.node_id,
            identity: r.identity,
            identity_kind: r.identity_kind,
            groups: r.groups,
            target: r.target,
            client_addr: r.client_addr,
            tls: r.tls,
            protocol: r.protocol,
            application_name: r.application_name,
            token_id: r.token_id,
            end_reason: r.end_reason,
            statements: r.statements,
        }
    }
}

/// Filters and paging for the session list. Unknown parameters are refused:
/// a mistyped filter must not silently return everything.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// A `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// Only sessions of this identity.
    pub identity: Option<String>,
    /// Only sessions on this target.
    pub target: Option<String>,
    /// Only sessions of this kind: `person`, `agent` or `service`;
    /// `unauthenticated` for refused sign-ins; `admin` for configuration
    /// changes; `approval` for approval requests.
    pub kind: Option<String>,
    /// Only sessions whose identity had this group.
    pub group: Option<String>,
    /// Only sessions started at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Only sessions started before this time (RFC 3339).
    pub to: Option<String>,
    /// Only sessions with a statement of this decision: `allow`, `deny` or
    /// `approval`.
    pub decision: Option<String>,
    /// Only sessions with a statement containing this text (case-insensitive).
    pub text: Option<String>,
}

/// Parses an RFC 3339 time parameter into µs since the epoch.
fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_micros())
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{name} must be an RFC 3339 time such as 2026-01-31T09:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// Checks a page size against its bounds.
pub(crate) fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match limit.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {max}"
        ))),
    }
}

/// Lists sessions, newest first, a page at a time, narrowed by who, where,
/// when, and what their statements were and how they were decided.
#[utoipa::path(get, path = "/api/v1/sessions", operation_id = "list_sessions", tag = "sessions", security(("bearer" = ["auditor", "admin"])),
    params(SessionQuery),
    responses(
        (status = 200, description = "A page of sessions", body = Page<SessionView>),
        (status = 400, description = "Bad parameter or cursor", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    _: Caller<AuditorOrAdmin>,
    State(s): State<AppState>,
    Query(q): Query<SessionQuery>,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let filter = filter_of(q)?;
    let page = s.cp.store.list_sessions(&filter).await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(SessionView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The store filter for a session query, checked.
pub(crate) fn filter_of(q: SessionQuery) -> Result<SessionFilter, ApiError> {
    if let Some(k) = q.kind.as_deref()
        && !matches!(
            k,
            "person" | "agent" | "service" | "unauthenticated" | "admin" | "approval"
        )
    {
        return Err(ApiError::BadRequest(
            "kind must be person, agent, service, unauthenticated, admin or approval".to_owned(),
        ));
    }
    if let Some(d) = q.decision.as_deref()
        && !matches!(d, "allow" | "deny" | "approval")
    {
        return Err(ApiError::BadRequest(
            "decision must be allow, deny or approval".to_owned(),
        ));
    }
    let filter = SessionFilter {
        started_from: time_param("from", q.from.as_deref())?,
        started_before: time_param("to", q.to.as_deref())?,
        identity: q.identity,
        target: q.target,
        identity_kind: q.kind,
        group: q.group,
        decision: q.decision,
        text: q.text.filter(|t| !t.is_empty()),
        limit: page_limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
        cursor: q.cursor,
    };
    Ok(filter)
}

/// One session by id.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", operation_id = "get_session", tag = "sessions", security(("bearer" = ["auditor", "admin"])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn show(
    _: Caller<AuditorOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    match s.cp.store.get_session(&id).await? {
        Some(row) => Ok(Json(row.into())),
        None => Err(ApiError::NotFound(format!("no session {id:?}"))),
    }
}

/// Ends an open session now, wherever it is served: its connection (or, for
/// an HTTP target, every request in flight) is cut, the client is told the
/// reason, and the session's record ends with it. The session record shows
/// the end once the node has reported it.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/end", operation_id = "end_session", tag = "sessions", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Session id")),
    request_body(content = Option<DecisionBody>, description = "Optional `{\"reason\": \"...\"}`, shown to the client"),
    responses(
        (status = 202, description = "The nodes were told to end it", body = SessionView),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session has already ended", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn end(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let body = DecisionBody::read(raw, false)?;
    let Some(row) = s.cp.store.get_session(&id).await? else {
        return Err(ApiError::NotFound(format!("no session {id:?}")));
    };
    if row.ended_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "session {id:?} has already ended"
        )));
    }
    let by = &caller.identity.name;
    let reason = match body.reason.trim() {
        "" => format!("ended by administrator {by}"),
        why => format!("ended by administrator {by}: {why}"),
    };
    tracing::info!(session_id = %id, by = %by, "session ended by an administrator");
    s.cp.bus.publish(BusEvent::KillSession {
        session_id: id.clone(),
        reason,
    });
    crate::record_change(&s, &caller.identity, "ended", "session", &id).await;
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}
