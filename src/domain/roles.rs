//! The predefined roles and their members.

use super::Core;
use super::actions::{
    CREATE_ROLE_MEMBER, DELETE_ROLE_MEMBER, GET_ROLE, GET_USER, LIST_ROLE_MEMBERS, LIST_ROLES,
};
use super::audit::{Actor, Change};
use super::caller::Caller;
use super::catalog::Role;
use super::model::{AccountState, RoleMember};
use super::page::{Page, PageRequest};
use crate::error::{Error, Result, quoted};
use crate::store;

impl Core {
    pub async fn list_roles(&self, caller: &Caller, context: &str) -> Result<Vec<Role>> {
        self.require(caller, LIST_ROLES, Some(context)).await?;
        Ok(self.catalog().roles().cloned().collect())
    }

    pub async fn get_role(&self, caller: &Caller, context: &str, name: &str) -> Result<Role> {
        self.require(caller, GET_ROLE, Some(context)).await?;
        self.known_role(name).cloned()
    }

    fn known_role(&self, name: &str) -> Result<&Role> {
        self.catalog()
            .role(name)
            .ok_or_else(|| Error::not_found(format!("role {name}", name = quoted(name))))
    }

    /// `account`: only members in that account. Without it, administrators
    /// see every account and everyone else their context account.
    pub async fn list_role_members(
        &self,
        caller: &Caller,
        role: &str,
        account: Option<&str>,
        context: &str,
        page: &PageRequest,
    ) -> Result<Page<RoleMember>> {
        let filter = match account {
            Some(account) => Some(account),
            None if caller.is_global_admin() => None,
            None => Some(context),
        };
        self.require(caller, LIST_ROLE_MEMBERS, filter).await?;
        self.known_role(role)?;
        store::roles::list_role_members(self.db(), role, filter, page).await
    }

    /// How many holders of `role` in `account` there are (the permission
    /// of `list_role_members` for that account).
    pub async fn count_role_members(
        &self,
        caller: &Caller,
        role: &str,
        account: &str,
        page: &PageRequest,
    ) -> Result<u64> {
        self.require(caller, LIST_ROLE_MEMBERS, Some(account))
            .await?;
        self.known_role(role)?;
        store::roles::count_role_members(self.db(), role, Some(account), page).await
    }

    pub async fn add_role_member(
        &self,
        caller: &Caller,
        role: &str,
        username: &str,
        account: &str,
    ) -> Result<RoleMember> {
        self.require(caller, CREATE_ROLE_MEMBER, Some(account))
            .await?;
        self.known_role(role)?;
        let target = store::accounts::find_account(self.db(), account)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("account {account}", account = quoted(account)))
            })?;
        if target.state == AccountState::Deleting {
            return Err(Error::precondition("the account is being deleted"));
        }
        let missing_user = || Error::not_found(format!("user {}", quoted(username)));
        let record = store::users::find_user_record(self.db(), username)
            .await?
            .ok_or_else(missing_user)?;
        // A user of an account the caller may not see reads as missing, so
        // this RPC tells no one which usernames exist elsewhere.
        if !caller.is_global_admin()
            && self
                .may(caller, GET_USER, Some(&record.user.account))
                .await
                .is_err()
        {
            return Err(missing_user());
        }
        let now = self.now();
        let change = Change::new("add", "role_member", username)
            .account(account)
            .id(record.user.id)
            .to("role", role)
            .to("user_account", record.user.account.as_str());
        self.change(Actor::Caller(caller), change, async |db| {
            store::users::create_binding(db, record.user.id, role, account, now).await
        })
        .await
        .map_err(|e| match e {
            Error::AlreadyExists(_) => Error::exists(format!(
                "role {} for {} in account {}",
                quoted(role),
                quoted(username),
                quoted(account)
            )),
            other => other,
        })?;
        tracing::info!(
            caller = caller.username(),
            role,
            user = username,
            account,
            "role member added"
        );
        Ok(RoleMember {
            role: role.to_owned(),
            username: record.user.username,
            account: account.to_owned(),
            user_account: record.user.account,
            created_at: now,
        })
    }

    pub async fn remove_role_member(
        &self,
        caller: &Caller,
        role: &str,
        username: &str,
        account: &str,
    ) -> Result<()> {
        self.require(caller, DELETE_ROLE_MEMBER, Some(account))
            .await?;
        self.known_role(role)?;
        let missing = || {
            Error::not_found(format!(
                "role {} held by {} in account {}",
                quoted(role),
                quoted(username),
                quoted(account)
            ))
        };
        let record = store::users::find_user_record(self.db(), username)
            .await?
            .ok_or_else(missing)?;
        let change = Change::new("remove", "role_member", username)
            .account(account)
            .id(record.user.id)
            .to("role", role);
        self.change(Actor::Caller(caller), change, async |db| {
            if store::users::delete_binding(db, record.user.id, role, account).await? {
                Ok(())
            } else {
                Err(missing())
            }
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            role,
            user = username,
            account,
            "role member removed"
        );
        Ok(())
    }
}
