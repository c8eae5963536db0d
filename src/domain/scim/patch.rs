//! PATCH (RFC 7644 §3.5.2) applied to a resource's JSON representation:
//! the result is then written like a PUT of it, so a PATCH can do nothing
//! a PUT could not.

use scim_v2::filter::{AttrPath, PatchPath};
use scim_v2::models::others::{OperationTarget, PatchOp, PatchOperation};
use serde_json::{Map, Value};

use super::ScimError;
use super::filter::val_matches;

/// Reads a PatchOp body. A `remove` without a path is `noTarget`, as the
/// RFC says; anything else unreadable is `invalidSyntax`.
pub fn read(body: &Value) -> Result<PatchOp, ScimError> {
    if let Some(ops) = super::filter::get_ci(body, "Operations").and_then(Value::as_array) {
        for op in ops {
            let kind = super::filter::get_ci(op, "op").and_then(Value::as_str);
            if kind.is_some_and(|k| k.eq_ignore_ascii_case("remove"))
                && super::filter::get_ci(op, "path").is_none()
            {
                return Err(ScimError::bad(
                    "noTarget",
                    "a remove operation needs a path",
                ));
            }
        }
    }
    let patch: PatchOp = serde_json::from_value(body.clone()).map_err(|e| {
        ScimError::bad(
            "invalidSyntax",
            format!("the body is not a PatchOp: {}", first_line(&e.to_string())),
        )
    })?;
    if patch.operations.is_empty() {
        return Err(ScimError::bad("invalidValue", "Operations is empty"));
    }
    Ok(patch)
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Applies every operation to `resource`, in order.
pub fn apply(patch: &PatchOp, resource: &mut Map<String, Value>) -> Result<(), ScimError> {
    for op in &patch.operations {
        match op {
            PatchOperation::Add(OperationTarget::WithoutPath { value }) => {
                for (name, v) in value {
                    set_attr(resource, &strip_uri(name), v.clone(), true);
                }
            }
            PatchOperation::Replace(OperationTarget::WithoutPath { value }) => {
                for (name, v) in value {
                    set_attr(resource, &strip_uri(name), v.clone(), false);
                }
            }
            PatchOperation::Add(OperationTarget::WithPath { path, value }) => {
                let value = value
                    .clone()
                    .ok_or_else(|| ScimError::bad("invalidValue", "add needs a value"))?;
                at_path(resource, path, Some(value), true)?;
            }
            PatchOperation::Replace(OperationTarget::WithPath { path, value }) => {
                let value = value
                    .clone()
                    .ok_or_else(|| ScimError::bad("invalidValue", "replace needs a value"))?;
                at_path(resource, path, Some(value), false)?;
            }
            PatchOperation::Remove { path, value } => remove(resource, path, value.as_ref())?,
        }
    }
    Ok(())
}

/// A no-path value's member name may carry its schema (Entra's
/// `urn:…:User:active`); a core attribute's is dropped, an extension's
/// kept (it is stored under that name).
fn strip_uri(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((uri, attr)) if super::resources::is_core_schema(uri) => attr.to_owned(),
        _ => name.to_owned(),
    }
}

/// The key `name` has in `object`, whatever its case.
fn key_of(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Sets an attribute: `add` appends to a multi-valued one (without
/// duplicates) and merges into a complex one; `replace` overwrites.
fn set_attr(object: &mut Map<String, Value>, name: &str, value: Value, add: bool) {
    let key = key_of(object, name);
    match (object.get_mut(&key), value) {
        (Some(Value::Array(have)), Value::Array(more)) if add => {
            for v in more {
                if !have.contains(&v) {
                    have.push(v);
                }
            }
        }
        (Some(Value::Object(have)), Value::Object(more)) => {
            for (k, v) in more {
                let k = key_of(have, &k);
                have.insert(k, v);
            }
        }
        (_, value) => {
            object.insert(key, value);
        }
    }
}

fn name_path(attr: &AttrPath) -> Result<(), ScimError> {
    match &attr.uri {
        Some(uri) if !super::resources::is_core_schema(uri) => Err(ScimError::bad(
            "invalidPath",
            format!("attributes of {uri} are not kept here"),
        )),
        _ => Ok(()),
    }
}

fn at_path(
    resource: &mut Map<String, Value>,
    path: &PatchPath,
    value: Option<Value>,
    add: bool,
) -> Result<(), ScimError> {
    let value = value.unwrap_or(Value::Null);
    match path {
        PatchPath::Attr(attr) => {
            name_path(attr)?;
            match &attr.sub_attr {
                None => set_attr(resource, &attr.name, value, add),
                Some(sub) => {
                    let key = key_of(resource, &attr.name);
                    let parent = resource
                        .entry(key)
                        .or_insert_with(|| Value::Object(Map::new()));
                    match parent {
                        Value::Object(object) => set_attr(object, sub, value, add),
                        _ => {
                            return Err(ScimError::bad(
                                "invalidPath",
                                format!("{} has no sub-attributes", attr.name),
                            ));
                        }
                    }
                }
            }
            Ok(())
        }
        PatchPath::Value(vp) => {
            name_path(&vp.attr)?;
            let key = key_of(resource, &vp.attr.name);
            let mut matched = false;
            if let Some(Value::Array(items)) = resource.get_mut(&key) {
                for element in items.iter_mut() {
                    if !val_matches(&vp.filter, element) {
                        continue;
                    }
                    matched = true;
                    match (&vp.sub_attr, element) {
                        (Some(sub), Value::Object(object)) => {
                            set_attr(object, sub, value.clone(), add);
                        }
                        (None, element) => *element = value.clone(),
                        (Some(_), _) => {}
                    }
                }
            }
            if matched {
                return Ok(());
            }
            // Entra adds `emails[type eq "work"].value` for a user with no
            // work address: the element is made from the filter's `eq`.
            if (add || vp.sub_attr.is_some())
                && let Some(mut element) = element_from(&vp.filter)
            {
                match (&vp.sub_attr, &mut element) {
                    (Some(sub), Value::Object(object)) => {
                        object.insert(sub.clone(), value);
                    }
                    _ => element = value,
                }
                set_attr(resource, &vp.attr.name, Value::Array(vec![element]), true);
                return Ok(());
            }
            Err(ScimError::bad(
                "noTarget",
                format!("no element of {} matches the path's filter", vp.attr.name),
            ))
        }
    }
}

/// `type eq "work"` (alone or in an `and`) as `{"type": "work"}`.
fn element_from(filter: &scim_v2::filter::ValFilter) -> Option<Value> {
    use scim_v2::filter::{AttrExp, CompValue, CompareOp, ValFilter};
    let mut object = Map::new();
    let terms: Vec<&ValFilter> = match filter {
        ValFilter::And(items) => items.as_slice().iter().collect(),
        one => vec![one],
    };
    for term in terms {
        match term {
            ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value)) => {
                let value = match value {
                    CompValue::Str(s) => Value::String(s.clone()),
                    CompValue::True => Value::Bool(true),
                    CompValue::False => Value::Bool(false),
                    _ => return None,
                };
                object.insert(path.name.clone(), value);
            }
            _ => return None,
        }
    }
    Some(Value::Object(object))
}

fn remove(
    resource: &mut Map<String, Value>,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match path {
        PatchPath::Attr(attr) => {
            name_path(attr)?;
            let key = key_of(resource, &attr.name);
            match (&attr.sub_attr, value) {
                (None, Some(Value::Array(gone))) => {
                    // Entra removes members by value: `{"path": "members",
                    // "value": [{"value": "id"}]}`.
                    if let Some(Value::Array(items)) = resource.get_mut(&key) {
                        items.retain(|item| {
                            !gone.iter().any(|g| {
                                g == item
                                    || (super::filter::get_ci(g, "value").is_some()
                                        && super::filter::get_ci(g, "value")
                                            == super::filter::get_ci(item, "value"))
                            })
                        });
                    }
                }
                (None, _) => {
                    resource.remove(&key);
                }
                (Some(sub), _) => match resource.get_mut(&key) {
                    Some(Value::Object(object)) => {
                        let sub = key_of(object, sub);
                        object.remove(&sub);
                    }
                    Some(Value::Array(items)) => {
                        for item in items {
                            if let Value::Object(object) = item {
                                let sub = key_of(object, sub);
                                object.remove(&sub);
                            }
                        }
                    }
                    _ => {}
                },
            }
            Ok(())
        }
        PatchPath::Value(vp) => {
            name_path(&vp.attr)?;
            let key = key_of(resource, &vp.attr.name);
            let Some(Value::Array(items)) = resource.get_mut(&key) else {
                return Err(ScimError::bad(
                    "noTarget",
                    format!("{} has no elements", vp.attr.name),
                ));
            };
            let before = items.len();
            match &vp.sub_attr {
                None => items.retain(|e| !val_matches(&vp.filter, e)),
                Some(sub) => {
                    for element in items.iter_mut() {
                        if val_matches(&vp.filter, element)
                            && let Value::Object(object) = element
                        {
                            let sub = key_of(object, sub);
                            object.remove(&sub);
                        }
                    }
                }
            }
            if vp.sub_attr.is_none() && items.len() == before {
                return Err(ScimError::bad(
                    "noTarget",
                    format!("no element of {} matches the path's filter", vp.attr.name),
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(resource: Value, ops: Value) -> Result<Value, ScimError> {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        let patch = read(&body)?;
        let mut object = resource.as_object().cloned().unwrap_or_default();
        apply(&patch, &mut object)?;
        Ok(Value::Object(object))
    }

    #[test]
    fn okta_and_entra_shapes_apply() {
        let user =
            json!({"userName": "b", "active": true, "emails": [{"value": "a@x", "type": "work"}]});
        // Okta: no path.
        let out = patched(
            user.clone(),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .unwrap();
        assert_eq!(out["active"], json!(false));
        // Entra: a path, a string boolean, capitalised op.
        let out = patched(
            user.clone(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(out["active"], json!("False"));
        let out = patched(
            user.clone(),
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@x"}]),
        )
        .unwrap();
        assert_eq!(out["emails"], json!([{"value": "new@x", "type": "work"}]));
        let out = patched(
            user.clone(),
            json!([{"op": "add", "path": "emails[type eq \"home\"].value", "value": "h@x"}]),
        )
        .unwrap();
        assert_eq!(out["emails"].as_array().unwrap().len(), 2);
        let out = patched(
            user.clone(),
            json!([{"op": "add", "path": "name.givenName", "value": "B"}]),
        )
        .unwrap();
        assert_eq!(out["name"], json!({"givenName": "B"}));
        let err = patched(user.clone(), json!([{"op": "remove"}])).unwrap_err();
        assert_eq!(err.scim_type, Some("noTarget"));
        let err = patched(
            user,
            json!([{"op": "replace", "path": "emails[type eq \"fax\"]", "value": {"value": "f"}}]),
        )
        .unwrap_err();
        assert_eq!(err.scim_type, Some("noTarget"));
    }

    #[test]
    fn members_are_added_and_removed_both_ways() {
        let group = json!({"displayName": "g", "members": [{"value": "1"}, {"value": "2"}]});
        let out = patched(
            group.clone(),
            json!([{"op": "add", "path": "members", "value": [{"value": "3"}, {"value": "1"}]}]),
        )
        .unwrap();
        assert_eq!(out["members"].as_array().unwrap().len(), 3);
        let out = patched(
            group.clone(),
            json!([{"op": "remove", "path": "members[value eq \"1\"]"}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "2"}]));
        let out = patched(
            group,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "2"}]}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "1"}]));
    }
}
