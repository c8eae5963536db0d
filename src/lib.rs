//! authzd: accounts, users, roles and credential checks over gRPC.
//!
//! `prepare` opens and migrates the database and bootstraps it; `serve`
//! runs the gRPC server on a bound listener until a shutdown future
//! completes. Tests assemble the server in-process with these two.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use migration::MigratorTrait;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::domain::bootstrap::Bootstrap;
use crate::domain::passwords::PasswordHasher;
use crate::domain::{Clock, Core, Settings};
use crate::error::{Error, Result};

/// Generated wire types and the descriptor set for reflection.
pub mod pb {
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    tonic::include_proto!("authz.v1");

    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("authz_descriptor");
}

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
    let db = store::connect(config.database_url.expose(), config.db_max_connections).await?;
    migrate_locked(&db).await?;
    db.close().await.map_err(store::classify)?;
    Ok(())
}

/// Connects, migrates, loads the catalog and bootstraps the admin account.
pub async fn prepare(config: &Config, clock: Clock) -> Result<(Core, Bootstrap)> {
    let db = store::connect(config.database_url.expose(), config.db_max_connections).await?;
    migrate_locked(&db).await?;
    // Computing the dummy hash is argon2 work: keep it off the async workers.
    let concurrency = config.hash_concurrency;
    let hasher = tokio::task::spawn_blocking(move || PasswordHasher::new(concurrency))
        .await
        .map_err(|e| Error::internal(format!("hasher start-up: {e}")))??;
    let settings = Settings {
        sqlite_path: config.sqlite_path(),
        api_keys: config.api_key_settings(),
    };
    let core = Core::new(db, hasher, clock, settings).await?;
    let bootstrap = core.bootstrap(config.admin_password.as_ref()).await?;
    Ok((core, bootstrap))
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in grpc::SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// Follows the database: SERVING while it answers and is migrated.
async fn watch_health(
    core: Core,
    reporter: HealthReporter,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut serving = None;
    loop {
        let ready = core.is_ready().await;
        metrics::gauge!("authzd_health_serving").set(if ready { 1.0 } else { 0.0 });
        if let Some((in_use, idle)) = core.pool_usage() {
            metrics::gauge!("authzd_db_pool_connections", "state" => "in_use")
                .set(f64::from(in_use));
            metrics::gauge!("authzd_db_pool_connections", "state" => "idle").set(f64::from(idle));
        }
        if serving != Some(ready) {
            if ready {
                tracing::info!("database ready: SERVING");
            } else {
                tracing::warn!("database not ready: NOT_SERVING");
            }
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            // A shutdown may have begun while we checked: it has the last word.
            if stop.is_cancelled() {
                return;
            }
            set_health(&reporter, status).await;
            serving = Some(ready);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

fn log_background_error(task: &'static str, err: Error) {
    match err {
        Error::Unavailable => tracing::warn!(task, "postponed: database unavailable"),
        other => tracing::error!(task, error = %other, "background task failed"),
    }
}

/// Purges deleting accounts, and deleted users' API keys past their
/// retention, on a timer and whenever a deletion starts.
async fn run_purger(core: Core, interval: Duration, stop: CancellationToken) {
    loop {
        if let Err(err) = core.purge_deleting_accounts().await {
            log_background_error("account purge", err);
        }
        if let Err(err) = core.purge_deleted_users_keys().await {
            log_background_error("API key purge", err);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = core.purge_wakeup() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Writes API keys' last use every `interval`, and once more at the end.
async fn run_last_used_flusher(core: Core, interval: Duration, stop: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(interval) => false,
        };
        if let Err(err) = core.flush_last_used().await {
            log_background_error("API key last-use flush", err);
        }
        if stopping {
            return;
        }
    }
}

/// Loads and checks the TLS material, so a bad certificate or key is a
/// configuration error before anything binds.
pub fn check_tls(files: &config::TlsFiles) -> std::result::Result<(), config::ConfigError> {
    let tls = tls_config(files).map_err(|e| config::ConfigError(format!("tls: {e:?}")))?;
    tonic::transport::Server::builder()
        .tls_config(tls)
        .map(|_| ())
        .map_err(|e| {
            config::ConfigError(format!(
                "tls_cert_file/tls_key_file/tls_client_ca_file: not usable PEM: {e}"
            ))
        })
}

/// Reads the PEM files of the TLS settings.
fn tls_config(files: &config::TlsFiles) -> Result<tonic::transport::ServerTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::internal(format!("reading {}: {e}", path.display())))
    };
    let identity = tonic::transport::Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// Serves gRPC on `listener` until `shutdown` completes; then health goes
/// NOT_SERVING, new connections are refused, in-flight RPCs get up to the
/// grace period to finish, and background tasks stop.
pub async fn serve(
    listener: TcpListener,
    core: Core,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::internal(format!("reflection: {e}")))?;

    let stop_tasks = CancellationToken::new();
    let health_task = tokio::spawn(watch_health(
        core.clone(),
        reporter.clone(),
        config.health_check_interval,
        stop_tasks.clone(),
    ));
    let purge_task = config.background_purge.then(|| {
        tokio::spawn(run_purger(
            core.clone(),
            config.purge_interval,
            stop_tasks.clone(),
        ))
    });

    // Stops only after the drain, so the last requests' uses are written.
    let stop_flush = CancellationToken::new();
    let flush_task = tokio::spawn(run_last_used_flusher(
        core.clone(),
        config.api_key_last_used_flush,
        stop_flush.clone(),
    ));

    let caller_keys = grpc::caller::CallerKeys::new(config.caller_keys.iter().map(|k| k.expose()));
    let routes = grpc::routes(&core, caller_keys)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    // Probes that cannot speak TLS (the kubelet's gRPC probes) get health
    // alone, in plaintext, on a port of its own. It outlives the drain so
    // they see NOT_SERVING.
    let stop_health = CancellationToken::new();
    let health_only = match config.health_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| Error::internal(format!("cannot listen for health on {addr}: {e}")))?;
            if let Ok(local) = listener.local_addr() {
                tracing::info!(address = %local, "health listening");
            }
            let service = tonic_health::pb::health_server::HealthServer::new(
                tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
            );
            let stop = stop_health.clone();
            Some(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                        stop.cancelled().await
                    }),
            ))
        }
        None => None,
    };

    let draining = CancellationToken::new();
    let on_signal = {
        let draining = draining.clone();
        let stop_tasks = stop_tasks.clone();
        let reporter = reporter.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: NOT_SERVING, draining in-flight requests");
            stop_tasks.cancel();
            set_health(&reporter, ServingStatus::NotServing).await;
            metrics::gauge!("authzd_health_serving").set(0.0);
            draining.cancel();
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls_config(tls)?)
            .map_err(|e| Error::internal(format!("TLS configuration: {e}")))?;
    } else if !config.listen.ip().is_loopback() {
        tracing::warn!(
            "serving plaintext gRPC on a non-loopback address; configure TLS unless a mesh terminates it"
        );
    }
    let server = builder
        .layer(telemetry::RpcLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), on_signal);
    let grace = config.shutdown_grace;
    let outcome = tokio::select! {
        result = server => result.map_err(|e| Error::internal(format!("transport: {e}"))),
        _ = async { draining.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "grace period over; exiting with requests in flight");
            Ok(())
        }
    };
    stop_tasks.cancel();
    stop_flush.cancel();
    stop_health.cancel();
    if let Some(mut health_only) = health_only {
        // A Watch stream left open there must not hold the exit.
        if tokio::time::timeout(Duration::from_secs(1), &mut health_only)
            .await
            .is_err()
        {
            health_only.abort();
        }
    }
    let _ = health_task.await;
    let _ = flush_task.await;
    if let Some(purge_task) = purge_task {
        let _ = purge_task.await;
    }
    outcome
}
