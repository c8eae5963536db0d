//! What a caller presents to prove who it is, parsed from an HTTP
//! Authorization header value or from explicit fields.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::domain::secret::Secret;
use crate::error::{AuthFailure, Error, Result};

/// Basic-auth username that marks the password as an API key (Anchore's convention).
pub const API_KEY_USERNAME: &str = "_api_key";

#[derive(Debug, Clone)]
pub enum Credential {
    Password {
        username: String,
        password: Secret,
    },
    ApiKey(Secret),
    /// An access token from the token service.
    Token(Secret),
}

fn malformed() -> Error {
    Error::Unauthenticated(AuthFailure::Malformed)
}

impl Credential {
    /// Parses `Basic base64(username:password)` or `Bearer <access
    /// token>`. The scheme is matched case-insensitively, as HTTP does.
    pub fn from_authorization(header: &str) -> Result<Self> {
        let header = header.trim();
        let (scheme, encoded) = header.split_once(' ').ok_or_else(malformed)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = encoded.trim();
            if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
                return Err(malformed());
            }
            return Ok(Self::Token(Secret::new(token.to_owned())));
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Error::Unauthenticated(AuthFailure::UnsupportedCredential));
        }
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        // A NUL or other control character can name no user and be no key;
        // refused here, it never reaches the database (Postgres rejects NUL).
        if decoded.chars().any(char::is_control) {
            return Err(malformed());
        }
        let (username, password) = decoded.split_once(':').ok_or_else(malformed)?;
        // The same bounds as the fields of a login (grpc::input).
        if username.chars().count() > 128 || password.chars().count() > 8192 {
            return Err(malformed());
        }
        Ok(Self::from_parts(username, password.to_owned()))
    }

    pub fn from_parts(username: &str, password: String) -> Self {
        if username == API_KEY_USERNAME {
            Self::ApiKey(Secret::new(password))
        } else {
            Self::Password {
                username: username.to_owned(),
                password: Secret::new(password),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!("Basic {}", STANDARD.encode(s))
    }

    #[test]
    fn parses_basic_auth_and_api_key_convention() {
        match Credential::from_authorization(&basic("alice:pa:ss")) {
            Ok(Credential::Password { username, password }) => {
                assert_eq!(username, "alice");
                assert_eq!(password.expose(), "pa:ss");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Credential::from_authorization(&basic("_api_key:abc")),
            Ok(Credential::ApiKey(_))
        ));
        assert!(matches!(
            Credential::from_authorization(&format!("basic {}", STANDARD.encode("a:b"))),
            Ok(Credential::Password { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_unauthenticated() {
        assert!(matches!(
            Credential::from_authorization("Bearer abc.def.ghi"),
            Ok(Credential::Token(_))
        ));
        for bad in [
            "",
            "Basic",
            "Basic !!!",
            &basic("no-colon"),
            "Bearer ",
            "Digest abc",
        ] {
            assert!(
                matches!(
                    Credential::from_authorization(bad),
                    Err(Error::Unauthenticated(_))
                ),
                "{bad}"
            );
        }
    }
}
