//! `/api/v1/nodes`: the data-plane nodes that have joined, so an admin can
//! see which are alive and what they run.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use sluice_control_plane::store::Node;
use utoipa::ToSchema;

use crate::auth::{AdminOnly, Caller};
use crate::error::ApiError;
use crate::extract::Json;
use crate::{AppState, Items, rfc3339};

/// The routes of this module.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/nodes", get(list))
}

/// A registered data-plane node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// Stable id, kept across restarts of a node with the same name.
    pub id: String,
    /// The node's chosen name.
    pub name: String,
    /// Software version it reported.
    pub version: String,
    /// Addresses it listens on for clients.
    pub listen_addrs: Vec<String>,
    /// The join token it used, so revoking a token shows which nodes it let in.
    pub join_token_id: String,
    /// First registration, RFC 3339.
    pub registered_at: String,
    /// First registration, µs since the epoch.
    pub registered_at_us: i64,
    /// Last heartbeat or registration, RFC 3339.
    pub last_seen_at: String,
    /// Last heartbeat or registration, µs since the epoch.
    pub last_seen_at_us: i64,
}

impl From<Node> for NodeView {
    fn from(n: Node) -> Self {
        Self {
            registered_at: rfc3339(n.registered_at),
            registered_at_us: n.registered_at,
            last_seen_at: rfc3339(n.last_seen_at),
            last_seen_at_us: n.last_seen_at,
            id: n.id,
            name: n.name,
            version: n.version,
            listen_addrs: n.listen_addrs,
            join_token_id: n.join_token_id,
        }
    }
}

/// Lists every node, by name.
#[utoipa::path(get, path = "/api/v1/nodes", operation_id = "list_nodes", tag = "nodes", security(("bearer" = ["admin"])),
    responses((status = 200, description = "All nodes", body = Items<NodeView>)))]
pub(crate) async fn list(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
) -> Result<Json<Items<NodeView>>, ApiError> {
    let nodes = s.cp.store.list_nodes().await?;
    Ok(Json(Items::new(
        nodes.into_iter().map(NodeView::from).collect(),
    )))
}
