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
    for table in ["saml_requests", "saml_assertions", "oidc_logins"] {
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

/// An OIDC sign-in started and not yet finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcLogin {
    pub idp_id: Uuid,
    pub nonce: String,
    pub code_verifier: String,
    pub relay_state: String,
    pub expires_at_ms: i64,
}

pub async fn start_oidc_login(
    db: &impl ConnectionTrait,
    state: &str,
    login: &OidcLogin,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "INSERT INTO oidc_logins (state, idp_id, nonce, code_verifier, relay_state, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            state.into(),
            login.idp_id.into(),
            login.nonce.as_str().into(),
            login.code_verifier.as_str().into(),
            login.relay_state.as_str().into(),
            login.expires_at_ms.into(),
        ],
    ))
    .await
    .db()?;
    Ok(())
}

/// The sign-in `state` names, taken (deleted) so that it finishes once,
/// on whichever replica asks first.
pub async fn take_oidc_login(
    db: &impl ConnectionTrait,
    state: &str,
) -> StoreResult<Option<OidcLogin>> {
    let Some(row) = db
        .query_one_raw(sql(
            db,
            "DELETE FROM oidc_logins WHERE state = $1 \
             RETURNING idp_id, nonce, code_verifier, relay_state, expires_at_ms",
            vec![state.into()],
        ))
        .await
        .db()?
    else {
        return Ok(None);
    };
    Ok(Some(OidcLogin {
        idp_id: row.try_get("", "idp_id").db()?,
        nonce: row.try_get("", "nonce").db()?,
        code_verifier: row.try_get("", "code_verifier").db()?,
        relay_state: row.try_get("", "relay_state").db()?,
        expires_at_ms: row.try_get("", "expires_at_ms").db()?,
    }))
}

/// The `sub` an OIDC provider asserted for the user, once it has.
pub async fn idp_subject(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<Option<String>> {
    let row = db
        .query_one_raw(sql(
            db,
            "SELECT idp_subject FROM users WHERE id = $1",
            vec![user_id.into()],
        ))
        .await
        .db()?;
    match row {
        Some(row) => row.try_get::<Option<String>>("", "idp_subject").db(),
        None => Ok(None),
    }
}

pub async fn set_idp_subject(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    subject: &str,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "UPDATE users SET idp_subject = $1 WHERE id = $2",
        vec![subject.into(), user_id.into()],
    ))
    .await
    .db()?;
    Ok(())
}

/// Records on a family the provider, and its session, that started it.
pub async fn mark_family(
    db: &impl ConnectionTrait,
    family: &str,
    idp_id: Uuid,
    session: Option<&str>,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "UPDATE token_families SET idp_id = $1, idp_session = $2 WHERE id = $3",
        vec![
            idp_id.into(),
            session.map(str::to_owned).into(),
            family.into(),
        ],
    ))
    .await
    .db()?;
    Ok(())
}

/// Revokes the live families the provider started: those of its session
/// `session`, or when `None`, all of the user's whose `sub` is `subject`.
/// Returns how many.
pub async fn revoke_idp_families(
    db: &impl ConnectionTrait,
    idp: (Uuid, &str),
    session: Option<&str>,
    subject: Option<&str>,
    now_ms: i64,
) -> StoreResult<u64> {
    let (idp_id, idp_name) = idp;
    let mut text = "UPDATE token_families SET revoked_at_ms = $1 \
                    WHERE revoked_at_ms IS NULL AND expires_at_ms > $2 AND idp_id = $3"
        .to_owned();
    let mut values: Vec<sea_orm::Value> = vec![now_ms.into(), now_ms.into(), idp_id.into()];
    if let Some(session) = session {
        values.push(session.into());
        text.push_str(&format!(" AND idp_session = ${}", values.len()));
    }
    if let Some(subject) = subject {
        values.push(idp_name.into());
        values.push(subject.into());
        text.push_str(&format!(
            " AND user_id IN (SELECT id FROM users WHERE user_type = 'oidc' \
             AND idp_name = ${} AND idp_subject = ${})",
            values.len() - 1,
            values.len()
        ));
    }
    let result = db.execute_raw(sql(db, &text, values)).await.db()?;
    Ok(result.rows_affected())
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
