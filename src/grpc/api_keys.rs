use tonic::{Request, Response, Status};

use super::context::authenticated;
use super::convert::{api_key, api_key_status_in, timestamp_in};
use crate::domain::Core;
use crate::domain::api_keys::KeyUpdate;
use crate::domain::caller::Caller;
use crate::domain::names;
use crate::domain::page::PageRequest;
use crate::error::{Error, Result};
use crate::pb;
use crate::pb::api_key_service_server::ApiKeyService;

const NAME_MAX_CHARS: usize = 128;
const DESCRIPTION_MAX_CHARS: usize = 1024;

pub struct ApiKeyApi {
    core: Core,
}

impl ApiKeyApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }
}

/// A key name: required, bounded, one line of printable text.
fn key_name(field: &str, value: &str) -> Result<String> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    names::description(field, value, NAME_MAX_CHARS)
}

/// The owner's account: for one's own keys, the caller's account.
fn owner_account(caller: &Caller, account: &str, username: &str) -> Result<String> {
    // One's own keys: usernames are global, so the account adds nothing.
    if username.is_empty() || username == caller.username() {
        let context = caller.account_context.as_deref().unwrap_or_default();
        let named = if account.is_empty() { context } else { account };
        if !named.is_empty() && named != caller.account() {
            return Err(Error::invalid(
                "username",
                "is required to manage keys of another account's user",
            ));
        }
        return Ok(caller.account().to_owned());
    }
    caller.target_account("account", account)
}

#[tonic::async_trait]
impl ApiKeyService for ApiKeyApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> std::result::Result<Response<pb::CreateApiKeyResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let r = &req;
        let account = owner_account(&caller, &r.account, &r.username)?;
        let name = key_name("name", &r.name)?;
        let description = names::description("description", &r.description, DESCRIPTION_MAX_CHARS)?;
        let expires_at = timestamp_in("expires_at", r.expires_at)?;
        let (key, value) = self
            .core
            .create_api_key(
                &caller,
                &account,
                &r.username,
                name,
                description,
                expires_at,
            )
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key: Some(api_key(key, self.core.clock().now())),
            value: value.expose().to_owned(),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> std::result::Result<Response<pb::ListApiKeysResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let r = &req;
        let account = owner_account(&caller, &r.account, &r.username)?;
        let page = PageRequest::parse(r.page_size, &r.page_token, 1)?;
        let keys = self
            .core
            .list_api_keys(
                &caller,
                &account,
                &r.username,
                r.include_expired,
                r.include_revoked,
                &page,
            )
            .await?;
        let now = self.core.clock().now();
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: keys.items.into_iter().map(|k| api_key(k, now)).collect(),
            next_page_token: keys.next_page_token,
        }))
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> std::result::Result<Response<pb::ApiKey>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let r = &req;
        let account = owner_account(&caller, &r.account, &r.username)?;
        let name = key_name("name", &r.name)?;
        let key = self
            .core
            .get_api_key(&caller, &account, &r.username, &name)
            .await?;
        Ok(Response::new(api_key(key, self.core.clock().now())))
    }

    async fn update_api_key(
        &self,
        request: Request<pb::UpdateApiKeyRequest>,
    ) -> std::result::Result<Response<pb::ApiKey>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let r = &req;
        let account = owner_account(&caller, &r.account, &r.username)?;
        let name = key_name("name", &r.name)?;
        let update = KeyUpdate {
            new_name: r
                .new_name
                .as_deref()
                .map(|n| key_name("new_name", n))
                .transpose()?,
            description: r
                .description
                .as_deref()
                .map(|d| names::description("description", d, DESCRIPTION_MAX_CHARS))
                .transpose()?,
            status: api_key_status_in("status", r.status)?,
        };
        let key = self
            .core
            .update_api_key(&caller, &account, &r.username, &name, update)
            .await?;
        Ok(Response::new(api_key(key, self.core.clock().now())))
    }

    async fn delete_api_key(
        &self,
        request: Request<pb::DeleteApiKeyRequest>,
    ) -> std::result::Result<Response<pb::DeleteApiKeyResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let r = &req;
        let account = owner_account(&caller, &r.account, &r.username)?;
        let name = key_name("name", &r.name)?;
        self.core
            .delete_api_key(&caller, &account, &r.username, &name)
            .await?;
        Ok(Response::new(pb::DeleteApiKeyResponse {}))
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> std::result::Result<Response<pb::CreateApiKeyResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let r = &req;
        let account = owner_account(&caller, &r.account, &r.username)?;
        let name = key_name("name", &r.name)?;
        let (key, value) = self
            .core
            .rotate_api_key(&caller, &account, &r.username, &name, r.grace_seconds)
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key: Some(api_key(key, self.core.clock().now())),
            value: value.expose().to_owned(),
        }))
    }
}
