//! What sign-ins through an identity provider remember: answered
//! requests, consumed assertions, and the memberships an IdP asserted.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::entity::{group_members, role_bindings};
use super::{DbResultExt, StoreResult, sql};

/// Spends the request `id` of the provider (its ID already checked as
/// one this service started): true the first time, false when it was
/// answered before, on this replica or another. Remembered until it
/// expires; an answer after that is refused by its expiry.
pub async fn spend_request(
    db: &impl ConnectionTrait,
    id: &str,
    idp_id: Uuid,
    expires_at_ms: i64,
) -> StoreResult<bool> {
    let spent = db
        .execute_raw(sql(
            db,
            "INSERT INTO saml_requests (id, idp_id, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            vec![id.into(), idp_id.into(), expires_at_ms.into()],
        ))
        .await
        .db()?
        .rows_affected();
    Ok(spent == 1)
}

/// Records an assertion as consumed until `expires_at_ms`: false if it
/// already was (a replay, on this replica or another).
pub async fn consume_assertion(
    db: &impl ConnectionTrait,
    idp_id: Uuid,
    assertion_id: &str,
    expires_at_ms: i64,
) -> StoreResult<bool> {
    let inserted = db
        .execute_raw(sql(
            db,
            "INSERT INTO saml_assertions (idp_id, assertion_id, expires_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            vec![idp_id.into(), assertion_id.into(), expires_at_ms.into()],
        ))
        .await
        .db()?
        .rows_affected();
    Ok(inserted == 1)
}

/// Forgets requests and assertions past their expiry; returns how many.
pub async fn purge_expired(db: &impl ConnectionTrait, now_ms: i64) -> StoreResult<u64> {
    let mut purged = 0;
    for table in ["saml_requests", "saml_assertions"] {
        purged += db
            .execute_raw(sql(
                db,
                &format!("DELETE FROM {table} WHERE expires_at_ms <= $1"),
                vec![now_ms.into()],
            ))
            .await
            .db()?
            .rows_affected();
    }
    Ok(purged)
}

/// A user's direct role bindings, as (role, account).
pub async fn direct_bindings(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> StoreResult<Vec<(String, String)>> {
    role_bindings::Entity::find()
        .select_only()
        .column(role_bindings::Column::Role)
        .column(role_bindings::Column::AccountName)
        .filter(role_bindings::Column::UserId.eq(user_id))
        .into_tuple::<(String, String)>()
        .all(db)
        .await
        .db()
}

/// The groups the provider made the user a member of (memberships an
/// administrator made are never the IdP's to remove).
pub async fn asserted_memberships(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    idp_id: Uuid,
) -> StoreResult<Vec<Uuid>> {
    group_members::Entity::find()
        .select_only()
        .column(group_members::Column::GroupId)
        .filter(group_members::Column::UserId.eq(user_id))
        .filter(group_members::Column::IdpId.eq(idp_id))
        .into_tuple::<Uuid>()
        .all(db)
        .await
        .db()
}

/// Makes the user a member as the provider asserted; a membership that
/// already exists (one an administrator made) stays as it is.
pub async fn add_membership(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    group_id: Uuid,
    idp_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    super::groups::add_members(db, group_id, &[user_id], Some(idp_id), now).await
}

/// Ends a membership the provider made.
pub async fn remove_membership(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    group_id: Uuid,
    idp_id: Uuid,
) -> StoreResult<()> {
    group_members::Entity::delete_many()
        .filter(group_members::Column::UserId.eq(user_id))
        .filter(group_members::Column::GroupId.eq(group_id))
        .filter(group_members::Column::IdpId.eq(idp_id))
        .exec(db)
        .await
        .db()?;
    Ok(())
}
