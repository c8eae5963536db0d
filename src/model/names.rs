//! Validated inputs: checked once at the boundary, trusted afterwards.
//! Each constructor takes the wire field name so the caller learns exactly
//! which field was wrong.

use std::fmt;

use crate::error::{Error, Result, quoted};

const RESERVED_ACCOUNT_NAMES: [&str; 3] = ["system", "anchore-system", "admin"];

/// Anchore's name shape: 3-128 characters, an alphanumeric first character,
/// an alphanumeric or `_` last one, and `middle` characters between.
fn check_name(field: &str, value: &str, middle: fn(char) -> bool) -> Result<()> {
    let count = value.chars().count();
    if count == 0 {
        return Err(Error::invalid(field, "is required"));
    }
    if !(3..=128).contains(&count) {
        return Err(Error::invalid(field, "must be 3 to 128 characters long"));
    }
    let mut chars = value.chars();
    let first = chars.next().unwrap_or(' ');
    let last = chars.next_back().unwrap_or(' ');
    if !first.is_ascii_alphanumeric() {
        return Err(Error::invalid(field, "must start with a letter or digit"));
    }
    if !(last.is_ascii_alphanumeric() || last == '_') {
        return Err(Error::invalid(
            field,
            "must end with a letter, digit or underscore",
        ));
    }
    if let Some(bad) = chars.find(|c| !middle(*c)) {
        return Err(Error::invalid(
            field,
            format!(
                "contains a character that is not allowed: {}",
                quoted(&bad.to_string())
            ),
        ));
    }
    Ok(())
}

fn account_middle(c: char) -> bool {
    c.is_ascii_alphanumeric() || " @.!$+=^_`~;-".contains(c)
}

fn username_middle(c: char) -> bool {
    c.is_ascii_alphanumeric() || " @.!#$+=^_`~;:-".contains(c)
}

macro_rules! newtype {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

newtype!(AccountName);
newtype!(Username);
newtype!(GroupName);
newtype!(RoleName);
newtype!(Email);

impl AccountName {
    /// A syntactically valid account name (it may name a reserved account).
    pub fn parse(field: &str, value: &str) -> Result<Self> {
        check_name(field, value, account_middle)?;
        Ok(Self(value.to_owned()))
    }

    /// A name a new account may take.
    pub fn parse_new(field: &str, value: &str) -> Result<Self> {
        let name = Self::parse(field, value)?;
        if RESERVED_ACCOUNT_NAMES
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(value))
        {
            return Err(Error::invalid(
                field,
                format!("{} is reserved", quoted(value)),
            ));
        }
        Ok(name)
    }
}

impl Username {
    pub fn parse(field: &str, value: &str) -> Result<Self> {
        check_name(field, value, username_middle)?;
        Ok(Self(value.to_owned()))
    }

    /// Native users authenticate with HTTP basic auth, where `:` separates
    /// the username from the password.
    pub fn parse_native(field: &str, value: &str) -> Result<Self> {
        let name = Self::parse(field, value)?;
        if value.contains(':') {
            return Err(Error::invalid(
                field,
                "must not contain ':' for native users",
            ));
        }
        Ok(name)
    }
}

impl GroupName {
    pub fn parse(field: &str, value: &str) -> Result<Self> {
        check_name(field, value, account_middle)?;
        Ok(Self(value.to_owned()))
    }
}

impl RoleName {
    /// Shape only; whether the role exists is the catalog's business.
    pub fn parse(field: &str, value: &str) -> Result<Self> {
        if value.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        if value.len() > 64 || !value.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            return Err(Error::invalid(
                field,
                format!("{} is not a role name", quoted(value)),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

impl Email {
    /// An empty value means "no email".
    pub fn parse_optional(field: &str, value: &str) -> Result<Option<Self>> {
        if value.is_empty() {
            return Ok(None);
        }
        if value.chars().count() > 254 {
            return Err(Error::invalid(field, "must be at most 254 characters"));
        }
        let valid = match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err(Error::invalid(field, "is not an email address"));
        }
        Ok(Some(Self(value.to_owned())))
    }
}

/// An identity provider's name: the account name's shape, so no invisible
/// or direction-changing character can make two names look alike.
pub fn idp_name(field: &str, value: &str) -> Result<String> {
    check_name(field, value, account_middle)?;
    Ok(value.to_owned())
}

/// A new identity provider's name: it is a path segment of the SSO
/// addresses (`/sso/saml/{idp}/acs`), so letters, digits, `_` and `-` only.
pub fn new_idp_name(field: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.len() > 128 {
        return Err(Error::invalid(field, "must be at most 128 characters long"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(Error::invalid(
            field,
            format!(
                "may hold letters, digits, _ and - only, not {}",
                quoted(&bad.to_string())
            ),
        ));
    }
    Ok(value.to_owned())
}

/// Bounded free text (descriptions).
pub fn description(field: &str, value: &str, max_chars: usize) -> Result<String> {
    if value.chars().count() > max_chars {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A non-empty identifier for a lookup; the shape is not checked because an
/// ill-formed name simply does not exist.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().count() > 128 {
        return Err(Error::invalid(field, "must be at most 128 characters"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<impl fmt::Debug>) -> Option<String> {
        match result {
            Err(Error::InvalidArgument { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn account_names_follow_anchore_rules() {
        assert!(AccountName::parse_new("name", "security").is_ok());
        assert!(AccountName::parse_new("name", "team a@b.c_").is_ok());
        assert_eq!(
            field_of(AccountName::parse_new("name", "ab")),
            Some("name".into())
        );
        assert!(AccountName::parse_new("name", "-abc").is_err());
        assert!(AccountName::parse_new("name", "abc-").is_err());
        assert!(AccountName::parse_new("name", "ab#c").is_err());
        assert!(AccountName::parse_new("name", &"a".repeat(129)).is_err());
        assert!(AccountName::parse_new("name", &"a".repeat(128)).is_ok());
        for reserved in ["admin", "system", "anchore-system", "Admin"] {
            assert!(
                AccountName::parse_new("name", reserved).is_err(),
                "{reserved}"
            );
        }
        assert!(AccountName::parse("account", "admin").is_ok());
    }

    #[test]
    fn usernames_allow_colon_only_for_non_native_users() {
        assert!(Username::parse("username", "a:b@idp").is_ok());
        assert!(Username::parse_native("username", "a:b@idp").is_err());
        assert!(Username::parse_native("username", "alice").is_ok());
        assert!(Username::parse_native("username", "_api_key").is_err());
    }

    #[test]
    fn emails_and_descriptions_are_bounded() {
        assert!(matches!(Email::parse_optional("email", ""), Ok(None)));
        assert!(Email::parse_optional("email", "a@b").is_ok());
        assert!(Email::parse_optional("email", "nope").is_err());
        assert!(Email::parse_optional("email", "a b@c").is_err());
        assert!(description("description", &"x".repeat(1025), 1024).is_err());
        assert!(description("description", "fine text", 1024).is_ok());
        assert!(description("description", "no\nbreaks", 1024).is_err());
    }
}
