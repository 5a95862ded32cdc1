//! The auditor's API: verify a session (`/sessions/{id}/verify`) or the
//! whole store (`/audit/verify`), export a session as a stream
//! (`/sessions/{id}/export?format=jsonl|csv|ocsf`), and pull every event in
//! ingest order for a SIEM (`/audit/events?after=CURSOR`). Admins and
//! auditors may use them.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_control_plane::audit::chain::GENESIS;
use sluice_control_plane::audit::export::Format;
use sluice_control_plane::audit::online::{self, StoreReport};
use sluice_control_plane::audit::seal::{Seal, public_key_b64};
use sluice_control_plane::audit::verify::Report;
use sluice_control_plane::store::Store;
use sluice_identity::SigningKey;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{AuditorOrAdmin, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::sessions::page_limit;
use crate::{AppState, Page};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions/{id}/verify", get(verify_session))
        .route("/api/v1/sessions/{id}/export", get(export))
        .route("/api/v1/audit/verify", get(verify_store))
        .route("/api/v1/audit/events", get(feed))
}

/// Records read per store round trip while exporting.
const EXPORT_PAGE: u32 = 1000;

/// Rows younger than this are held back from SIEM pulls on Postgres, so a
/// pull never passes a row whose transaction commits late.
const FEED_SETTLE_US: i64 = 2_000_000;

/// Whether anything is known of a session: a row, events or a checkpoint.
async fn known(store: &Store, id: &str) -> Result<bool, ApiError> {
    Ok(store.get_session(id).await?.is_some()
        || !store.session_records(id, 0, 1).await?.is_empty()
        || store.checkpoint_for_session(id).await?.is_some())
}

/// Verifies a session's record: every event's hash, every link of its
/// chain, and the newest signed checkpoint that covers it. The verdict is
/// in the body (`status`: `intact`, `gaps` or `tampered`, with the first
/// bad event named); the HTTP status is 200 whenever verification ran.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/verify", operation_id = "verify_session", tag = "audit", security(("bearer" = ["auditor", "admin"])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The verdict", body = Object),
        (status = 404, description = "Nothing is known of this session", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn verify_session(
    _: Caller<AuditorOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Report>, ApiError> {
    let store = &s.cp.store;
    if !known(store, &id).await? {
        return Err(ApiError::NotFound(format!("no session {id:?}")));
    }
    let key = public_key_b64(s.cp.issuer.key());
    Ok(Json(
        online::verify_session_live(store, &id, &key, node_stale_after(&s)).await?,
    ))
}

/// How long a node may be silent before its open sessions count as cut off:
/// three missed heartbeats, as the node itself judges its link.
pub(crate) fn node_stale_after(s: &AppState) -> std::time::Duration {
    s.cp.config().heartbeat_interval * 3
}

/// Verifies the store as a whole: every checkpoint (hash, signature, link)
/// and that no checkpointed session was deleted or cut short since.
#[utoipa::path(get, path = "/api/v1/audit/verify", operation_id = "verify_store", tag = "audit", security(("bearer" = ["auditor", "admin"])),
    responses((status = 200, description = "The verdict", body = Object)))]
pub(crate) async fn verify_store(
    _: Caller<AuditorOrAdmin>,
    State(s): State<AppState>,
) -> Result<Json<StoreReport>, ApiError> {
    let key = public_key_b64(s.cp.issuer.key());
    Ok(Json(online::verify_store(&s.cp.store, &key).await?))
}

/// The export's format.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `jsonl` (default; verifiable offline with `sluice audit verify
    /// --file`), `csv` or `ocsf`.
    pub format: Option<String>,
}

/// Streams a session's record. JSONL lines are the chained records
/// themselves (schema version and chain fields included), closed by a seal
/// line the control plane signs, so the file verifies on its own. Nothing
/// is buffered whole: events are read and sent a page at a time.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/export", operation_id = "export_session", tag = "audit", security(("bearer" = ["auditor", "admin"])),
    params(("id" = String, Path, description = "Session id"), ExportQuery),
    responses(
        (status = 200, description = "The session's events", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn export(
    _: Caller<AuditorOrAdmin>,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format_name = q.format.as_deref().unwrap_or("jsonl");
    let format = Format::parse(format_name).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown format {format_name:?}: use jsonl, csv or ocsf"
        ))
    })?;
    if s.cp.store.session_records(&id, 0, 1).await?.is_empty() {
        return Err(ApiError::NotFound(format!("no events for session {id:?}")));
    }
    let stream = export_stream(
        s.cp.store.clone(),
        s.cp.issuer.key().clone(),
        id.clone(),
        format,
    );
    let disposition = format!(
        "attachment; filename=\"session-{}.{}\"",
        id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

enum Step {
    Header,
    Page(u64),
    Footer,
    Done,
}

struct Progress {
    store: Store,
    key: SigningKey,
    id: String,
    format: Format,
    events: u64,
    last: Option<(u64, String)>,
}

/// The export as a stream of chunks: header, one chunk per page of events,
/// then the footer (the seal). A store failure mid-way ends the stream with
/// an error, so the client sees a cut (unsealed) file, never a silent gap.
fn export_stream(
    store: Store,
    key: SigningKey,
    id: String,
    format: Format,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let progress = Progress {
        store,
        key,
        id,
        format,
        events: 0,
        last: None,
    };
    futures::stream::unfold((Step::Header, progress), |(step, mut p)| async move {
        match step {
            Step::Header => Some((Ok(Bytes::from(p.format.header())), (Step::Page(0), p))),
            Step::Page(after) => match p.store.session_records(&p.id, after, EXPORT_PAGE).await {
                Ok(page) => {
                    let next = match page.last() {
                        Some(r) if page.len() == EXPORT_PAGE as usize => Step::Page(r.seq),
                        _ => Step::Footer,
                    };
                    let mut chunk = String::new();
                    for r in &page {
                        chunk.push_str(&p.format.line(&r.record));
                        p.events += 1;
                        let hash = r.record.get("hash").and_then(Value::as_str);
                        p.last = Some((r.seq, hash.unwrap_or(GENESIS).to_owned()));
                    }
                    Some((Ok(Bytes::from(chunk)), (next, p)))
                }
                Err(e) => {
                    tracing::error!(error = %e, session = %p.id, "export failed mid-way");
                    let err = std::io::Error::other("the store failed during the export");
                    Some((Err(err), (Step::Done, p)))
                }
            },
            Step::Footer => {
                let seal = Seal::sign(
                    &p.key,
                    &p.id,
                    p.events,
                    p.last.clone(),
                    sluice_common::unix_us(),
                );
                let footer = p.format.footer(&seal);
                Some((Ok(Bytes::from(footer)), (Step::Done, p)))
            }
            Step::Done => None,
        }
    })
}

/// Paging for the SIEM pull.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The `next_cursor` of the previous pull; omit to start at the oldest
    /// event.
    pub after: Option<String>,
    /// Events per page, 1 to 5000 (default 1000).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
}

/// One event of the pull: the chained record, as exported.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedItem {
    /// The record (event fields, `v`, `prev_hash`, `hash`).
    #[schema(value_type = Object)]
    pub record: Map<String, Value>,
}

/// Every session's events in the order the control plane stored them, for
/// SIEM pulls that resume where they stopped: pass `next_cursor` back as
/// `after`. `next_cursor` is always set (an empty page repeats the cursor),
/// so a poller never loses its place.
#[utoipa::path(get, path = "/api/v1/audit/events", operation_id = "pull_audit_events", tag = "audit", security(("bearer" = ["auditor", "admin"])),
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of events", body = Page<FeedItem>),
        (status = 400, description = "Bad cursor or limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn feed(
    _: Caller<AuditorOrAdmin>,
    State(s): State<AppState>,
    Query(q): Query<FeedQuery>,
) -> Result<Json<Page<FeedItem>>, ApiError> {
    let limit = page_limit(q.limit, 1000, 5000)?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::BadRequest(
                "the cursor is invalid; pass back a next_cursor unchanged".to_owned(),
            )
        })?,
    };
    let rows =
        s.cp.store
            .feed_records(after, limit, FEED_SETTLE_US)
            .await?;
    let next = rows.last().map_or(after, |r| r.position);
    Ok(Json(Page {
        items: rows
            .into_iter()
            .map(|r| FeedItem { record: r.record })
            .collect(),
        next_cursor: Some(next.to_string()),
    }))
}
