//! API keys: self-service and admin management, authentication by key, the
//! coalesced last-use record, and the purge of deleted users' keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QuerySelect};
use uuid::Uuid;

use super::Core;
use super::actions::{
    CREATE_API_KEY, DELETE_API_KEY, GET_API_KEY, LIST_API_KEYS, SELF_CREATE_API_KEY,
    SELF_DELETE_API_KEY, SELF_GET_API_KEY, SELF_LIST_API_KEYS, SELF_UPDATE_API_KEY, UPDATE_API_KEY,
};
use super::audit::{Actor, Change};
use super::authn::key_format;
use super::caller::Caller;
use super::model::{ApiKey, ApiKeyStatus, User};
use super::page::{Page, PageRequest};
use super::secret::Secret;
use crate::error::{Error, Result, quoted};
use crate::store;

/// The API-key settings; declared, with their defaults, in `config`.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    pub prefix: String,
    pub max_age_days: u32,
    pub max_per_user: u32,
    /// -1: keep deleted users' keys forever.
    pub remove_deleted_user_keys_older_than_days: i64,
    pub allow_for_saml_users: bool,
    pub last_used_flush: Duration,
    /// The longest grace a rotation may give the previous secret.
    pub rotation_max_grace: Duration,
}

/// Last uses waiting to be written: at most one row update per key per
/// flush, however many checks it served.
#[derive(Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl LastUsed {
    pub(crate) fn record(&self, key: Uuid, at: DateTime<Utc>) {
        if let Ok(mut pending) = self.pending.lock() {
            let latest = pending.entry(key).or_insert(at);
            *latest = (*latest).max(at);
        }
    }

    /// What is pending now. It stays pending (and shown by reads) until
    /// `forget` is told it was written, so no read falls between the two.
    fn snapshot(&self) -> Vec<(Uuid, DateTime<Utc>)> {
        self.pending
            .lock()
            .map(|pending| pending.iter().map(|(k, at)| (*k, *at)).collect())
            .unwrap_or_default()
    }

    /// Drops what was written, unless a later use came in meanwhile.
    fn forget(&self, written: &[(Uuid, DateTime<Utc>)]) {
        if let Ok(mut pending) = self.pending.lock() {
            for (key, at) in written {
                if pending.get(key) == Some(at) {
                    pending.remove(key);
                }
            }
        }
    }
}

/// Changes an update may make.
#[derive(Debug, Default)]
pub struct KeyUpdate {
    pub new_name: Option<String>,
    pub description: Option<String>,
    pub status: Option<ApiKeyStatus>,
}

/// The actions for one operation: on one's own keys, and on another's.
struct Actions {
    own: &'static str,
    other: &'static str,
}

const CREATE: Actions = Actions {
    own: SELF_CREATE_API_KEY,
    other: CREATE_API_KEY,
};
const LIST: Actions = Actions {
    own: SELF_LIST_API_KEYS,
    other: LIST_API_KEYS,
};
const GET: Actions = Actions {
    own: SELF_GET_API_KEY,
    other: GET_API_KEY,
};
const UPDATE: Actions = Actions {
    own: SELF_UPDATE_API_KEY,
    other: UPDATE_API_KEY,
};
const DELETE: Actions = Actions {
    own: SELF_DELETE_API_KEY,
    other: DELETE_API_KEY,
};

/// The self-service action that stands for `action` when the caller acts
/// on their own keys (`createApiKey` → `selfCreateApiKey`), as `key_owner`
/// decides it.
pub fn own_action(action: &str) -> Option<&'static str> {
    [CREATE, LIST, GET, UPDATE, DELETE]
        .iter()
        .find(|a| a.other == action)
        .map(|a| a.own)
}

pub const NAME_MAX_CHARS: usize = 128;
pub const DESCRIPTION_MAX_CHARS: usize = 1024;

/// A key name: required, bounded, one line of printable text.
pub fn key_name(field: &str, value: &str) -> Result<String> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    super::names::description(field, value, NAME_MAX_CHARS)
}

/// The owner's account: for one's own keys, the caller's account.
pub fn owner_account(caller: &Caller, account: &str, username: &str) -> Result<String> {
    // One's own keys: usernames are global, so the account adds nothing.
    if username.is_empty() || username == caller.username() {
        let context = caller.account_context.as_deref().unwrap_or_default();
        let named = if account.is_empty() { context } else { account };
        if !named.is_empty() && named != caller.account() {
            return Err(Error::invalid(
                "username",
                "is required to manage keys of another account's user",
            ));
        }
        return Ok(caller.account().to_owned());
    }
    caller.target_account("account", account)
}

fn not_found(name: &str) -> Error {
    Error::not_found(format!("API key {name}", name = quoted(name)))
}

fn saml_disabled() -> Error {
    Error::precondition(
        "API keys are disabled for SAML users (user_authentication.allow_api_keys_for_saml_users)",
    )
}

/// A key's change record: named by its name, identified by its public id
/// (never its secret), with its owner.
fn key_change(op: &'static str, key: &ApiKey) -> Change {
    Change::new(op, "api_key", &key.name)
        .account(&key.account)
        .id(&key.key_id)
        .to("owner", key.username.as_str())
}

impl Core {
    fn key_settings(&self) -> &ApiKeySettings {
        &self.settings().api_keys
    }

    /// The owner of the keys an RPC addresses, after the permission check:
    /// the caller (`username` empty or their own), or a user of `account`.
    async fn key_owner(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        actions: Actions,
    ) -> Result<User> {
        let own =
            username.is_empty() || (username == caller.username() && account == caller.account());
        if own {
            // self* actions are decided before any target account matters:
            // no account read is needed.
            self.require(caller, actions.own, None).await?;
            return Ok(caller.user.clone());
        }
        self.require(caller, actions.other, Some(account)).await?;
        let owner = self.user_in(account, username).await?;
        if super::actions::manages_user(actions.other) {
            self.require_over_user(caller, actions.other, &owner)
                .await?;
        }
        Ok(owner)
    }

    async fn key_named(&self, owner: &User, name: &str) -> Result<ApiKey> {
        store::api_keys::find_by_name(self.db(), owner.id, name)
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Creates a key; the returned value is shown once and never stored.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        name: String,
        description: String,
        expires_at: DateTime<Utc>,
    ) -> Result<(ApiKey, Secret)> {
        let owner = self.key_owner(caller, account, username, CREATE).await?;
        let settings = self.key_settings();
        if owner.user_type.is_federated() && !settings.allow_for_saml_users {
            return Err(saml_disabled());
        }
        let now = self.now();
        if expires_at <= now {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let max_age = TimeDelta::days(i64::from(settings.max_age_days));
        if expires_at > now + max_age {
            return Err(Error::invalid(
                "expires_at",
                format!("must be at most {} days ahead", settings.max_age_days),
            ));
        }
        let minted = key_format::generate(&settings.prefix);
        let key = ApiKey {
            id: Uuid::new_v4(),
            key_id: minted.key_id,
            user_id: owner.id,
            username: owner.username.clone(),
            account: owner.account.clone(),
            name,
            description,
            prefix: settings.prefix.clone(),
            last_four: minted.last_four,
            created_at: now,
            updated_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            owner_deleted_at: None,
            rotated_at: None,
            previous_valid_until: None,
        };
        let mut txn = self.write().await?;
        // Concurrent creates for one owner queue on the owner's row, so the
        // count below cannot be overtaken (SQLite has one writer anyway).
        if txn.db().get_database_backend() == DbBackend::Postgres {
            store::entity::users::Entity::find_by_id(owner.id)
                .lock_exclusive()
                .one(txn.db())
                .await
                .map_err(store::classify)?;
        }
        let active = store::api_keys::count_active(txn.db(), owner.id, now).await?;
        if active >= u64::from(settings.max_per_user) {
            return Err(Error::LimitReached(format!(
                "{} already has {active} active API keys (user_authentication.max_api_keys_per_user)",
                quoted(&owner.username)
            )));
        }
        store::api_keys::create_api_key(txn.db(), &key, minted.secret_hash).await?;
        txn.record(
            Actor::Caller(caller),
            key_change("create", &key)
                .to("description", key.description.as_str())
                .to("expires_at", key.expires_at.to_rfc3339()),
        );
        txn.commit().await?;
        tracing::info!(
            caller = caller.username(),
            owner = owner.username,
            key_id = key.key_id,
            "API key created"
        );
        Ok((key, minted.value))
    }

    pub async fn list_api_keys(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        include_expired: bool,
        include_revoked: bool,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let owner = self.key_owner(caller, account, username, LIST).await?;
        let keys = store::api_keys::list_api_keys(
            self.db(),
            owner.id,
            include_expired,
            include_revoked,
            self.now(),
            page,
        )
        .await?;
        Ok(Page {
            items: keys
                .items
                .into_iter()
                .map(|k| self.with_pending_use(k))
                .collect(),
            next_page_token: keys.next_page_token,
        })
    }

    /// How many keys `list_api_keys` pages through (same permission).
    pub async fn count_api_keys(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        include_expired: bool,
        include_revoked: bool,
        page: &PageRequest,
    ) -> Result<u64> {
        let owner = self.key_owner(caller, account, username, LIST).await?;
        let filter = store::api_keys::KeyFilter {
            user_id: owner.id,
            include_expired,
            include_revoked,
            now: self.now(),
        };
        store::api_keys::count_api_keys(self.db(), filter, page).await
    }

    pub async fn get_api_key(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        name: &str,
    ) -> Result<ApiKey> {
        let owner = self.key_owner(caller, account, username, GET).await?;
        Ok(self.with_pending_use(self.key_named(&owner, name).await?))
    }

    /// Renames, re-describes or revokes. Revocation is one-way.
    pub async fn update_api_key(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        name: &str,
        update: KeyUpdate,
    ) -> Result<ApiKey> {
        let owner = self.key_owner(caller, account, username, UPDATE).await?;
        let key = self.key_named(&owner, name).await?;
        let now = self.now();
        let revoke_at = match update.status {
            None => None,
            Some(ApiKeyStatus::Revoked) => key.revoked_at.is_none().then_some(now),
            Some(ApiKeyStatus::Active) if key.revoked_at.is_some() => {
                return Err(Error::precondition(
                    "the key is revoked, and revoking is irreversible",
                ));
            }
            Some(ApiKeyStatus::Active) => None,
            Some(ApiKeyStatus::Expired) => {
                return Err(Error::invalid("status", "only REVOKED can be set"));
            }
        };
        let mut change = key_change(
            if revoke_at.is_some() {
                "revoke"
            } else {
                "update"
            },
            &key,
        );
        if let Some(new_name) = &update.new_name {
            change = change.from_to("name", key.name.as_str(), new_name.as_str());
        }
        if let Some(description) = &update.description {
            change = change.from_to(
                "description",
                key.description.as_str(),
                description.as_str(),
            );
        }
        if revoke_at.is_some() {
            change = change.from_to("status", "active", "revoked");
        }
        self.change(Actor::Caller(caller), change, async |db| {
            let updated = store::api_keys::update_api_key(
                db,
                key.id,
                update.new_name.as_deref(),
                update.description.as_deref(),
                revoke_at,
                now,
            )
            .await?;
            if updated {
                Ok(())
            } else {
                Err(not_found(name))
            }
        })
        .await?;
        if revoke_at.is_some() {
            tracing::info!(
                caller = caller.username(),
                key_id = key.key_id,
                "API key revoked"
            );
        }
        let name = update.new_name.as_deref().unwrap_or(name);
        self.key_named(&owner, name).await
    }

    /// Issues a new secret for the same key; the previous one keeps
    /// working for `grace_seconds` (default an hour), never past the key's
    /// expiry. The expiry itself never moves.
    pub async fn rotate_api_key(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        name: &str,
        grace_seconds: Option<i64>,
    ) -> Result<(ApiKey, Secret)> {
        let owner = self.key_owner(caller, account, username, UPDATE).await?;
        let max = self.key_settings().rotation_max_grace;
        let grace = grace_seconds.unwrap_or(3600);
        let grace = u64::try_from(grace)
            .map_err(|_| Error::invalid("grace_seconds", "must not be negative"))?;
        if grace > max.as_secs() {
            return Err(Error::invalid(
                "grace_seconds",
                format!(
                    "must be at most {} (user_authentication.api_key_rotation_max_grace_seconds)",
                    max.as_secs()
                ),
            ));
        }
        let key = self.key_named(&owner, name).await?;
        let now = self.now();
        if key.revoked_at.is_some() {
            return Err(Error::precondition(
                "the key is revoked: revoked keys cannot be rotated",
            ));
        }
        if now >= key.expires_at {
            return Err(Error::precondition("the key has expired: create a new one"));
        }
        // The setting caps the grace at a year: this cannot overflow.
        let until = TimeDelta::try_seconds(i64::try_from(grace).unwrap_or(i64::MAX))
            .and_then(|grace| now.checked_add_signed(grace))
            .unwrap_or(key.expires_at)
            .min(key.expires_at);
        let minted = key_format::regenerate(&key.prefix, &key.key_id);
        let change = key_change("rotate", &key)
            .secret("secret")
            .to("previous_valid_until", until.to_rfc3339());
        self.change(Actor::Caller(caller), change, async |db| {
            let rotated = store::api_keys::rotate_api_key(
                db,
                key.id,
                &minted.secret_hash,
                &minted.last_four,
                until,
                now,
            )
            .await?;
            if rotated {
                Ok(())
            } else {
                Err(Error::precondition(
                    "the key is revoked: revoked keys cannot be rotated",
                ))
            }
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            key_id = key.key_id,
            previous_valid_until = %until,
            "API key rotated"
        );
        Ok((self.key_named(&owner, name).await?, minted.value))
    }

    pub async fn delete_api_key(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
        name: &str,
    ) -> Result<()> {
        let owner = self.key_owner(caller, account, username, DELETE).await?;
        let key = self.key_named(&owner, name).await?;
        self.change(
            Actor::Caller(caller),
            key_change("delete", &key),
            async |db| {
                if store::api_keys::delete_api_key(db, key.id).await? {
                    Ok(())
                } else {
                    Err(not_found(name))
                }
            },
        )
        .await?;
        tracing::info!(
            caller = caller.username(),
            key_id = key.key_id,
            "API key deleted"
        );
        Ok(())
    }

    /// A last use not yet written shows anyway.
    fn with_pending_use(&self, mut key: ApiKey) -> ApiKey {
        if let Ok(pending) = self.last_used().pending.lock()
            && let Some(at) = pending.get(&key.id)
        {
            key.last_used_at = Some(key.last_used_at.map_or(*at, |old| old.max(*at)));
        }
        key
    }

    /// Writes the coalesced last uses. Returns how many keys were written.
    pub async fn flush_last_used(&self) -> Result<usize> {
        let pending = self.last_used().snapshot();
        if pending.is_empty() {
            return Ok(0);
        }
        // One statement per flush (per 500 keys), and no change record:
        // a last use cannot change a check's answer. On failure they stay
        // pending for the next flush.
        self.write_with(async |db| store::api_keys::set_last_used(db, &pending).await)
            .await?;
        self.last_used().forget(&pending);
        Ok(pending.len())
    }

    /// Purges the keys of users deleted longer ago than the retention.
    pub async fn purge_deleted_users_keys(&self) -> Result<u64> {
        let days = self.key_settings().remove_deleted_user_keys_older_than_days;
        if days < 0 {
            return Ok(0);
        }
        let cutoff = self.now() - TimeDelta::days(days);
        self.write_with(async |db| store::api_keys::purge_owner_deleted_before(db, cutoff).await)
            .await
    }
}
