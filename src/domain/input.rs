//! The rules of every string a request carries, by the kind of field it
//! is, whichever face it came through: the gRPC codec's walk of each
//! message (`grpc::input`), the console's forms, and the sign-in and
//! provisioning protocols to come. `docs/security.md` lists the rules.

use crate::error::{AuthFailure, Error};

/// What a string field is, and so which checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Names, identifiers, actions, page tokens: no control characters.
    Text,
    /// Descriptions, emails, API key names: shown to people, so also no
    /// bidirectional overrides or zero-width characters.
    FreeText,
    /// A credential being checked: whatever is wrong with it, the answer is
    /// the uniform `UNAUTHENTICATED` (no oracle).
    Credential,
    /// A password being set: no control characters, otherwise free.
    NewPassword,
    /// A document pasted whole (an IdP's metadata XML): line breaks and
    /// tabs are its own, any other control character is refused.
    Document,
    /// An encoded credential (a posted SAML response): line breaks are
    /// the encoding's; whatever else is wrong is the uniform
    /// `UNAUTHENTICATED`.
    EncodedCredential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    pub max_chars: usize,
}

const fn rule(kind: Kind, max_chars: usize) -> Rule {
    Rule { kind, max_chars }
}

/// Names of accounts, users, groups, roles, actions, IdPs.
pub const NAME_MAX_CHARS: usize = 128;
pub const DESCRIPTION_MAX_CHARS: usize = 1024;
pub const EMAIL_MAX_CHARS: usize = 254;
pub const PAGE_TOKEN_MAX_CHARS: usize = 512;
/// An `authorization` value or an API key being checked.
pub const CREDENTIAL_MAX_CHARS: usize = 8192;
/// A password being checked (longer than any password that can be set).
pub const LOGIN_PASSWORD_MAX_CHARS: usize = 1024;
/// An address (an entity id, an ACS or metadata URL).
pub const URL_MAX_CHARS: usize = 2048;
/// A pasted document (SAML metadata).
pub const DOCUMENT_MAX_CHARS: usize = 256 * 1024;
/// Items in a repeated field (`actions` has a lower setting on top).
pub const MAX_ITEMS: usize = 1000;
/// Roles given to a new user.
pub const MAX_ROLES: usize = 100;

/// Characters that make text read differently from what it is: bidi
/// embeddings, overrides, isolates and marks, and zero-width characters.
fn deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// The one check of a string from a request. `field` names it as the wire
/// does (`roles[2]`, `password.username`).
pub fn check(field: &str, value: &str, rule: Rule) -> Result<(), Error> {
    let refuse = |reason: &str| match rule.kind {
        Kind::Credential | Kind::EncodedCredential => {
            Error::Unauthenticated(AuthFailure::Malformed)
        }
        _ => Error::invalid(field, reason),
    };
    // Bytes first: a 3 MB value is refused without counting its characters.
    if value.len() > rule.max_chars * 4 || value.chars().count() > rule.max_chars {
        return Err(refuse(&format!(
            "must be at most {} characters",
            rule.max_chars
        )));
    }
    let layout = |c: char| {
        matches!(rule.kind, Kind::Document | Kind::EncodedCredential)
            && matches!(c, '\n' | '\r' | '\t')
    };
    if value.chars().any(|c| c.is_control() && !layout(c)) {
        return Err(refuse("must not contain control characters"));
    }
    if rule.kind == Kind::FreeText && value.chars().any(deceptive) {
        return Err(refuse(
            "must not contain bidirectional-override or zero-width characters",
        ));
    }
    Ok(())
}

/// The kinds of field a request carries, each with its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Names of accounts, users, groups, roles, actions, IdPs; ids.
    Name,
    /// A name shown to people (an API key's).
    ShownName,
    Description,
    Email,
    PageToken,
    /// An `authorization` value, an API key or a token being checked.
    Credential,
    /// The username of a password sign-in.
    LoginUsername,
    /// A password being checked (a sign-in's, or the current one).
    LoginPassword,
    /// A password being set.
    NewPassword,
    /// An address: an entity id, an ACS or a metadata URL.
    Url,
    /// A pasted document (an IdP's metadata).
    Document,
    /// A SAML response being checked.
    SamlResponse,
    /// An opaque value configured or handed back (an OIDC client id or
    /// secret, a relay state).
    Setting,
}

impl Field {
    pub const fn rule(self) -> Rule {
        match self {
            Field::Name => rule(Kind::Text, NAME_MAX_CHARS),
            Field::ShownName => rule(Kind::FreeText, NAME_MAX_CHARS),
            Field::Description => rule(Kind::FreeText, DESCRIPTION_MAX_CHARS),
            Field::Email => rule(Kind::FreeText, EMAIL_MAX_CHARS),
            Field::PageToken => rule(Kind::Text, PAGE_TOKEN_MAX_CHARS),
            Field::Credential => rule(Kind::Credential, CREDENTIAL_MAX_CHARS),
            Field::LoginUsername => rule(Kind::Credential, NAME_MAX_CHARS),
            Field::LoginPassword => rule(Kind::Credential, LOGIN_PASSWORD_MAX_CHARS),
            Field::NewPassword => rule(Kind::NewPassword, crate::domain::users::PASSWORD_MAX_CHARS),
            Field::Url => rule(Kind::Text, URL_MAX_CHARS),
            Field::Document => rule(Kind::Document, DOCUMENT_MAX_CHARS),
            Field::Setting => rule(Kind::Text, LOGIN_PASSWORD_MAX_CHARS),
            Field::SamlResponse => rule(
                Kind::EncodedCredential,
                crate::domain::sso::saml::MAX_RESPONSE_BASE64,
            ),
        }
    }

    /// `check` by this kind's rule; `name` is the field as the caller
    /// named it.
    pub fn check(self, name: &str, value: &str) -> Result<(), Error> {
        check(name, value, self.rule())
    }
}
