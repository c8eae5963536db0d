//! Bearer tokens: Anchore's OAuth password and refresh grants, checked
//! from memory.
//!
//! - An access token is a JWT (EdDSA by default, RS256 with a configured
//!   RSA key) naming the user by id and name, their account and the token
//!   family. No roles: grants are read at use time, as for API keys.
//! - Checking one needs no database: the signature once per token (a
//!   verified token is remembered, keyed by its SHA-256, until it expires),
//!   then the user from the principal cache, then the family's revocation
//!   state from the cache, which the change records keep right.
//! - A refresh token is opaque (`azr_<id>_<secret>_<checksum>`, stored as
//!   an HMAC), single use: each exchange issues its successor, and a second
//!   use of one revokes its whole family (reuse detection, RFC 9700).
//! - Revocation is by family: a password change, disabling the user and
//!   RevokeUserTokens revoke every family of the user in the same
//!   transaction; a deleted user's families go with the user.

pub mod keys;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use self::keys::{KeySettings, SigningKeys};
use super::Core;
use super::actions::UPDATE_USER;
use super::audit::{Actor, Change};
use super::authn::attempt::Attempt;
use super::authn::credentials::Credential;
use super::authn::key_format;
use super::authn::sources::Source;
use super::caller::Caller;
use super::model::{CredentialKind, Principal, User, UserState};
use super::secret::Secret;
use crate::cache::FamilyEntry;
use crate::error::{AuthFailure, Error, Result};
use crate::store;

/// The prefix of refresh tokens, so secret scanners can tell them apart.
pub const REFRESH_PREFIX: &str = "azr";

/// The token settings (`user_authentication.oauth_*`, `keys.*`).
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub enabled: bool,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub issuer: String,
    pub keys: KeySettings,
    /// Verified access tokens remembered.
    pub max_verified: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(86_400),
            issuer: "authzd".to_owned(),
            keys: KeySettings {
                algorithm: "EdDSA".to_owned(),
                ..KeySettings::default()
            },
            max_verified: 100_000,
        }
    }
}

/// The claims of an access token: Anchore's, plus who and which family.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user's id: a user re-created under the same name is another user.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub username: String,
    pub account: String,
    /// The refresh family the token was issued in.
    pub fam: String,
}

/// A token pair, as CreateToken returns it.
pub struct Issued {
    pub access_token: Secret,
    pub expires_in: i64,
    pub refresh_token: Secret,
    pub refresh_expires_in: i64,
}

/// The signing keys and the verified-token memo.
pub struct Tokens {
    settings: TokenSettings,
    keys: SigningKeys,
    verified: moka::sync::Cache<[u8; 32], Arc<Claims>>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Tokens {
    pub async fn load(
        settings: TokenSettings,
        db: &impl sea_orm::ConnectionTrait,
        now_ms: i64,
    ) -> Result<Self> {
        let keys = SigningKeys::load(&settings.keys, db, now_ms).await?;
        let verified = moka::sync::Cache::builder()
            .max_capacity(settings.max_verified)
            // A memory bound only: expiry is checked by the Clock on every hit.
            .time_to_live(settings.access_ttl)
            .build();
        Ok(Self {
            settings,
            keys,
            verified,
        })
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// The claims of a token whose signature, key, algorithm and issuer
    /// verify; not yet checked for expiry or revocation.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, AuthFailure> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&digest) {
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_signature(token)?);
        self.verified.insert(digest, claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, AuthFailure> {
        // `alg: none` and unknown algorithms fail here: the header's
        // algorithm must be one jsonwebtoken knows.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::BadToken)?;
        let verifier = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifier(kid))
            .ok_or(AuthFailure::BadToken)?;
        // The key decides the algorithm, never the token: HS256 signed with
        // the public key (algorithm confusion) is refused here.
        if header.alg != verifier.algorithm {
            return Err(AuthFailure::BadToken);
        }
        let mut validation = Validation::new(verifier.algorithm);
        // Expiry is checked against the service's Clock, not here.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        jsonwebtoken::decode::<Claims>(token, &verifier.key, &validation)
            .map(|data| data.claims)
            .map_err(|_| AuthFailure::BadToken)
    }
}

fn fail(reason: AuthFailure) -> Error {
    Error::Unauthenticated(reason)
}

/// What a presented token turned out to be.
enum Presented<'a> {
    Refresh(key_format::ParsedKey<'a>),
    Access(&'a str),
}

fn presented(value: &str) -> Option<Presented<'_>> {
    match key_format::parse(value) {
        Ok(parsed) if parsed.prefix == REFRESH_PREFIX => Some(Presented::Refresh(parsed)),
        _ if value.split('.').count() == 3 => Some(Presented::Access(value)),
        _ => None,
    }
}

impl Core {
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    pub(crate) fn tokens_enabled(&self) -> Result<()> {
        if self.tokens().settings.enabled {
            Ok(())
        } else {
            Err(Error::precondition(
                "tokens are disabled (user_authentication.oauth_enabled)",
            ))
        }
    }

    /// The password grant: a full verification (lockout and rate limits
    /// apply), then a new family.
    pub async fn create_token_with_password(
        &self,
        username: &str,
        password: &Secret,
        source: Source,
    ) -> Result<Issued> {
        self.tokens_enabled()?;
        let credential = Credential::Password {
            username: username.to_owned(),
            password: password.clone(),
        };
        let principal = self.authenticate(&credential, source).await?;
        self.start_session(&principal).await
    }

    /// Starts a token family for a principal that a sign-in (of any
    /// protocol) has just verified, and issues its first pair.
    pub(crate) async fn start_session(&self, principal: &Principal) -> Result<Issued> {
        self.start_session_from(principal, None).await
    }

    /// `start_session`, the family marked with the identity provider and
    /// its session (`sid`) that signed the user in, for a back-channel
    /// logout to find.
    pub(crate) async fn start_session_from(
        &self,
        principal: &Principal,
        federated: Option<(Uuid, Option<&str>)>,
    ) -> Result<Issued> {
        self.tokens_enabled()?;
        let family = Uuid::new_v4().to_string();
        let now_ms = self.now().timestamp_millis();
        let write = self.write().await?;
        store::tokens::create_family(
            write.db(),
            &family,
            principal.user.id,
            now_ms,
            now_ms + self.family_lifetime_ms(),
        )
        .await?;
        if let Some((idp_id, session)) = federated {
            store::sso::mark_family(write.db(), &family, idp_id, session).await?;
        }
        let issued = self
            .issue(write.db(), &principal.user, &family, now_ms)
            .await?;
        write.commit().await?;
        // A password change or a disable that committed between the
        // verification and the family revoked the families there were then,
        // not this one: read the user again (by id: a name can be reused),
        // and take the family back if they changed (`updated_at` moves with
        // the password and the state).
        let now_seen = store::users::find_user_by_id(self.db(), principal.user.id).await?;
        let unchanged = now_seen.is_some_and(|fresh| {
            fresh.updated_at == principal.user.updated_at && fresh.state == UserState::Enabled
        });
        if !unchanged {
            self.write_with(async |db| store::tokens::revoke_family(db, &family, now_ms).await)
                .await?;
            return Err(fail(AuthFailure::TokenRevoked));
        }
        tracing::info!(user = principal.username(), family, "token issued");
        Ok(issued)
    }

    fn family_lifetime_ms(&self) -> i64 {
        let s = &self.tokens().settings;
        millis(s.access_ttl.max(s.refresh_ttl))
    }

    /// Signs an access token and stores a new refresh token in `family`.
    async fn issue(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        user: &User,
        family: &str,
        now_ms: i64,
    ) -> Result<Issued> {
        let settings = &self.tokens().settings;
        let refresh = key_format::generate(REFRESH_PREFIX);
        store::tokens::create_refresh_token(
            db,
            &refresh.key_id,
            family,
            &refresh.secret_hash,
            now_ms + millis(settings.refresh_ttl),
        )
        .await?;
        let iat = now_ms.div_euclid(1000);
        let expires_in = i64::try_from(settings.access_ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            iss: settings.issuer.clone(),
            sub: user.id.to_string(),
            exp: iat + expires_in,
            iat,
            jti: Uuid::new_v4().to_string(),
            username: user.username.clone(),
            account: user.account.clone(),
            fam: family.to_owned(),
        };
        Ok(Issued {
            access_token: Secret::new(self.tokens().keys.sign(&claims)?),
            expires_in,
            refresh_token: refresh.value,
            refresh_expires_in: i64::try_from(settings.refresh_ttl.as_secs()).unwrap_or(i64::MAX),
        })
    }

    /// The refresh grant: the token is used up and its successor issued in
    /// the same family. A token used twice revokes the family.
    pub async fn create_token_with_refresh(
        &self,
        value: &Secret,
        source: Source,
    ) -> Result<Issued> {
        self.tokens_enabled()?;
        self.attempt(
            Attempt::fast("refresh_token"),
            source,
            super::authn::sources::MAX_HOLD,
            self.refresh(value),
        )
        .await
    }

    async fn refresh(&self, value: &Secret) -> Result<Issued> {
        let Some(Presented::Refresh(parsed)) = presented(value.expose()) else {
            return Err(fail(AuthFailure::Malformed));
        };
        let row = store::tokens::find_refresh_token(self.db(), parsed.key_id)
            .await?
            .ok_or(fail(AuthFailure::UnknownToken))?;
        if !key_format::stored_digest(&row.secret_hash).is_some_and(|d| parsed.matches(&d)) {
            return Err(fail(AuthFailure::WrongSecret));
        }
        let now_ms = self.now().timestamp_millis();
        if row.used_ms.is_some() {
            return Err(self
                .refresh_reused(&row.family_id, &row.username, row.user_id, now_ms)
                .await);
        }
        if row.family_revoked_ms.is_some() {
            return Err(fail(AuthFailure::TokenRevoked));
        }
        if now_ms >= row.expires_ms {
            return Err(fail(AuthFailure::TokenExpired));
        }
        // The user as a check sees them: still there, enabled, in an
        // enabled account.
        let (user, account) = self
            .user_entry(&row.username)
            .await?
            .filter(|(user, _)| user.user.id == row.user_id)
            .ok_or(fail(AuthFailure::OwnerDeleted))?;
        super::authn::check_active(&user, &account)?;
        let write = self.write().await?;
        if !store::tokens::use_refresh_token(write.db(), parsed.key_id, now_ms).await? {
            // Another exchange of the same token won the row.
            drop(write);
            return Err(self
                .refresh_reused(&row.family_id, &row.username, row.user_id, now_ms)
                .await);
        }
        let issued = self
            .issue(write.db(), &user.user, &row.family_id, now_ms)
            .await?;
        store::tokens::extend_family(
            write.db(),
            &row.family_id,
            now_ms + self.family_lifetime_ms(),
        )
        .await?;
        write.commit().await?;
        Ok(issued)
    }

    /// A used refresh token came back: one of its two holders is not its
    /// owner. The whole family is revoked.
    async fn refresh_reused(
        &self,
        family: &str,
        username: &str,
        user_id: Uuid,
        now_ms: i64,
    ) -> Error {
        let change = self
            .family_change(username, user_id, family)
            .await
            .to("reason", "refresh token reused");
        let revoked = self
            .revoke_recorded(Actor::Local("token reuse detection"), change, async |db| {
                store::tokens::revoke_family(db, family, now_ms).await
            })
            .await;
        match revoked {
            Ok(false) => fail(AuthFailure::TokenReused),
            Ok(true) => {
                tracing::warn!(
                    user = username,
                    family,
                    "a used refresh token was presented again: possible theft; its token family is revoked"
                );
                metrics::counter!("authzd_token_families_revoked_total", "reason" => "reuse")
                    .increment(1);
                fail(AuthFailure::TokenReused)
            }
            Err(err) => err,
        }
    }

    /// The record of a token family's revocation: the family, under the
    /// user it belongs to.
    async fn family_change(&self, username: &str, user_id: Uuid, family: &str) -> Change {
        // The same user, not a later one who took the name.
        let account = self
            .user_entry(username)
            .await
            .ok()
            .flatten()
            .filter(|(user, _)| user.user.id == user_id)
            .map(|(user, _)| user.user.account.clone());
        let change = Change::new("revoke", "token_family", family)
            .id(family)
            .to("user", username);
        match account {
            Some(account) => change.account(account),
            None => change,
        }
    }

    /// A revocation, recorded only if it revoked something.
    async fn revoke_recorded(
        &self,
        actor: Actor<'_>,
        change: Change,
        revoke: impl AsyncFnOnce(&sea_orm::DatabaseTransaction) -> Result<bool>,
    ) -> Result<bool> {
        let mut write = self.write().await?;
        let revoked = revoke(write.db()).await?;
        if revoked {
            write.record(actor, change);
        }
        write.commit().await?;
        Ok(revoked)
    }

    /// Revokes a refresh token's family, or one access token. Whoever holds
    /// a token may revoke it. False: it was already expired or revoked.
    pub async fn revoke_token(&self, value: &Secret) -> Result<bool> {
        let not_ours = || {
            Error::invalid(
                "token",
                "is neither a refresh token nor an access token issued by this service",
            )
        };
        let now_ms = self.now().timestamp_millis();
        match presented(value.expose()).ok_or_else(not_ours)? {
            Presented::Refresh(parsed) => {
                let Some(row) = store::tokens::find_refresh_token(self.db(), parsed.key_id).await?
                else {
                    return Ok(false);
                };
                // A wrong secret revokes nothing, and says no more than an
                // unknown token does.
                if !key_format::stored_digest(&row.secret_hash).is_some_and(|d| parsed.matches(&d))
                {
                    return Ok(false);
                }
                let change = self
                    .family_change(&row.username, row.user_id, &row.family_id)
                    .await;
                let revoked = self
                    .revoke_recorded(Actor::Local("token holder"), change, async |db| {
                        store::tokens::revoke_family(db, &row.family_id, now_ms).await
                    })
                    .await?;
                if revoked {
                    metrics::counter!("authzd_token_families_revoked_total", "reason" => "revoke")
                        .increment(1);
                    tracing::info!(
                        user = row.username,
                        family = row.family_id,
                        "token family revoked"
                    );
                }
                Ok(revoked)
            }
            Presented::Access(token) => {
                let claims = self.tokens().verify(token).map_err(|_| not_ours())?;
                if claims.exp.saturating_mul(1000) <= now_ms {
                    return Ok(false);
                }
                let change = Change::new("revoke", "access_token", &claims.jti)
                    .account(&claims.account)
                    .id(&claims.jti)
                    .to("user", claims.username.as_str())
                    .to("family", claims.fam.as_str());
                let revoked = self
                    .revoke_recorded(Actor::Local("token holder"), change, async |db| {
                        store::tokens::revoke_access_token(
                            db,
                            &claims.jti,
                            &claims.fam,
                            claims.exp.saturating_mul(1000),
                        )
                        .await
                    })
                    .await?;
                if revoked {
                    tracing::info!(
                        user = claims.username,
                        token_id = claims.jti,
                        "access token revoked"
                    );
                }
                Ok(revoked)
            }
        }
    }

    /// Revokes every token of a user: `updateUser` in their account, under
    /// the tenant-isolation rule; one's own always, except on an API key's
    /// authority.
    pub async fn revoke_user_tokens(
        &self,
        caller: &Caller,
        account: &str,
        username: &str,
    ) -> Result<u64> {
        let own =
            username.is_empty() || (username == caller.username() && account == caller.account());
        let user = if own {
            if caller.credential == CredentialKind::ApiKey {
                self.require(caller, UPDATE_USER, Some(caller.account()))
                    .await?;
            }
            caller.user.clone()
        } else {
            self.require(caller, UPDATE_USER, Some(account)).await?;
            let user = self.user_in(account, username).await?;
            self.require_over_user(caller, UPDATE_USER, &user).await?;
            user
        };
        let now_ms = self.now().timestamp_millis();
        let mut write = self.write().await?;
        let revoked = store::tokens::revoke_user_families(write.db(), user.id, now_ms).await?;
        if revoked > 0 {
            write.record(
                Actor::Caller(caller),
                Change::new("revoke_tokens", "user", &user.username)
                    .account(&user.account)
                    .id(user.id)
                    .to("families_revoked", revoked),
            );
        }
        write.commit().await?;
        metrics::counter!("authzd_token_families_revoked_total", "reason" => "revoke_user")
            .increment(revoked);
        tracing::info!(
            caller = caller.username(),
            user = user.username,
            families = revoked,
            "user tokens revoked"
        );
        Ok(revoked)
    }

    /// Checks an access token: signature (remembered), expiry by the Clock,
    /// the user it names (same id), the family's revocation state.
    pub(crate) async fn authenticate_token(&self, value: &Secret) -> Result<Principal> {
        if !self.tokens().settings.enabled {
            return Err(fail(AuthFailure::UnsupportedCredential));
        }
        let claims = self.tokens().verify(value.expose()).map_err(fail)?;
        if claims.exp.saturating_mul(1000) <= self.now().timestamp_millis() {
            return Err(fail(AuthFailure::TokenExpired));
        }
        let (user, account) = self
            .user_entry(&claims.username)
            .await?
            .filter(|(user, _)| user.user.id.to_string() == claims.sub)
            .ok_or(fail(AuthFailure::OwnerDeleted))?;
        let family = self
            .family_entry(&claims.fam)
            .await?
            .ok_or(fail(AuthFailure::TokenRevoked))?;
        if family.revoked
            || family.user_id != user.user.id
            || family.revoked_tokens.iter().any(|jti| *jti == claims.jti)
        {
            return Err(fail(AuthFailure::TokenRevoked));
        }
        super::authn::check_active(&user, &account)?;
        let mut principal = super::authn::principal(&user, &account, CredentialKind::Token);
        principal.token_id = Some(claims.jti.clone());
        Ok(principal)
    }

    /// A family's revocation state, from memory or one statement; stored
    /// unless an eviction raced the read.
    async fn family_entry(&self, id: &str) -> Result<Option<Arc<FamilyEntry>>> {
        let cache = self.cache();
        if let Some(hit) = cache.family(id) {
            return Ok(hit);
        }
        let mut answer = None;
        for _ in 0..super::authn::source::READS {
            let epoch = cache.epoch();
            let loaded = store::tokens::find_family(self.db(), id).await?;
            answer = loaded.map(|f| {
                Arc::new(FamilyEntry {
                    user_id: f.user_id,
                    revoked: f.revoked,
                    revoked_tokens: f.revoked_tokens,
                })
            });
            if cache.put_family(epoch, id, answer.clone()) || cache.epoch() == epoch {
                break;
            }
        }
        Ok(answer)
    }

    /// Removes expired and revoked refresh tokens, expired revocation
    /// records, and revoked or expired families.
    pub async fn purge_tokens(&self) -> Result<u64> {
        let now_ms = self.now().timestamp_millis();
        self.write_with(async |db| store::tokens::purge_expired(db, now_ms).await)
            .await
    }
}
