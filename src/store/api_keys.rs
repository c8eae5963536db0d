use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use uuid::Uuid;

use super::entity::api_keys;
use super::{DbResultExt, StoreResult, classify_conflict, listing};
use crate::error::{Error, quoted};
use crate::model::ApiKey;
use crate::model::page::{Page, PageRequest};

impl From<api_keys::Model> for ApiKey {
    fn from(m: api_keys::Model) -> Self {
        ApiKey {
            id: m.id,
            key_id: m.key_id,
            user_id: m.user_id,
            username: m.owner_username,
            account: m.owner_account,
            name: m.name,
            description: m.description,
            prefix: m.prefix,
            last_four: m.last_four,
            created_at: m.created_at,
            updated_at: m.updated_at,
            expires_at: m.expires_at,
            revoked_at: m.revoked_at,
            last_used_at: m.last_used_at,
            owner_deleted_at: m.owner_deleted_at,
            rotated_at: m.rotated_at,
            previous_valid_until: m.previous_valid_until,
        }
    }
}

pub async fn create_api_key(
    db: &impl ConnectionTrait,
    key: &ApiKey,
    secret_hash: String,
) -> StoreResult<()> {
    let model = api_keys::ActiveModel {
        id: Set(key.id),
        key_id: Set(key.key_id.clone()),
        user_id: Set(key.user_id),
        owner_username: Set(key.username.clone()),
        owner_account: Set(key.account.clone()),
        name: Set(key.name.clone()),
        description: Set(key.description.clone()),
        prefix: Set(key.prefix.clone()),
        last_four: Set(key.last_four.clone()),
        secret_hash: Set(secret_hash),
        created_at: Set(key.created_at),
        updated_at: Set(key.updated_at),
        expires_at: Set(key.expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
        owner_deleted_at: Set(None),
        previous_secret_hash: Set(None),
        previous_valid_until: Set(None),
        rotated_at: Set(None),
    };
    api_keys::Entity::insert(model)
        .exec_without_returning(db)
        .await
        .map_err(|e| match e.sql_err() {
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                Error::not_found(format!("user {}", quoted(&key.username)))
            }
            _ => classify_conflict(e, format!("API key {}", quoted(&key.name))),
        })?;
    Ok(())
}

fn live_of(user_id: Uuid) -> Condition {
    Condition::all()
        .add(api_keys::Column::UserId.eq(user_id))
        .add(api_keys::Column::OwnerDeletedAt.is_null())
}

/// Keys neither revoked nor expired at `now`.
pub async fn count_active(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    api_keys::Entity::find()
        .filter(live_of(user_id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .filter(api_keys::Column::ExpiresAt.gt(now))
        .count(db)
        .await
        .db()
}

pub async fn find_by_name(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    name: &str,
) -> StoreResult<Option<ApiKey>> {
    Ok(api_keys::Entity::find()
        .filter(live_of(user_id))
        .filter(api_keys::Column::Name.eq(name))
        .one(db)
        .await
        .db()?
        .map(ApiKey::from))
}

/// Which of a user's keys a listing shows.
#[derive(Debug, Clone, Copy)]
pub struct KeyFilter {
    pub user_id: Uuid,
    pub include_expired: bool,
    pub include_revoked: bool,
    pub now: DateTime<Utc>,
}

impl KeyFilter {
    fn condition(&self, page: &PageRequest) -> Condition {
        let mut condition = live_of(self.user_id);
        // Revocation wins over expiry, as in `ApiKey::status`.
        if !self.include_revoked {
            condition = condition.add(api_keys::Column::RevokedAt.is_null());
        }
        if !self.include_expired {
            condition = condition.add(
                Condition::any()
                    .add(api_keys::Column::ExpiresAt.gt(self.now))
                    .add(api_keys::Column::RevokedAt.is_not_null()),
            );
        }
        if let Some(prefix) = listing::prefix_of(api_keys::Column::Name, page) {
            condition = condition.add(prefix);
        }
        condition
    }
}

/// A user's keys by name: active ones, plus expired and revoked on request.
pub async fn list_api_keys(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    include_expired: bool,
    include_revoked: bool,
    now: DateTime<Utc>,
    page: &PageRequest,
) -> StoreResult<Page<ApiKey>> {
    let filter = KeyFilter {
        user_id,
        include_expired,
        include_revoked,
        now,
    };
    let mut query = api_keys::Entity::find()
        .filter(filter.condition(page))
        .order_by(api_keys::Column::Name, listing::order_of(page))
        .limit(page.limit + 1);
    if let (Some([key]), _) = page.cursor() {
        query = query.filter(listing::past(api_keys::Column::Name, key, page));
    }
    let rows = query
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(ApiKey::from)
        .collect();
    Ok(Page::from_window(rows, page, |k: &ApiKey| {
        vec![k.name.as_str()]
    }))
}

/// How many keys `list_api_keys` pages through.
pub async fn count_api_keys(
    db: &impl ConnectionTrait,
    filter: KeyFilter,
    page: &PageRequest,
) -> StoreResult<u64> {
    api_keys::Entity::find()
        .filter(filter.condition(page))
        .count(db)
        .await
        .db()
}

/// Changes name and/or description, and revokes when `revoke_at` is given
/// (only a key not yet revoked). True if the key was there.
pub async fn update_api_key(
    db: &impl ConnectionTrait,
    id: Uuid,
    name: Option<&str>,
    description: Option<&str>,
    revoke_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut update = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(id));
    if let Some(name) = name {
        update = update.col_expr(api_keys::Column::Name, Expr::value(name));
    }
    if let Some(description) = description {
        update = update.col_expr(api_keys::Column::Description, Expr::value(description));
    }
    if let Some(at) = revoke_at {
        update = update.col_expr(api_keys::Column::RevokedAt, Expr::value(Some(at)));
    }
    let result = update.exec(db).await.map_err(|e| {
        classify_conflict(e, format!("API key {}", quoted(name.unwrap_or_default())))
    })?;
    Ok(result.rows_affected > 0)
}

pub async fn delete_api_key(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<bool> {
    let result = api_keys::Entity::delete_by_id(id).exec(db).await.db()?;
    Ok(result.rows_affected > 0)
}

/// Marks the keys of deleted users; they never authenticate again and are
/// purged after the retention period.
pub async fn mark_owner_deleted(
    db: &impl ConnectionTrait,
    user_ids: &[Uuid],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for chunk in user_ids.chunks(500) {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::OwnerDeletedAt, Expr::value(Some(now)))
            .filter(api_keys::Column::UserId.is_in(chunk.iter().copied()))
            .filter(api_keys::Column::OwnerDeletedAt.is_null())
            .exec(db)
            .await
            .db()?;
    }
    Ok(())
}

pub async fn purge_owner_deleted_before(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
) -> StoreResult<u64> {
    let result = api_keys::Entity::delete_many()
        .filter(api_keys::Column::OwnerDeletedAt.lt(cutoff))
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected)
}

pub async fn count_owner_deleted(db: &impl ConnectionTrait) -> StoreResult<u64> {
    api_keys::Entity::find()
        .filter(api_keys::Column::OwnerDeletedAt.is_not_null())
        .count(db)
        .await
        .db()
}

/// Writes many keys' last use, one statement per 500 keys.
pub async fn set_last_used(
    db: &impl ConnectionTrait,
    uses: &[(Uuid, DateTime<Utc>)],
) -> StoreResult<()> {
    let backend = db.get_database_backend();
    for chunk in uses.chunks(500) {
        let mut values = Vec::with_capacity(chunk.len() * 2);
        let rows: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, (id, at))| {
                values.push(sea_orm::Value::from(*id));
                values.push(sea_orm::Value::from(*at));
                match backend {
                    sea_orm::DbBackend::Postgres => format!("(${}, ${})", 2 * i + 1, 2 * i + 2),
                    _ => "(?, ?)".to_owned(),
                }
            })
            .collect();
        let sql = format!(
            "WITH v(id, at) AS (VALUES {}) \
             UPDATE api_keys SET last_used_at = (SELECT v.at FROM v WHERE v.id = api_keys.id) \
             WHERE id IN (SELECT v.id FROM v)",
            rows.join(", ")
        );
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await
        .db()?;
    }
    Ok(())
}

/// Replaces a live key's secret, keeping the one it replaces valid until
/// `previous_valid_until`; false if the key is gone or revoked meanwhile.
pub async fn rotate_api_key(
    db: &impl ConnectionTrait,
    id: Uuid,
    secret_hash: &str,
    last_four: &str,
    previous_valid_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let result = api_keys::Entity::update_many()
        // The right-hand side reads the row as it was: the old secret.
        .col_expr(
            api_keys::Column::PreviousSecretHash,
            Expr::col(api_keys::Column::SecretHash),
        )
        .col_expr(api_keys::Column::SecretHash, Expr::value(secret_hash))
        .col_expr(api_keys::Column::LastFour, Expr::value(last_four))
        .col_expr(
            api_keys::Column::PreviousValidUntil,
            Expr::value(previous_valid_until),
        )
        .col_expr(api_keys::Column::RotatedAt, Expr::value(now))
        .col_expr(api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .filter(api_keys::Column::OwnerDeletedAt.is_null())
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected == 1)
}
