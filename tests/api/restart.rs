//! PostgreSQL restarted under write load, on a throwaway cluster this test
//! owns: acknowledged writes survive, failed ones are UNAVAILABLE and
//! either absent or complete, and authzd recovers by itself.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authzd::pb;
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::binary::Server;
use crate::support::*;

/// `initdb` and `pg_ctl`: `AUTHZD_TEST_PG_BIN` (set by `scripts/test`), else
/// PATH, else the newest `/usr/lib/postgresql/*/bin`.
fn server_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("AUTHZD_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut candidates: Vec<PathBuf> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .collect();
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.extend(versions.into_iter().rev());
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .expect("initdb and pg_ctl not found: run ./scripts/test, which installs PostgreSQL")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A PostgreSQL server in a directory of ours.
#[derive(Clone)]
struct Pg {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Pg {
    /// Runs a server binary, as the postgres user when we are root (the
    /// server refuses to run as root).
    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn data(&self) -> String {
        self.root.join("data").display().to_string()
    }

    /// pg_ctl with the options every start needs. Commits are synchronous:
    /// an immediate shutdown must not lose an acknowledged one (fsync stays
    /// off: the operating system does not crash here, only the server).
    fn pg_ctl(&self, extra: &[&str]) {
        let data = self.data();
        let log = self.root.join("postgres.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.root.display()
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options];
        args.extend_from_slice(extra);
        self.run("pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

/// A throwaway cluster, stopped and removed when dropped.
struct Cluster {
    pg: Pg,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres (does the user exist?)");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg {
            root: dir.path().to_owned(),
            bin: server_bin(),
            port,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "--auth=trust", "-U", "postgres", "--no-sync"],
        );
        pg.pg_ctl(&["start"]);
        Self { pg, _dir: dir }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.pg.data();
        let pg_ctl = self.pg.bin.join("pg_ctl");
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

/// The wall clock (the server under test runs in another process, with
/// its own).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

#[derive(Default)]
struct Outcomes {
    /// Users whose CreateUser was acknowledged.
    users: Vec<String>,
    /// Key ids whose CreateApiKey was acknowledged.
    keys: Vec<String>,
    /// Users whose CreateUser failed, and the failure codes of every write.
    failed_users: Vec<String>,
    failures: Vec<Code>,
}

const ROLES: [&str; 2] = ["read-only", "image-analyzer"];

async fn write_loop(
    channel: tonic::transport::Channel,
    round: &'static str,
    writer: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    out: Arc<Mutex<Outcomes>>,
) {
    use std::sync::atomic::Ordering;
    let mut users = pb::user_service_client::UserServiceClient::new(channel.clone());
    let mut keys = pb::api_key_service_client::ApiKeyServiceClient::new(channel);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let username = format!("{round}_w{writer}_{i}");
        let created = users
            .create_user(as_admin(pb::CreateUserRequest {
                account: "acme".into(),
                username: username.clone(),
                password: "writer-password".into(),
                roles: ROLES.iter().map(|r| (*r).to_owned()).collect(),
                ..Default::default()
            }))
            .await;
        if let Err(status) = created {
            {
                let mut out = out.lock().unwrap();
                out.failed_users.push(username);
                out.failures.push(status.code());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        out.lock().unwrap().users.push(username.clone());
        let key = keys
            .create_api_key(as_admin(pb::CreateApiKeyRequest {
                account: "acme".into(),
                username,
                name: "restart".into(),
                expires_at: Some(prost_types::Timestamp {
                    seconds: unix_now() + 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            }))
            .await;
        let mut out = out.lock().unwrap();
        match key {
            Ok(r) => out.keys.push(r.into_inner().key.unwrap_or_default().id),
            Err(status) => out.failures.push(status.code()),
        }
    }
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// Writes under load until `restart` has happened and the service has been
/// seen recovering, then stops the writers.
async fn restart_under_load(
    cluster: &Cluster,
    server: &Server,
    mode: &'static str,
) -> (Outcomes, Vec<ServingStatus>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let channel = connect(&server.addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        writers.spawn(write_loop(
            channel.clone(),
            mode,
            writer,
            stop.clone(),
            out.clone(),
        ));
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let health = {
        let (channel, seen, stop) = (channel.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = client
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                {
                    let status = r.into_inner().status();
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&status) {
                        seen.push(status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_before = out.lock().unwrap().users.len();
    let (pg, mode_arg) = (cluster.pg.clone(), mode.to_owned());
    // A restart as production sees one: stopped for a couple of seconds
    // (longer than the health probe's timeout), then started again.
    tokio::task::spawn_blocking(move || {
        pg.pg_ctl(&["-m", &mode_arg, "stop"]);
        std::thread::sleep(Duration::from_secs(2));
        pg.pg_ctl(&["start"]);
    })
    .await
    .unwrap();
    // Recovered: writes are acknowledged again and health says SERVING.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let acked = out.lock().unwrap().users.len();
        let serving = seen.lock().unwrap().last() == Some(&ServingStatus::Serving);
        if acked > acked_before + 16 && serving {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "authzd did not recover within 30 s after a {mode} restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while writers.join_next().await.is_some() {}
    health.await.unwrap();
    let out = std::mem::take(&mut *out.lock().unwrap());
    let seen = seen.lock().unwrap().clone();
    (out, seen)
}

async fn postgres_restarts_under_write_load_lose_nothing_acknowledged() {
    let cluster = Cluster::start();
    let db = TestDatabase::external(&cluster.pg.url());
    let server = Server::start_with(&db, |c| {
        // A request waits at most this long for the server to come back.
        c.env("AUTHZD_DATABASE_ACQUIRE_TIMEOUT_MS", "2000");
    })
    .await;
    let channel = connect(&server.addr).await;
    pb::account_service_client::AccountServiceClient::new(channel.clone())
        .create_account(as_admin(pb::CreateAccountRequest {
            name: "acme".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut acked_users = Vec::new();
    let mut acked_keys = Vec::new();
    let mut failed_users = Vec::new();
    for mode in ["fast", "immediate"] {
        let (out, seen) = restart_under_load(&cluster, &server, mode).await;
        let unavailable = out
            .failures
            .iter()
            .filter(|c| **c == Code::Unavailable)
            .count();
        eprintln!(
            "{mode} restart: {} users and {} keys acknowledged, {} writes failed \
             ({unavailable} UNAVAILABLE), health went {seen:?}",
            out.users.len(),
            out.keys.len(),
            out.failures.len(),
        );
        assert!(
            out.failures.iter().all(|c| *c == Code::Unavailable),
            "{mode}: failures other than UNAVAILABLE: {:?}",
            out.failures
        );
        assert!(
            seen.contains(&ServingStatus::NotServing),
            "{mode}: health never left SERVING: {seen:?}"
        );
        assert_eq!(
            seen.last(),
            Some(&ServingStatus::Serving),
            "{mode}: {seen:?}"
        );
        acked_users.extend(out.users);
        acked_keys.extend(out.keys);
        failed_users.extend(out.failed_users);
    }
    // Straight from the database.
    let direct = sea_orm::Database::connect(&cluster.pg.url()).await.unwrap();
    let mut missing = Vec::new();
    for user in &acked_users {
        let n = count(
            &direct,
            &format!(
                "SELECT COUNT(*) FROM users u JOIN role_bindings b ON b.user_id = u.id \
                 WHERE u.username = '{user}'"
            ),
        )
        .await;
        if n != ROLES.len() as i64 {
            missing.push(format!("{user} ({n} bindings)"));
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged users lost or incomplete: {missing:?}"
    );
    for key in &acked_keys {
        let n = count(
            &direct,
            &format!("SELECT COUNT(*) FROM api_keys WHERE key_id = '{key}'"),
        )
        .await;
        assert_eq!(n, 1, "acknowledged key {key} lost");
    }
    // Never half-written, never duplicated.
    let incomplete = count(
        &direct,
        "SELECT COUNT(*) FROM users u WHERE u.account_name = 'acme' \
         AND (SELECT COUNT(*) FROM role_bindings b WHERE b.user_id = u.id) <> 2",
    )
    .await;
    assert_eq!(incomplete, 0, "users without their role bindings");
    let duplicated = count(
        &direct,
        "SELECT COUNT(*) FROM (SELECT username FROM users GROUP BY username HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(duplicated, 0);
    let mut present_after_failure = 0;
    for user in &failed_users {
        present_after_failure += count(
            &direct,
            &format!("SELECT COUNT(*) FROM users WHERE username = '{user}'"),
        )
        .await;
    }
    eprintln!(
        "in total: {} users and {} keys acknowledged and present; {} creations failed, \
         of which {present_after_failure} committed before their reply was lost",
        acked_users.len(),
        acked_keys.len(),
        failed_users.len()
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_under_write_load() {
    postgres_restarts_under_write_load_lose_nothing_acknowledged().await;
}
