//! Agents and automation: identities that are not people. Each exchanges a
//! client id and secret for short-lived tokens; the secret is stored hashed
//! and shown once.

use super::BeginWrite as _;
use super::secret::{generate, hash, hashes_equal};
use super::{BUMP_REVISION, Store, StoreError, now_us, with_pool};

/// The prefix of client ids.
pub const CLIENT_ID_PREFIX: &str = "sa_";
/// The prefix of client secrets, so leaked ones are easy to scan for.
pub const CLIENT_SECRET_PREFIX: &str = "scs_";

/// A service account as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Stable id.
    pub id: String,
    /// Unique name; the `sub` of its tokens.
    pub name: String,
    /// `agent` or `service`.
    pub kind: String,
    /// What it is for.
    pub description: String,
    /// The person answerable for it (approval rules can refuse their
    /// approvals of its requests).
    pub owner: String,
    /// Identity groups assigned in the control plane.
    pub groups: Vec<String>,
    /// The OAuth2 client id.
    pub client_id: String,
    /// Creation time, µs.
    pub created_at: i64,
    /// When it was disabled, µs; a disabled account gets no tokens.
    pub disabled_at: Option<i64>,
}

/// What an admin supplies to create one.
#[derive(Debug, Clone)]
pub struct NewServiceAccount {
    /// See [`ServiceAccount::name`].
    pub name: String,
    /// See [`ServiceAccount::kind`].
    pub kind: String,
    /// See [`ServiceAccount::description`].
    pub description: String,
    /// See [`ServiceAccount::owner`].
    pub owner: String,
    /// See [`ServiceAccount::groups`].
    pub groups: Vec<String>,
}

/// A service account just created: the only time its secret is known.
#[derive(Debug, Clone)]
pub struct CreatedServiceAccount {
    /// The stored record.
    pub account: ServiceAccount,
    /// The client secret, `scs_…`.
    pub client_secret: String,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
);

macro_rules! columns {
    () => {
        "id, name, kind, description, owner, groups, client_id, created_at, disabled_at"
    };
}

fn from_row(r: Row) -> ServiceAccount {
    ServiceAccount {
        id: r.0,
        name: r.1,
        kind: r.2,
        description: r.3,
        owner: r.4,
        groups: serde_json::from_str(&r.5).unwrap_or_default(),
        client_id: r.6,
        created_at: r.7,
        disabled_at: r.8,
    }
}

impl Store {
    /// Creates a service account with a fresh client id and secret.
    pub async fn create_service_account(
        &self,
        a: NewServiceAccount,
    ) -> Result<CreatedServiceAccount, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let client_id = generate(CLIENT_ID_PREFIX);
        let client_secret = generate(CLIENT_SECRET_PREFIX);
        let now = now_us();
        let groups = serde_json::to_string(&a.groups).unwrap_or_else(|_| "[]".to_owned());
        with_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO service_accounts (id, name, kind, description, owner, groups, client_id, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(&id)
        .bind(&a.name)
        .bind(&a.kind)
        .bind(&a.description)
        .bind(&a.owner)
        .bind(&groups)
        .bind(&client_id)
        .bind(hash(&client_secret))
        .bind(now)
        .execute(p)
        .await
        .map(drop)
        .map_err(|e| StoreError::from_insert(e, &format!("service account {:?}", a.name)))
        })?;
        Ok(CreatedServiceAccount {
            account: ServiceAccount {
                id,
                name: a.name,
                kind: a.kind,
                description: a.description,
                owner: a.owner,
                groups: a.groups,
                client_id,
                created_at: now,
                disabled_at: None,
            },
            client_secret,
        })
    }

    /// Every service account, by name.
    pub async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM service_accounts ORDER BY name"
        );
        let rows: Vec<Row> = with_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// One service account by name.
    pub async fn get_service_account(
        &self,
        name: &str,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM service_accounts WHERE name = $1"
        );
        let row: Option<Row> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(name)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(from_row))
    }

    /// The live account whose client id and secret both match, if any. The
    /// secret is compared by hash in constant time.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            ", secret_hash FROM service_accounts WHERE client_id = $1 AND disabled_at IS NULL"
        );
        type WithHash = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
            String,
        );
        let row: Option<WithHash> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(client_id)
            .fetch_optional(p)
            .await)?;
        let presented = hash(client_secret);
        Ok(row.and_then(|r| {
            hashes_equal(&r.9, &presented)
                .then(|| from_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8)))
        }))
    }

    /// Disables an account and revokes every token it holds, in one
    /// transaction; nodes learn of the revocations with the next snapshot.
    /// Returns whether a live account was disabled.
    pub async fn disable_service_account(&self, name: &str) -> Result<bool, StoreError> {
        let now = now_us();
        let disabled = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let id: Option<(String,)> = sqlx::query_as(
                "UPDATE service_accounts SET disabled_at = $2 WHERE name = $1 AND disabled_at IS NULL RETURNING id",
            )
            .bind(name)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id,)) = &id {
                sqlx::query(
                    "UPDATE issued_tokens SET revoked_at = $2 WHERE account_id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            id.is_some()
        });
        Ok(disabled)
    }
}
