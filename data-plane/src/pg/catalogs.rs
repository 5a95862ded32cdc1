//! The node's catalog cache: per target, what masking needs of its schema
//! (views over masked tables, column identities). Read when a session on a
//! target with masked tables starts and none is held, again in the
//! background when it is older than its time to live or a statement through
//! the gateway changed the schema, and never used once far older than that
//! (statements are then denied until it is read again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_policy::mask::Catalog;
use sluice_proto::v1;

use crate::pg::upstream::catalog::{self, CatalogLoadError};
use crate::pg::upstream::connect::UpstreamLimits;

/// Masked tables, as `(schema, table)`: what a catalog is read for.
pub type Tables = Arc<[(String, String)]>;

/// How many times its time to live a catalog may be used while it cannot
/// be read again.
const MAX_AGE_TTLS: u32 = 10;

/// Why a session cannot decide with the target's catalog. Shown to clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CatalogUnavailable {
    /// None has been read for the tables the policies mask now.
    #[error(
        "the target's catalog has not been read for the tables the policies now mask; statements are denied until it is (try again shortly)"
    )]
    Missing,
    /// The last one read is too old and could not be read again.
    #[error(
        "the target's catalog was last read {0} s ago and could not be read again; statements are denied until it is"
    )]
    TooOld(u64),
}

struct Entry {
    catalog: Arc<Catalog>,
    tables: Tables,
    loaded: Instant,
    /// The login it was read with, to read it again.
    login: Arc<v1::Target>,
    /// When a statement may have changed the schema, if since this read began.
    due: Option<Instant>,
    refreshing: bool,
}

/// Catalogs of every target this node serves.
pub struct Catalogs {
    limits: UpstreamLimits,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Catalogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogs").field("ttl", &self.ttl).finish()
    }
}

impl Catalogs {
    /// A cache whose catalogs are read again after `ttl`.
    pub fn new(limits: UpstreamLimits, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            limits,
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// Makes sure a catalog of `target` for the masked `tables` is held
    /// before a session starts, reading it with `login` when it is not.
    pub async fn prepare(
        self: &Arc<Self>,
        target: &str,
        tables: Vec<(String, String)>,
        login: &v1::Target,
    ) -> Result<(), CatalogLoadError> {
        if tables.is_empty() {
            return Ok(());
        }
        let fresh = self.with_entry(target, |e| {
            *e.tables == *tables && e.due.is_none() && e.loaded.elapsed() < self.ttl
        });
        if fresh == Some(true) {
            return Ok(());
        }
        let usable =
            |e: &mut Entry| *e.tables == *tables && e.loaded.elapsed() < self.ttl * MAX_AGE_TTLS;
        match self
            .read(target, tables.clone().into(), Arc::new(login.clone()))
            .await
        {
            // The catalog held is still within the age statements accept.
            Err(e) if self.with_entry(target, usable) == Some(true) => {
                tracing::warn!(target = %target, error = %e, "cannot read the target's catalog again; using the one held");
                Ok(())
            }
            other => other,
        }
    }

    /// The catalog to decide with, for the masked `tables` (none when
    /// nothing is masked). Starts a background read when one is due.
    pub fn current(
        self: &Arc<Self>,
        target: &str,
        tables: &[(String, String)],
    ) -> Result<Option<Arc<Catalog>>, CatalogUnavailable> {
        if tables.is_empty() {
            return Ok(None);
        }
        let mut refresh = None;
        let answer = {
            let Ok(mut entries) = self.entries.lock() else {
                return Err(CatalogUnavailable::Missing);
            };
            let Some(e) = entries.get_mut(target) else {
                return Err(CatalogUnavailable::Missing);
            };
            let age = e.loaded.elapsed();
            let same = *e.tables == *tables;
            if (!same || e.due.is_some() || age >= self.ttl) && !e.refreshing {
                e.refreshing = true;
                let want: Tables = if same {
                    e.tables.clone()
                } else {
                    tables.into()
                };
                refresh = Some((want, e.login.clone()));
            }
            if !same {
                Err(CatalogUnavailable::Missing)
            } else if age >= self.ttl * MAX_AGE_TTLS {
                Err(CatalogUnavailable::TooOld(age.as_secs()))
            } else {
                Ok(Some(e.catalog.clone()))
            }
        };
        if let Some((tables, login)) = refresh {
            self.spawn_read(target, tables, login);
        }
        answer
    }

    /// A statement through the gateway may have changed the target's schema:
    /// read its catalog again.
    pub fn invalidate(self: &Arc<Self>, target: &str) {
        let refresh = {
            let Ok(mut entries) = self.entries.lock() else {
                return;
            };
            let Some(e) = entries.get_mut(target) else {
                return;
            };
            e.due = Some(Instant::now());
            if e.refreshing {
                None
            } else {
                e.refreshing = true;
                Some((e.tables.clone(), e.login.clone()))
            }
        };
        if let Some((tables, login)) = refresh {
            self.spawn_read(target, tables, login);
        }
    }

    fn spawn_read(self: &Arc<Self>, target: &str, tables: Tables, login: Arc<v1::Target>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        let target = target.to_owned();
        rt.spawn(async move {
            if let Err(e) = this.read(&target, tables, login).await {
                tracing::warn!(target = %target, error = %e, "cannot read the target's catalog");
                this.with_entry(&target, |e| e.refreshing = false);
            }
        });
    }

    async fn read(
        &self,
        target: &str,
        tables: Tables,
        login: Arc<v1::Target>,
    ) -> Result<(), CatalogLoadError> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        let catalog = catalog::load(&login, &tables, self.limits, generation).await?;
        tracing::debug!(
            target = %target,
            views = catalog.views(),
            ms = started.elapsed().as_millis() as u64,
            "read the target's catalog"
        );
        if let Ok(mut entries) = self.entries.lock() {
            // A change made while this read ran may be missing from it.
            let due = entries
                .get(target)
                .and_then(|e| e.due)
                .filter(|d| *d >= started);
            entries.insert(
                target.to_owned(),
                Entry {
                    catalog: Arc::new(catalog),
                    tables,
                    loaded: started,
                    login,
                    due,
                    refreshing: false,
                },
            );
        }
        Ok(())
    }

    fn with_entry<T>(&self, target: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        self.entries.lock().ok()?.get_mut(target).map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A login for a port nothing listens on: every read fails.
    fn unreachable() -> v1::Target {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        v1::Target {
            host: "127.0.0.1".into(),
            port: u32::from(port),
            tls_mode: "disable".into(),
            ..Default::default()
        }
    }

    fn catalogs() -> Arc<Catalogs> {
        let limits = UpstreamLimits {
            connect_timeout: Duration::from_secs(2),
            max_message: 1 << 20,
            stall: Duration::from_secs(2),
        };
        Catalogs::new(limits, Duration::from_secs(10))
    }

    fn hold(c: &Catalogs, tables: &Tables, loaded: Instant) {
        c.entries.lock().unwrap().insert(
            "t".into(),
            Entry {
                catalog: Arc::new(Catalog::default()),
                tables: tables.clone(),
                loaded,
                login: Arc::new(unreachable()),
                due: Some(Instant::now()),
                refreshing: false,
            },
        );
    }

    /// Whether a session on `tables` may start when the catalog cannot be
    /// read.
    async fn prepares(c: &Arc<Catalogs>, tables: &Tables) -> bool {
        c.prepare("t", tables.to_vec(), &unreachable())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_failed_read_falls_back_only_to_a_catalog_young_enough() {
        let tables: Tables = Arc::from([("public".to_owned(), "customers".to_owned())]);
        let c = catalogs();
        // Nothing held: the session cannot start.
        assert!(!prepares(&c, &tables).await);
        assert!(matches!(
            c.current("t", &tables),
            Err(CatalogUnavailable::Missing)
        ));
        // One held, due again but within ten times its time to live: used.
        hold(&c, &tables, Instant::now());
        assert!(prepares(&c, &tables).await);
        assert!(c.current("t", &tables).unwrap().is_some());
        // Too old: refused, and statements are denied.
        let Some(old) = Instant::now().checked_sub(Duration::from_secs(101)) else {
            return;
        };
        hold(&c, &tables, old);
        assert!(!prepares(&c, &tables).await);
        assert!(matches!(
            c.current("t", &tables),
            Err(CatalogUnavailable::TooOld(_))
        ));
        // Other tables than those held: missing until read.
        let other: Tables = Arc::from([("public".to_owned(), "orders".to_owned())]);
        hold(&c, &tables, Instant::now());
        assert!(matches!(
            c.current("t", &other),
            Err(CatalogUnavailable::Missing)
        ));
        // Nothing masked: no catalog needed.
        assert!(c.current("t", &[]).unwrap().is_none());
    }
}
