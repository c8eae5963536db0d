//! Background work beside the server: health that follows the database,
//! the purge, and the API-key last-use flush.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::domain::Core;
use crate::error::Error;
use crate::grpc;

/// The health service and the names it answers for: "", every authzd
/// service, and Envoy's Authorization when it is served (an Envoy cluster
/// health check names the service it calls).
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    ext_authz: bool,
}

impl Health {
    pub fn new(reporter: HealthReporter, ext_authz: bool) -> Self {
        Self {
            reporter,
            ext_authz,
        }
    }

    pub fn reporter(&self) -> &HealthReporter {
        &self.reporter
    }

    pub async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        let envoy = self.ext_authz.then_some(grpc::ext_authz::SERVICE_NAME);
        for name in grpc::SERVICE_NAMES.into_iter().chain(envoy) {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// Follows the database: SERVING while it answers and is migrated.
pub async fn watch_health(core: Core, health: Health, interval: Duration, stop: CancellationToken) {
    let mut serving = None;
    loop {
        let ready = core.is_ready().await;
        metrics::gauge!("authzd_health_serving").set(if ready { 1.0 } else { 0.0 });
        if let Some((in_use, idle, waiting)) = core.pool_usage() {
            metrics::gauge!("authzd_db_pool_connections", "state" => "in_use")
                .set(f64::from(in_use));
            metrics::gauge!("authzd_db_pool_connections", "state" => "idle").set(f64::from(idle));
            metrics::gauge!("authzd_db_pool_waiters").set(f64::from(waiting));
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
            health.set(status).await;
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
/// A failed account purge is retried after 1 s, then 2 s, 4 s, … up to
/// `interval`.
pub async fn run_purger(core: Core, interval: Duration, stop: CancellationToken) {
    let first_retry = Duration::from_secs(1).min(interval);
    let mut retry = first_retry;
    loop {
        let failed = match core.purge_deleting_accounts().await {
            Ok(outcome) => outcome.failed > 0,
            Err(err) => {
                log_background_error("account purge", err);
                true
            }
        };
        if let Err(err) = core.purge_deleted_users_keys().await {
            log_background_error("API key purge", err);
        }
        if let Err(err) = core.purge_tokens().await {
            log_background_error("token purge", err);
        }
        if let Err(err) = core.purge_sign_in_state().await {
            log_background_error("SAML request and assertion purge", err);
        }
        if let Err(err) = core.purge_audit().await {
            log_background_error("audit retention purge", err);
        }
        if let Err(err) = core.purge_known_sources().await {
            log_background_error("known sources purge", err);
        }
        let wait = if failed {
            let wait = retry;
            retry = (retry * 2).min(interval);
            wait
        } else {
            retry = first_retry;
            interval
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = core.purge_wakeup() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Writes API keys' last use every `interval`, and once more at the end.
pub async fn run_last_used_flusher(core: Core, interval: Duration, stop: CancellationToken) {
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

/// Logs the audit chain's head every `interval`, from the start: anchors
/// a log store keeps outside the database.
pub async fn run_audit_checkpoints(core: Core, interval: Duration, stop: CancellationToken) {
    loop {
        if let Err(err) = core.log_audit_checkpoint().await {
            log_background_error("audit checkpoint", err);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Reads identity providers' metadata again from their addresses every
/// `interval`, after a first wait of one interval (creating or updating a
/// provider read it just now).
pub async fn run_metadata_refresher(core: Core, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(err) = core.refresh_idp_metadata().await {
            log_background_error("identity provider metadata refresh", err);
        }
        if let Err(err) = core.refresh_oidc_providers().await {
            log_background_error("OpenID provider discovery refresh", err);
        }
    }
}
