//! One configuration, from a YAML file, `AUTHZD_*` environment variables and
//! flags (flags win over the environment, which wins over the file).
//! Validated before anything binds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::domain::secret::Secret;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://authzd.db?mode=rwc";
/// Caller keys shorter than this are refused: they are bearer secrets.
pub const MIN_CALLER_KEY_CHARS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "authzd",
    version,
    about = "Accounts, users, roles and credential checks over gRPC",
    long_about = "Accounts, users, roles and credential checks over gRPC.\n\n\
        With no subcommand authzd migrates the database and serves. Settings come \
        from the YAML file (--config), then AUTHZD_* environment variables, then flags."
)]
pub struct Cli {
    /// YAML configuration file.
    #[arg(long, env = "AUTHZD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "AUTHZD_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Database URL: postgres://… or sqlite://path?mode=rwc [default: sqlite://authzd.db?mode=rwc].
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Password of the bootstrap `admin` user (first start only; generated and printed if unset).
    #[arg(
        long,
        env = "AUTHZD_ADMIN_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
    /// Comma-separated keys sibling services present as `authorization: Bearer <key>` to Authenticate/Authorize.
    #[arg(
        long,
        env = "AUTHZD_CALLER_KEYS",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub caller_keys: Option<Vec<String>>,
    /// A plaintext listener serving only grpc.health.v1, for probes that cannot speak TLS [default: off].
    #[arg(long, env = "AUTHZD_HEALTH_LISTEN", global = true)]
    pub health_listen: Option<String>,
    /// Prometheus `/metrics` listen address, e.g. 0.0.0.0:9090 [default: off].
    #[arg(long, env = "AUTHZD_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<String>,
    /// PEM certificate chain for server TLS (with --tls-key-file) [default: plaintext].
    #[arg(long, env = "AUTHZD_TLS_CERT_FILE", global = true)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for server TLS.
    #[arg(long, env = "AUTHZD_TLS_KEY_FILE", global = true)]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
    #[arg(long, env = "AUTHZD_TLS_CLIENT_CA_FILE", global = true)]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "AUTHZD_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `authzd=debug` [default: info].
    #[arg(long, env = "AUTHZD_LOG", global = true)]
    pub log_level: Option<String>,
    /// Maximum database connections (Postgres) [default: 10].
    #[arg(long, env = "AUTHZD_DB_MAX_CONNECTIONS", global = true)]
    pub db_max_connections: Option<u32>,
    /// Password hashes computed at once [default: number of CPUs].
    #[arg(long, env = "AUTHZD_HASH_CONCURRENCY", global = true)]
    pub hash_concurrency: Option<usize>,
    /// Seconds to let in-flight requests finish after SIGTERM [default: 20].
    #[arg(long, env = "AUTHZD_SHUTDOWN_GRACE_SECONDS", global = true)]
    pub shutdown_grace_seconds: Option<u64>,
    /// Milliseconds between database health checks [default: 2000].
    #[arg(long, env = "AUTHZD_HEALTH_CHECK_INTERVAL_MS", global = true)]
    pub health_check_interval_ms: Option<u64>,
    /// Seconds between purges of deleting accounts and of deleted users' API keys (a deletion also wakes it) [default: 60].
    #[arg(long, env = "AUTHZD_PURGE_INTERVAL_SECONDS", global = true)]
    pub purge_interval_seconds: Option<u64>,
    /// Prefix of new API key values, `[a-z][a-z0-9]{1,15}` [default: azk].
    #[arg(long, env = "AUTHZD_API_KEY_PREFIX", global = true)]
    pub api_key_prefix: Option<String>,
    /// Milliseconds between writes of API keys' last use [default: 5000].
    #[arg(long, env = "AUTHZD_API_KEY_LAST_USED_FLUSH_MS", global = true)]
    pub api_key_last_used_flush_ms: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Migrate the database, then serve (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
}

/// Anchore's `user_authentication` block.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct UserAuthentication {
    pub allow_api_keys_for_saml_users: bool,
    pub max_api_key_age_days: u32,
    pub max_api_keys_per_user: u32,
    /// -1 keeps them forever.
    pub remove_deleted_user_api_keys_older_than_days: i64,
}

impl Default for UserAuthentication {
    fn default() -> Self {
        Self {
            allow_api_keys_for_saml_users: false,
            max_api_key_age_days: 365,
            max_api_keys_per_user: 100,
            remove_deleted_user_api_keys_older_than_days: 365,
        }
    }
}

/// Server TLS material; `client_ca` turns on client-certificate checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    metrics_listen: Option<String>,
    health_listen: Option<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_client_ca_file: Option<PathBuf>,
    database_url: Option<String>,
    admin_password: Option<String>,
    caller_keys: Option<Vec<String>>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    db_max_connections: Option<u32>,
    hash_concurrency: Option<usize>,
    shutdown_grace_seconds: Option<u64>,
    health_check_interval_ms: Option<u64>,
    purge_interval_seconds: Option<u64>,
    api_key_prefix: Option<String>,
    api_key_last_used_flush_ms: Option<u64>,
    user_authentication: Option<UserAuthentication>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub health_listen: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub database_url: Secret,
    pub admin_password: Option<Secret>,
    pub caller_keys: Vec<Secret>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub db_max_connections: u32,
    pub hash_concurrency: usize,
    pub shutdown_grace: Duration,
    pub health_check_interval: Duration,
    pub purge_interval: Duration,
    pub api_key_prefix: String,
    pub api_key_last_used_flush: Duration,
    pub user_authentication: UserAuthentication,
    /// Run the background purge of deleting accounts. Not a setting: only
    /// tests that drive the purge themselves turn it off.
    pub background_purge: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: None,
            health_listen: None,
            tls: None,
            database_url: Secret::new(DEFAULT_DATABASE_URL),
            admin_password: None,
            caller_keys: Vec::new(),
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            db_max_connections: 10,
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            shutdown_grace: Duration::from_secs(20),
            health_check_interval: Duration::from_secs(2),
            purge_interval: Duration::from_secs(60),
            api_key_prefix: crate::domain::key_format::DEFAULT_PREFIX.to_owned(),
            api_key_last_used_flush: Duration::from_secs(5),
            user_authentication: UserAuthentication::default(),
            background_purge: true,
        }
    }
}

/// A configuration problem, reported as one line before anything binds.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn bad(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

impl Config {
    /// File, then environment and flags (already merged by clap), then checks.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        if let Some(listen) = cli.listen.clone().or(file.listen) {
            config.listen = listen.parse().map_err(|_| {
                bad(format!(
                    "listen: {listen:?} is not an address such as 127.0.0.1:50051"
                ))
            })?;
        }
        if let Some(listen) = cli.metrics_listen.clone().or(file.metrics_listen) {
            config.metrics_listen = Some(listen.parse().map_err(|_| {
                bad(format!(
                    "metrics_listen: {listen:?} is not an address such as 0.0.0.0:9090"
                ))
            })?);
        }
        if let Some(listen) = cli.health_listen.clone().or(file.health_listen) {
            config.health_listen = Some(listen.parse().map_err(|_| {
                bad(format!(
                    "health_listen: {listen:?} is not an address such as 0.0.0.0:8081"
                ))
            })?);
        }
        let cert = cli.tls_cert_file.clone().or(file.tls_cert_file);
        let key = cli.tls_key_file.clone().or(file.tls_key_file);
        let client_ca = cli.tls_client_ca_file.clone().or(file.tls_client_ca_file);
        config.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None) if client_ca.is_some() => {
                return Err(bad(
                    "tls_client_ca_file: needs tls_cert_file and tls_key_file",
                ));
            }
            (None, None) => None,
            _ => return Err(bad("tls_cert_file and tls_key_file: set both or neither")),
        };
        if let Some(url) = cli.database_url.clone().or(file.database_url) {
            config.database_url = Secret::new(url);
        }
        config.admin_password = cli
            .admin_password
            .clone()
            .or(file.admin_password)
            .map(Secret::new);
        if let Some(keys) = cli.caller_keys.clone().or(file.caller_keys) {
            config.caller_keys = keys
                .into_iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .map(Secret::new)
                .collect();
        }
        if let Some(format) = cli.log_format.or(file.log_format) {
            config.log_format = format;
        }
        if let Some(level) = cli.log_level.clone().or(file.log_level) {
            config.log_level = level;
        }
        if let Some(n) = cli.db_max_connections.or(file.db_max_connections) {
            config.db_max_connections = n;
        }
        if let Some(n) = cli.hash_concurrency.or(file.hash_concurrency) {
            config.hash_concurrency = n;
        }
        if let Some(s) = cli.shutdown_grace_seconds.or(file.shutdown_grace_seconds) {
            config.shutdown_grace = Duration::from_secs(s);
        }
        if let Some(ms) = cli
            .health_check_interval_ms
            .or(file.health_check_interval_ms)
        {
            config.health_check_interval = Duration::from_millis(ms);
        }
        if let Some(s) = cli.purge_interval_seconds.or(file.purge_interval_seconds) {
            config.purge_interval = Duration::from_secs(s);
        }
        if let Some(prefix) = cli.api_key_prefix.clone().or(file.api_key_prefix) {
            config.api_key_prefix = prefix;
        }
        if let Some(ms) = cli
            .api_key_last_used_flush_ms
            .or(file.api_key_last_used_flush_ms)
        {
            config.api_key_last_used_flush = Duration::from_millis(ms);
        }
        if let Some(ua) = file.user_authentication {
            config.user_authentication = ua;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(bad(
                "database_url: must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        if self.caller_keys.is_empty() && !self.listen.ip().is_loopback() {
            return Err(bad(format!(
                "caller_keys: none configured, so Authenticate/Authorize would be open to anyone; \
                 that is allowed only on a loopback address, not {} (set AUTHZD_CALLER_KEYS)",
                self.listen
            )));
        }
        if let Some(short) = self
            .caller_keys
            .iter()
            .position(|k| k.expose().chars().count() < MIN_CALLER_KEY_CHARS)
        {
            return Err(bad(format!(
                "caller_keys[{short}]: must be at least {MIN_CALLER_KEY_CHARS} characters"
            )));
        }
        if let Some(password) = &self.admin_password
            && crate::domain::users::check_password("admin_password", password).is_err()
        {
            return Err(bad("admin_password: must be 6 to 128 characters"));
        }
        if let Some(tls) = &self.tls {
            for (name, path) in [
                ("tls_cert_file", Some(&tls.cert)),
                ("tls_key_file", Some(&tls.key)),
                ("tls_client_ca_file", tls.client_ca.as_ref()),
            ] {
                if let Some(path) = path {
                    std::fs::metadata(path)
                        .map_err(|e| bad(format!("{name}: cannot read {}: {e}", path.display())))?;
                }
            }
        }
        if self.db_max_connections == 0 {
            return Err(bad("db_max_connections: must be at least 1"));
        }
        if self.hash_concurrency == 0 {
            return Err(bad("hash_concurrency: must be at least 1"));
        }
        if self.health_check_interval < Duration::from_millis(50) {
            return Err(bad("health_check_interval_ms: must be at least 50"));
        }
        if self.purge_interval.is_zero() {
            return Err(bad("purge_interval_seconds: must be at least 1"));
        }
        if !crate::domain::key_format::valid_prefix(&self.api_key_prefix) {
            return Err(bad(
                "api_key_prefix: must be 2 to 16 lowercase letters and digits, starting with a letter",
            ));
        }
        if self.api_key_last_used_flush < Duration::from_millis(50) {
            return Err(bad("api_key_last_used_flush_ms: must be at least 50"));
        }
        let ua = &self.user_authentication;
        if ua.max_api_key_age_days == 0 {
            return Err(bad(
                "user_authentication.max_api_key_age_days: must be at least 1",
            ));
        }
        if ua.max_api_keys_per_user == 0 {
            return Err(bad(
                "user_authentication.max_api_keys_per_user: must be at least 1",
            ));
        }
        if ua.remove_deleted_user_api_keys_older_than_days < -1 {
            return Err(bad(
                "user_authentication.remove_deleted_user_api_keys_older_than_days: -1 (never) or a number of days",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level).map_err(|_| {
            bad(format!(
                "log_level: {:?} is not a log filter",
                self.log_level
            ))
        })?;
        Ok(())
    }

    pub fn api_key_settings(&self) -> crate::domain::api_keys::ApiKeySettings {
        let ua = &self.user_authentication;
        crate::domain::api_keys::ApiKeySettings {
            prefix: self.api_key_prefix.clone(),
            max_age_days: ua.max_api_key_age_days,
            max_per_user: ua.max_api_keys_per_user,
            remove_deleted_user_keys_older_than_days: ua
                .remove_deleted_user_api_keys_older_than_days,
            allow_for_saml_users: ua.allow_api_keys_for_saml_users,
            last_used_flush: self.api_key_last_used_flush,
        }
    }

    /// The SQLite file the URL names, if it names one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("authzd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn a_public_address_without_caller_keys_is_refused() {
        let err = Config::load(&cli(&["--listen", "0.0.0.0:50051"])).unwrap_err();
        assert!(err.to_string().contains("caller_keys"), "{err}");
        let ok = Config::load(&cli(&[
            "--listen",
            "0.0.0.0:50051",
            "--caller-keys",
            "0123456789abcdef0123",
        ]));
        assert!(ok.is_ok());
    }

    #[test]
    fn file_values_apply_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authzd.yaml");
        std::fs::write(
            &path,
            "listen: 127.0.0.1:6000\nlog_format: json\nuser_authentication:\n  allow_api_keys_for_saml_users: true\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let config = Config::load(&cli(&["--config", p])).unwrap();
        assert_eq!(config.listen.port(), 6000);
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(config.user_authentication.allow_api_keys_for_saml_users);
        let config = Config::load(&cli(&["--config", p, "--listen", "127.0.0.1:7000"])).unwrap();
        assert_eq!(config.listen.port(), 7000);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "listen_addr: 1\n").unwrap();
        let err = Config::load(&cli(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err = Config::load(&cli(&["--database-url", "mysql://x"])).unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
        let err = Config::load(&cli(&["--caller-keys", "short"])).unwrap_err();
        assert!(err.to_string().contains("caller_keys[0]"), "{err}");
    }

    #[test]
    fn sqlite_path_is_read_from_the_url() {
        let mut config = Config::default();
        assert_eq!(config.sqlite_path(), Some(PathBuf::from("authzd.db")));
        config.database_url = Secret::new("sqlite:///tmp/x.db?mode=rwc");
        assert_eq!(config.sqlite_path(), Some(PathBuf::from("/tmp/x.db")));
        config.database_url = Secret::new("postgres://h/db");
        assert_eq!(config.sqlite_path(), None);
    }
}
