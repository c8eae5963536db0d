//! Authentication: credentials and their parsing, the API-key format,
//! password hashing, and the principal source — what a check needs, from
//! memory when the cache holds it, else in one statement.

pub mod attempt;
pub mod credentials;
pub mod key_format;
pub mod passwords;
pub(crate) mod source;
pub mod sources;

use std::time::Duration;

use self::attempt::Attempt;
use self::credentials::Credential;
use self::sources::Source;
use super::Core;
use super::audit::{Actor, Change};
use super::model::{
    Account, AccountState, ApiKeyRef, CredentialKind, Principal, UserState, UserType,
};
use super::secret::Secret;
use crate::cache::UserEntry;
use crate::error::{AuthFailure, Error, Result, quoted};
use crate::store;

fn fail(reason: AuthFailure) -> Error {
    Error::Unauthenticated(reason)
}

/// The lockout settings (`lockout.*`).
#[derive(Debug, Clone, Copy)]
pub struct LockoutSettings {
    pub threshold: i64,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub permanent_after: i64,
    pub reset_after: Duration,
    /// How long a source that signed in as a user keeps its own ladder.
    pub remember_sources: Duration,
}

impl LockoutSettings {
    /// The length of the lock after `earlier` locks: doubling, capped.
    pub fn delay(&self, earlier: i64) -> Duration {
        let doublings = u32::try_from(earlier.clamp(0, 40)).unwrap_or(40);
        self.initial_delay
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// A failure ladder: a user, and a source known for them or the ladder
/// of all the others.
struct OwnedLadder {
    user_id: uuid::Uuid,
    source: String,
}

impl OwnedLadder {
    fn get(&self) -> store::lockout::Ladder<'_> {
        store::lockout::Ladder {
            user_id: self.user_id,
            source: &self.source,
        }
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The principal of a user, as a check answers it.
pub(crate) fn principal(
    user: &UserEntry,
    account: &Account,
    credential: CredentialKind,
) -> Principal {
    Principal {
        user: user.user.clone(),
        account_type: account.account_type,
        account_state: account.state,
        credential,
        api_key: None,
        token_id: None,
        grants: user.grants.clone(),
    }
}

/// A user and their account may authenticate.
pub(crate) fn check_active(user: &UserEntry, account: &Account) -> Result<()> {
    if user.user.state != UserState::Enabled {
        return Err(fail(AuthFailure::UserDisabled));
    }
    match account.state {
        AccountState::Enabled => Ok(()),
        AccountState::Disabled => Err(fail(AuthFailure::AccountDisabled)),
        AccountState::Deleting => Err(fail(AuthFailure::AccountDeleting)),
    }
}

impl Core {
    /// Verifies a credential from `source`. Every failure is
    /// `Unauthenticated`; the reason inside is for the log and the metrics,
    /// never for the caller. A source whose failures exceed the rate limit
    /// is refused with `Busy` before anything is checked.
    pub async fn authenticate(&self, credential: &Credential, source: Source) -> Result<Principal> {
        self.authenticate_held(credential, source, sources::MAX_HOLD)
            .await
    }

    /// `authenticate`, holding a `Busy` refusal at most `max_hold`: a proxy
    /// that gives up after a fraction of a second (Envoy's ext_authz
    /// timeout) must get the 429 before then, not an error of its own.
    pub async fn authenticate_held(
        &self,
        credential: &Credential,
        source: Source,
        max_hold: std::time::Duration,
    ) -> Result<Principal> {
        let verify = async {
            match credential {
                Credential::Password { username, password } => {
                    self.authenticate_password(username, password, source).await
                }
                Credential::ApiKey(value) => self.authenticate_api_key(value, source).await,
                Credential::Token(value) => self.authenticate_token(value).await,
            }
        };
        self.attempt(Attempt::of(credential), source, max_hold, verify)
            .await
    }

    /// Passwords are never cached: the hash is read and verified every time.
    async fn authenticate_password(
        &self,
        username: &str,
        password: &Secret,
        source: Source,
    ) -> Result<Principal> {
        let loaded = self.load_user_for_password(username).await?;
        // The attempt is counted before the hash is checked; while the user
        // is locked nothing is verified, and the refusal takes as long as a
        // verification would have.
        let lockout = match (&self.settings().lockout, &loaded) {
            (Some(settings), Some((user, _, Some(_)))) => {
                let ladder = self.ladder_of(settings, user.user.id, source).await?;
                let (failures, total, lockouts) = self.claim_attempt(settings, &ladder).await?;
                Some((settings, ladder, failures, total, lockouts))
            }
            _ => None,
        };
        // The hash is verified before any state is looked at, and a dummy
        // hash stands in for a missing one, so the time taken does not tell
        // which check failed.
        let hash = loaded.as_ref().and_then(|(_, _, hash)| hash.as_deref());
        let verified = self.hasher().verify(password, hash, source).await?;
        let Some((user, account, hash)) = loaded else {
            return Err(fail(AuthFailure::UnknownUser));
        };
        if user.user.user_type != UserType::Native || hash.is_none() {
            return Err(fail(AuthFailure::NoPassword));
        }
        if !verified {
            if let Some((settings, ladder, failures, total, lockouts)) = &lockout {
                let (failures, lockouts) = (*failures, *lockouts);
                let permanent = settings.permanent_after > 0 && *total >= settings.permanent_after;
                if failures >= settings.threshold || permanent {
                    let until =
                        self.now().timestamp_millis() + duration_ms(settings.delay(lockouts));
                    let mut write = self.write().await?;
                    store::lockout::lock(write.db(), ladder.get(), until, permanent).await?;
                    let mut change = Change::new("lock", "user", &user.user.username)
                        .account(&user.user.account)
                        .id(ladder.user_id)
                        .to("sources", ladder.source.as_str())
                        .to("failures", failures)
                        .to("permanent", permanent);
                    if !permanent {
                        change = change.to(
                            "locked_until",
                            chrono::DateTime::from_timestamp_millis(until)
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_default(),
                        );
                    }
                    write.record(Actor::Local("lockout"), change);
                    write.commit().await?;
                    tracing::warn!(
                        user = user.user.username,
                        sources = ladder.source.as_str(),
                        lockouts = lockouts + 1,
                        permanent,
                        "user locked after repeated wrong passwords"
                    );
                }
            }
            return Err(fail(AuthFailure::WrongPassword));
        }
        if let Some((_, ladder, ..)) = &lockout {
            // The ladder this source counted on starts again, and from now
            // on the source counts on a ladder of its own for this user.
            store::lockout::clear_ladder(self.db(), ladder.get()).await?;
            let now_ms = self.now().timestamp_millis();
            store::lockout::remember(self.db(), ladder.user_id, &source.to_string(), now_ms)
                .await?;
        }
        check_active(&user, &account)?;
        // Break glass: the bootstrap administrator keeps the password, so
        // an IdP outage never locks every administrator out.
        if self.settings().sso.disallow_native_users
            && user.user.username != crate::model::ADMIN_USER
        {
            return Err(fail(AuthFailure::NativeUsersDisallowed));
        }
        Ok(principal(&user, &account, CredentialKind::Password))
    }

    /// The ladder an attempt from `source` counts on: the source's own when
    /// it signed in as the user within `remember_sources`, else the one every
    /// other source shares. So guessing from anywhere else can never lock
    /// the user out of where they sign in, while the shared ladder still
    /// slows guessing from everywhere else, however many sources guess.
    async fn ladder_of(
        &self,
        settings: &LockoutSettings,
        user_id: uuid::Uuid,
        source: Source,
    ) -> Result<OwnedLadder> {
        let source = source.to_string();
        let since = self.now().timestamp_millis() - duration_ms(settings.remember_sources);
        let known = store::lockout::is_known(self.db(), user_id, &source, since).await?;
        Ok(OwnedLadder {
            user_id,
            source: if known {
                source
            } else {
                store::lockout::UNKNOWN_SOURCES.to_owned()
            },
        })
    }

    /// Forgets sources that have not signed in for `remember_sources`.
    pub async fn purge_known_sources(&self) -> Result<u64> {
        let Some(settings) = &self.settings().lockout else {
            return Ok(0);
        };
        let before = self.now().timestamp_millis() - duration_ms(settings.remember_sources);
        store::lockout::forget_before(self.db(), before).await
    }

    /// Takes a numbered attempt for the user, or refuses as locked. More
    /// attempts in flight than the threshold wait for earlier ones to end
    /// (a success clears the count) instead of being verified, so the
    /// number of verifications between locks never exceeds the threshold,
    /// and a client making many correct logins at once is not refused.
    async fn claim_attempt(
        &self,
        settings: &LockoutSettings,
        ladder: &OwnedLadder,
    ) -> Result<(i64, i64, i64)> {
        use store::lockout::Claim;
        let ladder = ladder.get();
        for _ in 0..20 {
            let now_ms = self.now().timestamp_millis();
            let reset_before = now_ms - duration_ms(settings.reset_after);
            match store::lockout::claim(self.db(), ladder, now_ms, reset_before).await? {
                Claim::Attempt {
                    failures,
                    total,
                    lockouts,
                } if failures <= settings.threshold => return Ok((failures, total, lockouts)),
                Claim::Attempt { .. } => {
                    store::lockout::release(self.db(), ladder).await?;
                    tokio::time::sleep(self.hasher().median_verification()).await;
                }
                Claim::Locked => break,
            }
        }
        // Locked, or still crowded after waiting: refused like any failure,
        // and as slowly as a verification.
        tokio::time::sleep(self.hasher().median_verification()).await;
        Err(fail(AuthFailure::Locked))
    }

    /// The checksum refuses garbage, the index of existing key ids refuses
    /// unknown keys, and then the key comes from memory or from one
    /// statement; the presented secret is verified against the stored
    /// digest either way.
    ///
    /// `source` is where the key was presented from, for rules that
    /// narrow a key to some sources.
    pub(crate) async fn authenticate_api_key(
        &self,
        value: &Secret,
        // Unused until a key can be narrowed to sources (scoped keys).
        _source: Source,
    ) -> Result<Principal> {
        let parsed = key_format::parse(value.expose())?;
        if !self.cache().key_may_exist(parsed.key_id) {
            return Err(fail(AuthFailure::UnknownKey));
        }
        let (key, owner) = self
            .key_entry(parsed.key_id)
            .await?
            .ok_or(fail(AuthFailure::UnknownKey))?;
        let now = self.now();
        // Both digests are compared whatever the first says, so the time
        // taken does not tell which secret was presented.
        let presented = parsed.digest();
        let current = key
            .digest
            .is_some_and(|stored| key_format::same(&presented, &stored));
        let previous = key
            .previous
            .is_some_and(|(stored, until)| key_format::same(&presented, &stored) & (now < until));
        if !(current | previous) {
            return Err(fail(AuthFailure::WrongSecret));
        }
        let (user, account) = match owner {
            Some((user, account))
                if key.owner_deleted_at.is_none() && user.user.id == key.user_id =>
            {
                (user, account)
            }
            _ => return Err(fail(AuthFailure::OwnerDeleted)),
        };
        if key.revoked_at.is_some() {
            return Err(fail(AuthFailure::KeyRevoked));
        }
        if now >= key.expires_at {
            return Err(fail(AuthFailure::KeyExpired));
        }
        if user.user.user_type.is_federated() && !self.settings().api_keys.allow_for_saml_users {
            return Err(fail(AuthFailure::SamlKeysDisallowed));
        }
        check_active(&user, &account)?;
        self.last_used().record(key.id, now);
        let mut principal = principal(&user, &account, CredentialKind::ApiKey);
        principal.api_key = Some(ApiKeyRef {
            key_id: key.key_id.clone(),
            name: key.name.clone(),
        });
        Ok(principal)
    }

    /// The principal for a username a trusted caller has already
    /// authenticated. Inactive users are returned as they are: the
    /// decisions then say why they are refused.
    pub async fn principal_by_username(&self, username: &str) -> Result<Principal> {
        let (user, account) = self.user_entry(username).await?.ok_or_else(|| {
            Error::not_found(format!("user {username}", username = quoted(username)))
        })?;
        Ok(principal(&user, &account, CredentialKind::Password))
    }
}
