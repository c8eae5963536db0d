//! Running authzd for real: metrics, request ids, several replicas on one
//! database, graceful shutdown under load, TLS and mTLS.

use std::time::Duration;

use authzd::domain::Clock;
use authzd::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::binary::{Server, authzd_command};
use crate::support::*;

/// A plain HTTP/1.1 GET, as a scraper does it.
pub async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

/// The value of the first sample whose line starts with `prefix`.
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_count_real_calls(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_SERVER_METRICS_LISTEN", "127.0.0.1:0")
            .env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0");
    })
    .await;
    let metrics_addr = server.wait_for_address("metrics listening").await;
    let console_addr = server.wait_for_address("console listening").await;
    // Console requests are counted like RPCs, by route template.
    for path in ["/sign-in", "/sign-in", "/no/such/page"] {
        let text = http_get(&console_addr, path).await;
        assert!(text.starts_with("HTTP/1.1"), "{text}");
    }
    let ch = connect(&server.addr).await;
    login_on(&ch, "admin", ADMIN_PASSWORD).await.unwrap();
    login_on(&ch, "admin", "wrong-password").await.unwrap_err();
    let mut accounts = AccountServiceClient::new(ch.clone());
    accounts
        .list_accounts(as_admin(pb::ListAccountsRequest::default()))
        .await
        .unwrap();

    wait_for_status(
        &ch,
        pb_health::health_check_response::ServingStatus::Serving,
    )
    .await;
    let text = http_get(&metrics_addr, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let ok = r#"authzd_rpc_requests_total{method="/authz.v1.AuthService/Authenticate",code="OK"}"#;
    let refused = r#"authzd_rpc_requests_total{method="/authz.v1.AuthService/Authenticate",code="UNAUTHENTICATED"}"#;
    assert_eq!(sample(&text, ok), Some(1.0), "{text}");
    assert_eq!(sample(&text, refused), Some(1.0), "{text}");
    assert!(text.contains(r#"authzd_rpc_duration_seconds_bucket{method="/authz.v1.AccountService/ListAccounts",code="OK",le="#));
    let console = r#"authzd_http_requests_total{method="GET",route="/sign-in",status="200"}"#;
    assert_eq!(sample(&text, console), Some(2.0), "{text}");
    let unmatched = r#"authzd_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(sample(&text, unmatched), Some(1.0), "{text}");
    assert!(text.contains(r#"authzd_http_request_duration_seconds_bucket{method="GET",route="/sign-in",status="200",le="#), "{text}");
    // ListAccounts authenticated the admin too: two successful password checks.
    let success =
        r#"authzd_authentications_total{credential="password",outcome="success",reason="ok"}"#;
    assert_eq!(sample(&text, success), Some(2.0), "{text}");
    let wrong = r#"authzd_authentications_total{credential="password",outcome="failure",reason="wrong_password"}"#;
    assert_eq!(sample(&text, wrong), Some(1.0), "{text}");
    assert!(
        sample(&text, "authzd_password_hash_wait_seconds_count").unwrap_or(0.0) >= 3.0,
        "{text}"
    );
    assert_eq!(sample(&text, "authzd_health_serving"), Some(1.0), "{text}");
    assert!(
        sample(&text, r#"authzd_db_pool_connections{state="idle"}"#).is_some(),
        "{text}"
    );

    // The cache: a key checked twice is one miss and one hit; a revoke
    // evicts it, and the lag from commit to eviction is measured.
    let key = ApiKeyServiceClient::new(ch.clone())
        .create_api_key(as_admin(pb::CreateApiKeyRequest {
            name: "metrics".into(),
            expires_at: Some(prost_types::Timestamp {
                seconds: authzd::domain::Clock::default().now().timestamp() + 86_400,
                nanos: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .value;
    for _ in 0..2 {
        AuthServiceClient::new(ch.clone())
            .authenticate(as_service(pb::AuthenticateRequest {
                credentials: Some(pb::authenticate_request::Credentials::ApiKey(key.clone())),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    ApiKeyServiceClient::new(ch.clone())
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            name: "metrics".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let text = http_get(&metrics_addr, "/metrics").await;
    assert!(
        sample(&text, r#"authzd_cache_hits_total{kind="key"}"#).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, r#"authzd_cache_misses_total{kind="key"}"#).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, r#"authzd_cache_evictions_total{kind="key"}"#).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "authzd_cache_invalidation_lag_seconds_count").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "authzd_cache_last_sync_age_seconds").is_some(),
        "{text}"
    );
    assert_eq!(sample(&text, "authzd_cache_stale"), Some(0.0), "{text}");
    // Described, with the process and build metrics, as Prometheus' own
    // linter wants them.
    assert!(
        text.contains("# HELP authzd_rpc_requests_total RPCs finished"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "authzd_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    // Whole seconds (a counter of the metrics crate): 0 this early.
    assert!(
        sample(&text, "process_cpu_seconds_total").is_some(),
        "{text}"
    );
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&text, process).is_some_and(|v| v > 0.0),
            "{process}: {text}"
        );
    }
    promtool_accepts(&text);
    if backend == Backend::Postgres {
        assert_eq!(
            sample(&text, "authzd_cache_listener_connected"),
            Some(1.0),
            "{text}"
        );
    }
    server.stop();
}

/// `promtool check metrics` on a scrape's body: exit 0 and no complaint.
fn promtool_accepts(response: &str) {
    use std::io::Write;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(response, |(_, body)| body);
    let promtool = std::env::var("AUTHZD_TEST_PROMTOOL").expect(
        "AUTHZD_TEST_PROMTOOL is not set: run the suite with ./scripts/test, which provides promtool",
    );
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?}\n{said}\n{body}",
        out.status
    );
}

/// Nagle's algorithm would hold a response written in two pieces (body,
/// trailers) until the client's delayed ACK: ~40 ms a call for one caller
/// making one call at a time. Every accepted socket sets TCP_NODELAY.
async fn one_caller_one_call_at_a_time_gets_no_delayed_ack_stalls(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let server = Server::start(&db).await;
    let admin = connect(&server.addr).await;
    UserServiceClient::new(admin)
        .create_user(as_admin(pb::CreateUserRequest {
            account: "admin".into(),
            username: "sequential".into(),
            password: "sequential-password".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let fresh = connect(&server.addr).await;
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let started = std::time::Instant::now();
        AuthServiceClient::new(fresh.clone())
            .authorize(as_service(pb::AuthorizeRequest {
                subject: Some(pb::authorize_request::Subject::Username(
                    "sequential".into(),
                )),
                actions: vec!["listImages".into(), "getImage".into(), "createImage".into()],
                ..Default::default()
            }))
            .await
            .unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p99 = latencies[98];
    eprintln!(
        "sequential 3-action Authorize: p50 {:?}, p99 {p99:?}",
        latencies[50]
    );
    assert!(
        p99 < Duration::from_millis(30),
        "p99 {p99:?}: {latencies:?}"
    );
    server.stop();
}

/// The Postgres connections set TCP_NODELAY too (sqlx 0.9.0 does not; see
/// vendor/README.md): a statement with ~64 KB of parameters is written in
/// several segments, and without it each such query waits ~40 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_large_statements_do_not_wait_for_delayed_acks() {
    use sea_orm::ConnectionTrait;
    let db = TestDatabase::new(Backend::Postgres).await;
    let mut pool = authzd::config::Config::default().pool_settings();
    pool.max_connections = 1;
    let conn = authzd::store::connect(&db.url, pool).await.unwrap();
    let big = "x".repeat(64 * 1024);
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        conn.query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT length($1) AS n",
            [big.clone().into()],
        ))
        .await
        .unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    eprintln!(
        "64 KB statements: p50 {:?}, max {:?}",
        latencies[10], latencies[19]
    );
    assert!(latencies[10] < Duration::from_millis(20), "{latencies:?}");
}

async fn every_rpc_logs_one_span_with_the_callers_request_id(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let server = Server::start(&db).await;
    let ch = connect(&server.addr).await;
    let mut request = as_admin(pb::ListAccountsRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "req-0123456789".parse().unwrap());
    let response = AccountServiceClient::new(ch.clone())
        .list_accounts(request)
        .await
        .unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "req-0123456789"
    );
    // Without one, authzd makes one up and returns it.
    let generated = AccountServiceClient::new(ch.clone())
        .list_accounts(as_admin(pb::ListAccountsRequest::default()))
        .await
        .unwrap();
    assert!(generated.metadata().get("x-request-id").is_some());

    let finished = |id: &str| {
        server
            .log_events()
            .into_iter()
            .find(|e| e["fields"]["message"] == "rpc finished" && e["span"]["request_id"] == id)
    };
    let mut event = None;
    for _ in 0..50 {
        event = finished("req-0123456789");
        if event.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let event = event.expect("an 'rpc finished' line for the request id");
    // One span per RPC: one closing line with that id, not two.
    let lines = server
        .log_events()
        .into_iter()
        .filter(|e| {
            e["fields"]["message"] == "rpc finished" && e["span"]["request_id"] == "req-0123456789"
        })
        .count();
    assert_eq!(lines, 1, "{}", server.stderr());
    assert_eq!(
        event["span"]["method"],
        "/authz.v1.AccountService/ListAccounts"
    );
    assert_eq!(event["span"]["caller"], "admin");
    assert_eq!(event["fields"]["code"], "OK");
    assert!(event["fields"]["duration_ms"].as_f64().is_some());
    assert!(!server.stderr().contains(ADMIN_PASSWORD));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_start_together_on_one_empty_postgres() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let (a, b) = tokio::join!(Server::start(&db), Server::start(&db));
    let (ca, cb) = (connect(&a.addr).await, connect(&b.addr).await);
    assert!(login_on(&ca, "admin", ADMIN_PASSWORD).await.is_ok());
    assert!(login_on(&cb, "admin", ADMIN_PASSWORD).await.is_ok());

    // Migrations and bootstrap ran exactly once.
    use migration::MigratorTrait;
    use sea_orm::{ConnectionTrait, Statement};
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let count = |sql: &'static str| {
        let conn = &conn;
        async move {
            conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    let migrations = i64::try_from(migration::Migrator::migrations().len()).unwrap();
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM seaql_migrations").await,
        migrations
    );
    assert_eq!(count("SELECT COUNT(*) AS n FROM accounts").await, 1);
    assert_eq!(count("SELECT COUNT(*) AS n FROM users").await, 1);
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM role_actions WHERE role = 'read-only'").await,
        48
    );
    conn.close().await.unwrap();

    // A change through one replica holds on the other's next check.
    AccountServiceClient::new(ca.clone())
        .create_account(as_admin(pb::CreateAccountRequest {
            name: "acme".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    UserServiceClient::new(ca.clone())
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: "alice".into(),
            password: "alice-password".into(),
            roles: vec!["read-only".into()],
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(login_on(&cb, "alice", "alice-password").await.is_ok());
    // B holds alice's key in memory (passwords are never cached, so a
    // password login would read the database and prove nothing).
    let key = ApiKeyServiceClient::new(ca.clone())
        .create_api_key(as_admin(pb::CreateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "replicas".into(),
            expires_at: Some(prost_types::Timestamp {
                seconds: authzd::domain::Clock::default().now().timestamp() + 86_400,
                nanos: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .value;
    let key_on_b = || {
        let mut client = AuthServiceClient::new(cb.clone());
        let key = key.clone();
        async move {
            client
                .authenticate(as_service(pb::AuthenticateRequest {
                    credentials: Some(pb::authenticate_request::Credentials::ApiKey(key)),
                    ..Default::default()
                }))
                .await
        }
    };
    // A key made on A is unknown to B until B follows its record (B's
    // index of key ids says "certainly not" meanwhile): wait for that,
    // within the follower's bound.
    let made = std::time::Instant::now();
    while let Err(status) = key_on_b().await {
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        assert!(
            made.elapsed() < Duration::from_secs(3),
            "B never learnt of the key made on A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    key_on_b().await.unwrap();
    UserServiceClient::new(ca.clone())
        .set_user_state(as_admin(pb::SetUserStateRequest {
            account: "acme".into(),
            username: "alice".into(),
            state: pb::UserState::Disabled.into(),
        }))
        .await
        .unwrap();
    // B follows the change (LISTEN, within a second; the poll, within
    // its interval + 1 s) and refuses the cached key.
    let started = std::time::Instant::now();
    loop {
        match key_on_b().await {
            Ok(_) => assert!(
                started.elapsed() < Duration::from_secs(2),
                "B still accepts the key of a user disabled through A"
            ),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.stop();
    b.stop();
}

async fn sigterm_drains_in_flight_requests_and_exits_zero(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // One hash at a time: ten logins queue for ~200 ms, so they are in
    // flight when the signal lands.
    let mut server = Server::start_with(&db, |c| {
        c.env("AUTHZD_SERVER_HASH_CONCURRENCY", "1")
            .env("AUTHZD_SERVER_SHUTDOWN_GRACE_SECONDS", "15");
    })
    .await;
    let ch = connect(&server.addr).await;
    let mut health = pb_health::health_client::HealthClient::new(ch.clone());
    let mut watch = health
        .watch(pb_health::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // Until the first database check it may still say NOT_SERVING.
    loop {
        let update = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("health turns SERVING")
            .unwrap()
            .unwrap();
        if update.status() == pb_health::health_check_response::ServingStatus::Serving {
            break;
        }
    }

    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            let ch = ch.clone();
            tokio::spawn(async move {
                let result = login_on(&ch, "admin", ADMIN_PASSWORD).await;
                (result, std::time::Instant::now())
            })
        })
        .collect();
    // Sent, and queued behind the one hashing slot (each hash takes tens
    // of milliseconds, so most are still waiting).
    tokio::time::sleep(Duration::from_millis(60)).await;
    let pid = server.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let signalled = std::time::Instant::now();

    // Health says NOT_SERVING to those watching.
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a health update after SIGTERM")
        .unwrap()
        .unwrap();
    assert_eq!(
        next.status(),
        pb_health::health_check_response::ServingStatus::NotServing
    );
    drop(watch);

    let mut drained = 0;
    for call in in_flight {
        let (result, finished) = call.await.unwrap();
        let principal = result.expect("an in-flight request failed during the drain");
        assert_eq!(principal.username, "admin");
        drained += usize::from(finished > signalled);
    }
    // Otherwise nothing was in flight when the signal landed, and the
    // drain went untested.
    assert!(drained > 0, "every login had finished before SIGTERM");
    let status = server.terminate_wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(
        TcpStream::connect(&server.addr).await.is_err(),
        "new connections must be refused"
    );
}

pub struct Pki {
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "authzd test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        Self {
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// (certificate PEM, key PEM) for `name`, signed by the CA.
    pub fn issue(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn write(&self, file: &str, pem: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, pem).unwrap();
        path
    }
}

pub async fn tls_channel(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn tls_and_mutual_tls(backend: Backend) {
    let pki = Pki::new();
    let (cert, key) = pki.issue("localhost");
    let ca_pem = pki.ca.pem();
    let cert_file = pki.write("server.pem", &cert);
    let key_file = pki.write("server.key", &key);
    for mutual in [false, true] {
        let db = TestDatabase::new(backend).await;
        let mut config = test_config(&db.url);
        config.tls.cert_file = Some(cert_file.clone());
        config.tls.key_file = Some(key_file.clone());
        config.tls.client_ca_file = mutual.then(|| pki.write("ca.pem", &ca_pem));
        let (core, _) = authzd::prepare(&config, Clock::default()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(authzd::serve(
            listener,
            core,
            std::sync::Arc::new(config),
            async move {
                let _ = stopped.await;
            },
        ));

        // A client with a CA-signed certificate is served either way.
        let client = tls_channel(addr, &ca_pem, Some(pki.issue("sibling-service")))
            .await
            .unwrap();
        assert!(
            login_on(&client, "admin", ADMIN_PASSWORD).await.is_ok(),
            "mutual={mutual}"
        );

        // Without a certificate: fine for TLS, refused for mTLS.
        let anonymous = match tls_channel(addr, &ca_pem, None).await {
            Ok(ch) => login_on(&ch, "admin", ADMIN_PASSWORD).await.is_ok(),
            Err(_) => false,
        };
        assert_eq!(anonymous, !mutual, "mutual={mutual}");

        // Plaintext never is.
        let plain = match Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(ch) => login_on(&ch, "admin", ADMIN_PASSWORD).await.is_ok(),
            Err(_) => false,
        };
        assert!(!plain);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}

async fn with_tls_probes_get_plaintext_health_on_its_own_port(backend: Backend) {
    let pki = Pki::new();
    let (cert, key) = pki.issue("localhost");
    let ca_pem = pki.ca.pem();
    let cert_file = pki.write("server.pem", &cert);
    let key_file = pki.write("server.key", &key);
    let db = TestDatabase::new(backend).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_TLS_CERT_FILE", &cert_file)
            .env("AUTHZD_TLS_KEY_FILE", &key_file)
            .env("AUTHZD_SERVER_HEALTH_LISTEN", "127.0.0.1:0");
    })
    .await;
    let health_addr = server.wait_for_address("health listening").await;
    // A probe's view: plaintext, health only.
    wait_for_status(
        &connect(&health_addr).await,
        pb_health::health_check_response::ServingStatus::Serving,
    )
    .await;
    // Only health there: the admin services are not exposed in plaintext.
    assert_eq!(
        AccountServiceClient::new(connect(&health_addr).await)
            .list_accounts(as_admin(pb::ListAccountsRequest::default()))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unimplemented
    );
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let tls = tls_channel(addr, &ca_pem, None).await.unwrap();
    assert!(login_on(&tls, "admin", ADMIN_PASSWORD).await.is_ok());
    server.stop();
}

#[test]
fn tls_settings_are_checked_before_anything_binds() {
    let output = authzd_command()
        .args([
            "--tls-cert-file",
            "/nonexistent/cert.pem",
            "--tls-key-file",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("tls.cert_file"));
    // Files that exist but hold no usable PEM.
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let output = authzd_command()
        .arg("--tls-cert-file")
        .arg(&garbage)
        .arg("--tls-key-file")
        .arg(&garbage)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("tls.cert_file"));
    let output = authzd_command()
        .args(["--tls-cert-file", "/tmp/x.pem"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

crate::dual!(
    metrics_count_real_calls,
    one_caller_one_call_at_a_time_gets_no_delayed_ack_stalls,
    every_rpc_logs_one_span_with_the_callers_request_id,
    sigterm_drains_in_flight_requests_and_exits_zero,
    tls_and_mutual_tls,
    with_tls_probes_get_plaintext_health_on_its_own_port,
);
