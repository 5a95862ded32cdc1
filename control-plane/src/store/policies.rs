use super::{BUMP_REVISION, BeginWrite as _, Store, StoreError, now_us, with_pool};

/// The current version of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Unique name (from the document).
    pub name: String,
    /// Grows with every change, never reused (not even after a delete).
    pub version: u64,
    /// The YAML source.
    pub source: String,
    /// First creation, µs.
    pub created_at: i64,
    /// Last change, µs.
    pub updated_at: i64,
}

/// One entry of a policy's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// Policy name.
    pub name: String,
    /// Version number.
    pub version: u64,
    /// The source of that version; `None` records a deletion.
    pub source: Option<String>,
    /// Who made the change.
    pub author: String,
    /// When, µs.
    pub created_at: i64,
}

type Row = (String, i64, String, i64, i64);
type VersionRow = (String, i64, Option<String>, String, i64);

fn from_row(r: Row) -> StoredPolicy {
    StoredPolicy {
        name: r.0,
        version: u64::try_from(r.1).unwrap_or(0),
        source: r.2,
        created_at: r.3,
        updated_at: r.4,
    }
}

/// Whether a put may create, replace, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Only if no policy has the name.
    Create,
    /// Only if one does.
    Replace,
    /// Either.
    Upsert,
}

impl Store {
    /// Stores a new version of policy `name`. Returns `None` when `mode`
    /// forbids it (the name exists for Create, or not for Replace).
    pub async fn put_policy(
        &self,
        name: &str,
        source: &str,
        author: &str,
        mode: PutMode,
    ) -> Result<Option<StoredPolicy>, StoreError> {
        let now = now_us();
        let stored = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let existing: Option<(i64,)> =
                sqlx::query_as("SELECT version FROM policies WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match (mode, existing.is_some()) {
                (PutMode::Create, true) | (PutMode::Replace, false) => return Ok(None),
                _ => {}
            }
            let (last,): (Option<i64>,) =
                sqlx::query_as("SELECT max(version) FROM policy_versions WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
            let version = last.unwrap_or(0) + 1;
            sqlx::query(
                "INSERT INTO policies (name, version, source, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (name) DO UPDATE SET version = $2, source = $3, updated_at = $4",
            )
            .bind(name)
            .bind(version)
            .bind(source)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO policy_versions (name, version, source, author, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(name)
            .bind(version)
            .bind(source)
            .bind(author)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
            let row: Row = sqlx::query_as(
                "SELECT name, version, source, created_at, updated_at FROM policies WHERE name = $1",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            from_row(row)
        });
        Ok(Some(stored))
    }

    /// Deletes a policy, recording the deletion in its history. Returns
    /// whether it existed.
    pub async fn delete_policy(&self, name: &str, author: &str) -> Result<bool, StoreError> {
        let now = now_us();
        let existed = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let gone = sqlx::query("DELETE FROM policies WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if gone > 0 {
                sqlx::query(
                    "INSERT INTO policy_versions (name, version, source, author, created_at) \
                     SELECT $1, max(version) + 1, NULL, $2, $3 FROM policy_versions WHERE name = $1",
                )
                .bind(name)
                .bind(author)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            gone > 0
        });
        Ok(existed)
    }

    /// Every live policy, by name.
    pub async fn list_policies(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, |p| sqlx::query_as(
            "SELECT name, version, source, created_at, updated_at FROM policies ORDER BY name"
        )
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// One live policy.
    pub async fn get_policy(&self, name: &str) -> Result<Option<StoredPolicy>, StoreError> {
        let row: Option<Row> = with_pool!(self, |p| sqlx::query_as(
            "SELECT name, version, source, created_at, updated_at FROM policies WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    /// A policy's whole history, oldest first.
    pub async fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let rows: Vec<VersionRow> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT name, version, source, author, created_at FROM policy_versions WHERE name = $1 ORDER BY version"
        )
        .bind(name)
        .fetch_all(p)
        .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| PolicyVersion {
                name: r.0,
                version: u64::try_from(r.1).unwrap_or(0),
                source: r.2,
                author: r.3,
                created_at: r.4,
            })
            .collect())
    }
}
