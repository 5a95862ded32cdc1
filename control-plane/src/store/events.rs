use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Page, Store, StoreError, with_pool};

/// What a session event records. Serialised as the event's JSON payload, so
/// the API and exports show exactly what was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The session opened.
    SessionStart {
        /// Who connected.
        identity: String,
        /// person | agent | service.
        identity_kind: String,
        /// Their groups.
        groups: Vec<String>,
        /// Which target.
        target: String,
        /// From where.
        client_addr: String,
        /// Over TLS?
        tls: bool,
        /// Wire protocol (`postgres`).
        protocol: String,
        /// The token's id.
        token_id: String,
        /// The client's `application_name`.
        application_name: String,
        /// The node that served it.
        node_id: String,
    },
    /// One statement and its outcome.
    Statement {
        /// Exact text as sent.
        text: String,
        /// allow | deny | approval.
        decision: String,
        /// Deciding policy, if any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        policy: String,
        /// Deciding rule, if any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        rule: String,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
        /// Statement kinds.
        kinds: Vec<String>,
        /// simple | extended | function_call.
        protocol: String,
        /// Run time, µs.
        duration_us: u64,
        /// Rows returned or affected.
        rows: u64,
        /// SQLSTATE if it failed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sqlstate: String,
        /// Server command tag.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        command_tag: String,
        /// Approval request id, if one was involved.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        approval_id: String,
    },
    /// The session closed.
    SessionEnd {
        /// Why it ended.
        reason: String,
        /// Statements seen.
        statements: u64,
        /// Bytes sent to the client.
        bytes_to_client: u64,
        /// Bytes received from the client.
        bytes_from_client: u64,
    },
}

impl EventKind {
    /// The kind's name, as stored in the `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SessionStart { .. } => "session_start",
            Self::Statement { .. } => "statement",
            Self::SessionEnd { .. } => "session_end",
        }
    }
}

/// One event of a session's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The session.
    pub session_id: String,
    /// Position in the session, from 1.
    pub seq: u64,
    /// When it happened, µs since the epoch.
    pub at: i64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

type Row = (String, i64, i64, String);

/// Events per multi-row INSERT (7 parameters each, well under both stores'
/// parameter limits).
pub const INSERT_CHUNK: usize = 500;

/// `INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING` for
/// `rows` events; the rows returned are the ones that were new.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * 40);
    sql.push_str("INSERT INTO session_events (session_id, seq, at, kind, statement, decision, payload) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let b = r * 7;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    sql.push_str(" ON CONFLICT (session_id, seq) DO NOTHING RETURNING session_id, seq");
    sql
}

fn from_row(r: Row) -> Result<StoredEvent, StoreError> {
    let kind: EventKind = serde_json::from_str(&r.3)
        .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?;
    Ok(StoredEvent {
        session_id: r.0,
        seq: u64::try_from(r.1).unwrap_or(0),
        at: r.2,
        kind,
    })
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl Store {
    /// Appends events in one transaction, creating and closing session rows
    /// as start and end events arrive. Events already stored (same session and
    /// sequence number) are skipped, so a node may resend safely. Rows go in
    /// as multi-row INSERTs: one round trip per [`INSERT_CHUNK`] events.
    pub async fn append_events(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let payloads = events
            .iter()
            .map(|e| {
                serde_json::to_string(&e.kind)
                    .map_err(|err| StoreError::Database(sqlx::Error::Encode(Box::new(err))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let mut inserted: HashSet<(String, i64)> = HashSet::new();
            for (chunk, payloads) in events
                .chunks(INSERT_CHUNK)
                .zip(payloads.chunks(INSERT_CHUNK))
            {
                let sql = insert_sql(chunk.len());
                let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
                for (e, payload) in chunk.iter().zip(payloads) {
                    let (statement, decision) = match &e.kind {
                        EventKind::Statement { text, decision, .. } => {
                            (Some(text.as_str()), Some(decision.as_str()))
                        }
                        _ => (None, None),
                    };
                    q = q
                        .bind(&e.session_id)
                        .bind(seq_i64(e.seq))
                        .bind(e.at)
                        .bind(e.kind.name())
                        .bind(statement)
                        .bind(decision)
                        .bind(payload);
                }
                inserted.extend(q.fetch_all(&mut *tx).await?);
            }
            let mut statements: HashMap<&str, i64> = HashMap::new();
            for e in events {
                if !inserted.contains(&(e.session_id.clone(), seq_i64(e.seq))) {
                    continue;
                }
                match &e.kind {
                    EventKind::SessionStart {
                        identity,
                        identity_kind,
                        groups,
                        target,
                        client_addr,
                        tls,
                        protocol,
                        token_id,
                        application_name,
                        node_id,
                    } => {
                        sqlx::query(
                            "INSERT INTO sessions (id, node_id, identity, identity_kind, groups, target, client_addr, tls, \
                             protocol, application_name, token_id, started_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(&e.session_id)
                        .bind(node_id)
                        .bind(identity)
                        .bind(identity_kind)
                        .bind(serde_json::to_string(groups).unwrap_or_else(|_| "[]".to_owned()))
                        .bind(target)
                        .bind(client_addr)
                        .bind(*tls)
                        .bind(protocol)
                        .bind(application_name)
                        .bind(token_id)
                        .bind(e.at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    EventKind::Statement { .. } => {
                        *statements.entry(e.session_id.as_str()).or_default() += 1
                    }
                    EventKind::SessionEnd { .. } => {}
                }
            }
            for (session, n) in &statements {
                sqlx::query("UPDATE sessions SET statements = statements + $2 WHERE id = $1")
                    .bind(*session)
                    .bind(*n)
                    .execute(&mut *tx)
                    .await?;
            }
            for e in events {
                if let EventKind::SessionEnd { reason, .. } = &e.kind
                    && inserted.contains(&(e.session_id.clone(), seq_i64(e.seq)))
                {
                    sqlx::query("UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE id = $1")
                        .bind(&e.session_id)
                        .bind(e.at)
                        .bind(reason)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A session's events in order, `limit` at a time after sequence `after`.
    pub async fn list_events(
        &self,
        session_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Page<StoredEvent>, StoreError> {
        let limit = limit.clamp(1, 1000);
        let rows: Vec<Row> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT session_id, seq, at, payload FROM session_events WHERE session_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        )
        .bind(session_id)
        .bind(seq_i64(after))
        .bind(i64::from(limit) + 1)
        .fetch_all(p)
        .await
        })?;
        let mut items = rows
            .into_iter()
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
