use std::sync::Arc;

use authzd::config::DatabaseUrl;
use authzd::domain::Clock;
use authzd::domain::authn::sources::Source;
use authzd::domain::bootstrap::Bootstrap;
use authzd::domain::secret::Secret;
use authzd::pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tonic::Code;

use crate::dual;
use crate::support::*;

/// A TCP relay in front of Postgres that the test can cut and restore, as
/// a database going away and coming back.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    upstream: String,
    tasks: Option<JoinSet<()>>,
}

impl Relay {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut relay = Self {
            addr,
            upstream,
            tasks: None,
        };
        relay.run(listener);
        relay
    }

    fn run(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let mut tasks = JoinSet::new();
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let held = connections.clone();
        tasks.spawn(async move {
            // Keeps the per-connection tasks alive only as long as this one.
            let _held = held;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                connections.lock().await.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Refuses new connections and breaks the open ones.
    pub fn cut(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
        }
    }

    pub async fn restore(&mut self) {
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        self.run(listener.expect("could not rebind the relay port"));
    }
}

async fn health_follows_the_database(backend: Backend) {
    match backend {
        Backend::Sqlite => {
            let app = spawn_app(backend).await;
            let path = app.db.sqlite_path.clone().unwrap();
            let moved = path.with_extension("moved");
            std::fs::rename(&path, &moved).unwrap();
            app.wait_for_health(pb_health::health_check_response::ServingStatus::NotServing)
                .await;
            std::fs::rename(&moved, &path).unwrap();
            app.wait_for_health(pb_health::health_check_response::ServingStatus::Serving)
                .await;
            assert!(app.login("admin", ADMIN_PASSWORD).await.is_ok());
        }
        Backend::Postgres => {
            let db = TestDatabase::new(backend).await;
            let (prefix, host) = split_postgres_url(&db.url);
            let name = db.postgres_name().unwrap().to_owned();
            let mut relay = Relay::start(host).await;
            let relayed = format!("{prefix}{}/{name}", relay.addr);
            let app = spawn_on(db, |config| config.database.url = DatabaseUrl::new(relayed)).await;
            app.create_account("acme").await;

            relay.cut();
            app.wait_for_health(pb_health::health_check_response::ServingStatus::NotServing)
                .await;
            // Callers learn the database is down, not that they erred.
            let status = app
                .accounts()
                .get_account(as_admin(pb::GetAccountRequest {
                    name: "acme".into(),
                }))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
            assert_eq!(status.message(), "the database is unavailable; retry later");
            let status = app.login("admin", ADMIN_PASSWORD).await.unwrap_err();
            assert_eq!(status.code(), Code::Unavailable);

            relay.restore().await;
            app.wait_for_health(pb_health::health_check_response::ServingStatus::Serving)
                .await;
            let account = app
                .accounts()
                .get_account(as_admin(pb::GetAccountRequest {
                    name: "acme".into(),
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(account.name, "acme");
        }
    }
}

async fn bootstrap_runs_once_and_never_changes_the_admin(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut config = test_config(&db.url);
    config.admin.password = None;
    let dir = tempfile::tempdir().unwrap();
    config.admin.password_file = Some(dir.path().join("admin-password"));
    let (core, first) = authzd::prepare(&config, Clock::default()).await.unwrap();
    let generated = match first {
        Bootstrap::CreatedWithGeneratedPassword(password) => password,
        other => panic!("expected a generated password, got {other:?}"),
    };
    assert!(generated.expose().len() >= 24);
    let written = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
    assert_eq!(written.trim(), generated.expose());
    let credential = authzd::domain::authn::credentials::Credential::Password {
        username: "admin".into(),
        password: generated.clone(),
    };
    assert!(core.authenticate(&credential, Source::LOCAL).await.is_ok());

    // A later start with a configured password leaves the admin alone.
    config.admin.password = Some(Secret::new("a-different-password"));
    let (core, second) = authzd::prepare(&config, Clock::default()).await.unwrap();
    assert!(matches!(second, Bootstrap::AlreadyDone));
    assert!(core.authenticate(&credential, Source::LOCAL).await.is_ok());
}

async fn shutdown_stops_serving_cleanly(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.stop().await;
    let connect = TcpStream::connect(app.addr).await;
    assert!(
        connect.is_err(),
        "the listener should be closed after shutdown"
    );
}

dual!(
    health_follows_the_database,
    bootstrap_runs_once_and_never_changes_the_admin,
    shutdown_stops_serving_cleanly,
);
