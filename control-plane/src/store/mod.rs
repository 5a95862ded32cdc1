//! The control plane's state, in Postgres (production) or SQLite (`sluice
//! dev`). Both backends run the same SQL: ids are text, times are integer
//! microseconds, and placeholders are `$n`, which SQLite accepts too. A
//! conformance suite (`tests/store_conformance.rs`) runs against both.

mod api_keys;
mod approvals;
mod audit;
mod events;
mod grants;
mod join_tokens;
mod nodes;
mod policies;
mod secret;
mod service_accounts;
mod sessions;
mod targets;
mod tokens;

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use api_keys::{API_KEY_PREFIX, ApiKey, CreatedApiKey};
pub use approvals::{Approval, ApprovalEntry, NewApproval, Transition};
pub use audit::EventRecord;
pub use events::{EventKind, HttpExchange, ResultSample, StoredEvent};
pub use grants::{Grant, GrantEntry, GrantFilter, GrantTransition, NewGrant};
pub use join_tokens::{JoinToken, NewJoinToken};
pub use nodes::Node;
pub use policies::{PolicyVersion, PutMode, StoredPolicy};
pub use service_accounts::{
    CLIENT_ID_PREFIX, CLIENT_SECRET_PREFIX, CreatedServiceAccount, NewServiceAccount,
    ServiceAccount,
};
pub use sessions::{SessionFilter, SessionRow};
pub use targets::{HttpSettings, NewTarget, Target, TargetLogin};
pub use tokens::IssuedTokenRecord;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique name is already taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The store URL names no supported backend.
    #[error("unsupported store URL (expected postgres://... or sqlite://...)")]
    UnsupportedUrl,
    /// A pagination cursor could not be decoded.
    #[error("invalid cursor")]
    Cursor,
}

impl StoreError {
    fn from_insert(e: sqlx::Error, what: &str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict(what.to_owned())
            }
            _ => Self::Database(e),
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to whichever backend the store uses. The
/// body is written once and type-checked against each backend.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            crate::store::Pool::Postgres($pool) => $body,
            crate::store::Pool::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Opens a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`): a deferred transaction that reads first and
/// writes later fails at once with "database is locked" when another
/// connection wrote in between, whereas waiting for the lock up front
/// honours the busy timeout.
pub(crate) trait BeginWrite {
    /// The database.
    type Db: sqlx::Database;

    /// A transaction holding (or, on Postgres, free to take) write locks.
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;

    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send {
        self.begin()
    }
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;

    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

/// A handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

/// A page of results and the cursor for the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite://PATH`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            Self {
                pool: Pool::Postgres(pool),
            }
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Self::open_sqlite(Path::new(path)).await?
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(p) => sqlx::migrate!("../migrations/postgres").run(p).await?,
            Pool::Sqlite(p) => sqlx::migrate!("../migrations/sqlite").run(p).await?,
        }
        Ok(())
    }

    /// Which backend this is, for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |p| sqlx::query("SELECT 1").execute(p).await.map(drop))?;
        Ok(())
    }

    /// The configuration revision: it grows on every change nodes must see.
    pub async fn revision(&self) -> Result<u64, StoreError> {
        let (rev,): (i64,) = with_pool!(self, |p| sqlx::query_as(
            "SELECT revision FROM config_revision WHERE id = 1"
        )
        .fetch_one(p)
        .await)?;
        Ok(u64::try_from(rev).unwrap_or(0))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await);
    }
}

/// Microseconds since the epoch.
pub(crate) fn now_us() -> i64 {
    sluice_common::unix_us()
}

/// SQL that bumps the configuration revision; run in the same transaction as
/// the change it announces.
pub(crate) const BUMP_REVISION: &str =
    "UPDATE config_revision SET revision = revision + 1 WHERE id = 1";

/// Encodes a (time, id) position as an opaque cursor.
pub(crate) fn encode_cursor(at: i64, id: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

/// Decodes a cursor made by [`encode_cursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::Cursor)?;
    let text = String::from_utf8(raw).map_err(|_| StoreError::Cursor)?;
    let (at, id) = text.split_once(':').ok_or(StoreError::Cursor)?;
    Ok((at.parse().map_err(|_| StoreError::Cursor)?, id.to_owned()))
}
