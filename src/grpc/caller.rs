//! Who is calling: Basic credentials on admin RPCs, a caller key on the
//! check RPCs, and the `x-anchore-account` context.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::domain::Core;
use crate::domain::credentials::Credential;
use crate::domain::model::Principal;
use crate::domain::names;
use crate::error::{AuthFailure, Error};

pub const ACCOUNT_HEADER: &str = "x-anchore-account";

fn ascii_header<'a>(metadata: &'a MetadataMap, name: &str) -> Result<Option<&'a str>, Status> {
    match metadata.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| Status::invalid_argument(format!("{name}: must be ASCII"))),
    }
}

/// Authenticates the caller of an admin RPC from `authorization: Basic …`.
pub async fn admin_caller(core: &Core, metadata: &MetadataMap) -> Result<Principal, Status> {
    let header = ascii_header(metadata, "authorization")
        .map_err(|_| Error::Unauthenticated(AuthFailure::Malformed))?
        .ok_or(Error::Unauthenticated(AuthFailure::MissingCredentials))?;
    let credential = Credential::from_authorization(header)?;
    let principal = core.authenticate(&credential).await?;
    crate::telemetry::record_caller(principal.username());
    Ok(principal)
}

/// The `x-anchore-account` value, if any.
pub fn context_header(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    Ok(ascii_header(metadata, ACCOUNT_HEADER)?
        .filter(|v| !v.is_empty())
        .map(|v| names::required(ACCOUNT_HEADER, v).map(str::to_owned))
        .transpose()?)
}

/// The account an admin RPC acts on: the request's field, else the
/// `x-anchore-account` context, else the caller's own account. A field that
/// contradicts the header is refused rather than silently preferred.
pub fn target_account(
    field: &str,
    value: &str,
    metadata: &MetadataMap,
    caller: &Principal,
) -> Result<String, Status> {
    let header = context_header(metadata)?;
    if value.is_empty() {
        return Ok(header.unwrap_or_else(|| caller.account().to_owned()));
    }
    names::required(field, value)?;
    match header {
        Some(h) if h != value => Err(Error::invalid(
            field,
            format!("conflicts with the {ACCOUNT_HEADER} metadata"),
        )
        .into()),
        _ => Ok(value.to_owned()),
    }
}

/// Checks `authorization: Bearer <caller key>` on the check RPCs. With no
/// keys configured (allowed only on loopback) every caller passes.
#[derive(Clone)]
pub struct CallerKeys {
    digests: Arc<Vec<[u8; 32]>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl CallerKeys {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            digests: Arc::new(keys.into_iter().map(digest).collect()),
        }
    }

    /// Comparing fixed-size digests in constant time leaks neither the
    /// content nor the length of a key. Every key is compared.
    fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        self.digests
            .iter()
            .fold(0u8, |found, key| found | key.ct_eq(&presented).unwrap_u8())
            == 1
    }

    pub fn check<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        if self.digests.is_empty() {
            return Ok(request);
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
            });
        match presented {
            Some(key) if self.accepts(key) => {
                crate::telemetry::record_caller("caller-key");
                Ok(request)
            }
            _ => {
                tracing::info!("check RPC refused: missing or unknown caller key");
                Err(Status::unauthenticated("a valid caller key is required"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn caller_keys_accept_any_configured_key_and_nothing_else() {
        let keys = CallerKeys::new(["old-key-0123456789", "new-key-0123456789"]);
        assert!(
            keys.check(request(Some("Bearer old-key-0123456789")))
                .is_ok()
        );
        assert!(
            keys.check(request(Some("bearer new-key-0123456789")))
                .is_ok()
        );
        assert!(keys.check(request(Some("Bearer other"))).is_err());
        assert!(
            keys.check(request(Some("Basic old-key-0123456789")))
                .is_err()
        );
        assert!(keys.check(request(None)).is_err());
        assert!(CallerKeys::new([]).check(request(None)).is_ok());
    }
}
