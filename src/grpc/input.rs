//! One validation of every string a request carries, by one rule table,
//! before anything else is done with the request (before authentication,
//! permission checks and any database read).
//!
//! The codec hands each request's bytes to `check_request` before decoding
//! them. It walks the protobuf wire format with the message's descriptor,
//! so every string field of every request message, nested and repeated
//! ones included, is checked whether or not a handler remembers to: a new
//! field is covered the day it is added. `docs/security.md` lists the rules.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use tonic::Status;

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
/// Items in a repeated field (`actions` has a lower setting on top).
pub const MAX_ITEMS: usize = 1000;
/// Roles given to a new user.
pub const MAX_ROLES: usize = 100;

/// The rule of a string field of a request message.
pub fn rule_of(message: &str, field: &str) -> Rule {
    match (message, field) {
        (_, "authorization" | "api_key" | "token" | "refresh_token") => {
            rule(Kind::Credential, CREDENTIAL_MAX_CHARS)
        }
        (_, "current_password") => rule(Kind::Credential, LOGIN_PASSWORD_MAX_CHARS),
        ("authz.v1.PasswordCredentials", "username") => rule(Kind::Credential, NAME_MAX_CHARS),
        ("authz.v1.PasswordCredentials", "password") => {
            rule(Kind::Credential, LOGIN_PASSWORD_MAX_CHARS)
        }
        (_, "password") => rule(Kind::NewPassword, crate::domain::users::PASSWORD_MAX_CHARS),
        (_, "description") => rule(Kind::FreeText, DESCRIPTION_MAX_CHARS),
        (_, "email") => rule(Kind::FreeText, EMAIL_MAX_CHARS),
        (m, "name" | "new_name") if m.contains("ApiKey") => rule(Kind::FreeText, NAME_MAX_CHARS),
        (_, "page_token") => rule(Kind::Text, PAGE_TOKEN_MAX_CHARS),
        _ => rule(Kind::Text, NAME_MAX_CHARS),
    }
}

/// The most items a repeated field of a request may hold.
pub fn max_items(field: &str) -> usize {
    match field {
        "roles" => MAX_ROLES,
        _ => MAX_ITEMS,
    }
}

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
        Kind::Credential => Error::Unauthenticated(AuthFailure::Malformed),
        _ => Error::invalid(field, reason),
    };
    // Bytes first: a 3 MB value is refused without counting its characters.
    if value.len() > rule.max_chars * 4 || value.chars().count() > rule.max_chars {
        return Err(refuse(&format!(
            "must be at most {} characters",
            rule.max_chars
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(refuse("must not contain control characters"));
    }
    if rule.kind == Kind::FreeText && value.chars().any(deceptive) {
        return Err(refuse(
            "must not contain bidirectional-override or zero-width characters",
        ));
    }
    Ok(())
}

#[derive(Debug)]
enum FieldType {
    String(Rule),
    Message(String),
    Other,
}

#[derive(Debug)]
struct Field {
    name: String,
    repeated: bool,
    max_items: usize,
    ty: FieldType,
}

type Schema = HashMap<String, HashMap<u32, Field>>;

/// Every message of the descriptor set, by full name.
fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = Schema::new();
        let Ok(set) = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET) else {
            return schema;
        };
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                let full = format!("{package}.{}", message.name());
                let fields = message
                    .field
                    .iter()
                    .map(|f| {
                        let ty = match f.r#type() {
                            Type::String => FieldType::String(rule_of(&full, f.name())),
                            Type::Message => {
                                FieldType::Message(f.type_name().trim_start_matches('.').to_owned())
                            }
                            _ => FieldType::Other,
                        };
                        let field = Field {
                            name: f.name().to_owned(),
                            repeated: f.label() == Label::Repeated,
                            max_items: max_items(f.name()),
                            ty,
                        };
                        (u32::try_from(f.number()).unwrap_or(0), field)
                    })
                    .collect();
                schema.insert(full, fields);
            }
        }
        schema
    })
}

/// The package of authzd's own messages.
const PACKAGE: &str = "authz.v1";

/// The request messages, the input of every method of every service: by
/// name within `PACKAGE`, to their full name (no allocation per request).
fn requests() -> &'static HashMap<String, String> {
    static REQUESTS: OnceLock<HashMap<String, String>> = OnceLock::new();
    REQUESTS.get_or_init(|| {
        prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .map(|set| {
                set.file
                    .iter()
                    .flat_map(|f| &f.service)
                    .flat_map(|s| &s.method)
                    .filter_map(|m| {
                        let full = m.input_type().trim_start_matches('.');
                        let name = full.strip_prefix(PACKAGE)?.strip_prefix('.')?;
                        Some((name.to_owned(), full.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Checks every string of a request message (`package`.`name`), given its
/// encoding. Messages that are not requests (replies decoded by clients)
/// pass unchecked.
pub fn check_request(package: &str, name: &str, bytes: &[u8]) -> Result<(), Status> {
    if package != PACKAGE {
        return Ok(());
    }
    let Some(message) = requests().get(name) else {
        return Ok(());
    };
    match walk(schema(), message, bytes, "", 0) {
        Ok(()) => Ok(()),
        Err(Error::Unauthenticated(reason)) => Err(super::context::refuse(reason)),
        Err(err) => Err(err.into()),
    }
}

fn malformed(message: &str) -> Error {
    Error::invalid("request", format!("not a valid {message} message"))
}

fn walk(
    schema: &Schema,
    message: &str,
    mut buf: &[u8],
    prefix: &str,
    depth: u32,
) -> Result<(), Error> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let Some(fields) = schema.get(message) else {
        return Ok(());
    };
    if depth > 8 {
        return Err(malformed(message));
    }
    let mut counts: Vec<(u32, usize)> = Vec::new();
    while !buf.is_empty() {
        let (number, wire) = decode_key(&mut buf).map_err(|_| malformed(message))?;
        let field = fields.get(&number);
        match wire {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(|_| malformed(message))?;
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                buf = buf.get(n..).ok_or_else(|| malformed(message))?;
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(|_| malformed(message))?;
                let len = usize::try_from(len).map_err(|_| malformed(message))?;
                let value = buf.get(..len).ok_or_else(|| malformed(message))?;
                buf = &buf[len..];
                let Some(field) = field else { continue };
                let path = if field.repeated {
                    let count = match counts.iter_mut().find(|(n, _)| *n == number) {
                        Some((_, c)) => {
                            *c += 1;
                            *c
                        }
                        None => {
                            counts.push((number, 1));
                            1
                        }
                    };
                    if count > field.max_items {
                        return Err(Error::invalid(
                            format!("{prefix}{}", field.name),
                            format!("at most {} items", field.max_items),
                        ));
                    }
                    format!("{prefix}{}[{}]", field.name, count - 1)
                } else {
                    format!("{prefix}{}", field.name)
                };
                match &field.ty {
                    FieldType::String(rule) => {
                        let text = std::str::from_utf8(value).map_err(|_| match rule.kind {
                            Kind::Credential => Error::Unauthenticated(AuthFailure::Malformed),
                            _ => Error::invalid(&path, "must be UTF-8"),
                        })?;
                        check(&path, text, *rule)?;
                    }
                    FieldType::Message(name) => {
                        walk(schema, name, value, &format!("{path}."), depth + 1)?;
                    }
                    FieldType::Other => {}
                }
            }
            _ => return Err(malformed(message)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_string(number: u32, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(value.len() as u64, &mut out);
        out.extend_from_slice(value);
        out
    }

    fn code(message: &str, bytes: &[u8]) -> Option<(tonic::Code, String)> {
        let name = message.strip_prefix("authz.v1.").unwrap();
        check_request("authz.v1", name, bytes)
            .err()
            .map(|s| (s.code(), s.message().to_owned()))
    }

    #[test]
    fn every_kind_of_string_is_checked() {
        // CreateUserRequest: account 1, username 2, password 3, roles 6.
        let msg = "authz.v1.CreateUserRequest";
        assert_eq!(code(msg, &encode_string(2, b"alice")), None);
        let (c, m) = code(msg, &encode_string(2, b"al\0ice")).unwrap();
        assert_eq!(c, tonic::Code::InvalidArgument);
        assert!(m.starts_with("username:"), "{m}");
        let mut roles = Vec::new();
        roles.extend(encode_string(6, b"read-only"));
        roles.extend(encode_string(6, b"x\x07"));
        let (_, m) = code(msg, &roles).unwrap();
        assert!(m.starts_with("roles[1]:"), "{m}");
        let (_, m) = code(msg, &encode_string(3, b"pass\nword")).unwrap();
        assert!(m.starts_with("password:"), "{m}");
        assert_eq!(code(msg, &encode_string(3, "pässwörd 🙂".as_bytes())), None);
        let (c, _) = code(msg, &encode_string(2, &[0xff, 0xfe])).unwrap();
        assert_eq!(c, tonic::Code::InvalidArgument);
        let (_, m) = code(msg, &encode_string(2, "a".repeat(3_000_000).as_bytes())).unwrap();
        assert!(m.len() < 100, "{m}");
    }

    #[test]
    fn credentials_being_checked_are_unauthenticated_and_nested_fields_are_walked() {
        // AuthenticateRequest: authorization 1, password 2 (PasswordCredentials).
        let msg = "authz.v1.AuthenticateRequest";
        let (c, _) = code(msg, &encode_string(1, b"Basic \0")).unwrap();
        assert_eq!(c, tonic::Code::Unauthenticated);
        let nested = encode_string(2, &encode_string(1, b"x\0y"));
        let (c, _) = code(msg, &nested).unwrap();
        assert_eq!(c, tonic::Code::Unauthenticated);
    }

    #[test]
    fn free_text_refuses_deceptive_characters_and_names_do_not_need_to() {
        // CreateAccountRequest: name 1, email 2.
        let msg = "authz.v1.CreateAccountRequest";
        let (_, m) = code(msg, &encode_string(2, "a\u{202E}b@c".as_bytes())).unwrap();
        assert!(m.starts_with("email:"), "{m}");
        let (_, m) = code(msg, &encode_string(2, &vec![b'a'; 255])).unwrap();
        assert!(m.contains("254"), "{m}");
    }

    #[test]
    fn every_request_of_every_service_is_known() {
        // 41 RPCs; the group members and grants requests serve two each.
        assert_eq!(requests().len(), 39);
        assert!(requests().values().all(|m| schema().contains_key(m)));
    }

    #[test]
    fn garbage_is_invalid_argument() {
        let (c, _) = code("authz.v1.CreateUserRequest", &[0x0a, 0xff]).unwrap();
        assert_eq!(c, tonic::Code::InvalidArgument);
        let (c, _) = code("authz.v1.CreateUserRequest", &[0x0b]).unwrap();
        assert_eq!(c, tonic::Code::InvalidArgument);
    }
}
