//! Every setting, declared once (name, type, default, check, doc line), read
//! from a YAML file, `AUTHZD_*` environment variables and flags — flags win
//! over the environment, which wins over the file — and validated before
//! anything binds. `authzd config reference` prints the declaration as
//! `docs/configuration.md`; `authzd config print` shows the effective values.

pub mod cli;
pub(crate) mod declare;
mod reference;
pub mod value;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::cli::{Command, Invocation};
use self::declare::{Layers, Source, settings};
pub use self::reference::reference;
pub use self::value::{DatabaseUrl, LogFormat};
use crate::domain::secret::Secret;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// A connection silent this long is closed.
    pub idle: Duration,
    /// HTTP/1 listeners: the time a client has to send a request's headers.
    pub header_read_timeout: Duration,
}

/// The bounds of every listener (`Config::connection_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub grpc: ConnectionLimits,
    pub health: ConnectionLimits,
    pub console: ConnectionLimits,
    pub metrics: ConnectionLimits,
}

/// Caller keys shorter than this are refused: they are bearer secrets.
pub const MIN_CALLER_KEY_CHARS: usize = 16;
pub const DEFAULT_DATABASE_URL: &str = "sqlite://authzd.db?mode=rwc";

const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn at_least<T: PartialOrd + std::fmt::Display + Copy>(min: T) -> impl Fn(&T) -> Result<(), String> {
    move |v| {
        if *v < min {
            Err(format!("must be at least {min}"))
        } else {
            Ok(())
        }
    }
}

// The declaration checks a setting through `fn(&T)`, and T is a Vec here.
#[allow(clippy::ptr_arg)]
fn caller_keys_long_enough(keys: &Vec<Secret>) -> Result<(), String> {
    match keys
        .iter()
        .position(|k| k.expose().chars().count() < MIN_CALLER_KEY_CHARS)
    {
        Some(i) => Err(format!(
            "[{i}]: must be at least {MIN_CALLER_KEY_CHARS} characters"
        )),
        None => Ok(()),
    }
}

settings! {
    /// The gRPC server, its side ports and its background work.
    server: Server {
        /// gRPC listen address.
        listen: SocketAddr = loopback(50051), old = ["listen"];
        /// A plaintext listener serving only grpc.health.v1, for probes that cannot speak TLS (unset: off).
        health_listen: Option<SocketAddr> = None, old = ["health_listen"];
        /// Prometheus `GET /metrics` listen address, e.g. 0.0.0.0:9090 (unset: off).
        metrics_listen: Option<SocketAddr> = None, old = ["metrics_listen"];
        /// Keys sibling services send as `authorization: Bearer <key>` to Authenticate/Authorize; list several to rotate. Required unless listening on loopback.
        caller_keys: Vec<Secret> = Vec::new(), old = ["caller_keys"], check = caller_keys_long_enough, reload = true;
        /// A file of further caller keys, one per line (`#` starts a comment), e.g. a mounted Kubernetes Secret.
        caller_keys_file: Option<PathBuf> = None, reload = true;
        /// Seconds in-flight requests get to finish after SIGTERM.
        shutdown_grace_seconds: u64 = 20, old = ["shutdown_grace_seconds"];
        /// Milliseconds between database health checks.
        health_check_interval_ms: u64 = 2000, old = ["health_check_interval_ms"], check = |v| at_least(50)(v);
        /// Run the background purge of deleting accounts and of deleted users' API keys on this replica.
        background_purge: bool = true;
        /// Seconds between purges (a deletion also wakes the purge).
        purge_interval_seconds: u64 = 60, old = ["purge_interval_seconds"], check = |v| at_least(1)(v);
        /// The largest request message accepted, in bytes; larger ones are refused with OUT_OF_RANGE.
        max_message_bytes: usize = 1_048_576, check = |v| at_least(4096)(v);
        /// Concurrent requests (HTTP/2 streams) per connection.
        max_concurrent_streams: u32 = 100, check = |v| at_least(1)(v);
        /// Milliseconds a request may take: an RPC, unless the client's `grpc-timeout` is shorter (then DEADLINE_EXCEEDED); a request to the console's listener (then HTTP 503).
        request_timeout_ms: u64 = 10_000, check = |v| at_least(10)(v);
        /// Actions one Authorize may ask about.
        max_authorize_actions: usize = 100, check = |v| if (1..=1000).contains(v) { Ok(()) } else { Err("must be 1 to 1000".into()) };
        /// Seconds without a frame from the client before the server pings it.
        keepalive_interval_seconds: u64 = 20, check = |v| at_least(1)(v);
        /// Seconds a ping may go unanswered before the connection is closed.
        keepalive_timeout_seconds: u64 = 10, check = |v| at_least(1)(v);
        /// Seconds a connection may send nothing (not even a ping answer) before it is closed; covers connections that never start HTTP/2.
        idle_timeout_seconds: u64 = 60, check = |v| at_least(1)(v);
        /// Seconds after which a connection is asked to go away (clients reconnect), so no connection is held forever.
        max_connection_age_seconds: u64 = 3600, check = |v| at_least(1)(v);
        /// Password checks waiting for a hashing slot; beyond it, new ones are refused at once with RESOURCE_EXHAUSTED instead of queueing for seconds.
        hash_queue_limit: usize = 64, check = |v| at_least(1)(v);
        /// Places in that queue one source (client address) may hold, so one source cannot fill it; a freed hashing slot goes to the waiting sources in turn.
        hash_queue_per_source: usize = 16, check = |v| at_least(1)(v);
        /// Password hashes computed at once, each holding 19 MiB (unset: the number of CPUs minus one, at least 1, so a core stays free for key checks).
        hash_concurrency: Option<usize> = None, old = ["hash_concurrency"], check = |v| v.map_or(Ok(()), |n| at_least(1)(&n));
    }

    /// Logs, on standard error.
    log: Log {
        /// `text`, or `json` for log collectors.
        format: LogFormat = LogFormat::Text, old = ["log_format"];
        /// A tracing filter, e.g. `info` or `info,authzd=debug`.
        level: String = "info".to_owned(), old = ["log_level"], old_env = ["AUTHZD_LOG"], check = |v| tracing_subscriber::EnvFilter::try_new(v).map(|_| ()).map_err(|_| format!("{v:?} is not a log filter"));
    }

    /// The database: embedded SQLite by default, PostgreSQL for production.
    database: Database {
        /// `postgres://user:pass@host:5432/db` or `sqlite://path?mode=rwc`.
        url: DatabaseUrl = DatabaseUrl::new(DEFAULT_DATABASE_URL), env = ["DATABASE_URL"], old = ["database_url"];
        /// PostgreSQL pool size (SQLite always uses one connection).
        max_connections: u32 = 10, old = ["db_max_connections"], check = |v| at_least(1)(v);
        /// PostgreSQL: a statement serving a request is cancelled after this long (UNAVAILABLE, retryable). Migrations and the purge are exempt.
        statement_timeout_ms: u64 = 2000, check = |v| at_least(100)(v);
        /// PostgreSQL: waiting for a row or table lock gives up after this long (UNAVAILABLE, retryable).
        lock_timeout_ms: u64 = 1000, check = |v| at_least(10)(v);
        /// Milliseconds a request waits for a pool connection before UNAVAILABLE.
        acquire_timeout_ms: u64 = 5000, check = |v| at_least(10)(v);
        /// Seconds after which a pooled connection is replaced.
        max_lifetime_seconds: u64 = 1800, check = |v| at_least(1)(v);
        /// Milliseconds the health probe's query may take before health says NOT_SERVING.
        health_timeout_ms: u64 = 1000, check = |v| at_least(10)(v);
    }

    /// TLS on the gRPC port (rustls). Certificate, key and client CA are re-read on SIGHUP.
    tls: Tls {
        /// PEM certificate chain; with `tls.key_file`, turns TLS on.
        cert_file: Option<PathBuf> = None, old = ["tls_cert_file"], reload = true;
        /// PEM private key.
        key_file: Option<PathBuf> = None, old = ["tls_key_file"], reload = true;
        /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
        client_ca_file: Option<PathBuf> = None, old = ["tls_client_ca_file"], reload = true;
        /// Client certificates that may call the check RPCs (Authenticate, Authorize, Envoy's Check) without a caller key: each entry is a subject (`CN=envoy`; several attributes in certificate order, `O=example, CN=envoy`) or a DNS or URI subject alternative name (`spiffe://cluster.local/ns/mesh/sa/gateway`). Needs `tls.client_ca_file`.
        allowed_client_subjects: Vec<String> = Vec::new(), check = |v| match v.iter().position(|s| s.trim().is_empty()) { Some(i) => Err(format!("[{i}]: must not be empty")), None => Ok(()) }, reload = true;
    }

    /// The bootstrap administrator.
    admin: Admin {
        /// Password of the `admin` user, used at the first start only (unset: generated and written to `admin.password_file`).
        password: Option<Secret> = None, old = ["admin_password"];
        /// Where a generated admin password is written (mode 0600) at the first start (unset: `authzd-admin-password` next to the SQLite database, or in the working directory).
        password_file: Option<PathBuf> = None;
    }

    /// Password lockout: after `threshold` consecutive failures the user is locked, for a delay that doubles with each further lock. A source (client address) that signed in as the user before counts on a ladder of its own; every other source shares the user's ladder, so guessers can lock out only sources the user never signed in from (docs/security.md#password-guessing-and-lockout).
    lockout: Lockout {
        /// Lock users after repeated wrong passwords.
        enabled: bool = true;
        /// Consecutive failures that lock the user.
        threshold: u32 = 5, check = |v| at_least(1)(v);
        /// The first lock's length; each further lock doubles it.
        initial_delay_ms: u64 = 1000, check = |v| at_least(1)(v);
        /// The longest lock.
        max_delay_seconds: u64 = 900, check = |v| at_least(1)(v);
        /// Failures since the last success after which the lock is permanent until an unlock (0: never; a permanent lock lets anyone lock `admin` out for good).
        permanent_after: u32 = 0;
        /// Seconds without a failure after which the count starts again.
        reset_after_seconds: u64 = 900, check = |v| at_least(1)(v);
        /// Days a source that signed in as a user keeps its own ladder after its last sign-in.
        remember_sources_days: u32 = 30, check = |v| at_least(1)(v);
    }

    /// The limit on failed authentications per source: the peer's address, or the `client_address` a calling service names (IPv6 grouped by /64). A token bucket charged by failures only, so successful bursts never use it up.
    rate_limit: RateLimit {
        /// Refuse every credential from a source whose failures exceed the limit, with RESOURCE_EXHAUSTED and a retry delay (google.rpc.RetryInfo).
        enabled: bool = true;
        /// Failed authentications per second a source may keep up.
        failures_per_second: u32 = 20, check = |v| at_least(1)(v);
        /// Failed authentications a source may make at once before the rate applies.
        burst: u32 = 100, check = |v| at_least(1)(v);
        /// Sources remembered, least recently seen forgotten first (about 150 bytes each).
        max_sources: u64 = 100_000, check = |v| at_least(1)(v);
    }

    /// Checks from memory: what a check needs is cached and kept right by the
    /// change records every write leaves (NOTIFY on Postgres, with polling as the backstop).
    cache: CacheSection {
        /// Answer checks from memory. Off: every check reads the database.
        enabled: bool = true;
        /// Entries held per kind (API keys, users, accounts).
        max_entries: u64 = 100_000, check = |v| at_least(1)(v);
        /// Seconds an entry lives after it was read from the database; reads never extend it.
        ttl_seconds: u64 = 60, check = |v| at_least(1)(v);
        /// Seconds a "no such user or account" answer is kept (a creation evicts it at once).
        negative_ttl_seconds: u64 = 5;
        /// Postgres: LISTEN for change notifications. Off: follow by polling alone (e.g. behind PgBouncer in transaction mode).
        notify: bool = true;
        /// Milliseconds between reads of the change records (the backstop for lost notifications).
        poll_interval_ms: u64 = 1000, check = |v| at_least(50)(v);
        /// Milliseconds without following the change records after which checks stop answering from memory and read through (so with the database down they fail closed).
        max_staleness_ms: u64 = 5000, check = |v| at_least(100)(v);
        /// Seconds change records are kept; a replica that falls further behind clears its cache.
        change_retention_seconds: u64 = 86_400, check = |v| at_least(60)(v);
    }

    /// API keys and bearer tokens (Anchore's `user_authentication` names where Anchore has the setting).
    user_authentication: UserAuthentication {
        /// Whether SAML users may create and use API keys.
        allow_api_keys_for_saml_users: bool = false;
        /// Only existing SAML users sign in: a sign-in never creates one (docs/sso.md).
        sso_require_existing_users: bool = false;
        /// Refuse password sign-in (Authenticate, the password grant, the console, ext_authz Basic) to every native user except the bootstrap `admin`, the break-glass account (docs/sso.md).
        disallow_native_users: bool = false;
        /// Log each verified SAML assertion (NameID, attributes) at debug level; never the signature. Said loudly at start-up when on.
        log_saml_assertions: bool = false;
        /// The furthest an API key's expiry may be set ahead, in days.
        max_api_key_age_days: u32 = 365, check = |v| at_least(1)(v);
        /// Active API keys a user may hold.
        max_api_keys_per_user: u32 = 100, check = |v| at_least(1)(v);
        /// Days to keep deleted users' API keys before purging them; -1 keeps them forever.
        remove_deleted_user_api_keys_older_than_days: i64 = 365, check = |v| at_least(-1)(v);
        /// Prefix of new API key values: 2 to 16 lowercase letters and digits, starting with a letter.
        api_key_prefix: String = "azk".to_owned(), old = ["api_key_prefix"], check = |v| if crate::domain::authn::key_format::valid_prefix(v) { Ok(()) } else { Err("must be 2 to 16 lowercase letters and digits, starting with a letter".to_owned()) };
        /// Milliseconds between writes of API keys' last use.
        api_key_last_used_flush_ms: u64 = 5000, old = ["api_key_last_used_flush_ms"], check = |v| at_least(50)(v);
        /// The longest grace period RotateApiKey may give the previous secret, in seconds.
        api_key_rotation_max_grace_seconds: u64 = 86_400, check = |v| if *v <= 31_536_000 { Ok(()) } else { Err("must be at most 31536000 (a year)".into()) };
        /// Bearer tokens (TokenService). Anchore's `user_authentication.oauth.enabled`: in a file, `oauth:` may be a nested mapping.
        oauth_enabled: bool = true;
        /// Seconds an access token is valid (Anchore's `oauth.default_token_expiration_seconds`).
        oauth_default_token_expiration_seconds: u64 = 3600, check = |v| if (10..=86_400).contains(v) { Ok(()) } else { Err("must be 10 to 86400".into()) };
        /// Seconds a refresh token is valid; each use issues a new one (Anchore's `oauth.refresh_token_expiration_seconds`).
        oauth_refresh_token_expiration_seconds: u64 = 86_400, check = |v| at_least(60)(v);
        /// The `iss` claim of access tokens, checked on every token presented.
        oauth_issuer: String = "authzd".to_owned(), check = |v| if v.is_empty() { Err("must not be empty".into()) } else { Ok(()) };
    }

    /// The keys that sign access tokens. Unset: authzd generates an Ed25519 key at the first start and keeps it in the database, shared by every replica.
    keys: Keys {
        /// `EdDSA` (Ed25519) or `RS256` (needs `keys.private_key_path`: authzd generates Ed25519 keys only).
        algorithm: String = "EdDSA".to_owned(), check = |v| if v == "EdDSA" || v == "RS256" { Ok(()) } else { Err("must be EdDSA or RS256".into()) };
        /// PEM private key (PKCS#8, or PKCS#1 for RSA) that signs new tokens.
        private_key_path: Option<PathBuf> = None;
        /// PEM public key of `keys.private_key_path` (optional: it is derived from the private key; when set, it must match).
        public_key_path: Option<PathBuf> = None;
        /// PEM public keys of earlier signing keys: tokens they signed keep verifying until they expire, so keys rotate without logging anyone out.
        previous_public_key_paths: Vec<PathBuf> = Vec::new();
        /// Encrypts the generated signing key in the database (at least 32 characters; keep it in a secret store). Unset: the key is stored in clear, and the log says so at start-up.
        encryption_key: Option<Secret> = None, check = |v| match v { Some(k) if k.expose().chars().count() < 32 => Err("must be at least 32 characters".into()), _ => Ok(()) };
        /// Anchore's HS256 shared secret. Not supported: a shared secret cannot be published for offline verification, and accepting HMAC invites algorithm confusion. Use an EdDSA or RS256 key.
        secret: Option<Secret> = None, check = |v| if v.is_some() { Err("HS256 shared secrets are not supported; configure keys.private_key_path (EdDSA or RS256) or let authzd generate a key".into()) } else { Ok(()) };
    }

    /// The audit trail: every change and every refused credential or action, in one hash chain (docs/audit.md).
    audit: Audit {
        /// Seconds between log lines of the chain's head (sequence and hash) on the `audit` target: anchors outside the database that a rewrite of the table cannot match.
        checkpoint_interval_seconds: u64 = 3600, check = |v| at_least(1)(v);
        /// Days records are kept; older ones are purged, leaving a checkpoint record so the rest still verifies (0: keep forever).
        retention_days: u32 = 365;
        /// Refusals waiting for the background writer; beyond it they are dropped and counted (`authzd_audit_dropped_total`), so a flood never slows a check.
        queue_size: u64 = 10_000, check = |v| if (1..=1_000_000).contains(v) { Ok(()) } else { Err("must be 1 to 1000000".into()) };
        /// Refusals the background writer appends per transaction.
        batch_size: u64 = 500, check = |v| if (1..=10_000).contains(v) { Ok(()) } else { Err("must be 1 to 10000".into()) };
        /// Refusal records one source (client address) may cause per `refusal_interval_seconds`; past it, and for every rate-limited refusal, its refusals are counted into one record per reason per interval (with the count, first and last time), so a flood cannot fill the trail or push out other sources' refusals.
        refusals_per_source: u32 = 20;
        /// Seconds of each such interval, and how often the counted records are written.
        refusal_interval_seconds: u64 = 10, check = |v| if (1..=3600).contains(v) { Ok(()) } else { Err("must be 1 to 3600".into()) };
    }

    /// Single sign-on through SAML identity providers (docs/sso.md).
    sso: Sso {
        /// Seconds an AuthnRequest waits for its answer; past it the answer is refused.
        request_ttl_seconds: u64 = 300, check = |v| if (10..=3600).contains(v) { Ok(()) } else { Err("must be 10 to 3600".into()) };
        /// Seconds of clock difference allowed on an assertion's NotBefore and NotOnOrAfter.
        clock_skew_seconds: u64 = 60, check = |v| if *v <= 600 { Ok(()) } else { Err("must be at most 600".into()) };
        /// Seconds between reads of the metadata of identity providers configured by `idp_metadata_url` (0: only when created or updated).
        metadata_refresh_seconds: u64 = 3600, check = |v| if *v == 0 || *v >= 60 { Ok(()) } else { Err("must be 0 or at least 60".into()) };
    }

    /// SCIM 2.0 provisioning by identity providers at `/scim/v2/{idp}/` on the console's listener (docs/scim.md).
    scim: Scim {
        /// Resources in one page of a listing, at most (a larger `count` is cut to it; also the ServiceProviderConfig's `filter.maxResults`).
        max_page_size: u32 = 100, check = |v| if (1..=1000).contains(v) { Ok(()) } else { Err("must be 1 to 1000".into()) };
        /// Characters in a `filter`, at most; a longer one is `invalidFilter` (nesting is bounded too: 8 levels).
        max_filter_chars: u32 = 1000, check = |v| if (16..=10_000).contains(v) { Ok(()) } else { Err("must be 16 to 10000".into()) };
    }

    /// The web console: accounts, users and API keys in a browser (docs/console.md).
    console: Console {
        /// Serve the console.
        enabled: bool = true;
        /// HTTP address of the console; it uses the gRPC port's TLS settings (unset: 127.0.0.1:8080 when `server.listen` is a loopback address, else off).
        listen: Option<SocketAddr> = None;
        /// Host names browsers reach the console by (e.g. `authzd.example.com`); requests naming another host are answered 421, so a DNS-rebinding page cannot reach the console. IP addresses, and `localhost` on a loopback or wildcard listener, are always accepted.
        public_hosts: Vec<String> = Vec::new();
        /// The console's address as browsers and identity providers reach it (`https://authzd.example.com`, no path): the SAML SP entity ids and ACS addresses of providers that name none are derived from it (unset: `http://` or `https://` and `console.listen`).
        public_url: Option<String> = None, check = |v| match v { Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) || u.ends_with('/') || u.parse::<http::Uri>().map_or(true, |p| p.host().is_none() || p.path().len() > 1) => Err("must be an http(s) address without a path, e.g. https://authzd.example.com".into()), _ => Ok(()) };
    }

    /// What an unauthenticated peer can hold open on each listener. At its cap a listener stops accepting (new connections wait in the kernel's backlog, costing no descriptor); unset caps are shares of the descriptors left after the database pool and a reserve of 64, so a flood on one port never takes the others' (docs/security.md#connections).
    connections: Connections {
        /// Connections the gRPC port holds open at once (unset: half of the descriptors left).
        grpc_max: Option<u32> = None, check = |v| v.map_or(Ok(()), |n| at_least(1)(&n));
        /// Connections the console holds open at once (unset: a fifth of the descriptors left).
        console_max: Option<u32> = None, check = |v| v.map_or(Ok(()), |n| at_least(1)(&n));
        /// Connections the metrics port holds open at once (unset: a tenth of the descriptors left).
        metrics_max: Option<u32> = None, check = |v| v.map_or(Ok(()), |n| at_least(1)(&n));
        /// Connections the health-only port holds open at once (unset: a tenth of the descriptors left).
        health_max: Option<u32> = None, check = |v| v.map_or(Ok(()), |n| at_least(1)(&n));
        /// Seconds an HTTP client (console, metrics) has to send a request's headers.
        header_read_timeout_seconds: u64 = 10, check = |v| at_least(1)(v);
        /// Seconds a console or metrics connection may send nothing before it is closed (the gRPC ports: `server.idle_timeout_seconds`).
        http_idle_timeout_seconds: u64 = 60, check = |v| at_least(1)(v);
    }

    /// Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`) on the gRPC port: authzd decides each HTTP request a proxy forwards, by a route table of method and path to action (docs/envoy.md).
    ext_authz: ExtAuthz {
        /// Serve the Check RPC.
        enabled: bool = true;
        /// A path prefix removed before the route table is consulted: Anchore serves its API under `/v2` (a request outside it is an unknown route; empty: none).
        path_prefix: String = "/v2".to_owned(), check = |v| if v.is_empty() || (v.starts_with('/') && !v.ends_with('/')) { Ok(()) } else { Err("must be empty or a path such as /v2".into()) };
        /// A TSV route table of the built-in table's columns (docs/envoy.md#route-tables), read at start-up.
        routes_file: Option<PathBuf> = None;
        /// `extend`: the file's rows add to the built-in Anchore table and replace rows of the same method and path; `replace`: the file is the whole table.
        routes_mode: String = "extend".to_owned(), check = |v| if v == "extend" || v == "replace" { Ok(()) } else { Err("must be extend or replace".into()) };
        /// A request no route matches: `deny` (403 to an authenticated caller; 401 without valid credentials, so the table cannot be mapped anonymously) or `authenticate` (allowed to any authenticated caller).
        unknown_routes: String = "deny".to_owned(), check = |v| if v == "deny" || v == "authenticate" { Ok(()) } else { Err("must be deny or authenticate".into()) };
        /// Further paths served without credentials, any method (route syntax: `/docs/{page}`, `/static/{*rest}`).
        public_paths: Vec<String> = Vec::new();
        /// Remove the client's `authorization` header from allowed requests, so the upstream never sees credentials.
        remove_authorization: bool = false;
    }
}

/// A configuration problem, reported as one line before anything binds.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn bad(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// Server TLS material; `client_ca` turns on client-certificate checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A loaded configuration, with where each value came from and the
/// deprecation warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub sources: Vec<(&'static str, Source)>,
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the file the invocation names, the environment and the flags.
    pub fn load(
        invocation: &Invocation,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let file = match &invocation.config_file {
            Some(path) => Some((path.as_path(), read_yaml(path)?)),
            None => None,
        };
        let mut layers = Layers::gather(SETTINGS, file, env, invocation.flags())?;
        let config = Self::resolve(&mut layers)?;
        config.validate()?;
        Ok(Loaded {
            config,
            sources: layers.sources,
            warnings: layers.warnings,
        })
    }

    /// Loads from the process's own environment.
    pub fn load_from_process(invocation: &Invocation) -> Result<Loaded, ConfigError> {
        Self::load(invocation, &|name| std::env::var(name).ok())
    }

    /// What one setting alone cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let keys = self.caller_keys()?;
        if !self.tls.allowed_client_subjects.is_empty() && self.tls.client_ca_file.is_none() {
            return Err(bad(
                "tls.allowed_client_subjects: needs tls.client_ca_file, or no client certificate is ever checked",
            ));
        }
        if keys.is_empty()
            && self.tls.allowed_client_subjects.is_empty()
            && !self.server.listen.ip().is_loopback()
        {
            return Err(bad(format!(
                "server.caller_keys: none configured, so Authenticate/Authorize would be open to anyone; \
                 that is allowed only on a loopback address, not {} (set AUTHZD_SERVER_CALLER_KEYS)",
                self.server.listen
            )));
        }
        let server = &self.server;
        if server.idle_timeout_seconds
            <= server.keepalive_interval_seconds + server.keepalive_timeout_seconds
        {
            // Otherwise a live client idle between requests is cut off
            // before the keepalive ping could show it is there.
            return Err(bad("server.idle_timeout_seconds: must be greater than \
                 server.keepalive_interval_seconds + server.keepalive_timeout_seconds"));
        }
        if self.cache.max_staleness_ms <= self.cache.poll_interval_ms {
            return Err(bad(
                "cache.max_staleness_ms: must be greater than cache.poll_interval_ms",
            ));
        }
        if let Some(password) = &self.admin.password
            && crate::domain::users::check_password("admin.password", password).is_err()
        {
            return Err(bad("admin.password: must be 6 to 128 characters"));
        }
        if self.keys.algorithm == "RS256" && self.keys.private_key_path.is_none() {
            return Err(bad(
                "keys.algorithm: RS256 needs keys.private_key_path (authzd generates Ed25519 keys only)",
            ));
        }
        if self.keys.private_key_path.is_none() && self.keys.public_key_path.is_some() {
            return Err(bad("keys.public_key_path: needs keys.private_key_path"));
        }
        if let Some(tls) = self.tls_files()? {
            for (name, path) in [
                ("tls.cert_file", Some(&tls.cert)),
                ("tls.key_file", Some(&tls.key)),
                ("tls.client_ca_file", tls.client_ca.as_ref()),
            ] {
                if let Some(path) = path {
                    std::fs::metadata(path)
                        .map_err(|e| bad(format!("{name}: cannot read {}: {e}", path.display())))?;
                }
            }
        }
        Ok(())
    }

    /// The caller keys: the listed ones and those of `caller_keys_file`.
    pub fn caller_keys(&self) -> Result<Vec<Secret>, ConfigError> {
        let mut keys = self.server.caller_keys.clone();
        if let Some(path) = &self.server.caller_keys_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                bad(format!(
                    "server.caller_keys_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let from_file: Vec<Secret> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(Secret::new)
                .collect();
            caller_keys_long_enough(&from_file)
                .map_err(|e| bad(format!("server.caller_keys_file: line {e}")))?;
            keys.extend(from_file);
        }
        Ok(keys)
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let tls = &self.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: tls.client_ca_file.clone(),
            })),
            (None, None) if tls.client_ca_file.is_some() => Err(bad(
                "tls.client_ca_file: needs tls.cert_file and tls.key_file",
            )),
            (None, None) => Ok(None),
            _ => Err(bad("tls.cert_file and tls.key_file: set both or neither")),
        }
    }

    pub fn hash_concurrency(&self) -> usize {
        self.server.hash_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        })
    }

    pub fn cache_settings(&self) -> crate::cache::CacheSettings {
        let c = &self.cache;
        crate::cache::CacheSettings {
            enabled: c.enabled,
            max_entries: c.max_entries,
            ttl: Duration::from_secs(c.ttl_seconds),
            negative_ttl: Duration::from_secs(c.negative_ttl_seconds),
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            max_staleness: Duration::from_millis(c.max_staleness_ms),
            notify: c.notify,
            change_retention: Duration::from_secs(c.change_retention_seconds),
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_seconds)
    }

    /// Each listener's bounds, for a process that may open `descriptors`.
    pub fn connection_limits(&self, descriptors: u64) -> ListenerLimits {
        let c = &self.connections;
        // The database pool, its LISTEN connection, and a reserve for the
        // listeners, SQLite's files, logs and the runtime.
        let reserved = u64::from(self.database.max_connections) + 1 + 64;
        let left = descriptors.saturating_sub(reserved);
        let share = |configured: Option<u32>, parts: u64| {
            configured.map_or_else(
                || usize::try_from((left / parts).max(2)).unwrap_or(usize::MAX),
                |n| n as usize,
            )
        };
        let http = |max| ConnectionLimits {
            max_connections: max,
            idle: Duration::from_secs(c.http_idle_timeout_seconds),
            header_read_timeout: Duration::from_secs(c.header_read_timeout_seconds),
        };
        let grpc = |max| ConnectionLimits {
            max_connections: max,
            idle: Duration::from_secs(self.server.idle_timeout_seconds),
            header_read_timeout: Duration::from_secs(c.header_read_timeout_seconds),
        };
        ListenerLimits {
            grpc: grpc(share(c.grpc_max, 2)),
            health: grpc(share(c.health_max, 10)),
            console: http(share(c.console_max, 5)),
            metrics: http(share(c.metrics_max, 10)),
        }
    }

    pub fn health_check_interval(&self) -> Duration {
        Duration::from_millis(self.server.health_check_interval_ms)
    }

    pub fn purge_interval(&self) -> Duration {
        Duration::from_secs(self.server.purge_interval_seconds)
    }

    pub fn api_key_settings(&self) -> crate::domain::api_keys::ApiKeySettings {
        let ua = &self.user_authentication;
        crate::domain::api_keys::ApiKeySettings {
            prefix: ua.api_key_prefix.clone(),
            max_age_days: ua.max_api_key_age_days,
            max_per_user: ua.max_api_keys_per_user,
            remove_deleted_user_keys_older_than_days: ua
                .remove_deleted_user_api_keys_older_than_days,
            allow_for_saml_users: ua.allow_api_keys_for_saml_users,
            last_used_flush: Duration::from_millis(ua.api_key_last_used_flush_ms),
            rotation_max_grace: Duration::from_secs(ua.api_key_rotation_max_grace_seconds),
        }
    }

    /// The SQLite file the URL names, if it names one.
    pub fn pool_settings(&self) -> crate::store::PoolSettings {
        let d = &self.database;
        crate::store::PoolSettings {
            max_connections: d.max_connections,
            statement_timeout: Duration::from_millis(d.statement_timeout_ms),
            lock_timeout: Duration::from_millis(d.lock_timeout_ms),
            acquire_timeout: Duration::from_millis(d.acquire_timeout_ms),
            max_lifetime: Duration::from_secs(d.max_lifetime_seconds),
        }
    }

    pub fn lockout_settings(&self) -> Option<crate::domain::authn::LockoutSettings> {
        let l = &self.lockout;
        l.enabled.then(|| crate::domain::authn::LockoutSettings {
            threshold: i64::from(l.threshold),
            initial_delay: Duration::from_millis(l.initial_delay_ms),
            max_delay: Duration::from_secs(l.max_delay_seconds),
            permanent_after: i64::from(l.permanent_after),
            reset_after: Duration::from_secs(l.reset_after_seconds),
            remember_sources: Duration::from_secs(u64::from(l.remember_sources_days) * 86_400),
        })
    }

    pub fn rate_limit_settings(&self) -> Option<crate::domain::authn::sources::RateLimitSettings> {
        let r = &self.rate_limit;
        r.enabled
            .then(|| crate::domain::authn::sources::RateLimitSettings {
                per_second: f64::from(r.failures_per_second),
                burst: f64::from(r.burst),
                max_sources: r.max_sources,
            })
    }

    pub fn token_settings(&self) -> crate::domain::tokens::TokenSettings {
        let ua = &self.user_authentication;
        let k = &self.keys;
        crate::domain::tokens::TokenSettings {
            enabled: ua.oauth_enabled,
            access_ttl: Duration::from_secs(ua.oauth_default_token_expiration_seconds),
            refresh_ttl: Duration::from_secs(ua.oauth_refresh_token_expiration_seconds),
            issuer: ua.oauth_issuer.clone(),
            keys: crate::domain::tokens::keys::KeySettings {
                algorithm: k.algorithm.clone(),
                private_key_path: k.private_key_path.clone(),
                public_key_path: k.public_key_path.clone(),
                previous_public_key_paths: k.previous_public_key_paths.clone(),
                encryption_key: k.encryption_key.clone(),
            },
            max_verified: self.cache.max_entries,
        }
    }

    pub fn audit_settings(&self) -> crate::domain::audit::AuditSettings {
        let a = &self.audit;
        crate::domain::audit::AuditSettings {
            queue: usize::try_from(a.queue_size).unwrap_or(usize::MAX),
            batch: usize::try_from(a.batch_size).unwrap_or(usize::MAX),
            retention: (a.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(a.retention_days) * 86_400)),
            refusal_interval: Duration::from_secs(a.refusal_interval_seconds),
            refusals_per_source: a.refusals_per_source,
        }
    }

    pub fn sso_settings(&self) -> crate::domain::sso::SsoSettings {
        let public_url = match &self.console.public_url {
            Some(url) => url.clone(),
            None => {
                let scheme = if matches!(self.tls_files(), Ok(Some(_))) {
                    "https"
                } else {
                    "http"
                };
                let addr = self
                    .console_listen()
                    .map_or_else(|| "127.0.0.1:8080".to_owned(), |(a, _)| a.to_string());
                format!("{scheme}://{addr}")
            }
        };
        crate::domain::sso::SsoSettings {
            public_url,
            request_ttl: Duration::from_secs(self.sso.request_ttl_seconds),
            clock_skew: Duration::from_secs(self.sso.clock_skew_seconds),
            log_assertions: self.user_authentication.log_saml_assertions,
            require_existing_users: self.user_authentication.sso_require_existing_users,
            disallow_native_users: self.user_authentication.disallow_native_users,
        }
    }

    /// Where the console listens, and whether the address was set (a
    /// taken default port only warns; a taken chosen one fails the start).
    pub fn console_listen(&self) -> Option<(SocketAddr, bool)> {
        if !self.console.enabled {
            return None;
        }
        match self.console.listen {
            Some(addr) => Some((addr, true)),
            None if self.server.listen.ip().is_loopback() => {
                Some((SocketAddr::from(([127, 0, 0, 1], 8080)), false))
            }
            None => None,
        }
    }

    pub fn audit_checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.audit.checkpoint_interval_seconds)
    }

    /// Where a generated admin password goes.
    pub fn admin_password_file(&self) -> PathBuf {
        const NAME: &str = "authzd-admin-password";
        match (&self.admin.password_file, self.sqlite_path()) {
            (Some(path), _) => path.clone(),
            (None, Some(db)) => db.with_file_name(NAME),
            (None, None) => PathBuf::from(NAME),
        }
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database.url.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }
}

impl Loaded {
    /// `authzd config print`: every setting, its value (secrets redacted)
    /// and where it came from, as YAML with comments.
    pub fn print(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for (key, value) in self.config.shown() {
            let (sect, name) = key.split_once('.').unwrap_or(("", key));
            if sect != section {
                out.push_str(sect);
                out.push_str(":\n");
                section = sect;
            }
            let source = self
                .sources
                .iter()
                .find(|(k, _)| *k == key)
                .map_or_else(|| Source::Default.to_string(), |(_, s)| s.to_string());
            let value = if value.is_empty() {
                "~".to_owned()
            } else {
                value
            };
            out.push_str(&format!("  {name}: {value}  # {source}\n"));
        }
        out
    }
}

fn read_yaml(path: &Path) -> Result<serde_yaml_ng::Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
