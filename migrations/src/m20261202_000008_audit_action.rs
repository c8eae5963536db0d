//! `listAuditEvents`: reading an account's audit trail, granted to the
//! roles that manage the account's users. Not restricted for API keys:
//! reading is not a change.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const ACTION: &str = "listAuditEvents";
const ROLES: [&str; 2] = ["full-control", "account-user-admin"];

#[derive(DeriveIden)]
enum Actions {
    Table,
    Name,
    Scope,
}

#[derive(DeriveIden)]
enum RoleActions {
    Table,
    Role,
    Action,
}

fn to_migration(e: impl std::fmt::Display) -> DbErr {
    DbErr::Migration(e.to_string())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut action = Query::insert();
        action
            .into_table(Actions::Table)
            .columns([Actions::Name, Actions::Scope])
            .values([ACTION.into(), "account".into()])
            .map_err(to_migration)?;
        manager.exec_stmt(action.to_owned()).await?;
        let mut grants = Query::insert();
        grants
            .into_table(RoleActions::Table)
            .columns([RoleActions::Role, RoleActions::Action]);
        for role in ROLES {
            grants
                .values([role.into(), ACTION.into()])
                .map_err(to_migration)?;
        }
        manager.exec_stmt(grants.to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(RoleActions::Table)
                    .and_where(Expr::col(RoleActions::Action).eq(ACTION))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(Actions::Table)
                    .and_where(Expr::col(Actions::Name).eq(ACTION))
                    .to_owned(),
            )
            .await
    }
}
