//! The lockout counts failures per (user, source) ladder instead of per
//! user, so that nobody can keep a user locked out from where they sign
//! in (issue: "a lockout anyone can hold"):
//!
//! - `login_ladders`: one doubling ladder per user and `source`. The
//!   source `*` is the user's ladder for every source that has not signed
//!   in as the user before (the old per-user counts move there); a source
//!   that has gets a ladder of its own.
//! - `login_known_sources`: the sources that signed in as a user, and when
//!   last; forgotten after `lockout.remember_sources_days`.
//!
//! Not followed by change records, like the table they replace: password
//! checks are never cached.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LoginLadders {
    Table,
    UserId,
    Source,
    Failures,
    Lockouts,
    TotalFailures,
    LockedUntilMs,
    Permanent,
    LastFailureMs,
}

#[derive(DeriveIden)]
enum LoginKnownSources {
    Table,
    UserId,
    Source,
    LastSuccessMs,
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    UserId,
    Failures,
    Lockouts,
    TotalFailures,
    LockedUntilMs,
    Permanent,
    LastFailureMs,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

/// The source of the ladder shared by every source not known for the user.
const UNKNOWN: &str = "*";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginLadders::Table)
                    .col(ColumnDef::new(LoginLadders::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(LoginLadders::Source)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(LoginLadders::Failures).integer().not_null())
                    .col(ColumnDef::new(LoginLadders::Lockouts).integer().not_null())
                    .col(
                        ColumnDef::new(LoginLadders::TotalFailures)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(LoginLadders::LockedUntilMs).big_integer())
                    .col(ColumnDef::new(LoginLadders::Permanent).boolean().not_null())
                    .col(
                        ColumnDef::new(LoginLadders::LastFailureMs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(LoginLadders::UserId)
                            .col(LoginLadders::Source),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LoginLadders::Table, LoginLadders::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginKnownSources::Table)
                    .col(ColumnDef::new(LoginKnownSources::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(LoginKnownSources::Source)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LoginKnownSources::LastSuccessMs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(LoginKnownSources::UserId)
                            .col(LoginKnownSources::Source),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LoginKnownSources::Table, LoginKnownSources::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("login_known_sources_last_success")
                    .table(LoginKnownSources::Table)
                    .col(LoginKnownSources::LastSuccessMs)
                    .to_owned(),
            )
            .await?;
        // The per-user counts become the unknown sources' ladder.
        let select = Query::select()
            .column(LoginFailures::UserId)
            .expr(Expr::val(UNKNOWN))
            .columns([
                LoginFailures::Failures,
                LoginFailures::Lockouts,
                LoginFailures::TotalFailures,
                LoginFailures::LockedUntilMs,
                LoginFailures::Permanent,
                LoginFailures::LastFailureMs,
            ])
            .from(LoginFailures::Table)
            .to_owned();
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(LoginLadders::Table)
                    .columns([
                        LoginLadders::UserId,
                        LoginLadders::Source,
                        LoginLadders::Failures,
                        LoginLadders::Lockouts,
                        LoginLadders::TotalFailures,
                        LoginLadders::LockedUntilMs,
                        LoginLadders::Permanent,
                        LoginLadders::LastFailureMs,
                    ])
                    .select_from(select)
                    .map_err(|e| DbErr::Migration(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(LoginFailures::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginFailures::Table)
                    .col(
                        ColumnDef::new(LoginFailures::UserId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(LoginFailures::Failures).integer().not_null())
                    .col(ColumnDef::new(LoginFailures::Lockouts).integer().not_null())
                    .col(
                        ColumnDef::new(LoginFailures::TotalFailures)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(LoginFailures::LockedUntilMs).big_integer())
                    .col(
                        ColumnDef::new(LoginFailures::Permanent)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LoginFailures::LastFailureMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LoginFailures::Table, LoginFailures::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let select = Query::select()
            .columns([
                LoginLadders::UserId,
                LoginLadders::Failures,
                LoginLadders::Lockouts,
                LoginLadders::TotalFailures,
                LoginLadders::LockedUntilMs,
                LoginLadders::Permanent,
                LoginLadders::LastFailureMs,
            ])
            .from(LoginLadders::Table)
            .and_where(Expr::col(LoginLadders::Source).eq(UNKNOWN))
            .to_owned();
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(LoginFailures::Table)
                    .columns([
                        LoginFailures::UserId,
                        LoginFailures::Failures,
                        LoginFailures::Lockouts,
                        LoginFailures::TotalFailures,
                        LoginFailures::LockedUntilMs,
                        LoginFailures::Permanent,
                        LoginFailures::LastFailureMs,
                    ])
                    .select_from(select)
                    .map_err(|e| DbErr::Migration(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        for table in [
            LoginKnownSources::Table.into_iden(),
            LoginLadders::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
