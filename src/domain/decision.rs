//! The authorization decision, as a pure function of the principal, the
//! catalog and the target account. Admin RPCs and `Authorize` both use it.

use super::actions;
use super::catalog::Catalog;
use super::model::{
    Account, AccountState, AccountType, ActionScope, CredentialKind, Principal, UserState,
};

/// The permission domain for account and group management.
pub const SYSTEM_DOMAIN: &str = "system";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Admin,
    Role,
    OwnBehalf,
    NoGrant,
    SubjectAccountDisabled,
    SubjectDisabled,
    AccountDisabled,
    AccountDeleting,
    AccountNotFound,
    ApiKeyRestricted,
    /// A user-management action on a user who holds roles in an account
    /// where the caller may not perform it.
    ForeignGrant,
    /// A user-management action on a user of the admin (or a service)
    /// account by someone who is not a global administrator.
    PrivilegedTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: String,
    pub allowed: bool,
    pub reason: Reason,
    pub role: Option<String>,
    pub group: Option<String>,
    pub domain: String,
}

/// What is known of the target account.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    Found(&'a Account),
    Missing,
    /// Not read: the admin RPCs skip the read for administrators and let
    /// the operation itself report a missing account.
    Skipped,
}

/// Where an action is checked: the system domain or an account.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    System,
    Account { name: &'a str, account: Lookup<'a> },
}

impl Target<'_> {
    fn domain(&self) -> &str {
        match self {
            Target::System => SYSTEM_DOMAIN,
            Target::Account { name, .. } => name,
        }
    }
}

/// Decides one action. The order follows Anchore: the subject must be
/// active, then the permission must be granted, then a disabled target
/// account is refused to everyone but administrators.
pub fn decide(
    catalog: &Catalog,
    principal: &Principal,
    action: &str,
    target: Target<'_>,
) -> Decision {
    let scope = catalog.scope(action).unwrap_or(ActionScope::Account);
    // Account-management actions are checked in the system domain whatever
    // the account context.
    let target = if scope == ActionScope::System {
        Target::System
    } else {
        target
    };
    let verdict = |allowed: bool, reason: Reason| Decision {
        action: action.to_owned(),
        allowed,
        reason,
        role: None,
        group: None,
        domain: target.domain().to_owned(),
    };

    if principal.account_state != AccountState::Enabled {
        return verdict(false, Reason::SubjectAccountDisabled);
    }
    if principal.user.state != UserState::Enabled {
        return verdict(false, Reason::SubjectDisabled);
    }
    if principal.credential == CredentialKind::ApiKey && catalog.is_api_key_restricted(action) {
        return verdict(false, Reason::ApiKeyRestricted);
    }
    // Anyone may read their own account, as Anchore's `GET /account`
    // shows it: decided here, so Authorize, the RPCs and the gate agree.
    if action == actions::GET_ACCOUNT
        && matches!(target, Target::Account { name, .. } if name == principal.account())
    {
        return verdict(true, Reason::OwnBehalf);
    }
    if scope == ActionScope::OwnBehalf {
        // Acting on yourself only makes sense in your own account.
        let own = match target {
            Target::System => true,
            Target::Account { name, .. } => name == principal.account(),
        };
        return if own {
            verdict(true, Reason::OwnBehalf)
        } else {
            verdict(false, Reason::NoGrant)
        };
    }
    let admin = principal.is_global_admin();
    let Target::Account { name, account } = target else {
        return verdict(
            admin,
            if admin {
                Reason::Admin
            } else {
                Reason::NoGrant
            },
        );
    };
    // Nothing can be done in an account that is gone or going, not even by
    // an administrator; a disabled one is closed to everyone else.
    match account {
        Lookup::Missing => return verdict(false, Reason::AccountNotFound),
        Lookup::Found(a) if a.state == AccountState::Deleting => {
            return verdict(false, Reason::AccountDeleting);
        }
        _ if admin => return verdict(true, Reason::Admin),
        Lookup::Found(a) if a.state == AccountState::Disabled => {
            return verdict(false, Reason::AccountDisabled);
        }
        Lookup::Skipped => return verdict(false, Reason::NoGrant),
        Lookup::Found(_) => {}
    }
    // Direct grants sort before group grants, so the reason names the most
    // specific one.
    let granting = principal
        .grants
        .iter()
        .filter(|g| g.account == name && catalog.role_grants(&g.role, action))
        .min_by_key(|g| !g.via.is_direct());
    match granting {
        Some(grant) => Decision {
            role: Some(grant.role.clone()),
            group: grant.via.group().map(str::to_owned),
            ..verdict(true, Reason::Role)
        },
        None => verdict(false, Reason::NoGrant),
    }
}

/// Tenant isolation for user management: a caller allowed `action` on the
/// users of a user's home account may apply it to that user only if it is
/// also allowed `action` in every other account where the user holds a role
/// (directly or through a group). Otherwise managing their password, state,
/// keys or existence would hand the caller the user's roles elsewhere.
/// A user at home in the admin account (or a service account) holds power
/// no grant shows, so only a global administrator manages them.
/// `foreign` are the user's other accounts; the answer is the first refusal
/// (reason `PrivilegedTarget` or `ForeignGrant`), if any.
pub fn refusal_over_user(
    catalog: &Catalog,
    principal: &Principal,
    action: &str,
    home: &Account,
    foreign: &[Target<'_>],
) -> Option<Decision> {
    if principal.is_global_admin() {
        return None;
    }
    if home.account_type != AccountType::User {
        return Some(Decision {
            action: action.to_owned(),
            allowed: false,
            reason: Reason::PrivilegedTarget,
            role: None,
            group: None,
            domain: home.name.clone(),
        });
    }
    foreign
        .iter()
        .map(|target| decide(catalog, principal, action, *target))
        .find(|decision| !decision.allowed)
        .map(|decision| Decision {
            reason: Reason::ForeignGrant,
            ..decision
        })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::domain::catalog::ActionDef;
    use crate::domain::model::{AccountType, Grant, User, UserType};

    fn catalog() -> Catalog {
        Catalog::new(
            crate::domain::actions::USED_BY_AUTHZD
                .iter()
                .map(|a| (a.to_string(), ActionScope::Account))
                .chain([
                    ("listImages".to_owned(), ActionScope::Account),
                    ("createAccount".to_owned(), ActionScope::System),
                    ("selfListApiKeys".to_owned(), ActionScope::OwnBehalf),
                ])
                .map(|(name, scope)| {
                    let api_key_restricted = name == "createUser";
                    (
                        name,
                        ActionDef {
                            scope,
                            api_key_restricted,
                        },
                    )
                }),
            [("read-only".to_owned(), String::new())],
            [("read-only".to_owned(), "listImages".to_owned())],
        )
        .unwrap()
    }

    fn account(name: &str, state: AccountState) -> Account {
        Account {
            name: name.into(),
            email: None,
            account_type: AccountType::User,
            state,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn principal(account_type: AccountType, grants: Vec<Grant>) -> Principal {
        Principal {
            user: User {
                id: Uuid::nil(),
                username: "u".into(),
                account: "home".into(),
                user_type: UserType::Native,
                idp_name: None,
                state: UserState::Enabled,
                password_updated_at: None,
                created_at: DateTime::<Utc>::UNIX_EPOCH,
                updated_at: DateTime::<Utc>::UNIX_EPOCH,
            },
            account_type,
            account_state: AccountState::Enabled,
            credential: CredentialKind::Password,
            api_key: None,
            token_id: None,
            grants,
        }
    }

    fn grant(role: &str, account: &str, group: Option<&str>) -> Grant {
        Grant {
            role: role.into(),
            account: account.into(),
            via: group.map_or(crate::model::Via::Direct, |g| {
                crate::model::Via::Group(g.into())
            }),
        }
    }

    #[test]
    fn roles_grant_only_in_their_account() {
        let c = catalog();
        let other = account("other", AccountState::Enabled);
        let p = principal(AccountType::User, vec![grant("read-only", "home", None)]);
        let home = account("home", AccountState::Enabled);
        let target = Target::Account {
            name: "home",
            account: Lookup::Found(&home),
        };
        let d = decide(&c, &p, "listImages", target);
        assert!(d.allowed);
        assert_eq!(d.role.as_deref(), Some("read-only"));
        let d = decide(
            &c,
            &p,
            "listImages",
            Target::Account {
                name: "other",
                account: Lookup::Found(&other),
            },
        );
        assert_eq!((d.allowed, d.reason), (false, Reason::NoGrant));
        assert_eq!(d.domain, "other");
    }

    #[test]
    fn anyone_reads_their_own_account_and_only_theirs() {
        let c = catalog();
        let home = account("home", AccountState::Enabled);
        let other = account("other", AccountState::Enabled);
        let p = principal(AccountType::User, vec![]);
        let d = decide(
            &c,
            &p,
            "getAccount",
            Target::Account {
                name: "home",
                account: Lookup::Found(&home),
            },
        );
        assert_eq!((d.allowed, d.reason), (true, Reason::OwnBehalf));
        let d = decide(
            &c,
            &p,
            "getAccount",
            Target::Account {
                name: "other",
                account: Lookup::Found(&other),
            },
        );
        assert_eq!((d.allowed, d.reason), (false, Reason::NoGrant));
    }

    #[test]
    fn direct_grants_are_reported_before_group_grants() {
        let c = catalog();
        let home = account("home", AccountState::Enabled);
        let p = principal(
            AccountType::User,
            vec![
                grant("read-only", "home", Some("g")),
                grant("read-only", "home", None),
            ],
        );
        let d = decide(
            &c,
            &p,
            "listImages",
            Target::Account {
                name: "home",
                account: Lookup::Found(&home),
            },
        );
        assert_eq!((d.allowed, d.reason), (true, Reason::Role));
        assert_eq!(d.role.as_deref(), Some("read-only"));
        assert_eq!(d.group, None);
    }

    #[test]
    fn system_actions_need_an_admin_and_disabled_targets_refuse_users() {
        let c = catalog();
        let home = account("home", AccountState::Disabled);
        let target = Target::Account {
            name: "home",
            account: Lookup::Found(&home),
        };
        let user = principal(AccountType::User, vec![grant("read-only", "home", None)]);
        assert_eq!(
            decide(&c, &user, "createAccount", target).reason,
            Reason::NoGrant
        );
        assert_eq!(
            decide(&c, &user, "createAccount", target).domain,
            SYSTEM_DOMAIN
        );
        assert_eq!(
            decide(&c, &user, "listImages", target).reason,
            Reason::AccountDisabled
        );
        assert_eq!(
            decide(&c, &user, "selfListApiKeys", target).reason,
            Reason::OwnBehalf
        );
        let admin = principal(AccountType::Admin, vec![]);
        assert_eq!(
            decide(&c, &admin, "createAccount", target).reason,
            Reason::Admin
        );
        assert_eq!(
            decide(&c, &admin, "listImages", target).reason,
            Reason::Admin
        );
    }

    #[test]
    fn self_actions_are_allowed_only_in_the_subjects_own_account() {
        let c = catalog();
        let user = principal(AccountType::User, vec![]);
        let home = account("home", AccountState::Enabled);
        let other = account("other", AccountState::Enabled);
        let in_account = |a: &'static Account| Target::Account {
            name: &a.name,
            account: Lookup::Found(a),
        };
        let home: &'static Account = Box::leak(Box::new(home));
        let other: &'static Account = Box::leak(Box::new(other));
        assert!(decide(&c, &user, "selfListApiKeys", in_account(home)).allowed);
        assert!(decide(&c, &user, "selfListApiKeys", Target::System).allowed);
        let d = decide(&c, &user, "selfListApiKeys", in_account(other));
        assert_eq!((d.allowed, d.reason), (false, Reason::NoGrant));
        let ghost = Target::Account {
            name: "ghost",
            account: Lookup::Missing,
        };
        assert!(!decide(&c, &user, "selfListApiKeys", ghost).allowed);
    }

    #[test]
    fn managing_a_user_needs_the_action_wherever_they_hold_roles() {
        let c = catalog();
        let a = account("acct-a", AccountState::Enabled);
        let b = account("acct-b", AccountState::Enabled);
        let target = |acct: &'static Account| Target::Account {
            name: &acct.name,
            account: Lookup::Found(acct),
        };
        let a: &'static Account = Box::leak(Box::new(a));
        let b: &'static Account = Box::leak(Box::new(b));
        // The test catalog's one role grants listImages only, so it stands
        // in for the management action.
        let caller = principal(AccountType::User, vec![grant("read-only", "acct-a", None)]);
        assert!(decide(&c, &caller, "listImages", target(a)).allowed);
        assert_eq!(refusal_over_user(&c, &caller, "listImages", a, &[]), None);
        let d = refusal_over_user(&c, &caller, "listImages", a, &[target(b)]).unwrap();
        assert_eq!((d.allowed, d.reason), (false, Reason::ForeignGrant));
        assert_eq!(d.domain, "acct-b");
        let both = principal(
            AccountType::User,
            vec![
                grant("read-only", "acct-a", None),
                grant("read-only", "acct-b", Some("g")),
            ],
        );
        assert_eq!(
            refusal_over_user(&c, &both, "listImages", a, &[target(b)]),
            None
        );
        // Holding the action in the admin account does not make its users
        // manageable: their power shows in no grant.
        let mut admin_home = account("admin", AccountState::Enabled);
        admin_home.account_type = AccountType::Admin;
        let delegate = principal(AccountType::User, vec![grant("read-only", "admin", None)]);
        let d = refusal_over_user(&c, &delegate, "listImages", &admin_home, &[]).unwrap();
        assert_eq!(d.reason, Reason::PrivilegedTarget);
        let admin = principal(AccountType::Admin, vec![]);
        assert_eq!(
            refusal_over_user(&c, &admin, "listImages", &admin_home, &[target(b)]),
            None
        );
    }

    #[test]
    fn an_inactive_subject_is_refused_everything() {
        let c = catalog();
        let mut admin = principal(AccountType::Admin, vec![]);
        admin.account_state = AccountState::Disabled;
        let d = decide(&c, &admin, "listImages", Target::System);
        assert_eq!(
            (d.allowed, d.reason),
            (false, Reason::SubjectAccountDisabled)
        );
        let mut user = principal(AccountType::User, vec![]);
        user.user.state = UserState::Disabled;
        assert_eq!(
            decide(&c, &user, "selfListApiKeys", Target::System).reason,
            Reason::SubjectDisabled
        );
    }
}
