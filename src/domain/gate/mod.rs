//! The HTTP gate: decides an HTTP request (method, path, headers) the way
//! the admin RPCs decide theirs, for a proxy's external authorization
//! (Envoy ext_authz). The route table names the operation and so the
//! action; `require` and `require_over_user` decide it, the same functions
//! as every admin RPC, so both front doors give one answer.

pub mod routes;

use std::time::Duration;

use super::Core;
use super::authn::credentials::Credential;
use super::authn::sources::Source;
use super::model::{CredentialKind, Principal};
use super::names;
use crate::error::{AuthFailure, Error};
use routes::{Access, Operation, Routes};

/// The longest `authorization` or `x-anchore-account` value considered:
/// the bound of a credential on the check RPCs.
const MAX_HEADER_CHARS: usize = 8192;
/// The longest path considered.
const MAX_PATH_CHARS: usize = 4096;

/// What to do with a request no operation matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownRoutes {
    Deny,
    /// Any authenticated caller.
    Authenticate,
}

#[derive(Debug)]
pub struct Gate {
    routes: Routes,
    /// Stripped before the table is consulted (e.g. `/v2`).
    prefix: String,
    public: matchit::Router<()>,
    unknown: UnknownRoutes,
}

/// The facts of one HTTP request the decision uses.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path with its query string, as the proxy saw it.
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub account_header: Option<&'a str>,
    /// The first of `METHOD_OVERRIDES` the request carries, if any.
    pub method_override: Option<&'static str>,
    pub source: Source,
}

/// Headers some frameworks read as the request's real method: an upstream
/// that honours one would run a `DELETE` the gate decided as a `GET`, so a
/// request carrying any of them is refused rather than guessed at.
pub const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Why a request is refused, as the HTTP status the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is malformed.
    Malformed(String),
    /// 401: no valid credentials.
    Unauthenticated,
    /// 403: the operation, and the action it needs (if any).
    Forbidden {
        operation: Option<String>,
        action: Option<String>,
        message: String,
    },
    /// 429: too many failures from this source, or the hashing queue is full.
    TooMany { retry_after: Duration },
}

/// An allowed request: who, in which account, doing what.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub operation: String,
    pub principal: Option<Principal>,
    /// The account the operation was decided in.
    pub account: Option<String>,
    /// What the upstream's `x-anchore-account` must say: the account
    /// decided in, where the operation reads it; `None`: no such header
    /// (removed), so the upstream cannot act in an account nobody decided.
    pub account_header: Option<String>,
}

pub type Verdict = Result<Allowed, Refusal>;

fn forbidden(op: &Operation, action: Option<&str>, message: impl Into<String>) -> Refusal {
    Refusal::Forbidden {
        operation: Some(op.id.clone()),
        action: action.map(str::to_owned),
        message: message.into(),
    }
}

fn malformed(message: impl Into<String>) -> Refusal {
    Refusal::Malformed(message.into())
}

impl Gate {
    /// The built-in Anchore table, extended or replaced by `file`'s rows.
    pub fn new(
        catalog: &super::catalog::Catalog,
        file: Option<(&str, &str)>,
        replace: bool,
        prefix: &str,
        public_paths: &[String],
        unknown: UnknownRoutes,
    ) -> Result<Self, String> {
        let mut operations = if replace && file.is_some() {
            Vec::new()
        } else {
            routes::parse(routes::ANCHORE_ROUTES, "anchore-routes.tsv", catalog)?
        };
        if let Some((origin, text)) = file {
            operations.extend(routes::parse(text, origin, catalog)?);
        }
        let routes = Routes::new(operations)?;
        let mut public = matchit::Router::new();
        for path in public_paths {
            if let Some(why) = routes::non_canonical(path) {
                return Err(format!("ext_authz.public_paths: {path:?}: {why}"));
            }
            public
                .insert(path.clone(), ())
                .map_err(|e| format!("ext_authz.public_paths: {path:?}: {e}"))?;
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && routes::non_canonical(prefix).is_some() {
            return Err(format!(
                "ext_authz.path_prefix: {prefix:?} must be a path such as /v2"
            ));
        }
        Ok(Self {
            routes,
            prefix: prefix.to_owned(),
            public,
            unknown,
        })
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }
}

fn header<'a>(name: &str, value: Option<&'a str>) -> Result<Option<&'a str>, Refusal> {
    let Some(value) = value else { return Ok(None) };
    if value.chars().count() > MAX_HEADER_CHARS {
        return Err(malformed(format!(
            "{name}: longer than {MAX_HEADER_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(malformed(format!("{name}: has a control character")));
    }
    Ok(Some(value))
}

/// The answer to a credential refused or to a limit reached; `Err` for an
/// error the request did not cause (the database), which is not a verdict.
fn refusal(error: Error) -> Result<Refusal, Error> {
    match error {
        Error::Unauthenticated(_) => Ok(Refusal::Unauthenticated),
        Error::Busy { retry_after, .. } => Ok(Refusal::TooMany { retry_after }),
        Error::InvalidArgument { field, reason } => Ok(malformed(format!("{field}: {reason}"))),
        other => Err(other),
    }
}

impl Core {
    /// Decides an HTTP request. `Err` only when authzd cannot decide (the
    /// database is unavailable and nothing is cached): the proxy's failure
    /// mode then applies.
    pub async fn gate(&self, gate: &Gate, request: HttpRequest<'_>) -> Result<Verdict, Error> {
        match self.gate_inner(gate, request).await {
            Ok(allowed) => Ok(Ok(allowed)),
            Err(Ok(refusal)) => Ok(Err(refusal)),
            Err(Err(error)) => Err(error),
        }
    }

    async fn gate_inner(
        &self,
        gate: &Gate,
        request: HttpRequest<'_>,
    ) -> Result<Allowed, Result<Refusal, Error>> {
        let refuse = |r: Refusal| Err(Ok(r));
        let method = request.method;
        if method.is_empty() || method.len() > 32 || !method.bytes().all(|b| b.is_ascii_uppercase())
        {
            return refuse(malformed("method: must be an upper-case HTTP method"));
        }
        if let Some(name) = request.method_override {
            return refuse(malformed(format!(
                "{name}: is refused: the gate decides the request's own method"
            )));
        }
        let path = request.path.split(['?', '#']).next().unwrap_or_default();
        if path.len() > MAX_PATH_CHARS {
            return refuse(malformed(format!(
                "path: longer than {MAX_PATH_CHARS} characters"
            )));
        }
        if let Some(why) = routes::non_canonical(path) {
            return refuse(malformed(format!("path: {why}")));
        }
        let authorization = header("authorization", request.authorization).map_err(Ok)?;
        let nobody = |operation: &str| Allowed {
            operation: operation.to_owned(),
            principal: None,
            account: None,
            account_header: None,
        };
        if gate.public.at(path).is_ok() {
            return Ok(nobody("public"));
        }
        let within = if gate.prefix.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(gate.prefix.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(|rest| if rest.is_empty() { "/" } else { rest })
        };
        let Some(matched) = within.and_then(|p| gate.routes.lookup(method, p)) else {
            // Credentials first: someone without them learns 401 whatever
            // the path, so the table cannot be mapped anonymously.
            let principal = self.gate_principal(authorization, request.source).await?;
            if gate.unknown == UnknownRoutes::Authenticate {
                return Ok(Allowed {
                    operation: "unknown".to_owned(),
                    account: Some(principal.account().to_owned()),
                    principal: Some(principal),
                    account_header: None,
                });
            }
            // Bounded: the path is the caller's, and the record is kept.
            let route: String = format!("{method} {path}").chars().take(256).collect();
            return self.forbid(
                &principal,
                &format!("unknown: {route}"),
                Refusal::Forbidden {
                    operation: None,
                    action: None,
                    message: format!("{method} {path} is not a known operation"),
                },
            );
        };
        let op = matched.operation;
        match &op.access {
            Access::Public => return Ok(nobody(&op.id)),
            Access::Denied => {
                let principal = self.gate_principal(authorization, request.source).await?;
                return self.forbid(
                    &principal,
                    &op.id,
                    forbidden(
                        op,
                        None,
                        format!("{} is not served through this gate", op.id),
                    ),
                );
            }
            _ => {}
        }
        // The account context, where the operation accepts it: validated
        // only then, as Anchore ignores it elsewhere.
        let account_header = if op.accepts_account_header {
            header("x-anchore-account", request.account_header)
                .map_err(Ok)?
                .filter(|v| !v.is_empty())
                .map(|v| names::AccountName::parse("x-anchore-account", v))
                .transpose()
                .map_err(refusal)?
                .map(names::AccountName::into_string)
        } else {
            None
        };
        let principal = self.gate_principal(authorization, request.source).await?;
        let own = |principal: Principal| {
            let account = principal.account().to_owned();
            Allowed {
                operation: op.id.clone(),
                account_header: op.accepts_account_header.then(|| account.clone()),
                account: Some(account),
                principal: Some(principal),
            }
        };
        let user = op.user_param.as_deref().and_then(|p| matched.param(p));
        match &op.access {
            Access::Authenticated => Ok(own(principal)),
            Access::PasswordChange => {
                if principal.credential == CredentialKind::ApiKey {
                    return self.forbid(
                        &principal,
                        &op.id,
                        forbidden(
                            op,
                            None,
                            "a password cannot be changed on an API key's authority",
                        ),
                    );
                }
                Ok(own(principal))
            }
            Access::Admin => {
                if !principal.is_global_admin() {
                    return self.forbid(
                        &principal,
                        &op.id,
                        forbidden(op, None, "only a global administrator may do this"),
                    );
                }
                // Identity configuration (IdPs, their group mappings, role
                // membership) is never changed on an API key's authority.
                if principal.credential == CredentialKind::ApiKey
                    && !matches!(method, "GET" | "HEAD")
                {
                    return self.forbid(
                        &principal,
                        &op.id,
                        forbidden(
                            op,
                            None,
                            "this is never permitted to a request authenticated by an API key",
                        ),
                    );
                }
                Ok(own(principal))
            }
            Access::AdminOrSelf => {
                if user != Some(principal.username()) && !principal.is_global_admin() {
                    return self.forbid(
                        &principal,
                        &op.id,
                        forbidden(
                            op,
                            None,
                            "only the user themselves or a global administrator may do this",
                        ),
                    );
                }
                Ok(own(principal))
            }
            Access::Action(action) => {
                let account = match op.account_param.as_deref() {
                    Some(param) => {
                        let named = matched.param(param).unwrap_or_default();
                        let name = names::AccountName::parse(param, named).map_err(refusal)?;
                        name.into_string()
                    }
                    None => account_header.unwrap_or_else(|| principal.account().to_owned()),
                };
                // One's own keys are self-service, as the admin RPCs decide
                // them (`key_owner`).
                let own_keys = user == Some(principal.username()) && account == principal.account();
                let action = match super::api_keys::own_action(action) {
                    Some(own) if own_keys => own,
                    _ => action.as_str(),
                };
                if let Err(e) = self.require(&principal, action, Some(&account)).await {
                    return Err(denied(op, action, e));
                }
                if let Some(username) = user.filter(|_| super::actions::manages_user(action)) {
                    match self.user_entry(username).await.map_err(Err)? {
                        Some((target, _)) => {
                            if let Err(e) = self
                                .require_over_user(&principal, action, &target.user)
                                .await
                            {
                                return Err(denied(op, action, e));
                            }
                        }
                        // Nobody to check the rule against: only those it
                        // never limits go on (the upstream answers 404).
                        None if principal.is_global_admin() => {}
                        None => {
                            self.refused(super::audit::Refusal {
                                target_user: Some(username.to_owned()),
                                ..super::audit::Refusal::action(&principal, action, Some(&account))
                            });
                            return refuse(forbidden(
                                op,
                                Some(action),
                                format!("{action} is not permitted"),
                            ));
                        }
                    }
                }
                Ok(Allowed {
                    operation: op.id.clone(),
                    account_header: op.accepts_account_header.then(|| account.clone()),
                    account: Some(account),
                    principal: Some(principal),
                })
            }
            Access::System(action) => {
                let named = match op.account_param.as_deref() {
                    Some(param) => {
                        let named = matched.param(param).unwrap_or_default();
                        let name = names::AccountName::parse(param, named).map_err(refusal)?;
                        Some(name.into_string())
                    }
                    None => None,
                };
                if let Err(e) = self.require(&principal, action, None).await {
                    return Err(denied(op, action, e));
                }
                Ok(Allowed {
                    operation: op.id.clone(),
                    account_header: None,
                    account: named.or_else(|| Some(principal.account().to_owned())),
                    principal: Some(principal),
                })
            }
            Access::Public | Access::Denied => refuse(forbidden(op, None, "not served")),
        }
    }

    /// A refusal no `require` recorded: recorded here, as the RPCs'
    /// refusals are.
    fn forbid(
        &self,
        principal: &Principal,
        operation: &str,
        refusal: Refusal,
    ) -> Result<Allowed, Result<Refusal, Error>> {
        self.refused(super::audit::Refusal::operation(principal, operation));
        Err(Ok(refusal))
    }

    async fn gate_principal(
        &self,
        authorization: Option<&str>,
        source: Source,
    ) -> Result<Principal, Result<Refusal, Error>> {
        let Some(header) = authorization.filter(|h| !h.trim().is_empty()) else {
            self.refused(super::audit::Refusal::credential(
                AuthFailure::MissingCredentials,
                source,
                "none",
            ));
            return Err(Ok(Refusal::Unauthenticated));
        };
        // A header that is no credential at all is the request's fault; a
        // credential that does not verify is not (the uniform 401).
        let credential = Credential::from_authorization(header).map_err(|e| {
            if let Error::Unauthenticated(reason) = &e {
                self.refused(super::audit::Refusal::credential(
                    *reason, source, "unknown",
                ));
            }
            match e {
                Error::Unauthenticated(AuthFailure::Malformed) => {
                    Ok(malformed("authorization: malformed credentials"))
                }
                other => refusal(other),
            }
        })?;
        // Envoy gives up on a check after its timeout (250 ms by default):
        // a 429 is answered at once, its Retry-After saying how long to wait.
        self.authenticate_held(&credential, source, Duration::ZERO)
            .await
            .map_err(refusal)
    }
}

/// A refusal of `require`: the action is named, the internals are not.
fn denied(op: &Operation, action: &str, error: Error) -> Result<Refusal, Error> {
    match error {
        Error::PermissionDenied(_) | Error::NotFound(_) => Ok(forbidden(
            op,
            Some(action),
            format!("{action} is not permitted"),
        )),
        other => refusal(other),
    }
}
