//! Change records: every write that can change the answer of a check
//! appends (sequence, kind, id) to `changes`, so that each replica can evict
//! what its cache holds. Triggers write them, in the writing transaction,
//! so a replica of an older version (or a hand-run SQL fix) cannot forget
//! to. On Postgres the trigger also sends `NOTIFY authzd_changes` with
//! "seq kind id", delivered at commit.
//!
//! Sequence numbers come from one counter row, updated under its row lock
//! until the writing transaction ends: a number is never visible before a
//! smaller one, so a reader that has seen N never misses N-1. On Postgres
//! the triggers are per statement (a purge of 10,000 rows takes the counter
//! once); on SQLite, per row.
//!
//! Kinds and ids: `key` key_id (and `key_gone` when a key is deleted, so
//! replicas drop it from their index of existing ids), `user` username,
//! `account` name, `group` group id. Writes that cannot change an answer (the last-use flush)
//! produce none.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
CREATE TABLE change_counter (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO change_counter (id, seq) VALUES (1, 0);
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    id TEXT NOT NULL,
    at_us BIGINT NOT NULL
);

CREATE FUNCTION authzd_record_changes(change_kind TEXT, ids TEXT[]) RETURNS VOID AS $$
DECLARE
    n INTEGER := coalesce(array_length(ids, 1), 0);
    last BIGINT;
BEGIN
    IF n = 0 THEN RETURN; END IF;
    UPDATE change_counter SET seq = seq + n WHERE id = 1 RETURNING seq INTO last;
    INSERT INTO changes (seq, kind, id, at_us)
        SELECT last - n + t.ord, change_kind, t.id,
               (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT
        FROM unnest(ids) WITH ORDINALITY AS t(id, ord);
    -- One notification per statement: a single change names itself, a
    -- batch only wakes the replicas, which read the records.
    IF n = 1 THEN
        PERFORM pg_notify('authzd_changes', last || ' ' || change_kind || ' ' || ids[1]);
    ELSE
        PERFORM pg_notify('authzd_changes', last || ' batch ' || n);
    END IF;
END $$ LANGUAGE plpgsql;

-- Statement-level triggers with transition tables: a statement touching
-- 10,000 rows takes the counter once, not 10,000 times. (Postgres allows
-- no column list with transition tables, so updates compare the columns
-- that matter: the last-use flush produces no record.)
CREATE FUNCTION authzd_keys_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authzd_record_changes('key', ARRAY(SELECT key_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM authzd_record_changes('key_gone', ARRAY(SELECT key_id FROM old_rows));
    ELSE
        PERFORM authzd_record_changes('key', ARRAY(
            SELECT n.key_id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.key_id, n.user_id, n.owner_username, n.owner_account, n.name, n.secret_hash,
                   n.expires_at, n.revoked_at, n.owner_deleted_at)
                  IS DISTINCT FROM
                  (o.key_id, o.user_id, o.owner_username, o.owner_account, o.name, o.secret_hash,
                   o.expires_at, o.revoked_at, o.owner_deleted_at)));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION authzd_users_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authzd_record_changes('user', ARRAY(SELECT username FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM authzd_record_changes('user', ARRAY(SELECT username FROM old_rows));
    ELSE
        PERFORM authzd_record_changes('user', ARRAY(
            SELECT o.username FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.username, n.account_name, n.user_type, n.idp_name, n.state, n.password_hash)
                  IS DISTINCT FROM
                  (o.username, o.account_name, o.user_type, o.idp_name, o.state, o.password_hash)));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION authzd_accounts_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authzd_record_changes('account', ARRAY(SELECT name FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM authzd_record_changes('account', ARRAY(SELECT name FROM old_rows));
    ELSE
        PERFORM authzd_record_changes('account', ARRAY(
            SELECT o.name FROM new_rows n JOIN old_rows o ON o.name = n.name
            WHERE (n.account_type, n.state) IS DISTINCT FROM (o.account_type, o.state)));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

-- A role binding or a group membership changes its user's grants. The
-- rows of a user being deleted find no username: the user's own record
-- covers them.
CREATE FUNCTION authzd_members_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authzd_record_changes('user', ARRAY(
            SELECT DISTINCT u.username FROM new_rows r JOIN users u ON u.id = r.user_id));
    ELSE
        PERFORM authzd_record_changes('user', ARRAY(
            SELECT DISTINCT u.username FROM old_rows r JOIN users u ON u.id = r.user_id));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

-- A group's grants change every member's: one record per group, fanned out
-- by the replicas, which know the groups of each user they hold.
CREATE FUNCTION authzd_groups_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authzd_record_changes('group', ARRAY(SELECT DISTINCT group_id::TEXT FROM new_rows));
    ELSE
        PERFORM authzd_record_changes('group', ARRAY(SELECT DISTINCT group_id::TEXT FROM old_rows));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER authzd_api_keys_inserted AFTER INSERT ON api_keys REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_keys_changed();
CREATE TRIGGER authzd_api_keys_deleted AFTER DELETE ON api_keys REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_keys_changed();
CREATE TRIGGER authzd_api_keys_updated AFTER UPDATE ON api_keys REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_keys_changed();
CREATE TRIGGER authzd_users_inserted AFTER INSERT ON users REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_users_changed();
CREATE TRIGGER authzd_users_deleted AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_users_changed();
CREATE TRIGGER authzd_users_updated AFTER UPDATE ON users REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_users_changed();
CREATE TRIGGER authzd_accounts_inserted AFTER INSERT ON accounts REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_accounts_changed();
CREATE TRIGGER authzd_accounts_deleted AFTER DELETE ON accounts REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_accounts_changed();
CREATE TRIGGER authzd_accounts_updated AFTER UPDATE ON accounts REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_accounts_changed();
CREATE TRIGGER authzd_role_bindings_inserted AFTER INSERT ON role_bindings REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_members_changed();
CREATE TRIGGER authzd_role_bindings_deleted AFTER DELETE ON role_bindings REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_members_changed();
CREATE TRIGGER authzd_group_members_inserted AFTER INSERT ON group_members REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_members_changed();
CREATE TRIGGER authzd_group_members_deleted AFTER DELETE ON group_members REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_members_changed();
CREATE TRIGGER authzd_group_grants_inserted AFTER INSERT ON group_grants REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_groups_changed();
CREATE TRIGGER authzd_group_grants_deleted AFTER DELETE ON group_grants REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_groups_changed();
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER authzd_api_keys_inserted ON api_keys;
DROP TRIGGER authzd_api_keys_deleted ON api_keys;
DROP TRIGGER authzd_api_keys_updated ON api_keys;
DROP TRIGGER authzd_users_inserted ON users;
DROP TRIGGER authzd_users_deleted ON users;
DROP TRIGGER authzd_users_updated ON users;
DROP TRIGGER authzd_accounts_inserted ON accounts;
DROP TRIGGER authzd_accounts_deleted ON accounts;
DROP TRIGGER authzd_accounts_updated ON accounts;
DROP TRIGGER authzd_role_bindings_inserted ON role_bindings;
DROP TRIGGER authzd_role_bindings_deleted ON role_bindings;
DROP TRIGGER authzd_group_members_inserted ON group_members;
DROP TRIGGER authzd_group_members_deleted ON group_members;
DROP TRIGGER authzd_group_grants_inserted ON group_grants;
DROP TRIGGER authzd_group_grants_deleted ON group_grants;
DROP FUNCTION authzd_groups_changed();
DROP FUNCTION authzd_members_changed();
DROP FUNCTION authzd_accounts_changed();
DROP FUNCTION authzd_users_changed();
DROP FUNCTION authzd_keys_changed();
DROP FUNCTION authzd_record_changes(TEXT, TEXT[]);
DROP TABLE changes;
DROP TABLE change_counter;
"#;

/// SQLite has no functions or NOTIFY: each trigger bumps the counter and
/// copies it. One process writes at a time, so the order holds.
fn sqlite_record(kind: &str, id: &str) -> String {
    format!(
        "UPDATE change_counter SET seq = seq + 1 WHERE id = 1; \
         INSERT INTO changes (seq, kind, id, at_us) \
         SELECT seq, '{kind}', {id}, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) \
         FROM change_counter WHERE id = 1 AND {id} IS NOT NULL;"
    )
}

fn sqlite_up() -> Vec<String> {
    let mut sql = vec![
        "CREATE TABLE change_counter (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL)".to_owned(),
        "INSERT INTO change_counter (id, seq) VALUES (1, 0)".to_owned(),
        "CREATE TABLE changes (seq BIGINT PRIMARY KEY, kind VARCHAR(16) NOT NULL, id TEXT NOT NULL, at_us BIGINT NOT NULL)".to_owned(),
    ];
    let user_of = |row: &str| format!("(SELECT username FROM users WHERE id = {row}.user_id)");
    // (trigger, event, table, kind, id of OLD/NEW row)
    let triggers: &[(&str, &str, &str, &str, &str)] = &[
        ("key_inserted", "INSERT", "api_keys", "key", "NEW.key_id"),
        (
            "key_deleted",
            "DELETE",
            "api_keys",
            "key_gone",
            "OLD.key_id",
        ),
        (
            "key_updated",
            "UPDATE OF key_id, user_id, owner_username, owner_account, name, secret_hash, expires_at, revoked_at, owner_deleted_at",
            "api_keys",
            "key",
            "OLD.key_id",
        ),
        ("user_inserted", "INSERT", "users", "user", "NEW.username"),
        ("user_deleted", "DELETE", "users", "user", "OLD.username"),
        (
            "user_updated",
            "UPDATE OF username, account_name, user_type, idp_name, state, password_hash",
            "users",
            "user",
            "OLD.username",
        ),
        (
            "account_inserted",
            "INSERT",
            "accounts",
            "account",
            "NEW.name",
        ),
        (
            "account_deleted",
            "DELETE",
            "accounts",
            "account",
            "OLD.name",
        ),
        (
            "account_updated",
            "UPDATE OF name, account_type, state",
            "accounts",
            "account",
            "OLD.name",
        ),
        ("binding_inserted", "INSERT", "role_bindings", "user", "NEW"),
        ("binding_deleted", "DELETE", "role_bindings", "user", "OLD"),
        (
            "membership_inserted",
            "INSERT",
            "group_members",
            "user",
            "NEW",
        ),
        (
            "membership_deleted",
            "DELETE",
            "group_members",
            "user",
            "OLD",
        ),
        (
            "group_grant_inserted",
            "INSERT",
            "group_grants",
            "group",
            "NEW.group_id",
        ),
        (
            "group_grant_deleted",
            "DELETE",
            "group_grants",
            "group",
            "OLD.group_id",
        ),
    ];
    for (name, event, table, kind, id) in triggers {
        let id = if *kind == "user" && (*id == "NEW" || *id == "OLD") {
            user_of(id)
        } else {
            (*id).to_owned()
        };
        sql.push(format!(
            "CREATE TRIGGER authzd_{name} AFTER {event} ON {table} FOR EACH ROW BEGIN {} END",
            sqlite_record(kind, &id)
        ));
    }
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_UP).await?;
            }
            _ => {
                for statement in sqlite_up() {
                    db.execute_unprepared(&statement).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_DOWN).await?;
            }
            _ => {
                for statement in sqlite_up()
                    .iter()
                    .filter_map(|s| s.strip_prefix("CREATE TRIGGER "))
                {
                    let name = statement.split(' ').next().unwrap_or_default();
                    db.execute_unprepared(&format!("DROP TRIGGER {name}"))
                        .await?;
                }
                for table in ["changes", "change_counter"] {
                    db.execute_unprepared(&format!("DROP TABLE {table}"))
                        .await?;
                }
            }
        }
        Ok(())
    }
}
