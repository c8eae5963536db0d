//! The API key value: `<prefix>_<id>_<secret>_<checksum>`.
//!
//! - prefix: configurable, `[a-z][a-z0-9]{1,15}`, so secret scanners can match keys;
//! - id: 12 base62 characters, public, locating the row with one indexed lookup;
//! - secret: 43 base62 characters (256 bits) from the OS-seeded CSPRNG;
//! - checksum: CRC-32 of everything before it, as 6 base62 characters, so a
//!   mistyped or invented key is refused without touching the database.
//!
//! Regex: `^[a-z][a-z0-9]{1,15}_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$`

use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::secret::Secret;
use crate::error::{AuthFailure, Error, Result};

pub const ID_CHARS: usize = 12;
pub const SECRET_CHARS: usize = 43;
pub const CHECKSUM_CHARS: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Domain separation for the stored hash; not a secret.
const HASH_KEY: &[u8] = b"authzd/api-key/v1";

pub fn valid_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    (2..=16).contains(&prefix.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn is_base62(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A freshly minted key: its public id and the value shown once.
pub struct NewKey {
    pub key_id: String,
    pub value: Secret,
    pub secret_hash: String,
    pub last_four: String,
}

/// The value for these parts, checksum included.
pub fn assemble(prefix: &str, key_id: &str, secret: &str) -> String {
    let body = format!("{prefix}_{key_id}_{secret}");
    let sum = checksum(&body);
    format!("{body}_{sum}")
}

pub fn generate(prefix: &str) -> NewKey {
    let key_id = Alphanumeric.sample_string(&mut rand::rng(), ID_CHARS);
    regenerate(prefix, &key_id)
}

/// A new secret for an existing key id (a rotation).
pub fn regenerate(prefix: &str, key_id: &str) -> NewKey {
    let key_id = key_id.to_owned();
    let secret = Alphanumeric.sample_string(&mut rand::rng(), SECRET_CHARS);
    let value = assemble(prefix, &key_id, &secret);
    let last_four = value[value.len() - 4..].to_owned();
    NewKey {
        secret_hash: hash_secret(&key_id, &secret),
        key_id,
        value: Secret::new(value),
        last_four,
    }
}

/// A value that has the right shape and checksum.
pub struct ParsedKey<'a> {
    pub prefix: &'a str,
    pub key_id: &'a str,
    secret: &'a str,
}

/// Checks shape and checksum only: no database, no hashing.
pub fn parse(value: &str) -> Result<ParsedKey<'_>> {
    let malformed = || Error::Unauthenticated(AuthFailure::Malformed);
    let (body, sum) = value.rsplit_once('_').ok_or_else(malformed)?;
    let mut parts = body.split('_');
    let (Some(prefix), Some(key_id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if !valid_prefix(prefix)
        || !is_base62(key_id, ID_CHARS)
        || !is_base62(secret, SECRET_CHARS)
        || !is_base62(sum, CHECKSUM_CHARS)
    {
        return Err(malformed());
    }
    if !bool::from(checksum(body).as_bytes().ct_eq(sum.as_bytes())) {
        return Err(Error::Unauthenticated(AuthFailure::BadChecksum));
    }
    Ok(ParsedKey {
        prefix,
        key_id,
        secret,
    })
}

/// HMAC-SHA-256 of the id and secret. A fast hash is right for a 256-bit
/// random secret: there is nothing to brute-force.
fn digest(key_id: &str, secret: &str) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(HASH_KEY) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return [0; 32],
    };
    mac.update(key_id.as_bytes());
    mac.update(b":");
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The stored form of a digest: lowercase hex.
fn hash_secret(key_id: &str, secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest(key_id, secret) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

pub use crate::model::secret::stored_digest;

impl ParsedKey<'_> {
    /// Constant-time comparison with the stored digest.
    pub fn matches(&self, stored: &[u8; 32]) -> bool {
        same(&self.digest(), stored)
    }

    /// The digest of the presented value, to compare with more than one
    /// stored digest (a rotated key's two) for the cost of one HMAC.
    pub fn digest(&self) -> [u8; 32] {
        digest(self.key_id, self.secret)
    }
}

/// Constant-time equality of two digests.
pub fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_ok(value: &str) -> bool {
        let parts: Vec<_> = value.split('_').collect();
        parts.len() == 4
            && valid_prefix(parts[0])
            && is_base62(parts[1], ID_CHARS)
            && is_base62(parts[2], SECRET_CHARS)
            && is_base62(parts[3], CHECKSUM_CHARS)
    }

    #[test]
    fn generated_keys_parse_and_match_their_hash() {
        let key = generate("azk");
        let value = key.value.expose();
        assert!(shape_ok(value), "{value}");
        assert!(value.ends_with(&key.last_four));
        let parsed = parse(value).unwrap();
        assert_eq!(parsed.key_id, key.key_id);
        let stored = stored_digest(&key.secret_hash).unwrap();
        assert!(parsed.matches(&stored));
        assert!(!parsed.matches(&stored_digest(&generate("azk").secret_hash).unwrap()));
        assert_eq!(stored_digest(""), None);
        assert_eq!(stored_digest(&"x".repeat(64)), None);
    }

    #[test]
    fn one_flipped_character_fails_the_checksum_without_the_database() {
        let key = generate("azk");
        let value = key.value.expose();
        // Flip each character of the id and secret in turn: the checksum
        // (not a lookup) refuses every one.
        for i in 4..value.len() - CHECKSUM_CHARS - 1 {
            let mut bytes = value.as_bytes().to_vec();
            if bytes[i] == b'_' {
                continue;
            }
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let flipped = String::from_utf8(bytes).unwrap();
            assert!(
                matches!(
                    parse(&flipped),
                    Err(Error::Unauthenticated(AuthFailure::BadChecksum))
                ),
                "position {i}"
            );
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "azk",
            "azk_abc_def_ghi",
            "AZK_000000000000_x_000000",
            "a_b_c_d_e",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(Error::Unauthenticated(AuthFailure::Malformed))
                ),
                "{bad}"
            );
        }
        assert!(valid_prefix("azk"));
        assert!(valid_prefix("acme2"));
        assert!(!valid_prefix("a"));
        assert!(!valid_prefix("Azk"));
        assert!(!valid_prefix("a_k"));
    }
}
