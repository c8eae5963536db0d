use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, JoinType,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
};

use super::entity::{actions, role_actions, role_bindings, roles, users};
use super::{DbResultExt, StoreResult, listing};
use crate::model::catalog::{ActionDef, Catalog};
use crate::model::page::{Page, PageRequest};
use crate::model::{ActionScope, RoleMember};

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
    let order = listing::order_of(page);
    let mut query = role_bindings::Entity::find()
        .select_only()
        .column(role_bindings::Column::Role)
        .column(role_bindings::Column::AccountName)
        .column(role_bindings::Column::CreatedAt)
        .column(users::Column::Username)
        .column_as(users::Column::AccountName, "user_account")
        .join(JoinType::InnerJoin, role_bindings::Relation::User.def())
        .filter(members_of(role, account, page))
        .order_by(role_bindings::Column::AccountName, order.clone())
        .order_by(users::Column::Username, order)
        .limit(page.limit + 1);
    if let (Some([after_account, after_user]), _) = page.cursor() {
        let account_column = (role_bindings::Entity, role_bindings::Column::AccountName);
        let user_column = (users::Entity, users::Column::Username);
        query = query.filter(
            Condition::any()
                .add(listing::past(account_column, after_account, page))
                .add(
                    Condition::all()
                        .add(role_bindings::Column::AccountName.eq(after_account.as_str()))
                        .add(listing::past(user_column, after_user, page)),
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
    Ok(Page::from_window(rows, page, |m| {
        vec![m.account.as_str(), m.username.as_str()]
    }))
}

/// How many holders `list_role_members` pages through.
pub async fn count_role_members(
    db: &impl ConnectionTrait,
    role: &str,
    account: Option<&str>,
    page: &PageRequest,
) -> StoreResult<u64> {
    role_bindings::Entity::find()
        .join(JoinType::InnerJoin, role_bindings::Relation::User.def())
        .filter(members_of(role, account, page))
        .count(db)
        .await
        .db()
}

fn members_of(role: &str, account: Option<&str>, page: &PageRequest) -> Condition {
    let mut condition = Condition::all().add(role_bindings::Column::Role.eq(role));
    if let Some(account) = account {
        condition = condition.add(role_bindings::Column::AccountName.eq(account));
    }
    if let Some(prefix) = listing::prefix_of((users::Entity, users::Column::Username), page) {
        condition = condition.add(prefix);
    }
    condition
}
