//! `POST /oauth/token`: the OAuth2 client-credentials grant (RFC 6749
//! §4.4). An agent configured with a client id and secret exchanges them
//! here for a short-lived access token, which it then uses as its database
//! password; it never holds a standing credential for any target.
//!
//! Errors use the OAuth2 error format (`{"error": "invalid_client"}`), not
//! problem documents, because that is what OAuth2 client libraries parse.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/oauth/token", post(token))
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token: a JWT to use as the database password or bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// An error response (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type` or `server_error`.
    pub error: &'static str,
    /// What was wrong, for people.
    pub error_description: String,
}

fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(OAuthError {
            error,
            error_description: description.to_owned(),
        }),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sluice\""),
        );
    }
    resp
}

/// The client's id and secret, from HTTP Basic or the form body.
#[derive(Debug, PartialEq, Eq)]
struct ClientAuth {
    id: String,
    secret: String,
}

/// Parses the request into the client's credentials, or says what is wrong.
/// Pure, so every malformed shape is unit-tested.
fn parse_request(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ClientAuth, (StatusCode, &'static str, String)> {
    let bad = |msg: &str| Err((StatusCode::BAD_REQUEST, "invalid_request", msg.to_owned()));
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return bad("the body must be application/x-www-form-urlencoded");
    }
    let mut grant = None;
    let (mut form_id, mut form_secret) = (None, None);
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut grant,
            "client_id" => &mut form_id,
            "client_secret" => &mut form_secret,
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return bad(&format!("parameter {k} is repeated"));
        }
    }
    match grant.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported".to_owned(),
            ));
        }
        None => return bad("grant_type is required"),
    }
    let basic = basic_auth(headers)?;
    match (basic, form_id, form_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            bad("send client credentials either in Authorization or in the body, not both")
        }
        (Some(auth), None, None) => Ok(auth),
        (None, Some(id), Some(secret)) => Ok(ClientAuth { id, secret }),
        (None, _, _) => Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required (HTTP Basic, or client_id and client_secret)"
                .to_owned(),
        )),
    }
}

/// `Authorization: Basic` credentials, form-decoded as RFC 6749 §2.3.1 says.
fn basic_auth(
    headers: &HeaderMap,
) -> Result<Option<ClientAuth>, (StatusCode, &'static str, String)> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || {
        (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the Authorization header is not valid HTTP Basic".to_owned(),
        )
    };
    let value = value.to_str().map_err(|_| invalid())?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    let (id, secret) = text.split_once(':').ok_or_else(invalid)?;
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some(ClientAuth {
        id: decode(id),
        secret: decode(secret),
    }))
}

/// Exchanges a service account's client id and secret for an access token.
#[utoipa::path(post, path = "/oauth/token", operation_id = "oauth_token", tag = "auth",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`grant_type=client_credentials`, with the client id and secret in HTTP Basic or as `client_id` and `client_secret`"),
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        (status = 400, description = "Malformed request or unsupported grant", body = OAuthError),
        (status = 401, description = "Unknown client, wrong secret or disabled account", body = OAuthError),
    ))]
pub(crate) async fn token(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = match parse_request(&headers, &body) {
        Ok(auth) => auth,
        Err((status, error, description)) => {
            tracing::info!(error, "token request refused");
            return oauth_error(status, error, &description);
        }
    };
    let account = match s.cp.store.authenticate_client(&auth.id, &auth.secret).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            tracing::info!(client_id = %auth.id, "token request refused: unknown client or wrong secret");
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client, wrong secret, or a disabled account",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "token request failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be issued",
            );
        }
    };
    match s
        .cp
        .issue_account_token(&account, None, "client_credentials")
        .await
    {
        Ok(issued) => {
            let now = sluice_common::unix_ms() / 1000;
            let expires_in = issued
                .expires_at
                .saturating_sub(u64::try_from(now).unwrap_or(0));
            let mut resp = axum::Json(TokenResponse {
                access_token: issued.token,
                token_type: "Bearer",
                expires_in,
            })
            .into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "token request failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be issued",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn credentials_come_from_the_body_or_basic() {
        let body = b"grant_type=client_credentials&client_id=sa_1&client_secret=s%2Bx";
        assert_eq!(
            parse_request(&headers(FORM, None), body).unwrap(),
            ClientAuth {
                id: "sa_1".into(),
                secret: "s+x".into()
            }
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("sa_1:s%2Bx")
        );
        assert_eq!(
            parse_request(
                &headers(&format!("{FORM}; charset=utf-8"), Some(&basic)),
                b"grant_type=client_credentials"
            )
            .unwrap()
            .secret,
            "s+x"
        );
    }

    #[test]
    fn malformed_requests_get_the_oauth_error_they_deserve() {
        let code = |ct: &str, auth: Option<&str>, body: &[u8]| {
            parse_request(&headers(ct, auth), body).unwrap_err().1
        };
        assert_eq!(code("application/json", None, b"{}"), "invalid_request");
        assert_eq!(
            code(FORM, None, b"client_id=a&client_secret=b"),
            "invalid_request"
        );
        assert_eq!(
            code(
                FORM,
                None,
                b"grant_type=password&client_id=a&client_secret=b"
            ),
            "unsupported_grant_type"
        );
        assert_eq!(
            code(FORM, None, b"grant_type=client_credentials"),
            "invalid_client"
        );
        assert_eq!(
            code(FORM, None, b"grant_type=client_credentials&client_id=a"),
            "invalid_client"
        );
        assert_eq!(
            code(FORM, Some("Bearer x"), b"grant_type=client_credentials"),
            "invalid_client"
        );
        assert_eq!(
            code(FORM, Some("Basic !!!"), b"grant_type=client_credentials"),
            "invalid_client"
        );
        assert_eq!(
            code(
                FORM,
                None,
                b"grant_type=client_credentials&grant_type=client_credentials&client_id=a&client_secret=b"
            ),
            "invalid_request"
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a:b")
        );
        assert_eq!(
            code(
                FORM,
                Some(&basic),
                b"grant_type=client_credentials&client_id=a"
            ),
            "invalid_request"
        );
    }
}
