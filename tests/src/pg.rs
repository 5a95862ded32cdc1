//! A private database per test on the real Postgres server.

use std::sync::atomic::{AtomicBool, Ordering};

/// The admin connection URL of the test server: `SLUICE_TEST_PG`, or the
/// local server with trust authentication.
pub fn admin_url() -> String {
    std::env::var("SLUICE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test and dropped when the value is.
#[derive(Debug)]
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// Connection URL as the server's admin user.
    pub url: String,
    keep: AtomicBool,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create() -> anyhow::Result<Self> {
        let name = format!("sluice_t_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let base = admin_url();
        let url = match base.rsplit_once('/') {
            Some((prefix, _)) => format!("{prefix}/{name}"),
            None => anyhow::bail!("SLUICE_TEST_PG must end with /DATABASE"),
        };
        Ok(Self {
            name,
            url,
            keep: AtomicBool::new(false),
        })
    }

    /// Creates a database and runs `sql` in it (for example a seed file).
    pub async fn with_sql(sql: &str) -> anyhow::Result<Self> {
        let db = Self::create().await?;
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(sql).await?;
        Ok(db)
    }

    /// Keeps the database after the test, for inspection.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            return;
        }
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a thread of its own works in both.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
