use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Page, Store, StoreError, with_pool};
use crate::audit::chain::{self, Head};

/// One request through the HTTP gateway, beside the decision its
/// statement event already records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpExchange {
    /// The method as received.
    pub method: String,
    /// The normalised path decided and forwarded.
    pub path: String,
    /// The query, values redacted as the policy says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// The status the client received.
    pub status: u32,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// The start of the request body, masked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_sample: String,
    /// The start of the response body as the client received it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_sample: String,
}

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
        /// Values masked in the results, per rule and detector (counts only).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        masked: std::collections::BTreeMap<String, u64>,
        /// The first rows of the result as the client received them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sample: Option<ResultSample>,
        /// Bound parameters as the policy records them (`null` for NULL).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        parameters: Vec<Option<String>>,
        /// Bytes of its results sent to the client.
        #[serde(default, skip_serializing_if = "is_zero")]
        bytes: u64,
        /// For a request through the HTTP gateway: what HTTP adds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http: Option<Box<HttpExchange>>,
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
    /// A client refused before its session began; recorded as a session of
    /// this one event.
    AuthFailure {
        /// From where.
        client_addr: String,
        /// The user name it sent (unverified).
        user: String,
        /// The target it asked for.
        target: String,
        /// Why it was refused.
        reason: String,
        /// The issuer its token claimed (unverified), if any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        claimed_issuer: String,
        /// Wire protocol.
        protocol: String,
        /// Over TLS?
        tls: bool,
        /// The node that refused it.
        node_id: String,
    },
    /// A statement about to be forwarded under strict delivery: stored
    /// before the statement ran; its outcome follows as a `statement` event.
    StatementIntent {
        /// Exact text as sent.
        text: String,
        /// Deciding policy, if any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        policy: String,
        /// Deciding rule, if any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        rule: String,
        /// Statement kinds.
        kinds: Vec<String>,
        /// simple | extended.
        protocol: String,
    },
    /// A statement was held for a human's approval: the first event of the
    /// approval's own record (keyed by the approval id).
    ApprovalRequested {
        /// Who asked.
        identity: String,
        /// Which target.
        target: String,
        /// The session the statement came from.
        session_id: String,
        /// The statement, as the approvers saw it.
        statement: String,
        /// SHA-256 (hex) over the exact statement bytes and parameters.
        statement_hash: String,
        /// The deciding policy.
        policy: String,
        /// The deciding rule.
        rule: String,
        /// Why the policy wants approval.
        reason: String,
        /// answer | hold.
        mode: String,
        /// Groups whose members may decide (empty: any approver).
        approvers: Vec<String>,
        /// Approvals needed.
        required: u64,
        /// When the request expires, µs.
        expires_at: i64,
    },
    /// A change to an approval: a vote, an expiry, a withdrawal, or the run
    /// it allowed.
    ApprovalDecision {
        /// Who (an identity, or `sluice` for the gateway itself).
        actor: String,
        /// approve | deny | expire | cancel | run.
        action: String,
        /// api | slack | email | node | system.
        channel: String,
        /// Why, as the actor said.
        reason: String,
        /// The request's state after the change (`consumed` once run).
        state: String,
    },
    /// A decision through a channel was refused before any vote (a reused,
    /// expired, altered or foreign email link); recorded as a session of
    /// this one event, so probing leaves a trace.
    ApprovalRefused {
        /// The request the attempt named (as claimed, when the link was
        /// altered).
        approval_id: String,
        /// Who the attempt named (as claimed, when the link was altered).
        actor: String,
        /// email.
        channel: String,
        /// Why it was refused.
        reason: String,
    },
    /// An administrator changed what the gateway enforces or who may use it
    /// (a policy, a target, an identity, a credential); recorded as a
    /// session of this one event, chained and checkpointed like the rest.
    ConfigChange {
        /// Who made it.
        actor: String,
        /// created | replaced | deleted | disabled | issued | revoked.
        action: String,
        /// policy | target | service_account | token | api_key | join_token.
        resource: String,
        /// The resource's name or id.
        name: String,
        /// The version the change produced (policies), else 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        version: u64,
        /// SHA-256 (hex) of the document the change stored (policies), so a
        /// decision can be tied to the exact text in force.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        digest: String,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl EventKind {
    /// The kind's name, as stored in the `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SessionStart { .. } => "session_start",
            Self::Statement { .. } => "statement",
            Self::SessionEnd { .. } => "session_end",
            Self::AuthFailure { .. } => "auth_failure",
            Self::StatementIntent { .. } => "statement_intent",
            Self::ConfigChange { .. } => "config_change",
            Self::ApprovalRequested { .. } => "approval_requested",
            Self::ApprovalDecision { .. } => "approval_decision",
            Self::ApprovalRefused { .. } => "approval_refused",
        }
    }
}

/// The first rows of a statement's result exactly as the client received
/// them (masked values masked), bounded by the policy's sample limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSample {
    /// Column names, when the result described them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Rows; `null` for SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The result had more than the sample keeps.
    #[serde(default)]
    pub truncated: bool,
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

/// Events per multi-row INSERT (10 parameters each, well under both stores'
/// parameter limits).
pub const INSERT_CHUNK: usize = 500;

/// Parameters per inserted event.
const PARAMS: usize = 10;

/// Sessions per lock, head or count statement.
const SESSION_CHUNK: usize = 1000;

/// `($1), ($2), ...` (or `($1, $2), ($3, $4), ...` for `width` 2): a VALUES
/// list of `rows` rows with numbered parameters, which both stores accept.
fn values_list(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING` for
/// `rows` events; the rows returned are the ones that were new. Postgres
/// numbers its parameters (`$n`); SQLite gets anonymous `?` ones, because it
/// looks a named or numbered parameter up by a linear scan, which made a
/// large batch quadratic.
fn insert_sql(rows: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(160 + rows * 50);
    sql.push_str(
        "INSERT INTO session_events (session_id, seq, at, kind, statement, decision, payload, \
         schema_version, prev_hash, hash) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        if numbered {
            let b = r * PARAMS;
            let params: Vec<String> = (b + 1..=b + PARAMS).map(|n| format!("${n}")).collect();
            sql.push_str(&format!("({})", params.join(", ")));
        } else {
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        }
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

pub(crate) fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn encode_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(Box::new(e)))
}

impl Store {
    /// Appends events in one transaction, chaining each session's new events
    /// onto its stored head (see [`crate::audit::chain`]), and creating and
    /// closing session rows as start and end events arrive. Events at or
    /// below a session's head are skipped, so a node may resend safely.
    /// Sessions are locked for the transaction (an advisory lock in
    /// Postgres, the write lock in SQLite), so two replicas never fork a
    /// chain. Rows go in as multi-row INSERTs: one round trip per
    /// [`INSERT_CHUNK`] events.
    pub async fn append_events(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut sessions: Vec<&str> = events.iter().map(|e| e.session_id.as_str()).collect();
        sessions.sort_unstable();
        sessions.dedup();
        let postgres = matches!(self.pool, super::Pool::Postgres(_));
        let begin = if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" };
        with_pool!(self, |p| {
            let mut tx = p.begin_with(begin).await?;
            let mut heads: HashMap<String, Head> = HashMap::new();
            let mut found: Vec<(String, i64, Option<String>)> = Vec::new();
            if postgres {
                // Two round trips per chunk of sessions: lock them (in key
                // order), then read each one's head by an index probe.
                for chunk in sessions.chunks(SESSION_CHUNK) {
                    let values = values_list(chunk.len(), 1);
                    let lock = format!(
                        "SELECT pg_advisory_xact_lock(k)::text FROM (SELECT DISTINCT \
                         hashtextextended(id, 0) AS k FROM (VALUES {values}) AS s(id)) t ORDER BY k"
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(lock));
                    for session in chunk {
                        q = q.bind(*session);
                    }
                    q.execute(&mut *tx).await?;
                    let read = format!(
                        "SELECT s.id, h.seq, h.hash FROM (VALUES {values}) AS s(id) CROSS JOIN LATERAL \
                         (SELECT seq, hash FROM session_events WHERE session_id = s.id \
                          ORDER BY seq DESC LIMIT 1) h"
                    );
                    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(read));
                    for session in chunk {
                        q = q.bind(*session);
                    }
                    found.extend(q.fetch_all(&mut *tx).await?);
                }
            } else {
                // SQLite: the write lock is already held; probes are local.
                for session in &sessions {
                    let head: Option<(i64, Option<String>)> = sqlx::query_as(
                        "SELECT seq, hash FROM session_events WHERE session_id = $1 ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(*session)
                    .fetch_optional(&mut *tx)
                    .await?;
                    found.extend(head.map(|(seq, hash)| ((*session).to_owned(), seq, hash)));
                }
            }
            for (session, seq, hash) in found {
                // Events stored before the chain existed: start a chain
                // after them (verification reports them as unchained).
                let hash = hash.unwrap_or_else(|| chain::GENESIS.to_owned());
                let seq = u64::try_from(seq).unwrap_or(0);
                heads.insert(
                    session.clone(),
                    Head {
                        session_id: session,
                        seq,
                        hash,
                    },
                );
            }
            let linked = chain::link(&heads, events).map_err(encode_error)?;
            if !linked.skipped.is_empty() {
                // Resends of stored events, or (rarely) events arriving after
                // a later one of their session: those stay gaps.
                metrics::counter!("sluice_cp_audit_events_skipped_total")
                    .increment(linked.skipped.len() as u64);
            }
            let mut inserted: HashSet<(String, i64)> = HashSet::new();
            for chunk in linked.chained.chunks(INSERT_CHUNK) {
                let sql = insert_sql(chunk.len(), postgres);
                let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
                for c in chunk {
                    let e = &c.event;
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
                        .bind(&c.payload)
                        .bind(chain::SCHEMA_VERSION as i64)
                        .bind(&c.prev_hash)
                        .bind(&c.hash);
                }
                inserted.extend(q.fetch_all(&mut *tx).await?);
            }
            let new: Vec<&StoredEvent> = linked
                .chained
                .iter()
                .map(|c| &c.event)
                .filter(|e| inserted.contains(&(e.session_id.clone(), seq_i64(e.seq))))
                .collect();
            let mut statements: HashMap<&str, i64> = HashMap::new();
            for e in &new {
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
                    EventKind::SessionEnd { .. }
                    | EventKind::StatementIntent { .. }
                    | EventKind::ApprovalDecision { .. } => {}
                    EventKind::ApprovalRequested {
                        identity, target, ..
                    } => {
                        sqlx::query(
                            "INSERT INTO sessions (id, node_id, identity, identity_kind, groups, target, client_addr, tls, \
                             protocol, application_name, token_id, started_at) \
                             VALUES ($1, '', $2, 'approval', '[]', $3, '', false, 'approval', '', '', $4) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(&e.session_id)
                        .bind(identity)
                        .bind(target)
                        .bind(e.at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    EventKind::ConfigChange {
                        actor,
                        action,
                        resource,
                        name,
                        ..
                    } => {
                        sqlx::query(
                            "INSERT INTO sessions (id, node_id, identity, identity_kind, groups, target, client_addr, tls, \
                             protocol, application_name, token_id, started_at, ended_at, end_reason) \
                             VALUES ($1, '', $2, 'admin', '[]', $3, '', false, 'rest', '', '', $4, $4, $5) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(&e.session_id)
                        .bind(actor)
                        .bind(format!("{resource} {name}"))
                        .bind(e.at)
                        .bind(format!("config_change: {resource} {action}"))
                        .execute(&mut *tx)
                        .await?;
                    }
                    EventKind::ApprovalRefused {
                        approval_id,
                        actor,
                        channel,
                        reason,
                    } => {
                        sqlx::query(
                            "INSERT INTO sessions (id, node_id, identity, identity_kind, groups, target, client_addr, tls, \
                             protocol, application_name, token_id, started_at, ended_at, end_reason) \
                             VALUES ($1, '', $2, 'approval', '[]', $3, '', false, $4, '', '', $5, $5, $6) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(&e.session_id)
                        .bind(actor)
                        .bind(approval_id)
                        .bind(channel)
                        .bind(e.at)
                        .bind(format!("approval_refused: {reason}"))
                        .execute(&mut *tx)
                        .await?;
                    }
                    EventKind::AuthFailure {
                        client_addr,
                        user,
                        target,
                        reason,
                        protocol,
                        tls,
                        node_id,
                        ..
                    } => {
                        sqlx::query(
                            "INSERT INTO sessions (id, node_id, identity, identity_kind, groups, target, client_addr, tls, \
                             protocol, application_name, token_id, started_at, ended_at, end_reason) \
                             VALUES ($1, $2, $3, 'unauthenticated', '[]', $4, $5, $6, $7, '', '', $8, $8, $9) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(&e.session_id)
                        .bind(node_id)
                        .bind(user)
                        .bind(target)
                        .bind(client_addr)
                        .bind(*tls)
                        .bind(protocol)
                        .bind(e.at)
                        .bind(format!("auth_failed: {reason}"))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            let counts: Vec<(&str, i64)> = statements.into_iter().collect();
            for chunk in counts.chunks(SESSION_CHUNK) {
                let sql = format!(
                    "WITH v(id, n) AS (VALUES {}) UPDATE sessions \
                     SET statements = statements + (SELECT v.n FROM v WHERE v.id = sessions.id) \
                     WHERE id IN (SELECT v.id FROM v)",
                    values_list(chunk.len(), 2)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (session, n) in chunk {
                    q = q.bind(*session).bind(*n);
                }
                q.execute(&mut *tx).await?;
            }
            for e in &new {
                let end = match &e.kind {
                    EventKind::SessionEnd { reason, .. } => Some(reason.clone()),
                    // An approval's record ends when it can change no more.
                    EventKind::ApprovalDecision { state, .. }
                        if matches!(
                            state.as_str(),
                            "denied" | "expired" | "cancelled" | "consumed" | "revoked"
                        ) =>
                    {
                        Some(format!("approval {state}"))
                    }
                    _ => None,
                };
                if let Some(reason) = end {
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

#[cfg(test)]
mod tests {
    use super::insert_sql;

    #[test]
    fn values_lists_number_their_parameters() {
        assert_eq!(super::values_list(2, 1), "($1), ($2)");
        assert_eq!(super::values_list(2, 2), "($1, $2), ($3, $4)");
    }

    #[test]
    fn placeholders_suit_each_store() {
        assert!(insert_sql(2, true).contains("($11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"));
        let sqlite = insert_sql(2, false);
        assert!(!sqlite.contains('$'));
        assert_eq!(sqlite.matches('?').count(), 20);
    }
}
