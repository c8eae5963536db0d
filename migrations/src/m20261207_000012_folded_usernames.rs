//! Usernames that differ only by case (`Admin` beside `admin`) are refused:
//! one account's user administrator could otherwise create a look-alike of
//! another tenant's user, or of `admin`. Each user gets its username folded
//! to lower case in a column under a unique index, so the database itself
//! refuses a second `alice` in any case, even when two creations race.
//!
//! Existing data keeps working: where users already differ only by case,
//! the oldest keeps the folded name and the others keep NULL (a unique
//! index admits any number of NULLs). They are found with
//! `SELECT username, account_name FROM users WHERE folded_username IS NULL`
//! (docs/operations.md).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE users ADD COLUMN folded_username TEXT NULL")
            .await?;
        db.execute_unprepared(
            "UPDATE users SET folded_username = lower(username) \
             WHERE NOT EXISTS (SELECT 1 FROM users older \
                 WHERE lower(older.username) = lower(users.username) \
                 AND (older.created_at < users.created_at \
                      OR (older.created_at = users.created_at AND older.id < users.id)))",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX users_folded_username ON users (folded_username)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX users_folded_username")
            .await?;
        db.execute_unprepared("ALTER TABLE users DROP COLUMN folded_username")
            .await?;
        Ok(())
    }
}
