use super::{Store, StoreError, now_us, with_pool};

/// A data-plane node that has registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Stable id, kept across restarts of a node with the same name.
    pub id: String,
    /// The node's chosen name.
    pub name: String,
    /// Software version it reported.
    pub version: String,
    /// Addresses it listens on.
    pub listen_addrs: Vec<String>,
    /// The join token it used.
    pub join_token_id: String,
    /// First registration, µs.
    pub registered_at: i64,
    /// Last heartbeat or registration, µs.
    pub last_seen_at: i64,
    /// When the node's current process registered, µs: events a previous
    /// process had not delivered are lost for good.
    pub process_started_at: i64,
}

type Row = (String, String, String, String, String, i64, i64, i64);

fn from_row(r: Row) -> Node {
    Node {
        id: r.0,
        name: r.1,
        version: r.2,
        listen_addrs: serde_json::from_str(&r.3).unwrap_or_default(),
        join_token_id: r.4,
        registered_at: r.5,
        last_seen_at: r.6,
        process_started_at: r.7,
    }
}

macro_rules! columns {
    () => {
        "id, name, version, listen_addrs, join_token_id, registered_at, last_seen_at, process_started_at"
    };
}

impl Store {
    /// Registers a node by name, or refreshes the registration of a node
    /// that already has that name. Returns the node.
    pub async fn register_node(
        &self,
        name: &str,
        version: &str,
        listen_addrs: &[String],
        join_token_id: &str,
    ) -> Result<Node, StoreError> {
        let now = now_us();
        let addrs = serde_json::to_string(listen_addrs).unwrap_or_else(|_| "[]".to_owned());
        let id = uuid::Uuid::now_v7().to_string();
        with_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO nodes (id, name, version, listen_addrs, join_token_id, registered_at, last_seen_at, process_started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $6) \
             ON CONFLICT (name) DO UPDATE SET version = $3, listen_addrs = $4, join_token_id = $5, last_seen_at = $6, \
             process_started_at = $6"
        )
        .bind(&id)
        .bind(name)
        .bind(version)
        .bind(&addrs)
        .bind(join_token_id)
        .bind(now)
        .execute(p)
        .await
        .map(drop)
        })?;
        let sql = concat!("SELECT ", columns!(), " FROM nodes WHERE name = $1");
        let row: Row = with_pool!(self, |p| sqlx::query_as(sql).bind(name).fetch_one(p).await)?;
        Ok(from_row(row))
    }

    /// Records that a node was heard from.
    pub async fn touch_node(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(self, |p| sqlx::query(
            "UPDATE nodes SET last_seen_at = $2 WHERE id = $1"
        )
        .bind(id)
        .bind(now_us())
        .execute(p)
        .await
        .map(drop))?;
        Ok(())
    }

    /// One node by id.
    pub async fn get_node(&self, id: &str) -> Result<Option<Node>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM nodes WHERE id = $1");
        let row: Option<Row> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(from_row))
    }

    /// Every node, by name.
    pub async fn list_nodes(&self) -> Result<Vec<Node>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM nodes ORDER BY name");
        let rows: Vec<Row> = with_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }
}
