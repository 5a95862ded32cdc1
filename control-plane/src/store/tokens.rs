//! The record of every token the control plane signs for a service account:
//! listed without the token itself, and revocable before it expires.
//! Revocations reach nodes in the snapshot, so a revoked token stops working
//! everywhere without waiting for its expiry.

use super::BeginWrite as _;
use super::{BUMP_REVISION, Store, StoreError, now_us, with_pool};

/// One issued token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTokenRecord {
    /// The token's `jti`.
    pub id: String,
    /// Its `sub`.
    pub subject: String,
    /// Principal kind.
    pub kind: String,
    /// The service account it was issued to.
    pub account_id: Option<String>,
    /// Who asked for it: an admin's name, or `client_credentials`.
    pub issued_by: String,
    /// Issue time, µs.
    pub issued_at: i64,
    /// Expiry, µs.
    pub expires_at: i64,
    /// Revocation time, µs.
    pub revoked_at: Option<i64>,
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    Option<i64>,
);

fn from_row(r: Row) -> IssuedTokenRecord {
    IssuedTokenRecord {
        id: r.0,
        subject: r.1,
        kind: r.2,
        account_id: r.3,
        issued_by: r.4,
        issued_at: r.5,
        expires_at: r.6,
        revoked_at: r.7,
    }
}

impl Store {
    /// Records a token just signed.
    pub async fn record_issued_token(&self, t: &IssuedTokenRecord) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO issued_tokens (id, subject, kind, account_id, issued_by, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(&t.id)
        .bind(&t.subject)
        .bind(&t.kind)
        .bind(&t.account_id)
        .bind(&t.issued_by)
        .bind(t.issued_at)
        .bind(t.expires_at)
        .execute(p)
        .await
        .map(drop)
        })?;
        Ok(())
    }

    /// The tokens issued to one account, newest first.
    pub async fn list_issued_tokens(
        &self,
        account_id: &str,
    ) -> Result<Vec<IssuedTokenRecord>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, subject, kind, account_id, issued_by, issued_at, expires_at, revoked_at \
             FROM issued_tokens WHERE account_id = $1 ORDER BY issued_at DESC, id DESC"
        )
        .bind(account_id)
        .fetch_all(p)
        .await
        })?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Revokes one token of one account; returns whether a live one was
    /// revoked. Bumps the configuration revision so nodes hear at once.
    pub async fn revoke_issued_token(
        &self,
        account_id: &str,
        token_id: &str,
    ) -> Result<bool, StoreError> {
        let revoked = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(
                "UPDATE issued_tokens SET revoked_at = $3 WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL",
            )
            .bind(token_id)
            .bind(account_id)
            .bind(now_us())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n > 0
        });
        Ok(revoked)
    }

    /// The ids of revoked tokens that have not yet expired: the only ones a
    /// verifier must still refuse by id.
    pub async fn revoked_token_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id FROM issued_tokens WHERE revoked_at IS NOT NULL AND expires_at > $1 ORDER BY id"
        )
        .bind(now_us())
        .fetch_all(p)
        .await
        })?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
