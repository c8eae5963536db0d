use tonic::{Request, Response, Status};

use super::context::authenticated;
use super::convert::timestamp;
use crate::domain::Core;
use crate::domain::names;
use crate::domain::page::PageRequest;
use crate::domain::secret::Secret;
use crate::domain::sso::oidc::{self, OidcFields};
use crate::domain::sso::{IdpFields, metadata};
use crate::error::{Error, Result};
use crate::model::IdentityProvider;
use crate::pb;
use crate::pb::identity_provider_service_server::IdentityProviderService;

/// Bounds one request's transaction.
const MAX_GROUPS_PER_REQUEST: usize = 1000;

pub struct IdentityProviderApi {
    core: Core,
}

impl IdentityProviderApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }

    /// The provider as the wire shows it; `with_document` false leaves the
    /// metadata document out (listings).
    fn wire(&self, idp: IdentityProvider, with_document: bool) -> pb::IdentityProvider {
        if let Some(oidc) = &idp.oidc {
            let redirect_uri = self.core.oidc_redirect_uri(&idp);
            let backchannel_logout_uri =
                redirect_uri.trim_end_matches("/callback").to_owned() + "/backchannel-logout";
            return pb::IdentityProvider {
                name: idp.name.clone(),
                enabled: idp.enabled,
                default_account: idp.default_account.clone().unwrap_or_default(),
                default_role: idp.default_role.clone().unwrap_or_default(),
                created_at: timestamp(idp.created_at),
                last_updated: timestamp(idp.updated_at),
                oidc: Some(pb::OidcSettings {
                    issuer: oidc.issuer.clone(),
                    client_id: oidc.client_id.clone(),
                    client_secret: String::new(),
                    client_secret_set: !oidc.client_secret.is_empty(),
                    scopes: oidc.scopes.clone(),
                    username_claim: Some(
                        idp.username_attribute
                            .clone()
                            .unwrap_or_else(|| oidc::DEFAULT_USERNAME_CLAIM.to_owned()),
                    ),
                    account_claim: Some(idp.account_attribute.clone().unwrap_or_default()),
                    roles_claim: Some(idp.role_attribute.clone().unwrap_or_default()),
                    groups_claim: Some(idp.groups_attribute.clone().unwrap_or_default()),
                    authorization_endpoint: oidc.endpoints.authorization_endpoint.clone(),
                    token_endpoint: oidc.endpoints.token_endpoint.clone(),
                    jwks_uri: oidc.endpoints.jwks_uri.clone(),
                    userinfo_endpoint: oidc.endpoints.userinfo_endpoint.clone().unwrap_or_default(),
                    redirect_uri,
                    backchannel_logout_uri,
                }),
                ..Default::default()
            };
        }
        let (sp_entity_id, acs_url) = self.core.sp_endpoints(&idp);
        pb::IdentityProvider {
            oidc: None,
            sp_entity_id_configured: idp.sp_entity_id.is_some(),
            acs_url_configured: idp.acs_url.is_some(),
            name: idp.name,
            enabled: idp.enabled,
            sp_entity_id,
            acs_url,
            idp_metadata_xml: if with_document {
                idp.metadata.xml
            } else {
                String::new()
            },
            idp_metadata_url: idp.metadata_url.unwrap_or_default(),
            idp_username_attribute: idp.username_attribute.unwrap_or_default(),
            idp_account_attribute: idp.account_attribute.unwrap_or_default(),
            idp_role_attribute: idp.role_attribute.unwrap_or_default(),
            idp_groups_attribute: idp.groups_attribute.unwrap_or_default(),
            default_account: idp.default_account.unwrap_or_default(),
            default_role: idp.default_role.unwrap_or_default(),
            require_signed_assertions: idp.require_signed_assertions,
            require_signed_response: idp.require_signed_response,
            allow_idp_initiated: idp.allow_idp_initiated,
            created_at: timestamp(idp.created_at),
            last_updated: timestamp(idp.updated_at),
            idp_entity_id: idp.metadata.entity_id,
            idp_sso_url: idp.metadata.sso_url,
            signing_certificate_sha256: idp
                .metadata
                .certificates
                .iter()
                .map(|c| metadata::fingerprint(c))
                .collect(),
        }
    }

    fn user_groups(req: &pb::UserGroupMappingsRequest) -> Result<Vec<String>> {
        if req.user_groups.is_empty() {
            return Err(Error::invalid(
                "user_groups",
                "at least one user group is required",
            ));
        }
        if req.user_groups.len() > MAX_GROUPS_PER_REQUEST {
            return Err(Error::invalid(
                "user_groups",
                format!("at most {MAX_GROUPS_PER_REQUEST} per request"),
            ));
        }
        let mut groups = req
            .user_groups
            .iter()
            .enumerate()
            .map(|(i, g)| names::required(&format!("user_groups[{i}]"), g).map(str::to_owned))
            .collect::<Result<Vec<_>>>()?;
        groups.sort();
        groups.dedup();
        Ok(groups)
    }
}

/// A plain string field of a create request: empty means unset.
fn given(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// The OIDC half of a create or update request, and the claims it names
/// (which fill the mapping fields SAML's attributes fill). A claim given
/// both here and as a top-level SAML attribute is refused.
fn oidc_fields(oidc: Option<pb::OidcSettings>, fields: &mut IdpFields) -> Result<()> {
    let Some(o) = oidc else {
        return Ok(());
    };
    for (field, claim, slot) in [
        (
            "oidc.username_claim",
            o.username_claim,
            &mut fields.username_attribute,
        ),
        (
            "oidc.account_claim",
            o.account_claim,
            &mut fields.account_attribute,
        ),
        (
            "oidc.roles_claim",
            o.roles_claim,
            &mut fields.role_attribute,
        ),
        (
            "oidc.groups_claim",
            o.groups_claim,
            &mut fields.groups_attribute,
        ),
    ] {
        if let Some(claim) = claim {
            if slot.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(Error::invalid(
                    field,
                    "give the claim here only, not as an idp_*_attribute too",
                ));
            }
            *slot = Some(claim);
        }
    }
    fields.oidc = Some(OidcFields {
        issuer: given(o.issuer),
        client_id: given(o.client_id),
        client_secret: given(o.client_secret).map(Secret::new),
        scopes: (!o.scopes.is_empty()).then_some(o.scopes),
    });
    Ok(())
}

#[tonic::async_trait]
impl IdentityProviderService for IdentityProviderApi {
    async fn create_identity_provider(
        &self,
        request: Request<pb::CreateIdentityProviderRequest>,
    ) -> Result<Response<pb::IdentityProvider>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let fields = IdpFields {
            enabled: req.enabled,
            sp_entity_id: given(req.sp_entity_id),
            acs_url: given(req.acs_url),
            metadata_xml: given(req.idp_metadata_xml),
            metadata_url: given(req.idp_metadata_url),
            username_attribute: given(req.idp_username_attribute),
            account_attribute: given(req.idp_account_attribute),
            role_attribute: given(req.idp_role_attribute),
            // Unset takes the default (`memberOf`); empty asks for none.
            groups_attribute: req.idp_groups_attribute,
            default_account: given(req.default_account),
            default_role: given(req.default_role),
            require_signed_assertions: req.require_signed_assertions,
            require_signed_response: req.require_signed_response,
            allow_idp_initiated: req.allow_idp_initiated,
            oidc: None,
        };
        let mut fields = fields;
        oidc_fields(req.oidc, &mut fields)?;
        let idp = self
            .core
            .create_identity_provider(&caller, &req.name, fields)
            .await?;
        Ok(Response::new(self.wire(idp, true)))
    }

    async fn get_identity_provider(
        &self,
        request: Request<pb::GetIdentityProviderRequest>,
    ) -> Result<Response<pb::IdentityProvider>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let idp = self.core.get_identity_provider(&caller, name).await?;
        Ok(Response::new(self.wire(idp, true)))
    }

    async fn list_identity_providers(
        &self,
        request: Request<pb::ListIdentityProvidersRequest>,
    ) -> Result<Response<pb::ListIdentityProvidersResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let page = PageRequest::parse(req.page_size, &req.page_token, 1)?;
        let page = self.core.list_identity_providers(&caller, &page).await?;
        Ok(Response::new(pb::ListIdentityProvidersResponse {
            identity_providers: page
                .items
                .into_iter()
                .map(|idp| self.wire(idp, false))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_identity_provider(
        &self,
        request: Request<pb::UpdateIdentityProviderRequest>,
    ) -> Result<Response<pb::IdentityProvider>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let fields = IdpFields {
            enabled: req.enabled,
            sp_entity_id: req.sp_entity_id,
            acs_url: req.acs_url,
            metadata_xml: req.idp_metadata_xml,
            metadata_url: req.idp_metadata_url,
            username_attribute: req.idp_username_attribute,
            account_attribute: req.idp_account_attribute,
            role_attribute: req.idp_role_attribute,
            groups_attribute: req.idp_groups_attribute,
            default_account: req.default_account,
            default_role: req.default_role,
            require_signed_assertions: req.require_signed_assertions,
            require_signed_response: req.require_signed_response,
            allow_idp_initiated: req.allow_idp_initiated,
            oidc: None,
        };
        let mut fields = fields;
        oidc_fields(req.oidc, &mut fields)?;
        let idp = self
            .core
            .update_identity_provider(&caller, name, fields)
            .await?;
        Ok(Response::new(self.wire(idp, true)))
    }

    async fn delete_identity_provider(
        &self,
        request: Request<pb::DeleteIdentityProviderRequest>,
    ) -> Result<Response<pb::DeleteIdentityProviderResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let deleted = self.core.delete_identity_provider(&caller, name).await?;
        let count = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(Response::new(pb::DeleteIdentityProviderResponse {
            users_deleted: count(deleted.users),
            api_keys_deleted: count(deleted.api_keys),
            token_families_ended: count(deleted.token_families),
        }))
    }

    async fn add_user_group_mappings(
        &self,
        request: Request<pb::UserGroupMappingsRequest>,
    ) -> Result<Response<pb::UserGroupMappings>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let idp = names::required("idp", &req.idp)?;
        let groups = Self::user_groups(&req)?;
        let user_groups = self
            .core
            .add_user_group_mappings(&caller, idp, &groups)
            .await?;
        Ok(Response::new(pb::UserGroupMappings {
            idp: idp.to_owned(),
            user_groups,
        }))
    }

    async fn list_user_group_mappings(
        &self,
        request: Request<pb::ListUserGroupMappingsRequest>,
    ) -> Result<Response<pb::UserGroupMappings>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let idp = names::required("idp", &req.idp)?;
        let user_groups = self.core.list_user_group_mappings(&caller, idp).await?;
        Ok(Response::new(pb::UserGroupMappings {
            idp: idp.to_owned(),
            user_groups,
        }))
    }

    async fn remove_user_group_mappings(
        &self,
        request: Request<pb::UserGroupMappingsRequest>,
    ) -> Result<Response<pb::UserGroupMappings>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let idp = names::required("idp", &req.idp)?;
        let groups = Self::user_groups(&req)?;
        let user_groups = self
            .core
            .remove_user_group_mappings(&caller, idp, &groups)
            .await?;
        Ok(Response::new(pb::UserGroupMappings {
            idp: idp.to_owned(),
            user_groups,
        }))
    }

    async fn create_scim_token(
        &self,
        request: Request<pb::CreateScimTokenRequest>,
    ) -> Result<Response<pb::CreateScimTokenResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let idp = names::required("idp", &req.idp)?;
        let (token, value) = self.core.create_scim_token(&caller, idp).await?;
        Ok(Response::new(pb::CreateScimTokenResponse {
            token: Some(scim_token(token)),
            value: value.expose().to_owned(),
        }))
    }

    async fn list_scim_tokens(
        &self,
        request: Request<pb::ListScimTokensRequest>,
    ) -> Result<Response<pb::ListScimTokensResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let idp = names::required("idp", &req.idp)?;
        let tokens = self.core.list_scim_tokens(&caller, idp).await?;
        Ok(Response::new(pb::ListScimTokensResponse {
            tokens: tokens.into_iter().map(scim_token).collect(),
        }))
    }

    async fn revoke_scim_token(
        &self,
        request: Request<pb::RevokeScimTokenRequest>,
    ) -> Result<Response<pb::RevokeScimTokenResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let idp = names::required("idp", &req.idp)?;
        let id = names::required("id", &req.id)?;
        self.core.revoke_scim_token(&caller, idp, id).await?;
        Ok(Response::new(pb::RevokeScimTokenResponse {}))
    }
}

fn scim_token(token: crate::domain::scim::ScimTokenInfo) -> pb::ScimToken {
    pb::ScimToken {
        id: token.id,
        idp: token.idp,
        created_at: timestamp(token.created_at),
        last_used_at: token.last_used_at.and_then(timestamp),
    }
}
