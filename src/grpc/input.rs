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

pub use crate::domain::input::{
    CREDENTIAL_MAX_CHARS, DESCRIPTION_MAX_CHARS, EMAIL_MAX_CHARS, Field, Kind,
    LOGIN_PASSWORD_MAX_CHARS, MAX_ITEMS, MAX_ROLES, NAME_MAX_CHARS, PAGE_TOKEN_MAX_CHARS, Rule,
    check,
};
use crate::error::{AuthFailure, Error};

/// The rule of a string field of a request message.
pub fn rule_of(message: &str, field: &str) -> Rule {
    field_of(message, field).rule()
}

/// The kind of a string field of a request message.
fn field_of(message: &str, field: &str) -> Field {
    match (message, field) {
        (_, "authorization" | "api_key" | "token" | "refresh_token") => Field::Credential,
        (_, "current_password") => Field::LoginPassword,
        ("authz.v1.PasswordCredentials", "username") => Field::LoginUsername,
        ("authz.v1.PasswordCredentials", "password") => Field::LoginPassword,
        (_, "password") => Field::NewPassword,
        (_, "description") => Field::Description,
        (_, "email") => Field::Email,
        (m, "name" | "new_name") if m.contains("ApiKey") => Field::ShownName,
        (_, "page_token") => Field::PageToken,
        (_, "sp_entity_id" | "acs_url" | "idp_metadata_url" | "issuer") => Field::Url,
        ("authz.v1.OidcSettings", "client_id" | "client_secret") => Field::Setting,
        ("authz.v1.OidcGrant", "code" | "state") => Field::Credential,
        (_, "relay_state") => Field::Setting,
        (_, "idp_metadata_xml") => Field::Document,
        (_, "saml_response") => Field::SamlResponse,
        _ => Field::Name,
    }
}

/// The most items a repeated field of a request may hold.
pub fn max_items(field: &str) -> usize {
    match field {
        "roles" => MAX_ROLES,
        _ => MAX_ITEMS,
    }
}

#[derive(Debug)]
enum FieldType {
    String(Rule),
    Message(String),
    Other,
}

#[derive(Debug)]
struct WireField {
    name: String,
    repeated: bool,
    max_items: usize,
    ty: FieldType,
}

type Schema = HashMap<String, HashMap<u32, WireField>>;

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
                        let field = WireField {
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
                            Kind::Credential | Kind::EncodedCredential => {
                                Error::Unauthenticated(AuthFailure::Malformed)
                            }
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
        // 51 RPCs; the group members, group grants and user-group mappings
        // requests serve two each.
        assert_eq!(requests().len(), 51);
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
