//! Reading the audit record as chained records (for verification, exports
//! and SIEM pulls), and storing and reading signed checkpoints. Writes of
//! events live in `events.rs`; both tables refuse updates and deletes by
//! trigger (migration 0003).

use super::BeginWrite as _;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::events::seq_i64;
use super::{Store, StoreError, with_pool};
use crate::audit::chain::{self, Head};
use crate::audit::seal::{Checkpoint, SignedCheckpoint};

/// One stored event as its chained record, as verified and exported.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Global ingest position (for resumable pulls).
    pub position: i64,
    /// The session.
    pub session_id: String,
    /// Its sequence number.
    pub seq: u64,
    /// The record: event fields, `v`, `prev_hash` and `hash`. Events stored
    /// before the chain existed carry no chain fields.
    pub record: Map<String, Value>,
}

type RecordRow = (
    i64,
    String,
    i64,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

/// Field added to a record whose searchable columns disagree with its
/// payload: it no longer hashes to its stored hash, so verification names
/// it as modified.
const DISAGREES: &str = "_stored_columns_disagree";

fn record_of(r: RecordRow) -> EventRecord {
    let (position, session_id, seq, at, payload, version, prev, hash, kind, statement, decision) =
        r;
    let seq = u64::try_from(seq).unwrap_or(0);
    let mut payload_map = match serde_json::from_str::<Value>(&payload) {
        Ok(Value::Object(m)) => m,
        _ => Map::from_iter([("_unreadable_payload".to_owned(), Value::from(payload))]),
    };
    let text = |k: &str| {
        payload_map
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let agrees = text("kind").as_deref() == Some(kind.as_str())
        && (kind != "statement" || (text("text") == statement && text("decision") == decision));
    if !agrees {
        payload_map.insert(DISAGREES.to_owned(), Value::Bool(true));
    }
    let record = match (version, prev, hash) {
        (Some(v), Some(prev), Some(hash)) => {
            let mut m = chain::record(
                &session_id,
                seq,
                at,
                payload_map,
                u64::try_from(v).unwrap_or(0),
                &prev,
            );
            m.insert("hash".to_owned(), Value::from(hash));
            m
        }
        _ => {
            let mut m = payload_map;
            m.insert("session_id".to_owned(), Value::from(session_id.as_str()));
            m.insert("seq".to_owned(), Value::from(seq));
            m.insert("at".to_owned(), Value::from(at));
            m
        }
    };
    EventRecord {
        position,
        session_id,
        seq,
        record,
    }
}

/// The columns every record query selects; `{pos}` is the ingest position.
fn record_sql(pos: &str, rest: &str) -> String {
    format!(
        "SELECT {pos}, session_id, seq, at, payload, schema_version, prev_hash, hash, kind, statement, decision \
         FROM session_events {rest}"
    )
}

type CheckpointRow = (i64, i64, String, String, String, String, String);

/// (session, seq, hash) as stored.
type HeadRow = (String, i64, String);

/// The newest checkpoint's (seq, hash) and every session's last
/// checkpointed (seq, hash).
pub type CheckpointState = (Option<(u64, String)>, HashMap<String, (u64, String)>);

impl Store {
    fn position_column(&self) -> &'static str {
        match self.pool {
            super::Pool::Postgres(_) => "ingest_id",
            super::Pool::Sqlite(_) => "rowid",
        }
    }

    /// A session's records in sequence order, `limit` (1..=5000) at a time
    /// after sequence `after`.
    pub async fn session_records(
        &self,
        session_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let sql = record_sql(
            self.position_column(),
            "WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        );
        let rows: Vec<RecordRow> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(session_id)
                .bind(seq_i64(after))
                .bind(i64::from(limit.clamp(1, 5000)))
                .fetch_all(p)
                .await)?;
        Ok(rows.into_iter().map(record_of).collect())
    }

    /// Records of every session in ingest order after `position`, for SIEM
    /// pulls. In Postgres, ids are taken before transactions commit, so only
    /// rows written more than `settle_us` ago are returned: a pull never
    /// skips a row that commits late. SQLite serialises writers, so its
    /// rowids already follow commits.
    pub async fn feed_records(
        &self,
        position: i64,
        limit: u32,
        settle_us: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let limit = i64::from(limit.clamp(1, 5000));
        let rows: Vec<RecordRow> = match &self.pool {
            super::Pool::Postgres(p) => {
                let sql = record_sql(
                    "ingest_id",
                    "WHERE ingest_id > $1 AND stored_at <= $2 ORDER BY ingest_id LIMIT $3",
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(position)
                    .bind(super::now_us() - settle_us)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
            super::Pool::Sqlite(p) => {
                let sql = record_sql("rowid", "WHERE rowid > $1 ORDER BY rowid LIMIT $2");
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(position)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
        };
        Ok(rows.into_iter().map(record_of).collect())
    }

    /// Every session's newest chained event.
    pub async fn chain_heads(&self) -> Result<Vec<Head>, StoreError> {
        let rows: Vec<HeadRow> = with_pool!(self, |p| sqlx::query_as(
            "SELECT e.session_id, e.seq, e.hash FROM session_events e \
             JOIN (SELECT session_id, MAX(seq) AS m FROM session_events GROUP BY session_id) h \
               ON e.session_id = h.session_id AND e.seq = h.m \
             WHERE e.hash IS NOT NULL"
        )
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(session_id, seq, hash)| Head {
                session_id,
                seq: u64::try_from(seq).unwrap_or(0),
                hash,
            })
            .collect())
    }

    /// The newest checkpoint's (seq, hash), and the last checkpointed head of
    /// every session: what the next checkpoint builds on.
    pub async fn checkpoint_state(&self) -> Result<CheckpointState, StoreError> {
        let (last, heads): (Option<(i64, String)>, Vec<HeadRow>) = with_pool!(self, |p| {
            let last =
                sqlx::query_as("SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(p)
                    .await?;
            let heads = sqlx::query_as(
                "SELECT h.session_id, h.last_seq, h.last_hash FROM audit_checkpoint_heads h \
                     JOIN (SELECT session_id, MAX(checkpoint_seq) AS m FROM audit_checkpoint_heads \
                           GROUP BY session_id) l \
                       ON h.session_id = l.session_id AND h.checkpoint_seq = l.m",
            )
            .fetch_all(p)
            .await?;
            (last, heads)
        });
        Ok((
            last.map(|(s, h)| (u64::try_from(s).unwrap_or(0), h)),
            heads
                .into_iter()
                .map(|(s, q, h)| (s, (u64::try_from(q).unwrap_or(0), h)))
                .collect(),
        ))
    }

    /// Heads of sessions that ended before `cutoff_us` (µs), oldest first,
    /// at most `limit`: what retention may remove.
    pub async fn expired_heads(&self, cutoff_us: i64, limit: u32) -> Result<Vec<Head>, StoreError> {
        let rows: Vec<HeadRow> = with_pool!(self, |p| sqlx::query_as(
            "SELECT e.session_id, e.seq, e.hash FROM sessions s \
             JOIN session_events e ON e.session_id = s.id \
               AND e.seq = (SELECT MAX(seq) FROM session_events m WHERE m.session_id = s.id) \
             WHERE s.ended_at IS NOT NULL AND s.ended_at < $1 AND e.hash IS NOT NULL \
             ORDER BY s.ended_at LIMIT $2"
        )
        .bind(cutoff_us)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(session_id, seq, hash)| Head {
                session_id,
                seq: u64::try_from(seq).unwrap_or(0),
                hash,
            })
            .collect())
    }

    /// Stores a signed checkpoint and its heads. Returns false if another
    /// replica already stored a checkpoint with that number.
    pub async fn insert_checkpoint(&self, c: &SignedCheckpoint) -> Result<bool, StoreError> {
        self.store_checkpoint(c, false).await
    }

    /// Stores a checkpoint of tombstones and, in the same transaction,
    /// deletes the sessions it retires (the store permits deleting a
    /// session's events only once a tombstone names it). Returns false if
    /// another replica took that checkpoint number first.
    pub async fn retire_sessions(&self, c: &SignedCheckpoint) -> Result<bool, StoreError> {
        self.store_checkpoint(c, true).await
    }

    async fn store_checkpoint(
        &self,
        c: &SignedCheckpoint,
        retire: bool,
    ) -> Result<bool, StoreError> {
        let seq = seq_i64(c.checkpoint.seq);
        let stored = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let done = sqlx::query(
                "INSERT INTO audit_checkpoints (seq, created_at, prev_hash, hash, key_id, public_key, \
                 signature, sessions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (seq) DO NOTHING",
            )
            .bind(seq)
            .bind(c.checkpoint.created_at)
            .bind(&c.checkpoint.prev_hash)
            .bind(&c.hash)
            .bind(&c.key_id)
            .bind(&c.public_key)
            .bind(&c.signature)
            .bind(i64::try_from(c.checkpoint.heads.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                false
            } else {
                for h in &c.checkpoint.heads {
                    sqlx::query(
                        "INSERT INTO audit_checkpoint_heads (checkpoint_seq, session_id, last_seq, last_hash) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(seq)
                    .bind(&h.session_id)
                    .bind(seq_i64(h.seq))
                    .bind(&h.hash)
                    .execute(&mut *tx)
                    .await?;
                    if retire {
                        for table in [
                            "DELETE FROM session_events WHERE session_id = $1",
                            "DELETE FROM sessions WHERE id = $1",
                        ] {
                            sqlx::query(table)
                                .bind(&h.session_id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                tx.commit().await?;
                true
            }
        });
        Ok(stored)
    }

    async fn load_checkpoints(
        &self,
        rows: Vec<CheckpointRow>,
    ) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for (seq, created_at, prev_hash, hash, key_id, public_key, signature) in rows {
            let heads: Vec<HeadRow> = with_pool!(self, |p| sqlx::query_as(
                "SELECT session_id, last_seq, last_hash FROM audit_checkpoint_heads \
                 WHERE checkpoint_seq = $1 ORDER BY session_id"
            )
            .bind(seq)
            .fetch_all(p)
            .await)?;
            out.push(SignedCheckpoint {
                checkpoint: Checkpoint {
                    seq: u64::try_from(seq).unwrap_or(0),
                    created_at,
                    prev_hash,
                    heads: heads
                        .into_iter()
                        .map(|(session_id, s, hash)| Head {
                            session_id,
                            seq: u64::try_from(s).unwrap_or(0),
                            hash,
                        })
                        .collect(),
                },
                hash,
                key_id,
                public_key,
                signature,
            });
        }
        Ok(out)
    }

    /// Every checkpoint, oldest first, with its heads.
    pub async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let rows: Vec<CheckpointRow> = with_pool!(self, |p| sqlx::query_as(
            "SELECT seq, created_at, prev_hash, hash, key_id, public_key, signature \
             FROM audit_checkpoints ORDER BY seq"
        )
        .fetch_all(p)
        .await)?;
        self.load_checkpoints(rows).await
    }

    /// The newest checkpoint that recorded `session_id`, with all its heads
    /// (so its hash and signature can be checked).
    pub async fn checkpoint_for_session(
        &self,
        session_id: &str,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        let rows: Vec<CheckpointRow> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT c.seq, c.created_at, c.prev_hash, c.hash, c.key_id, c.public_key, c.signature \
             FROM audit_checkpoints c WHERE c.seq = (SELECT MAX(checkpoint_seq) \
               FROM audit_checkpoint_heads WHERE session_id = $1)"
        )
        .bind(session_id)
        .fetch_all(p)
        .await
        })?;
        Ok(self.load_checkpoints(rows).await?.pop())
    }
}
