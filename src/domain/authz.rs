//! Permission checks, for `Authorize` and for the admin RPCs: both ask
//! `decide`, with the target account from memory.

use super::Core;
use super::audit::Refusal;
use super::decision::{Decision, Lookup, Reason, Target, decide, refusal_over_user};
use super::model::{Principal, User};
use crate::error::{Error, Result, quoted};

impl Core {
    /// Decides each action in the account context (`None`: the subject's own
    /// account). Returns the context used and one decision per action.
    pub async fn authorize(
        &self,
        principal: &Principal,
        context: Option<&str>,
        actions: &[String],
    ) -> Result<(String, Vec<Decision>)> {
        self.check_action_count(actions)?;
        // The field name is built only for the error: this runs on every check.
        if let Some(i) = actions
            .iter()
            .position(|a| a.is_empty() || self.catalog().scope(a).is_none())
        {
            self.catalog()
                .require_action(&format!("actions[{i}]"), &actions[i])?;
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

    /// At least one action, at most `server.max_authorize_actions`.
    pub fn check_action_count(&self, actions: &[String]) -> Result<()> {
        if actions.is_empty() {
            return Err(Error::invalid("actions", "at least one action is required"));
        }
        let max = self.settings().max_authorize_actions;
        if actions.len() > max {
            return Err(Error::invalid(
                "actions",
                format!("at most {max} per request (server.max_authorize_actions)"),
            ));
        }
        Ok(())
    }

    /// Refuses with `PermissionDenied` unless the principal may perform
    /// `action` in `account` (`None`: the system domain).
    ///
    /// A missing account is `NotFound` for a global administrator. Anyone
    /// else is refused there as in any account where they hold no role, so
    /// the answer does not tell which accounts exist.
    ///
    /// A refusal is recorded in the audit trail.
    pub async fn require(
        &self,
        principal: &Principal,
        action: &str,
        account: Option<&str>,
    ) -> Result<()> {
        let result = self.may(principal, action, account).await;
        if matches!(result, Err(Error::PermissionDenied(_))) {
            self.refused(Refusal::action(principal, action, account));
        }
        result
    }

    /// `require` without a record: for a question whose "no" refuses
    /// nothing (what a reply may show).
    pub async fn may(
        &self,
        principal: &Principal,
        action: &str,
        account: Option<&str>,
    ) -> Result<()> {
        let decision = match account {
            None => decide(self.catalog(), principal, action, Target::System),
            Some(name) => {
                let loaded = self.account_entry(name).await?;
                if loaded.is_none() && principal.is_global_admin() {
                    return Err(Error::not_found(format!("account {}", quoted(name))));
                }
                let target = Target::Account {
                    name,
                    account: loaded.as_deref().map_or(Lookup::Missing, Lookup::Found),
                };
                decide(self.catalog(), principal, action, target)
            }
        };
        permitted(principal, action, &decision)
    }

    /// `require` for an action on one user (their password, state, keys,
    /// existence), with the tenant-isolation rule of `refusal_over_user`.
    /// A refusal is recorded in the audit trail.
    pub async fn require_over_user(
        &self,
        principal: &Principal,
        action: &str,
        user: &User,
    ) -> Result<()> {
        let result = self.may_over_user(principal, action, user).await;
        if matches!(result, Err(Error::PermissionDenied(_))) {
            self.refused(Refusal {
                target_user: Some(user.username.clone()),
                ..Refusal::action(principal, action, Some(&user.account))
            });
        }
        result
    }

    /// `require_over_user` without a record.
    pub async fn may_over_user(
        &self,
        principal: &Principal,
        action: &str,
        user: &User,
    ) -> Result<()> {
        self.may(principal, action, Some(&user.account)).await?;
        if principal.is_global_admin() {
            return Ok(());
        }
        let grants = self
            .queries()
            .user_by_name(self.db(), &user.username)
            .await?
            .map(|loaded| loaded.entry.grants)
            .unwrap_or_default();
        let mut foreign: Vec<&str> = grants
            .iter()
            .map(|g| g.account.as_str())
            .filter(|a| *a != user.account)
            .collect();
        foreign.sort_unstable();
        foreign.dedup();
        let mut loaded = Vec::with_capacity(foreign.len());
        for name in &foreign {
            loaded.push(self.account_entry(name).await?);
        }
        let targets: Vec<Target<'_>> = foreign
            .iter()
            .zip(&loaded)
            .map(|(name, account)| Target::Account {
                name,
                account: account.as_deref().map_or(Lookup::Missing, Lookup::Found),
            })
            .collect();
        let Some(home) = self.account_entry(&user.account).await? else {
            return Err(Error::not_found(format!(
                "account {}",
                quoted(&user.account)
            )));
        };
        if let Some(decision) =
            refusal_over_user(self.catalog(), principal, action, &home, &targets)
        {
            tracing::info!(
                caller = principal.username(),
                action,
                user = user.username,
                domain = decision.domain,
                reason = ?decision.reason,
                "permission denied"
            );
            let user = quoted(&user.username);
            let domain = quoted(&decision.domain);
            return Err(Error::denied(match decision.reason {
                Reason::PrivilegedTarget => format!(
                    "{action} on user {user} is not permitted: only a global administrator manages users of account {domain}"
                ),
                _ => format!(
                    "{action} on user {user} is not permitted: they hold roles in account {domain}, where you may not {action}"
                ),
            }));
        }
        Ok(())
    }
}

/// `Ok` if the decision allows, else the `PermissionDenied` that says why.
fn permitted(principal: &Principal, action: &str, decision: &Decision) -> Result<()> {
    if decision.allowed {
        return Ok(());
    }
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
        _ => format!("{action} is not permitted in {}", quoted(&decision.domain)),
    }))
}
