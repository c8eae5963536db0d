//! End to end: the release binary as a child process, driven by the real
//! `grpcurl` over server reflection, on a database of its own.

use std::ffi::OsString;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::Server;

use crate::support::{ADMIN_PASSWORD, Backend, CALLER_KEY, TestDatabase, basic};

/// How long one grpcurl invocation may take.
const GRPCURL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long health may take to turn SERVING.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(15);

/// grpcurl exits with 64 + the gRPC status code when an RPC fails.
const EXIT_UNAUTHENTICATED: i32 = 64 + 16;

/// What one grpcurl run produced.
struct Outcome {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "{}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    /// The response of a successful unary call, parsed.
    #[track_caller]
    fn json(&self) -> Value {
        assert!(
            self.status.success(),
            "expected success; {}",
            self.describe()
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("grpcurl printed no JSON ({e}); {}", self.describe()))
    }

    /// A failed call with the given gRPC code name, e.g. "Unauthenticated".
    #[track_caller]
    fn assert_failed(&self, code: &str, exit_code: i32) {
        assert_eq!(
            self.status.code(),
            Some(exit_code),
            "expected exit code {exit_code}; {}",
            self.describe()
        );
        assert!(
            self.stderr.contains(&format!("Code: {code}")),
            "expected \"Code: {code}\" on stderr; {}",
            self.describe()
        );
        assert!(
            self.stdout.trim().is_empty(),
            "expected no response; {}",
            self.describe()
        );
    }
}

/// The grpcurl binary: $GRPCURL, else `grpcurl` on PATH.
fn grpcurl_path() -> OsString {
    std::env::var_os("GRPCURL")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "grpcurl".into())
}

struct Grpcurl {
    bin: OsString,
    addr: String,
}

impl Grpcurl {
    /// Fails the test (never skips it) when grpcurl cannot be run.
    async fn find() -> OsString {
        let bin = grpcurl_path();
        let output = tokio::time::timeout(
            GRPCURL_TIMEOUT,
            tokio::process::Command::new(&bin)
                .arg("-version")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("`{} -version` timed out", bin.to_string_lossy()))
        .unwrap_or_else(|e| {
            panic!(
                "cannot run grpcurl ({}): {e}; set GRPCURL to the grpcurl binary or run ./scripts/test, which installs it",
                bin.to_string_lossy()
            )
        });
        let version = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && version.contains("grpcurl"),
            "`{} -version` did not identify grpcurl ({}): {version}",
            bin.to_string_lossy(),
            output.status
        );
        bin
    }

    /// `grpcurl -plaintext [-H header]... [-d body] <addr> <args>...`
    async fn run(&self, headers: &[String], body: Option<&Value>, args: &[&str]) -> Outcome {
        let mut command = tokio::process::Command::new(&self.bin);
        command.args([
            "-plaintext",
            "-emit-defaults",
            "-connect-timeout",
            "10",
            "-max-time",
            "15",
        ]);
        for header in headers {
            command.arg("-H").arg(header);
        }
        if let Some(body) = body {
            command.arg("-d").arg(body.to_string());
        }
        command.arg(&self.addr).args(args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = format!("grpcurl {} {}", self.addr, args.join(" "));
        let output = tokio::time::timeout(GRPCURL_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{what} timed out after {GRPCURL_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        Outcome {
            what,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn call(&self, headers: &[String], method: &str, body: &Value) -> Outcome {
        self.run(headers, Some(body), &[method]).await
    }

    async fn health(&self) -> Outcome {
        self.call(&[], "grpc.health.v1.Health/Check", &json!({}))
            .await
    }

    /// Polls health until it reports SERVING, within HEALTH_TIMEOUT.
    async fn wait_until_serving(&self) {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            let outcome = self.health().await;
            if outcome.status.success() {
                let status = outcome.json();
                if status["status"] == "SERVING" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "health never became SERVING within {HEALTH_TIMEOUT:?}; last: {}",
                outcome.describe()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn header(name: &str, value: &str) -> String {
    format!("{name}: {value}")
}

fn bearer(key: &str) -> String {
    header("authorization", &format!("Bearer {key}"))
}

pub async fn grpcurl_end_to_end(backend: Backend) {
    let started = Instant::now();
    let bin = Grpcurl::find().await;
    let db = TestDatabase::new(backend).await;
    // Declared after `db`, so it is dropped (killed) before the database goes.
    let mut server = Server::start(&db).await;
    let grpcurl = Grpcurl {
        bin,
        addr: server.addr.clone(),
    };

    let admin = vec![header("authorization", &basic("admin", ADMIN_PASSWORD))];
    let caller = vec![bearer(CALLER_KEY)];
    let account = "e2e-account";
    let username = "e2e.user@example.com";
    let password = "e2e-user-password";

    // Health turns SERVING once the database answers.
    grpcurl.wait_until_serving().await;

    // 1. Reflection lists every service.
    let listed = grpcurl.run(&[], None, &["list"]).await;
    assert!(listed.status.success(), "{}", listed.describe());
    let services: Vec<&str> = listed.stdout.lines().map(str::trim).collect();
    for expected in [
        "authz.v1.AuthService",
        "authz.v1.AccountService",
        "authz.v1.UserService",
        "authz.v1.RoleService",
        "authz.v1.GroupService",
        "authz.v1.ApiKeyService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&expected),
            "`list` lacks {expected}; {}",
            listed.describe()
        );
    }

    // 2. Health, overall and for a named service.
    assert_eq!(grpcurl.health().await.json()["status"], "SERVING");
    let named = grpcurl
        .call(
            &[],
            "grpc.health.v1.Health/Check",
            &json!({"service": "authz.v1.AuthService"}),
        )
        .await
        .json();
    assert_eq!(named["status"], "SERVING");

    // 3. The admin creates an account and a read-only user in it.
    let created = grpcurl
        .call(
            &admin,
            "authz.v1.AccountService/CreateAccount",
            &json!({"name": account, "email": "e2e@example.com"}),
        )
        .await
        .json();
    assert_eq!(created["name"], account, "{created}");
    assert_eq!(created["type"], "ACCOUNT_TYPE_USER", "{created}");
    assert_eq!(created["state"], "ACCOUNT_STATE_ENABLED", "{created}");

    let user = grpcurl
        .call(
            &admin,
            "authz.v1.UserService/CreateUser",
            &json!({
                "account": account,
                "username": username,
                "password": password,
                "roles": ["read-only"],
            }),
        )
        .await
        .json();
    assert_eq!(user["username"], username, "{user}");
    assert_eq!(user["account"], account, "{user}");
    assert_eq!(user["type"], "USER_TYPE_NATIVE", "{user}");
    assert_eq!(user["state"], "USER_STATE_ENABLED", "{user}");
    assert!(
        user["roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().any(|r| r["role"] == "read-only")),
        "{user}"
    );
    let user_id = user["id"].as_str().expect("user id").to_owned();
    assert!(!user_id.is_empty(), "{user}");

    // An admin RPC without credentials is refused.
    grpcurl
        .call(
            &[],
            "authz.v1.AccountService/GetAccount",
            &json!({"name": account}),
        )
        .await
        .assert_failed("Unauthenticated", EXIT_UNAUTHENTICATED);

    // 4. A sibling service authenticates the user's Basic header.
    let user_basic = json!({"authorization": basic(username, password)});
    let authenticated = grpcurl
        .call(&caller, "authz.v1.AuthService/Authenticate", &user_basic)
        .await
        .json();
    let principal = &authenticated["principal"];
    assert_eq!(principal["username"], username, "{authenticated}");
    assert_eq!(principal["account"], account, "{authenticated}");
    assert_eq!(principal["userId"], user_id.as_str(), "{authenticated}");
    assert_eq!(
        principal["credentialKind"], "CREDENTIAL_KIND_PASSWORD",
        "{authenticated}"
    );
    assert_eq!(
        principal["accountType"], "ACCOUNT_TYPE_USER",
        "{authenticated}"
    );
    assert_eq!(principal["globalAdmin"], false, "{authenticated}");

    // A wrong password is refused.
    grpcurl
        .call(
            &caller,
            "authz.v1.AuthService/Authenticate",
            &json!({"authorization": basic(username, "not-the-password")}),
        )
        .await
        .assert_failed("Unauthenticated", EXIT_UNAUTHENTICATED);

    // 5. Authorize: read-only grants listImages, not createImage.
    let mut in_account = caller.clone();
    in_account.push(header("x-anchore-account", account));
    let decided = grpcurl
        .call(
            &in_account,
            "authz.v1.AuthService/Authorize",
            &json!({"username": username, "actions": ["listImages"]}),
        )
        .await
        .json();
    assert_eq!(decided["allowed"], true, "{decided}");
    assert_eq!(decided["account"], account, "{decided}");
    assert_eq!(decided["principal"]["username"], username, "{decided}");
    let decision = &decided["decisions"][0];
    assert_eq!(decision["action"], "listImages", "{decided}");
    assert_eq!(decision["allowed"], true, "{decided}");
    assert_eq!(decision["reason"], "DECISION_REASON_ROLE", "{decided}");
    assert_eq!(decision["role"], "read-only", "{decided}");
    assert_eq!(
        decided["decisions"].as_array().map(Vec::len),
        Some(1),
        "{decided}"
    );

    let denied = grpcurl
        .call(
            &caller,
            "authz.v1.AuthService/Authorize",
            &json!({"username": username, "actions": ["createImage"]}),
        )
        .await
        .json();
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["account"], account, "{denied}");
    let decision = &denied["decisions"][0];
    assert_eq!(decision["action"], "createImage", "{denied}");
    assert_eq!(decision["allowed"], false, "{denied}");
    assert_eq!(decision["reason"], "DECISION_REASON_NO_GRANT", "{denied}");

    // 5b. API keys: the user creates one for themselves (the value is shown
    // once), a key-authenticated admin call hits the restriction,
    // Authenticate accepts the key, and after revocation refuses it.
    let user_auth = vec![header("authorization", &basic(username, password))];
    let expires = authzd::domain::Clock::default().now() + chrono::TimeDelta::days(30);
    let created_key = grpcurl
        .call(
            &user_auth,
            "authz.v1.ApiKeyService/CreateApiKey",
            &json!({"name": "e2e-key", "expiresAt": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
        )
        .await
        .json();
    let key_value = created_key["value"].as_str().expect("key value").to_owned();
    assert!(key_value.starts_with("azk_"), "{created_key}");
    let key_auth = vec![header("authorization", &basic("_api_key", &key_value))];
    let restricted = grpcurl
        .call(
            &key_auth,
            "authz.v1.ApiKeyService/CreateApiKey",
            &json!({"name": "second", "expiresAt": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
        )
        .await;
    restricted.assert_failed("PermissionDenied", 64 + 7);
    assert!(
        restricted.stderr.contains("API key"),
        "{}",
        restricted.describe()
    );
    let listed_keys = grpcurl
        .call(&key_auth, "authz.v1.ApiKeyService/ListApiKeys", &json!({}))
        .await;
    assert!(listed_keys.status.success(), "{}", listed_keys.describe());
    assert!(
        !listed_keys.stdout.contains(&key_value),
        "the value was shown again"
    );
    let by_key = grpcurl
        .call(
            &caller,
            "authz.v1.AuthService/Authenticate",
            &json!({"authorization": basic("_api_key", &key_value)}),
        )
        .await
        .json();
    assert_eq!(by_key["principal"]["username"], username, "{by_key}");
    assert_eq!(
        by_key["principal"]["credentialKind"], "CREDENTIAL_KIND_API_KEY",
        "{by_key}"
    );
    assert_eq!(by_key["principal"]["apiKey"]["name"], "e2e-key", "{by_key}");
    let revoked = grpcurl
        .call(
            &user_auth,
            "authz.v1.ApiKeyService/UpdateApiKey",
            &json!({"name": "e2e-key", "status": "API_KEY_STATUS_REVOKED"}),
        )
        .await
        .json();
    assert_eq!(revoked["status"], "API_KEY_STATUS_REVOKED", "{revoked}");
    grpcurl
        .call(
            &caller,
            "authz.v1.AuthService/Authenticate",
            &json!({"apiKey": key_value}),
        )
        .await
        .assert_failed("Unauthenticated", EXIT_UNAUTHENTICATED);

    // 6. Disabling the account locks its users out.
    let disabled = grpcurl
        .call(
            &admin,
            "authz.v1.AccountService/SetAccountState",
            &json!({"name": account, "state": "ACCOUNT_STATE_DISABLED"}),
        )
        .await
        .json();
    assert_eq!(disabled["name"], account, "{disabled}");
    assert_eq!(disabled["state"], "ACCOUNT_STATE_DISABLED", "{disabled}");
    grpcurl
        .call(&caller, "authz.v1.AuthService/Authenticate", &user_basic)
        .await
        .assert_failed("Unauthenticated", EXIT_UNAUTHENTICATED);

    // 7. The check RPCs need a caller key: the admin's own valid
    // credentials pass with it and are refused without it or with a wrong one.
    let admin_basic = json!({"authorization": basic("admin", ADMIN_PASSWORD)});
    let admin_principal = grpcurl
        .call(&caller, "authz.v1.AuthService/Authenticate", &admin_basic)
        .await
        .json();
    assert_eq!(
        admin_principal["principal"]["username"], "admin",
        "{admin_principal}"
    );
    assert_eq!(
        admin_principal["principal"]["globalAdmin"], true,
        "{admin_principal}"
    );
    grpcurl
        .call(&[], "authz.v1.AuthService/Authenticate", &admin_basic)
        .await
        .assert_failed("Unauthenticated", EXIT_UNAUTHENTICATED);
    grpcurl
        .call(
            &[bearer("not-a-configured-caller-key")],
            "authz.v1.AuthService/Authenticate",
            &admin_basic,
        )
        .await
        .assert_failed("Unauthenticated", EXIT_UNAUTHENTICATED);
    // Admin credentials are not a caller key either.
    grpcurl
        .call(&admin, "authz.v1.AuthService/Authenticate", &admin_basic)
        .await
        .assert_failed("Unauthenticated", EXIT_UNAUTHENTICATED);

    // 8. Still healthy after all that.
    assert_eq!(grpcurl.health().await.json()["status"], "SERVING");

    server.assert_running();
    let log = server.stderr();
    assert!(
        !log.contains(password)
            && !log.contains(ADMIN_PASSWORD)
            && !log.contains(CALLER_KEY)
            && !log.contains(&key_value),
        "a secret reached the log:\n{log}"
    );
    server.stop();
    drop(db);
    eprintln!(
        "grpcurl end to end on {backend:?}: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

crate::dual!(grpcurl_end_to_end);
