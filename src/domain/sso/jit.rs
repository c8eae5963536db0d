//! Just-in-time users: what an identity provider asserted (a SAML
//! assertion's attributes, an OIDC ID token's claims) made into a user
//! with accounts, roles and group memberships, by Anchore's rules
//! (docs/sso.md). One copy for every protocol.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::saml::Verified;
use crate::domain::Core;
use crate::domain::audit::{Actor, Change};
use crate::domain::authn::{check_active, principal};
use crate::domain::model::{
    Account, AccountState, AccountType, CredentialKind, IdentityProvider, Principal, User,
    UserState,
};
use crate::domain::names::{AccountName, Username};
use crate::error::{AuthFailure, Error, Result};
use crate::store;

pub(super) fn refused(reason: &'static str) -> Error {
    Error::Unauthenticated(AuthFailure::Sso(reason))
}

/// What a provider asserted about a person, whatever the protocol.
pub(super) trait Asserted {
    /// The values of an attribute or claim, in order.
    fn values(&self, name: &str) -> Vec<&str>;
    /// The username when the provider names no attribute for it.
    fn default_username(&self) -> Option<&str>;
    /// The provider's stable identifier for the person (OIDC's `sub`),
    /// recorded on the user and required to match on later sign-ins.
    fn subject(&self) -> Option<&str>;
}

impl Asserted for Verified {
    fn values(&self, name: &str) -> Vec<&str> {
        Verified::values(self, name)
    }

    fn default_username(&self) -> Option<&str> {
        Some(&self.name_id)
    }

    fn subject(&self) -> Option<&str> {
        None
    }
}

/// Makes the accounts a federated user is in that do not exist yet (user
/// accounts, recorded as made by `actor`).
pub(crate) async fn create_federated_accounts(
    write: &mut crate::domain::Write,
    actor: Actor<'_>,
    accounts: &BTreeSet<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    for name in accounts {
        let account = Account {
            name: name.clone(),
            email: None,
            account_type: AccountType::User,
            state: AccountState::Enabled,
            created_at: now,
            updated_at: now,
        };
        if store::accounts::create_account_if_absent(write.db(), &account).await? {
            write.record(
                actor,
                Change::new("create", "account", name).to("type", "user"),
            );
        }
    }
    Ok(())
}

impl Core {
    /// Refuses to put a federated user in an account that is not an
    /// ordinary user account (admin, service, reserved) or is going away:
    /// an identity provider never makes an administrator.
    pub(crate) async fn judge_federated_accounts(&self, judged: &BTreeSet<String>) -> Result<()> {
        for name in judged {
            if AccountName::parse_new("account", name).is_err() {
                return Err(refused("sso_privileged_account"));
            }
            if let Some(account) = store::accounts::find_account(self.db(), name).await? {
                if account.account_type != AccountType::User {
                    return Err(refused("sso_privileged_account"));
                }
                if account.state == AccountState::Deleting {
                    return Err(refused("sso_account_deleting"));
                }
            }
        }
        Ok(())
    }

    /// The principal a federated sign-in of `user` makes, if they may
    /// sign in at all.
    pub(super) async fn federated_principal(
        &self,
        idp: &IdentityProvider,
        user: &User,
    ) -> Result<Principal> {
        let loaded = self
            .queries()
            .user_by_name(self.db(), &user.username)
            .await?
            .ok_or_else(|| refused("sso_user_vanished"))?;
        check_active(&loaded.entry, &loaded.account)?;
        tracing::info!(
            idp = idp.name,
            protocol = idp.protocol(),
            user = user.username,
            "signed in through an identity provider"
        );
        Ok(principal(
            &loaded.entry,
            &loaded.account,
            CredentialKind::Password,
        ))
    }

    /// Anchore's just-in-time rules: the user is made on the first sign-in
    /// (unless `sso_require_existing_users`), and their accounts, roles
    /// and mapped groups follow what the IdP asserts.
    pub(super) async fn just_in_time(
        &self,
        idp: &IdentityProvider,
        verified: &impl Asserted,
    ) -> Result<User> {
        let username = match &idp.username_attribute {
            Some(attribute) => match verified.values(attribute).as_slice() {
                [one] => Some((*one).to_owned()),
                [] => None,
                _ => return Err(refused("sso_several_usernames")),
            },
            None => verified.default_username().map(str::to_owned),
        }
        .filter(|u| !u.is_empty())
        .ok_or_else(|| refused("sso_no_username"))?;
        let username = Username::parse("username", &username)
            .map_err(|_| refused("sso_bad_username"))?
            .into_string();
        if crate::domain::users::RESERVED_USERNAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&username))
        {
            return Err(refused("sso_reserved_username"));
        }
        // By the folded name: an IdP that changes a name's case (Entra's
        // UPNs do) finds the same user, and a native `Carol` is not taken
        // over by an asserted `carol`.
        let existing = store::users::find_user_record_folded(self.db(), &username)
            .await?
            .map(|record| record.user);
        let mut record_subject = false;
        if let Some(user) = &existing {
            if !user.user_type.is_federated() {
                return Err(refused("sso_native_user"));
            }
            if user.user_type != idp.user_type()
                || user.idp_name.as_deref() != Some(idp.name.as_str())
            {
                return Err(refused("sso_other_idp"));
            }
            // The provider's own identifier for the person: a username
            // the provider gave someone else since is not this user.
            if let Some(subject) = verified.subject() {
                match store::sso::idp_subject(self.db(), user.id).await? {
                    Some(recorded) if recorded != subject => {
                        return Err(refused("oidc_subject_changed"));
                    }
                    Some(_) => {}
                    None => record_subject = true,
                }
            }
        } else if self.settings().sso.require_existing_users {
            return Err(refused("sso_not_provisioned"));
        }
        // Accounts: asserted on every sign-in, or the default.
        let asserted_accounts: Vec<String> = match &idp.account_attribute {
            Some(attribute) => {
                let values: BTreeSet<String> = verified
                    .values(attribute)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                if values.is_empty() {
                    return Err(refused("sso_no_account"));
                }
                values.into_iter().collect()
            }
            None => idp.default_account.iter().cloned().collect(),
        };
        let home = match (asserted_accounts.as_slice(), &idp.default_account) {
            ([], _) => return Err(refused("sso_no_account")),
            ([one], _) => one.clone(),
            (_, Some(default)) => default.clone(),
            (_, None) => return Err(refused("sso_several_accounts")),
        };
        let mut accounts: BTreeSet<String> = asserted_accounts.into_iter().collect();
        accounts.insert(home.clone());
        // An existing user's own account is judged too: a SAML user made
        // by hand in the admin account must not become an administrator
        // through the IdP.
        let mut judged = accounts.clone();
        if let Some(user) = &existing {
            judged.insert(user.account.clone());
        }
        self.judge_federated_accounts(&judged).await?;
        // Roles: asserted on every sign-in (and then the user's direct
        // roles become exactly those), or the default on the first only.
        let roles: Option<BTreeSet<String>> = match &idp.role_attribute {
            Some(attribute) => {
                let known: BTreeSet<String> = verified
                    .values(attribute)
                    .into_iter()
                    .filter(|r| self.catalog().role(r).is_some())
                    .map(str::to_owned)
                    .collect();
                if known.is_empty() {
                    return Err(refused("sso_no_roles"));
                }
                Some(known)
            }
            None => None,
        };
        // Groups: the asserted names that are mapped to this provider.
        let mapped = store::identity_providers::mapped_groups(self.db(), idp.id).await?;
        let asserted_groups: BTreeSet<&str> = match &idp.groups_attribute {
            Some(attribute) => verified.values(attribute).into_iter().collect(),
            None => BTreeSet::new(),
        };
        // Every mapped group, by id (for the record's names); those asserted.
        let mut mapped_groups = Vec::new();
        for name in &mapped {
            if let Some(group) = store::groups::find_group(self.db(), name).await? {
                mapped_groups.push((group.id, group.name));
            }
        }
        let groups: Vec<(Uuid, String)> = mapped_groups
            .iter()
            .filter(|(_, name)| asserted_groups.contains(name.as_str()))
            .cloned()
            .collect();

        let now = self.now();
        let actor = Actor::Federation {
            protocol: idp.protocol(),
            idp: &idp.name,
        };
        let mut write = self.write().await?;
        create_federated_accounts(&mut write, actor, &accounts, now).await?;
        let user = match existing {
            Some(user) => user,
            None => {
                let user = User {
                    id: Uuid::new_v4(),
                    username: username.clone(),
                    account: home.clone(),
                    user_type: idp.user_type(),
                    idp_name: Some(idp.name.clone()),
                    state: UserState::Enabled,
                    password_updated_at: None,
                    created_at: now,
                    updated_at: now,
                };
                store::users::create_user(write.db(), &user, None)
                    .await
                    .map_err(|e| match e {
                        // Taken meanwhile, or by a name differing only in case.
                        Error::AlreadyExists(_) => refused("sso_username_taken"),
                        other => other,
                    })?;
                record_subject = true;
                let mut first_roles = BTreeSet::new();
                if roles.is_none()
                    && let Some(role) = &idp.default_role
                {
                    for account in &accounts {
                        store::users::create_binding(write.db(), user.id, role, account, now)
                            .await?;
                        first_roles.insert((role.clone(), account.clone()));
                    }
                }
                write.record(
                    actor,
                    Change::new("create", "user", &user.username)
                        .account(&user.account)
                        .id(user.id)
                        .to("type", user.user_type.as_str())
                        .to("idp_name", idp.name.as_str())
                        .to(
                            "roles",
                            first_roles
                                .iter()
                                .map(|(r, a)| format!("{r}@{a}"))
                                .collect::<Vec<_>>(),
                        ),
                );
                user
            }
        };
        if record_subject && let Some(subject) = verified.subject() {
            store::sso::set_idp_subject(write.db(), user.id, subject).await?;
        }
        if let Some(roles) = &roles {
            let want: BTreeSet<(String, String)> = accounts
                .iter()
                .flat_map(|a| roles.iter().map(move |r| (r.clone(), a.clone())))
                .collect();
            let have: BTreeSet<(String, String)> = store::sso::direct_bindings(write.db(), user.id)
                .await?
                .into_iter()
                .collect();
            let added: Vec<_> = want.difference(&have).cloned().collect();
            let removed: Vec<_> = have.difference(&want).cloned().collect();
            for (role, account) in &added {
                store::users::create_binding(write.db(), user.id, role, account, now).await?;
            }
            for (role, account) in &removed {
                store::users::delete_binding(write.db(), user.id, role, account).await?;
            }
            if !added.is_empty() || !removed.is_empty() {
                let show = |pairs: &[(String, String)]| {
                    pairs
                        .iter()
                        .map(|(r, a)| format!("{r}@{a}"))
                        .collect::<Vec<_>>()
                };
                write.record(
                    actor,
                    Change::new("sync_roles", "user", &user.username)
                        .account(&user.account)
                        .id(user.id)
                        .to("added", show(&added))
                        .to("removed", show(&removed)),
                );
            }
        }
        let member_of: BTreeSet<Uuid> =
            store::sso::asserted_memberships(write.db(), user.id, idp.id)
                .await?
                .into_iter()
                .collect();
        let want: BTreeSet<Uuid> = groups.iter().map(|(id, _)| *id).collect();
        let name_of = |id: &Uuid| {
            mapped_groups
                .iter()
                .find(|(g, _)| g == id)
                .map(|(_, n)| n.clone())
                .unwrap_or_else(|| id.to_string())
        };
        let joined: Vec<Uuid> = want.difference(&member_of).copied().collect();
        // A provider that asserts no groups leaves memberships alone: SCIM
        // may be managing them.
        let left: Vec<Uuid> = if idp.groups_attribute.is_some() {
            member_of.difference(&want).copied().collect()
        } else {
            Vec::new()
        };
        for group in &joined {
            store::sso::add_membership(write.db(), user.id, *group, idp.id, now).await?;
            store::groups::touch(write.db(), *group, now).await?;
        }
        for group in &left {
            store::sso::remove_membership(write.db(), user.id, *group, idp.id).await?;
            store::groups::touch(write.db(), *group, now).await?;
        }
        if !joined.is_empty() || !left.is_empty() {
            write.record(
                actor,
                Change::new("sync_groups", "user", &user.username)
                    .account(&user.account)
                    .id(user.id)
                    .to("joined", joined.iter().map(name_of).collect::<Vec<_>>())
                    .to("left", left.iter().map(name_of).collect::<Vec<_>>()),
            );
        }
        write.commit().await?;
        Ok(user)
    }
}
