//! Who is calling, and whether they may: a bearer-token extractor that also
//! enforces a role set chosen by the handler's signature, so forgetting a
//! check is a type error rather than a silent hole.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sluice_identity::{Identity, Role, TokenError};

use crate::AppState;
use crate::error::ApiError;

/// A set of roles, any one of which admits the caller. Endpoints name a
/// set as a type parameter of [`Caller`]; new sets (e.g. admin or auditor
/// for session reads) are one small impl each.
pub trait RoleSet: Send + Sync + 'static {
    /// The caller needs at least one of these.
    const ANY_OF: &'static [Role];
    /// Any verified identity is admitted, whatever its roles (the handler
    /// then limits what it sees to its own).
    const ANY_IDENTITY: bool = false;
}

/// Only administrators: everything that changes or reveals configuration.
#[derive(Debug)]
pub struct AdminOnly;

impl RoleSet for AdminOnly {
    const ANY_OF: &'static [Role] = &[Role::Admin];
}

/// Administrators and auditors: reading, verifying and exporting the
/// session record, which auditors need without being able to change
/// configuration.
#[derive(Debug)]
pub struct AuditorOrAdmin;

impl RoleSet for AuditorOrAdmin {
    const ANY_OF: &'static [Role] = &[Role::Auditor, Role::Admin];
}

/// Approvers, and admins: deciding approval requests.
#[derive(Debug)]
pub struct ApproverOrAdmin;

impl RoleSet for ApproverOrAdmin {
    const ANY_OF: &'static [Role] = &[Role::Approver, Role::Admin];
}

/// Any verified identity, agents included: requesting, reading and
/// revoking one's own access grants. Documented as the pseudo-role `any`.
#[derive(Debug)]
pub struct AnyIdentity;

impl RoleSet for AnyIdentity {
    const ANY_OF: &'static [Role] = &[];
    const ANY_IDENTITY: bool = true;
}

/// A caller whose bearer token verified and who holds one of `R`'s roles.
/// Taking it as a handler argument is what protects the endpoint.
#[derive(Debug)]
pub struct Caller<R: RoleSet> {
    /// Who the token names.
    pub identity: Identity,
    roles: PhantomData<fn() -> R>,
}

impl<R: RoleSet> FromRequestParts<AppState> for Caller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = match bearer_token(parts) {
            Ok(t) => t,
            // Pages of the web UI (and only they) also take the sign-in
            // cookie, so the REST API stays immune to cross-site requests.
            Err(e) => crate::ui::cookie_token(parts).ok_or(e)?,
        };
        let identity = authenticate(state, token).await.inspect_err(|e| {
            tracing::info!(error = %e, "API authentication refused");
            record_refusal(state, parts, token, e);
        })?;
        tracing::Span::current().record("identity", tracing::field::display(&identity.name));
        if !R::ANY_IDENTITY && !R::ANY_OF.iter().any(|role| identity.has_role(*role)) {
            let names: Vec<&str> = R::ANY_OF.iter().map(|r| role_name(*r)).collect();
            return Err(ApiError::Forbidden(format!(
                "this endpoint needs the role {}",
                names.join(" or ")
            )));
        }
        Ok(Self {
            identity,
            roles: PhantomData,
        })
    }
}

/// Records a refused API caller in the audit trail as a session of one
/// event, like a refused database client. Written in the background: the
/// caller's answer does not wait for it, and a store failure only logs.
fn record_refusal(state: &AppState, parts: &Parts, token: &str, e: &ApiError) {
    use sluice_control_plane::store::{EventKind, StoredEvent};
    let mut claimed_issuer =
        sluice_identity::oidc::validate::peek_issuer(token).unwrap_or_default();
    claimed_issuer.truncate(claimed_issuer.floor_char_boundary(200));
    let path = parts.uri.path();
    let event = StoredEvent {
        session_id: uuid::Uuid::now_v7().to_string(),
        seq: 1,
        at: sluice_common::unix_us(),
        kind: EventKind::AuthFailure {
            client_addr: String::new(),
            user: String::new(),
            target: format!(
                "{} {}",
                parts.method,
                &path[..path.floor_char_boundary(200)]
            ),
            reason: e.to_string(),
            claimed_issuer,
            protocol: "http".to_owned(),
            tls: false,
            node_id: String::new(),
        },
    };
    let store = state.cp.store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.append_events(&[event]).await {
            tracing::error!(error = %e, "a refused API caller could not be recorded");
        }
    });
}

/// Who a bearer credential names: an API key, or a token that verifies and
/// has not been revoked.
pub(crate) async fn authenticate(state: &AppState, token: &str) -> Result<Identity, ApiError> {
    if crate::api_keys::is_api_key(token) {
        return crate::api_keys::authenticate(state, token).await;
    }
    let identity = match state.trust.verify(token).await {
        Ok(v) => v.identity,
        Err(e) => {
            tracing::warn!(event = "auth_refused", reason = %e, "API caller refused");
            return Err(e.into());
        }
    };
    if state.cp.is_token_revoked(&identity.token_id) {
        return Err(TokenError::Revoked.into());
    }
    Ok(identity)
}

/// The token of an `Authorization: Bearer …` header.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(TokenError::Missing.into());
    };
    let value = value.to_str().map_err(|_| {
        ApiError::InvalidToken("the Authorization header is not valid text".to_owned())
    })?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::InvalidToken(
            "the Authorization header must use the Bearer scheme".to_owned(),
        ));
    }
    Ok(token.trim())
}

/// A role's name in the API and the store.
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Approver => "approver",
        Role::Auditor => "auditor",
    }
}

/// Publishes the keys that verify tokens this control plane signs, so nodes,
/// other services and clients can check tokens without asking us. Public by
/// nature: it holds no secret.
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "get_jwks", tag = "auth",
    responses((status = 200, description = "The JSON Web Key Set", content_type = "application/json", body = Object)))]
pub(crate) async fn jwks(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        s.jwks.as_str().to_owned(),
    )
        .into_response()
}
