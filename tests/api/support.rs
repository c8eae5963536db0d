//! The harness: `spawn_app` on a fresh database, authenticated request
//! builders and fixtures made through the public API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authzd::config::{Config, DatabaseUrl};
use authzd::domain::secret::Secret;
use authzd::domain::{Clock, Core};
use authzd::pb;
use base64::Engine;
use sea_orm::{ConnectionTrait, Database};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub use pb::account_service_client::AccountServiceClient;
pub use pb::api_key_service_client::ApiKeyServiceClient;
pub use pb::auth_service_client::AuthServiceClient;
pub use pb::group_service_client::GroupServiceClient;
pub use pb::role_service_client::RoleServiceClient;
pub use pb::token_service_client::TokenServiceClient;
pub use pb::user_service_client::UserServiceClient;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const CALLER_KEY: &str = "test-caller-key-0123456789";

/// Generates a `sqlite` and a `postgres` test for each async fn taking a Backend.
#[macro_export]
macro_rules! dual {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The Postgres server the tests use. Never skipped: without it the
/// Postgres half of the suite fails loudly.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("TEST_DATABASE_URL is not set: run the suite with ./scripts/test, which provides PostgreSQL")
    })
}

/// `postgres://user@host:port/db` split into (prefix with credentials, host:port).
pub fn split_postgres_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .expect("TEST_DATABASE_URL must be a postgres:// URL");
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((c, h)) => (format!("{c}@"), h.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:5432")
    };
    (format!("postgres://{credentials}"), host)
}

/// A throwaway database of its own, dropped when this goes away.
pub struct TestDatabase {
    pub url: String,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
    pub sqlite_path: Option<PathBuf>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("authzd.db");
                Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    pg: None,
                    _dir: Some(dir),
                    sqlite_path: Some(path),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("authzd_test_{}", uuid::Uuid::new_v4().simple());
                let db = Database::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("cannot reach the test PostgreSQL at TEST_DATABASE_URL: {e}")
                });
                db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                db.close().await.unwrap();
                let (prefix, host) = split_postgres_url(&admin);
                Self {
                    url: format!("{prefix}{host}/{name}"),
                    pg: Some((admin, name)),
                    _dir: None,
                    sqlite_path: None,
                }
            }
        }
    }

    /// A database someone else owns (e.g. a throwaway cluster).
    pub fn external(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            pg: None,
            _dir: None,
            sqlite_path: None,
        }
    }

    pub fn postgres_name(&self) -> Option<&str> {
        self.pg.as_ref().map(|(_, name)| name.as_str())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside async context: use a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(db) = Database::connect(&admin).await {
                    let _ = db
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = db.close().await;
                }
            });
        })
        .join();
    }
}

pub fn test_config(url: &str) -> Config {
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.database.url = DatabaseUrl::new(url);
    config.admin.password = Some(Secret::new(ADMIN_PASSWORD));
    config.server.caller_keys = vec![Secret::new(CALLER_KEY)];
    config.server.health_check_interval_ms = 100;
    // Tests purge explicitly (TestApp::purge) so timing is theirs.
    config.server.background_purge = false;
    config.user_authentication.api_key_last_used_flush_ms = 100;
    // The gate's tests name the route table's paths as they are; the
    // default `/v2` prefix has its own test (ext_authz.rs), and the
    // binary's tests and the cookbook run with it.
    config.ext_authz.path_prefix = String::new();
    config
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The HTTP face (console, well-known documents), served in-process
    /// with the gRPC port.
    pub http: SocketAddr,
    pub channel: Channel,
    pub core: Core,
    pub db: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<authzd::error::Result<()>>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::new(backend).await;
    spawn_on(db, adjust).await
}

pub async fn spawn_on(db: TestDatabase, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_bound(db, |config, _| adjust(config)).await
}

/// As `spawn_app_with`, `adjust` knowing the HTTP face's address (for
/// settings that name it, such as `console.public_url`).
pub async fn spawn_app_with_face(
    backend: Backend,
    adjust: impl FnOnce(&mut Config, SocketAddr),
) -> TestApp {
    let db = TestDatabase::new(backend).await;
    spawn_bound(db, adjust).await
}

async fn spawn_bound(db: TestDatabase, adjust: impl FnOnce(&mut Config, SocketAddr)) -> TestApp {
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
    let mut config = test_config(&db.url);
    adjust(&mut config, http);
    let (core, _) = authzd::prepare(&config, Clock::default()).await.unwrap();
    let listener = TcpListener::bind(config.server.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let listeners = authzd::Listeners {
        grpc: listener,
        http: Some(http_listener),
        metrics: None,
    };
    let server = tokio::spawn(authzd::serve_listeners(
        listeners,
        core.clone(),
        Arc::new(config),
        tokio_stream::pending(),
        async move {
            let _ = rx.await;
        },
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let app = TestApp {
        addr,
        http,
        channel,
        core,
        db,
        shutdown: Some(tx),
        server: Some(server),
    };
    app.wait_for_health(pb_health::health_check_response::ServingStatus::Serving)
        .await;
    app
}

pub use tonic_health::pb as pb_health;

/// A timestamp `days` from the app's clock.
pub fn in_days(core: &Core, days: i64) -> Option<prost_types::Timestamp> {
    let t = core.clock().now() + chrono::TimeDelta::days(days);
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// Polls grpc.health.v1 (overall) on `channel` until it reports `status`
/// (10 s at most).
pub async fn wait_for_status(
    channel: &Channel,
    status: pb_health::health_check_response::ServingStatus,
) {
    let mut health = pb_health::health_client::HealthClient::new(channel.clone());
    for _ in 0..200 {
        let now = health
            .check(pb_health::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status());
        if now.ok() == Some(status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health never became {status:?}");
}

/// A plaintext channel to `addr` (host:port).
pub async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Authenticate with a Basic header, as a sibling service (with the caller key).
pub async fn login_on(
    channel: &Channel,
    username: &str,
    password: &str,
) -> Result<pb::Principal, Status> {
    AuthServiceClient::new(channel.clone())
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(pb::authenticate_request::Credentials::Authorization(basic(
                username, password,
            ))),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().principal.unwrap())
}

pub fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// A request carrying Basic credentials.
pub fn as_user<T>(username: &str, password: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", basic(username, password).parse().unwrap());
    request
}

/// A request authenticated by an API key (`Basic _api_key:<value>`).
pub fn as_key<T>(value: &str, message: T) -> Request<T> {
    as_user("_api_key", value, message)
}

/// A request carrying an access token (`authorization: Bearer <token>`).
pub fn as_bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn as_admin<T>(message: T) -> Request<T> {
    as_user("admin", ADMIN_PASSWORD, message)
}

/// Adds `x-anchore-account`.
pub fn in_account<T>(mut request: Request<T>, account: &str) -> Request<T> {
    request
        .metadata_mut()
        .insert("x-anchore-account", account.parse().unwrap());
    request
}

/// A request to the check RPCs, with the caller key.
pub fn as_service<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {CALLER_KEY}").parse().unwrap(),
    );
    request
}

pub fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>, expected: Code) {
    match result {
        Ok(r) if expected != Code::Ok => panic!("expected {expected:?}, got OK: {r:?}"),
        Err(s) if s.code() != expected => {
            panic!("expected {expected:?}, got {:?}: {}", s.code(), s.message())
        }
        _ => {}
    }
}

/// Asserts INVALID_ARGUMENT naming `field`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>, field: &str) {
    match result {
        Err(s) if s.code() == Code::InvalidArgument => assert!(
            s.message().starts_with(&format!("{field}:")),
            "expected the message to name {field}: {}",
            s.message()
        ),
        other => panic!("expected INVALID_ARGUMENT for {field}, got {other:?}"),
    }
}

impl TestApp {
    pub fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }
    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }
    pub fn roles(&self) -> RoleServiceClient<Channel> {
        RoleServiceClient::new(self.channel.clone())
    }
    pub fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }
    pub fn keys(&self) -> ApiKeyServiceClient<Channel> {
        ApiKeyServiceClient::new(self.channel.clone())
    }
    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }
    pub fn tokens(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(self.channel.clone())
    }

    /// The password grant.
    pub async fn grant(
        &self,
        username: &str,
        password: &str,
    ) -> Result<pb::CreateTokenResponse, Status> {
        self.tokens()
            .create_token(pb::CreateTokenRequest {
                grant: Some(pb::create_token_request::Grant::Password(
                    pb::PasswordCredentials {
                        username: username.into(),
                        password: password.into(),
                    },
                )),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The refresh grant.
    pub async fn refresh(&self, refresh_token: &str) -> Result<pb::CreateTokenResponse, Status> {
        self.tokens()
            .create_token(pb::CreateTokenRequest {
                grant: Some(pb::create_token_request::Grant::RefreshToken(
                    refresh_token.into(),
                )),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Authenticates with an access token (the request's `token` field).
    pub async fn token_login(&self, access_token: &str) -> Result<pb::Principal, Status> {
        self.auth()
            .authenticate(as_service(pb::AuthenticateRequest {
                credentials: Some(pb::authenticate_request::Credentials::Token(
                    access_token.into(),
                )),
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner().principal.unwrap())
    }

    /// Polls health until it reports `status` (10 s at most).
    pub async fn wait_for_health(&self, status: pb_health::health_check_response::ServingStatus) {
        wait_for_status(&self.channel, status).await;
    }

    pub async fn create_account(&self, name: &str) -> pb::Account {
        self.accounts()
            .create_account(as_admin(pb::CreateAccountRequest {
                name: name.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn create_user(
        &self,
        account: &str,
        username: &str,
        password: &str,
        roles: &[&str],
    ) -> pb::User {
        self.users()
            .create_user(as_admin(pb::CreateUserRequest {
                account: account.into(),
                username: username.into(),
                password: password.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn set_account_state(&self, name: &str, state: pb::AccountState) -> pb::Account {
        self.accounts()
            .set_account_state(as_admin(pb::SetAccountStateRequest {
                name: name.into(),
                state: state.into(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Authenticates with a password; the result as a status code.
    pub async fn login(&self, username: &str, password: &str) -> Result<pb::Principal, Status> {
        login_on(&self.channel, username, password).await
    }

    /// Decisions for a trusted username in an account context.
    pub async fn authorize(
        &self,
        username: &str,
        account: &str,
        actions: &[&str],
    ) -> pb::AuthorizeResponse {
        self.auth()
            .authorize(as_service(pb::AuthorizeRequest {
                username_credential: 0,
                subject: Some(pb::authorize_request::Subject::Username(username.into())),
                account: account.into(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn purge(&self) -> usize {
        self.core.purge_deleting_accounts().await.unwrap().purged
    }

    /// Stops this server and starts another on the same database.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        self.stop().await;
        let db = std::mem::replace(
            &mut self.db,
            TestDatabase {
                url: String::new(),
                pg: None,
                _dir: None,
                sqlite_path: None,
            },
        );
        spawn_on(db, adjust).await
    }

    /// Creates a key for `username` (as admin) expiring in `days`; returns its value.
    pub async fn create_key(&self, account: &str, username: &str, name: &str, days: i64) -> String {
        self.keys()
            .create_api_key(as_admin(pb::CreateApiKeyRequest {
                account: account.into(),
                username: username.into(),
                name: name.into(),
                description: String::new(),
                expires_at: in_days(&self.core, days),
            }))
            .await
            .unwrap()
            .into_inner()
            .value
    }

    /// Authenticates with an API key value.
    pub async fn key_login(&self, value: &str) -> Result<pb::Principal, Status> {
        self.auth()
            .authenticate(as_service(pb::AuthenticateRequest {
                credentials: Some(pb::authenticate_request::Credentials::Authorization(basic(
                    "_api_key", value,
                ))),
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner().principal.unwrap())
    }

    /// Stops the server as SIGTERM would and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        // A handler that panicked answered INTERNAL, which a test may not
        // have looked at: any panic in this process fails the test that
        // sees it (no test makes a handler panic on purpose).
        let caught = authzd::telemetry::panics::caught();
        if caught > 0 && !std::thread::panicking() {
            panic!("{caught} request handler(s) panicked in this test process: see the log");
        }
    }
}
