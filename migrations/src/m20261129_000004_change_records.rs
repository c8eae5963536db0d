//! Change records: every write that can change the answer of a check
//! appends (sequence, kind, id) to `changes`, so that each replica can evict
//! what its cache holds. Triggers write them, in the writing transaction,
//! so a replica of an older version (or a hand-run SQL fix) cannot forget
//! to. On Postgres the trigger also sends `NOTIFY authzd_changes` with
//! "seq kind id", delivered at commit.
//!
//! Sequence numbers come from one counter row, updated under its row lock
//! until the writing transaction ends: a number is never visible before a
//! smaller one, so a reader that has seen N never misses N-1.
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

CREATE FUNCTION authzd_record_change(change_kind TEXT, change_id TEXT) RETURNS VOID AS $$
DECLARE next BIGINT;
BEGIN
    IF change_id IS NULL THEN RETURN; END IF;
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO next;
    INSERT INTO changes (seq, kind, id, at_us)
        VALUES (next, change_kind, change_id,
                (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT);
    PERFORM pg_notify('authzd_changes', next || ' ' || change_kind || ' ' || change_id);
END $$ LANGUAGE plpgsql;

CREATE FUNCTION authzd_key_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN PERFORM authzd_record_change('key_gone', OLD.key_id); RETURN NULL; END IF;
    IF TG_OP = 'UPDATE' THEN PERFORM authzd_record_change('key', OLD.key_id); END IF;
    IF TG_OP = 'INSERT' OR NEW.key_id <> OLD.key_id THEN
        PERFORM authzd_record_change('key', NEW.key_id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER authzd_key_changed
    AFTER INSERT OR DELETE OR UPDATE OF key_id, user_id, owner_username, owner_account, name,
        secret_hash, expires_at, revoked_at, owner_deleted_at
    ON api_keys FOR EACH ROW EXECUTE FUNCTION authzd_key_changed();

CREATE FUNCTION authzd_user_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM authzd_record_change('user', OLD.username); END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.username <> OLD.username) THEN
        PERFORM authzd_record_change('user', NEW.username);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER authzd_user_changed
    AFTER INSERT OR DELETE OR UPDATE OF username, account_name, user_type, idp_name, state, password_hash
    ON users FOR EACH ROW EXECUTE FUNCTION authzd_user_changed();

CREATE FUNCTION authzd_account_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM authzd_record_change('account', OLD.name); END IF;
    IF TG_OP <> 'DELETE' THEN PERFORM authzd_record_change('account', NEW.name); END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER authzd_account_changed
    AFTER INSERT OR DELETE OR UPDATE OF name, account_type, state
    ON accounts FOR EACH ROW EXECUTE FUNCTION authzd_account_changed();

-- A role binding or a group membership changes one user's grants.
CREATE FUNCTION authzd_member_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM authzd_record_change('user', (SELECT username FROM users WHERE id = OLD.user_id));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM authzd_record_change('user', (SELECT username FROM users WHERE id = NEW.user_id));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER authzd_binding_changed
    AFTER INSERT OR DELETE OR UPDATE ON role_bindings
    FOR EACH ROW EXECUTE FUNCTION authzd_member_changed();
CREATE TRIGGER authzd_membership_changed
    AFTER INSERT OR DELETE OR UPDATE ON group_members
    FOR EACH ROW EXECUTE FUNCTION authzd_member_changed();

-- A group's grants change every member's: one record, fanned out by the
-- replicas, which know the groups of each principal they hold.
CREATE FUNCTION authzd_group_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM authzd_record_change('group', OLD.group_id::TEXT); END IF;
    IF TG_OP <> 'DELETE' THEN PERFORM authzd_record_change('group', NEW.group_id::TEXT); END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER authzd_group_grant_changed
    AFTER INSERT OR DELETE OR UPDATE ON group_grants
    FOR EACH ROW EXECUTE FUNCTION authzd_group_changed();
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER authzd_group_grant_changed ON group_grants;
DROP TRIGGER authzd_membership_changed ON group_members;
DROP TRIGGER authzd_binding_changed ON role_bindings;
DROP TRIGGER authzd_account_changed ON accounts;
DROP TRIGGER authzd_user_changed ON users;
DROP TRIGGER authzd_key_changed ON api_keys;
DROP FUNCTION authzd_group_changed();
DROP FUNCTION authzd_member_changed();
DROP FUNCTION authzd_account_changed();
DROP FUNCTION authzd_user_changed();
DROP FUNCTION authzd_key_changed();
DROP FUNCTION authzd_record_change(TEXT, TEXT);
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
