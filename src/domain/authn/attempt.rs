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
/// trail see it: never the secret.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The credential kind: the metric's `credential` label and the
    /// refusal record's `credential`.
    pub kind: &'static str,
    /// The username claimed, when the credential names one.
    pub claimed: Option<String>,
    /// The key id claimed, when the credential is an API key.
    pub api_key_id: Option<String>,
    /// A slow check (a password hash) takes its limiter token before it
    /// runs, so the attempts in flight at once cannot all slip through on
    /// the last token; it is refunded on success. A fast one (a key, a
    /// token) is charged after it fails.
    pub reserved: bool,
}

impl Attempt {
    pub fn of(credential: &Credential) -> Self {
        match credential {
            Credential::Password { username, .. } => Self {
                kind: "password",
                claimed: Some(username.clone()),
                api_key_id: None,
                reserved: true,
            },
            Credential::ApiKey(value) => Self {
                kind: "api_key",
                claimed: None,
                api_key_id: super::key_format::parse(value.expose())
                    .ok()
                    .map(|k| k.key_id.to_owned()),
                reserved: false,
            },
            Credential::Token(_) => Self::fast("token"),
        }
    }

    /// A credential checked in microseconds that names nobody.
    pub fn fast(kind: &'static str) -> Self {
        Self {
            kind,
            claimed: None,
            api_key_id: None,
            reserved: false,
        }
    }

    fn refusal(&self, reason: &'static str, source: Source) -> Refusal {
        Refusal {
            username: self.claimed.clone(),
            api_key_id: self.api_key_id.clone(),
            ..Refusal::credential_for(reason, source, self.kind)
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
        attempt: &Attempt,
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
