//! SCIM filters (RFC 7644 §3.4.2.2) evaluated against a resource's JSON
//! representation. The grammar is `scim_v2`'s parser (depth- and
//! term-bounded); this is only the evaluation, on what the resource
//! would show, so a filter can never see more than a GET would.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

use super::ScimError;

/// Nesting allowed in a filter (parentheses, `not`, value paths); deeper
/// is `invalidFilter`. Providers send one or two levels.
pub const MAX_DEPTH: usize = 8;

/// `text` parsed, within `max_chars` and `MAX_DEPTH`.
pub fn parse(text: &str, max_chars: usize) -> Result<Filter, ScimError> {
    if text.chars().count() > max_chars {
        return Err(ScimError::invalid_filter(format!(
            "the filter is longer than {max_chars} characters"
        )));
    }
    let filter: Filter = text
        .parse()
        .map_err(|_| ScimError::invalid_filter("the filter does not parse"))?;
    if depth(&filter) > MAX_DEPTH {
        return Err(ScimError::invalid_filter(format!(
            "the filter nests deeper than {MAX_DEPTH}"
        )));
    }
    Ok(filter)
}

fn depth(filter: &Filter) -> usize {
    match filter {
        Filter::Attr(_) => 1,
        Filter::ValuePath(path) => 1 + val_depth(&path.filter),
        Filter::Not(inner) => 1 + depth(inner),
        Filter::And(items) | Filter::Or(items) => {
            1 + items.as_slice().iter().map(depth).max().unwrap_or(0)
        }
    }
}

fn val_depth(filter: &ValFilter) -> usize {
    match filter {
        ValFilter::Attr(_) => 1,
        ValFilter::Not(inner) => 1 + val_depth(inner),
        ValFilter::And(items) | ValFilter::Or(items) => {
            1 + items.as_slice().iter().map(val_depth).max().unwrap_or(0)
        }
    }
}

/// The value an `eq` on `attribute` (no sub-attribute) requires, if the
/// filter requires one at its top (alone, or as a term of an `and`): a
/// listing can then be narrowed by an index before the filter runs.
pub fn required_eq<'f>(filter: &'f Filter, attribute: &str) -> Option<&'f str> {
    match filter {
        Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value)))
            if path.sub_attr.is_none() && path.name.eq_ignore_ascii_case(attribute) =>
        {
            Some(value)
        }
        Filter::And(items) => items
            .as_slice()
            .iter()
            .find_map(|f| required_eq(f, attribute)),
        _ => None,
    }
}

/// Whether `resource` (a representation) matches.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::Attr(exp) => attr_matches(exp, resource),
        Filter::ValuePath(path) => elements_of(resource, &path.attr)
            .iter()
            .any(|element| val_matches(&path.filter, element)),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::And(items) => items.as_slice().iter().all(|f| matches(f, resource)),
        Filter::Or(items) => items.as_slice().iter().any(|f| matches(f, resource)),
    }
}

/// Whether an element of a multi-valued attribute matches a value
/// filter (`emails[type eq "work"]`, `members[value eq "…"]`).
pub fn val_matches(filter: &ValFilter, element: &Value) -> bool {
    match filter {
        ValFilter::Attr(exp) => attr_matches(exp, element),
        ValFilter::Not(inner) => !val_matches(inner, element),
        ValFilter::And(items) => items.as_slice().iter().all(|f| val_matches(f, element)),
        ValFilter::Or(items) => items.as_slice().iter().any(|f| val_matches(f, element)),
    }
}

fn attr_matches(exp: &AttrExp, resource: &Value) -> bool {
    match exp {
        AttrExp::Present(path) => values_of(resource, path).iter().any(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        }),
        AttrExp::Comparison(path, op, expected) => {
            let exact = case_exact(path);
            values_of(resource, path)
                .iter()
                .any(|actual| compare(actual, op, expected, exact))
        }
    }
}

/// Identifiers compare exactly; names, addresses and other text without
/// regard to case (RFC 7643's `caseExact` of each attribute).
fn case_exact(path: &AttrPath) -> bool {
    let name = path.sub_attr.as_deref().unwrap_or(&path.name);
    ["id", "externalId", "$ref"]
        .iter()
        .any(|exact| exact.eq_ignore_ascii_case(name))
        || (path.name.eq_ignore_ascii_case("members")
            && path
                .sub_attr
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("value")))
}

/// The values `path` names in `resource`: the attribute's, or its
/// sub-attribute's in each element of a multi-valued one. A multi-valued
/// complex attribute compared without a sub-attribute compares `value`.
pub fn values_of<'v>(resource: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
    if let Some(uri) = &path.uri
        && !super::resources::is_core_schema(uri)
    {
        return Vec::new();
    }
    let Some(top) = get_ci(resource, &path.name) else {
        return Vec::new();
    };
    let elements: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    match &path.sub_attr {
        Some(sub) => elements
            .into_iter()
            .filter_map(|e| get_ci(e, sub))
            .collect(),
        None => elements
            .into_iter()
            .map(|e| match e {
                Value::Object(_) => get_ci(e, "value").unwrap_or(&Value::Null),
                other => other,
            })
            .collect(),
    }
}

/// The elements of the multi-valued attribute `path` names, as they are
/// (a value filter reads their sub-attributes).
fn elements_of<'v>(resource: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
    if let Some(uri) = &path.uri
        && !super::resources::is_core_schema(uri)
    {
        return Vec::new();
    }
    match get_ci(resource, &path.name) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    }
}

/// A member of an object by name, without regard to case (RFC 7643 §2.1).
pub fn get_ci<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn compare(actual: &Value, op: &CompareOp, expected: &CompValue, exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), CompValue::Str(e)) => {
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                CompareOp::Eq => a == e,
                CompareOp::Ne => a != e,
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                CompareOp::Gt => a > e,
                CompareOp::Ge => a >= e,
                CompareOp::Lt => a < e,
                CompareOp::Le => a <= e,
            }
        }
        (Value::Bool(a), CompValue::True | CompValue::False) => {
            let e = matches!(expected, CompValue::True);
            match op {
                CompareOp::Eq => *a == e,
                CompareOp::Ne => *a != e,
                _ => false,
            }
        }
        (Value::Number(a), CompValue::Number(e)) => match (a.as_f64(), e.as_f64()) {
            (Some(a), Some(e)) => match op {
                CompareOp::Eq => a == e,
                CompareOp::Ne => a != e,
                CompareOp::Gt => a > e,
                CompareOp::Ge => a >= e,
                CompareOp::Lt => a < e,
                CompareOp::Le => a <= e,
                _ => false,
            },
            _ => false,
        },
        (Value::Null, CompValue::Null) => matches!(op, CompareOp::Eq),
        (_, CompValue::Null) => matches!(op, CompareOp::Ne),
        _ => matches!(op, CompareOp::Ne),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "A1", "userName": "Bjensen@Example.com", "externalId": "ext-1",
            "active": true, "displayName": "Babs",
            "emails": [{"value": "b@work.example", "type": "work"}, {"value": "b@home.example", "type": "home"}],
            "name": {"givenName": "Barbara"}
        })
    }

    fn check(text: &str) -> bool {
        matches(&parse(text, 1000).unwrap(), &user())
    }

    #[test]
    fn what_providers_send_matches_as_the_rfc_says() {
        assert!(check(r#"userName eq "bjensen@example.com""#));
        assert!(
            !check(r#"externalId eq "EXT-1""#),
            "externalId is case-exact"
        );
        assert!(check(
            r#"externalId eq "ext-1" and userName eq "BJENSEN@example.com""#
        ));
        assert!(!check(r#"externalId eq "ext-1" and userName eq "other""#));
        assert!(check(r#"emails[type eq "work" and value co "@work"]"#));
        assert!(!check(r#"emails[type eq "work" and value co "@home"]"#));
        assert!(check(r#"emails.value ew "home.example""#));
        assert!(check(r#"emails eq "b@home.example""#));
        assert!(check(r#"name.givenName sw "bar" and active eq true"#));
        assert!(check(r#"not (active eq false)"#));
        assert!(check(r#"title pr or displayName pr"#));
        assert!(!check(r#"title pr"#));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bjensen""#
        ));
    }

    #[test]
    fn bounds_and_garbage_are_invalid_filters() {
        assert_eq!(
            parse("userName garbage", 100).unwrap_err().scim_type,
            Some("invalidFilter")
        );
        let long = format!(r#"userName eq "{}""#, "x".repeat(200));
        assert_eq!(
            parse(&long, 100).unwrap_err().scim_type,
            Some("invalidFilter")
        );
        let deep = format!("{}userName pr{}", "not (".repeat(9), ")".repeat(9));
        assert!(parse(&deep, 1000).is_err());
        let fine = format!("{}userName pr{}", "not (".repeat(3), ")".repeat(3));
        assert!(parse(&fine, 1000).is_ok());
    }

    #[test]
    fn an_eq_at_the_top_narrows() {
        let f = parse(r#"displayName eq "x" and externalId eq "e""#, 100).unwrap();
        assert_eq!(required_eq(&f, "externalid"), Some("e"));
        let f = parse(r#"displayName eq "x" or externalId eq "e""#, 100).unwrap();
        assert_eq!(required_eq(&f, "externalId"), None);
    }
}
