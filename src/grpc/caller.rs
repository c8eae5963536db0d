//! The caller keys sibling services present on the check RPCs.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};
use x509_parser::certificate::X509Certificate;

/// Checks `authorization: Bearer <caller key>`, or a client certificate of
/// an allowed subject, on the check RPCs. With neither configured (allowed
/// only on loopback) every caller passes.
#[derive(Clone)]
pub struct CallerKeys {
    digests: Arc<Vec<[u8; 32]>>,
    subjects: Arc<Vec<String>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl CallerKeys {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            digests: Arc::new(keys.into_iter().map(digest).collect()),
            subjects: Arc::new(Vec::new()),
        }
    }

    /// Also lets in clients whose certificate's subject or DNS/URI subject
    /// alternative name is one of `subjects` (the CA is checked by TLS).
    pub fn with_subjects(mut self, subjects: Vec<String>) -> Self {
        self.subjects = Arc::new(subjects);
        self
    }

    /// Whether the client certificate (its leaf, already parsed) is one of
    /// the allowed subjects.
    fn certified(&self, cert: Option<&X509Certificate<'_>>) -> bool {
        let Some(cert) = cert.filter(|_| !self.subjects.is_empty()) else {
            return false;
        };
        // Each kind of entry is compared with its own kind of name: a URI
        // (`spiffe://…`) with URI SANs, `ATTR=value` text with the subject,
        // anything else with DNS SANs.
        let subject = unambiguous_subject(cert.subject());
        let (mut dns, mut uris) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push(*d),
                    GeneralName::URI(u) => uris.push(*u),
                    _ => {}
                }
            }
        }
        self.subjects.iter().any(|entry| {
            if entry.contains("://") {
                uris.contains(&entry.as_str())
            } else if entry.contains('=') {
                subject.as_deref() == Some(entry.as_str())
            } else {
                dns.contains(&entry.as_str())
            }
        })
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
        self.digests.is_empty() && self.subjects.is_empty()
    }

    /// Whether the request carries `authorization: Bearer <a caller key>`.
    pub fn presented(&self, metadata: &tonic::metadata::MetadataMap) -> bool {
        !self.digests.is_empty() && bearer(metadata).is_some_and(|key| self.accepts(key))
    }

    /// `cert`: the client certificate's leaf, parsed once per request by
    /// the interceptor (`context::check`), which also logs its subject.
    pub fn check<T>(
        &self,
        request: Request<T>,
        cert: Option<&X509Certificate<'_>>,
    ) -> Result<Request<T>, Status> {
        if self.is_open() {
            return Ok(request);
        }
        if self.certified(cert) {
            crate::telemetry::record_caller("client-certificate");
            return Ok(request);
        }
        match bearer(request.metadata()).filter(|_| !self.digests.is_empty()) {
            Some(key) if self.accepts(key) => {
                crate::telemetry::record_caller("caller-key");
                Ok(request)
            }
            _ => {
                tracing::info!("check RPC refused: missing or unknown caller key");
                crate::telemetry::refused_early("unknown_caller_key", "caller_key");
                Err(Status::unauthenticated("a valid caller key is required"))
            }
        }
    }
}

/// The subject as text (`O=example, CN=envoy`), unless a value holds a
/// character that would make that text ambiguous (an `O` of
/// `example, CN=envoy` must not read as two attributes).
fn unambiguous_subject(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let plain = name.iter_attributes().all(|a| {
        a.as_str()
            .is_ok_and(|v| !v.is_empty() && !v.contains([',', '+', '=', '\\', '"', '<', '>', ';']))
    });
    plain.then(|| name.to_string())
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
            keys.check(request(Some("Bearer old-key-0123456789")), None)
                .is_ok()
        );
        assert!(
            keys.check(request(Some("bearer new-key-0123456789")), None)
                .is_ok()
        );
        assert!(keys.check(request(Some("Bearer other")), None).is_err());
        assert!(
            keys.check(request(Some("Basic old-key-0123456789")), None)
                .is_err()
        );
        assert!(keys.check(request(None), None).is_err());
        assert!(CallerKeys::new([]).check(request(None), None).is_ok());
    }
}
