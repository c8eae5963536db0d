//! SCIM representations of authzd's users and groups, and what a
//! provider's document asks them to become.
//!
//! authzd keeps what checks read (the user, their state, the group and
//! its members) in its own tables; everything else the provider sends
//! (name, display name, emails, an extension) is kept as sent beside it
//! and shown back, so what a provider writes it reads.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::ScimError;
use crate::model::{Group, User, UserState};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The most a provider's profile of one user or group may hold.
const MAX_PROFILE_BYTES: usize = 64 * 1024;

pub fn is_core_schema(uri: &str) -> bool {
    uri.eq_ignore_ascii_case(USER_SCHEMA) || uri.eq_ignore_ascii_case(GROUP_SCHEMA)
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A weak entity tag of the representation (meta.version aside): it
/// changes whenever anything shown changes.
fn etag(representation: &Value) -> String {
    let digest = Sha256::digest(representation.to_string().as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

fn profile_of(text: Option<&str>) -> Map<String, Value> {
    text.and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
        .unwrap_or_default()
}

fn finish(mut object: Map<String, Value>, meta: Map<String, Value>) -> Value {
    object.insert("meta".into(), Value::Object(meta));
    let tag = etag(&Value::Object(object.clone()));
    if let Some(Value::Object(meta)) = object.get_mut("meta") {
        meta.insert("version".into(), tag.into());
    }
    Value::Object(object)
}

fn schemas_with_extensions(core: &str, profile: &Map<String, Value>) -> Value {
    let mut schemas = vec![Value::String(core.to_owned())];
    schemas.extend(
        profile
            .keys()
            .filter(|k| k.starts_with("urn:"))
            .map(|k| Value::String(k.clone())),
    );
    Value::Array(schemas)
}

pub fn user(user: &User, external_id: Option<&str>, profile: Option<&str>, base: &str) -> Value {
    let mut object = profile_of(profile);
    object.insert(
        "schemas".into(),
        schemas_with_extensions(USER_SCHEMA, &object),
    );
    object.insert("id".into(), user.id.to_string().into());
    object.insert("userName".into(), user.username.clone().into());
    object.insert("active".into(), (user.state == UserState::Enabled).into());
    if let Some(external) = external_id {
        object.insert("externalId".into(), external.into());
    }
    let mut meta = Map::new();
    meta.insert("resourceType".into(), "User".into());
    meta.insert("created".into(), time(user.created_at).into());
    meta.insert("lastModified".into(), time(user.updated_at).into());
    meta.insert(
        "location".into(),
        format!("{base}/Users/{}", user.id).into(),
    );
    finish(object, meta)
}

/// A member as a group shows it.
pub struct Member {
    pub id: uuid::Uuid,
}

pub fn group(
    group: &Group,
    members: &[Member],
    external_id: Option<&str>,
    profile: Option<&str>,
    base: &str,
) -> Value {
    let mut object = profile_of(profile);
    object.insert(
        "schemas".into(),
        schemas_with_extensions(GROUP_SCHEMA, &object),
    );
    object.insert("id".into(), group.id.to_string().into());
    object.insert("displayName".into(), group.name.clone().into());
    if let Some(external) = external_id {
        object.insert("externalId".into(), external.into());
    }
    if !members.is_empty() {
        let listed: Vec<Value> = members
            .iter()
            .map(|m| {
                // No `display`: RFC 7643's Group schema has none for
                // members, and strict clients refuse what it lacks.
                json!({
                    "value": m.id.to_string(),
                    "type": "User",
                    "$ref": format!("{base}/Users/{}", m.id),
                })
            })
            .collect();
        object.insert("members".into(), Value::Array(listed));
    }
    let mut meta = Map::new();
    meta.insert("resourceType".into(), "Group".into());
    meta.insert("created".into(), time(group.created_at).into());
    meta.insert("lastModified".into(), time(group.updated_at).into());
    meta.insert(
        "location".into(),
        format!("{base}/Groups/{}", group.id).into(),
    );
    finish(object, meta)
}

/// The representation as the client asked for it: `attributes` keeps
/// only those named (and `id`, `schemas`, `meta`), `excludedAttributes`
/// drops those named.
pub fn project(mut resource: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|n| {
                let n = n.trim();
                // `name.givenName` keeps `name`; a URN-prefixed core name
                // is the attribute.
                let n = match n.rsplit_once(':') {
                    Some((uri, attr)) if is_core_schema(uri) => attr,
                    _ => n,
                };
                n.split('.').next().unwrap_or(n).to_lowercase()
            })
            .filter(|n| !n.is_empty())
            .collect()
    };
    if let Value::Object(object) = &mut resource {
        if let Some(list) = attributes.filter(|l| !l.trim().is_empty()) {
            let keep = names(list);
            object.retain(|k, _| {
                let k = k.to_lowercase();
                ["id", "schemas", "meta"].contains(&k.as_str()) || keep.contains(&k)
            });
        } else if let Some(list) = excluded {
            let drop = names(list);
            object.retain(|k, _| {
                let k = k.to_lowercase();
                ["id", "schemas", "meta"].contains(&k.as_str()) || !drop.contains(&k)
            });
        }
    }
    resource
}

/// What a user document asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDoc {
    pub user_name: String,
    pub external_id: Option<String>,
    /// `None`: not asserted (a created user is active; a changed one
    /// keeps their state: removing `active` never re-enables anyone).
    pub active: Option<bool>,
    /// Everything else, as sent; `None` when nothing.
    pub profile: Option<String>,
}

fn object_of(body: &Value) -> Result<&Map<String, Value>, ScimError> {
    body.as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "the body is not a JSON object"))
}

fn string_of(value: &Value, field: &str) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{field} must be a string"),
        )),
    }
}

fn profile_text(profile: Map<String, Value>) -> Result<Option<String>, ScimError> {
    if profile.is_empty() {
        return Ok(None);
    }
    let text = Value::Object(profile).to_string();
    if text.len() > MAX_PROFILE_BYTES {
        return Err(ScimError::bad(
            "invalidValue",
            format!("the attributes beside the ones authzd reads exceed {MAX_PROFILE_BYTES} bytes"),
        ));
    }
    Ok(Some(text))
}

/// A boolean as providers send it: Entra sends `"False"`.
fn boolean(value: &Value, field: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{field} must be true or false"),
        )),
    }
}

/// Checks the types of the profile attributes the schema publishes.
fn check_profile_types(name: &str, value: &Value) -> Result<(), ScimError> {
    let ok = match name.to_lowercase().as_str() {
        "displayname" | "nickname" | "title" | "locale" | "timezone" | "usertype"
        | "preferredlanguage" | "profileurl" => value.is_string() || value.is_null(),
        "name" => value.is_object() || value.is_null(),
        "emails" | "phonenumbers" | "addresses" => value.is_array() || value.is_null(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ScimError::bad(
            "invalidValue",
            format!("{name} has the wrong type"),
        ))
    }
}

pub fn user_doc(body: &Value) -> Result<UserDoc, ScimError> {
    let mut user_name = None;
    let mut external_id = None;
    let mut active = None;
    let mut profile = Map::new();
    for (name, value) in object_of(body)? {
        match name.to_lowercase().as_str() {
            // Server-assigned, derived, or never kept.
            "schemas" | "id" | "meta" | "groups" | "password" => {}
            "username" => user_name = string_of(value, "userName")?,
            "externalid" => external_id = string_of(value, "externalId")?,
            "active" => {
                if !value.is_null() {
                    active = Some(boolean(value, "active")?);
                }
            }
            _ => {
                check_profile_types(name, value)?;
                if !value.is_null() {
                    profile.insert(name.clone(), value.clone());
                }
            }
        }
    }
    let user_name = user_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    Ok(UserDoc {
        user_name,
        external_id,
        active,
        profile: profile_text(profile)?,
    })
}

/// What a group document asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDoc {
    pub display_name: String,
    pub external_id: Option<String>,
    /// Member ids as sent; `None` when the document names no `members`.
    pub members: Option<Vec<String>>,
    pub profile: Option<String>,
}

pub fn group_doc(body: &Value) -> Result<GroupDoc, ScimError> {
    let mut display_name = None;
    let mut external_id = None;
    let mut members = None;
    let mut profile = Map::new();
    for (name, value) in object_of(body)? {
        match name.to_lowercase().as_str() {
            "schemas" | "id" | "meta" => {}
            "displayname" => display_name = string_of(value, "displayName")?,
            "externalid" => external_id = string_of(value, "externalId")?,
            "members" => {
                let list = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .map(|m| {
                            super::filter::get_ci(m, "value")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .ok_or_else(|| {
                                    ScimError::bad("invalidValue", "members[].value is required")
                                })
                        })
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(ScimError::bad("invalidValue", "members must be a list"));
                    }
                };
                members = Some(list);
            }
            _ => {
                if !value.is_null() {
                    profile.insert(name.clone(), value.clone());
                }
            }
        }
    }
    let display_name = display_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    Ok(GroupDoc {
        display_name,
        external_id,
        members,
        profile: profile_text(profile)?,
    })
}

/// The attributes published in `/Schemas`: RFC 7643's definitions of
/// those authzd keeps and shows back.
const USER_ATTRIBUTES: [&str; 5] = ["userName", "name", "displayName", "emails", "active"];
const GROUP_ATTRIBUTES: [&str; 2] = ["displayName", "members"];

/// `/Schemas`: the User and Group schemas, trimmed to what is kept.
/// `userName` is immutable: it names the user everywhere in authzd (keys,
/// grants, the audit trail).
pub fn schemas(base: &str) -> Result<Vec<Value>, ScimError> {
    let read = scim_v2::models::scim_schema::get_schemas(vec!["user", "group"])
        .map_err(|e| ScimError::from(crate::error::Error::internal(e.to_string())))?;
    let mut out = Vec::new();
    for schema in read {
        let mut value = serde_json::to_value(&schema)
            .map_err(|e| ScimError::from(crate::error::Error::internal(e.to_string())))?;
        let id = value["id"].as_str().unwrap_or_default().to_owned();
        let keep: &[&str] = if id == USER_SCHEMA {
            &USER_ATTRIBUTES
        } else {
            &GROUP_ATTRIBUTES
        };
        if let Some(Value::Array(attributes)) = value.get_mut("attributes") {
            attributes.retain(|a| a["name"].as_str().is_some_and(|n| keep.contains(&n)));
            for attribute in attributes.iter_mut() {
                if attribute["name"] == "userName" {
                    attribute["mutability"] = "immutable".into();
                }
                // A group's name is its displayName: authzd needs one.
                if id == GROUP_SCHEMA && attribute["name"] == "displayName" {
                    attribute["required"] = true.into();
                }
            }
        }
        value["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]);
        value["meta"] = json!({
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{id}"),
        });
        out.push(value);
    }
    Ok(out)
}

pub fn resource_types(base: &str) -> Vec<Value> {
    [("User", "/Users", USER_SCHEMA), ("Group", "/Groups", GROUP_SCHEMA)]
        .into_iter()
        .map(|(name, endpoint, schema)| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": name,
                "name": name,
                "endpoint": endpoint,
                "description": format!("{name}s of this identity provider"),
                "schema": schema,
                "schemaExtensions": [],
                "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")},
            })
        })
        .collect()
}

pub fn service_provider_config(base: &str, max_results: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token made by IdentityProviderService/CreateScimToken for this identity provider",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}
