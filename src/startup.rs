//! Start-up: opening and migrating the database, and assembling the domain.

use migration::MigratorTrait;

use crate::config::Config;
use crate::domain::authn::passwords::PasswordHasher;
use crate::domain::bootstrap::Bootstrap;
use crate::domain::{Clock, Core, Settings};
use crate::error::{Error, Result};
use crate::store;

/// Any constant: the Postgres advisory lock all replicas migrate under.
const MIGRATION_LOCK: i64 = 0x0061_7574_687a_6400;

/// Applies pending migrations, once, however many replicas start together:
/// on Postgres they queue on an advisory lock held by the migrating
/// transaction (Postgres DDL is transactional), and the later ones find
/// nothing pending.
async fn migrate_locked(db: &sea_orm::DatabaseConnection) -> Result<()> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return migration::Migrator::up(db, None)
            .await
            .map_err(store::classify);
    }
    let txn = db.begin().await.map_err(store::classify)?;
    // Another replica may hold the lock for as long as its migration takes.
    store::without_statement_timeout(&txn).await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .map_err(store::classify)?;
    migration::Migrator::up(&txn, None)
        .await
        .map_err(store::classify)?;
    txn.commit().await.map_err(store::classify)
}

/// Applies pending migrations.
pub async fn migrate(config: &Config) -> Result<()> {
    let db = store::connect(config.database.url.expose(), config.pool_settings()).await?;
    migrate_locked(&db).await?;
    db.close().await.map_err(store::classify)?;
    Ok(())
}

/// Connects, migrates, loads the catalog and bootstraps the admin account.
pub async fn prepare(config: &Config, clock: Clock) -> Result<(Core, Bootstrap)> {
    let db = store::connect(config.database.url.expose(), config.pool_settings()).await?;
    migrate_locked(&db).await?;
    // Computing the dummy hash is argon2 work: keep it off the async workers.
    let concurrency = config.hash_concurrency();
    let (queue_limit, per_source) = (
        config.server.hash_queue_limit,
        config.server.hash_queue_per_source,
    );
    let hasher = tokio::task::spawn_blocking(move || {
        PasswordHasher::new(concurrency, queue_limit, per_source)
    })
    .await
    .map_err(|e| Error::internal(format!("hasher start-up: {e}")))??;
    let settings = Settings {
        sqlite_path: config.sqlite_path(),
        api_keys: config.api_key_settings(),
        cache: config.cache_settings(),
        max_authorize_actions: config.server.max_authorize_actions,
        health_timeout: std::time::Duration::from_millis(config.database.health_timeout_ms),
        lockout: config.lockout_settings(),
        rate_limit: config.rate_limit_settings(),
        tokens: config.token_settings(),
        audit: config.audit_settings(),
        sso: config.sso_settings(),
        scim: crate::domain::scim::ScimSettings {
            max_page_size: config.scim.max_page_size as usize,
            max_filter_chars: config.scim.max_filter_chars as usize,
        },
    };
    if config.user_authentication.log_saml_assertions {
        tracing::warn!(
            "user_authentication.log_saml_assertions is on: every verified SAML assertion's \
             NameID and attributes are logged at debug level"
        );
    }
    let core = Core::new(db, hasher, clock, settings).await?;
    let file = config.admin_password_file();
    let bootstrap = core
        .bootstrap(config.admin.password.as_ref(), |password| {
            write_secret_file(&file, password.expose()).map_err(|e| {
                Error::internal(format!(
                    "cannot write the generated admin password to {}: {e} \
                     (set admin.password_file, or admin.password)",
                    file.display()
                ))
            })
        })
        .await?;
    Ok((core, bootstrap))
}

/// Writes a secret to a new file only its owner can read. An old file is
/// removed first, so the mode is ours and no symlink is followed.
fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
