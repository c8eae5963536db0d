//! One place that turns a request into a caller. The interceptor of every
//! service builds a `CallContext` once per request — the parsed
//! `authorization`, the `x-anchore-account` context, the peer, the client
//! certificate's subject, the request id — and handlers hand it to the
//! domain. Missing or malformed credentials are refused, logged and counted
//! here, before any handler runs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};
use x509_parser::certificate::X509Certificate;

use super::caller::CallerKeys;
use crate::domain::Core;
use crate::domain::authn::credentials::Credential;
use crate::domain::authn::sources::Source;
use crate::domain::caller::{Caller, Origin};
use crate::domain::names;
use crate::error::{AuthFailure, Error};
use crate::telemetry::RequestId;

pub const ACCOUNT_HEADER: &str = "x-anchore-account";

/// What the transport knows of a request before any handler runs.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The caller's own credential (admin RPCs only).
    pub credential: Option<Credential>,
    /// The `x-anchore-account` context, validated.
    pub account: Option<String>,
    pub origin: Origin,
    /// A calling service vouched for the request with a caller key (or no
    /// caller keys are configured, loopback only): it may name its end
    /// user's address (`client_address`).
    pub from_service: bool,
}

fn ascii_header<'a>(metadata: &'a MetadataMap, name: &str) -> Result<Option<&'a str>, Status> {
    match metadata.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| Status::invalid_argument(format!("{name}: must be ASCII"))),
    }
}

/// The `x-anchore-account` value, if any.
fn account_context(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    Ok(ascii_header(metadata, ACCOUNT_HEADER)?
        .filter(|v| !v.is_empty())
        .map(|v| names::AccountName::parse(ACCOUNT_HEADER, v).map(names::AccountName::into_string))
        .transpose()?)
}

/// The client certificate's leaf, parsed (mTLS): once per request, for
/// the caller check and the origin alike.
fn leaf(certs: &[impl AsRef<[u8]>]) -> Option<X509Certificate<'_>> {
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    Some(cert)
}

fn origin_with<T>(request: &Request<T>, client_subject: Option<String>) -> Origin {
    Origin {
        peer: request.remote_addr(),
        client_subject,
        request_id: request.extensions().get::<RequestId>().map(|r| r.0.clone()),
    }
}

fn origin<T>(request: &Request<T>) -> Origin {
    let certs = request.peer_certs();
    let subject = certs
        .as_deref()
        .and_then(|c| leaf(c))
        .map(|c| c.subject().to_string());
    origin_with(request, subject)
}

/// Counts, logs and audits a credential refused before it reached the
/// domain.
pub(crate) fn refuse(reason: AuthFailure) -> Status {
    crate::telemetry::refused_early(reason.as_str(), "unknown");
    tracing::info!(
        credential = "unknown",
        reason = reason.as_str(),
        "authentication failed"
    );
    metrics::counter!("authzd_authentications_total", "credential" => "unknown", "outcome" => "failure", "reason" => reason.as_str())
        .increment(1);
    Error::Unauthenticated(reason).into()
}

/// The interceptor of the admin services: the caller's own credentials.
pub fn admin(mut request: Request<()>) -> Result<Request<()>, Status> {
    let header = ascii_header(request.metadata(), "authorization")
        .map_err(|_| refuse(AuthFailure::Malformed))?
        .ok_or_else(|| refuse(AuthFailure::MissingCredentials))?;
    let credential = Credential::from_authorization(header).map_err(|e| match e {
        Error::Unauthenticated(reason) => refuse(reason),
        other => other.into(),
    })?;
    let context = CallContext {
        credential: Some(credential),
        account: account_context(request.metadata())?,
        origin: origin(&request),
        from_service: false,
    };
    request.extensions_mut().insert(context);
    Ok(request)
}

/// The interceptor of the token service: the grants carry their own
/// credentials. `authorization: Bearer <caller key>` marks a calling
/// service (which may name its end user's address); any other
/// `authorization` is the caller's own credential (RevokeUserTokens), and a
/// malformed one is refused.
pub fn tokens(
    keys: &Arc<ArcSwap<CallerKeys>>,
    request: Request<()>,
) -> Result<Request<()>, Status> {
    let keys = keys.load();
    let caller_key = keys.presented(request.metadata());
    if !caller_key && request.metadata().get("authorization").is_some() {
        return admin(request);
    }
    let context = CallContext {
        credential: None,
        account: account_context(request.metadata())?,
        origin: origin(&request),
        from_service: caller_key || keys.is_open(),
    };
    let mut request = request;
    request.extensions_mut().insert(context);
    Ok(request)
}

/// The interceptor of the check services: the caller key, and the context.
pub fn check(keys: &Arc<ArcSwap<CallerKeys>>, request: Request<()>) -> Result<Request<()>, Status> {
    let keys = keys.load();
    let certs = request.peer_certs();
    let cert = certs.as_deref().and_then(|c| leaf(c));
    let subject = cert.as_ref().map(|c| c.subject().to_string());
    let mut request = keys.check(request, cert.as_ref())?;
    let context = CallContext {
        credential: None,
        account: account_context(request.metadata())?,
        origin: origin_with(&request, subject),
        from_service: true,
    };
    request.extensions_mut().insert(context);
    Ok(request)
}

/// The end user's source: the request's `client_address`, else the peer.
/// Only a calling service may name an address: anyone else could name a
/// new one on every guess and escape the per-source limit.
pub fn source_of<T>(request: &Request<T>, client_address: &str) -> Result<Source, Status> {
    let (peer, from_service) = request
        .extensions()
        .get::<CallContext>()
        .map_or((None, false), |c| (c.origin.peer, c.from_service));
    if !from_service && !client_address.is_empty() {
        return Err(Error::invalid(
            "client_address",
            "only a calling service presenting its caller key may name an end user's address",
        )
        .into());
    }
    Ok(Source::of("client_address", client_address, peer)?)
}

/// The context the interceptor stored.
pub fn context<T>(request: &Request<T>) -> Result<CallContext, Status> {
    request
        .extensions()
        .get::<CallContext>()
        .cloned()
        .ok_or_else(|| Error::internal("a service without its interceptor").into())
}

/// The `x-anchore-account` context the interceptor read.
pub fn context_account<T>(request: &Request<T>) -> Result<Option<String>, Status> {
    request
        .extensions()
        .get::<CallContext>()
        .map(|c| c.account.clone())
        .ok_or_else(|| Error::internal("a service without its interceptor").into())
}

/// Authenticates the caller of an admin RPC; returns it with the message.
pub async fn authenticated<T>(core: &Core, request: Request<T>) -> Result<(Caller, T), Status> {
    let context = context(&request)?;
    let credential = context
        .credential
        .ok_or_else(|| Status::from(Error::Unauthenticated(AuthFailure::MissingCredentials)))?;
    let principal = core
        .authenticate(&credential, context.origin.source())
        .await?;
    crate::telemetry::record_caller(principal.username());
    let caller = Caller {
        principal,
        account_context: context.account,
        origin: context.origin,
    };
    Ok((caller, request.into_inner()))
}
