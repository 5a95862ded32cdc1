//! `/api/v1/service-accounts`: identities for AI agents and automation.
//! Each gets a client id and secret (the secret shown once) to exchange for
//! short-lived tokens at `/oauth/token`, and admins can issue, list and
//! revoke its tokens here.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use sluice_control_plane::identities::IssueError;
use sluice_control_plane::store::{IssuedTokenRecord, NewServiceAccount, ServiceAccount};
use utoipa::ToSchema;

use crate::auth::{AdminOnly, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::{AppState, Items, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/service-accounts", get(list).post(create))
        .route("/api/v1/service-accounts/{name}", get(show).delete(disable))
        .route(
            "/api/v1/service-accounts/{name}/tokens",
            get(list_tokens).post(issue_token),
        )
        .route(
            "/api/v1/service-accounts/{name}/tokens/{id}",
            delete(revoke_token),
        )
}

/// A service account without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountView {
    /// Stable id.
    pub id: String,
    /// Unique name; the subject of its tokens and of its audit records.
    pub name: String,
    /// `agent` (an AI agent) or `service` (other automation).
    pub kind: String,
    /// What it is for.
    pub description: String,
    /// The person answerable for it.
    pub owner: String,
    /// Identity groups its tokens carry (they select policies).
    pub groups: Vec<String>,
    /// The OAuth2 client id for `/oauth/token`.
    pub client_id: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// When it was disabled, RFC 3339; absent while active.
    pub disabled_at: Option<String>,
}

impl From<ServiceAccount> for ServiceAccountView {
    fn from(a: ServiceAccount) -> Self {
        Self {
            created_at: rfc3339(a.created_at),
            disabled_at: a.disabled_at.map(rfc3339),
            id: a.id,
            name: a.name,
            kind: a.kind,
            description: a.description,
            owner: a.owner,
            groups: a.groups,
            client_id: a.client_id,
        }
    }
}

/// A service account just created: the only response with its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedServiceAccountView {
    /// The account.
    #[serde(flatten)]
    pub account: ServiceAccountView,
    /// The client secret (`scs_…`); it cannot be shown again.
    pub client_secret: String,
}

/// What an admin sends to create a service account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceAccount {
    /// `[a-z0-9_.-]{1,63}`.
    pub name: String,
    /// `agent` or `service`.
    #[serde(default = "default_kind")]
    #[schema(default = "agent")]
    pub kind: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The person answerable for it; defaults to the admin creating it.
    #[serde(default)]
    pub owner: Option<String>,
    /// Identity groups, `[a-z0-9_.-]{1,63}` each.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_kind() -> String {
    "agent".to_owned()
}

fn is_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
        })
}

impl CreateServiceAccount {
    fn validate(self, caller: &str) -> Result<NewServiceAccount, ApiError> {
        if !is_name(&self.name) {
            return Err(ApiError::BadRequest(
                "name must be 1 to 63 characters of a-z, 0-9, _, - and .".to_owned(),
            ));
        }
        if self.kind != "agent" && self.kind != "service" {
            return Err(ApiError::BadRequest(format!(
                "kind must be \"agent\" or \"service\", not {:?}",
                self.kind
            )));
        }
        if let Some(bad) = self.groups.iter().find(|g| !is_name(g)) {
            return Err(ApiError::BadRequest(format!(
                "group {bad:?} must be 1 to 63 characters of a-z, 0-9, _, - and ."
            )));
        }
        let text_ok = |s: &str| s.chars().count() <= 200 && !s.chars().any(char::is_control);
        let owner = self.owner.unwrap_or_else(|| caller.to_owned());
        if !text_ok(&self.description) || !text_ok(&owner) || owner.is_empty() {
            return Err(ApiError::BadRequest(
                "description and owner must be at most 200 characters without control characters; owner must not be empty".to_owned(),
            ));
        }
        Ok(NewServiceAccount {
            name: self.name,
            kind: self.kind,
            description: self.description,
            owner,
            groups: self.groups,
        })
    }
}

/// Creates a service account and shows its client secret once.
#[utoipa::path(post, path = "/api/v1/service-accounts", operation_id = "create_service_account", tag = "identities", security(("bearer" = ["admin"])),
    request_body = CreateServiceAccount,
    responses(
        (status = 201, description = "Created; the secret is in `client_secret`", body = CreatedServiceAccountView),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Json(body): Json<CreateServiceAccount>,
) -> Result<(StatusCode, Json<CreatedServiceAccountView>), ApiError> {
    let new = body.validate(&caller.identity.name)?;
    let created = s.cp.store.create_service_account(new).await?;
    tracing::info!(account = %created.account.name, by = %caller.identity.name, "service account created");
    crate::record_change(
        &s,
        &caller.identity,
        "created",
        "service_account",
        &created.account.name,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedServiceAccountView {
            account: created.account.into(),
            client_secret: created.client_secret,
        }),
    ))
}

/// Lists service accounts, without secrets.
#[utoipa::path(get, path = "/api/v1/service-accounts", operation_id = "list_service_accounts", tag = "identities", security(("bearer" = ["admin"])),
    responses((status = 200, description = "All service accounts", body = Items<ServiceAccountView>)))]
pub(crate) async fn list(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
) -> Result<Json<Items<ServiceAccountView>>, ApiError> {
    let all = s.cp.store.list_service_accounts().await?;
    Ok(Json(Items::new(all.into_iter().map(Into::into).collect())))
}

async fn find(s: &AppState, name: &str) -> Result<ServiceAccount, ApiError> {
    s.cp.store
        .get_service_account(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no service account named {name:?}")))
}

/// One service account.
#[utoipa::path(get, path = "/api/v1/service-accounts/{name}", operation_id = "get_service_account", tag = "identities", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "The account", body = ServiceAccountView),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn show(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceAccountView>, ApiError> {
    Ok(Json(find(&s, &name).await?.into()))
}

/// Disables an account: it gets no new tokens, and every token it holds is
/// revoked on every node at once. The record stays, since audit refers to it.
#[utoipa::path(delete, path = "/api/v1/service-accounts/{name}", operation_id = "disable_service_account", tag = "identities", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 404, description = "No active account with this name", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn disable(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.cp.disable_service_account(&name).await? {
        tracing::info!(account = %name, by = %caller.identity.name, "service account disabled");
        crate::record_change(&s, &caller.identity, "disabled", "service_account", &name).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no active service account named {name:?}"
        )))
    }
}

/// What an admin sends to issue a token.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// Lifetime in seconds; the configured default (15 minutes) if absent,
    /// at most the configured maximum.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A token just issued: the only response that carries it.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedTokenView {
    /// Its id (`jti`), used to revoke it.
    pub id: String,
    /// The compact JWT to use as the password (or bearer token).
    pub token: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
}

/// A token of an account, without the token itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Its id (`jti`).
    pub id: String,
    /// Who asked for it: an admin, or `client_credentials`.
    pub issued_by: String,
    /// Issue time, RFC 3339.
    pub issued_at: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// Revocation time, RFC 3339; absent unless revoked.
    pub revoked_at: Option<String>,
}

impl From<IssuedTokenRecord> for TokenView {
    fn from(t: IssuedTokenRecord) -> Self {
        Self {
            id: t.id,
            issued_by: t.issued_by,
            issued_at: rfc3339(t.issued_at),
            expires_at: rfc3339(t.expires_at),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::TtlTooLong { .. } | IssueError::Disabled(_) => {
                Self::BadRequest(e.to_string())
            }
            IssueError::Store(e) => e.into(),
            IssueError::Sign(e) => Self::Internal(e.to_string()),
        }
    }
}

/// Issues a token for the account, shown once.
#[utoipa::path(post, path = "/api/v1/service-accounts/{name}/tokens", operation_id = "issue_service_account_token", tag = "identities", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Account name")),
    request_body = IssueToken,
    responses(
        (status = 201, description = "Issued; the token is in `token`", body = IssuedTokenView),
        (status = 400, description = "Lifetime too long, or the account is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn issue_token(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<IssueToken>,
) -> Result<(StatusCode, Json<IssuedTokenView>), ApiError> {
    let account = find(&s, &name).await?;
    let ttl = body.ttl_seconds.map(Duration::from_secs);
    let issued =
        s.cp.issue_account_token(&account, ttl, &caller.identity.name)
            .await?;
    crate::record_change(&s, &caller.identity, "issued", "token", &issued.token_id).await;
    let expires_us = i64::try_from(issued.expires_at)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    Ok((
        StatusCode::CREATED,
        Json(IssuedTokenView {
            id: issued.token_id,
            token: issued.token,
            expires_at: rfc3339(expires_us),
        }),
    ))
}

/// Lists the account's tokens, newest first, without the tokens themselves.
#[utoipa::path(get, path = "/api/v1/service-accounts/{name}/tokens", operation_id = "list_service_account_tokens", tag = "identities", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "Its tokens", body = Items<TokenView>),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_tokens(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Items<TokenView>>, ApiError> {
    let account = find(&s, &name).await?;
    let tokens = s.cp.store.list_issued_tokens(&account.id).await?;
    Ok(Json(Items::new(
        tokens.into_iter().map(Into::into).collect(),
    )))
}

/// Revokes one token: every node refuses it from the next snapshot on.
#[utoipa::path(delete, path = "/api/v1/service-accounts/{name}/tokens/{id}", operation_id = "revoke_service_account_token", tag = "identities", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Account name"), ("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No live token with this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn revoke_token(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let account = find(&s, &name).await?;
    if s.cp.revoke_account_token(&account, &id).await? {
        tracing::info!(account = %name, token_id = %id, by = %caller.identity.name, "token revoked");
        crate::record_change(&s, &caller.identity, "revoked", "token", &id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no live token {id:?} of service account {name:?}"
        )))
    }
}
