//! First start on an empty database: the admin account and user.

use rand::distr::{Alphanumeric, SampleString};
use uuid::Uuid;

use super::Core;
use super::audit::{Actor, Change};
use super::model::{
    ADMIN_ACCOUNT, ADMIN_USER, Account, AccountState, AccountType, User, UserState, UserType,
};
use super::secret::Secret;
use super::users::check_password;
use crate::error::Result;
use crate::store;

/// What bootstrap did.
#[derive(Debug)]
pub enum Bootstrap {
    /// The admin account already existed; nothing was changed.
    AlreadyDone,
    /// Created with the configured password.
    Created,
    /// Created with this generated password, to be shown once.
    CreatedWithGeneratedPassword(Secret),
}

impl Core {
    /// Creates the admin account and user unless the account exists. Safe
    /// to run from several replicas at once: only the one whose insert wins
    /// creates the user. A generated password is handed to `keep` before the
    /// commit: if it cannot be kept, nothing is created.
    pub async fn bootstrap(
        &self,
        admin_password: Option<&Secret>,
        keep: impl FnOnce(&Secret) -> Result<()>,
    ) -> Result<Bootstrap> {
        if store::accounts::find_account(self.db(), ADMIN_ACCOUNT)
            .await?
            .is_some()
        {
            return Ok(Bootstrap::AlreadyDone);
        }
        let generated = match admin_password {
            Some(password) => {
                check_password("admin_password", password)?;
                None
            }
            None => Some(Secret::new(
                Alphanumeric.sample_string(&mut rand::rng(), 32),
            )),
        };
        let password = admin_password.or(generated.as_ref());
        let hash = match password {
            Some(password) => {
                self.hasher()
                    .hash(password, crate::domain::authn::sources::Source::LOCAL)
                    .await?
            }
            None => return Ok(Bootstrap::AlreadyDone),
        };
        let now = self.now();
        let account = Account {
            name: ADMIN_ACCOUNT.to_owned(),
            email: None,
            account_type: AccountType::Admin,
            state: AccountState::Enabled,
            created_at: now,
            updated_at: now,
        };
        let user = User {
            id: Uuid::new_v4(),
            username: ADMIN_USER.to_owned(),
            account: ADMIN_ACCOUNT.to_owned(),
            user_type: UserType::Native,
            idp_name: None,
            state: UserState::Enabled,
            password_updated_at: Some(now),
            created_at: now,
            updated_at: now,
        };
        let mut txn = self.write().await?;
        if !store::accounts::create_account_if_absent(txn.db(), &account).await? {
            return Ok(Bootstrap::AlreadyDone);
        }
        store::users::create_user(txn.db(), &user, Some(hash)).await?;
        let bootstrap = Actor::Local("bootstrap");
        txn.record(
            bootstrap,
            Change::new("create", "account", ADMIN_ACCOUNT)
                .account(ADMIN_ACCOUNT)
                .to("type", account.account_type.as_str()),
        );
        txn.record(
            bootstrap,
            Change::new("create", "user", ADMIN_USER)
                .account(ADMIN_ACCOUNT)
                .id(user.id)
                .secret("password"),
        );
        if let Some(secret) = &generated {
            keep(secret)?;
        }
        txn.commit().await?;
        tracing::info!("bootstrap created the admin account and user");
        Ok(match generated {
            Some(secret) => Bootstrap::CreatedWithGeneratedPassword(secret),
            None => Bootstrap::Created,
        })
    }
}
