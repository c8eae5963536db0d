//! User groups: their members inherit every (role, account) grant of the
//! group. Groups are system-wide, so managing them is a system action.

use uuid::Uuid;

use super::Core;
use super::actions::{
    ADD_USER_GROUP_ROLE, ADD_USER_GROUP_USER, CREATE_USER_GROUP, DELETE_USER_GROUP,
    DELETE_USER_GROUP_ROLE, DELETE_USER_GROUP_USER, GET_USER_GROUP, LIST_USER_GROUPS,
    UPDATE_USER_GROUP,
};
use super::audit::{Actor, Change};
use super::caller::Caller;
use super::model::{AccountState, Group};
use super::names::GroupName;
use super::page::{Page, PageRequest};
use crate::error::{Error, Result, quoted};
use crate::store;

fn not_found(name: &str) -> Error {
    Error::not_found(format!("group {name}", name = quoted(name)))
}

/// (role, account) pairs as a record's diff shows them.
fn grants_json(grants: &[(String, String)]) -> serde_json::Value {
    grants
        .iter()
        .map(|(role, account)| serde_json::json!({ "role": role, "account": account }))
        .collect()
}

impl Core {
    pub async fn create_group(
        &self,
        caller: &Caller,
        name: GroupName,
        description: String,
    ) -> Result<Group> {
        self.require(caller, CREATE_USER_GROUP, None).await?;
        let now = self.now();
        let group = Group {
            id: Uuid::new_v4(),
            name: name.into_string(),
            description,
            created_at: now,
            updated_at: now,
            members: Vec::new(),
            grants: Vec::new(),
        };
        let change = Change::new("create", "group", &group.name)
            .id(group.id)
            .to("description", group.description.as_str());
        self.change(Actor::Caller(caller), change, async |db| {
            store::groups::create_group(db, &group).await
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            group = group.name,
            "group created"
        );
        Ok(group)
    }

    async fn group_detail(&self, name: &str) -> Result<Group> {
        store::groups::find_group_detail(self.db(), name)
            .await?
            .ok_or_else(|| not_found(name))
    }

    async fn group_id(&self, name: &str) -> Result<Uuid> {
        store::groups::find_group(self.db(), name)
            .await?
            .map(|g| g.id)
            .ok_or_else(|| not_found(name))
    }

    pub async fn get_group(&self, caller: &Caller, name: &str) -> Result<Group> {
        self.require(caller, GET_USER_GROUP, None).await?;
        self.group_detail(name).await
    }

    pub async fn list_groups(&self, caller: &Caller, page: &PageRequest) -> Result<Page<Group>> {
        self.require(caller, LIST_USER_GROUPS, None).await?;
        store::groups::list_groups(self.db(), page).await
    }

    /// How many groups `list_groups` pages through (same permission).
    pub async fn count_groups(&self, caller: &Caller, page: &PageRequest) -> Result<u64> {
        self.require(caller, LIST_USER_GROUPS, None).await?;
        store::groups::count_groups(self.db(), page).await
    }

    /// The number of members and of role grants of each listed group: a
    /// listing leaves the lists themselves empty.
    pub async fn group_sizes(
        &self,
        caller: &Caller,
        groups: &[Group],
    ) -> Result<std::collections::HashMap<Uuid, (u64, u64)>> {
        self.require(caller, LIST_USER_GROUPS, None).await?;
        let ids: Vec<Uuid> = groups.iter().map(|g| g.id).collect();
        store::groups::count_members_and_grants(self.db(), &ids).await
    }

    pub async fn update_group(
        &self,
        caller: &Caller,
        name: &str,
        description: String,
    ) -> Result<Group> {
        self.require(caller, UPDATE_USER_GROUP, None).await?;
        let group = self.group_detail(name).await?;
        let change = Change::new("update", "group", name).id(group.id).from_to(
            "description",
            group.description.as_str(),
            description.as_str(),
        );
        self.change(Actor::Caller(caller), change, async |db| {
            if store::groups::update_description(db, group.id, &description, self.now()).await? {
                Ok(())
            } else {
                Err(not_found(name))
            }
        })
        .await?;
        self.group_detail(name).await
    }

    pub async fn delete_group(&self, caller: &Caller, name: &str) -> Result<()> {
        self.require(caller, DELETE_USER_GROUP, None).await?;
        let id = self.group_id(name).await?;
        let mut txn = self.write().await?;
        if !store::groups::delete_group(txn.db(), id).await? {
            return Err(not_found(name));
        }
        txn.record(
            Actor::Caller(caller),
            Change::new("delete", "group", name).id(id),
        );
        txn.commit().await?;
        tracing::info!(caller = caller.username(), group = name, "group deleted");
        Ok(())
    }

    /// All the named users, or NOT_FOUND naming the first missing one.
    async fn user_ids(&self, usernames: &[String]) -> Result<Vec<Uuid>> {
        let users = store::users::find_users_by_name(self.db(), usernames).await?;
        if let Some(missing) = usernames
            .iter()
            .find(|name| !users.iter().any(|u| &u.username == *name))
        {
            return Err(Error::not_found(format!(
                "user {missing}",
                missing = quoted(missing)
            )));
        }
        Ok(users.into_iter().map(|u| u.id).collect())
    }

    pub async fn add_group_members(
        &self,
        caller: &Caller,
        name: &str,
        usernames: &[String],
    ) -> Result<Group> {
        self.require(caller, ADD_USER_GROUP_USER, None).await?;
        let id = self.group_id(name).await?;
        let user_ids = self.user_ids(usernames).await?;
        let now = self.now();
        let mut txn = self.write().await?;
        store::groups::add_members(txn.db(), id, &user_ids, None, now).await?;
        store::groups::touch(txn.db(), id, now).await?;
        txn.record(
            Actor::Caller(caller),
            Change::new("add_members", "group", name)
                .id(id)
                .to("members", usernames.to_vec()),
        );
        txn.commit().await?;
        self.group_detail(name).await
    }

    pub async fn remove_group_members(
        &self,
        caller: &Caller,
        name: &str,
        usernames: &[String],
    ) -> Result<Group> {
        self.require(caller, DELETE_USER_GROUP_USER, None).await?;
        let id = self.group_id(name).await?;
        let user_ids = self.user_ids(usernames).await?;
        let now = self.now();
        let mut txn = self.write().await?;
        store::groups::remove_members(txn.db(), id, &user_ids).await?;
        store::groups::touch(txn.db(), id, now).await?;
        txn.record(
            Actor::Caller(caller),
            Change::new("remove_members", "group", name)
                .id(id)
                .to("members", usernames.to_vec()),
        );
        txn.commit().await?;
        self.group_detail(name).await
    }

    /// `grants` are (role, account) pairs whose role names the transport
    /// has checked against the catalog.
    pub async fn add_group_grants(
        &self,
        caller: &Caller,
        name: &str,
        grants: &[(String, String)],
    ) -> Result<Group> {
        self.require(caller, ADD_USER_GROUP_ROLE, None).await?;
        let id = self.group_id(name).await?;
        for (_, account) in grants {
            let target = store::accounts::find_account(self.db(), account)
                .await?
                .ok_or_else(|| {
                    Error::not_found(format!("account {account}", account = quoted(account)))
                })?;
            if target.state == AccountState::Deleting {
                return Err(Error::precondition(format!(
                    "account {} is being deleted",
                    quoted(account)
                )));
            }
        }
        let now = self.now();
        let mut txn = self.write().await?;
        store::groups::add_grants(txn.db(), id, grants, now).await?;
        store::groups::touch(txn.db(), id, now).await?;
        txn.record(
            Actor::Caller(caller),
            Change::new("add_grants", "group", name)
                .id(id)
                .to("grants", grants_json(grants)),
        );
        txn.commit().await?;
        self.group_detail(name).await
    }

    pub async fn remove_group_grants(
        &self,
        caller: &Caller,
        name: &str,
        grants: &[(String, String)],
    ) -> Result<Group> {
        self.require(caller, DELETE_USER_GROUP_ROLE, None).await?;
        let id = self.group_id(name).await?;
        let now = self.now();
        let mut txn = self.write().await?;
        store::groups::remove_grants(txn.db(), id, grants).await?;
        store::groups::touch(txn.db(), id, now).await?;
        txn.record(
            Actor::Caller(caller),
            Change::new("remove_grants", "group", name)
                .id(id)
                .to("grants", grants_json(grants)),
        );
        txn.commit().await?;
        self.group_detail(name).await
    }
}
