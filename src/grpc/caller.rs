//! The caller keys sibling services present on the check RPCs.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

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

    /// No caller keys configured (allowed on loopback only): every caller
    /// counts as a calling service.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether the request carries `authorization: Bearer <a caller key>`.
    pub fn presented(&self, metadata: &tonic::metadata::MetadataMap) -> bool {
        !self.digests.is_empty() && bearer(metadata).is_some_and(|key| self.accepts(key))
    }

    pub fn check<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        if self.digests.is_empty() {
            return Ok(request);
        }
        match bearer(request.metadata()) {
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

/// The value of `authorization: Bearer <value>`.
fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
        })
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
