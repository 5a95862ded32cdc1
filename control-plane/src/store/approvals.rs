//! Approval requests and their decision history.

use super::BeginWrite as _;
use super::{Store, StoreError, now_us, with_pool};
use crate::approvals::State;

/// An approval request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Id (UUIDv7), shown to the client and in links.
    pub id: String,
    /// Where it stands, as stored (a pending request past its expiry is
    /// still `Pending` here until someone records the expiry).
    pub state: State,
    /// Grows with every change; writes check it.
    pub version: i64,
    /// `answer` or `hold`.
    pub mode: String,
    /// Who asked.
    pub identity: String,
    /// Which target.
    pub target: String,
    /// The session that asked.
    pub session_id: String,
    /// The node that asked.
    pub node_id: String,
    /// The node's id for the request, echoed in decisions.
    pub node_request_id: String,
    /// The statement text, for approvers to read.
    pub statement: String,
    /// SHA-256 (hex) over the exact statement bytes and bound parameters.
    pub statement_hash: String,
    /// The deciding policy.
    pub policy: String,
    /// The deciding rule.
    pub rule: String,
    /// Why the policy wants approval.
    pub reason: String,
    /// Groups whose members may decide; empty means any approver.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required: u32,
    /// Creation, µs.
    pub created_at: i64,
    /// A pending request lapses then; an approved one must run before it.
    pub expires_at: i64,
    /// When it reached its final state, µs.
    pub decided_at: Option<i64>,
    /// When the approved statement ran, µs.
    pub consumed_at: Option<i64>,
}

/// What a new request carries.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// `answer` or `hold`.
    pub mode: String,
    /// Who asked.
    pub identity: String,
    /// Which target.
    pub target: String,
    /// The session that asked.
    pub session_id: String,
    /// The node that asked.
    pub node_id: String,
    /// The node's id for the request.
    pub node_request_id: String,
    /// The statement text.
    pub statement: String,
    /// SHA-256 hex of the statement bytes and parameters.
    pub statement_hash: String,
    /// The deciding policy.
    pub policy: String,
    /// The deciding rule.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Approver groups.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required: u32,
    /// How long it stays open, µs.
    pub ttl_us: i64,
}

/// One entry of a request's history: a vote or a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalEntry {
    /// When, µs.
    pub at: i64,
    /// Who (an identity name, or `sluice` for the gateway itself).
    pub actor: String,
    /// `approve`, `deny`, `expire` or `cancel`.
    pub action: String,
    /// `api`, `slack`, `email`, `node` or `system`.
    pub channel: String,
    /// Why, as the actor said.
    pub reason: String,
}

/// A change to write only if the request is still at `version`.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The version read.
    pub version: i64,
    /// The new state.
    pub state: State,
    /// A new expiry, if it changes (an approval starts its run window).
    pub expires_at: Option<i64>,
    /// The history entry recording it.
    pub entry: ApprovalEntry,
}

const COLUMNS: &str = "id, state, version, mode, identity, target, session_id, node_id, node_request_id, \
    statement, statement_hash, policy, rule, reason, approvers, required, created_at, expires_at, decided_at, consumed_at";

/// One stored row, column by column.
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    state: String,
    version: i64,
    mode: String,
    identity: String,
    target: String,
    session_id: String,
    node_id: String,
    node_request_id: String,
    statement: String,
    statement_hash: String,
    policy: String,
    rule: String,
    reason: String,
    approvers: String,
    required: i64,
    created_at: i64,
    expires_at: i64,
    decided_at: Option<i64>,
    consumed_at: Option<i64>,
}

fn from_row(r: Row) -> Approval {
    Approval {
        id: r.id,
        // An unknown stored state reads as cancelled: nothing runs on it.
        state: State::parse(&r.state).unwrap_or(State::Cancelled),
        version: r.version,
        mode: r.mode,
        identity: r.identity,
        target: r.target,
        session_id: r.session_id,
        node_id: r.node_id,
        node_request_id: r.node_request_id,
        statement: r.statement,
        statement_hash: r.statement_hash,
        policy: r.policy,
        rule: r.rule,
        reason: r.reason,
        approvers: serde_json::from_str(&r.approvers).unwrap_or_default(),
        required: u32::try_from(r.required).unwrap_or(u32::MAX),
        created_at: r.created_at,
        expires_at: r.expires_at,
        decided_at: r.decided_at,
        consumed_at: r.consumed_at,
    }
}

impl Store {
    /// Stores a new pending request.
    pub async fn create_approval(&self, new: NewApproval) -> Result<Approval, StoreError> {
        let now = now_us();
        let id = uuid::Uuid::now_v7().to_string();
        let approvers = serde_json::to_string(&new.approvers).unwrap_or_else(|_| "[]".to_owned());
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO approvals (id, state, version, mode, identity, target, session_id, node_id, node_request_id, \
                 statement, statement_hash, policy, rule, reason, approvers, required, created_at, expires_at) \
                 VALUES ($1, 'pending', 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )
            .bind(&id)
            .bind(&new.mode)
            .bind(&new.identity)
            .bind(&new.target)
            .bind(&new.session_id)
            .bind(&new.node_id)
            .bind(&new.node_request_id)
            .bind(&new.statement)
            .bind(&new.statement_hash)
            .bind(&new.policy)
            .bind(&new.rule)
            .bind(&new.reason)
            .bind(&approvers)
            .bind(i64::from(new.required))
            .bind(now)
            .bind(now.saturating_add(new.ttl_us))
            .execute(p)
            .await
            .map(drop)
        })?;
        self.get_approval(&id)
            .await?
            .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// One request.
    pub async fn get_approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM approvals WHERE id = $1");
        let row: Option<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(p)
                .await)?;
        Ok(row.map(from_row))
    }

    /// Requests newest first, optionally only those stored in `state`.
    pub async fn list_approvals(
        &self,
        state: Option<State>,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError> {
        let rows: Vec<Row> = match state {
            Some(s) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM approvals WHERE state = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
                );
                with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(s.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await)?
            }
            None => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM approvals ORDER BY created_at DESC, id DESC LIMIT $1"
                );
                with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await)?
            }
        };
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Pending requests whose deadline passed at `now`, oldest deadline
    /// first: what the expiry sweeper records as expired.
    pub async fn lapsed_approvals(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE state = 'pending' AND expires_at <= $1 \
             ORDER BY expires_at, id LIMIT $2"
        );
        let rows: Vec<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The newest request for exactly this statement of this identity on
    /// this target that can still matter at `now`: approved and not yet
    /// run, or pending; either one unexpired.
    pub async fn find_open_approval(
        &self,
        identity: &str,
        target: &str,
        statement_hash: &str,
        now: i64,
    ) -> Result<Option<Approval>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE identity = $1 AND target = $2 AND statement_hash = $3 \
             AND mode = 'answer' AND expires_at > $4 \
             AND (state = 'pending' OR (state = 'approved' AND consumed_at IS NULL)) \
             ORDER BY (state = 'approved') DESC, created_at DESC LIMIT 1"
        );
        let row: Option<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(identity)
                .bind(target)
                .bind(statement_hash)
                .bind(now)
                .fetch_optional(p)
                .await)?;
        Ok(row.map(from_row))
    }

    /// The request a node made under its own request id.
    pub async fn find_node_approval(
        &self,
        node_id: &str,
        request_id: &str,
    ) -> Result<Option<Approval>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE node_id = $1 AND node_request_id = $2 \
             ORDER BY created_at DESC LIMIT 1"
        );
        let row: Option<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(node_id)
                .bind(request_id)
                .fetch_optional(p)
                .await)?;
        Ok(row.map(from_row))
    }

    /// Marks an approved request as run. Returns `false` if it was not
    /// approved, already run, or expired: then the statement must not run.
    pub async fn consume_approval(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let n = with_pool!(self, |p| sqlx::query(
            "UPDATE approvals SET consumed_at = $2, version = version + 1 \
             WHERE id = $1 AND state = 'approved' AND consumed_at IS NULL AND expires_at > $2"
        )
        .bind(id)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Applies `t` if the request is still at `t.version`, recording its
    /// history entry in the same transaction. Returns `false` when someone
    /// changed the request first (read again and retry).
    pub async fn transition_approval(&self, id: &str, t: &Transition) -> Result<bool, StoreError> {
        let decided_at = (t.state != State::Pending).then_some(t.entry.at);
        let done = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(
                "UPDATE approvals SET state = $3, version = version + 1, \
                 decided_at = COALESCE($4, decided_at), expires_at = COALESCE($5, expires_at) \
                 WHERE id = $1 AND version = $2",
            )
            .bind(id)
            .bind(t.version)
            .bind(t.state.as_str())
            .bind(decided_at)
            .bind(t.expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "INSERT INTO approval_decisions (id, approval_id, at, actor, action, channel, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(id)
                .bind(t.entry.at)
                .bind(&t.entry.actor)
                .bind(&t.entry.action)
                .bind(&t.entry.channel)
                .bind(&t.entry.reason)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            n == 1
        });
        Ok(done)
    }

    /// Remembers where a request's Slack message is, to update it later.
    pub async fn set_approval_slack(
        &self,
        id: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, |p| sqlx::query(
            "UPDATE approvals SET slack_channel = $2, slack_ts = $3 WHERE id = $1"
        )
        .bind(id)
        .bind(channel)
        .bind(ts)
        .execute(p)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Where a request's Slack message is, if one was posted.
    pub async fn approval_slack(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = with_pool!(self, |p| sqlx::query_as(
            "SELECT slack_channel, slack_ts FROM approvals WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await)?;
        Ok(row.and_then(|(c, t)| Some((c?, t?))))
    }

    /// Records a handled Slack request by its signature. Returns `false` if
    /// it was handled before (a replay). Entries older than `forget_before`
    /// (µs) are dropped: their timestamps no longer pass the freshness check.
    pub async fn remember_slack_request(
        &self,
        signature: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self, |p| sqlx::query(
            "DELETE FROM slack_requests_seen WHERE at < $1"
        )
        .bind(forget_before)
        .execute(p)
        .await
        .map(drop))?;
        let inserted = with_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO slack_requests_seen (signature, at) VALUES ($1, $2) ON CONFLICT (signature) DO NOTHING"
        )
        .bind(signature)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(inserted == 1)
    }

    /// Marks an email link used. Returns `false` if it was used before.
    pub async fn use_email_link(
        &self,
        link_id: &str,
        approval_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let inserted = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO approval_email_links_used (link_id, approval_id, used_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (link_id) DO NOTHING",
            )
            .bind(link_id)
            .bind(approval_id)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(inserted == 1)
    }

    /// Whether an email link was used.
    pub async fn email_link_used(&self, link_id: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT link_id FROM approval_email_links_used WHERE link_id = $1")
                .bind(link_id)
                .fetch_optional(p)
                .await
        })?;
        Ok(row.is_some())
    }

    /// A request's history, oldest first.
    pub async fn approval_history(&self, id: &str) -> Result<Vec<ApprovalEntry>, StoreError> {
        let rows: Vec<(i64, String, String, String, String)> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT at, actor, action, channel, reason FROM approval_decisions \
                 WHERE approval_id = $1 ORDER BY at, id",
            )
            .bind(id)
            .fetch_all(p)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| ApprovalEntry {
                at: r.0,
                actor: r.1,
                action: r.2,
                channel: r.3,
                reason: r.4,
            })
            .collect())
    }
}
