use tonic::{Request, Response, Status};

use super::context::authenticated;
use super::convert::{timestamp, user_state_in, user_type_in};
use crate::domain::Core;
use crate::domain::model::UserType;
use crate::domain::names;
use crate::domain::page::PageRequest;
use crate::domain::secret::Secret;
use crate::domain::users::{NewUser, check_password};
use crate::error::Error;
use crate::pb;
use crate::pb::user_service_server::UserService;

pub struct UserApi {
    core: Core,
}

impl UserApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }
}

fn users_response(
    page: crate::domain::page::Page<crate::domain::model::UserWithGrants>,
) -> pb::ListUsersResponse {
    pb::ListUsersResponse {
        users: page.items.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let user_type = user_type_in("type", req.r#type)?.unwrap_or(UserType::Native);
        let new = NewUser::of_type(
            account,
            user_type,
            &req.username,
            Secret::new(req.password),
            &req.idp_name,
            req.roles,
        )?;
        let user = self.core.create_user(&caller, new).await?;
        Ok(Response::new(user.into()))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let username = names::required("username", &req.username)?;
        let user = self.core.get_user(&caller, &account, username).await?;
        Ok(Response::new(user.into()))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let page = PageRequest::parse(req.page_size, &req.page_token, 1)?;
        let page = self.core.list_users(&caller, &account, &page).await?;
        Ok(Response::new(users_response(page)))
    }

    async fn list_all_users(
        &self,
        request: Request<pb::ListAllUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let page = PageRequest::parse(req.page_size, &req.page_token, 1)?;
        let page = self.core.list_all_users(&caller, &page).await?;
        Ok(Response::new(users_response(page)))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let username = names::required("username", &req.username)?;
        self.core.delete_user(&caller, &account, username).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn set_password(
        &self,
        request: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::SetPasswordResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let username = names::required("username", &req.username)?;
        let password = Secret::new(req.password);
        check_password("password", &password)?;
        let current = (!req.current_password.is_empty()).then(|| Secret::new(req.current_password));
        let at = self
            .core
            .set_password(&caller, &account, username, &password, current.as_ref())
            .await?;
        Ok(Response::new(pb::SetPasswordResponse {
            password_last_updated: timestamp(at),
        }))
    }

    async fn unlock_user(
        &self,
        request: Request<pb::UnlockUserRequest>,
    ) -> Result<Response<pb::UnlockUserResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let username = names::required("username", &req.username)?;
        let cleared = self.core.unlock_user(&caller, &account, username).await?;
        Ok(Response::new(pb::UnlockUserResponse { cleared }))
    }

    async fn set_user_state(
        &self,
        request: Request<pb::SetUserStateRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let username = names::required("username", &req.username)?;
        let state = user_state_in("state", req.state)?
            .ok_or_else(|| Error::invalid("state", "must be ENABLED or DISABLED"))?;
        let user = self
            .core
            .set_user_state(&caller, &account, username, state)
            .await?;
        Ok(Response::new(user.into()))
    }
}
