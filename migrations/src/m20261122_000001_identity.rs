use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Name,
    Email,
    AccountType,
    State,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    AccountName,
    UserType,
    IdpName,
    State,
    PasswordHash,
    PasswordUpdatedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Actions {
    Table,
    Name,
    Scope,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Description,
}

#[derive(DeriveIden)]
enum RoleActions {
    Table,
    Role,
    Action,
}

#[derive(DeriveIden)]
enum RoleBindings {
    Table,
    UserId,
    Role,
    AccountName,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UserGroups {
    Table,
    Id,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    GroupId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GroupGrants {
    Table,
    GroupId,
    Role,
    AccountName,
    CreatedAt,
}

fn fk(
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(string_len(Accounts::Name, 128).primary_key())
                    .col(string_len_null(Accounts::Email, 320))
                    .col(string_len(Accounts::AccountType, 16))
                    .col(string_len(Accounts::State, 16))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_accounts_state")
                    .table(Accounts::Table)
                    .col(Accounts::State)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid(Users::Id).primary_key())
                    .col(string_len_uniq(Users::Username, 128))
                    .col(string_len(Users::AccountName, 128))
                    .col(string_len(Users::UserType, 16))
                    .col(string_len_null(Users::IdpName, 128))
                    .col(string_len(Users::State, 16))
                    .col(text_null(Users::PasswordHash))
                    .col(timestamp_with_time_zone_null(Users::PasswordUpdatedAt))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .foreign_key(&mut fk(
                        (Users::Table, Users::AccountName),
                        (Accounts::Table, Accounts::Name),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_account")
                    .table(Users::Table)
                    .col(Users::AccountName)
                    .col(Users::Username)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Actions::Table)
                    .col(string_len(Actions::Name, 128).primary_key())
                    .col(string_len(Actions::Scope, 16))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(string_len(Roles::Name, 64).primary_key())
                    .col(string_len(Roles::Description, 256))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoleActions::Table)
                    .col(string_len(RoleActions::Role, 64))
                    .col(string_len(RoleActions::Action, 128))
                    .primary_key(
                        Index::create()
                            .col(RoleActions::Role)
                            .col(RoleActions::Action),
                    )
                    .foreign_key(&mut fk(
                        (RoleActions::Table, RoleActions::Role),
                        (Roles::Table, Roles::Name),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        (RoleActions::Table, RoleActions::Action),
                        (Actions::Table, Actions::Name),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoleBindings::Table)
                    .col(uuid(RoleBindings::UserId))
                    .col(string_len(RoleBindings::Role, 64))
                    .col(string_len(RoleBindings::AccountName, 128))
                    .col(timestamp_with_time_zone(RoleBindings::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RoleBindings::UserId)
                            .col(RoleBindings::Role)
                            .col(RoleBindings::AccountName),
                    )
                    .foreign_key(&mut fk(
                        (RoleBindings::Table, RoleBindings::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        (RoleBindings::Table, RoleBindings::Role),
                        (Roles::Table, Roles::Name),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        (RoleBindings::Table, RoleBindings::AccountName),
                        (Accounts::Table, Accounts::Name),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_role_bindings_role_account")
                    .table(RoleBindings::Table)
                    .col(RoleBindings::Role)
                    .col(RoleBindings::AccountName)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_role_bindings_account")
                    .table(RoleBindings::Table)
                    .col(RoleBindings::AccountName)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserGroups::Table)
                    .col(uuid(UserGroups::Id).primary_key())
                    .col(string_len_uniq(UserGroups::Name, 128))
                    .col(string_len(UserGroups::Description, 1024))
                    .col(timestamp_with_time_zone(UserGroups::CreatedAt))
                    .col(timestamp_with_time_zone(UserGroups::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GroupMembers::Table)
                    .col(uuid(GroupMembers::GroupId))
                    .col(uuid(GroupMembers::UserId))
                    .col(timestamp_with_time_zone(GroupMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(GroupMembers::GroupId)
                            .col(GroupMembers::UserId),
                    )
                    .foreign_key(&mut fk(
                        (GroupMembers::Table, GroupMembers::GroupId),
                        (UserGroups::Table, UserGroups::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        (GroupMembers::Table, GroupMembers::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_group_members_user")
                    .table(GroupMembers::Table)
                    .col(GroupMembers::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GroupGrants::Table)
                    .col(uuid(GroupGrants::GroupId))
                    .col(string_len(GroupGrants::Role, 64))
                    .col(string_len(GroupGrants::AccountName, 128))
                    .col(timestamp_with_time_zone(GroupGrants::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(GroupGrants::GroupId)
                            .col(GroupGrants::Role)
                            .col(GroupGrants::AccountName),
                    )
                    .foreign_key(&mut fk(
                        (GroupGrants::Table, GroupGrants::GroupId),
                        (UserGroups::Table, UserGroups::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        (GroupGrants::Table, GroupGrants::Role),
                        (Roles::Table, Roles::Name),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        (GroupGrants::Table, GroupGrants::AccountName),
                        (Accounts::Table, Accounts::Name),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_group_grants_account")
                    .table(GroupGrants::Table)
                    .col(GroupGrants::AccountName)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            GroupGrants::Table.into_iden(),
            GroupMembers::Table.into_iden(),
            UserGroups::Table.into_iden(),
            RoleBindings::Table.into_iden(),
            RoleActions::Table.into_iden(),
            Roles::Table.into_iden(),
            Actions::Table.into_iden(),
            Users::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
