//! What must not grow with the data: on a Postgres database of 100,000
//! users, 2,000 groups and 100,000 API keys, a page of users with their
//! grants is index-driven and each statement of an account's purge reads
//! each table at most once (checked with EXPLAIN ANALYZE on the real
//! plans), and a page costs the same at the end of the listing as at the
//! start.

use std::time::{Duration, Instant};

use authzd::pb;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::Value;

use crate::support::*;

// Bulk loading is not a request: the per-statement timeout (2 s) would
// cut a 100k-row insert on a loaded machine.
const LOAD: &str = r#"
SET statement_timeout = 0;
SET session_replication_role = replica;
INSERT INTO accounts (name, email, account_type, state, created_at, updated_at) VALUES
    ('big', NULL, 'user', 'enabled', now(), now()),
    ('gone', NULL, 'user', 'disabled', now(), now());
INSERT INTO users (id, username, account_name, user_type, idp_name, state, password_hash,
                   password_updated_at, created_at, updated_at)
    SELECT gen_random_uuid(), 'u' || lpad(i::text, 6, '0'),
           CASE WHEN i % 100 = 0 THEN 'gone' ELSE 'big' END,
           'native', NULL, 'enabled', NULL, NULL, now(), now()
    FROM generate_series(1, 100000) i;
INSERT INTO user_groups (id, name, description, created_at, updated_at)
    SELECT gen_random_uuid(), 'g' || i, '', now(), now() FROM generate_series(1, 2000) i;
INSERT INTO group_members (group_id, user_id, created_at)
    SELECT g.id, u.id, now()
    FROM (SELECT id, row_number() OVER () AS n FROM users) u
    JOIN (SELECT id, row_number() OVER () AS n FROM user_groups) g ON g.n = (u.n % 2000) + 1;
INSERT INTO group_grants (group_id, role, account_name, created_at)
    SELECT id, 'read-only', 'big', now() FROM user_groups;
INSERT INTO role_bindings (user_id, role, account_name, created_at)
    SELECT id, 'read-write', account_name, now() FROM users;
INSERT INTO api_keys (id, key_id, user_id, owner_username, owner_account, name, description,
                      prefix, last_four, secret_hash, created_at, updated_at, expires_at)
    SELECT gen_random_uuid(), substr(md5(id::text), 1, 12), id, username, account_name, 'k', '',
           'azk', 'abcd', md5(username) || md5(username), now(), now(), now() + interval '30 days'
    FROM users;
SET session_replication_role = origin;
ANALYZE;
RESET statement_timeout;
"#;

/// Every (node type, relation, repeated) of a JSON plan; `repeated` marks
/// nodes on the inner side of a nested loop, run once per outer row.
fn nodes(plan: &Value, repeated: bool, out: &mut Vec<(String, String, bool)>) {
    let kind = plan
        .get("Node Type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let relation = plan
        .get("Relation Name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    out.push((kind.to_owned(), relation.to_owned(), repeated));
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for (i, child) in children.iter().enumerate() {
            let inner = kind == "Nested Loop" && i > 0;
            let subplan =
                child.get("Parent Relationship").and_then(Value::as_str) == Some("SubPlan");
            nodes(child, repeated || inner || subplan, out);
        }
    }
}

async fn explain(db: &impl ConnectionTrait, sql: &str) -> (Vec<(String, String, bool)>, f64) {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let plan: Value = row.try_get("", "QUERY PLAN").unwrap();
    // A drifted EXPLAIN shape must not read as "no scans at all".
    assert!(
        plan[0]["Plan"]["Node Type"].is_string(),
        "not the EXPLAIN JSON expected: {plan}"
    );
    let mut found = Vec::new();
    nodes(&plan[0]["Plan"], false, &mut found);
    let ms = plan[0]["Execution Time"].as_f64().unwrap_or_default();
    (found, ms)
}

/// No full scan of a table of users, grants or keys.
fn no_full_scans(what: &str, plan: &[(String, String, bool)]) {
    for (kind, relation, _) in plan {
        assert!(
            !(kind == "Seq Scan" && relation != "accounts"),
            "{what} scans {relation} in full: {plan:?}"
        );
    }
}

/// No full scan repeated per row: a statement reads each table at most
/// once from end to end, so its cost is linear in the data.
fn no_repeated_scans(what: &str, plan: &[(String, String, bool)]) {
    for (kind, relation, repeated) in plan {
        assert!(
            !(kind == "Seq Scan" && *repeated && relation != "accounts"),
            "{what} scans {relation} in full for every row: {plan:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listing_and_purge_are_index_driven_at_100k_users() {
    let app = spawn_app(Backend::Postgres).await;
    let db = app.core.db();
    let loading = Instant::now();
    db.execute_unprepared(LOAD).await.unwrap();
    eprintln!(
        "loaded 100k users, 2k groups, 100k keys in {:?}",
        loading.elapsed()
    );

    // A page of 1000 users with their grants, deep in the listing.
    let sql = authzd::store::principals::list_users_sql(DbBackend::Postgres, false, true)
        .replace("$1", "'u050000'")
        .replace("$2", "1001");
    let (plan, ms) = explain(db, &sql).await;
    eprintln!("a page of 1000 users with grants: {ms:.1} ms, plan {plan:?}");
    no_full_scans("a page of users", &plan);
    assert!(
        plan.iter()
            .any(|(kind, relation, _)| kind.starts_with("Index") && relation == "users"),
        "a page of users reads users by an index: {plan:?}"
    );

    // The purge of an account of 10,000 users, statement by statement, in
    // a transaction rolled back.
    assert!(!authzd::store::users::PURGE_ACCOUNT.is_empty());
    for statement in authzd::store::users::PURGE_ACCOUNT {
        let sql = statement.replace("$1", "'gone'").replace("$2", "now()");
        let txn = sea_orm::TransactionTrait::begin(&**db).await.unwrap();
        let (plan, ms) = explain(&txn, &sql).await;
        txn.rollback().await.unwrap();
        eprintln!(
            "purge {ms:.1} ms: {}",
            &statement[..statement.len().min(60)]
        );
        assert!(
            plan.iter().any(|(_, relation, _)| !relation.is_empty()),
            "{statement}: a plan that reads no table: {plan:?}"
        );
        no_repeated_scans(statement, &plan);
    }

    // Through the RPC: the first pages and pages at the end cost alike.
    let mut users = app.users();
    let mut token = String::new();
    let mut times = Vec::new();
    for page in 0..100 {
        let started = Instant::now();
        let listed = users
            .list_all_users(as_admin(pb::ListAllUsersRequest {
                page_size: 1000,
                page_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        times.push(started.elapsed());
        if page > 0 {
            assert!(
                listed.users.iter().all(|u| u.roles.len() == 2),
                "{:?}",
                listed.users[0]
            );
        }
        token = listed.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let first: Duration = times[1..6].iter().sum::<Duration>() / 5;
    let last: Duration = times[times.len() - 5..].iter().sum::<Duration>() / 5;
    eprintln!(
        "ListAllUsers, 1000 a page: {} pages, first pages {first:?} each, last pages {last:?} each",
        times.len()
    );
    assert!(times.len() >= 100, "expected 100 pages of 1000");
    assert!(
        last < first * 3 + Duration::from_millis(50),
        "pages grow slower as the listing goes on: first {first:?}, last {last:?}"
    );
}
