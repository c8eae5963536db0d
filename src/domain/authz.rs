//! Permission checks, for `Authorize` and for the admin RPCs: both ask
//! `decide`, with the target account from memory.

use super::Core;
use super::decision::{Decision, Lookup, Reason, Target, decide};
use super::model::Principal;
use crate::error::{Error, Result};

impl Core {
    /// Decides each action in the account context (`None`: the subject's own
    /// account). Returns the context used and one decision per action.
    pub async fn authorize(
        &self,
        principal: &Principal,
        context: Option<&str>,
        actions: &[String],
    ) -> Result<(String, Vec<Decision>)> {
        // The field name is built only for the error: this runs on every check.
        if let Some(i) = actions
            .iter()
            .position(|a| a.is_empty() || self.catalog().scope(a).is_none())
        {
            self.catalog()
                .require_action(&format!("actions[{i}]"), &actions[i])?;
        }
        if actions.is_empty() {
            return Err(Error::invalid("actions", "at least one action is required"));
        }
        let context = context.unwrap_or(principal.account()).to_owned();
        let account = self.account_entry(&context).await?;
        let target = Target::Account {
            name: &context,
            account: account.as_deref().map_or(Lookup::Missing, Lookup::Found),
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
                loaded = self.account_entry(name).await?;
                Target::Account {
                    name,
                    account: loaded.as_deref().map_or(Lookup::Missing, Lookup::Found),
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
