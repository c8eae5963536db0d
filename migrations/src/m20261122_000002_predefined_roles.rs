//! The action vocabulary and the predefined, immutable roles, as data.
//! The TSV files beside this migration are part of it: frozen with it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const ACTIONS: &str = include_str!("data/actions.tsv");
const ROLES: &str = include_str!("data/roles.tsv");
const ROLE_ACTIONS: &str = include_str!("data/role_actions.tsv");

#[derive(DeriveIden, Clone, Copy)]
enum Actions {
    Table,
    Name,
    Scope,
}

#[derive(DeriveIden, Clone, Copy)]
enum Roles {
    Table,
    Name,
    Description,
}

#[derive(DeriveIden, Clone, Copy)]
enum RoleActions {
    Table,
    Role,
    Action,
}

/// Rows of a two-column TSV, skipping `#` comments.
fn pairs(tsv: &'static str) -> Result<Vec<(&'static str, &'static str)>, DbErr> {
    tsv.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.split_once('\t')
                .ok_or_else(|| DbErr::Migration(format!("malformed seed row: {line}")))
        })
        .collect()
}

async fn insert_pairs(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + Clone,
    columns: [impl IntoIden + Clone; 2],
    rows: Vec<(&'static str, &'static str)>,
) -> Result<(), DbErr> {
    // Chunked so no statement exceeds SQLite's bound-parameter limit.
    for chunk in rows.chunks(200) {
        let mut insert = Query::insert();
        insert.into_table(table.clone()).columns(columns.clone());
        for (a, b) in chunk {
            insert
                .values([(*a).into(), (*b).into()])
                .map_err(|e| DbErr::Migration(e.to_string()))?;
        }
        manager.exec_stmt(insert.to_owned()).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        insert_pairs(
            manager,
            Actions::Table,
            [Actions::Name, Actions::Scope],
            pairs(ACTIONS)?,
        )
        .await?;
        insert_pairs(
            manager,
            Roles::Table,
            [Roles::Name, Roles::Description],
            pairs(ROLES)?,
        )
        .await?;
        insert_pairs(
            manager,
            RoleActions::Table,
            [RoleActions::Role, RoleActions::Action],
            pairs(ROLE_ACTIONS)?,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RoleActions::Table.into_iden(),
            Roles::Table.into_iden(),
            Actions::Table.into_iden(),
        ] {
            manager
                .exec_stmt(Query::delete().from_table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
