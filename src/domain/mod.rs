//! The rules of authzd. No tonic and no SQL here: storage is reached through
//! `crate::store` functions, and the transport adapts to and from these types.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod caller;
pub mod decision;
pub mod gate;
pub mod groups;
pub mod input;
pub mod roles;
pub mod scim;
pub mod sso;
pub mod tokens;
pub mod users;

// The model lives below the domain (and below store and cache); its
// modules keep their old paths here.
pub use crate::model::{self as model, Clock, actions, catalog, names, page, secret};

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use migration::MigratorTrait;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::Notify;

use self::api_keys::{ApiKeySettings, LastUsed};
use self::authn::passwords::PasswordHasher;
use self::catalog::Catalog;
use crate::cache::{Cache, CacheSettings, Follower};
use crate::error::Result;
use crate::store;
use crate::store::principals::Queries;

/// Settings the rules depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SQLite file, when that is the database: readiness also requires
    /// that it still exists.
    pub sqlite_path: Option<PathBuf>,
    pub api_keys: ApiKeySettings,
    pub cache: CacheSettings,
    /// Actions one `Authorize` may ask about.
    pub max_authorize_actions: usize,
    /// How long the readiness probe's queries may take.
    pub health_timeout: std::time::Duration,
    /// Password lockout (`None`: off).
    pub lockout: Option<authn::LockoutSettings>,
    /// The per-source limit on failed authentications (`None`: off).
    pub rate_limit: Option<authn::sources::RateLimitSettings>,
    pub tokens: tokens::TokenSettings,
    pub audit: audit::AuditSettings,
    pub sso: sso::SsoSettings,
    pub scim: scim::ScimSettings,
}

struct Inner {
    db: store::Db,
    hasher: PasswordHasher,
    catalog: Catalog,
    clock: Clock,
    settings: Settings,
    purge_wakeup: Notify,
    last_used: LastUsed,
    queries: Queries,
    follower: Arc<Follower>,
    limiter: Option<authn::sources::SourceLimiter>,
    pub(crate) tokens: tokens::Tokens,
    auditor: audit::Auditor,
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
        let cache = Arc::new(Cache::new(settings.cache, clock.clone()));
        let follower = Follower::start(cache, db.clone()).await?;
        let auditor = audit::Auditor::new(settings.audit);
        let settings_limiter = settings.rate_limit.map(authn::sources::SourceLimiter::new);
        let tokens =
            tokens::Tokens::load(settings.tokens.clone(), &db, clock.now().timestamp_millis())
                .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                queries: Queries::new(db.get_database_backend()),
                db: store::Db::new(db),
                hasher,
                catalog,
                clock,
                settings,
                purge_wakeup: Notify::new(),
                last_used: LastUsed::default(),
                follower,
                limiter: settings_limiter,
                tokens,
                auditor,
            }),
        })
    }

    /// The per-source limit on failed authentications, when on.
    pub fn limiter(&self) -> Option<&authn::sources::SourceLimiter> {
        self.inner.limiter.as_ref()
    }

    pub fn auditor(&self) -> &audit::Auditor {
        &self.inner.auditor
    }

    pub fn db(&self) -> &store::Db {
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

    pub fn cache(&self) -> &Cache {
        self.inner.follower.cache()
    }

    /// What follows the change records: run by the server as a task.
    pub fn follower(&self) -> &Arc<Follower> {
        &self.inner.follower
    }

    /// Principal lookups this process has made in the database.
    pub fn lookups(&self) -> u64 {
        self.inner.queries.lookups()
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.inner.queries
    }

    /// A unit of work around one operation on the transaction.
    pub(crate) async fn write_with<T>(
        &self,
        operation: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T>,
    ) -> Result<T> {
        let write = self.write().await?;
        let value = operation(write.db()).await?;
        write.commit().await?;
        Ok(value)
    }

    /// One recorded change: `operation` and its audit record commit
    /// together, or neither does (an error inside rolls both back).
    pub(crate) async fn change<T>(
        &self,
        actor: audit::Actor<'_>,
        change: audit::Change,
        operation: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T>,
    ) -> Result<T> {
        let mut write = self.write().await?;
        let value = operation(write.db()).await?;
        write.record(actor, change);
        write.commit().await?;
        Ok(value)
    }

    /// Opens a unit of work: every write goes through one.
    pub(crate) async fn write(&self) -> Result<Write> {
        let in_flight = self.inner.db.enter();
        Ok(Write {
            txn: self.inner.db.begin().await.map_err(store::classify)?,
            core: self.clone(),
            _in_flight: in_flight,
            records: Vec::new(),
        })
    }

    /// Wakes the background purge of deleting accounts.
    pub(crate) fn wake_purger(&self) {
        self.inner.purge_wakeup.notify_one();
    }

    pub async fn purge_wakeup(&self) {
        self.inner.purge_wakeup.notified().await;
    }

    /// Connections of the pool: (in use, idle), and the operations waiting
    /// for one (those in flight beyond the connections in use; the change
    /// follower and the purge use connections too, so this can only
    /// under-count).
    pub fn pool_usage(&self) -> Option<(u32, u32, u32)> {
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
        let in_use = size - idle;
        let in_flight = u32::try_from(db.in_flight()).unwrap_or(u32::MAX);
        Some((in_use, idle, in_flight.saturating_sub(in_use)))
    }

    /// Ready to serve: the database answers, every migration is applied,
    /// and (for SQLite) the database file is still there.
    pub async fn is_ready(&self) -> bool {
        if let Some(path) = &self.inner.settings.sqlite_path
            && !path.exists()
        {
            return false;
        }
        // A database that accepts connections but does not answer in time
        // (a stuck table, an overloaded server) is not ready either.
        let probe = async {
            self.inner.db.ping().await.is_ok()
                && matches!(
                    migration::Migrator::get_pending_migrations_read_only(&self.inner.db).await,
                    Ok(pending) if pending.is_empty()
                )
        };
        tokio::time::timeout(self.inner.settings.health_timeout, probe)
            .await
            .unwrap_or(false)
    }
}

/// One unit of work: the writes of one operation in one transaction. The
/// triggers add the change records to it; on commit this replica follows
/// them at once, so its very next check sees the change. Dropping it
/// without committing rolls everything back.
pub(crate) struct Write {
    txn: DatabaseTransaction,
    core: Core,
    _in_flight: store::InFlight,
    /// Audit records, appended to the chain just before the commit.
    records: Vec<audit::Record>,
}

impl Write {
    pub fn db(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Records a change in the audit trail, in this transaction: committed
    /// with the change or not at all.
    pub fn record(&mut self, actor: audit::Actor<'_>, change: audit::Change) {
        let at_ms = self.core.now().timestamp_millis();
        self.records.push(change.into_record(at_ms, actor));
    }

    pub(crate) fn push(&mut self, record: audit::Record) {
        self.records.push(record);
    }

    pub async fn commit(self) -> Result<()> {
        let stored = store::audit::append(&self.txn, &self.records).await?;
        self.txn.commit().await.map_err(store::classify)?;
        audit::emit_all(&stored);
        if let Err(err) = self.core.follower().catch_up().await {
            // The change is committed but not yet applied here: forget
            // everything rather than answer from before it.
            tracing::warn!(error = %err, "cannot follow a change just made: clearing the cache");
            self.core.cache().clear();
        }
        Ok(())
    }
}
