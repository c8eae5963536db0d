//! The principal source: keys, users and accounts from memory, or on a
//! miss from one statement, stored in the cache unless an eviction raced
//! the read (then read again, so an answer never predates a change this
//! replica has already applied).

use std::sync::Arc;

use crate::cache::{KeyEntry, UserEntry};
use crate::domain::Core;
use crate::domain::model::Account;
use crate::error::Result;
use crate::store;
use crate::store::principals::LoadedUser;

/// Reads of one item while evictions keep racing them; the last read is
/// answered after that.
pub(crate) const READS: usize = 3;

type Owner = (Arc<UserEntry>, Arc<Account>);

fn split(loaded: LoadedUser) -> (Arc<UserEntry>, Arc<Account>, Option<String>) {
    (
        Arc::new(loaded.entry),
        Arc::new(loaded.account),
        loaded.password_hash,
    )
}

impl Core {
    /// Stores a user and their account as read at `epoch`.
    fn remember_user(&self, epoch: u64, user: &Arc<UserEntry>, account: &Arc<Account>) -> bool {
        let cache = self.cache();
        cache.put_account(epoch, &account.name, Some(account.clone()))
            && cache.put_user(epoch, &user.user.username, Some(user.clone()))
    }

    /// A key and its owner (if the owner still exists).
    pub(super) async fn key_entry(
        &self,
        key_id: &str,
    ) -> Result<Option<(Arc<KeyEntry>, Option<Owner>)>> {
        let cache = self.cache();
        if let Some(Some(key)) = cache.key(key_id) {
            let owner = self.user_entry(&key.owner_username).await?;
            return Ok(Some((key, owner)));
        }
        let mut answer = None;
        for _ in 0..READS {
            let epoch = cache.epoch();
            let Some(loaded) = self.queries().key_by_id(self.db(), key_id).await? else {
                return Ok(None);
            };
            let key = Arc::new(loaded.key);
            let owner = loaded.owner.map(|owner| {
                let (user, account, _) = split(owner);
                (user, account)
            });
            let stored = match &owner {
                Some((user, account)) => self.remember_user(epoch, user, account),
                None => true,
            } && cache.put_key(epoch, key.clone());
            answer = Some((key, owner));
            if stored || cache.epoch() == epoch {
                break;
            }
        }
        Ok(answer)
    }

    /// A user by name with their account; `None` if there is no such user.
    pub(crate) async fn user_entry(&self, username: &str) -> Result<Option<Owner>> {
        let cache = self.cache();
        match cache.user(username) {
            Some(Some(user)) => {
                if let Some(account) = self.account_entry(&user.user.account).await? {
                    return Ok(Some((user, account)));
                }
            }
            Some(None) => return Ok(None),
            None => {}
        }
        let mut answer = None;
        for _ in 0..READS {
            let epoch = cache.epoch();
            let loaded = self.queries().user_by_name(self.db(), username).await?;
            let stored = match loaded {
                Some(loaded) => {
                    let (user, account, _) = split(loaded);
                    let stored = self.remember_user(epoch, &user, &account);
                    answer = Some((user, account));
                    stored
                }
                None => {
                    answer = None;
                    cache.put_user(epoch, username, None)
                }
            };
            if stored || cache.epoch() == epoch {
                break;
            }
        }
        Ok(answer)
    }

    /// A user with their password hash, always read from the database.
    pub(super) async fn load_user_for_password(
        &self,
        username: &str,
    ) -> Result<Option<(Arc<UserEntry>, Arc<Account>, Option<String>)>> {
        let epoch = self.cache().epoch();
        let Some(loaded) = self.queries().user_by_name(self.db(), username).await? else {
            return Ok(None);
        };
        let (user, account, hash) = split(loaded);
        // The principal (never the hash) serves the Authorize calls that follow.
        self.remember_user(epoch, &user, &account);
        Ok(Some((user, account, hash)))
    }

    /// An account by name; `None` if there is none.
    pub(crate) async fn account_entry(&self, name: &str) -> Result<Option<Arc<Account>>> {
        let cache = self.cache();
        if let Some(hit) = cache.account(name) {
            return Ok(hit);
        }
        let mut answer = None;
        for _ in 0..READS {
            let epoch = cache.epoch();
            answer = store::accounts::find_account(self.db(), name)
                .await?
                .map(Arc::new);
            if cache.put_account(epoch, name, answer.clone()) || cache.epoch() == epoch {
                break;
            }
        }
        Ok(answer)
    }
}
