//! Who is calling an admin RPC, and from where: built once per request by
//! the transport, handed to every domain function.

use std::net::SocketAddr;
use std::ops::Deref;

use super::model::Principal;
use super::names;
use crate::error::{Error, Result};

/// The metadata header that names the account context.
pub const ACCOUNT_CONTEXT: &str = "x-anchore-account";

/// Where a request came from: for logs and the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub peer: Option<SocketAddr>,
    /// The client certificate's subject, when mTLS is on.
    pub client_subject: Option<String>,
    pub request_id: Option<String>,
}

/// An authenticated caller, with the account context it asked for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// `x-anchore-account`, validated.
    pub account_context: Option<String>,
    pub origin: Origin,
}

impl Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl Origin {
    /// The source a credential is counted against: the peer's address.
    pub fn source(&self) -> crate::domain::authn::sources::Source {
        use crate::domain::authn::sources::Source;
        self.peer.map_or(Source::LOCAL, |p| Source::from_ip(p.ip()))
    }
}

impl Caller {
    /// A caller acting with no request around it (tests, break-glass tools).
    pub fn local(principal: Principal) -> Self {
        Self {
            principal,
            account_context: None,
            origin: Origin::default(),
        }
    }

    /// The account an RPC acts on, by one rule for every RPC: the request's
    /// field, else the `x-anchore-account` context, else the caller's own
    /// account. A field that contradicts the context is refused rather than
    /// silently preferred.
    pub fn target_account(&self, field: &str, value: &str) -> Result<String> {
        resolve_account(field, value, self.account_context.as_deref())
            .map(|a| a.unwrap_or_else(|| self.principal.account().to_owned()))
    }
}

/// The account named by a request's field or by the context (`None`:
/// neither names one).
pub fn resolve_account(field: &str, value: &str, context: Option<&str>) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(context.map(str::to_owned));
    }
    names::AccountName::parse(field, value)?;
    match context {
        Some(c) if c != value => Err(Error::invalid(
            field,
            format!("conflicts with the {ACCOUNT_CONTEXT} metadata"),
        )),
        _ => Ok(Some(value.to_owned())),
    }
}
