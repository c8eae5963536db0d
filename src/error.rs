//! The one error type of the domain. The transport maps it to a gRPC status
//! in one place (`grpc::status`).

use std::fmt;

/// Why an authentication failed. Never shown to the caller (they all see the
/// same UNAUTHENTICATED message); logged, and later counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Malformed,
    UnknownUser,
    WrongPassword,
    NoPassword,
    UserDisabled,
    AccountDisabled,
    AccountDeleting,
    UnsupportedCredential,
    MissingCredentials,
    BadChecksum,
    UnknownKey,
    WrongSecret,
    KeyExpired,
    KeyRevoked,
    OwnerDeleted,
    SamlKeysDisallowed,
    /// The user is locked after repeated wrong passwords.
    Locked,
    /// An access token whose signature, key id, algorithm or claims do not
    /// verify.
    BadToken,
    TokenExpired,
    TokenRevoked,
    /// A refresh token presented a second time: its family is revoked.
    TokenReused,
    UnknownToken,
    /// A single sign-on refused: which check failed (`saml_audience`,
    /// `saml_replay`, `sso_native_user`, ...).
    Sso(&'static str),
    /// `user_authentication.disallow_native_users`: passwords are for the
    /// bootstrap administrator only.
    NativeUsersDisallowed,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownUser => "unknown_user",
            Self::WrongPassword => "wrong_password",
            Self::NoPassword => "no_password",
            Self::UserDisabled => "user_disabled",
            Self::AccountDisabled => "account_disabled",
            Self::AccountDeleting => "account_deleting",
            Self::UnsupportedCredential => "unsupported_credential",
            Self::MissingCredentials => "missing_credentials",
            Self::BadChecksum => "bad_checksum",
            Self::UnknownKey => "unknown_key",
            Self::WrongSecret => "wrong_secret",
            Self::KeyExpired => "key_expired",
            Self::KeyRevoked => "key_revoked",
            Self::OwnerDeleted => "owner_deleted",
            Self::SamlKeysDisallowed => "saml_keys_disallowed",
            Self::Locked => "locked",
            Self::BadToken => "bad_token",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::TokenReused => "token_reused",
            Self::UnknownToken => "unknown_token",
            Self::Sso(reason) => reason,
            Self::NativeUsersDisallowed => "native_users_disallowed",
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller's input is unacceptable; `field` names it as the wire does.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A per-user quota is used up.
    #[error("{0}")]
    LimitReached(String),
    /// Too much at once from a source, or for the password hashing queue:
    /// the caller should come back after `retry_after`.
    #[error("{why}")]
    Busy {
        why: String,
        retry_after: std::time::Duration,
    },
    #[error("invalid credentials")]
    Unauthenticated(AuthFailure),
    /// The database does not answer.
    #[error("the database is unavailable")]
    Unavailable,
    /// A bug or an unexpected database state. The text is for the log only.
    #[error("internal error")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub fn exists(what: impl Into<String>) -> Self {
        Self::AlreadyExists(what.into())
    }

    pub fn precondition(why: impl Into<String>) -> Self {
        Self::FailedPrecondition(why.into())
    }

    pub fn denied(why: impl Into<String>) -> Self {
        Self::PermissionDenied(why.into())
    }

    pub fn internal(context: impl Into<String>) -> Self {
        Self::Internal(context.into())
    }
}

/// Characters of a caller's input quoted in a message or log line.
pub const QUOTE_MAX_CHARS: usize = 64;

/// A caller's input as it appears in an error or log line: quoted and
/// escaped, cut to `QUOTE_MAX_CHARS` characters (a 3 MB name must not come
/// back as a 3 MB error).
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTE_MAX_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}…", &value[..end]),
    }
}
