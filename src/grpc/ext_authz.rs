//! Envoy's external authorization (`envoy.service.auth.v3.Authorization`):
//! the HTTP request Envoy describes goes to the domain's gate, and its
//! verdict comes back as the reply Envoy acts on.
//!
//! Every refusal the request causes is an `Ok` reply with a denied HTTP
//! response: a gRPC error would hand the decision to Envoy's
//! `failure_mode_allow`. The one gRPC error is `UNAVAILABLE`, when authzd
//! cannot decide.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pb::servers::envoy::authorization_server::{Authorization, AuthorizationServer};
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

use super::context::{ACCOUNT_HEADER, source_of};
use crate::domain::Core;
use crate::domain::gate::{Allowed, Gate, HttpRequest, METHOD_OVERRIDES, Refusal};
use crate::domain::model::CredentialKind;
use crate::error::Error;

/// The headers authzd sets on an allowed request; a client's own copies
/// never reach the upstream.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-authz-user",
    "x-authz-user-id",
    "x-authz-account",
    "x-authz-credential",
    "x-authz-operation",
];

/// The service's name, as health and reflection report it.
pub const SERVICE_NAME: &str =
    <AuthorizationServer<ExtAuthzApi> as tonic::server::NamedService>::NAME;

// google.rpc.Code values.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAUTHENTICATED: i32 = 16;

pub struct ExtAuthzApi {
    core: Core,
    gate: Arc<Gate>,
    remove_authorization: bool,
}

impl ExtAuthzApi {
    pub fn new(core: Core, gate: Arc<Gate>, remove_authorization: bool) -> Self {
        Self {
            core,
            gate,
            remove_authorization,
        }
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("authzd_ext_authz_checks_total", "outcome" => outcome).increment(1);
}

fn credential_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Password => "password",
        CredentialKind::ApiKey => "api_key",
        CredentialKind::Token => "token",
    }
}

/// A header that replaces any value of the same name: envoy-types'
/// builder appends by default, which would let a client's value survive.
fn set(key: &str, value: impl Into<String>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn string(value: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(value.into())),
    }
}

fn reply(code: i32, message: &str, http: HttpResponse, metadata: Option<Struct>) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: message.to_owned(),
            details: Vec::new(),
        }),
        dynamic_metadata: metadata,
        http_response: Some(http),
    }
}

fn allowed(allowed: Allowed, remove_authorization: bool) -> CheckResponse {
    let mut headers = vec![set("x-authz-operation", allowed.operation.clone())];
    let mut fields = HashMap::from([("operation".to_owned(), string(allowed.operation))]);
    let mut headers_to_remove = Vec::new();
    match &allowed.principal {
        Some(principal) => {
            let account = allowed
                .account
                .unwrap_or_else(|| principal.account().to_owned());
            let facts = [
                ("x-authz-user", "user", principal.username().to_owned()),
                ("x-authz-user-id", "user_id", principal.user.id.to_string()),
                ("x-authz-account", "account", account),
                (
                    "x-authz-credential",
                    "credential",
                    credential_name(principal.credential).to_owned(),
                ),
            ];
            for (header, field, value) in facts {
                headers.push(set(header, value.clone()));
                fields.insert(field.to_owned(), string(value));
            }
        }
        // Nobody is identified: any identity a client claims goes.
        None => headers_to_remove.extend(
            IDENTITY_HEADERS
                .iter()
                .filter(|h| **h != "x-authz-operation")
                .map(|h| (*h).to_owned()),
        ),
    }
    // The upstream acts in the account decided here, or in none named.
    match allowed.account_header {
        Some(account) => headers.push(set(ACCOUNT_HEADER, account)),
        None => headers_to_remove.push(ACCOUNT_HEADER.to_owned()),
    }
    if remove_authorization {
        headers_to_remove.push("authorization".to_owned());
    }
    let http = HttpResponse::OkResponse(OkHttpResponse {
        headers,
        headers_to_remove,
        ..Default::default()
    });
    reply(OK, "", http, Some(Struct { fields }))
}

fn json_body(message: &str, action: Option<&str>, operation: Option<&str>) -> String {
    let mut body = serde_json::json!({ "message": message });
    if let Some(action) = action {
        body["action"] = action.into();
    }
    if let Some(operation) = operation {
        body["operation"] = operation.into();
    }
    body.to_string()
}

fn denied(refusal: Refusal) -> CheckResponse {
    let (code, http_status, message, mut headers, body) = match refusal {
        Refusal::Malformed(message) => {
            let body = json_body(&message, None, None);
            (INVALID_ARGUMENT, 400, message, Vec::new(), body)
        }
        Refusal::Unauthenticated => {
            let message = "authentication required".to_owned();
            let body = json_body(&message, None, None);
            let challenge = set(
                "www-authenticate",
                "Basic realm=\"Authentication required\"",
            );
            (UNAUTHENTICATED, 401, message, vec![challenge], body)
        }
        Refusal::Forbidden {
            operation,
            action,
            message,
        } => {
            let body = json_body(&message, action.as_deref(), operation.as_deref());
            (PERMISSION_DENIED, 403, message, Vec::new(), body)
        }
        Refusal::TooMany { retry_after } => {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let message = "too many requests".to_owned();
            let body = json_body(&message, None, None);
            let retry = set("retry-after", seconds.to_string());
            (RESOURCE_EXHAUSTED, 429, message, vec![retry], body)
        }
    };
    headers.push(set("content-type", "application/json"));
    let http = HttpResponse::DeniedResponse(DeniedHttpResponse {
        status: Some(HttpStatus { code: http_status }),
        headers,
        body,
    });
    reply(code, &message, http, None)
}

/// A request header: Envoy sends lower-case names, in the `headers` map
/// or, with `encode_raw_headers`, in `header_map`.
fn header<'a>(
    http: &'a envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
    name: &str,
) -> Result<Option<&'a str>, Refusal> {
    if let Some(value) = http.headers.get(name) {
        return Ok(Some(value.as_str()));
    }
    let Some(map) = &http.header_map else {
        return Ok(None);
    };
    let mut found = map
        .headers
        .iter()
        .filter(|h| h.key.eq_ignore_ascii_case(name));
    let first = found.next();
    // Which of two values an upstream reads is its own business: one value
    // or none.
    if found.next().is_some() {
        return Err(Refusal::Malformed(format!("{name}: sent more than once")));
    }
    match first {
        None => Ok(None),
        Some(h) if !h.raw_value.is_empty() => std::str::from_utf8(&h.raw_value)
            .map(Some)
            .map_err(|_| Refusal::Malformed(format!("{name}: is not UTF-8"))),
        Some(h) => Ok(Some(h.value.as_str())),
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let client = request
            .get_ref()
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .and_then(|s| s.address.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| match a {
                envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s) => {
                    Some(s.address.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        let source = match source_of(&request, &client) {
            Ok(source) => source,
            Err(status) => {
                count("malformed");
                return Ok(Response::new(denied(Refusal::Malformed(format!(
                    "attributes.source.address: {}",
                    status.message()
                )))));
            }
        };
        let Some(http) = request
            .get_ref()
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            count("malformed");
            return Ok(Response::new(denied(Refusal::Malformed(
                "attributes.request.http: is required".to_owned(),
            ))));
        };
        let headers =
            header(http, "authorization").and_then(|a| Ok((a, header(http, "x-anchore-account")?)));
        let headers = headers.and_then(|(authorization, account)| {
            let mut method_override = None;
            for name in METHOD_OVERRIDES {
                if header(http, name)?.is_some() {
                    method_override = Some(name);
                    break;
                }
            }
            Ok((authorization, account, method_override))
        });
        let (authorization, account_header, method_override) = match headers {
            Ok(found) => found,
            Err(refusal) => {
                count("malformed");
                return Ok(Response::new(denied(refusal)));
            }
        };
        let verdict = self
            .core
            .gate(
                &self.gate,
                HttpRequest {
                    method: &http.method,
                    path: &http.path,
                    authorization,
                    account_header,
                    method_override,
                    source,
                },
            )
            .await;
        let outcome = match &verdict {
            Ok(Ok(_)) => "allowed",
            Ok(Err(Refusal::Malformed(_))) => "malformed",
            Ok(Err(Refusal::Unauthenticated)) => "unauthenticated",
            Ok(Err(Refusal::Forbidden { .. })) => "forbidden",
            Ok(Err(Refusal::TooMany { .. })) => "too_many_requests",
            Err(_) => "unavailable",
        };
        count(outcome);
        match verdict {
            Ok(Ok(allow)) => Ok(Response::new(allowed(allow, self.remove_authorization))),
            Ok(Err(refusal)) => {
                tracing::info!(
                    method = http.method,
                    path = http.path.split('?').next().unwrap_or_default(),
                    refusal = ?refusal,
                    "ext_authz check refused"
                );
                Ok(Response::new(denied(refusal)))
            }
            Err(Error::Unavailable) => Err(Error::Unavailable.into()),
            Err(other) => {
                // Not the caller's doing and not a verdict: the proxy's
                // failure mode decides, as when the database is down.
                tracing::error!(error = %other, "ext_authz check could not be decided");
                Err(Status::unavailable("authzd cannot decide this request"))
            }
        }
    }
}
