use std::process::ExitCode;
use std::sync::Arc;

use authzd::config::{Cli, Command, Config};
use authzd::domain::Clock;
use authzd::domain::bootstrap::Bootstrap;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("authzd: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(tls) = &config.tls
        && let Err(err) = authzd::check_tls(tls)
    {
        eprintln!("authzd: {err}");
        return ExitCode::from(2);
    }
    authzd::telemetry::init(&config);
    match run(cli.command.unwrap_or(Command::Serve), config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("authzd: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    if command == Command::Migrate {
        authzd::migrate(&config)
            .await
            .map_err(|e| format!("migration failed: {e}"))?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    // Bind before the database work so a taken port fails fast.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    if config.metrics_listen.is_some() {
        // Installed before any work, so no early measurement is lost.
        authzd::telemetry::metrics_handle();
    }
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let (core, bootstrap) = authzd::prepare(&config, Clock::default())
        .await
        .map_err(|e| format!("start-up failed: {e}"))?;
    if let Bootstrap::CreatedWithGeneratedPassword(password) = &bootstrap {
        // Shown once, on stderr only; never logged.
        eprintln!(
            "authzd: created user 'admin' with generated password: {}\n\
             authzd: store it now; it is not shown again (set AUTHZD_ADMIN_PASSWORD to choose one)",
            password.expose()
        );
    }
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listen address: {e}"))?;
    // One signal stops both listeners.
    let stop = tokio_util::sync::CancellationToken::new();
    let metrics = metrics_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(address = %addr, "metrics listening");
        }
        let stop = stop.clone();
        tokio::spawn(authzd::telemetry::serve_metrics(listener, async move {
            stop.cancelled().await
        }))
    });
    tracing::info!(address = %local, "authzd listening");
    let signalled = {
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    };
    let served = authzd::serve(listener, core, Arc::new(config), signalled)
        .await
        .map_err(|e| format!("server failed: {e}"));
    stop.cancel();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    served
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
