//! The route table: which operation (and so which action) an HTTP request
//! is. Loaded once at start-up from the built-in Anchore table and an
//! optional operator file of the same columns.

use std::collections::HashMap;

use super::super::catalog::Catalog;

/// The built-in table: Anchore's REST surface.
pub const ANCHORE_ROUTES: &str = include_str!("anchore-routes.tsv");

const COLUMNS: [&str; 9] = [
    "method",
    "path",
    "operation_id",
    "action",
    "accepts_x_anchore_account",
    "tag",
    "access",
    "account_param",
    "user_param",
];

/// How an operation is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The action, in the operation's account.
    Action(String),
    /// The action, in the system domain: what the RPC making the same
    /// change decides there (account state, for one), whatever account
    /// the path names.
    System(String),
    /// No credentials needed.
    Public,
    /// Any authenticated caller.
    Authenticated,
    /// Changing one's own password: not with an API key (like SetPassword).
    PasswordChange,
    /// Global administrators only.
    Admin,
    /// The caller named by the user parameter, or a global administrator.
    AdminOrSelf,
    /// Never through this gate.
    Denied,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    pub template: String,
    pub id: String,
    pub access: Access,
    pub accepts_account_header: bool,
    /// The path parameter naming the account the action is decided in.
    pub account_param: Option<String>,
    /// The path parameter naming the user the action acts on.
    pub user_param: Option<String>,
    /// The template's parameter names, in order.
    params: Vec<String>,
}

/// An operation matched by a request, with its path parameters.
pub struct Matched<'a> {
    pub operation: &'a Operation,
    values: Vec<String>,
}

impl Matched<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        let i = self.operation.params.iter().position(|p| p == name)?;
        self.values.get(i).map(String::as_str)
    }
}

pub struct Routes {
    operations: Vec<Operation>,
    by_method: HashMap<String, matchit::Router<usize>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Routes({} operations)", self.operations.len())
    }
}

fn is_method(m: &str) -> bool {
    !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase())
}

/// `/a/{x}/b/{y}` → (`/a/{p0}/b/{p1}`, [x, y]): the router wants one
/// parameter name per position, the tables name them per operation.
fn positional(template: &str) -> Result<(String, Vec<String>), String> {
    if !template.starts_with('/') {
        return Err("must start with /".into());
    }
    let mut params = Vec::new();
    let mut out = String::with_capacity(template.len());
    for (i, segment) in template.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("bad parameter {segment}"));
            }
            out.push_str(&format!("{{p{}}}", params.len()));
            params.push(name.to_owned());
        } else if segment.contains(['{', '}', '*']) {
            return Err(format!("a parameter must be a whole segment: {segment}"));
        } else {
            out.push_str(segment);
        }
    }
    Ok((out, params))
}

fn flag(value: &str) -> Result<bool, String> {
    match value {
        "True" | "true" => Ok(true),
        "False" | "false" | "" => Ok(false),
        other => Err(format!(
            "accepts_x_anchore_account: {other:?} is not True or False"
        )),
    }
}

/// Parses a table; `origin` names it in errors. Lines starting with `#`
/// and the header line are skipped.
pub fn parse(text: &str, origin: &str, catalog: &Catalog) -> Result<Vec<Operation>, String> {
    let mut operations = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("{origin}:{}: {e}", n + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.first() == Some(&"method") {
            if cells != COLUMNS {
                return Err(at(format!("the columns must be {}", COLUMNS.join(", "))));
            }
            continue;
        }
        let [
            method,
            path,
            id,
            action,
            accepts,
            _tag,
            access,
            account_param,
            user_param,
        ] = cells[..]
        else {
            return Err(at(format!(
                "expected {} tab-separated columns",
                COLUMNS.len()
            )));
        };
        if !is_method(method) {
            return Err(at(format!(
                "method {method:?} must be an upper-case HTTP method"
            )));
        }
        let (_, params) = positional(path).map_err(|e| at(format!("path {path:?}: {e}")))?;
        let access = match access {
            "action" => {
                if catalog.scope(action).is_none() {
                    return Err(at(format!("action {action:?} is not in the action table")));
                }
                Access::Action(action.to_owned())
            }
            "system" => {
                if catalog.scope(action).is_none() {
                    return Err(at(format!("action {action:?} is not in the action table")));
                }
                Access::System(action.to_owned())
            }
            "public" => Access::Public,
            "authenticated" => Access::Authenticated,
            "password_change" => Access::PasswordChange,
            "admin" => Access::Admin,
            "admin_or_self" => Access::AdminOrSelf,
            "denied" => Access::Denied,
            other => {
                return Err(at(format!(
                    "access {other:?} is not one of action, system, public, authenticated, password_change, admin, admin_or_self, denied"
                )));
            }
        };
        let param = |column: &str, value: &str| -> Result<Option<String>, String> {
            if value.is_empty() {
                return Ok(None);
            }
            if !params.iter().any(|p| p == value) {
                return Err(at(format!(
                    "{column} {value:?} is not a parameter of {path}"
                )));
            }
            Ok(Some(value.to_owned()))
        };
        let account_param = param("account_param", account_param)?;
        let user_param = param("user_param", user_param)?;
        if access == Access::AdminOrSelf && user_param.is_none() {
            return Err(at("admin_or_self needs a user_param".into()));
        }
        operations.push(Operation {
            method: method.to_owned(),
            template: path.to_owned(),
            id: id.to_owned(),
            access,
            accepts_account_header: flag(accepts).map_err(at)?,
            account_param,
            user_param,
            params,
        });
    }
    Ok(operations)
}

impl Routes {
    /// Later operations replace earlier ones of the same method and path
    /// (an operator file overrides the built-in rows it repeats).
    pub fn new(operations: Vec<Operation>) -> Result<Self, String> {
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut kept: Vec<Operation> = Vec::new();
        for op in operations {
            let (key, _) = positional(&op.template)?;
            match index.get(&(op.method.clone(), key.clone())) {
                Some(&i) => kept[i] = op,
                None => {
                    index.insert((op.method.clone(), key), kept.len());
                    kept.push(op);
                }
            }
        }
        let mut by_method: HashMap<String, matchit::Router<usize>> = HashMap::new();
        for ((method, key), i) in index {
            by_method
                .entry(method.clone())
                .or_default()
                .insert(key, i)
                .map_err(|e| format!("{method} {}: {e}", kept[i].template))?;
        }
        Ok(Self {
            operations: kept,
            by_method,
        })
    }

    pub fn len(&self) -> usize {
        self.operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The operation a canonical path names, with its parameters
    /// percent-decoded (as the upstream reads them). HEAD is GET without a
    /// body: without a HEAD row of its own, it is the GET operation.
    pub fn lookup(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let at = |method: &str| self.by_method.get(method)?.at(path).ok();
        let found = match at(method) {
            None if method == "HEAD" => at("GET")?,
            found => found?,
        };
        let operation = self.operations.get(*found.value)?;
        let values = (0..operation.params.len())
            .map(|i| decode(found.params.get(format!("p{i}")).unwrap_or_default()))
            .collect();
        Some(Matched { operation, values })
    }
}

/// `%XX` sequences decoded; `non_canonical` has refused anything that
/// does not decode to UTF-8.
fn decode(segment: &str) -> String {
    percent_decoded(segment)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| segment.to_owned())
}

/// `%XX` sequences decoded; `None` for a malformed one.
pub(crate) fn percent_decoded(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A path in the canonical form Envoy produces with `normalize_path`,
/// `merge_slashes` and `path_with_escaped_slashes_action: REJECT_REQUEST`
/// (query removed). Anything else could be read one way here and another
/// way upstream, so it is refused rather than interpreted.
pub fn non_canonical(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("the path must start with /");
    }
    if path.contains("//") {
        return Some("the path has an empty segment (//)");
    }
    if path.len() > 1 && path.ends_with('/') {
        return Some("the path ends with /");
    }
    if path.contains('\\') {
        return Some("the path has a backslash");
    }
    // Path parameters (`;x=y`, `..;`) are part of a segment to some
    // upstreams and cut off by others.
    if path.contains(';') {
        return Some("the path has a ;");
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Some("the path has a dot segment");
    }
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_control() || *b == b' ' || *b >= 0x80 {
            return Some("the path has a control, space or non-ASCII character");
        }
        if *b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                None => return Some("the path has a malformed percent-encoding"),
                // Encoded slashes, backslashes and dots would change the
                // segments once decoded; encoded controls are never names.
                Some(b'/' | b'\\' | b'.') => {
                    return Some("the path has an encoded slash, backslash or dot");
                }
                Some(c) if c.is_ascii_control() => {
                    return Some("the path has an encoded control character");
                }
                // RFC 3986 normalisation decodes unreserved characters: an
                // encoded one is a second spelling of the same path.
                Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~') => {
                    return Some("the path has an encoded unreserved character");
                }
                _ => {}
            }
        }
    }
    if percent_decoded(path).is_none_or(|bytes| std::str::from_utf8(&bytes).is_err()) {
        return Some("the path does not decode to UTF-8");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_and_everything_else_is_named() {
        for ok in [
            "/u/ops%40corp.com",
            "/u/a%3Bb",
            "/%C3%A9",
            "/",
            "/accounts",
            "/images/sha256:abc/check",
            "/a%20b",
        ] {
            assert_eq!(non_canonical(ok), None, "{ok}");
        }
        for bad in [
            "",
            "accounts",
            "//accounts",
            "/accounts/",
            "/a/../b",
            "/a/./b",
            "/a/..",
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%2e%2e/b",
            "/a%zz",
            "/a%2",
            "/a\tb",
            "/a%00",
            "/é",
            "/%61ccounts",
            "/a%7Eb",
            "/a;b",
            "/a/..;/b",
            "/a%FF",
        ] {
            assert!(non_canonical(bad).is_some(), "{bad:?} passed");
        }
    }

    #[test]
    fn templates_become_positional() {
        let (key, params) = positional("/accounts/{account_name}/users/{username}").unwrap();
        assert_eq!(key, "/accounts/{p0}/users/{p1}");
        assert_eq!(params, ["account_name", "username"]);
        assert!(positional("/a/x{y}").is_err());
        assert!(positional("a").is_err());
    }
}

#[cfg(test)]
mod decoding {
    #[test]
    fn parameters_are_read_as_the_upstream_reads_them() {
        assert_eq!(super::decode("ops%40corp.com"), "ops@corp.com");
        assert_eq!(super::decode("a%20b"), "a b");
        assert_eq!(super::decode("plain"), "plain");
    }
}
