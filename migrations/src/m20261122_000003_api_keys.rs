//! API keys, and which actions a request authenticated by one may never
//! perform (Anchore's "caveats for API keys").

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiKeys {
    Table,
    Id,
    KeyId,
    UserId,
    OwnerUsername,
    OwnerAccount,
    Name,
    Description,
    Prefix,
    LastFour,
    SecretHash,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
    OwnerDeletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Actions {
    Table,
    Name,
    ApiKeyRestricted,
}

/// Adding, editing or removing accounts, users and credentials, role
/// members, user groups and their roles, and API keys.
const RESTRICTED: &[&str] = &[
    "createAccount",
    "updateAccount",
    "deleteAccount",
    "createUser",
    "updateUser",
    "deleteUser",
    "createRoleMember",
    "deleteRoleMember",
    "createUserGroup",
    "updateUserGroup",
    "deleteUserGroup",
    "addUserGroupUser",
    "deleteUserGroupUser",
    "addUserGroupRole",
    "deleteUserGroupRole",
    "createApiKey",
    "updateApiKey",
    "deleteApiKey",
    "selfCreateApiKey",
    "selfUpdateApiKey",
    "selfDeleteApiKey",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(uuid(ApiKeys::Id).primary_key())
                    .col(string_len_uniq(ApiKeys::KeyId, 32))
                    // No foreign key: a deleted user's keys are kept (as
                    // deleted) for the retention period.
                    .col(uuid(ApiKeys::UserId))
                    .col(string_len(ApiKeys::OwnerUsername, 128))
                    .col(string_len(ApiKeys::OwnerAccount, 128))
                    .col(string_len(ApiKeys::Name, 128))
                    .col(string_len(ApiKeys::Description, 1024))
                    .col(string_len(ApiKeys::Prefix, 16))
                    .col(string_len(ApiKeys::LastFour, 4))
                    .col(string_len(ApiKeys::SecretHash, 64))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone(ApiKeys::UpdatedAt))
                    .col(timestamp_with_time_zone(ApiKeys::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::OwnerDeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_api_keys_user_name")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::UserId)
                    .col(ApiKeys::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_owner_deleted")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::OwnerDeletedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Actions::Table)
                    .add_column(boolean(Actions::ApiKeyRestricted).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Actions::Table)
                    .value(Actions::ApiKeyRestricted, true)
                    .and_where(Expr::col(Actions::Name).is_in(RESTRICTED.iter().copied()))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Actions::Table)
                    .drop_column(Actions::ApiKeyRestricted)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await
    }
}
