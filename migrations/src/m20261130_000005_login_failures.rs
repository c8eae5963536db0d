//! Password lockout state, one row per user with recent failures. Not
//! followed by change records: password checks are never cached, and a
//! failure counter must not evict anything.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

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

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
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
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LoginFailures::Table).to_owned())
            .await
    }
}
