use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use authzd::config::{Command, Config, Invocation, Loaded};
use authzd::domain::Clock;
use authzd::domain::bootstrap::Bootstrap;

/// Every check allocates a little (strings of the principal, the response);
/// mimalloc serves that faster than glibc under two busy threads, and
/// returns freed large blocks (argon2's 19 MiB) to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let invocation =
        match authzd::config::cli::parse(std::env::args_os(), &|name| std::env::var(name).ok()) {
            Ok(invocation) => invocation,
            // Help and version print and exit 0; usage errors exit 2.
            Err(err) => err.exit(),
        };
    if invocation.command == Command::ConfigReference {
        print!("{}", authzd::config::reference());
        return ExitCode::SUCCESS;
    }
    let loaded = match Config::load_from_process(&invocation) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("authzd: {err}");
            return ExitCode::from(2);
        }
    };
    if invocation.command == Command::ConfigPrint {
        for warning in &loaded.warnings {
            eprintln!("authzd: warning: {warning}");
        }
        print!("{}", loaded.print());
        return ExitCode::SUCCESS;
    }
    if let Ok(Some(tls)) = loaded.config.tls_files()
        && let Err(err) = authzd::check_tls(&tls)
    {
        eprintln!("authzd: {err}");
        return ExitCode::from(2);
    }
    authzd::telemetry::init(&loaded.config);
    for warning in &loaded.warnings {
        tracing::warn!(warning = warning.as_str(), "deprecated setting");
    }
    match run(invocation, loaded).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("authzd: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(invocation: Invocation, loaded: Loaded) -> Result<(), String> {
    let config = loaded.config;
    match &invocation.command {
        Command::AdminUnlock { username } => return break_glass_unlock(&config, username).await,
        Command::AdminResetPassword {
            username,
            password_file,
        } => return break_glass_reset(&config, username, password_file.as_deref()).await,
        Command::AuditVerify { anchors } => return audit_verify(&config, anchors).await,
        _ => {}
    }
    if invocation.command == Command::Migrate {
        authzd::migrate(&config)
            .await
            .map_err(|e| format!("migration failed: {e}"))?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    // Before anything opens: every listener's cap is a share of it.
    let descriptors = authzd::server::listen::raise_descriptor_limit();
    let limits = config.connection_limits(descriptors);
    tracing::info!(
        descriptors,
        grpc = limits.grpc.max_connections,
        console = limits.console.max_connections,
        metrics = limits.metrics.max_connections,
        health = limits.health.max_connections,
        "connection limits"
    );
    // Bind before the database work so a taken port fails fast.
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    if config.server.metrics_listen.is_some() {
        // Installed before any work, so no early measurement is lost.
        authzd::telemetry::metrics_handle();
    }
    let metrics_listener = match config.server.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let console_listener = match config.console_listen() {
        Some((addr, chosen)) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) if chosen => {
                return Err(format!("cannot listen for the console on {addr}: {e}"));
            }
            Err(e) => {
                tracing::warn!(address = %addr, error = %e, "console not started: its default address is taken (set console.listen)");
                None
            }
        },
        None => None,
    };
    let (core, bootstrap) = authzd::prepare(&config, Clock::default())
        .await
        .map_err(|e| format!("start-up failed: {e}"))?;
    if let Bootstrap::CreatedWithGeneratedPassword(password) = &bootstrap {
        // stderr is where logs go, and log stores keep them: the password
        // goes to a file only its owner can read, and on the terminal only
        // when a person is watching.
        let file = config.admin_password_file();
        eprintln!(
            "authzd: created user 'admin' with a generated password, written to {} (mode 0600)",
            file.display()
        );
        if std::io::stderr().is_terminal() {
            eprintln!(
                "authzd: the generated password is: {}\n\
                 authzd: store it now (set AUTHZD_ADMIN_PASSWORD to choose one)",
                password.expose()
            );
        }
    }
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listen address: {e}"))?;
    tracing::info!(address = %local, "authzd listening");
    let listeners = authzd::Listeners {
        grpc: listener,
        http: console_listener,
        metrics: metrics_listener,
    };
    authzd::serve_listeners(
        listeners,
        core,
        Arc::new(config),
        reloads(invocation),
        shutdown_signal(),
    )
    .await
    .map_err(|e| format!("server failed: {e}"))
}

/// On each SIGHUP, the configuration loaded again the way it was at start.
fn reloads(invocation: Invocation) -> impl tokio_stream::Stream<Item = Config> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reloading is off");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading caller keys and TLS material");
            match Config::load_from_process(&invocation) {
                Ok(loaded) => {
                    if tx.send(loaded.config).await.is_err() {
                        return;
                    }
                }
                Err(err) => tracing::error!(
                    error = %err,
                    "reload refused; still serving with the previous caller keys and TLS material"
                ),
            }
        }
    });
    #[cfg(not(unix))]
    drop((invocation, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
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

/// `authzd admin unlock USERNAME`.
/// `authzd audit verify`: exit 0 with the head when every record's hash
/// and link match, else 1 naming the first record that does not.
async fn audit_verify(config: &Config, anchors: &[String]) -> Result<(), String> {
    use authzd::domain::audit::Verified;
    let anchors = anchors
        .iter()
        .map(|a| {
            a.split_once(':')
                .and_then(|(seq, hash)| Some((seq.parse::<i64>().ok()?, hash.to_owned())))
                .filter(|(_, hash)| hash.len() == 64)
                .ok_or_else(|| format!("--anchor {a:?}: expected SEQ:HASH (a 64-digit hex hash)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (core, _) = authzd::prepare(config, Clock::default())
        .await
        .map_err(|e| format!("start-up failed: {e}"))?;
    match core
        .verify_audit_with(&anchors)
        .await
        .map_err(|e| format!("audit verify failed: {e}"))?
    {
        Verified::Intact {
            records,
            first_seq,
            head_seq,
            head_hash,
        } => {
            println!("audit chain intact: {records} records, head {head_seq} {head_hash}");
            for (seq, _) in anchors.iter().filter(|(seq, _)| *seq < first_seq) {
                println!(
                    "anchor {seq}: purged by retention (the chain now starts at {first_seq}); \
                     check that it is older than audit.retention_days"
                );
            }
            Ok(())
        }
        Verified::Broken(broken) => Err(format!("audit chain broken: {broken}")),
    }
}

async fn break_glass_unlock(config: &Config, username: &str) -> Result<(), String> {
    let (core, _) = authzd::prepare(config, Clock::default())
        .await
        .map_err(|e| format!("start-up failed: {e}"))?;
    let cleared = core
        .break_glass_unlock(username)
        .await
        .map_err(|e| format!("unlock failed: {e}"))?;
    println!(
        "{username}: {}",
        if cleared {
            "unlocked"
        } else {
            "was not locked"
        }
    );
    Ok(())
}

/// `authzd admin reset-password USERNAME [--password-file FILE]`: the
/// password never appears on a command line (where `ps` would show it).
async fn break_glass_reset(
    config: &Config,
    username: &str,
    file: Option<&std::path::Path>,
) -> Result<(), String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            line
        }
    };
    let password = authzd::domain::secret::Secret::new(text.trim_end_matches(['\n', '\r']));
    let (core, _) = authzd::prepare(config, Clock::default())
        .await
        .map_err(|e| format!("start-up failed: {e}"))?;
    core.break_glass_reset_password(username, &password)
        .await
        .map_err(|e| format!("reset failed: {e}"))?;
    println!("{username}: password replaced, lock cleared");
    Ok(())
}
