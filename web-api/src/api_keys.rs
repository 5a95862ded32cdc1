//! `/api/v1/api-keys`: long-lived REST credentials for automation, each
//! carrying exactly one role. Shown once, stored hashed, revocable. They
//! work only on the REST API: a node never accepts one.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use sluice_control_plane::store::{API_KEY_PREFIX, ApiKey};
use sluice_identity::{Identity, PrincipalKind, Role};
use utoipa::ToSchema;

use crate::auth::{AdminOnly, Caller, role_name};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::{AppState, Items, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", get(list).post(create))
        .route("/api/v1/api-keys/{id}", delete(revoke))
}

/// An API key without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Stable id, used to revoke it.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The role it carries.
    pub role: String,
    /// Its first characters, to tell keys apart.
    pub prefix: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Revocation time, RFC 3339; absent while live.
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
            id: k.id,
            name: k.name,
            role: k.role,
            prefix: k.prefix,
            created_by: k.created_by,
        }
    }
}

/// A key just created: the only response that carries it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyView {
    /// The record.
    #[serde(flatten)]
    pub record: ApiKeyView,
    /// The key (`slk_…`), sent as `Authorization: Bearer`; it cannot be shown again.
    pub key: String,
}

/// What an admin sends to create a key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What it is for, 1 to 100 characters.
    pub name: String,
    /// `admin`, `approver` or `auditor`.
    #[schema(value_type = String, example = "auditor")]
    pub role: Role,
}

/// Creates an API key and shows it once.
#[utoipa::path(post, path = "/api/v1/api-keys", operation_id = "create_api_key", tag = "identities", security(("bearer" = ["admin"])),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the secret is in `key`", body = CreatedApiKeyView),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Json(body): Json<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKeyView>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name must be 1 to 100 characters without control characters".to_owned(),
        ));
    }
    let created =
        s.cp.store
            .create_api_key(name, role_name(body.role), &caller.identity.name)
            .await?;
    tracing::info!(api_key = %created.record.id, role = %created.record.role, by = %caller.identity.name, "API key created");
    crate::record_change(
        &s,
        &caller.identity,
        "created",
        "api_key",
        &created.record.id,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKeyView {
            record: created.record.into(),
            key: created.key,
        }),
    ))
}

/// Lists API keys, newest first, without secrets.
#[utoipa::path(get, path = "/api/v1/api-keys", operation_id = "list_api_keys", tag = "identities", security(("bearer" = ["admin"])),
    responses((status = 200, description = "All API keys", body = Items<ApiKeyView>)))]
pub(crate) async fn list(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
) -> Result<Json<Items<ApiKeyView>>, ApiError> {
    let keys = s.cp.store.list_api_keys().await?;
    Ok(Json(Items::new(keys.into_iter().map(Into::into).collect())))
}

/// Revokes an API key at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", operation_id = "revoke_api_key", tag = "identities", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No live key with this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn revoke(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.cp.store.revoke_api_key(&id).await? {
        tracing::info!(api_key = %id, by = %caller.identity.name, "API key revoked");
        crate::record_change(&s, &caller.identity, "revoked", "api_key", &id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no live API key {id:?}")))
    }
}

/// Whether a bearer credential is an API key rather than a JWT.
pub(crate) fn is_api_key(token: &str) -> bool {
    token.starts_with(API_KEY_PREFIX)
}

/// The identity an API key stands for: a service principal named after the
/// key, holding only the key's role.
pub(crate) async fn authenticate(s: &AppState, key: &str) -> Result<Identity, ApiError> {
    let Some(record) = s.cp.store.check_api_key(key).await? else {
        return Err(ApiError::InvalidToken(
            "the API key is unknown or revoked".to_owned(),
        ));
    };
    let role = match record.role.as_str() {
        "admin" => Role::Admin,
        "approver" => Role::Approver,
        "auditor" => Role::Auditor,
        other => {
            return Err(ApiError::Internal(format!(
                "API key with unknown role {other:?}"
            )));
        }
    };
    Ok(Identity {
        name: format!("api-key:{}", record.name),
        kind: PrincipalKind::Service,
        groups: Vec::new(),
        roles: vec![role],
        token_id: record.id,
        expires_at: u64::MAX,
    })
}
