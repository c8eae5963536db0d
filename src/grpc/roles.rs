use tonic::{Request, Response, Status};

use super::context::authenticated;
use crate::domain::Core;
use crate::domain::names;
use crate::domain::page::PageRequest;
use crate::pb;
use crate::pb::role_service_server::RoleService;

pub struct RoleApi {
    core: Core,
}

impl RoleApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl RoleService for RoleApi {
    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let (caller, _) = authenticated(&self.core, request).await?;
        let context = caller.target_account("account", "")?;
        let roles = self.core.list_roles(&caller, &context).await?;
        Ok(Response::new(pb::ListRolesResponse {
            // The listing names the roles; GetRole gives their actions.
            roles: roles
                .into_iter()
                .map(|r| pb::Role {
                    actions: Vec::new(),
                    ..r.into()
                })
                .collect(),
        }))
    }

    async fn get_role(
        &self,
        request: Request<pb::GetRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let context = caller.target_account("account", "")?;
        let name = names::required("name", &req.name)?;
        let role = self.core.get_role(&caller, &context, name).await?;
        Ok(Response::new(role.into()))
    }

    async fn list_role_members(
        &self,
        request: Request<pb::ListRoleMembersRequest>,
    ) -> Result<Response<pb::ListRoleMembersResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let context = caller.target_account("account", "")?;
        let role = names::required("role", &req.role)?;
        let filter = if req.account.is_empty() {
            None
        } else {
            Some(names::required("account", &req.account)?)
        };
        let page = PageRequest::parse(req.page_size, &req.page_token, 2)?;
        let page = self
            .core
            .list_role_members(&caller, role, filter, &context, &page)
            .await?;
        Ok(Response::new(pb::ListRoleMembersResponse {
            members: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn add_role_member(
        &self,
        request: Request<pb::AddRoleMemberRequest>,
    ) -> Result<Response<pb::RoleMember>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let role = names::required("role", &req.role)?;
        let username = names::required("username", &req.username)?;
        let member = self
            .core
            .add_role_member(&caller, role, username, &account)
            .await?;
        Ok(Response::new(member.into()))
    }

    async fn remove_role_member(
        &self,
        request: Request<pb::RemoveRoleMemberRequest>,
    ) -> Result<Response<pb::RemoveRoleMemberResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let account = caller.target_account("account", &req.account)?;
        let role = names::required("role", &req.role)?;
        let username = names::required("username", &req.username)?;
        self.core
            .remove_role_member(&caller, role, username, &account)
            .await?;
        Ok(Response::new(pb::RemoveRoleMemberResponse {}))
    }
}
