//! Long-lived REST credentials for automation (CI jobs, SIEM pulls): each
//! scoped to one role, stored hashed, shown once, revocable.

use super::secret::{generate, hash};
use super::{Store, StoreError, now_us, with_pool};

/// The prefix of API keys, so they are told apart from JWTs at a glance
/// and leaked ones are easy to scan for.
pub const API_KEY_PREFIX: &str = "slk_";

/// An API key as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Stable id.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The one role it carries: `admin`, `approver` or `auditor`.
    pub role: String,
    /// Its first characters, so people can tell keys apart.
    pub prefix: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time, µs.
    pub created_at: i64,
    /// Revocation time, µs.
    pub revoked_at: Option<i64>,
}

/// A key just created: the only time its secret is known.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub record: ApiKey,
    /// The key, `slk_…`.
    pub key: String,
}

type Row = (String, String, String, String, String, i64, Option<i64>);

fn from_row(r: Row) -> ApiKey {
    ApiKey {
        id: r.0,
        name: r.1,
        role: r.2,
        prefix: r.3,
        created_by: r.4,
        created_at: r.5,
        revoked_at: r.6,
    }
}

macro_rules! columns {
    () => {
        "id, name, role, prefix, created_by, created_at, revoked_at"
    };
}

impl Store {
    /// Creates a key carrying `role`.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: &str,
        created_by: &str,
    ) -> Result<CreatedApiKey, StoreError> {
        let key = generate(API_KEY_PREFIX);
        let record = ApiKey {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            role: role.to_owned(),
            prefix: key.chars().take(API_KEY_PREFIX.len() + 6).collect(),
            created_by: created_by.to_owned(),
            created_at: now_us(),
            revoked_at: None,
        };
        with_pool!(self, |p| sqlx::query(
            "INSERT INTO api_keys (id, name, role, prefix, key_hash, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(&record.id)
        .bind(&record.name)
        .bind(&record.role)
        .bind(&record.prefix)
        .bind(hash(&key))
        .bind(&record.created_by)
        .bind(record.created_at)
        .execute(p)
        .await
        .map(drop))?;
        Ok(CreatedApiKey { record, key })
    }

    /// The live key matching `key`, if any. Looked up by hash: the hash of a
    /// wrong guess matches nothing, whatever its prefix.
    pub async fn check_api_key(&self, key: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        );
        let row: Option<Row> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(hash(key))
            .fetch_optional(p)
            .await)?;
        Ok(row.map(from_row))
    }

    /// Every key, newest first, without secrets.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<Row> = with_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Revokes a key; returns whether a live one was revoked.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, |p| sqlx::query(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL"
        )
        .bind(id)
        .bind(now_us())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
