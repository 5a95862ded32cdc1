use super::secret::{generate, hash};
use super::{Store, StoreError, now_us, with_pool};

/// A credential a node presents to join the control plane. Only its SHA-256
/// is stored; the token itself is shown once, when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Stable id.
    pub id: String,
    /// What the admin called it.
    pub name: String,
    /// Creation time, µs.
    pub created_at: i64,
    /// Revocation time, µs, if revoked.
    pub revoked_at: Option<i64>,
}

/// A join token just created: the only time its secret is known.
#[derive(Debug, Clone)]
pub struct NewJoinToken {
    /// The stored record.
    pub record: JoinToken,
    /// The secret, `sjt_…`.
    pub token: String,
}

/// The prefix of join tokens, so leaked ones are easy to spot and scan for.
pub const JOIN_TOKEN_PREFIX: &str = "sjt_";

type Row = (String, String, i64, Option<i64>);

fn from_row(r: Row) -> JoinToken {
    JoinToken {
        id: r.0,
        name: r.1,
        created_at: r.2,
        revoked_at: r.3,
    }
}

impl Store {
    /// Creates a join token with a fresh random secret.
    pub async fn create_join_token(&self, name: &str) -> Result<NewJoinToken, StoreError> {
        let token = generate(JOIN_TOKEN_PREFIX);
        let record = self.insert_join_token(name, &token).await?;
        Ok(NewJoinToken { record, token })
    }

    /// Stores a join token whose secret the operator chose (for bootstrapping
    /// from configuration). Storing the same secret twice returns the first.
    pub async fn insert_join_token(
        &self,
        name: &str,
        token: &str,
    ) -> Result<JoinToken, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_us();
        let h = hash(token);
        with_pool!(self, |p| sqlx::query(
            "INSERT INTO join_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token_hash) DO NOTHING"
        )
        .bind(&id)
        .bind(name)
        .bind(&h)
        .bind(now)
        .execute(p)
        .await
        .map(drop))?;
        let row: Row = with_pool!(self, |p| sqlx::query_as(
            "SELECT id, name, created_at, revoked_at FROM join_tokens WHERE token_hash = $1"
        )
        .bind(&h)
        .fetch_one(p)
        .await)?;
        Ok(from_row(row))
    }

    /// The live (unrevoked) join token matching `token`, if any.
    pub async fn check_join_token(&self, token: &str) -> Result<Option<JoinToken>, StoreError> {
        let row: Option<Row> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, name, created_at, revoked_at FROM join_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        )
        .bind(hash(token))
        .fetch_optional(p)
        .await
        })?;
        Ok(row.map(from_row))
    }

    /// Every join token, newest first, without secrets.
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinToken>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT id, name, created_at, revoked_at FROM join_tokens ORDER BY created_at DESC, id DESC"
        )
        .fetch_all(p)
        .await
        })?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Revokes a join token; returns whether a live one was revoked.
    pub async fn revoke_join_token(&self, id: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, |p| sqlx::query(
            "UPDATE join_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL"
        )
        .bind(id)
        .bind(now_us())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
