use tonic::{Request, Response, Status};

use super::context::authenticated;
use super::convert::{api_key, api_key_status_in, timestamp_in};
use crate::domain::Core;
use crate::domain::api_keys::{DESCRIPTION_MAX_CHARS, KeyUpdate, key_name, owner_account};
use crate::domain::names;
use crate::domain::page::PageRequest;

use crate::pb;
use crate::pb::api_key_service_server::ApiKeyService;

pub struct ApiKeyApi {
    core: Core,
}

impl ApiKeyApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }
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
