use tonic::{Request, Response, Status};

use super::context::authenticated;
use crate::domain::Core;
use crate::domain::names::{self, GroupName};
use crate::domain::page::PageRequest;
use crate::error::{Error, Result};
use crate::pb;
use crate::pb::group_service_server::GroupService;

const DESCRIPTION_MAX_CHARS: usize = 1024;
/// Bounds one request's transaction.
const MAX_ITEMS_PER_REQUEST: usize = 1000;

pub struct GroupApi {
    core: Core,
}

impl GroupApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }

    fn usernames(req: &pb::GroupMembersRequest) -> Result<Vec<String>> {
        if req.usernames.is_empty() {
            return Err(Error::invalid(
                "usernames",
                "at least one username is required",
            ));
        }
        if req.usernames.len() > MAX_ITEMS_PER_REQUEST {
            return Err(Error::invalid(
                "usernames",
                format!("at most {MAX_ITEMS_PER_REQUEST} per request"),
            ));
        }
        let mut usernames = req
            .usernames
            .iter()
            .enumerate()
            .map(|(i, u)| names::required(&format!("usernames[{i}]"), u).map(str::to_owned))
            .collect::<Result<Vec<_>>>()?;
        usernames.sort();
        usernames.dedup();
        Ok(usernames)
    }

    fn grants(&self, req: &pb::GroupGrantsRequest) -> Result<Vec<(String, String)>> {
        if req.grants.is_empty() {
            return Err(Error::invalid("grants", "at least one grant is required"));
        }
        if req.grants.len() > MAX_ITEMS_PER_REQUEST {
            return Err(Error::invalid(
                "grants",
                format!("at most {MAX_ITEMS_PER_REQUEST} per request"),
            ));
        }
        let mut grants = req
            .grants
            .iter()
            .enumerate()
            .map(|(i, g)| {
                self.core
                    .catalog()
                    .require_role(&format!("grants[{i}].role"), &g.role)?;
                names::required(&format!("grants[{i}].account"), &g.account)?;
                Ok((g.role.clone(), g.account.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        grants.sort();
        grants.dedup();
        Ok(grants)
    }
}

#[tonic::async_trait]
impl GroupService for GroupApi {
    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = GroupName::parse("name", &req.name)?;
        let description =
            names::description("description", &req.description, DESCRIPTION_MAX_CHARS)?;
        let group = self.core.create_group(&caller, name, description).await?;
        Ok(Response::new(group.into()))
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let group = self.core.get_group(&caller, name).await?;
        Ok(Response::new(group.into()))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let page = PageRequest::parse(req.page_size, &req.page_token, 1)?;
        let page = self.core.list_groups(&caller, &page).await?;
        Ok(Response::new(pb::ListGroupsResponse {
            groups: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let description =
            names::description("description", &req.description, DESCRIPTION_MAX_CHARS)?;
        let group = self.core.update_group(&caller, name, description).await?;
        Ok(Response::new(group.into()))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        self.core.delete_group(&caller, name).await?;
        Ok(Response::new(pb::DeleteGroupResponse {}))
    }

    async fn add_group_members(
        &self,
        request: Request<pb::GroupMembersRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let usernames = Self::usernames(&req)?;
        let group = self
            .core
            .add_group_members(&caller, name, &usernames)
            .await?;
        Ok(Response::new(group.into()))
    }

    async fn remove_group_members(
        &self,
        request: Request<pb::GroupMembersRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let usernames = Self::usernames(&req)?;
        let group = self
            .core
            .remove_group_members(&caller, name, &usernames)
            .await?;
        Ok(Response::new(group.into()))
    }

    async fn add_group_grants(
        &self,
        request: Request<pb::GroupGrantsRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let grants = self.grants(&req)?;
        let group = self.core.add_group_grants(&caller, name, &grants).await?;
        Ok(Response::new(group.into()))
    }

    async fn remove_group_grants(
        &self,
        request: Request<pb::GroupGrantsRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let grants = self.grants(&req)?;
        let group = self
            .core
            .remove_group_grants(&caller, name, &grants)
            .await?;
        Ok(Response::new(group.into()))
    }
}
