//! Signing in through a SAML identity provider: the AuthnRequest out, the
//! Response back, and the just-in-time user it makes or brings up to date
//! (Anchore's rules, docs/sso.md).

use std::io::Write as _;
use std::sync::OnceLock;

use base64::Engine;
use sha2::Digest as _;
use uuid::Uuid;

use super::metadata::escape;
use super::saml::{self, Expect, Verified};
use crate::domain::Core;
use crate::domain::authn::attempt::{Attempt, Claim};
use crate::domain::authn::sources::{self, Source};
use crate::domain::model::{IdentityProvider, Principal};
use crate::domain::tokens::Issued;
use crate::error::{Error, Result, quoted};
use crate::store;

/// XML-DSig verifications at once, off the async workers.
fn verifications() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(4))
}

use super::jit::refused;

/// Which request a Response must answer.
#[derive(Debug, Clone, Copy)]
pub enum Answering<'a> {
    /// Any outstanding request of the provider (the `saml` grant without a
    /// `request_id`), or none when unsolicited responses are allowed.
    AnyRequest,
    /// That request (the grant's `request_id`).
    Request(&'a str),
    /// What a browser started: the request its binding cookie names, or
    /// none at all. A response to a request this browser did not make is
    /// someone else's sign-in posted here (login CSRF), refused even if
    /// that request is outstanding.
    Browser(Option<&'a str>),
}

impl Answering<'_> {
    fn accepts(self, in_response_to: Option<&str>) -> bool {
        match (self, in_response_to) {
            (Answering::AnyRequest, _) | (Answering::Browser(_), None) => true,
            (Answering::Request(expected), answered) => answered == Some(expected),
            (Answering::Browser(started), Some(answered)) => started == Some(answered),
        }
    }
}

/// 12 random bytes, as 24 hex digits.
fn random_nonce() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An AuthnRequest on its way out.
pub struct Started {
    pub redirect_url: String,
    pub request_id: String,
}

impl Core {
    /// Forgets expired AuthnRequests and consumed assertions past their
    /// expiry (a replay of one would be refused as expired anyway).
    pub async fn purge_sign_in_state(&self) -> Result<u64> {
        let now_ms = self.now().timestamp_millis();
        self.write_with(async |db| store::sso::purge_expired(db, now_ms).await)
            .await
    }

    /// An enabled SAML provider (an OIDC one has no SAML half to use).
    async fn enabled_provider(&self, name: &str) -> Result<Option<IdentityProvider>> {
        Ok(store::identity_providers::find(self.db(), name)
            .await?
            .filter(|idp| idp.enabled && idp.oidc.is_none()))
    }

    /// TokenService/StartSamlLogin: an AuthnRequest for `idp` (HTTP-Redirect
    /// binding), remembered in the database for `sso.request_ttl_seconds`
    /// so that any replica can take the answer, once.
    ///
    /// Anyone may start one, so starting stores nothing: the request's ID
    /// carries its provider and expiry under a MAC (`request_id`), checked
    /// when the answer comes, and only then remembered, as spent. A flood
    /// of starts fills no table and keeps no one else out. A source the
    /// failure limit holds may not start one either.
    pub async fn start_saml_login(
        &self,
        idp: &str,
        relay_state: &str,
        source: Source,
    ) -> Result<Started> {
        if relay_state.len() > 80 {
            return Err(Error::invalid(
                "relay_state",
                "must be at most 80 bytes (SAML bindings, 3.4.3)",
            ));
        }
        if let Some(Err(refused)) = self.limiter().map(|l| l.check(source)) {
            return Err(sources::held(refused, sources::MAX_HOLD).await);
        }
        let provider = self
            .enabled_provider(idp)
            .await?
            .ok_or_else(|| Error::not_found(format!("identity provider {}", quoted(idp))))?;
        let (sp_entity_id, acs_url) = self.sp_endpoints(&provider);
        let now = self.now();
        let expires_ms = (now + self.settings().sso.request_ttl).timestamp_millis();
        let request_id = self.request_id(provider.id, &random_nonce(), expires_ms)?;
        let request = format!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{destination}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{issuer}</saml:Issuer><samlp:NameIDPolicy AllowCreate="true"/></samlp:AuthnRequest>"#,
            id = request_id,
            instant = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            destination = escape(&provider.metadata.sso_url),
            acs = escape(&acs_url),
            issuer = escape(&sp_entity_id),
        );
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflater
            .write_all(request.as_bytes())
            .and_then(|()| deflater.try_finish())
            .map_err(|e| Error::internal(format!("deflating an AuthnRequest: {e}")))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(deflater.get_ref());
        let separator = if provider.metadata.sso_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut query = vec![("SAMLRequest", encoded.as_str())];
        if !relay_state.is_empty() {
            query.push(("RelayState", relay_state));
        }
        let query = serde_urlencoded::to_string(&query)
            .map_err(|e| Error::internal(format!("encoding an AuthnRequest: {e}")))?;
        let redirect_url = format!("{}{separator}{query}", provider.metadata.sso_url);
        Ok(Started {
            redirect_url,
            request_id,
        })
    }

    /// The `saml` grant: a Response the browser posted, verified, its user
    /// made or brought up to date, and a token pair for them. Refusals are
    /// the uniform UNAUTHENTICATED, limited, counted and audited like a
    /// password grant's.
    pub async fn create_token_with_saml(
        &self,
        idp: &str,
        saml_response: &str,
        answering: Answering<'_>,
        source: Source,
    ) -> Result<Issued> {
        self.tokens_enabled()?;
        let principal = self
            .saml_sign_in(idp, saml_response, answering, source)
            .await?;
        self.start_session(&principal).await
    }

    /// Verifies a Response for `idp` and returns the principal it signs in.
    /// `answering`: the request the response must answer, as far as the
    /// front end knows it.
    pub async fn saml_sign_in(
        &self,
        idp: &str,
        saml_response: &str,
        answering: Answering<'_>,
        source: Source,
    ) -> Result<Principal> {
        let attempt = Attempt {
            kind: "saml",
            reserved: true,
            claim: Claim::Nobody,
        };
        self.attempt(
            attempt,
            source,
            sources::MAX_HOLD,
            self.saml_principal(idp, saml_response, answering),
        )
        .await
    }

    /// An AuthnRequest's ID, `id{nonce}{expiry}{mac}` in fixed widths: 24
    /// hex digits of nonce, the expiry in milliseconds as 12 hex digits,
    /// and 20 characters of MAC over the provider, nonce and expiry (58 in
    /// all; an XML ID must not start with a digit). The MAC is the token
    /// signing key's (deterministic) signature, hashed, so every replica
    /// computes the same one; a request started just before a key rotation
    /// is refused and simply started again.
    fn request_id(&self, idp: Uuid, nonce: &str, expires_ms: i64) -> Result<String> {
        #[derive(serde::Serialize)]
        struct Bound<'a> {
            purpose: &'static str,
            idp: String,
            nonce: &'a str,
            exp: i64,
        }
        let signed = self.tokens().keys().sign(&Bound {
            purpose: "authzd SAML AuthnRequest",
            idp: idp.to_string(),
            nonce,
            exp: expires_ms,
        })?;
        let digest = sha2::Sha256::digest(signed.as_bytes());
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..15]);
        Ok(format!("id{nonce}{expires_ms:012x}{mac}"))
    }

    /// When `id`, if it is a request this service started for `idp`, and
    /// it has not expired at `now_ms`, expires.
    fn request_expiry(&self, idp: Uuid, id: &str, now_ms: i64) -> Option<i64> {
        let rest = id.strip_prefix("id")?;
        let (nonce, rest) = (rest.get(..24)?, rest.get(24..)?);
        let (expiry, mac) = (rest.get(..12)?, rest.get(12..)?);
        if !nonce.bytes().all(|b| b.is_ascii_hexdigit()) || mac.len() != 20 {
            return None;
        }
        let expires_ms = i64::from_str_radix(expiry, 16).ok()?;
        let expected = self.request_id(idp, nonce, expires_ms).ok()?;
        let genuine = bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            id.as_bytes(),
        ));
        (genuine && expires_ms > now_ms).then_some(expires_ms)
    }

    async fn saml_principal(
        &self,
        idp: &str,
        saml_response: &str,
        answering: Answering<'_>,
    ) -> Result<Principal> {
        let provider = self
            .enabled_provider(idp)
            .await?
            .ok_or_else(|| refused("sso_unknown_idp"))?;
        let verified = self.verify_response(&provider, saml_response).await?;
        if !answering.accepts(verified.in_response_to.as_deref()) {
            return Err(refused("saml_not_this_request"));
        }
        if self.settings().sso.log_assertions {
            tracing::debug!(
                idp = provider.name,
                assertion_id = verified.assertion_id,
                name_id = verified.name_id,
                attributes = ?verified.attributes,
                "SAML assertion"
            );
        }
        let now_ms = self.now().timestamp_millis();
        // Spend the assertion and the request first, in one transaction: an
        // assertion refused below is spent too (it may not be tried again).
        // The assertion first, so a replay is named as one.
        let in_response_to = verified.in_response_to.clone();
        let fresh = self
            .write_with(async |db| {
                let first = store::sso::consume_assertion(
                    db,
                    provider.id,
                    &verified.assertion_id,
                    verified.not_on_or_after.timestamp_millis(),
                )
                .await?;
                if !first {
                    return Ok(Err(refused("saml_replay")));
                }
                let solicited = match &in_response_to {
                    Some(id) => {
                        // Started here for this provider, unexpired, and
                        // answered once.
                        let spent = match self.request_expiry(provider.id, id, now_ms) {
                            Some(expires_ms) => {
                                store::sso::spend_request(db, id, provider.id, expires_ms).await?
                            }
                            None => false,
                        };
                        if !spent {
                            return Ok(Err(refused(saml::Refusal::InResponseTo.as_str())));
                        }
                        true
                    }
                    None => false,
                };
                Ok(if !solicited && !provider.allow_idp_initiated {
                    Err(refused("saml_unsolicited"))
                } else {
                    Ok(())
                })
            })
            .await?;
        fresh?;
        let user = self.just_in_time(&provider, &verified).await?;
        self.federated_principal(&provider, &user).await
    }

    async fn verify_response(
        &self,
        provider: &IdentityProvider,
        saml_response: &str,
    ) -> Result<Verified> {
        let (sp_entity_id, acs_url) = self.sp_endpoints(provider);
        let provider = provider.clone();
        let now = self.now();
        let skew = chrono::Duration::from_std(self.settings().sso.clock_skew)
            .unwrap_or(chrono::Duration::seconds(60));
        let response = saml_response.to_owned();
        // Waiting for a slot is bounded: a flood of large responses is
        // refused, not queued without end.
        let _slot =
            tokio::time::timeout(std::time::Duration::from_secs(2), verifications().acquire())
                .await
                .map_err(|_| refused("saml_busy"))?
                .map_err(|_| refused("saml_busy"))?;
        let result = tokio::task::spawn_blocking(move || {
            let expect = Expect {
                idp: &provider,
                sp_entity_id: &sp_entity_id,
                acs_url: &acs_url,
                now,
                skew,
            };
            saml::verify(&expect, &response)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "SAML verification did not finish");
            refused("saml_internal")
        })?;
        result.map_err(|reason| refused(reason.as_str()))
    }
}
