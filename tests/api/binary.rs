//! The release binary as a child process: the guard that runs it, and
//! tests of what only the process shows (exit codes, signals, stderr).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authzd::pb;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::dual;
use crate::support::{ADMIN_PASSWORD, Backend, CALLER_KEY, TestDatabase, connect, login_on};

/// The binary with an environment free of the caller's authzd settings.
pub fn authzd_command() -> Command {
    clean(Command::new(env!("CARGO_BIN_EXE_authzd")))
}

/// The binary under `prlimit`, with these soft and hard descriptor limits.
pub fn authzd_with_descriptors(soft: u64, hard: u64) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_authzd"));
    clean(command)
}

fn clean(mut command: Command) -> Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("AUTHZD_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command
}

/// How long the binary may take to migrate, bootstrap and bind.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The running binary. Dropping it (also while unwinding from a failed
/// assertion) kills and reaps the process.
pub struct Server {
    child: Child,
    pub addr: String,
    /// Every stderr line so far, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub async fn start(db: &TestDatabase) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts the binary on `db`; `adjust` may change its environment.
    pub async fn start_with(db: &TestDatabase, adjust: impl FnOnce(&mut Command)) -> Self {
        Self::start_command(authzd_command(), db, adjust).await
    }

    /// `start_with` for a command that runs the binary (e.g. under
    /// `prlimit`), its environment already cleaned by `authzd_command`.
    pub async fn start_command(
        mut command: Command,
        db: &TestDatabase,
        adjust: impl FnOnce(&mut Command),
    ) -> Self {
        command
            .args(["--server-listen", "127.0.0.1:0"])
            .env("DATABASE_URL", &db.url)
            .env("AUTHZD_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("AUTHZD_SERVER_CALLER_KEYS", CALLER_KEY)
            .env("AUTHZD_LOG_FORMAT", "json")
            .env("AUTHZD_LOG_LEVEL", "info")
            .env("AUTHZD_SERVER_HEALTH_CHECK_INTERVAL_MS", "100")
            // Tests run many servers at once: the console only where asked.
            .env("AUTHZD_CONSOLE_ENABLED", "false");
        adjust(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_authzd")));
        let stderr = child.stderr.take().expect("stderr is piped");

        // A thread drains stderr for the whole life of the process, so the
        // pipe never fills; lines go to the log and, while someone listens,
        // to the channel.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }

        let mut server = Self {
            child,
            addr: String::new(),
            log,
        };
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some(addr) = listening_address(&line) {
                        server.addr = addr;
                        break;
                    }
                }
                Ok(None) => {
                    let status = server.child.wait().ok();
                    panic!(
                        "authzd exited ({status:?}) before logging \"authzd listening\"; stderr:\n{}",
                        server.stderr()
                    );
                }
                Err(_) => panic!(
                    "authzd did not log \"authzd listening\" within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                    server.stderr()
                ),
            }
        }
        server
    }

    /// The `address` field of the first JSON log line with this message.
    pub fn logged_address(&self, message: &str) -> Option<String> {
        self.log.lock().unwrap().iter().find_map(|line| {
            let event: Value = serde_json::from_str(line).ok()?;
            let fields = event.get("fields")?;
            (fields.get("message")?.as_str()? == message)
                .then(|| fields.get("address")?.as_str().map(str::to_owned))
                .flatten()
        })
    }

    /// Like `logged_address`, waiting up to 10 s for the line.
    pub async fn wait_for_address(&self, message: &str) -> String {
        for _ in 0..200 {
            if let Some(addr) = self.logged_address(message) {
                return addr;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {message:?} line in the log:\n{}", self.stderr());
    }

    /// How many JSON log lines so far carry this message.
    pub fn count_logged(&self, message: &str) -> usize {
        self.log_events()
            .iter()
            .filter(|e| e["fields"]["message"] == message)
            .count()
    }

    /// Waits up to 10 s until `count` lines carry this message.
    pub async fn wait_for_logged(&self, message: &str, count: usize) {
        for _ in 0..200 {
            if self.count_logged(message) >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fewer than {count} {message:?} lines in the log:\n{}",
            self.stderr()
        );
    }

    /// Sends a signal by name (e.g. "HUP").
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    /// Every JSON log line so far.
    pub fn log_events(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Fails if the process has exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "authzd exited unexpectedly ({status}); stderr:\n{}",
                self.stderr()
            );
        }
    }

    pub fn stop(mut self) {
        self.assert_running();
        self.kill();
    }

    /// Sends SIGTERM and waits (up to `within`) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.terminate_wait(within)
    }

    /// Waits (up to `within`) for the process to exit after a signal.
    pub fn terminate_wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "authzd did not exit within {within:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // Any panic of the binary (a handler's, caught and answered
        // INTERNAL, or a task's) fails the test, whatever it asserted.
        if !std::thread::panicking() {
            let log = self.stderr();
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("request handler panicked") || l.contains("panicked at"))
            {
                panic!("authzd panicked: {line}\n{log}");
            }
        }
    }
}

/// The `address` of a JSON log line whose message is "authzd listening".
fn listening_address(line: &str) -> Option<String> {
    // The text format: `… authzd listening address=127.0.0.1:1234`.
    if !line.starts_with('{') {
        let (_, rest) = line.split_once("authzd listening address=")?;
        return rest.split_whitespace().next().map(str::to_owned);
    }
    let event: Value = serde_json::from_str(line).ok()?;
    let fields = event.get("fields")?;
    if fields.get("message")?.as_str()? != "authzd listening" {
        return None;
    }
    Some(fields.get("address")?.as_str()?.to_owned())
}

#[test]
fn bad_configuration_exits_with_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--server-listen", "0.0.0.0:0"], "server.caller_keys"),
        (&["--server-listen", "not-an-address"], "server.listen"),
        (&["--database-url", "mysql://localhost/x"], "database.url"),
        (
            &["--server-caller-keys", "short"],
            "server.caller_keys: [0]",
        ),
        (
            &["--server-idle-timeout-seconds", "25"],
            "server.idle_timeout_seconds: must be greater than",
        ),
    ];
    for (args, names) in cases {
        let output = authzd_command()
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn help_documents_every_setting() {
    let output = authzd_command().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for name in ["AUTHZD_CONFIG", "migrate", "config"] {
        assert!(help.contains(name), "--help does not mention {name}");
    }
    // Every declared setting has its flag and environment variable there.
    for def in authzd::config::SETTINGS {
        assert!(
            help.contains(&format!("--{}", def.flag())),
            "--help lacks --{}",
            def.flag()
        );
        assert!(help.contains(&def.env()), "--help lacks {}", def.env());
    }
}

async fn migrate_runs_alone_and_serving_finds_the_schema_ready(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let output = authzd_command()
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    use sea_orm::{ConnectionTrait, Statement};
    let applied = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    use migration::MigratorTrait;
    let expected = i64::try_from(migration::Migrator::migrations().len()).unwrap();
    assert_eq!(applied.try_get::<i64>("", "n").unwrap(), expected);
    // migrate does not bootstrap: no account yet.
    let accounts = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM accounts",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(accounts.try_get::<i64>("", "n").unwrap(), 0);
    let applied_at = || async {
        conn.query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n, MAX(applied_at) AS last FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .map(|row| {
            (
                row.try_get::<i64>("", "n").unwrap(),
                row.try_get::<i64>("", "last").unwrap(),
            )
        })
    };
    let migrated = applied_at().await;
    // Serving finds the schema ready: it applies nothing, bootstraps, and
    // the admin signs in.
    let server = Server::start(&db).await;
    login_on(&connect(&server.addr).await, "admin", ADMIN_PASSWORD)
        .await
        .unwrap();
    assert_eq!(applied_at().await, migrated, "serving applied a migration");
    assert!(
        !server.stderr().contains("Applying migration"),
        "{}",
        server.stderr()
    );
    server.stop();
    conn.close().await.unwrap();
}

/// The file main names when it generates the admin password.
fn generated_password_file(stderr: &str) -> Option<std::path::PathBuf> {
    stderr.lines().find_map(|l| {
        l.split_once("with a generated password, written to ")
            .and_then(|(_, rest)| rest.split_once(" (mode 0600)"))
            .map(|(path, _)| std::path::PathBuf::from(path))
    })
}

async fn admin_login(addr: &str, password: &str) -> Result<pb::Principal, tonic::Status> {
    login_on(&connect(addr).await, "admin", password).await
}

async fn first_start_writes_a_generated_password_to_a_private_file_and_sigterm_exits_zero(
    backend: Backend,
) {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let chosen = dir.path().join("admin-password");
    let no_password = |c: &mut Command| {
        c.env_remove("AUTHZD_ADMIN_PASSWORD");
        // SQLite: the default, next to the database; Postgres: a chosen path.
        if backend == Backend::Postgres {
            c.env("AUTHZD_ADMIN_PASSWORD_FILE", &chosen);
        }
    };
    let mut first = Server::start_with(&db, no_password).await;
    let file = generated_password_file(&first.stderr()).expect("the password file on stderr");
    match backend {
        Backend::Postgres => assert_eq!(file, chosen),
        Backend::Sqlite => assert_eq!(file.file_name().unwrap(), "authzd-admin-password"),
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 24);
    let principal = admin_login(&first.addr, &password).await.unwrap();
    assert!(principal.global_admin);
    // stderr (where the logs go) is not a terminal here: never printed.
    assert!(!first.stderr().contains(&password));
    let status = first.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", first.stderr());

    let second = Server::start_with(&db, no_password).await;
    assert!(generated_password_file(&second.stderr()).is_none());
    assert!(admin_login(&second.addr, &password).await.is_ok());
    let status = admin_login(&second.addr, ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    second.stop();
}

/// Runs `authzd admin …` against the database, with `stdin` as its input.
fn admin_command(db: &TestDatabase, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = authzd_command()
        .arg("admin")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("AUTHZD_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The day the only administrator is locked out or its password is lost.
async fn break_glass_unlocks_and_resets_passwords_locally(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let lockout = |c: &mut Command| {
        c.env("AUTHZD_LOCKOUT_THRESHOLD", "2")
            .env("AUTHZD_LOCKOUT_INITIAL_DELAY_MS", "600000");
    };
    let server = Server::start_with(&db, lockout).await;
    for _ in 0..2 {
        admin_login(&server.addr, "a-wrong-guess")
            .await
            .unwrap_err();
    }
    let status = admin_login(&server.addr, ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    server.stop();

    let output = admin_command(&db, &["unlock", "admin"], "");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "admin: unlocked"
    );
    let server = Server::start_with(&db, lockout).await;
    admin_login(&server.addr, ADMIN_PASSWORD).await.unwrap();
    server.stop();

    // A lost password: the new one comes on standard input, never a flag.
    let output = admin_command(&db, &["reset-password", "admin"], "brand-new-admin-pw\n");
    assert!(output.status.success(), "{output:?}");
    let output = admin_command(&db, &["reset-password", "nobody"], "whatever-pw\n");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("user \"nobody\" not found"),
        "{output:?}"
    );
    let server = Server::start_with(&db, lockout).await;
    admin_login(&server.addr, "brand-new-admin-pw")
        .await
        .unwrap();
    let status = admin_login(&server.addr, ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    server.stop();
}

dual!(
    break_glass_unlocks_and_resets_passwords_locally,
    migrate_runs_alone_and_serving_finds_the_schema_ready,
    first_start_writes_a_generated_password_to_a_private_file_and_sigterm_exits_zero,
);
