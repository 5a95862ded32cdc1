//! The API's one error type and its RFC 9457 `application/problem+json` form.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_control_plane::policies::PolicyChangeError;
use sluice_control_plane::store::StoreError;
use sluice_identity::TokenError;
use sluice_policy::PolicyError;
use utoipa::ToSchema;

/// The media type of every error body, so clients can tell errors from data
/// without looking at the status code.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a handler can fail with. Each variant knows its status code and
/// a detail that is safe to show a caller; internal causes are logged, never
/// sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller sent no credential at all (401).
    #[error("an access token is required: send Authorization: Bearer <token>")]
    MissingToken,
    /// The caller's credential was refused (401).
    #[error("{0}")]
    InvalidToken(String),
    /// The caller is known but lacks the role the endpoint needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed or fails validation (400).
    #[error("{0}")]
    BadRequest(String),
    /// The named resource or route does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method (405).
    #[error("this method is not allowed on this resource")]
    MethodNotAllowed,
    /// A unique name is already taken (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is well formed but its document is not acceptable, e.g.
    /// a policy that does not check (422). `errors` names each field at
    /// fault and travels as an extension member of the problem.
    #[error("{detail}")]
    Unprocessable {
        /// A summary safe to show the caller.
        detail: String,
        /// The fields at fault.
        errors: Vec<FieldError>,
    },
    /// The body is not of a media type the endpoint takes, or too large
    /// (415 / 413).
    #[error("{detail}")]
    Body {
        /// 413 or 415.
        status: StatusCode,
        /// What was wrong, in the framework's words (no internal state).
        detail: String,
    },
    /// Something failed on our side (500). The cause is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::Cursor => Self::BadRequest(
                "the cursor is invalid; pass back a next_cursor unchanged".to_owned(),
            ),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        Self::Unprocessable {
            detail: format!("the policy is invalid: {e}"),
            errors: vec![FieldError {
                path: e.path,
                message: e.message,
            }],
        }
    }
}

impl From<PolicyChangeError> for ApiError {
    fn from(e: PolicyChangeError) -> Self {
        match e {
            PolicyChangeError::Invalid(e) => e.into(),
            PolicyChangeError::NameMismatch { expected, got } => {
                let message = format!(
                    "the document is named {got:?}, but the request addresses {expected:?}"
                );
                Self::Unprocessable {
                    detail: format!("the policy is invalid: name: {message}"),
                    errors: vec![FieldError {
                        path: "name".to_owned(),
                        message,
                    }],
                }
            }
            PolicyChangeError::Exists(name) => Self::Conflict(format!(
                "a policy named {name:?} already exists; PUT /api/v1/policies/{name} replaces it"
            )),
            PolicyChangeError::NotFound(name) => Self::NotFound(format!(
                "no policy named {name:?}; POST /api/v1/policies creates one"
            )),
            PolicyChangeError::Store(e) => e.into(),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Missing => Self::MissingToken,
            // TokenError's text is documented as safe to show a client.
            other => Self::InvalidToken(other.to_string()),
        }
    }
}

/// An RFC 9457 problem document: what every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means the status says it all.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The status code's reason phrase.
    pub title: String,
    /// The HTTP status code, repeated for clients that lose headers.
    pub status: u16,
    /// What went wrong with this request, in words safe to show the caller.
    pub detail: String,
    /// Extension member of 422 problems: each field of the submitted
    /// document that is at fault. Absent from other problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One field of a submitted document that is at fault.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the field (`statements.rules[2].tables`); empty when
    /// the document as a whole is at fault (a YAML syntax error, whose
    /// message gives the line and column).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Body { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Internal(_) => {
                "the server could not complete the request; the error has been logged".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            errors: match self {
                Self::Unprocessable { errors, .. } => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // RFC 6750 section 3: no error code when no credential was sent.
        let challenge = match &self {
            Self::MissingToken => Some(r#"Bearer realm="sluice""#),
            Self::InvalidToken(_) => Some(r#"Bearer realm="sluice", error="invalid_token""#),
            Self::Forbidden(_) => Some(r#"Bearer realm="sluice", error="insufficient_scope""#),
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The answer to any path no route matches.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource".to_owned())
}

/// The answer to a known path called with the wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
