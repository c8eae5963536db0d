//! argon2id hashing, off the async workers and bounded, so a burst of logins
//! cannot starve the runtime or exhaust memory (each hash takes 19 MiB).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

use super::sources::Source;
use crate::domain::secret::Secret;
use crate::error::{Error, Result};

/// OWASP's minimum for argon2id: m=19 MiB, t=2, p=1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

#[derive(Clone)]
pub struct PasswordHasher {
    slots: Arc<Slots>,
    /// Verified against when the user is unknown, so that case costs the same.
    dummy_hash: Arc<str>,
    verifications: Arc<AtomicU64>,
    /// The last verifications' durations (µs), for the median a locked
    /// user's refusal waits instead of verifying.
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>,
}

/// Verification durations kept for the median.
const RECENT: usize = 31;

/// The hashing slots, handed out fairly: while all are busy, waiting
/// checks queue per source and a freed slot goes to the next source in
/// turn, so 200 guesses from one address delay another address's login by
/// one hash, not by 200. A source may hold at most `per_source` places in
/// the queue and the queue at most `limit`; past either, the check is
/// refused at once.
struct Slots {
    state: Mutex<Queue>,
    limit: usize,
    per_source: usize,
}

#[derive(Default)]
struct Queue {
    free: usize,
    waiting: usize,
    by_source: HashMap<Source, VecDeque<oneshot::Sender<Slot>>>,
    /// Sources with waiting checks, in the order they are served.
    turn: VecDeque<Source>,
}

/// A hashing slot; dropping it hands it to the next waiting check.
struct Slot(Option<Arc<Slots>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.0.take() {
            slots.release();
        }
    }
}

enum Place {
    Now(Slot),
    Queued(oneshot::Receiver<Slot>),
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue's invariants hold between statements: a panic elsewhere
        // cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(self: &Arc<Self>, source: Source) -> Result<Place> {
        let mut queue = self.lock();
        if queue.free > 0 && queue.waiting == 0 {
            queue.free -= 1;
            return Ok(Place::Now(Slot(Some(self.clone()))));
        }
        // Checks whose callers went away (deadline, cancellation) leave.
        let queue = &mut *queue;
        if let Some(own) = queue.by_source.get_mut(&source) {
            let before = own.len();
            own.retain(|tx| !tx.is_closed());
            queue.waiting -= before - own.len();
            if own.is_empty() {
                queue.by_source.remove(&source);
                queue.turn.retain(|s| *s != source);
            }
        }
        let own = queue.by_source.get(&source).map_or(0, VecDeque::len);
        let why = if queue.waiting >= self.limit {
            "queue_full"
        } else if own >= self.per_source {
            "source_full"
        } else {
            let (tx, rx) = oneshot::channel();
            let own = queue.by_source.entry(source).or_default();
            if own.is_empty() {
                queue.turn.push_back(source);
            }
            own.push_back(tx);
            queue.waiting += 1;
            return Ok(Place::Queued(rx));
        };
        metrics::counter!("authzd_password_hash_refused_total", "reason" => why).increment(1);
        Err(Error::Busy {
            why: "too many password checks waiting; retry later".into(),
            retry_after: Duration::from_secs(1),
        })
    }

    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut queue = self.lock();
                let Some(source) = queue.turn.pop_front() else {
                    queue.free += 1;
                    return;
                };
                let Some(own) = queue.by_source.get_mut(&source) else {
                    continue;
                };
                let next = own.pop_front();
                if own.is_empty() {
                    queue.by_source.remove(&source);
                } else {
                    queue.turn.push_back(source);
                }
                if next.is_some() {
                    queue.waiting -= 1;
                }
                next
            };
            let Some(tx) = next else { continue };
            // A check that went away leaves the slot to the next one.
            match tx.send(Slot(Some(self.clone()))) {
                Ok(()) => return,
                Err(mut slot) => {
                    slot.0 = None;
                }
            }
        }
    }
}

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &str) -> Result<String> {
    argon2()?
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| Error::internal(format!("argon2 hash: {e}")))
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    // Parameters come from the stored hash, so old hashes keep verifying.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

impl PasswordHasher {
    /// `concurrency` bounds simultaneous hashes (and so their memory);
    /// `queue_limit` the checks waiting for one, `per_source` those of one
    /// source.
    pub fn new(concurrency: usize, queue_limit: usize, per_source: usize) -> Result<Self> {
        let dummy_hash = hash_blocking("authzd-dummy-password-for-unknown-users")?;
        Ok(Self {
            slots: Arc::new(Slots {
                state: Mutex::new(Queue {
                    free: concurrency.max(1),
                    ..Queue::default()
                }),
                limit: queue_limit.max(1),
                per_source: per_source.max(1),
            }),
            dummy_hash: dummy_hash.into(),
            verifications: Arc::new(AtomicU64::new(0)),
            recent: Arc::default(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        source: Source,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, Duration)> {
        let queued = Instant::now();
        let slot = match self.slots.take(source)? {
            Place::Now(slot) => slot,
            Place::Queued(rx) => rx
                .await
                .map_err(|_| Error::internal("password hashing queue closed"))?,
        };
        let waited = queued.elapsed();
        metrics::histogram!("authzd_password_hash_wait_seconds").record(waited.as_secs_f64());
        let value = tokio::task::spawn_blocking(move || {
            let value = job();
            drop(slot);
            value
        })
        .await
        .map_err(|e| Error::internal(format!("password hashing task: {e}")))?;
        Ok((value, waited))
    }

    /// Password verifications performed so far (known and unknown users alike).
    /// The median time of the last verifications, queueing included (20 ms
    /// before any): what a refusal without verifying waits, so it takes as
    /// long as one with.
    pub fn median_verification(&self) -> Duration {
        let mut recent: Vec<u64> = self
            .recent
            .lock()
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default();
        if recent.is_empty() {
            return Duration::from_millis(20);
        }
        recent.sort_unstable();
        Duration::from_micros(recent[recent.len() / 2])
    }

    /// Checks waiting for a hashing slot now.
    pub fn waiting(&self) -> usize {
        self.slots.lock().waiting
    }

    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    pub async fn hash(&self, password: &Secret, source: Source) -> Result<String> {
        let password = password.clone();
        let (hash, _) = self
            .run(source, move || hash_blocking(password.expose()))
            .await?;
        hash
    }

    /// Verifies against `hash`, or against a dummy when there is none, so an
    /// unknown user costs the same work as a wrong password.
    pub async fn verify(
        &self,
        password: &Secret,
        hash: Option<&str>,
        source: Source,
    ) -> Result<bool> {
        let known = hash.is_some();
        let password = password.clone();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let started = Instant::now();
        let (ok, waited) = self
            .run(source, move || verify_blocking(password.expose(), &hash))
            .await?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(took);
        }
        tracing::trace!(waited_us = waited.as_micros() as u64, "password verified");
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hasher = PasswordHasher::new(1, 8, 8).unwrap();
        let secret = Secret::new("correct horse");
        let hash = hasher.hash(&secret, Source::LOCAL).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify(&secret, Some(&hash), Source::LOCAL)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&Secret::new("wrong"), Some(&hash), Source::LOCAL)
                .await
                .unwrap()
        );
        assert!(!hasher.verify(&secret, None, Source::LOCAL).await.unwrap());
        assert!(
            !hasher
                .verify(&secret, Some("not a hash"), Source::LOCAL)
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        // One slot, one waiting: of 6 checks at once, some are refused.
        let hasher = PasswordHasher::new(1, 1, 1).unwrap();
        let mut checks = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let hasher = hasher.clone();
            checks
                .spawn(async move { hasher.verify(&Secret::new("x"), None, Source::LOCAL).await });
        }
        let mut refused = 0;
        while let Some(result) = checks.join_next().await {
            match result.unwrap() {
                Ok(_) => {}
                Err(Error::Busy { .. }) => refused += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(refused >= 1, "no check was refused");
        assert!(
            refused <= 4,
            "{refused} refused: the running and waiting ones must pass"
        );
        // The queue drains: a later check runs.
        assert!(
            hasher
                .verify(&Secret::new("x"), None, Source::LOCAL)
                .await
                .is_ok()
        );
    }

    /// Waits until `n` checks wait for a slot.
    async fn wait_for_waiting(hasher: &PasswordHasher, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while hasher.waiting() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} waiting",
                hasher.waiting()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_source_is_served_before_the_first_sources_queue_drains() {
        let hasher = PasswordHasher::new(1, 64, 16).unwrap();
        let flood = Source::from_ip("10.0.0.1".parse().unwrap());
        let other = Source::from_ip("10.0.0.2".parse().unwrap());
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut checks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (hasher, done) = (hasher.clone(), done.clone());
            checks.spawn(async move {
                hasher.verify(&Secret::new("x"), None, flood).await.unwrap();
                done.lock().unwrap().push(format!("flood-{i}"));
            });
        }
        // The flood is queued (one running, seven waiting; six if the first
        // is done already) before the other source asks.
        wait_for_waiting(&hasher, 6).await;
        hasher.verify(&Secret::new("x"), None, other).await.unwrap();
        done.lock().unwrap().push("other".into());
        while let Some(finished) = checks.join_next().await {
            finished.unwrap();
        }
        let done = done.lock().unwrap().clone();
        assert_eq!(done.len(), 9, "every flood check finished: {done:?}");
        let position = done.iter().position(|d| d == "other").unwrap();
        assert!(
            position <= 2,
            "the other source waited behind the flood: {done:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_source_cannot_take_the_whole_queue() {
        let hasher = PasswordHasher::new(1, 64, 2).unwrap();
        let flood = Source::from_ip("10.0.0.1".parse().unwrap());
        let mut checks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let hasher = hasher.clone();
            checks.spawn(async move { hasher.verify(&Secret::new("x"), None, flood).await });
        }
        // One running and the flooding source's two places taken: the
        // other five were refused at once.
        wait_for_waiting(&hasher, 2).await;
        let other = Source::from_ip("10.0.0.2".parse().unwrap());
        assert!(hasher.verify(&Secret::new("x"), None, other).await.is_ok());
        let mut refused = 0;
        while let Some(result) = checks.join_next().await {
            if matches!(result.unwrap(), Err(Error::Busy { .. })) {
                refused += 1;
            }
        }
        // One running, two queued: the rest of the flood is refused.
        assert_eq!(refused, 5);
    }
}
