//! Domain types to and from wire messages.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::domain::catalog::Role;
use crate::domain::decision::{Decision, Reason};
use crate::domain::model::{
    Account, AccountState, AccountType, ApiKey, ApiKeyStatus, CredentialKind, Grant, Group,
    Principal, RoleMember, UserState, UserType, UserWithGrants, Via,
};
use crate::error::{Error, Result};
use crate::pb;

pub fn timestamp(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

pub fn account_type(t: AccountType) -> pb::AccountType {
    match t {
        AccountType::User => pb::AccountType::User,
        AccountType::Admin => pb::AccountType::Admin,
        AccountType::Service => pb::AccountType::Service,
    }
}

pub fn account_state(s: AccountState) -> pb::AccountState {
    match s {
        AccountState::Enabled => pb::AccountState::Enabled,
        AccountState::Disabled => pb::AccountState::Disabled,
        AccountState::Deleting => pb::AccountState::Deleting,
    }
}

pub fn user_type(t: UserType) -> pb::UserType {
    match t {
        UserType::Native => pb::UserType::Native,
        UserType::Saml => pb::UserType::Saml,
        UserType::Oidc => pb::UserType::Oidc,
        UserType::Service => pb::UserType::Service,
    }
}

pub fn user_state(s: UserState) -> pb::UserState {
    match s {
        UserState::Enabled => pb::UserState::Enabled,
        UserState::Disabled => pb::UserState::Disabled,
    }
}

/// A wire enum value: unknown numbers are refused naming the field;
/// UNSPECIFIED is `None`.
pub fn enum_field<E: TryFrom<i32>>(field: &str, value: i32) -> Result<Option<E>> {
    if value == 0 {
        return Ok(None);
    }
    E::try_from(value)
        .map(Some)
        .map_err(|_| Error::invalid(field, format!("{value} is not a known value")))
}

pub fn account_state_in(field: &str, value: i32) -> Result<Option<AccountState>> {
    Ok(
        enum_field::<pb::AccountState>(field, value)?.and_then(|s| match s {
            pb::AccountState::Unspecified => None,
            pb::AccountState::Enabled => Some(AccountState::Enabled),
            pb::AccountState::Disabled => Some(AccountState::Disabled),
            pb::AccountState::Deleting => Some(AccountState::Deleting),
        }),
    )
}

pub fn account_type_in(field: &str, value: i32) -> Result<Option<AccountType>> {
    Ok(
        enum_field::<pb::AccountType>(field, value)?.and_then(|t| match t {
            pb::AccountType::Unspecified => None,
            pb::AccountType::User => Some(AccountType::User),
            pb::AccountType::Admin => Some(AccountType::Admin),
            pb::AccountType::Service => Some(AccountType::Service),
        }),
    )
}

pub fn user_type_in(field: &str, value: i32) -> Result<Option<UserType>> {
    Ok(
        enum_field::<pb::UserType>(field, value)?.and_then(|t| match t {
            pb::UserType::Unspecified => None,
            pb::UserType::Native => Some(UserType::Native),
            pb::UserType::Saml => Some(UserType::Saml),
            pb::UserType::Oidc => Some(UserType::Oidc),
            pb::UserType::Service => Some(UserType::Service),
        }),
    )
}

pub fn user_state_in(field: &str, value: i32) -> Result<Option<UserState>> {
    Ok(
        enum_field::<pb::UserState>(field, value)?.and_then(|s| match s {
            pb::UserState::Unspecified => None,
            pb::UserState::Enabled => Some(UserState::Enabled),
            pb::UserState::Disabled => Some(UserState::Disabled),
        }),
    )
}

impl From<Account> for pb::Account {
    fn from(a: Account) -> Self {
        pb::Account {
            name: a.name,
            email: a.email.unwrap_or_default(),
            r#type: account_type(a.account_type).into(),
            state: account_state(a.state).into(),
            created_at: timestamp(a.created_at),
            updated_at: timestamp(a.updated_at),
        }
    }
}

impl From<Grant> for pb::RoleGrant {
    fn from(g: Grant) -> Self {
        pb::RoleGrant {
            grant_type: match &g.via {
                Via::Direct => pb::GrantType::Direct,
                Via::Group(_) => pb::GrantType::GroupMembership,
                Via::SsoGroup(_) => pb::GrantType::SsoGroupMembership,
            }
            .into(),
            role: g.role,
            account: g.account,
            group: g.via.group().unwrap_or_default().to_owned(),
        }
    }
}

impl From<UserWithGrants> for pb::User {
    fn from(u: UserWithGrants) -> Self {
        let UserWithGrants { user, grants, lock } = u;
        pb::User {
            id: user.id.to_string(),
            username: user.username,
            account: user.account,
            r#type: user_type(user.user_type).into(),
            idp_name: user.idp_name.unwrap_or_default(),
            state: user_state(user.state).into(),
            created_at: timestamp(user.created_at),
            updated_at: timestamp(user.updated_at),
            password_last_updated: user.password_updated_at.and_then(timestamp),
            roles: grants.into_iter().map(Into::into).collect(),
            lock: lock.map(|l| pb::LockState {
                failures: i32::try_from(l.failures).unwrap_or(i32::MAX),
                locked_until: l.locked_until.and_then(timestamp),
                permanent: l.permanent,
            }),
        }
    }
}

impl From<Principal> for pb::Principal {
    fn from(p: Principal) -> Self {
        let global_admin = p.is_global_admin();
        pb::Principal {
            user_id: p.user.id.to_string(),
            username: p.user.username,
            user_type: user_type(p.user.user_type).into(),
            account: p.user.account,
            account_type: account_type(p.account_type).into(),
            credential_kind: match p.credential {
                CredentialKind::Password => pb::CredentialKind::Password,
                CredentialKind::ApiKey => pb::CredentialKind::ApiKey,
                CredentialKind::Token => pb::CredentialKind::Token,
            }
            .into(),
            token_id: p.token_id.unwrap_or_default(),
            grants: p.grants.into_iter().map(Into::into).collect(),
            global_admin,
            api_key: p.api_key.map(|k| pb::ApiKeyRef {
                id: k.key_id,
                name: k.name,
            }),
        }
    }
}

impl From<Decision> for pb::Decision {
    fn from(d: Decision) -> Self {
        let reason = match d.reason {
            Reason::Admin => pb::DecisionReason::Admin,
            Reason::Role => pb::DecisionReason::Role,
            Reason::OwnBehalf => pb::DecisionReason::Self_,
            // ForeignGrant decides admin RPCs only, never an Authorize.
            Reason::NoGrant | Reason::ForeignGrant | Reason::PrivilegedTarget => {
                pb::DecisionReason::NoGrant
            }
            Reason::SubjectAccountDisabled => pb::DecisionReason::SubjectAccountDisabled,
            Reason::SubjectDisabled => pb::DecisionReason::SubjectDisabled,
            Reason::AccountDisabled => pb::DecisionReason::AccountDisabled,
            Reason::AccountDeleting => pb::DecisionReason::AccountDeleting,
            Reason::AccountNotFound => pb::DecisionReason::AccountNotFound,
            Reason::ApiKeyRestricted => pb::DecisionReason::ApiKeyRestricted,
        };
        pb::Decision {
            action: d.action,
            allowed: d.allowed,
            reason: reason.into(),
            role: d.role.unwrap_or_default(),
            group: d.group.unwrap_or_default(),
            domain: d.domain,
        }
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> Self {
        pb::Role {
            name: r.name,
            description: r.description,
            actions: r.actions.into_iter().collect(),
        }
    }
}

impl From<RoleMember> for pb::RoleMember {
    fn from(m: RoleMember) -> Self {
        pb::RoleMember {
            role: m.role,
            username: m.username,
            account: m.account,
            user_account: m.user_account,
            created_at: timestamp(m.created_at),
        }
    }
}

impl From<Group> for pb::Group {
    fn from(g: Group) -> Self {
        pb::Group {
            id: g.id.to_string(),
            name: g.name,
            description: g.description,
            created_at: timestamp(g.created_at),
            updated_at: timestamp(g.updated_at),
            members: g.members,
            grants: g
                .grants
                .into_iter()
                .map(|(role, account)| pb::GroupGrant { role, account })
                .collect(),
        }
    }
}

pub fn api_key_status(s: ApiKeyStatus) -> pb::ApiKeyStatus {
    match s {
        ApiKeyStatus::Active => pb::ApiKeyStatus::Active,
        ApiKeyStatus::Expired => pb::ApiKeyStatus::Expired,
        ApiKeyStatus::Revoked => pb::ApiKeyStatus::Revoked,
    }
}

pub fn api_key_status_in(field: &str, value: i32) -> Result<Option<ApiKeyStatus>> {
    Ok(
        enum_field::<pb::ApiKeyStatus>(field, value)?.and_then(|s| match s {
            pb::ApiKeyStatus::Unspecified => None,
            pb::ApiKeyStatus::Active => Some(ApiKeyStatus::Active),
            pb::ApiKeyStatus::Expired => Some(ApiKeyStatus::Expired),
            pb::ApiKeyStatus::Revoked => Some(ApiKeyStatus::Revoked),
        }),
    )
}

/// The status depends on the time of reading.
pub fn api_key(key: ApiKey, now: DateTime<Utc>) -> pb::ApiKey {
    pb::ApiKey {
        status: api_key_status(key.status(now)).into(),
        id: key.key_id,
        name: key.name,
        description: key.description,
        username: key.username,
        account: key.account,
        prefix: key.prefix,
        last_four: key.last_four,
        created_at: timestamp(key.created_at),
        updated_at: timestamp(key.updated_at),
        expires_at: timestamp(key.expires_at),
        revoked_at: key.revoked_at.and_then(timestamp),
        last_used_at: key.last_used_at.and_then(timestamp),
        rotated_at: key.rotated_at.and_then(timestamp),
        previous_valid_until: key.previous_valid_until.and_then(timestamp),
    }
}

pub fn timestamp_in(field: &str, value: Option<Timestamp>) -> Result<DateTime<Utc>> {
    let value = value.ok_or_else(|| Error::invalid(field, "is required"))?;
    let nanos =
        u32::try_from(value.nanos).map_err(|_| Error::invalid(field, "is not a valid time"))?;
    DateTime::from_timestamp(value.seconds, nanos)
        .ok_or_else(|| Error::invalid(field, "is not a valid time"))
}
