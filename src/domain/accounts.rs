//! Accounts and their state machine: enabled <-> disabled -> deleting -> gone.

use super::Core;
use super::actions::{CREATE_ACCOUNT, DELETE_ACCOUNT, GET_ACCOUNT, LIST_ACCOUNTS, UPDATE_ACCOUNT};
use super::audit::{Actor, Change};
use super::caller::Caller;
use super::model::{ADMIN_ACCOUNT, Account, AccountState, AccountType};
use super::names::{AccountName, Email};
use super::page::{Page, PageRequest};
use crate::error::{Error, Result, quoted};
use crate::store;

fn not_found(name: &str) -> Error {
    Error::not_found(format!("account {name}", name = quoted(name)))
}

/// What one purge round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purge {
    pub purged: usize,
    /// Accounts whose purge failed; retried with back-off.
    pub failed: usize,
}

impl Core {
    pub async fn create_account(
        &self,
        caller: &Caller,
        name: AccountName,
        email: Option<Email>,
        account_type: AccountType,
    ) -> Result<Account> {
        self.require(caller, CREATE_ACCOUNT, None).await?;
        if account_type != AccountType::User {
            return Err(Error::invalid("type", "only user accounts can be created"));
        }
        let now = self.now();
        let account = Account {
            name: name.into_string(),
            email: email.map(Email::into_string),
            account_type,
            state: AccountState::Enabled,
            created_at: now,
            updated_at: now,
        };
        let mut change = Change::new("create", "account", &account.name)
            .account(&account.name)
            .to("type", account.account_type.as_str())
            .to("state", account.state.as_str());
        if let Some(email) = &account.email {
            change = change.to("email", email.as_str());
        }
        self.change(Actor::Caller(caller), change, async |db| {
            store::accounts::create_account(db, &account).await
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            account = account.name,
            "account created"
        );
        Ok(account)
    }

    pub async fn get_account(&self, caller: &Caller, name: &str) -> Result<Account> {
        // Anyone may read their own account (the decision says so).
        self.require(caller, GET_ACCOUNT, Some(name)).await?;
        self.account(name).await
    }

    async fn account(&self, name: &str) -> Result<Account> {
        store::accounts::find_account(self.db(), name)
            .await?
            .ok_or_else(|| not_found(name))
    }

    pub async fn list_accounts(
        &self,
        caller: &Caller,
        state: Option<AccountState>,
        page: &PageRequest,
    ) -> Result<Page<Account>> {
        self.require(caller, LIST_ACCOUNTS, None).await?;
        store::accounts::list_accounts(self.db(), state, page).await
    }

    /// How many accounts `list_accounts` pages through (same permission).
    pub async fn count_accounts(
        &self,
        caller: &Caller,
        state: Option<AccountState>,
        page: &PageRequest,
    ) -> Result<u64> {
        self.require(caller, LIST_ACCOUNTS, None).await?;
        store::accounts::count_accounts(self.db(), state, page).await
    }

    pub async fn update_account_email(
        &self,
        caller: &Caller,
        name: &str,
        email: Option<Email>,
    ) -> Result<Account> {
        self.require(caller, UPDATE_ACCOUNT, Some(name)).await?;
        let account = self.account(name).await?;
        if account.state == AccountState::Deleting {
            return Err(Error::precondition("the account is being deleted"));
        }
        let email = email.map(Email::into_string);
        let change = Change::new("update", "account", name)
            .account(name)
            .from_to("email", account.email.clone(), email.clone());
        self.change(Actor::Caller(caller), change, async |db| {
            if store::accounts::update_email(db, name, email.as_deref(), self.now()).await? {
                Ok(())
            } else {
                Err(not_found(name))
            }
        })
        .await?;
        self.account(name).await
    }

    /// Enables or disables an account (a system-domain action).
    pub async fn set_account_state(
        &self,
        caller: &Caller,
        name: &str,
        state: AccountState,
    ) -> Result<Account> {
        self.require(caller, UPDATE_ACCOUNT, None).await?;
        if state == AccountState::Deleting {
            return Err(Error::invalid(
                "state",
                "use DeleteAccount to delete an account",
            ));
        }
        let account = self.account(name).await?;
        if account.account_type == AccountType::Admin || name == ADMIN_ACCOUNT {
            return Err(Error::precondition("the admin account is locked"));
        }
        if account.state == AccountState::Deleting {
            return Err(Error::precondition("the account is being deleted"));
        }
        let from = [AccountState::Enabled, AccountState::Disabled];
        let change = Change::new("update", "account", name)
            .account(name)
            .from_to("state", account.state.as_str(), state.as_str());
        self.change(Actor::Caller(caller), change, async |db| {
            if store::accounts::transition_state(db, name, &from, state, self.now()).await? {
                Ok(())
            } else {
                Err(Error::precondition("the account is being deleted"))
            }
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            account = name,
            state = state.as_str(),
            "account state changed"
        );
        self.account(name).await
    }

    /// Starts deleting a disabled account: its users lose access at once,
    /// and the purge removes them and then the account, freeing the name.
    pub async fn delete_account(&self, caller: &Caller, name: &str) -> Result<Account> {
        self.require(caller, DELETE_ACCOUNT, None).await?;
        let account = self.account(name).await?;
        if account.account_type == AccountType::Admin || name == ADMIN_ACCOUNT {
            return Err(Error::precondition("the admin account is locked"));
        }
        match account.state {
            AccountState::Enabled => {
                return Err(Error::precondition(
                    "the account is enabled: disable it before deleting it",
                ));
            }
            AccountState::Deleting => return Ok(account),
            AccountState::Disabled => {}
        }
        let change = Change::new("delete", "account", name)
            .account(name)
            .from_to(
                "state",
                account.state.as_str(),
                AccountState::Deleting.as_str(),
            );
        self.change(Actor::Caller(caller), change, async |db| {
            let moved = store::accounts::transition_state(
                db,
                name,
                &[AccountState::Disabled],
                AccountState::Deleting,
                self.now(),
            )
            .await?;
            if moved {
                Ok(())
            } else {
                Err(Error::precondition(
                    "the account changed state concurrently; read it and retry",
                ))
            }
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            account = name,
            "account deletion started"
        );
        self.wake_purger();
        self.account(name).await
    }

    /// Purges every account in `deleting`, each in one transaction. Returns
    /// how many accounts were removed.
    /// Purges every account being deleted, each in its own transaction: one
    /// that fails is logged and left for the next round, and the others are
    /// still purged.
    pub async fn purge_deleting_accounts(&self) -> Result<Purge> {
        let mut outcome = Purge::default();
        for name in store::accounts::list_deleting(self.db()).await? {
            match self.purge_account(&name).await {
                Ok(true) => {
                    outcome.purged += 1;
                }
                Ok(false) => {}
                Err(Error::Unavailable) => return Err(Error::Unavailable),
                Err(err) => {
                    outcome.failed += 1;
                    tracing::error!(account = name, error = %err, "account purge failed; will retry");
                }
            }
        }
        Ok(outcome)
    }

    async fn purge_account(&self, name: &str) -> Result<bool> {
        let txn = self.write().await?;
        // Tens of thousands of users may take longer than a request may.
        store::without_statement_timeout(txn.db()).await?;
        let users = store::users::delete_users_of_account(txn.db(), name, self.now()).await?;
        let removed = store::accounts::delete_deleting_account(txn.db(), name).await?;
        txn.commit().await?;
        if removed {
            tracing::info!(account = name, users, "account purged");
        }
        Ok(removed)
    }
}
