//! SAML identity providers (Anchore's IdP model) and the user groups each
//! may assert.
//!
//! - `identity_providers`: one row per provider. The metadata document is
//!   kept as configured; what sign-in needs from it (the provider's entity
//!   id, its sign-in address, its signing certificates as base64 DER, one
//!   per line) is kept beside it, read once when the document was set.
//!   `idp_entity_id` is unique: two providers claiming one issuer would
//!   let either sign in as the other's users.
//! - `idp_group_mappings`: (provider, user group) pairs.
//!
//! No change records: nothing a check reads from memory depends on them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdentityProviders {
    Table,
    Id,
    Name,
    Enabled,
    SpEntityId,
    AcsUrl,
    MetadataXml,
    MetadataUrl,
    IdpEntityId,
    IdpSsoUrl,
    SigningCertificates,
    UsernameAttribute,
    AccountAttribute,
    RoleAttribute,
    GroupsAttribute,
    DefaultAccount,
    DefaultRole,
    RequireSignedAssertions,
    RequireSignedResponse,
    AllowIdpInitiated,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IdpGroupMappings {
    Table,
    IdpId,
    GroupId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UserGroups {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdentityProviders::Table)
                    .col(uuid(IdentityProviders::Id).primary_key())
                    .col(string_len_uniq(IdentityProviders::Name, 128))
                    .col(boolean(IdentityProviders::Enabled))
                    .col(text_null(IdentityProviders::SpEntityId))
                    .col(text_null(IdentityProviders::AcsUrl))
                    .col(text(IdentityProviders::MetadataXml))
                    .col(text_null(IdentityProviders::MetadataUrl))
                    .col(text_uniq(IdentityProviders::IdpEntityId))
                    .col(text(IdentityProviders::IdpSsoUrl))
                    .col(text(IdentityProviders::SigningCertificates))
                    .col(string_len_null(IdentityProviders::UsernameAttribute, 128))
                    .col(string_len_null(IdentityProviders::AccountAttribute, 128))
                    .col(string_len_null(IdentityProviders::RoleAttribute, 128))
                    .col(string_len_null(IdentityProviders::GroupsAttribute, 128))
                    .col(string_len_null(IdentityProviders::DefaultAccount, 128))
                    .col(string_len_null(IdentityProviders::DefaultRole, 128))
                    .col(boolean(IdentityProviders::RequireSignedAssertions))
                    .col(boolean(IdentityProviders::RequireSignedResponse))
                    .col(boolean(IdentityProviders::AllowIdpInitiated))
                    .col(timestamp_with_time_zone(IdentityProviders::CreatedAt))
                    .col(timestamp_with_time_zone(IdentityProviders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdpGroupMappings::Table)
                    .col(uuid(IdpGroupMappings::IdpId))
                    .col(uuid(IdpGroupMappings::GroupId))
                    .col(timestamp_with_time_zone(IdpGroupMappings::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdpGroupMappings::IdpId)
                            .col(IdpGroupMappings::GroupId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdpGroupMappings::Table, IdpGroupMappings::IdpId)
                            .to(IdentityProviders::Table, IdentityProviders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdpGroupMappings::Table, IdpGroupMappings::GroupId)
                            .to(UserGroups::Table, UserGroups::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_idp_group_mappings_group")
                    .table(IdpGroupMappings::Table)
                    .col(IdpGroupMappings::GroupId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdpGroupMappings::Table.into_iden(),
            IdentityProviders::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
