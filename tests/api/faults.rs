//! A stuck database: statements and lock waits are cut off, clients'
//! deadlines are honoured, and health says so when the probe stalls.

use std::time::{Duration, Instant};

use authzd::pb;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use tonic::Code;

use crate::support::*;

/// Another session holding `table` in ACCESS EXCLUSIVE mode until dropped.
async fn lock_table(url: &str, table: &str) -> (sea_orm::DatabaseConnection, DatabaseTransaction) {
    let conn = sea_orm::Database::connect(url).await.unwrap();
    let txn = conn.begin().await.unwrap();
    txn.execute_unprepared(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .await
        .unwrap();
    (conn, txn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_fails_fast_and_the_rest_keeps_working() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database.lock_timeout_ms = 300;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    let key = app.create_key("admin", "admin", "faults", 1).await;
    // Warm: the key and its principal are in memory.
    app.key_login(&key).await.unwrap();

    let (_conn, lock) = lock_table(&app.db.url, "users").await;
    let started = Instant::now();
    let status = app
        .users()
        .get_user(as_key(
            &key,
            pb::GetUserRequest {
                account: "acme".into(),
                username: "alice".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(300 + 1000),
        "took {:?}",
        started.elapsed()
    );
    // What does not touch the table still answers: checks from memory,
    // the role catalog.
    app.key_login(&key).await.unwrap();
    app.roles()
        .list_roles(as_key(&key, pb::ListRolesRequest {}))
        .await
        .unwrap();

    lock.rollback().await.unwrap();
    app.users()
        .get_user(as_key(
            &key,
            pb::GetUserRequest {
                account: "acme".into(),
                username: "alice".into(),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_shorter_than_the_work_is_deadline_exceeded() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        // The lock wait outlasts the client's deadline.
        c.database.lock_timeout_ms = 5000;
        c.database.statement_timeout_ms = 5000;
        c.server.request_timeout_ms = 1000;
    })
    .await;
    app.create_account("acme").await;
    let key = app.create_key("admin", "admin", "faults", 1).await;
    app.key_login(&key).await.unwrap();
    let (_conn, lock) = lock_table(&app.db.url, "accounts").await;
    // The server's own deadline (a client's shorter `grpc-timeout` would
    // win, but tonic's client enforces that one itself too, so a test
    // could not tell who answered).
    let request = as_key(&key, pb::ListAccountsRequest::default());
    let started = Instant::now();
    let status = app.accounts().list_accounts(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    lock.rollback().await.unwrap();
    // The abandoned request left nothing behind: the pool still serves.
    app.accounts()
        .list_accounts(as_key(&key, pb::ListAccountsRequest::default()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_a_database_that_stops_answering_in_time() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database.health_timeout_ms = 300;
        c.database.lock_timeout_ms = 5000;
        c.database.statement_timeout_ms = 5000;
    })
    .await;
    // The probe reads the migration table: hold it.
    let (_conn, lock) = lock_table(&app.db.url, "seaql_migrations").await;
    wait_for_status(
        &app.channel,
        pb_health::health_check_response::ServingStatus::NotServing,
    )
    .await;
    lock.rollback().await.unwrap();
    wait_for_status(
        &app.channel,
        pb_health::health_check_response::ServingStatus::Serving,
    )
    .await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Each argon2 verification works in 19 MiB. A storm of wrong passwords
/// must not leave the process holding that much per attempt: RSS stays
/// under idle + hash_concurrency x 19 MiB + 64 MB (the Kubernetes manifest
/// allows 512 Mi). Unknown usernames, and no source limit, so every one of
/// the 200 logins runs a full verification (no lockout shortcut).
async fn a_password_storm_does_not_grow_memory(backend: Backend) {
    use crate::binary::Server;
    let db = TestDatabase::new(backend).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_SERVER_HASH_CONCURRENCY", "2")
            .env("AUTHZD_RATE_LIMIT_ENABLED", "false");
    })
    .await;
    let ch = connect(&server.addr).await;
    login_on(&ch, "admin", ADMIN_PASSWORD).await.unwrap();
    let idle = rss_kib(server.pid());
    let mut storm = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let ch = ch.clone();
        storm.spawn(async move {
            for i in 0..25 {
                let user = format!("nobody-{worker}-{i}");
                let status = login_on(&ch, &user, "guess").await.unwrap_err();
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
            }
        });
    }
    while let Some(done) = storm.join_next().await {
        done.unwrap();
    }
    let after = rss_kib(server.pid());
    let bound = idle + 2 * 19 * 1024 + 64 * 1024;
    eprintln!("RSS: idle {idle} KiB, after 200 failed logins {after} KiB, bound {bound} KiB");
    assert!(
        after < bound,
        "RSS grew from {idle} KiB to {after} KiB after 200 failed logins (bound {bound} KiB)"
    );
    server.stop();
}

crate::dual!(a_password_storm_does_not_grow_memory);

fn scalar(rows: &[sea_orm::QueryResult]) -> i64 {
    rows[0].try_get_by_index::<i64>(0).unwrap()
}

/// A full disk (simulated with `PRAGMA max_page_count` on the server's one
/// SQLite connection: tests run as root, so permissions cannot stop
/// writes): writes fail with UNAVAILABLE, none half-done, reads go on, the
/// file stays intact, and writes succeed again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_disk_is_unavailable_and_corrupts_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.server.background_purge = false;
    })
    .await;
    app.create_account("acme").await;
    let db = app.core.db();
    let pages = scalar(&db.query_all_raw(stmt("PRAGMA page_count")).await.unwrap());
    db.execute_unprepared(&format!("PRAGMA max_page_count = {}", pages + 3))
        .await
        .unwrap();
    let (mut created, mut refused) = (0, 0);
    for i in 0..200 {
        let result = app
            .users()
            .create_user(as_admin(pb::CreateUserRequest {
                account: "acme".into(),
                username: format!("filler_{i:03}_{}", "x".repeat(100)),
                password: "filler-password".into(),
                roles: vec!["read-only".into(), "image-analyzer".into()],
                ..Default::default()
            }))
            .await;
        match result {
            Ok(_) => created += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(!status.message().contains("full"), "{status:?}");
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    eprintln!("full disk: {created} users created, then {refused} refused");
    assert!(refused > 0, "the database never filled");
    // Nothing half-written: every user has both role bindings.
    let orphans = scalar(
        &db.query_all_raw(stmt(
            "SELECT COUNT(*) FROM users u WHERE u.account_name = 'acme' \
             AND (SELECT COUNT(*) FROM role_bindings b WHERE b.user_id = u.id) <> 2",
        ))
        .await
        .unwrap(),
    );
    assert_eq!(orphans, 0, "users without their bindings");
    let users = scalar(
        &db.query_all_raw(stmt(
            "SELECT COUNT(*) FROM users WHERE account_name = 'acme'",
        ))
        .await
        .unwrap(),
    );
    assert_eq!(users, created);
    // Reads still answer.
    app.accounts()
        .get_account(as_admin(pb::GetAccountRequest {
            name: "acme".into(),
        }))
        .await
        .unwrap();
    let check = db
        .query_all_raw(stmt("PRAGMA integrity_check"))
        .await
        .unwrap();
    assert_eq!(
        check[0].try_get_by_index::<String>(0).unwrap(),
        "ok",
        "integrity_check"
    );
    // Room again: writes work without a restart.
    db.execute_unprepared("PRAGMA max_page_count = 1073741823")
        .await
        .unwrap();
    app.create_user(
        "acme",
        "after_the_disk_filled",
        "a-password-1",
        &["read-only"],
    )
    .await;
}

fn stmt(sql: &str) -> sea_orm::Statement {
    sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, sql)
}

/// `authzd_db_pool_waiters`: with the pool's one connection stuck on a
/// locked table, the requests behind it are counted as waiting, and the
/// count returns to zero when the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_pool_connection_are_counted() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database.max_connections = 1;
        c.database.lock_timeout_ms = 3000;
        c.database.statement_timeout_ms = 5000;
    })
    .await;
    app.create_account("acme").await;
    let (_conn, lock) = lock_table(&app.db.url, "accounts").await;
    let mut stuck = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let mut accounts = app.accounts();
        stuck.spawn(async move {
            accounts
                .create_account(as_admin(pb::CreateAccountRequest {
                    name: format!("waiting-{}", uuid::Uuid::new_v4().simple()),
                    ..Default::default()
                }))
                .await
        });
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = (0, 0, 0);
    while Instant::now() < deadline {
        seen = app.core.pool_usage().unwrap();
        if seen.2 >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.0, 1, "the one connection is in use: {seen:?}");
    assert!(seen.2 >= 2, "the requests behind it are waiting: {seen:?}");
    lock.rollback().await.unwrap();
    while stuck.join_next().await.is_some() {}
    let (_, _, waiting) = app.core.pool_usage().unwrap();
    assert_eq!(waiting, 0);
}
