use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    SqlErr,
};
use uuid::Uuid;

use super::entity::{accounts, group_members, role_bindings, users};
use super::{DbResultExt, StoreResult, classify_conflict, classify_missing_parent, listing};
use crate::error::{Error, quoted};
use crate::model::page::PageRequest;
use crate::model::{Account, Grant, User, UserState, UserType};

impl TryFrom<users::Model> for User {
    type Error = Error;

    fn try_from(m: users::Model) -> StoreResult<Self> {
        Ok(User {
            user_type: UserType::from_stored(&m.user_type)?,
            state: UserState::from_stored(&m.state)?,
            id: m.id,
            username: m.username,
            account: m.account_name,
            idp_name: m.idp_name,
            password_updated_at: m.password_updated_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// How many users a listing of `account` (or of all) pages through.
pub async fn count_users(
    db: &impl ConnectionTrait,
    account: Option<&str>,
    page: &PageRequest,
) -> StoreResult<u64> {
    let mut query = users::Entity::find();
    if let Some(account) = account {
        query = query.filter(users::Column::AccountName.eq(account));
    }
    if let Some(prefix) = listing::prefix_of(users::Column::Username, page) {
        query = query.filter(prefix);
    }
    query.count(db).await.db()
}

/// A user, their account and their password hash: everything
/// authentication needs, in one indexed query.
pub struct UserRecord {
    pub user: User,
    pub account: Account,
    pub password_hash: Option<String>,
}

fn record(row: (users::Model, Option<accounts::Model>)) -> StoreResult<UserRecord> {
    let (user, account) = row;
    let account = account.ok_or_else(|| Error::internal("user without an account"))?;
    let password_hash = user.password_hash.clone();
    Ok(UserRecord {
        user: User::try_from(user)?,
        account: Account::try_from(account)?,
        password_hash,
    })
}

pub async fn find_user_record(
    db: &impl ConnectionTrait,
    username: &str,
) -> StoreResult<Option<UserRecord>> {
    users::Entity::find()
        .filter(users::Column::Username.eq(username))
        .find_also_related(accounts::Entity)
        .one(db)
        .await
        .db()?
        .map(record)
        .transpose()
}

/// The user whose name folds to the same as `username` (case aside: no
/// two users differ only by case).
pub async fn find_user_record_folded(
    db: &impl ConnectionTrait,
    username: &str,
) -> StoreResult<Option<UserRecord>> {
    users::Entity::find()
        .filter(users::Column::FoldedUsername.eq(username.to_ascii_lowercase()))
        .find_also_related(accounts::Entity)
        .one(db)
        .await
        .db()?
        .map(record)
        .transpose()
}

/// The user with that id, without their account.
pub async fn find_user_by_id(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<Option<User>> {
    users::Entity::find_by_id(id)
        .one(db)
        .await
        .db()?
        .map(User::try_from)
        .transpose()
}

/// The user of that name, only if they belong to `account`.
pub async fn find_user_in_account(
    db: &impl ConnectionTrait,
    account: &str,
    username: &str,
) -> StoreResult<Option<User>> {
    users::Entity::find()
        .filter(users::Column::Username.eq(username))
        .filter(users::Column::AccountName.eq(account))
        .one(db)
        .await
        .db()?
        .map(User::try_from)
        .transpose()
}

pub async fn find_users_by_name(
    db: &impl ConnectionTrait,
    usernames: &[String],
) -> StoreResult<Vec<User>> {
    users::Entity::find()
        .filter(users::Column::Username.is_in(usernames.iter().map(String::as_str)))
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(User::try_from)
        .collect()
}

pub async fn create_user(
    db: &impl ConnectionTrait,
    user: &User,
    password_hash: Option<String>,
) -> StoreResult<()> {
    let model = users::ActiveModel {
        id: Set(user.id),
        username: Set(user.username.clone()),
        folded_username: Set(Some(user.username.to_ascii_lowercase())),
        account_name: Set(user.account.clone()),
        user_type: Set(user.user_type.as_str().to_owned()),
        idp_name: Set(user.idp_name.clone()),
        state: Set(user.state.as_str().to_owned()),
        password_hash: Set(password_hash),
        password_updated_at: Set(user.password_updated_at),
        created_at: Set(user.created_at),
        updated_at: Set(user.updated_at),
    };
    users::Entity::insert(model)
        .exec_without_returning(db)
        .await
        .map_err(|e| match e.sql_err() {
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                Error::not_found(format!("account {}", quoted(&user.account)))
            }
            // The username's own index or the folded one: either way a user
            // of that name, in this case or another, exists.
            _ => classify_conflict(
                e,
                format!(
                    "user {} (or one differing only by case)",
                    quoted(&user.username)
                ),
            ),
        })?;
    Ok(())
}

pub async fn delete_user(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<bool> {
    // Explicit, so the outcome does not depend on SQLite's foreign-key pragma.
    role_bindings::Entity::delete_many()
        .filter(role_bindings::Column::UserId.eq(id))
        .exec(db)
        .await
        .db()?;
    group_members::Entity::delete_many()
        .filter(group_members::Column::UserId.eq(id))
        .exec(db)
        .await
        .db()?;
    let result = users::Entity::delete_by_id(id).exec(db).await.db()?;
    Ok(result.rows_affected > 0)
}

/// Removes every user of the account with their bindings and memberships,
/// and every grant held in the account. Returns how many users went.
/// The statements of an account's purge: each is driven by the index on
/// `users.account_name` and the indexes on `user_id`, not by a list of ids,
/// so purging a large account never scans the grant tables.
pub const PURGE_ACCOUNT: [&str; 6] = [
    "UPDATE api_keys SET owner_deleted_at = $2 WHERE owner_deleted_at IS NULL \
     AND user_id IN (SELECT id FROM users WHERE account_name = $1)",
    "DELETE FROM role_bindings WHERE user_id IN (SELECT id FROM users WHERE account_name = $1)",
    "DELETE FROM group_members WHERE user_id IN (SELECT id FROM users WHERE account_name = $1)",
    "DELETE FROM role_bindings WHERE account_name = $1",
    "DELETE FROM group_grants WHERE account_name = $1",
    "DELETE FROM users WHERE account_name = $1",
];

/// Removes every user of the account with their bindings and memberships,
/// and every grant held in the account; their keys are marked. Returns how
/// many users went.
pub async fn delete_users_of_account(
    db: &impl ConnectionTrait,
    account: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let mut deleted = 0;
    for (i, text) in PURGE_ACCOUNT.iter().enumerate() {
        let mut values = vec![sea_orm::Value::from(account)];
        if i == 0 {
            values.push(now.into());
        }
        deleted = db
            .execute_raw(super::sql(db, text, values))
            .await
            .db()?
            .rows_affected();
    }
    Ok(deleted)
}

pub async fn set_password_hash(
    db: &impl ConnectionTrait,
    id: Uuid,
    hash: String,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let result = users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(hash))
        .col_expr(users::Column::PasswordUpdatedAt, Expr::value(now))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected > 0)
}

pub async fn set_user_state(
    db: &impl ConnectionTrait,
    id: Uuid,
    state: UserState,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let result = users::Entity::update_many()
        .col_expr(users::Column::State, Expr::value(state.as_str()))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected > 0)
}

pub async fn create_binding(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    role: &str,
    account: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let model = role_bindings::ActiveModel {
        user_id: Set(user_id),
        role: Set(role.to_owned()),
        account_name: Set(account.to_owned()),
        created_at: Set(now),
    };
    role_bindings::Entity::insert(model)
        .exec_without_returning(db)
        .await
        .map_err(|e| {
            classify_missing_parent(
                e,
                format!(
                    "role {role} in account {account}",
                    role = quoted(role),
                    account = quoted(account)
                ),
            )
        })?;
    Ok(())
}

pub async fn delete_binding(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    role: &str,
    account: &str,
) -> StoreResult<bool> {
    let result = role_bindings::Entity::delete_many()
        .filter(role_bindings::Column::UserId.eq(user_id))
        .filter(role_bindings::Column::Role.eq(role))
        .filter(role_bindings::Column::AccountName.eq(account))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected > 0)
}

/// Direct grants first, then by account, role and group.
pub fn sort_grants(grants: &mut [Grant]) {
    grants.sort_by(|a, b| {
        (!a.via.is_direct(), &a.account, &a.role, &a.via).cmp(&(
            !b.via.is_direct(),
            &b.account,
            &b.role,
            &b.via,
        ))
    });
}
