//! Checks from memory: verified-credential caches in front of the
//! database, kept right by the change records (`follow`).
//!
//! - API keys by key id: the stored digest and what the key says of itself.
//!   A hit still verifies the presented secret against that digest.
//! - Users by username (with account, grants and groups; never a password
//!   hash), and briefly the usernames that do not exist.
//! - Accounts by name (and, briefly, those that do not exist).
//! - The set of key ids that exist, so a flood of random well-formed keys
//!   is answered without a query.
//!
//! Entries expire `ttl` after they were written, by the `Clock` (reads
//! never extend them); moka's own expiry is only a memory bound. A change
//! evicts what it touches. While the change records cannot be followed
//! (`max_staleness`), nothing is served from here.

mod follow;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use moka::sync::Cache as Moka;
use uuid::Uuid;

pub use self::follow::{Follower, LISTENER_NAME, run_follower};
use crate::model::Account;
use crate::model::Clock;

/// What a change record says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Key(String),
    User(String),
    Account(String),
    Group(Uuid),
    /// A token family: revoked, removed, or one of its access tokens revoked.
    Family(String),
}

impl Change {
    pub fn parse(kind: &str, id: &str) -> Option<Self> {
        Some(match kind {
            "key" | "key_gone" => Self::Key(id.to_owned()),
            "user" => Self::User(id.to_owned()),
            "account" => Self::Account(id.to_owned()),
            "group" => Self::Group(Uuid::parse_str(id).ok()?),
            "family" => Self::Family(id.to_owned()),
            _ => return None,
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::User(_) => "user",
            Self::Account(_) => "account",
            Self::Group(_) => "group",
            Self::Family(_) => "family",
        }
    }
}

pub use crate::model::{KeyEntry, UserEntry};

/// A token family's revocation state.
#[derive(Debug)]
pub struct FamilyEntry {
    pub user_id: Uuid,
    pub revoked: bool,
    /// Access tokens of the family revoked one by one (`jti`).
    pub revoked_tokens: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_entries: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub poll_interval: Duration,
    pub max_staleness: Duration,
    pub notify: bool,
    pub change_retention: Duration,
}

struct Stamped<T> {
    written: DateTime<Utc>,
    value: T,
}

type Slot<T> = Moka<String, Arc<Stamped<Option<Arc<T>>>>>;

/// Hit and miss counters of one kind, registered once.
struct Counters {
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl Counters {
    fn new(kind: &'static str) -> Self {
        Self {
            hits: metrics::counter!("authzd_cache_hits_total", "kind" => kind),
            misses: metrics::counter!("authzd_cache_misses_total", "kind" => kind),
        }
    }
}

fn slot<T: Send + Sync + 'static>(settings: &CacheSettings) -> Slot<T> {
    Moka::builder()
        .max_capacity(settings.max_entries)
        // Only a memory bound: expiry proper is by the Clock, on every hit.
        .time_to_live(settings.ttl.max(Duration::from_secs(1)))
        .build()
}

/// A hit: `Some(None)` is a cached "does not exist".
pub type Hit<T> = Option<Option<Arc<T>>>;

pub struct Cache {
    settings: CacheSettings,
    clock: Clock,
    keys: Slot<KeyEntry>,
    users: Slot<UserEntry>,
    accounts: Slot<Account>,
    families: Slot<FamilyEntry>,
    counters: [Counters; 5],
    key_ids: RwLock<HashSet<String>>,
    /// Whether `key_ids` holds every key id (loaded, and followed since).
    key_ids_complete: AtomicBool,
    /// Bumped before each eviction: a load that saw another value may have
    /// read what the eviction was about, and must not be stored.
    epoch: AtomicU64,
    /// When the change records were last followed successfully, as
    /// milliseconds since `started`.
    synced_ms: AtomicI64,
    started: Instant,
}

impl Cache {
    pub fn new(settings: CacheSettings, clock: Clock) -> Self {
        Self {
            keys: slot(&settings),
            users: slot(&settings),
            accounts: slot(&settings),
            families: slot(&settings),
            settings,
            clock,
            counters: [
                Counters::new("key"),
                Counters::new("user"),
                Counters::new("account"),
                Counters::new("unknown_key"),
                Counters::new("family"),
            ],
            key_ids: RwLock::new(HashSet::new()),
            key_ids_complete: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            synced_ms: AtomicI64::new(i64::MIN / 2),
            started: Instant::now(),
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Records a successful follow of the change records.
    pub(crate) fn mark_synced(&self) {
        self.synced_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// How long since the change records were last followed.
    pub fn sync_age(&self) -> Duration {
        let since = self.elapsed_ms() - self.synced_ms.load(Ordering::Relaxed);
        Duration::from_millis(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Serving from memory: on, and the change records followed recently.
    pub fn usable(&self) -> bool {
        if !self.settings.enabled {
            return false;
        }
        let since = self.elapsed_ms() - self.synced_ms.load(Ordering::Relaxed);
        u128::try_from(since).is_ok_and(|ms| ms <= self.settings.max_staleness.as_millis())
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn get<T>(&self, slot: &Slot<T>, kind: usize, key: &str) -> Hit<T>
    where
        T: Send + Sync + 'static,
    {
        if !self.usable() {
            return None;
        }
        let Some(entry) = slot.get(key) else {
            self.counters[kind].misses.increment(1);
            return None;
        };
        let ttl = if entry.value.is_some() {
            self.settings.ttl
        } else {
            self.settings.negative_ttl
        };
        let age = self.clock.now() - entry.written;
        if age >= TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX) || age < TimeDelta::zero() {
            slot.invalidate(key);
            self.counters[kind].misses.increment(1);
            return None;
        }
        self.counters[kind].hits.increment(1);
        Some(entry.value.clone())
    }

    /// Stores what a load read, unless an eviction happened since `epoch`
    /// was taken; returns whether it was stored. The store-then-check order
    /// matters: an eviction bumps the epoch before it removes, so either the
    /// check sees the bump or the removal sees the entry.
    fn put<T>(&self, slot: &Slot<T>, epoch: u64, key: &str, value: Option<Arc<T>>) -> bool
    where
        T: Send + Sync + 'static,
    {
        if !self.usable() || self.epoch() != epoch {
            return false;
        }
        slot.insert(
            key.to_owned(),
            Arc::new(Stamped {
                written: self.clock.now(),
                value,
            }),
        );
        if self.epoch() != epoch {
            slot.invalidate(key);
            return false;
        }
        true
    }

    pub fn key(&self, key_id: &str) -> Hit<KeyEntry> {
        self.get(&self.keys, 0, key_id)
    }

    pub fn user(&self, username: &str) -> Hit<UserEntry> {
        self.get(&self.users, 1, username)
    }

    pub fn account(&self, name: &str) -> Hit<Account> {
        self.get(&self.accounts, 2, name)
    }

    pub fn family(&self, id: &str) -> Hit<FamilyEntry> {
        self.get(&self.families, 4, id)
    }

    pub fn put_family(&self, epoch: u64, id: &str, entry: Option<Arc<FamilyEntry>>) -> bool {
        self.put(&self.families, epoch, id, entry)
    }

    pub fn put_key(&self, epoch: u64, entry: Arc<KeyEntry>) -> bool {
        let key_id = entry.key_id.clone();
        self.put(&self.keys, epoch, &key_id, Some(entry))
    }

    pub fn put_user(&self, epoch: u64, username: &str, entry: Option<Arc<UserEntry>>) -> bool {
        self.put(&self.users, epoch, username, entry)
    }

    pub fn put_account(&self, epoch: u64, name: &str, entry: Option<Arc<Account>>) -> bool {
        self.put(&self.accounts, epoch, name, entry)
    }

    /// False when the key id certainly does not exist: the index is
    /// complete and followed, and does not hold it.
    pub fn key_may_exist(&self, key_id: &str) -> bool {
        if !self.usable() || !self.key_ids_complete.load(Ordering::Acquire) {
            return true;
        }
        let known = self.key_ids.read().map_or(true, |ids| ids.contains(key_id));
        if !known {
            self.counters[3].hits.increment(1);
        }
        known
    }

    /// Replaces the index of existing key ids.
    pub(crate) fn set_key_ids(&self, ids: impl IntoIterator<Item = String>) {
        if let Ok(mut index) = self.key_ids.write() {
            *index = ids.into_iter().collect();
            self.key_ids_complete.store(true, Ordering::Release);
        }
    }

    /// Adds or removes one id, as a key change says; `exists` is what the
    /// database says now.
    pub(crate) fn note_key_id(&self, key_id: &str, exists: bool) {
        if let Ok(mut index) = self.key_ids.write() {
            if exists {
                index.insert(key_id.to_owned());
            } else {
                index.remove(key_id);
            }
        }
    }

    /// Evicts what a change touches. A group change evicts every member
    /// this replica holds.
    pub fn evict(&self, change: &Change) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("authzd_cache_evictions_total", "kind" => change.kind()).increment(1);
        match change {
            Change::Key(key_id) => self.keys.invalidate(key_id),
            Change::User(username) => self.users.invalidate(username),
            Change::Account(name) => self.accounts.invalidate(name),
            Change::Family(id) => self.families.invalidate(id),
            Change::Group(group) => {
                let members: Vec<Arc<String>> = self
                    .users
                    .iter()
                    .filter(|(_, entry)| {
                        entry
                            .value
                            .as_ref()
                            .is_some_and(|u| u.groups.contains(group))
                    })
                    .map(|(name, _)| name)
                    .collect();
                for name in members {
                    self.users.invalidate(name.as_str());
                }
            }
        }
    }

    /// Forgets everything, e.g. when changes were missed.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.keys.invalidate_all();
        self.users.invalidate_all();
        self.accounts.invalidate_all();
        self.families.invalidate_all();
        self.key_ids_complete.store(false, Ordering::Release);
    }
}
