//! The REST API of the control plane: targets, policies, sessions and their
//! events, nodes and join tokens for administrators, the public key set for
//! anyone who must verify our tokens, and an OpenAPI document describing it
//! all.
//!
//! It runs inside the control-plane process and reads and writes through the
//! same [`ControlPlane`] the gRPC service uses, so a change made here reaches
//! nodes exactly as any other change does. Every error is an RFC 9457 problem
//! document; every `/api/v1` endpoint needs a bearer token with a role.

pub mod api_keys;
pub mod approval_email;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod error;
pub mod events;
pub mod extract;
pub mod grants;
pub mod join_tokens;
pub mod nodes;
pub mod oauth;
pub mod openapi;
pub mod policies;
pub mod service_accounts;
pub mod sessions;
pub mod slack;
pub mod targets;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::MatchedPath;
use axum::http::{Request, header};
use axum::routing::get;
use serde::Serialize;
use sluice_common::Shutdown;
use sluice_common::health::Readiness;
use sluice_control_plane::ControlPlane;
use sluice_identity::TrustStore;
use tokio::net::TcpListener;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::{OpenApi as _, ToSchema};

pub use error::ApiError;

/// Records a change an administrator made through the API (no versioned
/// document involved) in the audit trail.
pub(crate) async fn record_change(
    s: &AppState,
    caller: &sluice_identity::Identity,
    action: &str,
    resource: &str,
    name: &str,
) {
    s.cp.record_change(sluice_control_plane::audit::changes::Change {
        actor: &caller.name,
        action,
        resource,
        name,
        version: 0,
        document: None,
    })
    .await;
}

/// What every handler shares; built once per router.
#[derive(Clone)]
pub struct AppState {
    cp: ControlPlane,
    trust: Arc<TrustStore>,
    jwks: Arc<String>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("cp", &self.cp)
            .finish_non_exhaustive()
    }
}

/// A whole collection in one response. Wrapped in an object, not a bare
/// array, so paging can be added later without breaking clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items<T> {
    /// The items.
    pub items: Vec<T>,
}

impl<T> Items<T> {
    fn new(items: Vec<T>) -> Self {
        Self { items }
    }
}

/// One page of a collection too large to return whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Builds the whole HTTP surface of a control-plane replica: the REST API,
/// the key set, the OpenAPI document and the health endpoints (`/livez`,
/// `/readyz`, `/metrics`), with request tracing that never records headers.
pub fn router(cp: ControlPlane, ready: Readiness) -> Router {
    let state = AppState {
        trust: cp.trust(),
        jwks: Arc::new(cp.issuer.jwks_json()),
        cp,
    };
    // Rendered once; each request gets a cheap clone of the bytes.
    let openapi = Bytes::from(openapi::ApiDoc::openapi().to_json().unwrap_or_default());
    let api = Router::new()
        .merge(targets::routes())
        .merge(policies::routes())
        .merge(sessions::routes())
        .merge(events::routes())
        .merge(audit::routes())
        .merge(nodes::routes())
        .merge(join_tokens::routes())
        .merge(service_accounts::routes())
        .merge(api_keys::routes())
        .merge(approvals::routes())
        .merge(grants::routes())
        .merge(slack::routes())
        .merge(approval_email::routes())
        .merge(oauth::routes())
        .merge(ui::routes())
        .route("/.well-known/jwks.json", get(auth::jwks))
        .with_state(state);
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        .merge(sluice_common::health::router(ready))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(trace_layer())
}

/// Serves `router` on `listener` until `shutdown` fires, finishing requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    sluice_common::health::serve(listener, router, shutdown).await
}

/// One span per request with method, path and route only: headers (the
/// bearer token above all) and query strings are never recorded. The
/// `identity` field is filled in once a token verifies.
fn trace_layer<B>() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&Request<B>) -> tracing::Span + Clone,
> {
    TraceLayer::new_for_http()
        .make_span_with(|req: &Request<B>| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_owned());
            // Email approval links carry their credential in the path.
            let path = match req.uri().path() {
                p if p.starts_with("/approvals/email/") => "/approvals/email/{token}",
                p => p,
            };
            tracing::info_span!(
                "http",
                method = %req.method(),
                path = %path,
                route = route.as_deref().unwrap_or(""),
                identity = tracing::field::Empty,
            )
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
}

/// A µs timestamp as RFC 3339 (UTC, microsecond precision), the form people
/// and most tools read; the raw µs value travels beside it.
pub(crate) fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}
