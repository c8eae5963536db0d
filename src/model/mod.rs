//! The identity model: accounts, users, grants, and the principal a
//! credential resolves to; and below them the names, pages, secrets, the
//! clock, the action catalogue and the audit chain's records. Everything
//! else (store, cache, domain, the faces) builds on this module, and it
//! builds on nothing of theirs: it imports only `crate::error` (the
//! `layers` test holds that line).

pub mod actions;
pub mod audit;
pub mod catalog;
mod clock;
pub mod names;
pub mod page;
pub mod secret;

pub use clock::Clock;

use chrono::{DateTime, Utc};

use self::secret::Secret;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Storage and wire spelling for the enums below, in one place.
macro_rules! string_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Reads a value written by `as_str`; anything else is corrupt data.
            pub fn from_stored(text: &str) -> Result<Self> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(Error::internal(format!(
                        concat!("unknown ", stringify!($name), " {:?} in storage"), other
                    ))),
                }
            }
        }
    };
}

string_enum!(AccountType { User => "user", Admin => "admin", Service => "service" });
string_enum!(AccountState { Enabled => "enabled", Disabled => "disabled", Deleting => "deleting" });
string_enum!(UserType { Native => "native", Saml => "saml", Oidc => "oidc", Service => "service" });

impl UserType {
    /// Signs in through an identity provider, never with a password.
    pub fn is_federated(self) -> bool {
        matches!(self, UserType::Saml | UserType::Oidc)
    }
}
string_enum!(UserState { Enabled => "enabled", Disabled => "disabled" });
string_enum!(ActionScope { Account => "account", System => "system", OwnBehalf => "self" });

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Password,
    ApiKey,
    /// An access token: it can only come from a password, so it carries no
    /// API-key restriction.
    Token,
}

/// The account whose users are global administrators.
pub const ADMIN_ACCOUNT: &str = "admin";
/// The bootstrap administrator.
pub const ADMIN_USER: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub email: Option<String>,
    pub account_type: AccountType,
    pub state: AccountState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user as a check sees them, as the store reads them and the cache
/// keeps them: with their effective grants and the groups they are in (a
/// group's grants may change). Never the password hash.
#[derive(Debug)]
pub struct UserEntry {
    pub user: User,
    pub grants: Vec<Grant>,
    pub groups: Vec<Uuid>,
}

/// An API key as a check sees it, as the store reads it and the cache
/// keeps it: the stored digests decoded once.
#[derive(Debug)]
pub struct KeyEntry {
    pub id: Uuid,
    pub key_id: String,
    pub user_id: Uuid,
    pub owner_username: String,
    pub name: String,
    /// The stored digest; `None` if the stored hash is not one (never matches).
    pub digest: Option<[u8; 32]>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub owner_deleted_at: Option<DateTime<Utc>>,
    /// A rotated key's previous secret, valid until the instant given.
    pub previous: Option<([u8; 32], DateTime<Utc>)>,
}

/// A role held in an account, directly or through a user group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub role: String,
    pub account: String,
    pub via: Via,
}

/// How a grant is held. Direct grants sort first: a reason names the most
/// specific one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    /// Bound to the user.
    Direct,
    /// Through the user group of that name, a member by an administrator.
    Group(String),
    /// Through the user group of that name, a member because an identity
    /// provider asserted it at the last sign-in (Anchore's
    /// `sso_group_membership`).
    SsoGroup(String),
}

impl Via {
    /// The group a grant comes through, if any.
    pub fn group(&self) -> Option<&str> {
        match self {
            Via::Direct => None,
            Via::Group(name) | Via::SsoGroup(name) => Some(name),
        }
    }

    pub fn is_direct(&self) -> bool {
        *self == Via::Direct
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub account: String,
    pub user_type: UserType,
    pub idp_name: Option<String>,
    pub state: UserState,
    pub password_updated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user with their effective grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWithGrants {
    pub user: User,
    pub grants: Vec<Grant>,
    /// Password failures and lock, where the caller may see them.
    pub lock: Option<LockState>,
}

/// A user's password failures and lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    pub failures: i64,
    pub locked_until: Option<chrono::DateTime<chrono::Utc>>,
    pub permanent: bool,
}

/// The API key a principal authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRef {
    pub key_id: String,
    pub name: String,
}

/// Who a request acts as, resolved from a credential or a trusted username.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub account_type: AccountType,
    pub account_state: AccountState,
    pub credential: CredentialKind,
    pub api_key: Option<ApiKeyRef>,
    /// The access token's id (`jti`), for a token.
    pub token_id: Option<String>,
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Users of the admin account (and internal service accounts) may do
    /// everything in every domain.
    pub fn is_global_admin(&self) -> bool {
        matches!(self.account_type, AccountType::Admin | AccountType::Service)
    }

    pub fn username(&self) -> &str {
        &self.user.username
    }

    pub fn account(&self) -> &str {
        &self.user.account
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyStatus {
    Active,
    Expired,
    Revoked,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    /// The public id embedded in the value.
    pub key_id: String,
    pub user_id: Uuid,
    pub username: String,
    pub account: String,
    pub name: String,
    pub description: String,
    pub prefix: String,
    pub last_four: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub owner_deleted_at: Option<DateTime<Utc>>,
    /// The last rotation, and until when the secret it replaced still
    /// authenticates.
    pub rotated_at: Option<DateTime<Utc>>,
    pub previous_valid_until: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Derived, never stored: revocation wins over expiry.
    pub fn status(&self, now: DateTime<Utc>) -> ApiKeyStatus {
        if self.revoked_at.is_some() {
            ApiKeyStatus::Revoked
        } else if now >= self.expires_at {
            ApiKeyStatus::Expired
        } else {
            ApiKeyStatus::Active
        }
    }
}

/// An identity provider people sign in through: SAML, or OpenID Connect
/// when `oidc` is set. The account, role and group mappings are one model
/// for both; for OIDC the `*_attribute` fields name ID token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProvider {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// As configured; `None` derives them from the console's public URL.
    pub sp_entity_id: Option<String>,
    pub acs_url: Option<String>,
    pub metadata: IdpMetadata,
    /// Where the metadata was fetched from, when it was.
    pub metadata_url: Option<String>,
    /// `None`: the Subject's NameID.
    pub username_attribute: Option<String>,
    pub account_attribute: Option<String>,
    pub role_attribute: Option<String>,
    pub groups_attribute: Option<String>,
    pub default_account: Option<String>,
    pub default_role: Option<String>,
    pub require_signed_assertions: bool,
    pub require_signed_response: bool,
    pub allow_idp_initiated: bool,
    pub oidc: Option<OidcProvider>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl IdentityProvider {
    /// The type of the users this provider signs in.
    pub fn user_type(&self) -> UserType {
        if self.oidc.is_some() {
            UserType::Oidc
        } else {
            UserType::Saml
        }
    }

    /// `saml` or `oidc`, as logs, metrics and audit records name it.
    pub fn protocol(&self) -> &'static str {
        if self.oidc.is_some() { "oidc" } else { "saml" }
    }
}

/// What makes a provider an OpenID Connect one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// ID tokens must name it as their `iss`, exactly.
    pub issuer: String,
    pub client_id: String,
    /// Write-only: used at the token endpoint, never shown.
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    /// Read from `{issuer}/.well-known/openid-configuration`.
    pub endpoints: OidcEndpoints,
    /// The provider's JWKS (JSON) as last read, and when.
    pub jwks: String,
    pub jwks_read_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OidcEndpoints {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// An identity provider's metadata document and what sign-in reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub xml: String,
    /// Responses must name it as their Issuer.
    pub entity_id: String,
    /// Where AuthnRequests go (HTTP-Redirect binding).
    pub sso_url: String,
    /// DER certificates whose signatures are accepted, and no others.
    pub certificates: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Sorted usernames; empty in listings.
    pub members: Vec<String>,
    /// (role, account) pairs; empty in listings.
    pub grants: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMember {
    pub role: String,
    pub username: String,
    pub account: String,
    pub user_account: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spellings_round_trip_and_reject_unknown() {
        for state in [
            AccountState::Enabled,
            AccountState::Disabled,
            AccountState::Deleting,
        ] {
            assert_eq!(AccountState::from_stored(state.as_str()).ok(), Some(state));
        }
        assert!(matches!(
            UserType::from_stored("root"),
            Err(Error::Internal(_))
        ));
    }
}
