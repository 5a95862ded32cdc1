//! `/api/v1/sessions/{id}/events`: a session's record, in order, exactly as
//! stored (statement text included byte for byte).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sluice_control_plane::store::{EventKind, StoredEvent};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{AuditorOrAdmin, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::sessions::page_limit;
use crate::{AppState, Page, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/sessions/{id}/events", get(list))
}

/// Events returned per page when the caller does not say.
const DEFAULT_LIMIT: u32 = 100;
/// The most events one page may hold.
const MAX_LIMIT: u32 = 1000;

/// One event of a session. The fields after `kind` depend on the kind and
/// are the stored payload unchanged, so the API never paraphrases the record.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Position in the session, from 1.
    pub seq: u64,
    /// When it happened, RFC 3339.
    pub at: String,
    /// When it happened, µs since the epoch.
    pub at_us: i64,
    /// What happened; tagged by `kind`.
    #[serde(flatten)]
    #[schema(value_type = EventDetail)]
    pub event: EventKind,
}

impl From<StoredEvent> for EventView {
    fn from(e: StoredEvent) -> Self {
        Self {
            seq: e.seq,
            at: rfc3339(e.at),
            at_us: e.at,
            event: e.kind,
        }
    }
}

/// The documented shape of an event's payload. It mirrors the store's
/// `EventKind` (which lives in a crate without OpenAPI support); a test
/// fails if the two drift apart.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(
    dead_code,
    reason = "only its schema is used; the drift test builds it"
)]
pub enum EventDetail {
    /// The session opened.
    SessionStart {
        /// Who connected.
        identity: String,
        /// `person`, `agent` or `service`.
        identity_kind: String,
        /// Their groups.
        groups: Vec<String>,
        /// Which target.
        target: String,
        /// From where.
        client_addr: String,
        /// Over TLS?
        tls: bool,
        /// Wire protocol.
        protocol: String,
        /// The token's id.
        token_id: String,
        /// The client's application name.
        application_name: String,
        /// The node that served it.
        node_id: String,
    },
    /// One statement and its outcome.
    Statement {
        /// The exact statement text as the client sent it.
        text: String,
        /// `allow`, `deny` or `approval`.
        decision: String,
        /// Deciding policy, if any.
        policy: Option<String>,
        /// Deciding rule, if any.
        rule: Option<String>,
        /// Why.
        reason: Option<String>,
        /// Statement kinds.
        kinds: Vec<String>,
        /// `simple`, `extended` or `function_call`.
        protocol: String,
        /// Run time, µs.
        duration_us: u64,
        /// Rows returned or affected.
        rows: u64,
        /// SQLSTATE if it failed.
        sqlstate: Option<String>,
        /// Server command tag.
        command_tag: Option<String>,
        /// Approval request id, if one was involved.
        approval_id: Option<String>,
        /// Values masked in the results, per rule (`column:schema.table.column`,
        /// `computed`) and detector (`detector:NAME`); absent when none.
        masked: Option<std::collections::BTreeMap<String, u64>>,
        /// The first rows of the result as the client received them (masked
        /// values masked); absent when none were kept.
        sample: Option<SampleDoc>,
        /// Bound parameters as the policy records them (redacted by default:
        /// `<redacted: N bytes>`); absent for the simple protocol.
        parameters: Option<Vec<Option<String>>>,
        /// Bytes of its results sent to the client; absent when none.
        bytes: Option<u64>,
        /// For a request through the HTTP gateway: method, normalised path,
        /// query (redacted by policy), status, sizes and masked body samples;
        /// absent for SQL statements.
        http: Option<Box<HttpDoc>>,
    },
    /// The session closed.
    SessionEnd {
        /// Why it ended.
        reason: String,
        /// Statements seen.
        statements: u64,
        /// Bytes sent to the client.
        bytes_to_client: u64,
        /// Bytes received from the client.
        bytes_from_client: u64,
    },
    /// A client refused before its session began (a session of this one
    /// event).
    AuthFailure {
        /// From where.
        client_addr: String,
        /// The user name it sent (unverified).
        user: String,
        /// The target it asked for.
        target: String,
        /// Why it was refused.
        reason: String,
        /// The issuer its token claimed (unverified), if any.
        claimed_issuer: Option<String>,
        /// Wire protocol.
        protocol: String,
        /// Over TLS?
        tls: bool,
        /// The node that refused it.
        node_id: String,
    },
    /// A statement about to be forwarded under strict delivery: stored
    /// before the statement ran; its outcome follows as a `statement` event.
    StatementIntent {
        /// Exact text as sent.
        text: String,
        /// Deciding policy, if any.
        policy: Option<String>,
        /// Deciding rule, if any.
        rule: Option<String>,
        /// Statement kinds.
        kinds: Vec<String>,
        /// simple | extended.
        protocol: String,
    },
    /// A statement was held for a human's approval: the first event of the
    /// approval's own record (keyed by the approval id).
    ApprovalRequested {
        /// Who asked.
        identity: String,
        /// Which target.
        target: String,
        /// The session the statement came from.
        session_id: String,
        /// The statement, as the approvers saw it.
        statement: String,
        /// SHA-256 (hex) over the exact statement bytes and parameters.
        statement_hash: String,
        /// The deciding policy.
        policy: String,
        /// The deciding rule.
        rule: String,
        /// Why the policy wants approval.
        reason: String,
        /// answer | hold.
        mode: String,
        /// Groups whose members may decide (empty: any approver).
        approvers: Vec<String>,
        /// Approvals needed.
        required: u64,
        /// When the request expires, µs.
        expires_at: i64,
    },
    /// A change to an approval: a vote, an expiry, a withdrawal, or the run
    /// it allowed.
    ApprovalDecision {
        /// Who (an identity, or `sluice` for the gateway itself).
        actor: String,
        /// approve | deny | expire | cancel | run.
        action: String,
        /// api | slack | email | node | system.
        channel: String,
        /// Why, as the actor said.
        reason: String,
        /// The request's state after the change (`consumed` once run).
        state: String,
    },
    /// A decision through a channel was refused before any vote (a reused,
    /// expired, altered or foreign email link); recorded as a session of
    /// this one event.
    ApprovalRefused {
        /// The request the attempt named (as claimed, when the link was
        /// altered).
        approval_id: String,
        /// Who the attempt named (as claimed, when the link was altered).
        actor: String,
        /// email.
        channel: String,
        /// Why it was refused.
        reason: String,
    },
    /// An administrator changed what the gateway enforces or who may use it
    /// (a policy, a target, an identity, a credential); recorded as a
    /// session of this one event, chained and checkpointed like the rest.
    ConfigChange {
        /// Who made it.
        actor: String,
        /// created | replaced | deleted | disabled | issued | revoked.
        action: String,
        /// policy | target | service_account | token | api_key | join_token.
        resource: String,
        /// The resource's name or id.
        name: String,
        /// The version the change produced (policies), else 0.
        version: Option<u64>,
        /// SHA-256 (hex) of the document the change stored (policies), so a
        /// decision can be tied to the exact text in force.
        digest: Option<String>,
    },
}

/// The documented shape of an HTTP request's part of a statement event.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code, reason = "documentation only")]
pub struct HttpDoc {
    /// The method as received.
    pub method: String,
    /// The normalised path decided and forwarded.
    pub path: String,
    /// The query, values redacted as the policy says; absent when empty.
    pub query: Option<String>,
    /// The status the client received.
    pub status: u32,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// The start of the request body, masked; absent when empty.
    pub request_sample: Option<String>,
    /// The start of the response body as the client received it; absent
    /// when empty.
    pub response_sample: Option<String>,
}

/// The documented shape of a result sample.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code, reason = "documentation only")]
pub struct SampleDoc {
    /// Column names, when the result described them.
    columns: Option<Vec<String>>,
    /// Rows; `null` for SQL NULL.
    rows: Vec<Vec<Option<String>>>,
    /// The result had more than the sample keeps.
    truncated: bool,
}

/// Paging for a session's events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// A `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// A session's events in sequence order, a page at a time.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", operation_id = "list_session_events", tag = "sessions", security(("bearer" = ["auditor", "admin"])),
    params(("id" = String, Path, description = "Session id"), EventQuery),
    responses(
        (status = 200, description = "A page of events", body = Page<EventView>),
        (status = 400, description = "Bad parameter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list(
    _: Caller<AuditorOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventQuery>,
) -> Result<Json<Page<EventView>>, ApiError> {
    let limit = page_limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = match q.cursor.as_deref() {
        None => 0,
        Some(c) => c.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(
                "the cursor is invalid; pass back a next_cursor unchanged".to_owned(),
            )
        })?,
    };
    if s.cp.store.get_session(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no session {id:?}")));
    }
    let page = s.cp.store.list_events(&id, after, limit).await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(EventView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use utoipa::PartialSchema as _;

    fn keys(v: &serde_json::Value) -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every stored event kind, with every optional field filled. The match
    /// has no wildcard, so a new kind in the store fails to compile here.
    fn samples() -> Vec<EventKind> {
        let s = || "x".to_owned();
        let all = vec![
            EventKind::SessionStart {
                identity: s(),
                identity_kind: s(),
                groups: vec![s()],
                target: s(),
                client_addr: s(),
                tls: true,
                protocol: s(),
                token_id: s(),
                application_name: s(),
                node_id: s(),
            },
            EventKind::Statement {
                text: s(),
                decision: s(),
                policy: s(),
                rule: s(),
                reason: s(),
                kinds: vec![s()],
                protocol: s(),
                duration_us: 1,
                rows: 1,
                sqlstate: s(),
                command_tag: s(),
                approval_id: s(),
                masked: [(s(), 1)].into(),
                sample: Some(sluice_control_plane::store::ResultSample {
                    columns: vec![s()],
                    rows: vec![vec![Some(s()), None]],
                    truncated: true,
                }),
                parameters: vec![Some(s()), None],
                bytes: 1,
                http: Some(Box::new(sluice_control_plane::store::HttpExchange {
                    method: s(),
                    path: s(),
                    query: s(),
                    status: 200,
                    request_bytes: 1,
                    response_bytes: 1,
                    request_sample: s(),
                    response_sample: s(),
                })),
            },
            EventKind::SessionEnd {
                reason: s(),
                statements: 1,
                bytes_to_client: 1,
                bytes_from_client: 1,
            },
            EventKind::AuthFailure {
                client_addr: s(),
                user: s(),
                target: s(),
                reason: s(),
                claimed_issuer: s(),
                protocol: s(),
                tls: true,
                node_id: s(),
            },
            EventKind::StatementIntent {
                text: s(),
                policy: s(),
                rule: s(),
                kinds: vec![s()],
                protocol: s(),
            },
            EventKind::ApprovalRequested {
                identity: s(),
                target: s(),
                session_id: s(),
                statement: s(),
                statement_hash: s(),
                policy: s(),
                rule: s(),
                reason: s(),
                mode: s(),
                approvers: vec![s()],
                required: 1,
                expires_at: 1,
            },
            EventKind::ApprovalDecision {
                actor: s(),
                action: s(),
                channel: s(),
                reason: s(),
                state: s(),
            },
            EventKind::ApprovalRefused {
                approval_id: s(),
                actor: s(),
                channel: s(),
                reason: s(),
            },
            EventKind::ConfigChange {
                actor: s(),
                action: s(),
                resource: s(),
                name: s(),
                version: 1,
                digest: s(),
            },
        ];
        for k in &all {
            match k {
                EventKind::SessionStart { .. }
                | EventKind::Statement { .. }
                | EventKind::SessionEnd { .. }
                | EventKind::AuthFailure { .. }
                | EventKind::StatementIntent { .. }
                | EventKind::ConfigChange { .. }
                | EventKind::ApprovalRequested { .. }
                | EventKind::ApprovalDecision { .. }
                | EventKind::ApprovalRefused { .. } => {}
            }
        }
        all
    }

    #[test]
    fn documented_event_schema_matches_the_store() {
        let schema = serde_json::to_value(EventDetail::schema()).unwrap();
        let variants = schema["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), samples().len());
        for kind in samples() {
            let payload = serde_json::to_value(&kind).unwrap();
            let name = payload["kind"].as_str().unwrap().to_owned();
            let doc = variants
                .iter()
                .find(|v| v["properties"]["kind"]["enum"][0] == name.as_str())
                .unwrap_or_else(|| panic!("no documented variant for {name}"));
            assert_eq!(keys(&payload), keys(&doc["properties"]), "fields of {name}");
        }
    }

    #[test]
    fn event_view_flattens_payload_next_to_seq_and_times() {
        let view = EventView::from(StoredEvent {
            session_id: "s".to_owned(),
            seq: 7,
            at: 1_700_000_000_123_456,
            kind: samples().remove(1),
        });
        let v = serde_json::to_value(&view).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["kind"], "statement");
        assert_eq!(v["text"], "x");
        assert_eq!(v["at_us"], 1_700_000_000_123_456_i64);
        assert_eq!(v["at"], "2023-11-14T22:13:20.123456Z");
    }
}
