//! The web UI for auditors: a server-rendered session list and one timeline
//! page per session, with its verification verdict and export links. Pages
//! are plain HTML (no scripts), rendered by the pure functions in [`pages`].
//!
//! Signing in stores the caller's own token or API key in an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/ui`; only `/ui` routes read it, so
//! the REST API never acts on a cookie a cross-site request could carry.

mod approvals;
pub mod pages;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;
use serde::Deserialize;
use sluice_control_plane::audit::online;
use sluice_control_plane::audit::seal::public_key_b64;
use sluice_identity::Role;

use crate::AppState;
use crate::auth::{AuditorOrAdmin, Caller};
use crate::error::ApiError;
use crate::extract::Path;
use crate::sessions::{SessionQuery, SessionView, filter_of};

/// The sign-in cookie's name.
const COOKIE: &str = "sluice_ui";
/// Events shown per timeline page.
const EVENTS_PER_PAGE: u32 = 500;

/// The routes of the web UI.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/sessions") }))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/sessions", get(session_list))
        .route("/ui/sessions/{id}", get(session_page))
        .route("/ui/sessions/{id}/export", get(crate::audit::export))
        .merge(approvals::routes())
}

/// The token in the sign-in cookie, for `/ui` requests only.
pub(crate) fn cookie_token(parts: &Parts) -> Option<&str> {
    if !parts.uri.path().starts_with("/ui/") {
        return None;
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A page with the headers every UI page carries: no caching (pages show
/// audit records), no framing, no scripts, no third-party anything.
pub(crate) fn html(status: StatusCode, body: Markup) -> Response {
    let mut r = (status, body.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Who may see a page, or where to send someone who may not.
pub(crate) fn refused(e: &ApiError) -> Response {
    match e {
        ApiError::Forbidden(why) => html(StatusCode::FORBIDDEN, pages::message("Not allowed", why)),
        _ => Redirect::to("/ui/login").into_response(),
    }
}

async fn login_form() -> Response {
    html(StatusCode::OK, pages::login(None))
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    let identity = if !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()) {
        crate::auth::authenticate(&s, token).await.ok()
    } else {
        None
    };
    let Some(identity) = identity else {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That token or API key was not accepted.")),
        );
    };
    // Approvers who may not read sessions land on their queue.
    let reads_sessions = [Role::Auditor, Role::Admin]
        .iter()
        .any(|r| identity.has_role(*r));
    let home = if reads_sessions {
        "/ui/sessions"
    } else {
        "/ui/approvals"
    };
    let mut r = Redirect::to(home).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/ui; HttpOnly; Secure; SameSite=Strict"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout() -> Response {
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "sluice_ui=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

async fn session_list(
    caller: Result<Caller<AuditorOrAdmin>, ApiError>,
    State(s): State<AppState>,
    query: Result<Query<SessionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(e) = &caller {
        return refused(e);
    }
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::message("Bad filter", &e.body_text()),
            );
        }
    };
    let shown = pages::Filters::from(&q);
    let page = match filter_of(q) {
        Ok(f) => s.cp.store.list_sessions(&f).await,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::message("Bad filter", &e.to_string()),
            );
        }
    };
    match page {
        Ok(p) => {
            let items: Vec<SessionView> = p.items.into_iter().map(SessionView::from).collect();
            html(
                StatusCode::OK,
                pages::session_list(&items, &shown, p.next_cursor.as_deref()),
            )
        }
        Err(e) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message("Store error", &store_error(&e)),
        ),
    }
}

/// Paging for the timeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimelineQuery {
    /// Show events after this sequence number.
    after: Option<u64>,
}

async fn session_page(
    caller: Result<Caller<AuditorOrAdmin>, ApiError>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Response {
    if let Err(e) = &caller {
        return refused(e);
    }
    let session = match s.cp.store.get_session(&id).await {
        Ok(Some(row)) => SessionView::from(row),
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message("No such session", &id),
            );
        }
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message("Store error", &store_error(&e)),
            );
        }
    };
    let after = q.after.unwrap_or(0);
    let events = match s.cp.store.list_events(&id, after, EVENTS_PER_PAGE).await {
        Ok(p) => p,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message("Store error", &store_error(&e)),
            );
        }
    };
    let key = public_key_b64(s.cp.issuer.key());
    let stale = crate::audit::node_stale_after(&s);
    let verdict = online::verify_session_live(&s.cp.store, &id, &key, stale)
        .await
        .ok();
    html(
        StatusCode::OK,
        pages::session_page(
            &session,
            &events.items,
            verdict.as_ref(),
            events.next_cursor.as_deref(),
        ),
    )
}

/// What a store failure may show: its kind, never connection details.
pub(crate) fn store_error(e: &sluice_control_plane::store::StoreError) -> String {
    tracing::error!(error = %e, "web UI store error");
    "the store could not be read; see the control plane's log".to_owned()
}
