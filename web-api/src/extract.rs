//! Axum's JSON, query and path extractors, with their rejections turned into
//! [`ApiError`] so a malformed request gets a problem document like any
//! other error instead of axum's plain-text body.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(from_json_rejection(&rejection)),
        }
    }
}

fn from_json_rejection(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    match status {
        // A wrong or missing content type, or a body over the size limit.
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE => ApiError::Body {
            status,
            detail: rejection.body_text(),
        },
        // Malformed JSON and JSON of the wrong shape are both the client's
        // request being bad; one status keeps clients simple.
        s if s.is_client_error() => ApiError::BadRequest(rejection.body_text()),
        _ => ApiError::Internal(rejection.body_text()),
    }
}

/// The error for a raw body that could not be read: 413 over the size
/// limit, 400 otherwise.
pub(crate) fn from_bytes_rejection(rejection: &BytesRejection) -> ApiError {
    let status = rejection.status();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::Body {
            status,
            detail: rejection.body_text(),
        },
        s if s.is_client_error() => ApiError::BadRequest(rejection.body_text()),
        _ => ApiError::Internal(rejection.body_text()),
    }
}

/// Query-string parameters.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(from_query_rejection(&rejection)),
        }
    }
}

fn from_query_rejection(rejection: &QueryRejection) -> ApiError {
    if rejection.status().is_client_error() {
        ApiError::BadRequest(rejection.body_text())
    } else {
        ApiError::Internal(rejection.body_text())
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(from_path_rejection(&rejection)),
        }
    }
}

fn from_path_rejection(rejection: &PathRejection) -> ApiError {
    if rejection.status().is_client_error() {
        ApiError::BadRequest(rejection.body_text())
    } else {
        ApiError::Internal(rejection.body_text())
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}
