//! One sign-in attempt, whatever proves it: the rate limit, the charge
//! and refund, the outcome metric and the refusal record happen here, at
//! one site, so a new kind of credential (an SSO assertion) is limited,
//! counted and audited by handing its check to `Core::attempt`.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use super::credentials::Credential;
use super::sources::{self, Source};
use crate::domain::Core;
use crate::domain::audit::Refusal;
use crate::error::{Error, Result};

/// What an attempt claims, as the limiter, the metrics and the audit
/// trail see it: never the secret. Built on every check, so it only
/// borrows; the claim is read out of the credential when a refusal is
/// recorded.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The credential kind: the metric's `credential` label and the
    /// refusal record's `credential`.
    pub kind: &'static str,
    /// A slow check (a password hash) takes its limiter token before it
    /// runs, so the attempts in flight at once cannot all slip through on
    /// the last token; it is refunded on success. A fast one (a key, a
    /// token) is charged after it fails.
    pub reserved: bool,
    /// Who the attempt claims to be, for the refusal record.
    pub claim: Claim<'a>,
}

/// Who an attempt claims to be.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// Read from the credential: a password's username, an API key's id.
    Credential(&'a Credential),
    /// A username a protocol asserted.
    Username(&'a str),
    Nobody,
}

impl<'a> Attempt<'a> {
    pub fn of(credential: &'a Credential) -> Self {
        let (kind, reserved) = match credential {
            Credential::Password { .. } => ("password", true),
            Credential::ApiKey(_) => ("api_key", false),
            Credential::Token(_) => ("token", false),
        };
        Self {
            kind,
            reserved,
            claim: Claim::Credential(credential),
        }
    }

    /// A credential checked in microseconds that names nobody.
    pub fn fast(kind: &'static str) -> Self {
        Self {
            kind,
            reserved: false,
            claim: Claim::Nobody,
        }
    }

    fn refusal(&self, reason: &'static str, source: Source) -> Refusal {
        let base = Refusal::credential_for(reason, source, self.kind);
        match self.claim {
            Claim::Credential(Credential::Password { username, .. }) => Refusal {
                username: Some(username.clone()),
                ..base
            },
            Claim::Credential(Credential::ApiKey(value)) => Refusal {
                api_key_id: super::key_format::parse(value.expose())
                    .ok()
                    .map(|k| k.key_id.to_owned()),
                ..base
            },
            Claim::Username(username) => Refusal {
                username: Some(username.to_owned()),
                ..base
            },
            Claim::Credential(Credential::Token(_)) | Claim::Nobody => base,
        }
    }
}

/// Counts a success of `kind`; the kinds checked on every request have a
/// counter registered once.
fn count_success(kind: &'static str) {
    static COUNTERS: [OnceLock<metrics::Counter>; 4] = [const { OnceLock::new() }; 4];
    let cell = match kind {
        "password" => &COUNTERS[0],
        "api_key" => &COUNTERS[1],
        "token" => &COUNTERS[2],
        "refresh_token" => &COUNTERS[3],
        _ => return success_counter(kind).increment(1),
    };
    cell.get_or_init(|| success_counter(kind)).increment(1);
}

fn success_counter(kind: &'static str) -> metrics::Counter {
    metrics::counter!("authzd_authentications_total", "credential" => kind, "outcome" => "success", "reason" => "ok")
}

/// Counts (and logs a failure of) one authentication of `kind`.
pub(crate) fn record_outcome(kind: &'static str, result: std::result::Result<(), &Error>) {
    match result {
        Ok(()) => count_success(kind),
        Err(Error::Unauthenticated(reason)) => {
            tracing::info!(
                credential = kind,
                reason = reason.as_str(),
                "authentication failed"
            );
            metrics::counter!("authzd_authentications_total", "credential" => kind, "outcome" => "failure", "reason" => reason.as_str())
                .increment(1);
        }
        Err(_) => {
            metrics::counter!("authzd_authentications_total", "credential" => kind, "outcome" => "error", "reason" => "error")
                .increment(1);
        }
    }
}

impl Core {
    /// Runs `verify` as one attempt from `source`: refused with `Busy`
    /// (held at most `max_hold`) while the source is over its rate limit,
    /// charged on failure, counted, and recorded in the audit trail when
    /// refused. Every failure stays `Unauthenticated`; the reason inside is
    /// for the log, the metrics and the record, never for the caller.
    pub(crate) async fn attempt<T>(
        &self,
        attempt: Attempt<'_>,
        source: Source,
        max_hold: Duration,
        verify: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if let Some(Err(refused)) = self.limiter().map(|l| l.check(source)) {
            self.refused(attempt.refusal("rate_limited", source));
            return Err(sources::held(refused, max_hold).await);
        }
        let reserved = attempt.reserved;
        if let (true, Some(limiter)) = (reserved, self.limiter()) {
            limiter.charge(source);
        }
        let result = verify.await;
        if let Some(limiter) = self.limiter() {
            match (&result, reserved) {
                (Err(Error::Unauthenticated(_)), false) => limiter.charge(source),
                (Err(Error::Unauthenticated(_)), true) | (_, false) => {}
                (_, true) => limiter.refund(source),
            }
        }
        // A full hashing queue is answered as slowly as a rate limit.
        let result = match result {
            Err(busy @ Error::Busy { .. }) => Err(sources::held(busy, max_hold).await),
            other => other,
        };
        record_outcome(attempt.kind, result.as_ref().map(|_| ()));
        match &result {
            Err(Error::Unauthenticated(reason)) => {
                self.refused(attempt.refusal(reason.as_str(), source));
            }
            Err(Error::Busy { .. }) => self.refused(attempt.refusal("busy", source)),
            _ => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secret::Secret;

    /// A refusal names who the attempt claimed to be, never the secret.
    #[test]
    fn a_refusal_names_the_claim_and_not_the_secret() {
        let password = Credential::Password {
            username: "bob".into(),
            password: Secret::new("hunter2"),
        };
        let refusal = Attempt::of(&password).refusal("wrong_password", Source::LOCAL);
        assert_eq!(refusal.username.as_deref(), Some("bob"));
        assert_eq!(refusal.credential, Some("password"));
        assert!(!format!("{refusal:?}").contains("hunter2"));

        let key = super::super::key_format::generate("azk");
        let presented = Credential::ApiKey(key.value.clone());
        let refusal = Attempt::of(&presented).refusal("wrong_secret", Source::LOCAL);
        assert_eq!(refusal.api_key_id.as_deref(), Some(key.key_id.as_str()));
        assert_eq!(refusal.username, None);
        assert!(!format!("{refusal:?}").contains(key.value.expose()));

        let asserted = Attempt {
            kind: "saml",
            reserved: false,
            claim: Claim::Username("alice"),
        };
        let refusal = asserted.refusal("assertion_expired", Source::LOCAL);
        assert_eq!(refusal.username.as_deref(), Some("alice"));
        assert_eq!(refusal.credential, Some("saml"));
        assert_eq!(
            Attempt::fast("refresh_token")
                .refusal("x", Source::LOCAL)
                .username,
            None
        );
    }
}
