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
    /// sequence number) are skipped, so a node may resend safely.
    pub async fn append_events(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            for e in events {
                let payload = serde_json::to_string(&e.kind)
                    .map_err(|err| StoreError::Database(sqlx::Error::Encode(Box::new(err))))?;
                let (statement, decision) = match &e.kind {
                    EventKind::Statement { text, decision, .. } => {
                        (Some(text.as_str()), Some(decision.as_str()))
                    }
                    _ => (None, None),
                };
                let inserted = sqlx::query(
                    "INSERT INTO session_events (session_id, seq, at, kind, statement, decision, payload) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id, seq) DO NOTHING",
                )
                .bind(&e.session_id)
                .bind(seq_i64(e.seq))
                .bind(e.at)
                .bind(e.kind.name())
                .bind(statement)
                .bind(decision)
                .bind(&payload)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
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
                        sqlx::query(
                            "UPDATE sessions SET statements = statements + 1 WHERE id = $1",
                        )
                        .bind(&e.session_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    EventKind::SessionEnd { reason, .. } => {
                        sqlx::query(
                            "UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE id = $1",
                        )
                        .bind(&e.session_id)
                        .bind(e.at)
                        .bind(reason)
                        .execute(&mut *tx)
                        .await?;
                    }
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
