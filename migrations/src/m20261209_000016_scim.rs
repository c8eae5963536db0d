//! SCIM 2.0 provisioning.
//!
//! - `scim_tokens`: the bearer tokens an identity provider's SCIM client
//!   presents, one or more per provider; only a hash of each is kept.
//! - `users.external_id`, `users.scim_profile`: what the provider calls
//!   the user, and the profile attributes it sent (name, display name,
//!   emails) as JSON. Nothing a check reads.
//! - `user_groups.external_id`, `.scim_profile`: the same for a group the
//!   provider made (its display name as sent).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ScimTokens {
    Table,
    Id,
    KeyId,
    IdpId,
    SecretHash,
    CreatedAtMs,
    LastUsedAtMs,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    IdpName,
    ExternalId,
    ScimProfile,
}

#[derive(DeriveIden)]
enum UserGroups {
    Table,
    ExternalId,
    ScimProfile,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ScimTokens::Table)
                    .col(uuid(ScimTokens::Id).primary_key())
                    .col(string_len(ScimTokens::KeyId, 16).unique_key())
                    .col(uuid(ScimTokens::IdpId))
                    .col(string_len(ScimTokens::SecretHash, 64))
                    .col(big_integer(ScimTokens::CreatedAtMs))
                    .col(big_integer_null(ScimTokens::LastUsedAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_scim_tokens_idp")
                    .table(ScimTokens::Table)
                    .col(ScimTokens::IdpId)
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per statement.
        for column in [
            string_len_null(Users::ExternalId, 256),
            text_null(Users::ScimProfile),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_users_idp_external_id")
                    .table(Users::Table)
                    .col(Users::IdpName)
                    .col(Users::ExternalId)
                    .to_owned(),
            )
            .await?;
        for column in [
            string_len_null(UserGroups::ExternalId, 256),
            text_null(UserGroups::ScimProfile),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(UserGroups::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            UserGroups::ScimProfile.into_iden(),
            UserGroups::ExternalId.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(UserGroups::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_users_idp_external_id")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Users::ScimProfile.into_iden(),
            Users::ExternalId.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ScimTokens::Table).to_owned())
            .await?;
        Ok(())
    }
}
