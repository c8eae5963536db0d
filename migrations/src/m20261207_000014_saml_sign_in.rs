//! What a SAML sign-in remembers, in the database so that any replica can
//! finish a sign-in another started, and none accepts a replay:
//!
//! - `saml_requests`: the AuthnRequests sent and not yet answered, until
//!   they expire; an answer spends its request (deleted on use).
//! - `saml_assertions`: the assertions consumed, until they expire: a
//!   second use of one is refused on every replica.
//! - `group_members.idp_id`: the provider whose assertion made a
//!   membership (NULL: an administrator made it). A sign-in adds and removes
//!   only its own provider's, never an administrator's.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SamlRequests {
    Table,
    Id,
    IdpId,
    ExpiresAtMs,
}

#[derive(DeriveIden)]
enum SamlAssertions {
    Table,
    IdpId,
    AssertionId,
    ExpiresAtMs,
}

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    IdpId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(GroupMembers::Table)
                    .add_column(uuid_null(GroupMembers::IdpId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SamlRequests::Table)
                    .col(string_len(SamlRequests::Id, 64).primary_key())
                    .col(uuid(SamlRequests::IdpId))
                    .col(big_integer(SamlRequests::ExpiresAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_saml_requests_expiry")
                    .table(SamlRequests::Table)
                    .col(SamlRequests::ExpiresAtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SamlAssertions::Table)
                    .col(uuid(SamlAssertions::IdpId))
                    .col(string_len(SamlAssertions::AssertionId, 256))
                    .col(big_integer(SamlAssertions::ExpiresAtMs))
                    .primary_key(
                        Index::create()
                            .col(SamlAssertions::IdpId)
                            .col(SamlAssertions::AssertionId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_saml_assertions_expiry")
                    .table(SamlAssertions::Table)
                    .col(SamlAssertions::ExpiresAtMs)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(GroupMembers::Table)
                    .drop_column(GroupMembers::IdpId)
                    .to_owned(),
            )
            .await?;
        for table in [
            SamlAssertions::Table.into_iden(),
            SamlRequests::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
