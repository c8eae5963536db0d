use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "identity_providers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    pub enabled: bool,
    pub sp_entity_id: Option<String>,
    pub acs_url: Option<String>,
    pub metadata_xml: String,
    pub metadata_url: Option<String>,
    #[sea_orm(unique)]
    pub idp_entity_id: String,
    pub idp_sso_url: String,
    /// Base64 DER, one certificate per line.
    pub signing_certificates: String,
    pub username_attribute: Option<String>,
    pub account_attribute: Option<String>,
    pub role_attribute: Option<String>,
    pub groups_attribute: Option<String>,
    pub default_account: Option<String>,
    pub default_role: Option<String>,
    pub require_signed_assertions: bool,
    pub require_signed_response: bool,
    pub allow_idp_initiated: bool,
    /// JSON (`OidcConfig` in store::identity_providers); NULL for SAML.
    pub oidc_config: Option<String>,
    pub oidc_client_secret: Option<String>,
    pub oidc_jwks: Option<String>,
    pub oidc_jwks_read_at_ms: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
