//! Server assembly: the gRPC services with health and reflection, the
//! optional plaintext health port, background tasks, graceful shutdown, and
//! the settings SIGHUP replaces while serving.

pub mod listen;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::config::{Config, ConfigError, TlsFiles};
use crate::domain::Core;
use crate::error::{Error, Result};
use crate::grpc::caller::CallerKeys;
use crate::tasks::{Health, run_last_used_flusher, run_purger, watch_health};
use crate::{grpc, pb, telemetry};

/// Loads and checks the TLS material, so a bad certificate or key is a
/// configuration error before anything binds.
pub fn check_tls(files: &TlsFiles) -> std::result::Result<(), ConfigError> {
    tls::server_config(files).map(|_| ()).map_err(ConfigError)
}

/// What SIGHUP may replace while serving: the caller keys and the TLS
/// material (of the gRPC port and of the HTTP face). Everything else needs
/// a restart.
#[derive(Clone)]
pub struct Live {
    caller_keys: Arc<ArcSwap<CallerKeys>>,
    tls: Option<tls::LiveTls>,
    http_tls: Option<tls::LiveTls>,
}

impl Live {
    pub fn new(config: &Config) -> std::result::Result<Self, ConfigError> {
        let keys = config.caller_keys()?;
        let (tls, http_tls) = match config.tls_files()? {
            Some(files) => (
                Some(Arc::new(ArcSwap::new(
                    tls::server_config(&files).map_err(ConfigError)?,
                ))),
                Some(Arc::new(ArcSwap::new(
                    crate::http::tls_config(&files).map_err(ConfigError)?,
                ))),
            ),
            None => (None, None),
        };
        Ok(Self {
            http_tls,
            caller_keys: Arc::new(ArcSwap::from_pointee(
                CallerKeys::new(keys.iter().map(|k| k.expose()))
                    .with_subjects(config.tls.allowed_client_subjects.clone()),
            )),
            tls,
        })
    }

    /// Applies a newly loaded configuration, all or nothing: if anything in
    /// it is unusable, the old keys and certificates stay.
    pub fn reload(&self, config: &Config) -> std::result::Result<(), String> {
        let keys = config.caller_keys().map_err(|e| e.0)?;
        let tls = match (config.tls_files().map_err(|e| e.0)?, &self.tls) {
            (Some(files), Some(_)) => Some((
                tls::server_config(&files)?,
                crate::http::tls_config(&files)?,
            )),
            (None, None) => None,
            _ => return Err("turning TLS on or off needs a restart".to_owned()),
        };
        if let (Some(live), Some((grpc, http))) = (&self.tls, tls) {
            live.store(grpc);
            if let Some(live) = &self.http_tls {
                live.store(http);
                tracing::info!("console: reloaded TLS material");
            }
        }
        self.caller_keys.store(Arc::new(
            CallerKeys::new(keys.iter().map(|k| k.expose()))
                .with_subjects(config.tls.allowed_client_subjects.clone()),
        ));
        Ok(())
    }
}

/// The ext_authz route table of the configuration: the built-in Anchore
/// table and the operator's file.
pub fn gate(
    core: &Core,
    config: &Config,
) -> std::result::Result<crate::domain::gate::Gate, String> {
    use crate::domain::gate::{Gate, UnknownRoutes};
    let e = &config.ext_authz;
    let file = match &e.routes_file {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|err| {
                format!(
                    "ext_authz.routes_file: cannot read {}: {err}",
                    path.display()
                )
            })?,
        )),
        None => None,
    };
    let unknown = if e.unknown_routes == "authenticate" {
        UnknownRoutes::Authenticate
    } else {
        UnknownRoutes::Deny
    };
    Gate::new(
        core.catalog(),
        file.as_ref()
            .map(|(origin, text)| (origin.as_str(), text.as_str())),
        e.routes_mode == "replace",
        &e.path_prefix,
        &e.public_paths,
        unknown,
    )
}

/// Credentials refused before any handler runs go to the audit trail.
fn early_refusals(core: &Core) -> telemetry::RefusalSink {
    use crate::domain::audit::Refusal;
    use crate::domain::authn::sources::Source;
    let core = core.clone();
    Arc::new(move |reason, credential, peer| {
        let source = peer.map_or(Source::LOCAL, |p| Source::from_ip(p.ip()));
        core.refused(Refusal::credential_for(reason, source, credential));
    })
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
    serve_with_reloads(listener, core, config, tokio_stream::pending(), shutdown).await
}

/// `serve`, applying each configuration `reloads` yields (SIGHUP).
pub async fn serve_with_reloads(
    listener: TcpListener,
    core: Core,
    config: Arc<Config>,
    reloads: impl Stream<Item = Config> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listeners = Listeners {
        grpc: listener,
        http: None,
        metrics: None,
    };
    serve_listeners(listeners, core, config, reloads, shutdown).await
}

/// The listeners authzd serves, bound before anything else starts (a
/// taken port fails fast).
pub struct Listeners {
    pub grpc: TcpListener,
    /// The HTTP face: the console and the public documents.
    pub http: Option<TcpListener>,
    /// Prometheus metrics (and the signing keys), for the inside only.
    pub metrics: Option<TcpListener>,
}

/// Serves every listener until `shutdown` completes, applying each
/// configuration `reloads` yields (SIGHUP) to all of them. At shutdown the
/// HTTP face and the metrics port stop taking requests as the gRPC port
/// starts draining.
pub async fn serve_listeners(
    listeners: Listeners,
    core: Core,
    config: Arc<Config>,
    reloads: impl Stream<Item = Config> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let Listeners {
        grpc: listener,
        http,
        metrics,
    } = listeners;
    let mut live = Live::new(&config).map_err(|e| Error::internal(e.0))?;
    if http.is_none() {
        // Nothing to reload there (and no log line claiming it).
        live.http_tls = None;
    }
    let limits = config.connection_limits(listen::descriptor_limit());
    let reporter = tonic_health::server::HealthReporter::new();
    let health_service = grpc::health::server(&reporter);
    let health = Health::new(reporter, config.ext_authz.enabled);
    health.set(ServingStatus::NotServing).await;
    // Envoy's Check is listed only when it is served.
    let reflection = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        if config.ext_authz.enabled {
            builder.register_encoded_file_descriptor_set(pb::ENVOY_FILE_DESCRIPTOR_SET)
        } else {
            builder
        }
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::internal(format!("reflection: {e}")))?;

    let stop_tasks = CancellationToken::new();
    let health_task = tokio::spawn(watch_health(
        core.clone(),
        health.clone(),
        config.health_check_interval(),
        stop_tasks.clone(),
    ));
    let purge_task = config.server.background_purge.then(|| {
        tokio::spawn(run_purger(
            core.clone(),
            config.purge_interval(),
            stop_tasks.clone(),
        ))
    });
    // Ends with the other tasks; nothing to wait for.
    if config.sso.metadata_refresh_seconds > 0 {
        tokio::spawn(crate::tasks::run_metadata_refresher(
            core.clone(),
            Duration::from_secs(config.sso.metadata_refresh_seconds),
            stop_tasks.clone(),
        ));
    }
    let follow_task = {
        let url = config.database.url.expose();
        let listen_url = (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            .then(|| url.to_owned());
        tokio::spawn(crate::cache::run_follower(
            core.follower().clone(),
            listen_url,
            stop_tasks.clone(),
        ))
    };
    let reload_task = {
        let live = live.clone();
        let stop = stop_tasks.clone();
        let mut reloads = Box::pin(reloads);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    next = reloads.next() => next,
                };
                let Some(config) = next else { return };
                match live.reload(&config) {
                    Ok(()) => tracing::info!("reloaded caller keys and TLS material"),
                    Err(why) => tracing::error!(
                        error = why.as_str(),
                        "reload refused; still serving with the previous caller keys and TLS material"
                    ),
                }
            }
        })
    };

    // Stops only after the drain, so the last requests' uses are written.
    let stop_flush = CancellationToken::new();
    let flush_task = tokio::spawn(run_last_used_flusher(
        core.clone(),
        core.settings().api_keys.last_used_flush,
        stop_flush.clone(),
    ));
    // Also after the drain: the last requests' refusals are written.
    let audit_task = {
        let core = core.clone();
        let stop = stop_flush.clone();
        tokio::spawn(async move { core.run_audit_writer(stop).await })
    };
    let checkpoint_task = tokio::spawn(crate::tasks::run_audit_checkpoints(
        core.clone(),
        config.audit_checkpoint_interval(),
        stop_tasks.clone(),
    ));

    let gate = match &config.ext_authz {
        e if e.enabled => Some(grpc::ext_authz::ExtAuthzApi::new(
            core.clone(),
            // The operator's table is at fault, not authzd: the message
            // (file and line) is what they need to see.
            Arc::new(gate(&core, &config).map_err(Error::precondition)?),
            e.remove_authorization,
        )),
        _ => None,
    };
    let routes = grpc::routes(
        &core,
        live.caller_keys.clone(),
        config.server.max_message_bytes,
        gate,
    )
    .add_service(health_service)
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha);

    // Probes that cannot speak TLS (the kubelet's gRPC probes) get health
    // alone, in plaintext, on a port of its own. It outlives the drain so
    // they see NOT_SERVING.
    let stop_health = CancellationToken::new();
    let health_only = match config.server.health_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| Error::internal(format!("cannot listen for health on {addr}: {e}")))?;
            if let Ok(local) = listener.local_addr() {
                tracing::info!(address = %local, "health listening");
            }
            let service = grpc::health::server(health.reporter());
            let stop = stop_health.clone();
            Some(tokio::spawn(
                tonic::transport::Server::builder()
                    .http2_keepalive_interval(Some(Duration::from_secs(
                        config.server.keepalive_interval_seconds,
                    )))
                    .http2_keepalive_timeout(Some(Duration::from_secs(
                        config.server.keepalive_timeout_seconds,
                    )))
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        tls::plain_idle(
                            listen::Capped::new(listener, limits.health.max_connections, "health"),
                            limits.health.idle,
                        ),
                        async move { stop.cancelled().await },
                    ),
            ))
        }
        None => None,
    };

    let draining = CancellationToken::new();
    let on_signal = {
        let draining = draining.clone();
        let stop_tasks = stop_tasks.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: NOT_SERVING, draining in-flight requests");
            stop_tasks.cancel();
            health.set(ServingStatus::NotServing).await;
            metrics::gauge!("authzd_health_serving").set(0.0);
            draining.cancel();
        }
    };
    let http_task = http.map(|listener| {
        let face = crate::http::Face {
            core: core.clone(),
            secure: live.http_tls.is_some(),
            // The host single sign-on sends browsers back to is the console's too.
            public_hosts: config
                .console
                .public_hosts
                .iter()
                .cloned()
                .chain(config.console.public_url.as_deref().and_then(|url| {
                    Some(url.parse::<http::Uri>().ok()?.host()?.to_owned())
                }))
                .collect(),
            request_timeout: Duration::from_millis(config.server.request_timeout_ms),
        };
        if let Ok(addr) = listener.local_addr() {
            let scheme = if face.secure { "https" } else { "http" };
            tracing::info!(address = %addr, url = format!("{scheme}://{addr}/"), "console listening");
            if !face.secure && !addr.ip().is_loopback() {
                tracing::warn!(address = %addr, "serving the console over plain HTTP on a non-loopback address: its session cookies can be read on the network; configure TLS");
            }
        }
        let stop = draining.clone();
        tokio::spawn(crate::http::serve(
            listener,
            limits.console,
            face,
            live.http_tls.clone(),
            async move { stop.cancelled().await },
        ))
    });
    let metrics_task = metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(address = %addr, "metrics listening");
        }
        let stop = draining.clone();
        tokio::spawn(telemetry::serve_metrics(
            listener,
            limits.metrics,
            core.tokens().keys().jwks().to_owned(),
            async move { stop.cancelled().await },
        ))
    });
    if live.tls.is_none() && !config.server.listen.ip().is_loopback() {
        tracing::warn!(
            "serving plaintext gRPC on a non-loopback address; configure TLS unless a mesh terminates it"
        );
    }
    let server_settings = &config.server;
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(server_settings.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(
            server_settings.keepalive_interval_seconds,
        )))
        .http2_keepalive_timeout(Some(Duration::from_secs(
            server_settings.keepalive_timeout_seconds,
        )))
        .max_connection_age(Duration::from_secs(
            server_settings.max_connection_age_seconds,
        ))
        .layer(telemetry::RpcLayer {
            request_timeout: Duration::from_millis(server_settings.request_timeout_ms),
            refusals: Some(early_refusals(&core)),
        })
        .add_routes(routes);
    let listener = listen::Capped::new(listener, limits.grpc.max_connections, "grpc");
    let idle = limits.grpc.idle;
    let server = async move {
        match &live.tls {
            Some(config) => {
                router
                    .serve_with_incoming_shutdown(
                        tls::tls(listener, config.clone(), idle),
                        on_signal,
                    )
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(tls::plain_idle(listener, idle), on_signal)
                    .await
            }
        }
    };
    let grace = config.shutdown_grace();
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
    // Ends with the drain if the signal did not (the gRPC server failed).
    draining.cancel();
    for task in [http_task, metrics_task].into_iter().flatten() {
        let _ = task.await;
    }
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
    let _ = reload_task.await;
    let _ = follow_task.await;
    let _ = flush_task.await;
    let _ = checkpoint_task.await;
    // The last refusals get a moment, not a hang, with the database away.
    if tokio::time::timeout(Duration::from_secs(5), audit_task)
        .await
        .is_err()
    {
        tracing::warn!("audit refusals still unwritten at exit");
    }
    if let Some(purge_task) = purge_task {
        let _ = purge_task.await;
    }
    outcome
}
