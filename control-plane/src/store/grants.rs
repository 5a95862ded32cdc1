//! Access grants and their decision history.

use super::BeginWrite as _;
use super::{BUMP_REVISION, Store, StoreError, now_us, with_pool};
use crate::grants::GrantState;

/// An access grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Id (UUIDv7), named in the record of every statement it lets run.
    pub id: String,
    /// Where it stands, as stored (see [`crate::grants::effective`]).
    pub state: GrantState,
    /// Grows with every change; writes check it.
    pub version: i64,
    /// Who asked.
    pub identity: String,
    /// Which target.
    pub target: String,
    /// A rule name of the governing policy; empty for the whole target.
    pub scope: String,
    /// Why the requester needs it.
    pub reason: String,
    /// The policy whose approval rules decide it.
    pub policy: String,
    /// How long it lasts once approved, µs.
    pub duration_us: i64,
    /// Groups whose members may decide; empty means any approver.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required: u32,
    /// Creation, µs.
    pub created_at: i64,
    /// A pending grant lapses then, µs.
    pub request_expires_at: i64,
    /// An active grant stops applying then, µs (set on approval).
    pub expires_at: Option<i64>,
    /// When it was approved or denied, µs.
    pub decided_at: Option<i64>,
    /// When it was revoked or recorded as expired, µs.
    pub ended_at: Option<i64>,
}

/// What a new grant request carries.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// Who asks.
    pub identity: String,
    /// Which target.
    pub target: String,
    /// A rule name, or empty.
    pub scope: String,
    /// Why.
    pub reason: String,
    /// The governing policy.
    pub policy: String,
    /// How long it lasts once approved, µs.
    pub duration_us: i64,
    /// Approver groups.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required: u32,
    /// How long the request stays open, µs.
    pub ttl_us: i64,
}

/// One entry of a grant's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEntry {
    /// When, µs.
    pub at: i64,
    /// Who (an identity name, or `sluice` for the gateway itself).
    pub actor: String,
    /// `approve`, `deny`, `expire` or `revoke`.
    pub action: String,
    /// `api` or `system`.
    pub channel: String,
    /// Why, as the actor said.
    pub reason: String,
}

/// A change to write only if the grant is still at `version`.
#[derive(Debug, Clone)]
pub struct GrantTransition {
    /// The version read.
    pub version: i64,
    /// The new state.
    pub state: GrantState,
    /// Set on approval: when the grant stops applying.
    pub expires_at: Option<i64>,
    /// The history entry recording it.
    pub entry: GrantEntry,
}

const COLUMNS: &str = "id, state, version, identity, target, scope, reason, policy, duration_us, approvers, \
    required, created_at, request_expires_at, expires_at, decided_at, ended_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    state: String,
    version: i64,
    identity: String,
    target: String,
    scope: String,
    reason: String,
    policy: String,
    duration_us: i64,
    approvers: String,
    required: i64,
    created_at: i64,
    request_expires_at: i64,
    expires_at: Option<i64>,
    decided_at: Option<i64>,
    ended_at: Option<i64>,
}

fn from_row(r: Row) -> Grant {
    Grant {
        id: r.id,
        // An unknown stored state reads as revoked: nothing runs on it.
        state: GrantState::parse(&r.state).unwrap_or(GrantState::Revoked),
        version: r.version,
        identity: r.identity,
        target: r.target,
        scope: r.scope,
        reason: r.reason,
        policy: r.policy,
        duration_us: r.duration_us,
        approvers: serde_json::from_str(&r.approvers).unwrap_or_default(),
        required: u32::try_from(r.required).unwrap_or(u32::MAX),
        created_at: r.created_at,
        request_expires_at: r.request_expires_at,
        expires_at: r.expires_at,
        decided_at: r.decided_at,
        ended_at: r.ended_at,
    }
}

/// Which grants to list.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    /// Only grants stored in this state.
    pub state: Option<GrantState>,
    /// Only grants of this identity.
    pub identity: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Store {
    /// Stores a new pending grant.
    pub async fn create_grant(&self, new: NewGrant) -> Result<Grant, StoreError> {
        let now = now_us();
        let id = uuid::Uuid::now_v7().to_string();
        let approvers = serde_json::to_string(&new.approvers).unwrap_or_else(|_| "[]".to_owned());
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO access_grants (id, state, version, identity, target, scope, reason, policy, duration_us, \
                 approvers, required, created_at, request_expires_at) \
                 VALUES ($1, 'pending', 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&id)
            .bind(&new.identity)
            .bind(&new.target)
            .bind(&new.scope)
            .bind(&new.reason)
            .bind(&new.policy)
            .bind(new.duration_us)
            .bind(&approvers)
            .bind(i64::from(new.required))
            .bind(now)
            .bind(now.saturating_add(new.ttl_us))
            .execute(p)
            .await
            .map(drop)
        })?;
        self.get_grant(&id)
            .await?
            .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// One grant.
    pub async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM access_grants WHERE id = $1");
        let row: Option<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(p)
                .await)?;
        Ok(row.map(from_row))
    }

    /// Grants newest first, filtered as `f` says.
    pub async fn list_grants(&self, f: &GrantFilter) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM access_grants \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR identity = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let state = f.state.map(GrantState::as_str);
        let rows: Vec<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(state)
                .bind(f.identity.as_deref())
                .bind(i64::from(f.limit))
                .fetch_all(p)
                .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Grants stored as active whose window has not ended at `now`: what
    /// snapshots carry to nodes.
    pub async fn live_grants(&self, now: i64) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM access_grants WHERE state = 'active' AND expires_at > $1 \
             ORDER BY id"
        );
        let rows: Vec<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now)
                .fetch_all(p)
                .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Pending grants past their request deadline and active grants past
    /// their window at `now`: what the sweeper records as expired.
    pub async fn lapsed_grants(&self, now: i64, limit: u32) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM access_grants \
             WHERE (state = 'pending' AND request_expires_at <= $1) \
                OR (state = 'active' AND expires_at <= $1) \
             ORDER BY created_at, id LIMIT $2"
        );
        let rows: Vec<Row> =
            with_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Applies `t` if the grant is still at `t.version`, recording its
    /// history entry in the same transaction. A change to or from `active`
    /// bumps the configuration revision, so nodes get a new snapshot.
    /// Returns `false` when someone changed the grant first.
    pub async fn transition_grant(
        &self,
        id: &str,
        t: &GrantTransition,
    ) -> Result<bool, StoreError> {
        let at = t.entry.at;
        let decided_at = matches!(t.state, GrantState::Active | GrantState::Denied).then_some(at);
        let ended_at = matches!(t.state, GrantState::Expired | GrantState::Revoked).then_some(at);
        let done = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let before: Option<(String,)> =
                sqlx::query_as("SELECT state FROM access_grants WHERE id = $1 AND version = $2")
                    .bind(id)
                    .bind(t.version)
                    .fetch_optional(&mut *tx)
                    .await?;
            let n = sqlx::query(
                "UPDATE access_grants SET state = $3, version = version + 1, \
                 decided_at = COALESCE($4, decided_at), ended_at = COALESCE($5, ended_at), \
                 expires_at = COALESCE($6, expires_at) \
                 WHERE id = $1 AND version = $2",
            )
            .bind(id)
            .bind(t.version)
            .bind(t.state.as_str())
            .bind(decided_at)
            .bind(ended_at)
            .bind(t.expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "INSERT INTO grant_decisions (id, grant_id, at, actor, action, channel, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(id)
                .bind(at)
                .bind(&t.entry.actor)
                .bind(&t.entry.action)
                .bind(&t.entry.channel)
                .bind(&t.entry.reason)
                .execute(&mut *tx)
                .await?;
                let was_active = before.is_some_and(|(s,)| s == GrantState::Active.as_str());
                if was_active || t.state == GrantState::Active {
                    sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            n == 1
        });
        Ok(done)
    }

    /// A grant's history, oldest first.
    pub async fn grant_history(&self, id: &str) -> Result<Vec<GrantEntry>, StoreError> {
        let rows: Vec<(i64, String, String, String, String)> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT at, actor, action, channel, reason FROM grant_decisions \
                 WHERE grant_id = $1 ORDER BY at, id",
            )
            .bind(id)
            .fetch_all(p)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| GrantEntry {
                at: r.0,
                actor: r.1,
                action: r.2,
                channel: r.3,
                reason: r.4,
            })
            .collect())
    }
}
