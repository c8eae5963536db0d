use tonic::{Request, Response, Status};

use super::context::authenticated;
use super::convert::{account_state_in, account_type_in};
use crate::domain::Core;
use crate::domain::model::{AccountState, AccountType};
use crate::domain::names::{self, AccountName, Email};
use crate::domain::page::PageRequest;
use crate::error::Error;
use crate::pb;
use crate::pb::account_service_server::AccountService;

pub struct AccountApi {
    core: Core,
}

impl AccountApi {
    pub fn new(core: Core) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = AccountName::parse_new("name", &req.name)?;
        let email = Email::parse_optional("email", &req.email)?;
        let account_type = account_type_in("type", req.r#type)?.unwrap_or(AccountType::User);
        let account = self
            .core
            .create_account(&caller, name, email, account_type)
            .await?;
        Ok(Response::new(account.into()))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = caller.target_account("name", &req.name)?;
        let account = self.core.get_account(&caller, &name).await?;
        Ok(Response::new(account.into()))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let state = account_state_in("state", req.state)?;
        let page = PageRequest::parse(req.page_size, &req.page_token, 1)?;
        let page = self.core.list_accounts(&caller, state, &page).await?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = caller.target_account("name", &req.name)?;
        let email = Email::parse_optional("email", &req.email)?;
        let account = self
            .core
            .update_account_email(&caller, &name, email)
            .await?;
        Ok(Response::new(account.into()))
    }

    async fn set_account_state(
        &self,
        request: Request<pb::SetAccountStateRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let state = match account_state_in("state", req.state)? {
            Some(state @ (AccountState::Enabled | AccountState::Disabled)) => state,
            Some(AccountState::Deleting) => {
                return Err(
                    Error::invalid("state", "use DeleteAccount to delete an account").into(),
                );
            }
            None => return Err(Error::invalid("state", "must be ENABLED or DISABLED").into()),
        };
        let account = self.core.set_account_state(&caller, name, state).await?;
        Ok(Response::new(account.into()))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let (caller, req) = authenticated(&self.core, request).await?;
        let name = names::required("name", &req.name)?;
        let account = self.core.delete_account(&caller, name).await?;
        Ok(Response::new(account.into()))
    }
}
