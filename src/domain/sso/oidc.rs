//! Signing in through an OpenID Connect provider: the authorization code
//! flow with PKCE, the ID token verified against the provider's JWKS, and
//! the same just-in-time user as SAML's (`jit`); back-channel logout.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::Digest as _;
use uuid::Uuid;

use super::fetch::{self, Call};
use super::jit::{Asserted, refused};
use crate::domain::Core;
use crate::domain::audit::{Actor, Change};
use crate::domain::authn::attempt::{Attempt, Claim};
use crate::domain::authn::sources::{self, Source};
use crate::domain::model::{IdentityProvider, OidcEndpoints, OidcProvider, Principal};
use crate::domain::tokens::Issued;
use crate::error::{Error, Result, quoted};
use crate::store;

/// Scopes requested when a provider names none.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];
/// The claim read for the username when a provider names none.
pub const DEFAULT_USERNAME_CLAIM: &str = "preferred_username";
/// The claim read for group names when a provider names none.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// A discovery document, a JWKS, a token or userinfo response.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// An unknown `kid` reads the JWKS again at most this often per provider.
const KID_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const ISSUER_FIELD: &str = "oidc.issuer";

/// The settable fields of an OIDC provider. `None` keeps a field as it
/// is; on create, issuer, client id and secret are required.
#[derive(Debug, Default, Clone)]
pub struct OidcFields {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<crate::domain::secret::Secret>,
    pub scopes: Option<Vec<String>>,
}

/// What discovery read from an issuer.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub endpoints: OidcEndpoints,
    pub jwks: String,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid(ISSUER_FIELD, reason)
}

async fn get_json(field: &'static str, url: &str, bearer: Option<&str>) -> Result<(u16, Value)> {
    let call = Call {
        field,
        url,
        accept: "application/json, application/jwk-set+json",
        form: None,
        authorization: bearer.map(|t| format!("Bearer {t}")),
        max_bytes: MAX_DOCUMENT_BYTES,
    };
    let (status, text) = fetch::send_call(&call).await?;
    let value = serde_json::from_str(&text)
        .map_err(|_| Error::invalid(field, format!("{url} answered something that is not JSON")))?;
    Ok((status, value))
}

/// The provider's discovery document and JWKS, checked: the document
/// names the configured issuer exactly (OpenID Connect Discovery 4.3),
/// every endpoint is https (or loopback), and the JWKS holds a key that
/// can verify a signature.
pub async fn discover(issuer: &str) -> Result<Discovered> {
    fetch::check_address_for(ISSUER_FIELD, issuer)?;
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let (status, doc) = get_json(ISSUER_FIELD, &url, None).await?;
    if status != 200 {
        return Err(invalid(format!(
            "discovery at {url} answered HTTP {status}"
        )));
    }
    let text = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
    match text("issuer") {
        Some(named) if named == issuer => {}
        Some(named) => {
            return Err(invalid(format!(
                "the discovery document names the issuer {}, not {}",
                quoted(&named),
                quoted(issuer)
            )));
        }
        None => return Err(invalid("the discovery document names no issuer")),
    }
    let endpoint = |name: &str| -> Result<String> {
        let url =
            text(name).ok_or_else(|| invalid(format!("the discovery document names no {name}")))?;
        fetch::check_address_for(ISSUER_FIELD, &url)?;
        Ok(url)
    };
    let endpoints = OidcEndpoints {
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        jwks_uri: endpoint("jwks_uri")?,
        userinfo_endpoint: match text("userinfo_endpoint") {
            Some(_) => Some(endpoint("userinfo_endpoint")?),
            None => None,
        },
    };
    let jwks = read_jwks(&endpoints.jwks_uri).await?;
    Ok(Discovered { endpoints, jwks })
}

/// The JWKS at `url`, as text, if it holds a key that can verify.
async fn read_jwks(url: &str) -> Result<String> {
    let (status, doc) = get_json(ISSUER_FIELD, url, None).await?;
    if status != 200 {
        return Err(invalid(format!("the JWKS at {url} answered HTTP {status}")));
    }
    let text = doc.to_string();
    if signing_keys(&text).is_empty() {
        return Err(invalid(format!(
            "the JWKS at {url} holds no key that verifies RS256, PS256, ES256 or EdDSA"
        )));
    }
    Ok(text)
}

/// The keys of a JWKS that verify signatures. Keys for encryption, and
/// ones of a kind authzd does not take, are left out rather than failing
/// the set.
fn signing_keys(jwks: &str) -> Vec<Jwk> {
    let Ok(doc) = serde_json::from_str::<Value>(jwks) else {
        return Vec::new();
    };
    doc.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| DecodingKey::from_jwk(k).is_ok())
        .collect()
}

/// What a token must be, besides signed.
pub(crate) struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub now: DateTime<Utc>,
    pub skew: chrono::Duration,
    pub purpose: Purpose<'a>,
}

pub(crate) enum Purpose<'a> {
    /// An ID token answering the sign-in that sent `nonce`.
    IdToken {
        nonce: &'a str,
        access_token: Option<&'a str>,
    },
    /// A back-channel logout token.
    Logout,
}

fn b64_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn number(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    claims
        .get(name)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)))
}

/// The left half of the token's hash, as OIDC Core 3.1.3.6 computes
/// `at_hash` for the signing algorithm.
fn half_hash(algorithm: Algorithm, value: &str) -> String {
    let digest: Vec<u8> = match algorithm {
        Algorithm::EdDSA => sha2::Sha512::digest(value.as_bytes()).to_vec(),
        _ => sha2::Sha256::digest(value.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Verifies a JWT from the provider: algorithm, key, signature, then the
/// claims for its purpose. The error is the refusal's reason.
pub(crate) fn verify(
    keys: &[Jwk],
    token: &str,
    expect: &Expect<'_>,
) -> std::result::Result<Map<String, Value>, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("oidc_malformed");
    };
    let header = b64_json(header).ok_or("oidc_malformed")?;
    let algorithm = match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => Algorithm::RS256,
        Some("PS256") => Algorithm::PS256,
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some(alg) if alg.eq_ignore_ascii_case("none") => return Err("oidc_alg_none"),
        Some(alg) if alg.starts_with("HS") => return Err("oidc_alg_hmac"),
        _ => return Err("oidc_algorithm"),
    };
    let key = match header.get("kid").and_then(Value::as_str) {
        Some(kid) => keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .ok_or("oidc_unknown_kid")?,
        // OIDC Core 10.1: without a kid, only a provider with one key.
        None => match keys {
            [only] => only,
            _ => return Err("oidc_no_kid"),
        },
    };
    if let Some(declared) = key.common.key_algorithm
        && serde_json::to_value(declared).ok() != header.get("alg").cloned()
    {
        return Err("oidc_key_algorithm");
    }
    let decoding = DecodingKey::from_jwk(key).map_err(|_| "oidc_key_unusable")?;
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "oidc_signature",
            _ => "oidc_malformed",
        })?
        .claims;

    if claims.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err("oidc_issuer");
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&expect.client_id) {
        return Err("oidc_audience");
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    if (audiences.len() > 1 || azp.is_some()) && azp != Some(expect.client_id) {
        return Err("oidc_azp");
    }
    let now = expect.now.timestamp();
    let skew = expect.skew.num_seconds();
    let iat = number(&claims, "iat").ok_or("oidc_no_iat")?;
    if iat > now + skew {
        return Err("oidc_issued_in_future");
    }
    match number(&claims, "exp") {
        Some(exp) if now > exp + skew => return Err("oidc_expired"),
        Some(_) => {}
        None => return Err("oidc_no_exp"),
    }
    if let Some(nbf) = number(&claims, "nbf")
        && nbf > now + skew
    {
        return Err("oidc_not_yet_valid");
    }
    let subject = claims.get("sub").and_then(Value::as_str);
    match &expect.purpose {
        Purpose::IdToken {
            nonce,
            access_token,
        } => {
            if subject.is_none_or(|s| s.is_empty() || s.len() > 255) {
                return Err("oidc_no_subject");
            }
            let sent = claims
                .get("nonce")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                sent.as_bytes(),
                nonce.as_bytes(),
            )) {
                return Err("oidc_nonce");
            }
            if let (Some(at_hash), Some(access_token)) =
                (claims.get("at_hash").and_then(Value::as_str), access_token)
                && at_hash != half_hash(algorithm, access_token)
            {
                return Err("oidc_at_hash");
            }
        }
        Purpose::Logout => {
            if claims.contains_key("nonce") {
                return Err("logout_nonce");
            }
            if !claims
                .get("events")
                .and_then(Value::as_object)
                .is_some_and(|events| events.contains_key(LOGOUT_EVENT))
            {
                return Err("logout_events");
            }
            let sid = claims.get("sid").and_then(Value::as_str);
            if subject.is_none() && sid.is_none() {
                return Err("logout_no_subject");
            }
            if claims.get("jti").and_then(Value::as_str).is_none() {
                return Err("logout_no_jti");
            }
        }
    }
    Ok(claims)
}

/// An ID token's claims, as the just-in-time rules read them.
struct IdClaims(Map<String, Value>);

impl IdClaims {
    /// A claim by name, or by a dotted path into nested objects
    /// (`realm_access.roles`) when no claim has the whole name.
    fn claim(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.0.get(name) {
            return Some(v);
        }
        let mut parts = name.split('.');
        let mut here = self.0.get(parts.next()?)?;
        for part in parts {
            here = here.get(part)?;
        }
        Some(here)
    }
}

impl Asserted for IdClaims {
    fn values(&self, name: &str) -> Vec<&str> {
        match self.claim(name) {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    fn default_username(&self) -> Option<&str> {
        self.0.get(DEFAULT_USERNAME_CLAIM).and_then(Value::as_str)
    }

    fn subject(&self) -> Option<&str> {
        self.0.get("sub").and_then(Value::as_str)
    }
}

/// 32 random bytes, base64url: a state, a nonce, a PKCE verifier.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// When each provider last read its JWKS for an unknown `kid`.
fn kid_refreshes() -> &'static Mutex<HashMap<Uuid, Instant>> {
    static LAST: OnceLock<Mutex<HashMap<Uuid, Instant>>> = OnceLock::new();
    LAST.get_or_init(|| Mutex::new(HashMap::new()))
}

/// An authorization request on its way out.
pub struct OidcStarted {
    pub redirect_url: String,
    pub state: String,
}

/// A sign-in finished: the session, and what its starter asked to get back.
pub struct OidcSignedIn {
    pub issued: Issued,
    pub relay_state: String,
}

impl Core {
    /// Where the provider sends the browser back.
    pub fn oidc_redirect_uri(&self, idp: &IdentityProvider) -> String {
        format!(
            "{}/sso/oidc/{}/callback",
            self.settings().sso.public_url,
            idp.name
        )
    }

    async fn oidc_provider(&self, name: &str) -> Result<Option<(IdentityProvider, OidcProvider)>> {
        Ok(store::identity_providers::find(self.db(), name)
            .await?
            .and_then(|idp| idp.oidc.clone().map(|oidc| (idp, oidc))))
    }

    /// TokenService/StartOidcLogin: an authorization request (code flow,
    /// PKCE S256, state and nonce) for an enabled OIDC provider. The
    /// state, nonce and verifier are kept in the database until
    /// `sso.request_ttl_seconds` pass, so any replica can finish the
    /// sign-in, once.
    pub async fn start_oidc_login(
        &self,
        idp: &str,
        relay_state: &str,
        source: Source,
    ) -> Result<OidcStarted> {
        if relay_state.len() > 255 {
            return Err(Error::invalid("relay_state", "must be at most 255 bytes"));
        }
        if let Some(Err(refused)) = self.limiter().map(|l| l.check(source)) {
            return Err(sources::held(refused, sources::MAX_HOLD).await);
        }
        let (provider, oidc) = self
            .oidc_provider(idp)
            .await?
            .filter(|(p, _)| p.enabled)
            .ok_or_else(|| Error::not_found(format!("OpenID Connect provider {}", quoted(idp))))?;
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let login = store::sso::OidcLogin {
            idp_id: provider.id,
            nonce: nonce.clone(),
            code_verifier: verifier,
            relay_state: relay_state.to_owned(),
            expires_at_ms: (self.now() + self.settings().sso.request_ttl).timestamp_millis(),
        };
        self.write_with(async |db| store::sso::start_oidc_login(db, &state, &login).await)
            .await?;
        let scope = oidc.scopes.join(" ");
        let redirect_uri = self.oidc_redirect_uri(&provider);
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", oidc.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", scope.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| Error::internal(format!("encoding an authorization request: {e}")))?;
        let endpoint = &oidc.endpoints.authorization_endpoint;
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok(OidcStarted {
            redirect_url: format!("{endpoint}{separator}{query}"),
            state,
        })
    }

    /// The `oidc` grant: the code the provider sent the browser back
    /// with, exchanged and its ID token verified, the user made or brought
    /// up to date, and a token pair. Refusals are the uniform
    /// UNAUTHENTICATED, limited, counted and audited like every grant's.
    pub async fn create_token_with_oidc(
        &self,
        idp: &str,
        code: &str,
        state: &str,
        source: Source,
    ) -> Result<OidcSignedIn> {
        self.tokens_enabled()?;
        let attempt = Attempt {
            kind: "oidc",
            reserved: true,
            claim: Claim::Nobody,
        };
        let (principal, provider_id, session, relay_state) = self
            .attempt(
                attempt,
                source,
                sources::MAX_HOLD,
                self.oidc_principal(idp, code, state),
            )
            .await?;
        let issued = self
            .start_session_from(&principal, Some((provider_id, session.as_deref())))
            .await?;
        Ok(OidcSignedIn {
            issued,
            relay_state,
        })
    }

    async fn oidc_principal(
        &self,
        idp: &str,
        code: &str,
        state: &str,
    ) -> Result<(Principal, Uuid, Option<String>, String)> {
        let (provider, oidc) = self
            .oidc_provider(idp)
            .await?
            .filter(|(p, _)| p.enabled)
            .ok_or_else(|| refused("sso_unknown_idp"))?;
        if code.is_empty() || code.len() > 2048 || state.is_empty() || state.len() > 64 {
            return Err(refused("oidc_malformed"));
        }
        // Spent first: a state is tried once, whatever happens next.
        let login = self
            .write_with(async |db| store::sso::take_oidc_login(db, state).await)
            .await?
            .ok_or_else(|| refused("oidc_unknown_state"))?;
        if login.idp_id != provider.id {
            return Err(refused("oidc_unknown_state"));
        }
        if login.expires_at_ms <= self.now().timestamp_millis() {
            return Err(refused("oidc_state_expired"));
        }
        let tokens = self
            .exchange_code(&provider, &oidc, code, &login.code_verifier)
            .await?;
        let id_token = tokens
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("oidc_no_id_token"))?;
        let access_token = tokens.get("access_token").and_then(Value::as_str);
        let purpose = Purpose::IdToken {
            nonce: &login.nonce,
            access_token,
        };
        let claims = self.verified(&provider, &oidc, id_token, purpose).await?;
        let mut claims = IdClaims(claims);
        self.read_userinfo(&provider, &oidc, access_token, &mut claims)
            .await?;
        if self.settings().sso.log_assertions {
            tracing::debug!(idp = provider.name, claims = ?claims.0, "OIDC ID token");
        }
        let session = claims
            .0
            .get("sid")
            .and_then(Value::as_str)
            .filter(|s| s.len() <= 256)
            .map(str::to_owned);
        let user = self.just_in_time(&provider, &claims).await?;
        let principal = self.federated_principal(&provider, &user).await?;
        Ok((principal, provider.id, session, login.relay_state))
    }

    /// The token endpoint's answer to the code, as JSON.
    async fn exchange_code(
        &self,
        provider: &IdentityProvider,
        oidc: &OidcProvider,
        code: &str,
        verifier: &str,
    ) -> Result<Map<String, Value>> {
        let redirect_uri = self.oidc_redirect_uri(provider);
        let form = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .map_err(|e| Error::internal(format!("encoding a token request: {e}")))?;
        // client_secret_basic: both halves form-encoded first (RFC 6749
        // 2.3.1).
        let pair = format!(
            "{}:{}",
            form_encode(&oidc.client_id),
            form_encode(oidc.client_secret.expose())
        );
        let call = Call {
            field: "oidc.token_endpoint",
            url: &oidc.endpoints.token_endpoint,
            accept: "application/json",
            form: Some(form),
            authorization: Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )),
            max_bytes: MAX_DOCUMENT_BYTES,
        };
        let (status, text) = fetch::send_call(&call).await.map_err(|e| {
            tracing::warn!(idp = provider.name, error = %e, "OIDC token endpoint not reached");
            refused("oidc_token_endpoint_unreachable")
        })?;
        let body: Option<Map<String, Value>> = serde_json::from_str(&text).ok();
        if status != 200 {
            let error = body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .chars()
                .take(64)
                .collect::<String>();
            tracing::info!(
                idp = provider.name,
                status,
                error,
                "OIDC code refused by the provider"
            );
            return Err(refused("oidc_code_rejected"));
        }
        body.ok_or_else(|| refused("oidc_token_response_malformed"))
    }

    /// A token from the provider verified against its keys. An unknown
    /// `kid` reads the JWKS again (keys rotate), at most once a minute per
    /// provider, and is refused if still unknown.
    async fn verified(
        &self,
        provider: &IdentityProvider,
        oidc: &OidcProvider,
        token: &str,
        purpose: Purpose<'_>,
    ) -> Result<Map<String, Value>> {
        let skew = chrono::Duration::from_std(self.settings().sso.clock_skew)
            .unwrap_or(chrono::Duration::seconds(60));
        let expect = Expect {
            issuer: &oidc.issuer,
            client_id: &oidc.client_id,
            now: self.now(),
            skew,
            purpose,
        };
        match verify(&signing_keys(&oidc.jwks), token, &expect) {
            Ok(claims) => Ok(claims),
            Err("oidc_unknown_kid") if self.may_refresh_for_kid(provider.id) => {
                let keys = match self.reread_jwks(provider, oidc).await {
                    Ok(jwks) => signing_keys(&jwks),
                    Err(e) => {
                        tracing::warn!(idp = provider.name, error = %e, "JWKS not read again for an unknown kid");
                        return Err(refused("oidc_unknown_kid"));
                    }
                };
                verify(&keys, token, &expect).map_err(refused)
            }
            Err(reason) => Err(refused(reason)),
        }
    }

    fn may_refresh_for_kid(&self, idp: Uuid) -> bool {
        let Ok(mut last) = kid_refreshes().lock() else {
            return false;
        };
        let now = Instant::now();
        match last.get(&idp) {
            Some(at) if now.duration_since(*at) < KID_REFRESH_INTERVAL => false,
            _ => {
                last.insert(idp, now);
                true
            }
        }
    }

    /// The provider's JWKS read again and kept (over what was read, as
    /// the refresher writes).
    async fn reread_jwks(
        &self,
        provider: &IdentityProvider,
        oidc: &OidcProvider,
    ) -> Result<String> {
        let jwks = read_jwks(&oidc.endpoints.jwks_uri).await?;
        let mut after = provider.clone();
        if let Some(o) = after.oidc.as_mut() {
            o.jwks = jwks.clone();
            o.jwks_read_at = self.now();
        }
        metrics::counter!("authzd_oidc_refreshes_total", "outcome" => "kid").increment(1);
        self.write_with(async |db| {
            store::identity_providers::refresh_oidc(db, provider, &after).await
        })
        .await?;
        Ok(jwks)
    }

    /// Claims the mapping reads that the ID token lacks, from the userinfo
    /// endpoint (only then, and only for the same `sub`).
    async fn read_userinfo(
        &self,
        provider: &IdentityProvider,
        oidc: &OidcProvider,
        access_token: Option<&str>,
        claims: &mut IdClaims,
    ) -> Result<()> {
        let wanted: Vec<&str> = [
            Some(
                provider
                    .username_attribute
                    .as_deref()
                    .unwrap_or(DEFAULT_USERNAME_CLAIM),
            ),
            provider.account_attribute.as_deref(),
            provider.role_attribute.as_deref(),
            provider.groups_attribute.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|name| claims.claim(name).is_none())
        .collect();
        let (Some(url), Some(access_token)) = (&oidc.endpoints.userinfo_endpoint, access_token)
        else {
            return Ok(());
        };
        if wanted.is_empty() {
            return Ok(());
        }
        let (status, info) = get_json("oidc.userinfo_endpoint", url, Some(access_token))
            .await
            .map_err(|e| {
                tracing::warn!(idp = provider.name, error = %e, "OIDC userinfo not read");
                refused("oidc_userinfo_unreachable")
            })?;
        let Value::Object(info) = info else {
            return Err(refused("oidc_userinfo_malformed"));
        };
        if status != 200 {
            return Err(refused("oidc_userinfo_refused"));
        }
        // OIDC Core 5.3.4: userinfo for another subject is not this user's.
        if info.get("sub") != claims.0.get("sub") {
            return Err(refused("oidc_userinfo_subject"));
        }
        for name in wanted {
            if let Some(value) = info.get(name) {
                claims.0.insert(name.to_owned(), value.clone());
            }
        }
        Ok(())
    }

    /// OpenID Connect Back-Channel Logout: a logout token from the
    /// provider ends the token families its sign-ins started, for the
    /// session (`sid`) or for the user (`sub`), on every replica. Returns
    /// how many families it ended.
    pub async fn backchannel_logout(
        &self,
        idp: &str,
        logout_token: &str,
        source: Source,
    ) -> Result<u64> {
        self.attempt(
            Attempt::fast("oidc_logout"),
            source,
            sources::MAX_HOLD,
            self.logout(idp, logout_token),
        )
        .await
    }

    async fn logout(&self, idp: &str, logout_token: &str) -> Result<u64> {
        let (provider, oidc) = self
            .oidc_provider(idp)
            .await?
            .ok_or_else(|| refused("sso_unknown_idp"))?;
        if logout_token.is_empty() || logout_token.len() > 16 * 1024 {
            return Err(refused("oidc_malformed"));
        }
        let claims = self
            .verified(&provider, &oidc, logout_token, Purpose::Logout)
            .await?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let jti = text("jti").unwrap_or_default();
        let session = text("sid");
        let subject = text("sub");
        let skew = self.settings().sso.clock_skew;
        let remember_until = number(&claims, "exp")
            .map(|exp| exp * 1000)
            .unwrap_or_default()
            .max((self.now() + skew).timestamp_millis())
            + i64::try_from(skew.as_millis()).unwrap_or(60_000);
        let now_ms = self.now().timestamp_millis();
        let mut write = self.write().await?;
        // Remembered beside consumed SAML assertions, by provider: a
        // replayed logout token is refused on every replica.
        let first = store::sso::consume_assertion(
            write.db(),
            provider.id,
            &format!("logout:{jti}"),
            remember_until,
        )
        .await?;
        if !first {
            return Err(refused("logout_replay"));
        }
        let ended = store::sso::revoke_idp_families(
            write.db(),
            (provider.id, &provider.name),
            session,
            subject,
            now_ms,
        )
        .await?;
        let mut change = Change::new("backchannel_logout", "identity_provider", &provider.name)
            .id(provider.id)
            .to("token_families_ended", ended);
        if let Some(sid) = session {
            change = change.to("sid", sid);
        }
        if let Some(sub) = subject {
            change = change.to("sub", sub);
        }
        write.record(
            Actor::Federation {
                protocol: "oidc",
                idp: &provider.name,
            },
            change,
        );
        write.commit().await?;
        tracing::info!(idp = provider.name, families = ended, "back-channel logout");
        Ok(ended)
    }

    /// Reads again the discovery document and JWKS of every OIDC provider
    /// and keeps what changed; one provider's failure leaves its last good
    /// copy in use. Returns how many changed.
    pub async fn refresh_oidc_providers(&self) -> Result<u64> {
        let mut changed = 0;
        for before in store::identity_providers::oidc_providers(self.db()).await? {
            let Some(oidc) = before.oidc.clone() else {
                continue;
            };
            let outcome = match discover(&oidc.issuer).await {
                Err(e) => {
                    tracing::warn!(idp = before.name, error = %e, "OIDC discovery not refreshed; the last copy stays in use");
                    "failed"
                }
                Ok(found) if found.endpoints == oidc.endpoints && found.jwks == oidc.jwks => {
                    "unchanged"
                }
                Ok(found) => {
                    let mut after = before.clone();
                    if let Some(o) = after.oidc.as_mut() {
                        o.endpoints = found.endpoints;
                        o.jwks = found.jwks;
                        o.jwks_read_at = self.now();
                    }
                    match self
                        .write_with(async |db| {
                            store::identity_providers::refresh_oidc(db, &before, &after).await
                        })
                        .await
                    {
                        Ok(true) => {
                            changed += 1;
                            "changed"
                        }
                        Ok(false) => "unchanged",
                        Err(e) => {
                            tracing::warn!(idp = before.name, error = %e, "refreshed OIDC discovery not written");
                            "failed"
                        }
                    }
                }
            };
            metrics::counter!("authzd_oidc_refreshes_total", "outcome" => outcome).increment(1);
        }
        Ok(changed)
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|pair| pair.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::KeyPair as _;

    /// An Ed25519 key: (signing key, its JWK with `kid` "k1").
    fn key() -> (EncodingKey, Jwk) {
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig", "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }))
        .unwrap();
        (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk)
    }

    fn token(signing: &EncodingKey, claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, signing).unwrap()
    }

    fn expect(now: DateTime<Utc>) -> Expect<'static> {
        Expect {
            issuer: "https://op.example",
            client_id: "rp",
            now,
            skew: chrono::Duration::seconds(60),
            purpose: Purpose::IdToken {
                nonce: "n-1",
                access_token: None,
            },
        }
    }

    /// The clock skew's edges: a token is good up to `exp + skew`, and
    /// from `iat - skew`, not a second beyond either.
    #[test]
    fn times_hold_to_the_second_of_the_skew() {
        let (signing, jwk) = key();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t = now.timestamp();
        let claims = |iat: i64, exp: i64| {
            serde_json::json!({"iss": "https://op.example", "aud": "rp", "sub": "s",
                               "nonce": "n-1", "iat": iat, "exp": exp})
        };
        let keys = [jwk];
        let check = |iat, exp| verify(&keys, &token(&signing, claims(iat, exp)), &expect(now));
        assert!(check(t - 600, t - 60).is_ok());
        assert_eq!(check(t - 600, t - 61).unwrap_err(), "oidc_expired");
        assert!(check(t + 60, t + 600).is_ok());
        assert_eq!(check(t + 61, t + 600).unwrap_err(), "oidc_issued_in_future");
    }

    /// `none` and HMAC are refused for what they are, before any key is
    /// looked for; a token cut short is malformed.
    #[test]
    fn unsigned_and_hmac_tokens_are_named() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let body = part(serde_json::json!({"iss": "https://op.example"}));
        for (alg, reason) in [
            ("none", "oidc_alg_none"),
            ("NONE", "oidc_alg_none"),
            ("HS256", "oidc_alg_hmac"),
            ("RS512", "oidc_algorithm"),
        ] {
            let header = part(serde_json::json!({"alg": alg}));
            assert_eq!(
                verify(&[], &format!("{header}.{body}."), &expect(now)).unwrap_err(),
                reason,
                "{alg}"
            );
        }
        assert_eq!(
            verify(&[], "a.b", &expect(now)).unwrap_err(),
            "oidc_malformed"
        );
    }

    /// Keys for encryption and keys of kinds not taken are left out of a
    /// JWKS rather than failing it.
    #[test]
    fn a_jwks_keeps_only_signing_keys_it_can_use() {
        let (_, jwk) = key();
        let mut good = serde_json::to_value(&jwk).unwrap();
        good["kid"] = "good".into();
        let mut enc = good.clone();
        enc["use"] = "enc".into();
        enc["kid"] = "enc".into();
        let jwks = serde_json::json!({"keys": [good, enc, {"kty": "weird", "kid": "w"}]});
        let keys = signing_keys(&jwks.to_string());
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].common.key_id.as_deref(), Some("good"));
        assert!(signing_keys("not json").is_empty());
    }
}
