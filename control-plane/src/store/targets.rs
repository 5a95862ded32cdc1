use super::{BUMP_REVISION, BeginWrite as _, Store, StoreError, now_us, with_pool};

/// A system Sluice guards. Its credentials are held only in stored form
/// (sealed, or a node-local reference; see [`crate::secrets`]) and never
/// returned by the API.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Stable id.
    pub id: String,
    /// The name clients use (the Postgres `database` parameter).
    pub name: String,
    /// `postgres` or `http`.
    pub kind: String,
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Upstream database name.
    pub database: String,
    /// The gateway's upstream user when no login matches.
    pub username: String,
    /// That user's credential, in stored form.
    pub secret: String,
    /// `disable`, `prefer`, `require` or `verify-full`.
    pub tls_mode: String,
    /// Other upstream roles for identity groups, first match wins.
    pub logins: Vec<TargetLogin>,
    /// Kind `http`: the upstream settings (empty for Postgres targets).
    pub http: HttpSettings,
    /// Creation time, µs since the epoch.
    pub created_at: i64,
}

/// What only an HTTP target has. The credential itself stays in
/// [`Target::secret`], in the same custody as a Postgres password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// The base URL requests are forwarded under.
    pub base_url: String,
    /// How the credential is sent: `bearer`, `basic`, `header:NAME` or
    /// `query:NAME`.
    pub auth: String,
    /// Extra CA certificates (PEM) trusted for the upstream.
    pub ca_pem: String,
}

/// An upstream role used for the identities of one group.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetLogin {
    /// The identity group.
    pub group: String,
    /// The upstream user.
    pub username: String,
    /// Its credential, in stored form.
    pub secret: String,
}

impl std::fmt::Debug for TargetLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetLogin")
            .field("group", &self.group)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
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
            .field("logins", &self.logins)
            .finish_non_exhaustive()
    }
}

/// A target to store, its credentials already in stored form.
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
    /// See [`Target::secret`].
    pub secret: String,
    /// See [`Target::tls_mode`].
    pub tls_mode: String,
    /// See [`Target::logins`].
    pub logins: Vec<TargetLogin>,
    /// See [`Target::http`].
    pub http: HttpSettings,
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
    String,
    String,
    String,
);

macro_rules! columns {
    () => {
        "id, name, kind, host, port, database, username, secret, tls_mode, created_at, base_url, http_auth, ca_pem"
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
        secret: r.7,
        tls_mode: r.8,
        logins: Vec::new(),
        created_at: r.9,
        http: HttpSettings {
            base_url: r.10,
            auth: r.11,
            ca_pem: r.12,
        },
    }
}

impl Store {
    /// Registers a target; its name must be new.
    pub async fn create_target(&self, t: NewTarget) -> Result<Target, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_us();
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "INSERT INTO targets (id, name, kind, host, port, database, username, secret, tls_mode, created_at, updated_at, base_url, http_auth, ca_pem) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13)",
            )
            .bind(&id)
            .bind(&t.name)
            .bind(&t.kind)
            .bind(&t.host)
            .bind(i64::from(t.port))
            .bind(&t.database)
            .bind(&t.username)
            .bind(&t.secret)
            .bind(&t.tls_mode)
            .bind(now)
            .bind(&t.http.base_url)
            .bind(&t.http.auth)
            .bind(&t.http.ca_pem)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, &format!("target {:?}", t.name)))?;
            for (position, login) in (0i64..).zip(&t.logins) {
                sqlx::query(
                    "INSERT INTO target_logins (target_id, position, group_name, username, secret) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id)
                .bind(position)
                .bind(&login.group)
                .bind(&login.username)
                .bind(&login.secret)
                .execute(&mut *tx)
                .await?;
            }
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
            secret: t.secret,
            tls_mode: t.tls_mode,
            logins: t.logins,
            http: t.http,
            created_at: now,
        })
    }

    /// Every target, by name, with its logins.
    pub async fn list_targets(&self) -> Result<Vec<Target>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM targets ORDER BY name");
        let rows: Vec<TargetRow> = with_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        let mut targets: Vec<Target> = rows.into_iter().map(from_row).collect();
        let logins: Vec<(String, String, String, String)> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT target_id, group_name, username, secret FROM target_logins ORDER BY target_id, position"
        )
        .fetch_all(p)
        .await
        })?;
        for (target_id, group, username, secret) in logins {
            if let Some(t) = targets.iter_mut().find(|t| t.id == target_id) {
                t.logins.push(TargetLogin {
                    group,
                    username,
                    secret,
                });
            }
        }
        Ok(targets)
    }

    /// One target by name, with its logins.
    pub async fn get_target(&self, name: &str) -> Result<Option<Target>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM targets WHERE name = $1");
        let row: Option<TargetRow> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(name)
            .fetch_optional(p)
            .await)?;
        let Some(mut target) = row.map(from_row) else {
            return Ok(None);
        };
        let logins: Vec<(String, String, String)> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT group_name, username, secret FROM target_logins WHERE target_id = $1 ORDER BY position"
        )
        .bind(&target.id)
        .fetch_all(p)
        .await
        })?;
        target.logins = logins
            .into_iter()
            .map(|(group, username, secret)| TargetLogin {
                group,
                username,
                secret,
            })
            .collect();
        Ok(Some(target))
    }

    /// Replaces every stored credential for which `f` returns a new stored
    /// form, in one transaction: all re-sealed, or none. Returns how many
    /// changed. `f` gets the target name and the stored form.
    pub async fn rewrite_secrets<F, E>(&self, f: F) -> Result<Result<usize, E>, StoreError>
    where
        F: Fn(&str, &str) -> Result<Option<String>, E>,
    {
        let changed = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let targets: Vec<(String, String, String)> =
                sqlx::query_as("SELECT id, name, secret FROM targets")
                    .fetch_all(&mut *tx)
                    .await?;
            let logins: Vec<(String, i64, String, String)> = sqlx::query_as(
                "SELECT l.target_id, l.position, t.name, l.secret FROM target_logins l JOIN targets t ON t.id = l.target_id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut n = 0;
            for (id, name, secret) in &targets {
                match f(name, secret) {
                    Ok(Some(new)) => {
                        sqlx::query("UPDATE targets SET secret = $2 WHERE id = $1")
                            .bind(id)
                            .bind(new)
                            .execute(&mut *tx)
                            .await?;
                        n += 1;
                    }
                    Ok(None) => {}
                    Err(e) => return Ok(Err(e)),
                }
            }
            for (id, position, name, secret) in &logins {
                match f(name, secret) {
                    Ok(Some(new)) => {
                        sqlx::query(
                            "UPDATE target_logins SET secret = $3 WHERE target_id = $1 AND position = $2",
                        )
                        .bind(id)
                        .bind(position)
                        .bind(new)
                        .execute(&mut *tx)
                        .await?;
                        n += 1;
                    }
                    Ok(None) => {}
                    Err(e) => return Ok(Err(e)),
                }
            }
            tx.commit().await?;
            n
        });
        Ok(Ok(changed))
    }

    /// Removes a target by name; returns whether it existed.
    pub async fn delete_target(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "DELETE FROM target_logins WHERE target_id IN (SELECT id FROM targets WHERE name = $1)",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
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
