use tonic::{Request, Response, Status};

use super::caller::{admin_caller, context_header, target_account};
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
        let caller = admin_caller(&self.core, request.metadata()).await?;
        let context = target_account("account", "", request.metadata(), &caller)?;
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
        let caller = admin_caller(&self.core, request.metadata()).await?;
        let context = target_account("account", "", request.metadata(), &caller)?;
        let name = names::required("name", &request.get_ref().name)?;
        let role = self.core.get_role(&caller, &context, name).await?;
        Ok(Response::new(role.into()))
    }

    async fn list_role_members(
        &self,
        request: Request<pb::ListRoleMembersRequest>,
    ) -> Result<Response<pb::ListRoleMembersResponse>, Status> {
        let caller = admin_caller(&self.core, request.metadata()).await?;
        let context =
            context_header(request.metadata())?.unwrap_or_else(|| caller.account().to_owned());
        let req = request.into_inner();
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
        let caller = admin_caller(&self.core, request.metadata()).await?;
        let account = target_account(
            "account",
            &request.get_ref().account,
            request.metadata(),
            &caller,
        )?;
        let req = request.into_inner();
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
        let caller = admin_caller(&self.core, request.metadata()).await?;
        let account = target_account(
            "account",
            &request.get_ref().account,
            request.metadata(),
            &caller,
        )?;
        let req = request.into_inner();
        let role = names::required("role", &req.role)?;
        let username = names::required("username", &req.username)?;
        self.core
            .remove_role_member(&caller, role, username, &account)
            .await?;
        Ok(Response::new(pb::RemoveRoleMemberResponse {}))
    }
}
