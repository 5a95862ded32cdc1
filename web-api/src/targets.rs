//! `/api/v1/targets`: the systems Sluice guards. The upstream password is
//! write-only: no response type here has a field that could carry it.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sluice_control_plane::secrets::{self, SecretError, Stored};
use sluice_control_plane::store::{HttpSettings, Target};
use sluice_control_plane::targets::{
    Credential, LoginSpec, TargetError, TargetSpec, validate_http,
};
use utoipa::ToSchema;

use crate::auth::{AdminOnly, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::{AppState, Items, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/targets", get(list).post(create))
        .route("/api/v1/targets/{name}", get(show).delete(remove))
}

/// A target as the API shows it. Deliberately has no password field.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetView {
    /// Stable id.
    pub id: String,
    /// The name clients connect to (their `database` parameter).
    pub name: String,
    /// Protocol family of the upstream, `postgres` or `http`.
    pub kind: String,
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Upstream database name.
    pub database: String,
    /// The gateway's upstream user.
    pub username: String,
    /// How the gateway secures its upstream connection.
    pub tls_mode: String,
    /// Where `username`'s credential is: `sealed` (encrypted in the control
    /// plane), `reference` (resolved on the node) or `none`.
    pub credential: String,
    /// The node-local reference (`env:NAME`, `file:PATH`), when that is the
    /// custody; a reference names a secret, it is not one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_ref: Option<String>,
    /// Upstream roles used for identity groups, first match wins.
    pub logins: Vec<LoginView>,
    /// Kind `http`: the base URL requests are forwarded under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Kind `http`: how the credential is sent (`bearer`, `basic`,
    /// `header:NAME`, `query:NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Kind `http`: whether extra CA certificates are trusted upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_ca: Option<bool>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
}

/// An upstream role for one identity group, without its credential.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginView {
    /// The identity group.
    pub group: String,
    /// The upstream user its identities connect as.
    pub username: String,
    /// `sealed`, `reference` or `none`.
    pub credential: String,
    /// The node-local reference, when that is the custody.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_ref: Option<String>,
}

/// The custody of a stored credential, and its reference if it is one.
fn custody(stored: &str) -> (String, Option<String>) {
    match secrets::parse(stored) {
        Ok(Stored::Sealed { .. }) => ("sealed".to_owned(), None),
        Ok(Stored::Reference(r)) => ("reference".to_owned(), Some(r.to_owned())),
        Ok(Stored::Empty) => ("none".to_owned(), None),
        Err(_) => ("invalid".to_owned(), None),
    }
}

impl From<Target> for TargetView {
    fn from(t: Target) -> Self {
        let (credential, password_ref) = custody(&t.secret);
        let is_http = t.kind == "http";
        Self {
            base_url: is_http.then(|| t.http.base_url.clone()),
            auth: is_http.then(|| t.http.auth.clone()),
            custom_ca: is_http.then_some(!t.http.ca_pem.is_empty()),
            credential,
            password_ref,
            logins: t
                .logins
                .iter()
                .map(|l| {
                    let (credential, password_ref) = custody(&l.secret);
                    LoginView {
                        group: l.group.clone(),
                        username: l.username.clone(),
                        credential,
                        password_ref,
                    }
                })
                .collect(),
            created_at: rfc3339(t.created_at),
            created_at_us: t.created_at,
            id: t.id,
            name: t.name,
            kind: t.kind,
            host: t.host,
            port: t.port,
            database: t.database,
            username: t.username,
            tls_mode: t.tls_mode,
        }
    }
}

/// What an admin sends to register a target. Unknown fields are refused so
/// a typo (`sslmode`, `user`) is an error, not a silently ignored setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTarget {
    /// `[a-z0-9_-]{1,63}`; what clients put in their `database` parameter.
    pub name: String,
    /// `postgres` or `http`.
    #[serde(default = "default_kind")]
    #[schema(default = "postgres")]
    pub kind: String,
    /// Upstream host name or address (postgres).
    #[serde(default)]
    pub host: String,
    /// Upstream port (postgres).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: i64,
    /// Upstream database name (postgres).
    #[serde(default)]
    pub database: String,
    /// The gateway's upstream user (postgres).
    #[serde(default)]
    pub username: String,
    /// Kind `http`: the base URL (`https://api.internal/v1`; `http://` too).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Kind `http`: how `password` (the API's credential) is sent upstream:
    /// `bearer`, `basic` (`password` is then `user:password`),
    /// `header:NAME` or `query:NAME`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Kind `http`: extra CA certificates (PEM) trusted for the upstream;
    /// the built-in roots are always trusted, TLS is always verified.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The gateway's upstream password: sealed in the control plane,
    /// handed to a node only for a session, never returned.
    #[serde(default)]
    #[schema(write_only, format = Password)]
    pub password: Option<String>,
    /// Instead of `password`: `env:NAME` or `file:/path`, resolved on each
    /// node, so the control plane never holds the secret.
    #[serde(default)]
    pub password_ref: Option<String>,
    /// `disable`, `prefer`, `require` or `verify-full`.
    #[serde(default = "default_tls_mode")]
    #[schema(default = "prefer")]
    pub tls_mode: String,
    /// Upstream roles for identity groups, first match wins, so an agent's
    /// statements can run under a least-privileged role.
    #[serde(default)]
    pub logins: Vec<CreateLogin>,
}

/// An upstream role for one identity group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLogin {
    /// The identity group.
    pub group: String,
    /// The upstream user.
    pub username: String,
    /// Its password (write-only), or:
    #[serde(default)]
    #[schema(write_only, format = Password)]
    pub password: Option<String>,
    /// a node-local reference.
    #[serde(default)]
    pub password_ref: Option<String>,
}

/// One credential from a password and a reference, at most one given.
fn credential(
    field: &str,
    password: Option<String>,
    reference: Option<String>,
) -> Result<Credential, ApiError> {
    match (password, reference) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(format!(
            "{field}: give password or password_ref, not both"
        ))),
        // The Postgres wire protocol ends strings with NUL.
        (Some(p), None) if p.contains('\0') => Err(ApiError::BadRequest(format!(
            "{field}: password must not contain NUL"
        ))),
        (Some(p), None) if p.is_empty() => Ok(Credential::None),
        (Some(p), None) => Ok(Credential::Password(p)),
        (None, Some(r)) => {
            secrets::reference(&r).map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))?;
            Ok(Credential::Reference(r))
        }
        (None, None) => Ok(Credential::None),
    }
}

impl From<TargetError> for ApiError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Secret(e @ (SecretError::NoKey | SecretError::BadReference)) => {
                Self::BadRequest(e.to_string())
            }
            TargetError::Store(e) => e.into(),
            TargetError::NotFound(t) => Self::NotFound(format!("no target named {t:?}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

fn default_kind() -> String {
    "postgres".to_owned()
}

fn default_tls_mode() -> String {
    "prefer".to_owned()
}

const TLS_MODES: [&str; 4] = ["disable", "prefer", "require", "verify-full"];

impl CreateTarget {
    /// Checks every field, naming the first bad one.
    fn validate(self) -> Result<TargetSpec, ApiError> {
        let bad = |msg: String| Err(ApiError::BadRequest(msg));
        let name_ok = (1..=63).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return bad("name must be 1 to 63 characters of a-z, 0-9, _ and -".to_owned());
        }
        if self.kind == "http" {
            return self.validate_http();
        }
        if self.kind != "postgres" {
            return bad(format!(
                "kind {:?} is not supported; use \"postgres\" or \"http\"",
                self.kind
            ));
        }
        if self.base_url.is_some() || self.auth.is_some() || self.ca_pem.is_some() {
            return bad("base_url, auth and ca_pem are for kind \"http\" only".to_owned());
        }
        let Some(port) = u16::try_from(self.port).ok().filter(|p| *p != 0) else {
            return bad("port must be between 1 and 65535".to_owned());
        };
        if !TLS_MODES.contains(&self.tls_mode.as_str()) {
            return bad(format!("tls_mode must be one of {}", TLS_MODES.join(", ")));
        }
        for (field, value, max) in [
            ("host", &self.host, 253),
            ("database", &self.database, 63),
            ("username", &self.username, 63),
        ] {
            if value.is_empty()
                || value.len() > max
                || value.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return bad(format!(
                    "{field} must be 1 to {max} bytes without spaces or control characters"
                ));
            }
        }
        let mut logins = Vec::with_capacity(self.logins.len());
        for (i, l) in self.logins.into_iter().enumerate() {
            let field = format!("logins[{i}]");
            let ok = |v: &str| {
                (1..=63).contains(&v.len())
                    && !v.chars().any(|c| c.is_control() || c.is_whitespace())
            };
            if !ok(&l.group) || !ok(&l.username) {
                return bad(format!(
                    "{field}: group and username must be 1 to 63 bytes without spaces or control characters"
                ));
            }
            logins.push(LoginSpec {
                credential: credential(&field, l.password, l.password_ref)?,
                group: l.group,
                username: l.username,
            });
        }
        Ok(TargetSpec {
            credential: credential("target", self.password, self.password_ref)?,
            name: self.name,
            kind: self.kind,
            host: self.host,
            port,
            database: self.database,
            username: self.username,
            tls_mode: self.tls_mode,
            logins,
            http: HttpSettings::default(),
        })
    }

    /// An HTTP target: a base URL and a credential placement instead of a
    /// host, database and user.
    fn validate_http(self) -> Result<TargetSpec, ApiError> {
        let bad = |msg: &str| Err(ApiError::BadRequest(msg.to_owned()));
        if !self.host.is_empty() || self.port != 0 || !self.database.is_empty() {
            return bad("kind \"http\" takes base_url, not host, port or database");
        }
        if !self.logins.is_empty() || !self.username.is_empty() {
            return bad("kind \"http\" takes no username or logins");
        }
        let credential = credential("target", self.password, self.password_ref)?;
        let http = HttpSettings {
            base_url: self.base_url.unwrap_or_default(),
            auth: self.auth.unwrap_or_else(|| "bearer".to_owned()),
            ca_pem: self.ca_pem.unwrap_or_default(),
        };
        validate_http(&http, &credential).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let url = url::Url::parse(&http.base_url)
            .map_err(|_| ApiError::BadRequest("base_url".to_owned()))?;
        Ok(TargetSpec {
            name: self.name,
            kind: self.kind,
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port_or_known_default().unwrap_or(443),
            database: String::new(),
            username: String::new(),
            credential,
            tls_mode: if url.scheme() == "https" {
                "verify-full"
            } else {
                "disable"
            }
            .to_owned(),
            logins: Vec::new(),
            http,
        })
    }
}

/// Lists every target, by name.
#[utoipa::path(get, path = "/api/v1/targets", operation_id = "list_targets", tag = "targets", security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "All targets", body = Items<TargetView>),
    ))]
pub(crate) async fn list(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
) -> Result<Json<Items<TargetView>>, ApiError> {
    let targets = s.cp.store.list_targets().await?;
    Ok(Json(Items::new(
        targets.into_iter().map(TargetView::from).collect(),
    )))
}

/// Registers a target; nodes learn of it with the next snapshot.
#[utoipa::path(post, path = "/api/v1/targets", operation_id = "create_target", tag = "targets", security(("bearer" = ["admin"])),
    request_body = CreateTarget,
    responses(
        (status = 201, description = "Created", body = TargetView),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Json(body): Json<CreateTarget>,
) -> Result<(StatusCode, Json<TargetView>), ApiError> {
    let target = s.cp.create_target(body.validate()?).await?;
    tracing::info!(target_name = %target.name, by = %caller.identity.name, "target created");
    crate::record_change(&s, &caller.identity, "created", "target", &target.name).await;
    Ok((StatusCode::CREATED, Json(target.into())))
}

/// One target by name.
#[utoipa::path(get, path = "/api/v1/targets/{name}", operation_id = "get_target", tag = "targets", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Target name")),
    responses(
        (status = 200, description = "The target", body = TargetView),
        (status = 404, description = "No such target", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn show(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TargetView>, ApiError> {
    match s.cp.store.get_target(&name).await? {
        Some(t) => Ok(Json(t.into())),
        None => Err(ApiError::NotFound(format!("no target named {name:?}"))),
    }
}

/// Removes a target; nodes stop serving it with the next snapshot.
#[utoipa::path(delete, path = "/api/v1/targets/{name}", operation_id = "delete_target", tag = "targets", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Target name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such target", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn remove(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.cp.delete_target(&name).await? {
        tracing::info!(target_name = %name, by = %caller.identity.name, "target deleted");
        crate::record_change(&s, &caller.identity, "deleted", "target", &name).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no target named {name:?}")))
    }
}
