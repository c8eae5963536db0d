//! Authentication of credentials, and permission checks for both
//! `Authorize` and the admin RPCs.

use super::Core;
use super::credentials::Credential;
use super::decision::{Decision, Lookup, Reason, Target, decide};
use super::model::{AccountState, CredentialKind, Principal, UserState, UserType};
use crate::error::{AuthFailure, Error, Result};
use crate::store;
use crate::store::users::UserRecord;

fn fail(reason: AuthFailure) -> Error {
    Error::Unauthenticated(reason)
}

impl Core {
    /// Verifies a credential. Every failure is `Unauthenticated`; the reason
    /// inside is for the log, never for the caller.
    pub async fn authenticate(&self, credential: &Credential) -> Result<Principal> {
        let result = match credential {
            Credential::Password { username, password } => {
                self.authenticate_password(username, password).await
            }
            Credential::ApiKey(value) => self.authenticate_api_key(value).await,
        };
        let kind = match credential {
            Credential::Password { .. } => "password",
            Credential::ApiKey(_) => "api_key",
        };
        match &result {
            Ok(_) => {
                metrics::counter!("authzd_authentications_total", "credential" => kind, "outcome" => "success", "reason" => "ok")
                    .increment(1);
            }
            Err(Error::Unauthenticated(reason)) => {
                tracing::info!(
                    credential = kind,
                    reason = reason.as_str(),
                    "authentication failed"
                );
                metrics::counter!("authzd_authentications_total", "credential" => kind, "outcome" => "failure", "reason" => reason.as_str())
                    .increment(1);
            }
            Err(_) => {
                metrics::counter!("authzd_authentications_total", "credential" => kind, "outcome" => "error", "reason" => "error")
                    .increment(1);
            }
        }
        result
    }

    async fn authenticate_password(
        &self,
        username: &str,
        password: &super::secret::Secret,
    ) -> Result<Principal> {
        let record = store::users::find_user_record(self.db(), username).await?;
        // The hash is verified before any state is looked at, and a dummy
        // hash stands in for a missing one, so the time taken does not tell
        // which check failed.
        let hash = record.as_ref().and_then(|r| r.password_hash.as_deref());
        let verified = self.hasher().verify(password, hash).await?;
        let Some(record) = record else {
            return Err(fail(AuthFailure::UnknownUser));
        };
        if record.user.user_type != UserType::Native || record.password_hash.is_none() {
            return Err(fail(AuthFailure::NoPassword));
        }
        if !verified {
            return Err(fail(AuthFailure::WrongPassword));
        }
        check_active(&record)?;
        self.principal(record, CredentialKind::Password).await
    }

    pub(crate) async fn principal(
        &self,
        record: UserRecord,
        credential: CredentialKind,
    ) -> Result<Principal> {
        let mut grants = store::users::grants_of(self.db(), &[record.user.id]).await?;
        Ok(Principal {
            grants: grants.remove(&record.user.id).unwrap_or_default(),
            account_type: record.account.account_type,
            account_state: record.account.state,
            credential,
            api_key: None,
            user: record.user,
        })
    }

    /// The principal for a username a trusted caller has already
    /// authenticated. Inactive users are returned as they are: the
    /// decisions then say why they are refused.
    pub async fn principal_by_username(&self, username: &str) -> Result<Principal> {
        let record = store::users::find_user_record(self.db(), username)
            .await?
            .ok_or_else(|| Error::not_found(format!("user {username:?}")))?;
        self.principal(record, CredentialKind::Password).await
    }

    /// Decides each action in the account context (`None`: the subject's own
    /// account). Returns the context used and one decision per action.
    pub async fn authorize(
        &self,
        principal: &Principal,
        context: Option<&str>,
        actions: &[String],
    ) -> Result<(String, Vec<Decision>)> {
        for (i, action) in actions.iter().enumerate() {
            self.catalog()
                .require_action(&format!("actions[{i}]"), action)?;
        }
        if actions.is_empty() {
            return Err(Error::invalid("actions", "at least one action is required"));
        }
        let context = context.unwrap_or(principal.account()).to_owned();
        let account = store::accounts::find_account(self.db(), &context).await?;
        let target = Target::Account {
            name: &context,
            account: account.as_ref().map_or(Lookup::Missing, Lookup::Found),
        };
        let decisions = actions
            .iter()
            .map(|action| decide(self.catalog(), principal, action, target))
            .collect();
        Ok((context, decisions))
    }

    /// Refuses with `PermissionDenied` unless the principal may perform
    /// `action` in `account` (`None`: the system domain).
    pub async fn require(
        &self,
        principal: &Principal,
        action: &str,
        account: Option<&str>,
    ) -> Result<()> {
        let loaded;
        let target = match account {
            None => Target::System,
            // Administrators pass without the read; the operation reports a
            // missing account itself.
            Some(name) if principal.is_global_admin() => Target::Account {
                name,
                account: Lookup::Skipped,
            },
            Some(name) => {
                loaded = store::accounts::find_account(self.db(), name).await?;
                Target::Account {
                    name,
                    account: loaded.as_ref().map_or(Lookup::Missing, Lookup::Found),
                }
            }
        };
        let decision = decide(self.catalog(), principal, action, target);
        if decision.allowed {
            Ok(())
        } else {
            tracing::info!(
                caller = principal.username(),
                action,
                domain = decision.domain,
                reason = ?decision.reason,
                "permission denied"
            );
            Err(Error::denied(match decision.reason {
                Reason::ApiKeyRestricted => {
                    format!("{action} is never permitted to a request authenticated by an API key")
                }
                _ => format!("{action} is not permitted in {}", decision.domain),
            }))
        }
    }
}

pub(crate) fn check_active(record: &UserRecord) -> Result<()> {
    if record.user.state != UserState::Enabled {
        return Err(fail(AuthFailure::UserDisabled));
    }
    match record.account.state {
        AccountState::Enabled => Ok(()),
        AccountState::Disabled => Err(fail(AuthFailure::AccountDisabled)),
        AccountState::Deleting => Err(fail(AuthFailure::AccountDeleting)),
    }
}
