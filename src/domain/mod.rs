//! The rules of authzd. No tonic and no SQL here: storage is reached through
//! `crate::store` functions, and the transport adapts to and from these types.

pub mod accounts;
pub mod actions;
pub mod api_keys;
pub mod auth;
pub mod bootstrap;
pub mod catalog;
pub mod credentials;
pub mod decision;
pub mod groups;
pub mod key_format;
pub mod model;
pub mod names;
pub mod page;
pub mod passwords;
pub mod roles;
pub mod secret;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use migration::MigratorTrait;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::Notify;

use self::api_keys::{ApiKeySettings, LastUsed};
use self::catalog::Catalog;
use self::passwords::PasswordHasher;
use crate::error::Result;
use crate::store;

/// The only reader of the system time. Tests move it forward instead of
/// sleeping.
#[derive(Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Microsecond precision: what every database stores, so a value
    /// returned at creation equals the one read back later.
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed));
        now.duration_trunc(TimeDelta::microseconds(1))
            .unwrap_or(now)
    }

    pub fn advance(&self, by: TimeDelta) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }
}

/// Settings the rules depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SQLite file, when that is the database: readiness also requires
    /// that it still exists.
    pub sqlite_path: Option<PathBuf>,
    pub api_keys: ApiKeySettings,
}

struct Inner {
    db: DatabaseConnection,
    hasher: PasswordHasher,
    catalog: Catalog,
    clock: Clock,
    settings: Settings,
    purge_wakeup: Notify,
    last_used: LastUsed,
}

/// Shared state of the domain: cheap to clone, one per process.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

impl Core {
    /// Loads the catalog; migrations must have run.
    pub async fn new(
        db: DatabaseConnection,
        hasher: PasswordHasher,
        clock: Clock,
        settings: Settings,
    ) -> Result<Self> {
        let catalog = store::roles::load_catalog(&db).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                hasher,
                catalog,
                clock,
                settings,
                purge_wakeup: Notify::new(),
                last_used: LastUsed::default(),
            }),
        })
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn last_used(&self) -> &api_keys::LastUsed {
        &self.inner.last_used
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.inner.hasher
    }

    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction> {
        self.inner.db.begin().await.map_err(store::classify)
    }

    /// Wakes the background purge of deleting accounts.
    pub(crate) fn wake_purger(&self) {
        self.inner.purge_wakeup.notify_one();
    }

    pub async fn purge_wakeup(&self) {
        self.inner.purge_wakeup.notified().await;
    }

    /// Connections of the pool: (in use, idle).
    pub fn pool_usage(&self) -> Option<(u32, u32)> {
        let db = &self.inner.db;
        // Each accessor matches the backend checked just before it.
        let (size, idle) = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            sea_orm::DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => return None,
        };
        // sqlx's idle count can briefly read past the pool size (a racy
        // counter); never report more idle connections than exist.
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        Some((size - idle, idle))
    }

    /// Ready to serve: the database answers, every migration is applied,
    /// and (for SQLite) the database file is still there.
    pub async fn is_ready(&self) -> bool {
        if let Some(path) = &self.inner.settings.sqlite_path
            && !path.exists()
        {
            return false;
        }
        if self.inner.db.ping().await.is_err() {
            return false;
        }
        matches!(
            migration::Migrator::get_pending_migrations_read_only(&self.inner.db).await,
            Ok(pending) if pending.is_empty()
        )
    }
}

pub(crate) async fn commit(txn: DatabaseTransaction) -> Result<()> {
    txn.commit().await.map_err(store::classify)
}
