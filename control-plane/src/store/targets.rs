use super::{BUMP_REVISION, Store, StoreError, now_us, with_pool};

/// A system Sluice guards. The password is the gateway's own credential; it
/// is handed only to nodes and never returned by the API.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Stable id.
    pub id: String,
    /// The name clients use (the Postgres `database` parameter).
    pub name: String,
    /// `postgres` (more kinds later).
    pub kind: String,
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Upstream database name.
    pub database: String,
    /// The gateway's upstream user.
    pub username: String,
    /// The gateway's upstream password.
    pub password: String,
    /// `disable`, `prefer`, `require` or `verify-full`.
    pub tls_mode: String,
    /// Creation time, µs since the epoch.
    pub created_at: i64,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What an admin supplies to register a target.
#[derive(Clone)]
pub struct NewTarget {
    /// See [`Target::name`].
    pub name: String,
    /// See [`Target::kind`].
    pub kind: String,
    /// See [`Target::host`].
    pub host: String,
    /// See [`Target::port`].
    pub port: u16,
    /// See [`Target::database`].
    pub database: String,
    /// See [`Target::username`].
    pub username: String,
    /// See [`Target::password`].
    pub password: String,
    /// See [`Target::tls_mode`].
    pub tls_mode: String,
}

type TargetRow = (
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    i64,
);

macro_rules! columns {
    () => {
        "id, name, kind, host, port, database, username, password, tls_mode, created_at"
    };
}

fn from_row(r: TargetRow) -> Target {
    Target {
        id: r.0,
        name: r.1,
        kind: r.2,
        host: r.3,
        port: u16::try_from(r.4).unwrap_or(0),
        database: r.5,
        username: r.6,
        password: r.7,
        tls_mode: r.8,
        created_at: r.9,
    }
}

impl Store {
    /// Registers a target; its name must be new.
    pub async fn create_target(&self, t: NewTarget) -> Result<Target, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_us();
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO targets (id, name, kind, host, port, database, username, password, tls_mode, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            )
            .bind(&id)
            .bind(&t.name)
            .bind(&t.kind)
            .bind(&t.host)
            .bind(i64::from(t.port))
            .bind(&t.database)
            .bind(&t.username)
            .bind(&t.password)
            .bind(&t.tls_mode)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, &format!("target {:?}", t.name)))?;
            sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(Target {
            id,
            name: t.name,
            kind: t.kind,
            host: t.host,
            port: t.port,
            database: t.database,
            username: t.username,
            password: t.password,
            tls_mode: t.tls_mode,
            created_at: now,
        })
    }

    /// Every target, by name.
    pub async fn list_targets(&self) -> Result<Vec<Target>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM targets ORDER BY name");
        let rows: Vec<TargetRow> = with_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// One target by name.
    pub async fn get_target(&self, name: &str) -> Result<Option<Target>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM targets WHERE name = $1");
        let row: Option<TargetRow> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(name)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(from_row))
    }

    /// Removes a target by name; returns whether it existed.
    pub async fn delete_target(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query("DELETE FROM targets WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n > 0
        });
        Ok(deleted)
    }
}
