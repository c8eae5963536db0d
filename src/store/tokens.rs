//! Signing keys, token families, refresh tokens and revoked access tokens
//! (migration `m20261130_000006_tokens`). Times are milliseconds since the
//! epoch. Revoking a family, deleting one, or revoking one of its access
//! tokens leaves a `family` change record (triggers), so every replica's
//! cached revocation state follows.

use sea_orm::{ConnectionTrait, Value};
use uuid::Uuid;

use super::{DbResultExt, StoreResult, sql};

pub struct StoredKey {
    pub material: Vec<u8>,
    pub encrypted: bool,
}

pub async fn find_signing_key(
    db: &impl ConnectionTrait,
    name: &str,
) -> StoreResult<Option<StoredKey>> {
    let row = db
        .query_one_raw(sql(
            db,
            "SELECT private_key, encrypted FROM token_signing_keys WHERE name = $1",
            vec![name.into()],
        ))
        .await
        .db()?;
    row.map(|row| {
        Ok(StoredKey {
            material: row.try_get::<Vec<u8>>("", "private_key").db()?,
            encrypted: row.try_get::<bool>("", "encrypted").db()?,
        })
    })
    .transpose()
}

/// Stores a key unless one of that name exists (a concurrent first start).
pub async fn insert_signing_key(
    db: &impl ConnectionTrait,
    name: &str,
    algorithm: &str,
    material: &[u8],
    encrypted: bool,
    now_ms: i64,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "INSERT INTO token_signing_keys (name, algorithm, private_key, encrypted, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        vec![
            name.into(),
            algorithm.into(),
            Value::from(material.to_vec()),
            encrypted.into(),
            now_ms.into(),
        ],
    ))
    .await
    .db()?;
    Ok(())
}

pub async fn create_family(
    db: &impl ConnectionTrait,
    id: &str,
    user_id: Uuid,
    now_ms: i64,
    expires_ms: i64,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "INSERT INTO token_families (id, user_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
        vec![id.into(), Value::from(user_id), now_ms.into(), expires_ms.into()],
    ))
    .await
    .map_err(|e| super::classify_missing_parent(e, "the user (deleted meanwhile)"))?;
    Ok(())
}

/// Keeps a family until the last thing issued in it expires.
pub async fn extend_family(
    db: &impl ConnectionTrait,
    id: &str,
    expires_ms: i64,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "UPDATE token_families SET expires_at_ms = $1 WHERE id = $2 AND expires_at_ms < $3",
        vec![expires_ms.into(), id.into(), expires_ms.into()],
    ))
    .await
    .db()?;
    Ok(())
}

pub async fn create_refresh_token(
    db: &impl ConnectionTrait,
    token_id: &str,
    family_id: &str,
    secret_hash: &str,
    expires_ms: i64,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "INSERT INTO refresh_tokens (token_id, family_id, secret_hash, expires_at_ms) VALUES ($1, $2, $3, $4)",
        vec![token_id.into(), family_id.into(), secret_hash.into(), expires_ms.into()],
    ))
    .await
    .db()?;
    Ok(())
}

/// A refresh token with its family and the family's user.
pub struct RefreshRow {
    pub family_id: String,
    pub user_id: Uuid,
    pub username: String,
    pub secret_hash: String,
    pub expires_ms: i64,
    pub used_ms: Option<i64>,
    pub family_revoked_ms: Option<i64>,
}

pub async fn find_refresh_token(
    db: &impl ConnectionTrait,
    token_id: &str,
) -> StoreResult<Option<RefreshRow>> {
    let row = db
        .query_one_raw(sql(
            db,
            "SELECT r.family_id, f.user_id, u.username, r.secret_hash, r.expires_at_ms, r.used_at_ms, \
                    f.revoked_at_ms \
             FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
             JOIN users u ON u.id = f.user_id WHERE r.token_id = $1",
            vec![token_id.into()],
        ))
        .await
        .db()?;
    row.map(|row| {
        Ok(RefreshRow {
            family_id: row.try_get("", "family_id").db()?,
            user_id: row.try_get("", "user_id").db()?,
            username: row.try_get("", "username").db()?,
            secret_hash: row.try_get("", "secret_hash").db()?,
            expires_ms: row.try_get("", "expires_at_ms").db()?,
            used_ms: row.try_get("", "used_at_ms").db()?,
            family_revoked_ms: row.try_get("", "revoked_at_ms").db()?,
        })
    })
    .transpose()
}

/// Marks a refresh token used; false if it already was (by a concurrent
/// exchange too: the row update decides which one wins).
pub async fn use_refresh_token(
    db: &impl ConnectionTrait,
    token_id: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    let result = db
        .execute_raw(sql(
            db,
            "UPDATE refresh_tokens SET used_at_ms = $1 WHERE token_id = $2 AND used_at_ms IS NULL",
            vec![now_ms.into(), token_id.into()],
        ))
        .await
        .db()?;
    Ok(result.rows_affected() == 1)
}

/// Revokes a family; false if it already was.
pub async fn revoke_family(db: &impl ConnectionTrait, id: &str, now_ms: i64) -> StoreResult<bool> {
    let result = db
        .execute_raw(sql(
            db,
            "UPDATE token_families SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
            vec![now_ms.into(), id.into()],
        ))
        .await
        .db()?;
    Ok(result.rows_affected() == 1)
}

/// Revokes every live family of a user; returns how many.
pub async fn revoke_user_families(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now_ms: i64,
) -> StoreResult<u64> {
    let result = db
        .execute_raw(sql(
            db,
            "UPDATE token_families SET revoked_at_ms = $1 \
             WHERE user_id = $2 AND revoked_at_ms IS NULL AND expires_at_ms > $3",
            vec![now_ms.into(), Value::from(user_id), now_ms.into()],
        ))
        .await
        .db()?;
    Ok(result.rows_affected())
}

/// Records an access token as revoked until it expires; false if it
/// already was, or its family is revoked or gone.
pub async fn revoke_access_token(
    db: &impl ConnectionTrait,
    jti: &str,
    family_id: &str,
    expires_ms: i64,
) -> StoreResult<bool> {
    let result = db
        .execute_raw(sql(
            db,
            "INSERT INTO revoked_tokens (jti, family_id, expires_at_ms) \
             SELECT $1, $2, $3 WHERE EXISTS \
                 (SELECT 1 FROM token_families WHERE id = $4 AND revoked_at_ms IS NULL) \
             ON CONFLICT (jti) DO NOTHING",
            vec![
                jti.into(),
                family_id.into(),
                expires_ms.into(),
                family_id.into(),
            ],
        ))
        .await
        .db()?;
    Ok(result.rows_affected() == 1)
}

/// A family's revocation state.
pub struct FamilyRow {
    pub user_id: Uuid,
    pub revoked: bool,
    pub revoked_tokens: Vec<String>,
}

pub async fn find_family(db: &impl ConnectionTrait, id: &str) -> StoreResult<Option<FamilyRow>> {
    let rows = db
        .query_all_raw(sql(
            db,
            "SELECT f.user_id, f.revoked_at_ms, r.jti FROM token_families f \
             LEFT JOIN revoked_tokens r ON r.family_id = f.id WHERE f.id = $1",
            vec![id.into()],
        ))
        .await
        .db()?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut family = FamilyRow {
        user_id: first.try_get("", "user_id").db()?,
        revoked: first
            .try_get::<Option<i64>>("", "revoked_at_ms")
            .db()?
            .is_some(),
        revoked_tokens: Vec::new(),
    };
    for row in &rows {
        if let Some(jti) = row.try_get::<Option<String>>("", "jti").db()? {
            family.revoked_tokens.push(jti);
        }
    }
    Ok(Some(family))
}

/// Removes what can no longer be presented: expired refresh tokens and
/// revocation records, and revoked families with everything in them (a
/// token whose family is gone is refused like a revoked one), then
/// families nothing in them outlives.
pub async fn purge_expired(db: &impl ConnectionTrait, now_ms: i64) -> StoreResult<u64> {
    const REVOKED: &str = "SELECT id FROM token_families WHERE revoked_at_ms IS NOT NULL";
    let mut removed = 0;
    for statement in [
        &format!("DELETE FROM refresh_tokens WHERE expires_at_ms < $1 OR family_id IN ({REVOKED})"),
        &format!("DELETE FROM revoked_tokens WHERE expires_at_ms < $1 OR family_id IN ({REVOKED})"),
        "DELETE FROM token_families WHERE expires_at_ms < $1 OR revoked_at_ms IS NOT NULL",
    ] {
        removed += db
            .execute_raw(sql(db, statement, vec![now_ms.into()]))
            .await
            .db()?
            .rows_affected();
    }
    Ok(removed)
}
