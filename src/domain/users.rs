//! Users, their passwords and their state.

use crate::domain::authn::credentials::Credential;
use crate::domain::authn::sources::Source;
use uuid::Uuid;

use super::Core;
use super::actions::{CREATE_USER, DELETE_USER, GET_USER, LIST_ALL_USERS, LIST_USERS, UPDATE_USER};
use super::audit::{Actor, Change};
use super::caller::Caller;
use super::model::{
    ADMIN_USER, AccountState, CredentialKind, User, UserState, UserType, UserWithGrants,
};
use super::names::Username;
use super::page::{Page, PageRequest};
use super::secret::Secret;
use crate::error::{AuthFailure, Error, Result, quoted};
use crate::store;

pub const PASSWORD_MIN_CHARS: usize = 6;
/// Names no user may take, in any case.
pub(crate) const RESERVED_USERNAMES: [&str; 2] = ["admin", "anchore-system"];
pub const PASSWORD_MAX_CHARS: usize = 128;

/// A password a native user may have.
pub fn check_password(field: &str, password: &Secret) -> Result<()> {
    let chars = password.expose().chars().count();
    if chars == 0 {
        return Err(Error::invalid(field, "is required"));
    }
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
        return Err(Error::invalid(
            field,
            format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters long"),
        ));
    }
    Ok(())
}

/// What a new user is made of. Only the constructors make one, so the
/// rules of each kind of user (who has a password, who names an identity
/// provider, who cannot be created at all) hold for every door: the RPC,
/// the console and, later, sign-ins that create users.
pub struct NewUser {
    account: String,
    username: Username,
    user_type: UserType,
    password: Option<Secret>,
    idp_name: Option<String>,
    roles: Vec<String>,
}

impl NewUser {
    /// A user who signs in with a password: a username usable in HTTP
    /// basic auth (no `:`), and a password that meets the rules.
    pub fn native(
        account: String,
        username: &str,
        password: Secret,
        roles: Vec<String>,
    ) -> Result<Self> {
        check_password("password", &password)?;
        Ok(Self {
            account,
            username: Username::parse_native("username", username)?,
            user_type: UserType::Native,
            password: Some(password),
            idp_name: None,
            roles,
        })
    }

    /// A user who signs in through the identity provider `idp_name`, and
    /// never with a password.
    pub fn saml(
        account: String,
        username: &str,
        idp_name: &str,
        roles: Vec<String>,
    ) -> Result<Self> {
        Self::federated(UserType::Saml, account, username, idp_name, roles)
    }

    /// A user of `user_type` (SAML or OIDC) who signs in through the
    /// identity provider `idp_name`.
    fn federated(
        user_type: UserType,
        account: String,
        username: &str,
        idp_name: &str,
        roles: Vec<String>,
    ) -> Result<Self> {
        let idp_name = super::names::idp_name("idp_name", idp_name)?;
        Ok(Self {
            account,
            username: Username::parse("username", username)?,
            user_type,
            password: None,
            idp_name: Some(idp_name),
            roles,
        })
    }

    /// A user of `user_type` from a request's fields, each kind refusing
    /// the fields it does not have. Service users exist (Anchore's system
    /// user) but are never created.
    pub fn of_type(
        account: String,
        user_type: UserType,
        username: &str,
        password: Secret,
        idp_name: &str,
        roles: Vec<String>,
    ) -> Result<Self> {
        match user_type {
            UserType::Native => {
                check_password("password", &password)?;
                if !idp_name.is_empty() {
                    return Err(Error::invalid(
                        "idp_name",
                        "is only for SAML and OIDC users",
                    ));
                }
                Self::native(account, username, password, roles)
            }
            UserType::Saml => {
                if !password.is_empty() {
                    return Err(Error::invalid("password", "SAML users have no password"));
                }
                Self::saml(account, username, idp_name, roles)
            }
            UserType::Oidc => {
                if !password.is_empty() {
                    return Err(Error::invalid("password", "OIDC users have no password"));
                }
                Self::federated(UserType::Oidc, account, username, idp_name, roles)
            }
            UserType::Service => Err(Error::invalid("type", "service users cannot be created")),
        }
    }
}

fn not_found(account: &str, username: &str) -> Error {
    Error::not_found(format!(
        "user {username} in account {account}",
        username = quoted(username),
        account = quoted(account)
    ))
}

impl Core {
    pub async fn create_user(&self, caller: &Caller, new: NewUser) -> Result<UserWithGrants> {
        self.require(caller, CREATE_USER, Some(&new.account))
            .await?;
        // Look-alikes of the administrator and of Anchore's system user, in
        // any case (an exact `admin` exists and conflicts anyway).
        if RESERVED_USERNAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(new.username.as_str()))
        {
            return Err(Error::invalid(
                "username",
                format!("{} is reserved", quoted(new.username.as_str())),
            ));
        }
        for (i, role) in new.roles.iter().enumerate() {
            self.catalog().require_role(&format!("roles[{i}]"), role)?;
        }
        let account = store::accounts::find_account(self.db(), &new.account)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {}", quoted(&new.account))))?;
        if account.state == AccountState::Deleting {
            return Err(Error::precondition("the account is being deleted"));
        }
        // Hash before opening the transaction: no connection is held for the 20 ms.
        let password_hash = match &new.password {
            Some(password) => Some(self.hasher().hash(password, caller.origin.source()).await?),
            None => None,
        };
        let now = self.now();
        let user = User {
            id: Uuid::new_v4(),
            username: new.username.into_string(),
            account: new.account,
            user_type: new.user_type,
            idp_name: new.idp_name,
            state: UserState::Enabled,
            password_updated_at: password_hash.as_ref().map(|_| now),
            created_at: now,
            updated_at: now,
        };
        let mut txn = self.write().await?;
        let has_password = password_hash.is_some();
        store::users::create_user(txn.db(), &user, password_hash).await?;
        let mut roles = new.roles;
        roles.sort();
        roles.dedup();
        for role in &roles {
            store::users::create_binding(txn.db(), user.id, role, &user.account, now).await?;
        }
        let mut change = Change::new("create", "user", &user.username)
            .account(&user.account)
            .id(user.id)
            .to("type", user.user_type.as_str())
            .to("roles", roles.clone());
        if let Some(idp) = &user.idp_name {
            change = change.to("idp_name", idp.as_str());
        }
        if has_password {
            change = change.secret("password");
        }
        txn.record(Actor::Caller(caller), change);
        txn.commit().await?;
        tracing::info!(
            caller = caller.username(),
            user = user.username,
            account = user.account,
            "user created"
        );
        self.with_grants(user).await
    }

    /// One user with their effective grants, as a check sees them.
    async fn with_grants(&self, user: User) -> Result<UserWithGrants> {
        let loaded = self
            .queries()
            .user_by_name(self.db(), &user.username)
            .await?
            .ok_or_else(|| not_found(&user.account, &user.username))?;
        Ok(UserWithGrants {
            user: loaded.entry.user,
            grants: loaded.entry.grants,
            lock: None,
        })
    }

    /// A page of users with their grants, in one statement.
    async fn users_page(
        &self,
        account: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<UserWithGrants>> {
        let read = PageRequest {
            limit: page.limit + 1,
            ..page.clone()
        };
        let rows = self
            .queries()
            .list_users_window(self.db(), account, &read)
            .await?
            .into_iter()
            .map(|loaded| UserWithGrants {
                user: loaded.entry.user,
                grants: loaded.entry.grants,
                lock: None,
            })
            .collect();
        Ok(Page::from_window(rows, page, |u: &UserWithGrants| {
            vec![u.user.username.as_str()]
        }))
    }

    /// How many users `list_users` pages through (same permission).
    pub async fn count_users(
        &self,
        caller: &Caller,
        account: &str,
        page: &PageRequest,
    ) -> Result<u64> {
        self.require(caller, LIST_USERS, Some(account)).await?;
        store::users::count_users(self.db(), Some(account), page).await
    }

    /// The user, if they belong to the account.
    pub(crate) async fn user_in(&self, account: &str, username: &str) -> Result<User> {
        store::users::find_user_in_account(self.db(), account, username)
            .await?
            .ok_or_else(|| not_found(account, username))
    }

    pub async fn get_user(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
    ) -> Result<UserWithGrants> {
        if !is_self(caller, account, username) {
            self.require(caller, GET_USER, Some(account)).await?;
        }
        let user = self.user_in(account, username).await?;
        // The lock state, to those who may manage the user.
        let manager = !is_self(caller, account, username)
            && self.may_over_user(caller, UPDATE_USER, &user).await.is_ok();
        let id = user.id;
        let mut found = self.with_grants(user).await?;
        if manager {
            let now = self.now();
            found.lock = store::lockout::state(self.db(), id).await?.map(|mut lock| {
                // A lock that has run out is no lock.
                lock.locked_until = lock.locked_until.filter(|until| *until > now);
                lock
            });
        }
        Ok(found)
    }

    pub async fn list_users(
        &self,
        caller: &Caller,
        account: &str,
        page: &PageRequest,
    ) -> Result<Page<UserWithGrants>> {
        self.require(caller, LIST_USERS, Some(account)).await?;
        self.users_page(Some(account), page).await
    }

    pub async fn list_all_users(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<UserWithGrants>> {
        self.require(caller, LIST_ALL_USERS, None).await?;
        self.users_page(None, page).await
    }

    pub async fn delete_user(&self, caller: &Caller, account: &str, username: &str) -> Result<()> {
        self.require(caller, DELETE_USER, Some(account)).await?;
        let user = self.user_in(account, username).await?;
        self.require_over_user(caller, DELETE_USER, &user).await?;
        if user.id == caller.user.id {
            return Err(Error::precondition("you cannot delete yourself"));
        }
        if user.username == ADMIN_USER {
            return Err(Error::precondition("the admin user cannot be deleted"));
        }
        if user.user_type == UserType::Service {
            return Err(Error::precondition("service users cannot be deleted"));
        }
        let mut txn = self.write().await?;
        store::api_keys::mark_owner_deleted(txn.db(), &[user.id], self.now()).await?;
        if !store::users::delete_user(txn.db(), user.id).await? {
            return Err(not_found(account, username));
        }
        txn.record(
            Actor::Caller(caller),
            Change::new("delete", "user", username)
                .account(account)
                .id(user.id),
        );
        txn.commit().await?;
        tracing::info!(
            caller = caller.username(),
            user = username,
            account,
            "user deleted"
        );
        Ok(())
    }

    pub async fn set_password(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        password: &Secret,
        current_password: Option<&Secret>,
    ) -> Result<chrono::DateTime<chrono::Utc>> {
        // Credentials are never changed on an API key's authority, not even
        // one's own: `require` applies the restriction.
        let target = if is_self(caller, account, username) {
            caller.account()
        } else {
            account
        };
        if !is_self(caller, account, username) || caller.credential == CredentialKind::ApiKey {
            self.require(caller, UPDATE_USER, Some(target)).await?;
        }
        let user = self.user_in(account, username).await?;
        if !is_self(caller, account, username) {
            self.require_over_user(caller, UPDATE_USER, &user).await?;
        }
        if user.user_type != UserType::Native {
            return Err(Error::precondition("only native users have a password"));
        }
        if is_self(caller, account, username) {
            // A stolen access token alone must not become a permanent
            // takeover: changing one's own password takes the current one,
            // verified like a login (lockout and rate limits apply).
            let current = current_password.ok_or_else(|| {
                Error::invalid(
                    "current_password",
                    "is required to change your own password",
                )
            })?;
            let credential = Credential::Password {
                username: user.username.clone(),
                password: current.clone(),
            };
            let proved = self
                .authenticate(&credential, caller.origin.source())
                .await?;
            if proved.user.id != user.id {
                return Err(Error::Unauthenticated(AuthFailure::WrongPassword));
            }
        }
        let hash = self.hasher().hash(password, caller.origin.source()).await?;
        let now = self.now();
        let now_ms = now.timestamp_millis();
        // The new password, the end of every token issued under the old
        // one, and (set by someone else) the end of a lock: one transaction.
        let by_other = !is_self(caller, account, username);
        let change = Change::new("update", "user", username)
            .account(account)
            .id(user.id)
            .secret("password");
        self.change(Actor::Caller(caller), change, async |db| {
            if !store::users::set_password_hash(db, user.id, hash, now).await? {
                return Err(not_found(account, username));
            }
            store::tokens::revoke_user_families(db, user.id, now_ms).await?;
            if by_other {
                store::lockout::clear(db, user.id).await?;
            }
            Ok(())
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            user = username,
            account,
            "password replaced"
        );
        Ok(now)
    }

    /// Break-glass (`authzd admin unlock`): no caller, run by whoever can
    /// reach the database with the service's configuration.
    pub async fn break_glass_unlock(&self, username: &str) -> Result<bool> {
        let user = self.user_named(username).await?;
        let cleared = self
            .unlock(Actor::Local("break-glass unlock"), &user)
            .await?;
        tracing::warn!(user = username, cleared, "break-glass unlock");
        Ok(cleared)
    }

    /// Break-glass (`authzd admin reset-password`).
    pub async fn break_glass_reset_password(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<()> {
        check_password("password", password)?;
        let user = self.user_named(username).await?;
        if user.user_type != UserType::Native {
            return Err(Error::precondition("only native users have a password"));
        }
        let hash = self.hasher().hash(password, Source::LOCAL).await?;
        let now = self.now();
        let change = Change::new("update", "user", username)
            .account(&user.account)
            .id(user.id)
            .secret("password");
        self.change(
            Actor::Local("break-glass reset-password"),
            change,
            async |db| {
                store::users::set_password_hash(db, user.id, hash, now).await?;
                store::tokens::revoke_user_families(db, user.id, now.timestamp_millis()).await?;
                store::lockout::clear(db, user.id).await
            },
        )
        .await?;
        tracing::warn!(user = username, "break-glass password reset");
        Ok(())
    }

    /// A user by name (usernames are global).
    async fn user_named(&self, username: &str) -> Result<User> {
        store::users::find_user_record(self.db(), username)
            .await?
            .map(|record| record.user)
            .ok_or_else(|| Error::not_found(format!("user {}", quoted(username))))
    }

    /// Clears the user's password failures and lock.
    pub async fn unlock_user(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
    ) -> Result<bool> {
        self.require(caller, UPDATE_USER, Some(account)).await?;
        let user = self.user_in(account, username).await?;
        self.require_over_user(caller, UPDATE_USER, &user).await?;
        let cleared = self.unlock(Actor::Caller(caller), &user).await?;
        tracing::info!(
            caller = caller.username(),
            user = username,
            account,
            cleared,
            "user unlocked"
        );
        Ok(cleared)
    }

    /// Clears a user's failures and lock; a lock that was there is
    /// recorded as lifted.
    async fn unlock(&self, actor: Actor<'_>, user: &User) -> Result<bool> {
        let mut txn = self.write().await?;
        let cleared = store::lockout::clear(txn.db(), user.id).await?;
        if cleared {
            txn.record(
                actor,
                Change::new("unlock", "user", &user.username)
                    .account(&user.account)
                    .id(user.id)
                    .to("locked", false),
            );
        }
        txn.commit().await?;
        Ok(cleared)
    }

    pub async fn set_user_state(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        state: UserState,
    ) -> Result<UserWithGrants> {
        self.require(caller, UPDATE_USER, Some(account)).await?;
        let user = self.user_in(account, username).await?;
        self.require_over_user(caller, UPDATE_USER, &user).await?;
        if state == UserState::Disabled {
            if user.id == caller.user.id {
                return Err(Error::precondition("you cannot disable yourself"));
            }
            if user.username == ADMIN_USER {
                return Err(Error::precondition("the admin user cannot be disabled"));
            }
        }
        let now = self.now();
        let change = Change::new("update", "user", username)
            .account(account)
            .id(user.id)
            .from_to("state", user.state.as_str(), state.as_str());
        self.change(Actor::Caller(caller), change, async |db| {
            if !store::users::set_user_state(db, user.id, state, now).await? {
                return Err(not_found(account, username));
            }
            // Re-enabling a user must not revive tokens from before.
            if state == UserState::Disabled {
                store::tokens::revoke_user_families(db, user.id, now.timestamp_millis()).await?;
            }
            Ok(())
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            user = username,
            account,
            state = state.as_str(),
            "user state changed"
        );
        let user = self.user_in(account, username).await?;
        self.with_grants(user).await
    }
}

fn is_self(caller: &Caller, account: &str, username: &str) -> bool {
    caller.account() == account && caller.username() == username
}
