//! What SCIM provisioning keeps: the providers' bearer tokens (hashed),
//! and beside a provisioned user or group the provider's own id for it
//! and the profile it sent.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::{group_members, idp_group_mappings, user_groups, users};
use super::{DbResultExt, StoreResult, sql};
use crate::model::{Group, User};

/// A SCIM bearer token as stored: never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimToken {
    pub id: Uuid,
    /// The public part of the value.
    pub key_id: String,
    pub idp_id: Uuid,
    pub secret_hash: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, key_id, idp_id, secret_hash, created_at_ms, last_used_at_ms";

fn token(row: &sea_orm::QueryResult) -> StoreResult<ScimToken> {
    Ok(ScimToken {
        id: row.try_get("", "id").db()?,
        key_id: row.try_get("", "key_id").db()?,
        idp_id: row.try_get("", "idp_id").db()?,
        secret_hash: row.try_get("", "secret_hash").db()?,
        created_at_ms: row.try_get("", "created_at_ms").db()?,
        last_used_at_ms: row.try_get("", "last_used_at_ms").db()?,
    })
}

pub async fn create_token(db: &impl ConnectionTrait, t: &ScimToken) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        &format!("INSERT INTO scim_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        vec![
            t.id.into(),
            t.key_id.as_str().into(),
            t.idp_id.into(),
            t.secret_hash.as_str().into(),
            t.created_at_ms.into(),
            t.last_used_at_ms.into(),
        ],
    ))
    .await
    .db()?;
    Ok(())
}

/// The token whose public part is `key_id`: one indexed lookup.
pub async fn find_token(db: &impl ConnectionTrait, key_id: &str) -> StoreResult<Option<ScimToken>> {
    db.query_one_raw(sql(
        db,
        &format!("SELECT {TOKEN_COLUMNS} FROM scim_tokens WHERE key_id = $1"),
        vec![key_id.into()],
    ))
    .await
    .db()?
    .as_ref()
    .map(token)
    .transpose()
}

/// The provider's tokens, oldest first.
pub async fn list_tokens(db: &impl ConnectionTrait, idp_id: Uuid) -> StoreResult<Vec<ScimToken>> {
    db.query_all_raw(sql(
        db,
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM scim_tokens WHERE idp_id = $1 \
             ORDER BY created_at_ms, key_id"
        ),
        vec![idp_id.into()],
    ))
    .await
    .db()?
    .iter()
    .map(token)
    .collect()
}

/// Deletes the provider's token `key_id`: false if it has none such.
pub async fn delete_token(
    db: &impl ConnectionTrait,
    idp_id: Uuid,
    key_id: &str,
) -> StoreResult<bool> {
    let result = db
        .execute_raw(sql(
            db,
            "DELETE FROM scim_tokens WHERE idp_id = $1 AND key_id = $2",
            vec![idp_id.into(), key_id.into()],
        ))
        .await
        .db()?;
    Ok(result.rows_affected() > 0)
}

/// Deletes every token of the provider (it is being deleted).
pub async fn delete_tokens_of(db: &impl ConnectionTrait, idp_id: Uuid) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "DELETE FROM scim_tokens WHERE idp_id = $1",
        vec![idp_id.into()],
    ))
    .await
    .db()?;
    Ok(())
}

pub async fn set_token_used(db: &impl ConnectionTrait, id: Uuid, at_ms: i64) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "UPDATE scim_tokens SET last_used_at_ms = $1 WHERE id = $2",
        vec![at_ms.into(), id.into()],
    ))
    .await
    .db()?;
    Ok(())
}

/// What the provider said about a user or group beside what authzd keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioned {
    pub external_id: Option<String>,
    /// The profile as JSON text.
    pub profile: Option<String>,
}

async fn provisioned_of(
    db: &impl ConnectionTrait,
    table: &str,
    ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, Provisioned>> {
    let mut out = HashMap::new();
    // In slices: a statement's parameters are bounded (SQLite: 32,766).
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let rows = db
            .query_all_raw(sql(
                db,
                &format!(
                    "SELECT id, external_id, scim_profile FROM {table} WHERE id IN ({})",
                    marks.join(", ")
                ),
                chunk.iter().map(|id| (*id).into()).collect(),
            ))
            .await
            .db()?;
        for row in rows {
            out.insert(
                row.try_get("", "id").db()?,
                Provisioned {
                    external_id: row.try_get("", "external_id").db()?,
                    profile: row.try_get("", "scim_profile").db()?,
                },
            );
        }
    }
    Ok(out)
}

async fn set_provisioned(
    db: &impl ConnectionTrait,
    table: &str,
    id: Uuid,
    p: &Provisioned,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        &format!(
            "UPDATE {table} SET external_id = $1, scim_profile = $2, updated_at = $3 WHERE id = $4"
        ),
        vec![
            p.external_id.clone().into(),
            p.profile.clone().into(),
            now.into(),
            id.into(),
        ],
    ))
    .await
    .db()?;
    Ok(())
}

/// The users of the provider (by name and kind), oldest first, with what
/// it said about each; only those whose folded name or external id is
/// `narrow`'s when it is given (an `eq` filter answered by an index).
pub async fn idp_users(
    db: &impl ConnectionTrait,
    idp_name: &str,
    user_type: &str,
    narrow: Option<Narrow<'_>>,
) -> StoreResult<Vec<(User, Provisioned)>> {
    let mut query = users::Entity::find()
        .filter(users::Column::IdpName.eq(idp_name))
        .filter(users::Column::UserType.eq(user_type));
    match narrow {
        Some(Narrow::Name(name)) => {
            query = query.filter(users::Column::FoldedUsername.eq(name.to_lowercase()));
        }
        Some(Narrow::Id(id)) => query = query.filter(users::Column::Id.eq(id)),
        Some(Narrow::ExternalId(external)) => {
            let ids: Vec<Uuid> = db
                .query_all_raw(sql(
                    db,
                    "SELECT id FROM users WHERE idp_name = $1 AND external_id = $2",
                    vec![idp_name.into(), external.into()],
                ))
                .await
                .db()?
                .iter()
                .map(|row| row.try_get("", "id").db())
                .collect::<StoreResult<_>>()?;
            query = query.filter(users::Column::Id.is_in(ids));
        }
        None => {}
    }
    let found = query
        .order_by_asc(users::Column::CreatedAt)
        .order_by_asc(users::Column::Id)
        .all(db)
        .await
        .db()?;
    let ids: Vec<Uuid> = found.iter().map(|m| m.id).collect();
    let mut provisioned = provisioned_of(db, "users", &ids).await?;
    found
        .into_iter()
        .map(|m| {
            let extra = provisioned.remove(&m.id).unwrap_or_default();
            Ok((User::try_from(m)?, extra))
        })
        .collect()
}

/// What an `eq` filter narrows a listing to.
#[derive(Debug, Clone, Copy)]
pub enum Narrow<'a> {
    Id(Uuid),
    Name(&'a str),
    ExternalId(&'a str),
}

pub async fn set_user_provisioned(
    db: &impl ConnectionTrait,
    id: Uuid,
    p: &Provisioned,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    set_provisioned(db, "users", id, p, now).await
}

pub async fn set_group_provisioned(
    db: &impl ConnectionTrait,
    id: Uuid,
    p: &Provisioned,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    set_provisioned(db, "user_groups", id, p, now).await
}

/// The groups mapped to the provider, oldest first, each with the ids of
/// its members and what the provider said about it.
pub async fn idp_groups(
    db: &impl ConnectionTrait,
    idp_id: Uuid,
    only: Option<Uuid>,
) -> StoreResult<Vec<(Group, Vec<Uuid>, Provisioned)>> {
    let mut mapped =
        idp_group_mappings::Entity::find().filter(idp_group_mappings::Column::IdpId.eq(idp_id));
    if let Some(id) = only {
        mapped = mapped.filter(idp_group_mappings::Column::GroupId.eq(id));
    }
    let ids: Vec<Uuid> = mapped
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(|m| m.group_id)
        .collect();
    let found = user_groups::Entity::find()
        .filter(user_groups::Column::Id.is_in(ids.clone()))
        .order_by_asc(user_groups::Column::CreatedAt)
        .order_by_asc(user_groups::Column::Id)
        .all(db)
        .await
        .db()?;
    let mut members: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for m in group_members::Entity::find()
        .filter(group_members::Column::GroupId.is_in(ids.clone()))
        .order_by_asc(group_members::Column::CreatedAt)
        .all(db)
        .await
        .db()?
    {
        members.entry(m.group_id).or_default().push(m.user_id);
    }
    let mut provisioned = provisioned_of(db, "user_groups", &ids).await?;
    Ok(found
        .into_iter()
        .map(|m| {
            let id = m.id;
            let group = Group {
                id,
                name: m.name,
                description: m.description,
                created_at: m.created_at,
                updated_at: m.updated_at,
                members: Vec::new(),
                grants: Vec::new(),
            };
            (
                group,
                members.remove(&id).unwrap_or_default(),
                provisioned.remove(&id).unwrap_or_default(),
            )
        })
        .collect())
}

pub async fn rename_group(
    db: &impl ConnectionTrait,
    id: Uuid,
    name: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    db.execute_raw(sql(
        db,
        "UPDATE user_groups SET name = $1, updated_at = $2 WHERE id = $3",
        vec![name.into(), now.into(), id.into()],
    ))
    .await
    .map_err(|e| super::classify_conflict(e, format!("group {}", crate::error::quoted(name))))?;
    Ok(())
}
