use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, JoinType, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait,
};

use super::entity::{actions, role_actions, role_bindings, roles, users};
use super::{DbResultExt, StoreResult};
use crate::domain::catalog::{ActionDef, Catalog};
use crate::domain::model::{ActionScope, RoleMember};
use crate::domain::page::{Page, PageRequest};

pub async fn load_catalog(db: &impl ConnectionTrait) -> StoreResult<Catalog> {
    let actions = actions::Entity::find()
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(|a| {
            let def = ActionDef {
                scope: ActionScope::from_stored(&a.scope)?,
                api_key_restricted: a.api_key_restricted,
            };
            Ok((a.name, def))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let roles = roles::Entity::find()
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(|r| (r.name, r.description));
    let role_actions = role_actions::Entity::find()
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(|ra| (ra.role, ra.action));
    Catalog::new(actions, roles, role_actions)
}

#[derive(FromQueryResult)]
struct MemberRow {
    role: String,
    account_name: String,
    created_at: DateTime<Utc>,
    username: String,
    user_account: String,
}

/// Holders of `role`, optionally only in one account, sorted by
/// (account, username).
pub async fn list_role_members(
    db: &impl ConnectionTrait,
    role: &str,
    account: Option<&str>,
    page: &PageRequest,
) -> StoreResult<Page<RoleMember>> {
    let mut query = role_bindings::Entity::find()
        .select_only()
        .column(role_bindings::Column::Role)
        .column(role_bindings::Column::AccountName)
        .column(role_bindings::Column::CreatedAt)
        .column(users::Column::Username)
        .column_as(users::Column::AccountName, "user_account")
        .join(JoinType::InnerJoin, role_bindings::Relation::User.def())
        .filter(role_bindings::Column::Role.eq(role))
        .order_by_asc(role_bindings::Column::AccountName)
        .order_by_asc(users::Column::Username)
        .limit(page.limit + 1);
    if let Some(account) = account {
        query = query.filter(role_bindings::Column::AccountName.eq(account));
    }
    if let Some([after_account, after_user]) = page.after.as_deref() {
        query = query.filter(
            Condition::any()
                .add(role_bindings::Column::AccountName.gt(after_account.as_str()))
                .add(
                    Condition::all()
                        .add(role_bindings::Column::AccountName.eq(after_account.as_str()))
                        .add(users::Column::Username.gt(after_user.as_str())),
                ),
        );
    }
    let rows = query
        .into_model::<MemberRow>()
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(|m| RoleMember {
            role: m.role,
            username: m.username,
            account: m.account_name,
            user_account: m.user_account,
            created_at: m.created_at,
        })
        .collect();
    Ok(Page::from_rows(rows, page.limit, |m| {
        vec![m.account.as_str(), m.username.as_str()]
    }))
}
