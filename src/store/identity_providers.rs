use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait,
};
use uuid::Uuid;

use super::entity::{identity_providers as idps, idp_group_mappings as mappings, user_groups};
use super::{DbResultExt, StoreResult, classify_conflict, classify_missing_parent, listing, sql};
use crate::error::{Error, quoted};
use crate::model::page::{Page, PageRequest};
use crate::model::secret::Secret;
use crate::model::{IdentityProvider, IdpMetadata, OidcEndpoints, OidcProvider};

/// What `identity_providers.oidc_config` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct OidcConfig {
    issuer: String,
    client_id: String,
    scopes: Vec<String>,
    endpoints: OidcEndpoints,
}

fn oidc_of(m: &idps::Model) -> StoreResult<Option<OidcProvider>> {
    let Some(config) = &m.oidc_config else {
        return Ok(None);
    };
    let config: OidcConfig = serde_json::from_str(config).map_err(|_| {
        Error::internal(format!(
            "identity provider {}: its stored OIDC settings are unreadable",
            m.name
        ))
    })?;
    Ok(Some(OidcProvider {
        issuer: config.issuer,
        client_id: config.client_id,
        client_secret: Secret::new(m.oidc_client_secret.clone().unwrap_or_default()),
        scopes: config.scopes,
        endpoints: config.endpoints,
        jwks: m.oidc_jwks.clone().unwrap_or_default(),
        jwks_read_at: m
            .oidc_jwks_read_at_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or(m.updated_at),
    }))
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn provider(m: idps::Model) -> StoreResult<IdentityProvider> {
    let certificates = m
        .signing_certificates
        .lines()
        .map(|line| B64.decode(line.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            Error::internal(format!(
                "identity provider {}: a stored certificate is not base64",
                m.name
            ))
        })?;
    let oidc = oidc_of(&m)?;
    Ok(IdentityProvider {
        oidc,
        id: m.id,
        name: m.name,
        enabled: m.enabled,
        sp_entity_id: m.sp_entity_id,
        acs_url: m.acs_url,
        metadata: IdpMetadata {
            xml: m.metadata_xml,
            entity_id: m.idp_entity_id,
            sso_url: m.idp_sso_url,
            certificates,
        },
        metadata_url: m.metadata_url,
        username_attribute: m.username_attribute,
        account_attribute: m.account_attribute,
        role_attribute: m.role_attribute,
        groups_attribute: m.groups_attribute,
        default_account: m.default_account,
        default_role: m.default_role,
        require_signed_assertions: m.require_signed_assertions,
        require_signed_response: m.require_signed_response,
        allow_idp_initiated: m.allow_idp_initiated,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn active(p: &IdentityProvider) -> idps::ActiveModel {
    let certificates: Vec<String> = p
        .metadata
        .certificates
        .iter()
        .map(|der| B64.encode(der))
        .collect();
    let oidc_config = p.oidc.as_ref().map(|o| {
        serde_json::json!({
            "issuer": o.issuer,
            "client_id": o.client_id,
            "scopes": o.scopes,
            "endpoints": o.endpoints,
        })
        .to_string()
    });
    idps::ActiveModel {
        oidc_config: Set(oidc_config),
        oidc_client_secret: Set(p.oidc.as_ref().map(|o| o.client_secret.expose().to_owned())),
        oidc_jwks: Set(p.oidc.as_ref().map(|o| o.jwks.clone())),
        oidc_jwks_read_at_ms: Set(p.oidc.as_ref().map(|o| o.jwks_read_at.timestamp_millis())),
        id: Set(p.id),
        name: Set(p.name.clone()),
        enabled: Set(p.enabled),
        sp_entity_id: Set(p.sp_entity_id.clone()),
        acs_url: Set(p.acs_url.clone()),
        metadata_xml: Set(p.metadata.xml.clone()),
        metadata_url: Set(p.metadata_url.clone()),
        idp_entity_id: Set(p.metadata.entity_id.clone()),
        idp_sso_url: Set(p.metadata.sso_url.clone()),
        signing_certificates: Set(certificates.join("\n")),
        username_attribute: Set(p.username_attribute.clone()),
        account_attribute: Set(p.account_attribute.clone()),
        role_attribute: Set(p.role_attribute.clone()),
        groups_attribute: Set(p.groups_attribute.clone()),
        default_account: Set(p.default_account.clone()),
        default_role: Set(p.default_role.clone()),
        require_signed_assertions: Set(p.require_signed_assertions),
        require_signed_response: Set(p.require_signed_response),
        allow_idp_initiated: Set(p.allow_idp_initiated),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    }
}

pub async fn find(db: &impl ConnectionTrait, name: &str) -> StoreResult<Option<IdentityProvider>> {
    idps::Entity::find()
        .filter(idps::Column::Name.eq(name))
        .one(db)
        .await
        .db()?
        .map(provider)
        .transpose()
}

/// The provider that claims `entity_id` as its issuer.
pub async fn find_by_entity_id(
    db: &impl ConnectionTrait,
    entity_id: &str,
) -> StoreResult<Option<IdentityProvider>> {
    idps::Entity::find()
        .filter(idps::Column::IdpEntityId.eq(entity_id))
        .one(db)
        .await
        .db()?
        .map(provider)
        .transpose()
}

/// The OpenID Connect providers.
pub async fn oidc_providers(db: &impl ConnectionTrait) -> StoreResult<Vec<IdentityProvider>> {
    idps::Entity::find()
        .filter(idps::Column::OidcConfig.is_not_null())
        .order_by_asc(idps::Column::Name)
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(provider)
        .collect()
}

/// The providers whose metadata is read from an address.
pub async fn with_metadata_url(db: &impl ConnectionTrait) -> StoreResult<Vec<IdentityProvider>> {
    idps::Entity::find()
        .filter(idps::Column::MetadataUrl.is_not_null())
        .order_by_asc(idps::Column::Name)
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(provider)
        .collect()
}

/// The names of enabled providers, in order, at most `limit`, each with
/// its protocol (`saml` or `oidc`).
pub async fn enabled_names(
    db: &impl ConnectionTrait,
    limit: u64,
) -> StoreResult<Vec<(String, &'static str)>> {
    let rows = idps::Entity::find()
        .select_only()
        .column(idps::Column::Name)
        .column(idps::Column::OidcConfig)
        .filter(idps::Column::Enabled.eq(true))
        .order_by_asc(idps::Column::Name)
        .limit(limit)
        .into_tuple::<(String, Option<String>)>()
        .all(db)
        .await
        .db()?;
    Ok(rows
        .into_iter()
        .map(|(name, oidc)| (name, if oidc.is_some() { "oidc" } else { "saml" }))
        .collect())
}

pub async fn list(
    db: &impl ConnectionTrait,
    page: &PageRequest,
) -> StoreResult<Page<IdentityProvider>> {
    let mut query = idps::Entity::find()
        .filter(listing::prefix_of(idps::Column::Name, page).unwrap_or_else(Condition::all))
        .order_by(idps::Column::Name, listing::order_of(page))
        .limit(page.limit + 1);
    if let (Some([key]), _) = page.cursor() {
        query = query.filter(listing::past(idps::Column::Name, key, page));
    }
    let rows = query
        .all(db)
        .await
        .db()?
        .into_iter()
        .map(provider)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_window(rows, page, |p: &IdentityProvider| {
        vec![p.name.as_str()]
    }))
}

pub async fn create(db: &impl ConnectionTrait, p: &IdentityProvider) -> StoreResult<()> {
    idps::Entity::insert(active(p))
        .exec_without_returning(db)
        .await
        .map_err(|e| classify_conflict(e, format!("identity provider {}", quoted(&p.name))))?;
    Ok(())
}

/// Writes every field of `p` over the stored row of its id.
pub async fn replace(db: &impl ConnectionTrait, p: &IdentityProvider) -> StoreResult<bool> {
    let result = idps::Entity::update_many()
        .set(active(p))
        .filter(idps::Column::Id.eq(p.id))
        .exec(db)
        .await
        .map_err(|e| classify_conflict(e, format!("identity provider {}", quoted(&p.name))))?;
    Ok(result.rows_affected > 0)
}

/// A refreshed metadata document, written only over the state it was
/// read from (`before`): an administrator's change in between (another
/// document, a pasted one, a deletion) wins, and nothing is written.
pub async fn refresh_metadata(
    db: &impl ConnectionTrait,
    before: &IdentityProvider,
    after: &IdentityProvider,
) -> StoreResult<bool> {
    let fresh = active(after);
    let result = idps::Entity::update_many()
        .set(idps::ActiveModel {
            metadata_xml: fresh.metadata_xml,
            idp_entity_id: fresh.idp_entity_id,
            idp_sso_url: fresh.idp_sso_url,
            signing_certificates: fresh.signing_certificates,
            updated_at: fresh.updated_at,
            ..Default::default()
        })
        .filter(idps::Column::Id.eq(before.id))
        .filter(idps::Column::UpdatedAt.eq(before.updated_at))
        .filter(idps::Column::MetadataXml.eq(before.metadata.xml.clone()))
        .filter(idps::Column::MetadataUrl.eq(before.metadata_url.clone()))
        .exec(db)
        .await
        .map_err(|e| classify_conflict(e, format!("identity provider {}", quoted(&before.name))))?;
    Ok(result.rows_affected == 1)
}

/// An OIDC provider's discovery document and JWKS read again, written
/// only over the state they were read from (as `refresh_metadata`).
pub async fn refresh_oidc(
    db: &impl ConnectionTrait,
    before: &IdentityProvider,
    after: &IdentityProvider,
) -> StoreResult<bool> {
    let fresh = active(after);
    let result = idps::Entity::update_many()
        .set(idps::ActiveModel {
            oidc_config: fresh.oidc_config,
            oidc_jwks: fresh.oidc_jwks,
            oidc_jwks_read_at_ms: fresh.oidc_jwks_read_at_ms,
            ..Default::default()
        })
        .filter(idps::Column::Id.eq(before.id))
        .filter(idps::Column::UpdatedAt.eq(before.updated_at))
        .filter(
            idps::Column::OidcJwksReadAtMs.eq(before
                .oidc
                .as_ref()
                .map(|o| o.jwks_read_at.timestamp_millis())),
        )
        .exec(db)
        .await
        .db()?;
    Ok(result.rows_affected == 1)
}

/// What deleting a provider took with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub users: u64,
    pub api_keys: u64,
    pub token_families: u64,
}

/// The users a provider signed in, with the provider's name as the last
/// placeholder (`$n`): SQLite binds placeholders in the order they appear.
fn users_of(n: u8) -> String {
    format!("SELECT id FROM users WHERE user_type IN ('saml', 'oidc') AND idp_name = ${n}")
}

/// Deletes the provider, its mappings and its users with their grants and
/// memberships; their API keys are marked as their owners' (they never
/// authenticate again and are purged after the retention period, as for
/// DeleteUser) and their token families revoked. In the caller's
/// transaction.
pub async fn delete_with_users(
    db: &impl ConnectionTrait,
    p: &IdentityProvider,
    now: DateTime<Utc>,
) -> StoreResult<Deleted> {
    let name = || sea_orm::Value::from(p.name.as_str());
    let run = async |text: String, values: Vec<sea_orm::Value>| -> StoreResult<u64> {
        Ok(db
            .execute_raw(sql(db, &text, values))
            .await
            .db()?
            .rows_affected())
    };
    let now_ms = now.timestamp_millis();
    let api_keys = run(
        format!(
            "UPDATE api_keys SET owner_deleted_at = $1 WHERE owner_deleted_at IS NULL \
             AND user_id IN ({})",
            users_of(2)
        ),
        vec![now.into(), name()],
    )
    .await?;
    let token_families = run(
        format!(
            "UPDATE token_families SET revoked_at_ms = $1 WHERE revoked_at_ms IS NULL \
             AND expires_at_ms > $2 AND user_id IN ({})",
            users_of(3)
        ),
        vec![now_ms.into(), now_ms.into(), name()],
    )
    .await?;
    for table in ["role_bindings", "group_members"] {
        run(
            format!("DELETE FROM {table} WHERE user_id IN ({})", users_of(1)),
            vec![name()],
        )
        .await?;
    }
    let users = run(
        "DELETE FROM users WHERE user_type IN ('saml', 'oidc') AND idp_name = $1".to_owned(),
        vec![name()],
    )
    .await?;
    mappings::Entity::delete_many()
        .filter(mappings::Column::IdpId.eq(p.id))
        .exec(db)
        .await
        .db()?;
    super::scim::delete_tokens_of(db, p.id).await?;
    idps::Entity::delete_by_id(p.id).exec(db).await.db()?;
    Ok(Deleted {
        users,
        api_keys,
        token_families,
    })
}

/// The names of the groups mapped to the provider, sorted.
pub async fn mapped_groups(db: &impl ConnectionTrait, idp_id: Uuid) -> StoreResult<Vec<String>> {
    user_groups::Entity::find()
        .select_only()
        .column(user_groups::Column::Name)
        .join(JoinType::InnerJoin, mappings::Relation::Group.def().rev())
        .filter(mappings::Column::IdpId.eq(idp_id))
        .order_by_asc(user_groups::Column::Name)
        .into_tuple::<String>()
        .all(db)
        .await
        .db()
}

/// Maps groups to the provider; ones already mapped are left as they are.
pub async fn add_mappings(
    db: &impl ConnectionTrait,
    idp_id: Uuid,
    group_ids: &[Uuid],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for group_id in group_ids {
        mappings::Entity::insert(mappings::ActiveModel {
            idp_id: Set(idp_id),
            group_id: Set(*group_id),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([mappings::Column::IdpId, mappings::Column::GroupId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(|e| classify_missing_parent(e, "user group (deleted meanwhile)"))?;
    }
    Ok(())
}

pub async fn remove_mappings(
    db: &impl ConnectionTrait,
    idp_id: Uuid,
    group_ids: &[Uuid],
) -> StoreResult<()> {
    mappings::Entity::delete_many()
        .filter(mappings::Column::IdpId.eq(idp_id))
        .filter(mappings::Column::GroupId.is_in(group_ids.iter().copied()))
        .exec(db)
        .await
        .db()?;
    Ok(())
}
