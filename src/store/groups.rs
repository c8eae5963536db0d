use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
};
use uuid::Uuid;

use super::entity::{group_grants, group_members, idp_group_mappings, user_groups, users};
use super::{DbResultExt, StoreResult, classify_conflict, classify_missing_parent, listing};
use crate::error::quoted;
use crate::model::Group;
use crate::model::page::{Page, PageRequest};

fn group(m: user_groups::Model) -> Group {
    Group {
        id: m.id,
        name: m.name,
        description: m.description,
        created_at: m.created_at,
        updated_at: m.updated_at,
        members: Vec::new(),
        grants: Vec::new(),
    }
}

pub async fn find_group(db: &impl ConnectionTrait, name: &str) -> StoreResult<Option<Group>> {
    Ok(user_groups::Entity::find()
        .filter(user_groups::Column::Name.eq(name))
        .one(db)
        .await
        .db()?
        .map(group))
}

/// The group with its members and grants filled in.
pub async fn find_group_detail(
    db: &impl ConnectionTrait,
    name: &str,
) -> StoreResult<Option<Group>> {
    let Some(mut group) = find_group(db, name).await? else {
        return Ok(None);
    };
    group.members = users::Entity::find()
        .select_only()
        .column(users::Column::Username)
        .join(
            JoinType::InnerJoin,
            group_members::Relation::User.def().rev(),
        )
        .filter(group_members::Column::GroupId.eq(group.id))
        .order_by_asc(users::Column::Username)
        .into_tuple::<String>()
        .all(db)
        .await
        .db()?;
    group.grants = group_grants::Entity::find()
        .select_only()
        .column(group_grants::Column::Role)
        .column(group_grants::Column::AccountName)
        .filter(group_grants::Column::GroupId.eq(group.id))
        .order_by_asc(group_grants::Column::AccountName)
        .order_by_asc(group_grants::Column::Role)
        .into_tuple::<(String, String)>()
        .all(db)
        .await
        .db()?;
    Ok(Some(group))
}

pub async fn list_groups(
    db: &impl ConnectionTrait,
    page: &PageRequest,
) -> StoreResult<Page<Group>> {
    let mut query = user_groups::Entity::find()
        .filter(listed(page))
        .order_by(user_groups::Column::Name, listing::order_of(page))
        .limit(page.limit + 1);
    if let (Some([key]), _) = page.cursor() {
        query = query.filter(listing::past(user_groups::Column::Name, key, page));
    }
    let rows = query.all(db).await.db()?.into_iter().map(group).collect();
    Ok(Page::from_window(rows, page, |g: &Group| {
        vec![g.name.as_str()]
    }))
}

/// How many groups `list_groups` pages through.
pub async fn count_groups(db: &impl ConnectionTrait, page: &PageRequest) -> StoreResult<u64> {
    user_groups::Entity::find()
        .filter(listed(page))
        .count(db)
        .await
        .db()
}

fn listed(page: &PageRequest) -> Condition {
    listing::prefix_of(user_groups::Column::Name, page).unwrap_or_else(Condition::all)
}

/// The number of members and of grants of each of `ids` (a page of
/// groups: two grouped counts instead of loading every member).
pub async fn count_members_and_grants(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, (u64, u64)>> {
    let members = group_members::Entity::find()
        .select_only()
        .column(group_members::Column::GroupId)
        .column_as(Expr::col(group_members::Column::UserId).count(), "n")
        .filter(group_members::Column::GroupId.is_in(ids.iter().copied()))
        .group_by(group_members::Column::GroupId)
        .into_tuple::<(Uuid, i64)>()
        .all(db)
        .await
        .db()?;
    let grants = group_grants::Entity::find()
        .select_only()
        .column(group_grants::Column::GroupId)
        .column_as(Expr::col(group_grants::Column::Role).count(), "n")
        .filter(group_grants::Column::GroupId.is_in(ids.iter().copied()))
        .group_by(group_grants::Column::GroupId)
        .into_tuple::<(Uuid, i64)>()
        .all(db)
        .await
        .db()?;
    let mut sizes: HashMap<Uuid, (u64, u64)> = HashMap::new();
    for (id, n) in members {
        sizes.entry(id).or_default().0 = u64::try_from(n).unwrap_or_default();
    }
    for (id, n) in grants {
        sizes.entry(id).or_default().1 = u64::try_from(n).unwrap_or_default();
    }
    Ok(sizes)
}

pub async fn create_group(db: &impl ConnectionTrait, group: &Group) -> StoreResult<()> {
    let model = user_groups::ActiveModel {
        id: Set(group.id),
        name: Set(group.name.clone()),
        description: Set(group.description.clone()),
        created_at: Set(group.created_at),
        updated_at: Set(group.updated_at),
    };
    user_groups::Entity::insert(model)
        .exec_without_returning(db)
        .await
        .map_err(|e| classify_conflict(e, format!("group {}", quoted(&group.name))))?;
    Ok(())
}

pub async fn update_description(
    db: &impl ConnectionTrait,
    id: Uuid,
    description: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let result = user_groups::Entity::update_many()
        .col_expr(user_groups::Column::Description, Expr::value(description))
        .col_expr(user_groups::Column::UpdatedAt, Expr::value(now))
        .filter(user_groups::Column::Id.eq(id))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected > 0)
}

pub async fn touch(db: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    user_groups::Entity::update_many()
        .col_expr(user_groups::Column::UpdatedAt, Expr::value(now))
        .filter(user_groups::Column::Id.eq(id))
        .exec(db)
        .await
        .db()?;
    Ok(())
}

pub async fn delete_group(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<bool> {
    idp_group_mappings::Entity::delete_many()
        .filter(idp_group_mappings::Column::GroupId.eq(id))
        .exec(db)
        .await
        .db()?;
    group_members::Entity::delete_many()
        .filter(group_members::Column::GroupId.eq(id))
        .exec(db)
        .await
        .db()?;
    group_grants::Entity::delete_many()
        .filter(group_grants::Column::GroupId.eq(id))
        .exec(db)
        .await
        .db()?;
    let result = user_groups::Entity::delete_by_id(id).exec(db).await.db()?;
    Ok(result.rows_affected > 0)
}

/// Adds members. `idp`: the identity provider whose assertion makes them
/// members; one already present is left as it is. `None`: an
/// administrator does, and a membership an IdP made becomes theirs (the
/// IdP's next sign-in no longer removes it).
pub async fn add_members(
    db: &impl ConnectionTrait,
    group_id: Uuid,
    user_ids: &[Uuid],
    idp: Option<Uuid>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for user_id in user_ids {
        let model = group_members::ActiveModel {
            group_id: Set(group_id),
            user_id: Set(*user_id),
            created_at: Set(now),
            idp_id: Set(idp),
        };
        let mut conflict = OnConflict::columns([
            group_members::Column::GroupId,
            group_members::Column::UserId,
        ]);
        if idp.is_none() {
            conflict.update_column(group_members::Column::IdpId);
        } else {
            conflict.do_nothing();
        }
        group_members::Entity::insert(model)
            .on_conflict(conflict)
            .exec_without_returning(db)
            .await
            .map_err(|e| classify_missing_parent(e, "group member"))?;
    }
    Ok(())
}

pub async fn remove_members(
    db: &impl ConnectionTrait,
    group_id: Uuid,
    user_ids: &[Uuid],
) -> StoreResult<()> {
    group_members::Entity::delete_many()
        .filter(group_members::Column::GroupId.eq(group_id))
        .filter(group_members::Column::UserId.is_in(user_ids.iter().copied()))
        .exec(db)
        .await
        .db()?;
    Ok(())
}

/// Adds (role, account) grants; ones already present are left as they are.
pub async fn add_grants(
    db: &impl ConnectionTrait,
    group_id: Uuid,
    grants: &[(String, String)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for (role, account) in grants {
        let model = group_grants::ActiveModel {
            group_id: Set(group_id),
            role: Set(role.clone()),
            account_name: Set(account.clone()),
            created_at: Set(now),
        };
        group_grants::Entity::insert(model)
            .on_conflict(
                OnConflict::columns([
                    group_grants::Column::GroupId,
                    group_grants::Column::Role,
                    group_grants::Column::AccountName,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(db)
            .await
            .map_err(|e| {
                classify_missing_parent(e, format!("account {account}", account = quoted(account)))
            })?;
    }
    Ok(())
}

pub async fn remove_grants(
    db: &impl ConnectionTrait,
    group_id: Uuid,
    grants: &[(String, String)],
) -> StoreResult<()> {
    for (role, account) in grants {
        group_grants::Entity::delete_many()
            .filter(group_grants::Column::GroupId.eq(group_id))
            .filter(group_grants::Column::Role.eq(role.as_str()))
            .filter(group_grants::Column::AccountName.eq(account.as_str()))
            .exec(db)
            .await
            .db()?;
    }
    Ok(())
}
