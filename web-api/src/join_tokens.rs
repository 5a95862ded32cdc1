//! `/api/v1/join-tokens`: the credentials nodes present to join. The secret
//! exists in a response exactly once, when the token is created.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use sluice_control_plane::store::JoinToken;
use utoipa::ToSchema;

use crate::auth::{AdminOnly, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::{AppState, Items, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/join-tokens", get(list).post(create))
        .route("/api/v1/join-tokens/{id}", delete(revoke))
}

/// A join token without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinTokenView {
    /// Stable id, used to revoke it.
    pub id: String,
    /// What the admin called it.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// Revocation time, RFC 3339; absent while the token is live.
    pub revoked_at: Option<String>,
    /// Revocation time, µs since the epoch.
    pub revoked_at_us: Option<i64>,
}

impl From<JoinToken> for JoinTokenView {
    fn from(t: JoinToken) -> Self {
        Self {
            created_at: rfc3339(t.created_at),
            created_at_us: t.created_at,
            revoked_at: t.revoked_at.map(rfc3339),
            revoked_at_us: t.revoked_at,
            id: t.id,
            name: t.name,
        }
    }
}

/// A join token just created: the only response that carries the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedJoinToken {
    /// Stable id, used to revoke it.
    pub id: String,
    /// What the admin called it.
    pub name: String,
    /// The secret (`sjt_…`) to give the node; it cannot be shown again.
    pub token: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// What an admin sends to create a join token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// A label for people (which node or environment it is for), 1 to 100 characters.
    pub name: String,
}

/// Creates a join token and shows its secret once.
#[utoipa::path(post, path = "/api/v1/join-tokens", operation_id = "create_join_token", tag = "join-tokens", security(("bearer" = ["admin"])),
    request_body = CreateJoinToken,
    responses(
        (status = 201, description = "Created; the secret is in `token`", body = CreatedJoinToken),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Json(body): Json<CreateJoinToken>,
) -> Result<(StatusCode, Json<CreatedJoinToken>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name must be 1 to 100 characters without control characters".to_owned(),
        ));
    }
    let created = s.cp.store.create_join_token(name).await?;
    tracing::info!(join_token = %created.record.id, by = %caller.identity.name, "join token created");
    crate::record_change(
        &s,
        &caller.identity,
        "created",
        "join_token",
        &created.record.id,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedJoinToken {
            created_at: rfc3339(created.record.created_at),
            id: created.record.id,
            name: created.record.name,
            token: created.token,
        }),
    ))
}

/// Lists join tokens, newest first, without secrets.
#[utoipa::path(get, path = "/api/v1/join-tokens", operation_id = "list_join_tokens", tag = "join-tokens", security(("bearer" = ["admin"])),
    responses((status = 200, description = "All join tokens", body = Items<JoinTokenView>)))]
pub(crate) async fn list(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
) -> Result<Json<Items<JoinTokenView>>, ApiError> {
    let tokens = s.cp.store.list_join_tokens().await?;
    Ok(Json(Items::new(
        tokens.into_iter().map(JoinTokenView::from).collect(),
    )))
}

/// Revokes a join token: from now on the control plane refuses any node
/// that presents it (on registering or reconnecting).
#[utoipa::path(delete, path = "/api/v1/join-tokens/{id}", operation_id = "revoke_join_token", tag = "join-tokens", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Join token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No live join token with this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn revoke(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.cp.store.revoke_join_token(&id).await? {
        tracing::info!(join_token = %id, by = %caller.identity.name, "join token revoked");
        crate::record_change(&s, &caller.identity, "revoked", "join_token", &id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no live join token {id:?}")))
    }
}
