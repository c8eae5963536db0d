//! The audit trail: one hash chain of every recorded change and refusal,
//! and its head. Not followed by change records (nothing cached reads it).
//! The columns are what a listing filters on (time, actor, target, RPC,
//! outcome); the rest of a record (the actor's credential, the source, the
//! request id, the diff) is the `detail` JSON. The hash covers every
//! column.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Seq,
    AtMs,
    Kind,
    Rpc,
    Outcome,
    ActorUsername,
    TargetKind,
    TargetName,
    TargetAccount,
    Detail,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Seq,
    Hash,
}

/// The link before the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(
                        ColumnDef::new(AuditEvents::Seq)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuditEvents::AtMs).big_integer().not_null())
                    .col(ColumnDef::new(AuditEvents::Kind).text().not_null())
                    .col(ColumnDef::new(AuditEvents::Rpc).text().not_null())
                    .col(ColumnDef::new(AuditEvents::Outcome).text().not_null())
                    .col(ColumnDef::new(AuditEvents::ActorUsername).text())
                    .col(ColumnDef::new(AuditEvents::TargetKind).text())
                    .col(ColumnDef::new(AuditEvents::TargetName).text())
                    .col(ColumnDef::new(AuditEvents::TargetAccount).text())
                    .col(ColumnDef::new(AuditEvents::Detail).text().not_null())
                    .col(ColumnDef::new(AuditEvents::PrevHash).text().not_null())
                    .col(ColumnDef::new(AuditEvents::Hash).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::AtMs)
                    .to_owned(),
            )
            .await?;
        // The filters of a listing, newest first.
        for (name, column) in [
            ("idx_audit_events_actor", AuditEvents::ActorUsername),
            (
                "idx_audit_events_target_account",
                AuditEvents::TargetAccount,
            ),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(column)
                        .col(AuditEvents::Seq)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(AuditHead::Table)
                    .col(
                        ColumnDef::new(AuditHead::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuditHead::Seq).big_integer().not_null())
                    .col(ColumnDef::new(AuditHead::Hash).text().not_null())
                    .to_owned(),
            )
            .await?;
        let mut head = Query::insert();
        head.into_table(AuditHead::Table)
            .columns([AuditHead::Id, AuditHead::Seq, AuditHead::Hash])
            .values([1.into(), 0i64.into(), GENESIS.into()])
            .map_err(|e| DbErr::Migration(e.to_string()))?;
        manager.exec_stmt(head.to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditHead::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
