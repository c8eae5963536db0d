//! TokenService: the grants, revocation, and the public signing keys.

use tonic::{Request, Response, Status};

use super::context::{authenticated, source_of};
use crate::domain::Core;
use crate::domain::secret::Secret;
use crate::domain::sso::sign_in::Answering;
use crate::domain::tokens::Issued;
use crate::error::{AuthFailure, Error};
use crate::pb;
use crate::pb::create_token_request::Grant;
use crate::pb::token_service_server::TokenService;

pub struct TokenApi {
    core: Core,
}

impl TokenApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }
}

fn issued(issued: Issued) -> pb::CreateTokenResponse {
    pb::CreateTokenResponse {
        relay_state: String::new(),
        access_token: issued.access_token.expose().to_owned(),
        token_type: "Bearer".to_owned(),
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token.expose().to_owned(),
        refresh_expires_in: issued.refresh_expires_in,
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let source = source_of(&request, &request.get_ref().client_address)?;
        let req = request.into_inner();
        let pair = match req.grant {
            Some(Grant::Password(p)) => {
                self.core
                    .create_token_with_password(&p.username, &Secret::new(p.password), source)
                    .await?
            }
            Some(Grant::RefreshToken(value)) => {
                self.core
                    .create_token_with_refresh(&Secret::new(value), source)
                    .await?
            }
            Some(Grant::Saml(grant)) => {
                let answering = if grant.request_id.is_empty() {
                    Answering::AnyRequest
                } else {
                    Answering::Request(&grant.request_id)
                };
                self.core
                    .create_token_with_saml(&grant.idp, &grant.saml_response, answering, source)
                    .await?
            }
            Some(Grant::Oidc(grant)) => {
                let signed_in = self
                    .core
                    .create_token_with_oidc(&grant.idp, &grant.code, &grant.state, source)
                    .await?;
                return Ok(Response::new(pb::CreateTokenResponse {
                    relay_state: signed_in.relay_state,
                    ..issued(signed_in.issued)
                }));
            }
            None => return Err(Error::Unauthenticated(AuthFailure::MissingCredentials).into()),
        };
        Ok(Response::new(issued(pair)))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let token = request.into_inner().token;
        if token.is_empty() {
            return Err(Error::invalid("token", "is required").into());
        }
        let revoked = self.core.revoke_token(&Secret::new(token)).await?;
        Ok(Response::new(pb::RevokeTokenResponse { revoked }))
    }

    async fn revoke_user_tokens(
        &self,
        request: Request<pb::RevokeUserTokensRequest>,
    ) -> Result<Response<pb::RevokeUserTokensResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        if !req.username.is_empty() {
            crate::domain::names::required("username", &req.username)?;
        }
        let revoked = self
            .core
            .revoke_user_tokens(&caller, &account, &req.username)
            .await?;
        Ok(Response::new(pb::RevokeUserTokensResponse {
            families_revoked: i32::try_from(revoked).unwrap_or(i32::MAX),
        }))
    }

    async fn start_saml_login(
        &self,
        request: Request<pb::StartSamlLoginRequest>,
    ) -> Result<Response<pb::StartSamlLoginResponse>, Status> {
        let source = source_of(&request, "")?;
        let req = request.into_inner();
        let idp = crate::domain::names::required("idp", &req.idp)?;
        let started = self
            .core
            .start_saml_login(idp, &req.relay_state, source)
            .await?;
        Ok(Response::new(pb::StartSamlLoginResponse {
            redirect_url: started.redirect_url,
            request_id: started.request_id,
        }))
    }

    async fn start_oidc_login(
        &self,
        request: Request<pb::StartOidcLoginRequest>,
    ) -> Result<Response<pb::StartOidcLoginResponse>, Status> {
        let source = source_of(&request, "")?;
        let req = request.into_inner();
        let idp = crate::domain::names::required("idp", &req.idp)?;
        let started = self
            .core
            .start_oidc_login(idp, &req.relay_state, source)
            .await?;
        Ok(Response::new(pb::StartOidcLoginResponse {
            redirect_url: started.redirect_url,
            state: started.state,
        }))
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        let keys = self.core.tokens().keys();
        Ok(Response::new(pb::GetSigningKeysResponse {
            keys: keys
                .public_keys()
                .map(|k| pb::SigningKey {
                    kid: k.kid.clone(),
                    alg: k.alg.to_owned(),
                    kty: k.kty().to_owned(),
                    crv: if k.x.is_some() {
                        "Ed25519".to_owned()
                    } else {
                        String::new()
                    },
                    x: k.x.clone().unwrap_or_default(),
                    n: k.n.clone().unwrap_or_default(),
                    e: k.e.clone().unwrap_or_default(),
                    signing: k.signing,
                })
                .collect(),
            jwks: keys.jwks().to_owned(),
        }))
    }
}
