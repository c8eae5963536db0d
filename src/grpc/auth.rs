//! Authenticate and Authorize: the checks sibling services call.

use tonic::{Request, Response, Status};

use super::context::{context_account, source_of};
use super::convert::enum_field;
use crate::domain::Core;
use crate::domain::authn::credentials::Credential;
use crate::domain::authn::sources::Source;
use crate::domain::caller::resolve_account;
use crate::domain::model::{CredentialKind, Principal};
use crate::domain::secret::Secret;
use crate::error::{AuthFailure, Error};
use crate::pb::auth_service_server::AuthService;
use crate::pb::{self, authenticate_request, authorize_request};

pub struct AuthApi {
    core: Core,
}

impl AuthApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }

    async fn authenticate_header(&self, header: &str, source: Source) -> Result<Principal, Error> {
        let credential = Credential::from_authorization(header);
        if let Err(Error::Unauthenticated(reason)) = &credential {
            tracing::info!(reason = reason.as_str(), "authentication failed");
            self.core.refused(crate::domain::audit::Refusal::credential(
                *reason, source, "unknown",
            ));
        }
        self.core.authenticate(&credential?, source).await
    }

    async fn authenticate_key(&self, value: String, source: Source) -> Result<Principal, Error> {
        self.core
            .authenticate(&Credential::ApiKey(Secret::new(value)), source)
            .await
    }

    async fn authenticate_token(&self, value: String, source: Source) -> Result<Principal, Error> {
        self.core
            .authenticate(&Credential::Token(Secret::new(value)), source)
            .await
    }

    async fn authenticate_password(
        &self,
        p: pb::PasswordCredentials,
        source: Source,
    ) -> Result<Principal, Error> {
        let credential = Credential::from_parts(&p.username, p.password);
        self.core.authenticate(&credential, source).await
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        use authenticate_request::Credentials;
        let source = source_of(&request, &request.get_ref().client_address)?;
        let principal = match request.into_inner().credentials {
            Some(Credentials::Authorization(header)) => {
                self.authenticate_header(&header, source).await?
            }
            Some(Credentials::Password(p)) => self.authenticate_password(p, source).await?,
            Some(Credentials::ApiKey(value)) => self.authenticate_key(value, source).await?,
            Some(Credentials::Token(value)) => self.authenticate_token(value, source).await?,
            None => return Err(Error::Unauthenticated(AuthFailure::MissingCredentials).into()),
        };
        Ok(Response::new(pb::AuthenticateResponse {
            principal: Some(principal.into()),
        }))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        use authorize_request::Subject;
        let header = context_account(&request)?;
        let source = source_of(&request, &request.get_ref().client_address)?;
        let req = request.into_inner();
        // Limits and shapes before any credential is checked.
        let context = resolve_account("account", &req.account, header.as_deref())?;
        self.core.check_action_count(&req.actions)?;
        let principal = match req.subject {
            Some(Subject::Authorization(header)) => {
                self.authenticate_header(&header, source).await?
            }
            Some(Subject::Password(p)) => self.authenticate_password(p, source).await?,
            Some(Subject::ApiKey(value)) => self.authenticate_key(value, source).await?,
            Some(Subject::Token(value)) => self.authenticate_token(value, source).await?,
            Some(Subject::Username(username)) => {
                crate::domain::names::required("username", &username)?;
                let mut principal = self.core.principal_by_username(&username).await?;
                let kind = enum_field::<pb::CredentialKind>(
                    "username_credential",
                    req.username_credential,
                )?;
                match kind {
                    Some(pb::CredentialKind::ApiKey) => {
                        principal.credential = CredentialKind::ApiKey
                    }
                    Some(pb::CredentialKind::Token) => principal.credential = CredentialKind::Token,
                    _ => {}
                }
                principal
            }
            None => return Err(Error::invalid("subject", "is required").into()),
        };
        let (account, decisions) = self
            .core
            .authorize(&principal, context.as_deref(), &req.actions)
            .await?;
        let allowed = decisions.iter().all(|d| d.allowed);
        Ok(Response::new(pb::AuthorizeResponse {
            principal: Some(principal.into()),
            account,
            allowed,
            decisions: decisions.into_iter().map(Into::into).collect(),
        }))
    }
}
