//! On SQLite the group-grant triggers of `m20261129_000004_change_records`
//! copied `group_id` as stored: a 16-byte BLOB, which the TEXT `id` column
//! keeps as a BLOB (SQLite converts numbers to text there, never blobs). The
//! follower could not read such a record, so the first group grant stopped
//! every replica's cache from following. The triggers now write the id as
//! 32 hex digits (a form `Uuid::parse_str` reads), and records already
//! written are rewritten the same way. Postgres wrote `group_id::TEXT`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The SQLite record statement of the change-records migration (frozen
/// there; repeated here because migrations never import one another).
fn sqlite_record(kind: &str, id: &str) -> String {
    format!(
        "UPDATE change_counter SET seq = seq + 1 WHERE id = 1; \
         INSERT INTO changes (seq, kind, id, at_us) \
         SELECT seq, '{kind}', {id}, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) \
         FROM change_counter WHERE id = 1 AND {id} IS NOT NULL;"
    )
}

/// (trigger, event, row id) of the two group-grant triggers.
const TRIGGERS: [(&str, &str, &str); 2] = [
    ("group_grant_inserted", "INSERT", "NEW.group_id"),
    ("group_grant_deleted", "DELETE", "OLD.group_id"),
];

fn create(name: &str, event: &str, id: &str) -> String {
    format!(
        "CREATE TRIGGER authzd_{name} AFTER {event} ON group_grants FOR EACH ROW BEGIN {} END",
        sqlite_record("group", id)
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for (name, event, id) in TRIGGERS {
            db.execute_unprepared(&format!("DROP TRIGGER authzd_{name}"))
                .await?;
            db.execute_unprepared(&create(name, event, &format!("lower(hex({id}))")))
                .await?;
        }
        db.execute_unprepared("UPDATE changes SET id = lower(hex(id)) WHERE typeof(id) = 'blob'")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for (name, event, id) in TRIGGERS {
            db.execute_unprepared(&format!("DROP TRIGGER authzd_{name}"))
                .await?;
            db.execute_unprepared(&create(name, event, id)).await?;
        }
        Ok(())
    }
}
