use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, JoinType,
    QueryFilter, QueryOrder, QuerySelect, RelationTrait,
};
use uuid::Uuid;

use super::entity::{accounts, group_grants, group_members, role_bindings, user_groups, users};
use super::{DbResultExt, StoreResult, classify_conflict, classify_missing_parent};
use crate::domain::model::{Account, Grant, User, UserState, UserType};
use crate::domain::page::{Page, PageRequest};
use crate::error::Error;

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

/// Users of one account (`Some`) or of all accounts (`None`), by username.
pub async fn list_users(
    db: &impl ConnectionTrait,
    account: Option<&str>,
    page: &PageRequest,
) -> StoreResult<Page<User>> {
    let mut query = users::Entity::find()
        .order_by_asc(users::Column::Username)
        .limit(page.limit + 1);
    if let Some(account) = account {
        query = query.filter(users::Column::AccountName.eq(account));
    }
    if let Some(after) = page.after.as_ref().and_then(|key| key.first()) {
        query = query.filter(users::Column::Username.gt(after.as_str()));
    }
    let rows = query
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(User::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page.limit, |u| {
        vec![u.username.as_str()]
    }))
}

pub async fn create_user(
    db: &impl ConnectionTrait,
    user: &User,
    password_hash: Option<String>,
) -> StoreResult<()> {
    let model = users::ActiveModel {
        id: Set(user.id),
        username: Set(user.username.clone()),
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
        .map_err(|e| classify_conflict(e, format!("user {:?}", user.username)))?;
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
pub async fn delete_users_of_account(
    db: &impl ConnectionTrait,
    account: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let ids = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .filter(users::Column::AccountName.eq(account))
        .into_tuple::<Uuid>()
        .all(db)
        .await
        .db()?;
    super::api_keys::mark_owner_deleted(db, &ids, now).await?;
    for chunk in ids.chunks(500) {
        role_bindings::Entity::delete_many()
            .filter(role_bindings::Column::UserId.is_in(chunk.iter().copied()))
            .exec(db)
            .await
            .db()?;
        group_members::Entity::delete_many()
            .filter(group_members::Column::UserId.is_in(chunk.iter().copied()))
            .exec(db)
            .await
            .db()?;
    }
    role_bindings::Entity::delete_many()
        .filter(role_bindings::Column::AccountName.eq(account))
        .exec(db)
        .await
        .db()?;
    group_grants::Entity::delete_many()
        .filter(group_grants::Column::AccountName.eq(account))
        .exec(db)
        .await
        .db()?;
    let result = users::Entity::delete_many()
        .filter(users::Column::AccountName.eq(account))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected)
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
        .map_err(|e| classify_missing_parent(e, format!("role {role:?} in account {account:?}")))?;
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

#[derive(FromQueryResult)]
struct GroupGrantRow {
    user_id: Uuid,
    role: String,
    account_name: String,
    group_name: String,
}

/// Effective grants (direct, then via groups) of each user, sorted.
pub async fn grants_of(
    db: &impl ConnectionTrait,
    user_ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, Vec<Grant>>> {
    let mut grants: HashMap<Uuid, Vec<Grant>> = HashMap::new();
    if user_ids.is_empty() {
        return Ok(grants);
    }
    let direct = role_bindings::Entity::find()
        .filter(role_bindings::Column::UserId.is_in(user_ids.iter().copied()))
        .all(db)
        .await
        .db()?;
    for b in direct {
        grants.entry(b.user_id).or_default().push(Grant {
            role: b.role,
            account: b.account_name,
            group: None,
        });
    }
    let via_groups = group_grants::Entity::find()
        .select_only()
        .column(group_members::Column::UserId)
        .column(group_grants::Column::Role)
        .column(group_grants::Column::AccountName)
        .column_as(user_groups::Column::Name, "group_name")
        .join(JoinType::InnerJoin, group_grants::Relation::Group.def())
        .join(
            JoinType::InnerJoin,
            group_members::Relation::Group.def().rev(),
        )
        .filter(group_members::Column::UserId.is_in(user_ids.iter().copied()))
        .into_model::<GroupGrantRow>()
        .all(db)
        .await
        .db()?;
    for g in via_groups {
        grants.entry(g.user_id).or_default().push(Grant {
            role: g.role,
            account: g.account_name,
            group: Some(g.group_name),
        });
    }
    for list in grants.values_mut() {
        sort_grants(list);
    }
    Ok(grants)
}

/// Direct grants first, then by account, role and group.
pub fn sort_grants(grants: &mut [Grant]) {
    grants.sort_by(|a, b| {
        (a.group.is_some(), &a.account, &a.role, &a.group).cmp(&(
            b.group.is_some(),
            &b.account,
            &b.role,
            &b.group,
        ))
    });
}
