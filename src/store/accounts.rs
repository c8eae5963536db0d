use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::accounts;
use super::{DbResultExt, StoreResult, classify_conflict, listing};
use crate::error::quoted;
use crate::model::page::{Page, PageRequest};
use crate::model::{Account, AccountState, AccountType};

impl TryFrom<accounts::Model> for Account {
    type Error = crate::error::Error;

    fn try_from(m: accounts::Model) -> StoreResult<Self> {
        Ok(Account {
            account_type: AccountType::from_stored(&m.account_type)?,
            state: AccountState::from_stored(&m.state)?,
            name: m.name,
            email: m.email,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

pub async fn find_account(db: &impl ConnectionTrait, name: &str) -> StoreResult<Option<Account>> {
    accounts::Entity::find_by_id(name.to_owned())
        .one(db)
        .await
        .db()?
        .map(Account::try_from)
        .transpose()
}

pub async fn list_accounts(
    db: &impl ConnectionTrait,
    state: Option<AccountState>,
    page: &PageRequest,
) -> StoreResult<Page<Account>> {
    let mut query = accounts::Entity::find()
        .filter(listed(state, page))
        .order_by(accounts::Column::Name, listing::order_of(page))
        .limit(page.limit + 1);
    if let (Some([key]), _) = page.cursor() {
        query = query.filter(listing::past(accounts::Column::Name, key, page));
    }
    let rows = query
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(Account::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_window(rows, page, |a| vec![a.name.as_str()]))
}

/// How many accounts `list_accounts` pages through.
pub async fn count_accounts(
    db: &impl ConnectionTrait,
    state: Option<AccountState>,
    page: &PageRequest,
) -> StoreResult<u64> {
    accounts::Entity::find()
        .filter(listed(state, page))
        .count(db)
        .await
        .db()
}

fn listed(state: Option<AccountState>, page: &PageRequest) -> Condition {
    let mut condition =
        Condition::all().add(accounts::Column::AccountType.ne(AccountType::Service.as_str()));
    if let Some(state) = state {
        condition = condition.add(accounts::Column::State.eq(state.as_str()));
    }
    if let Some(prefix) = listing::prefix_of(accounts::Column::Name, page) {
        condition = condition.add(prefix);
    }
    condition
}

pub async fn create_account(db: &impl ConnectionTrait, account: &Account) -> StoreResult<()> {
    accounts::Entity::insert(active(account))
        .exec_without_returning(db)
        .await
        .map_err(|e| classify_conflict(e, format!("account {}", quoted(&account.name))))?;
    Ok(())
}

/// Inserts unless the name is taken; true if this call created it.
pub async fn create_account_if_absent(
    db: &impl ConnectionTrait,
    account: &Account,
) -> StoreResult<bool> {
    let inserted = accounts::Entity::insert(active(account))
        .on_conflict(
            OnConflict::column(accounts::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .db()?;
    Ok(inserted > 0)
}

fn active(account: &Account) -> accounts::ActiveModel {
    accounts::ActiveModel {
        name: Set(account.name.clone()),
        email: Set(account.email.clone()),
        account_type: Set(account.account_type.as_str().to_owned()),
        state: Set(account.state.as_str().to_owned()),
        created_at: Set(account.created_at),
        updated_at: Set(account.updated_at),
    }
}

/// True if the account existed.
pub async fn update_email(
    db: &impl ConnectionTrait,
    name: &str,
    email: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let result = accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Email,
            Expr::value(email.map(str::to_owned)),
        )
        .col_expr(accounts::Column::UpdatedAt, Expr::value(now))
        .filter(accounts::Column::Name.eq(name))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected > 0)
}

/// Moves the account to `to` only if it is currently in one of `from`:
/// a compare-and-set, so concurrent transitions cannot skip a state.
pub async fn transition_state(
    db: &impl ConnectionTrait,
    name: &str,
    from: &[AccountState],
    to: AccountState,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let result = accounts::Entity::update_many()
        .col_expr(accounts::Column::State, Expr::value(to.as_str()))
        .col_expr(accounts::Column::UpdatedAt, Expr::value(now))
        .filter(accounts::Column::Name.eq(name))
        .filter(accounts::Column::State.is_in(from.iter().map(|s| s.as_str())))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected > 0)
}

pub async fn list_deleting(db: &impl ConnectionTrait) -> StoreResult<Vec<String>> {
    accounts::Entity::find()
        .select_only()
        .column(accounts::Column::Name)
        .filter(accounts::Column::State.eq(AccountState::Deleting.as_str()))
        .order_by_asc(accounts::Column::Name)
        .into_tuple::<String>()
        .all(db)
        .await
        .db()
}

/// Removes the account row; only for accounts whose dependents are gone.
pub async fn delete_deleting_account(db: &impl ConnectionTrait, name: &str) -> StoreResult<bool> {
    let result = accounts::Entity::delete_many()
        .filter(accounts::Column::Name.eq(name))
        .filter(accounts::Column::State.eq(AccountState::Deleting.as_str()))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected > 0)
}
