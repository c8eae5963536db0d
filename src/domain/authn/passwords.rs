//! argon2id hashing, off the async workers and bounded, so a burst of logins
//! cannot starve the runtime or exhaust memory (each hash takes 19 MiB).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::secret::Secret;
use crate::error::{Error, Result};

/// OWASP's minimum for argon2id: m=19 MiB, t=2, p=1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Checks waiting for a permit, bounded by `queue_limit`.
    waiting: Arc<AtomicUsize>,
    queue_limit: usize,
    /// Verified against when the user is unknown, so that case costs the same.
    dummy_hash: Arc<str>,
    verifications: Arc<AtomicU64>,
    /// The last verifications' durations (µs), for the median a locked
    /// user's refusal waits instead of verifying.
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>,
}

/// Verification durations kept for the median.
const RECENT: usize = 31;

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
    /// `queue_limit` the checks waiting for one.
    pub fn new(concurrency: usize, queue_limit: usize) -> Result<Self> {
        let dummy_hash = hash_blocking("authzd-dummy-password-for-unknown-users")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            queue_limit: queue_limit.max(1),
            dummy_hash: dummy_hash.into(),
            verifications: Arc::new(AtomicU64::new(0)),
            recent: Arc::default(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, Duration)> {
        let queued = Instant::now();
        // A storm of password checks fails fast past the queue's bound
        // rather than making everyone wait seconds.
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("authzd_password_hash_refused_total").increment(1);
            return Err(Error::LimitReached(
                "too many password checks waiting; retry later".into(),
            ));
        }
        let permit = self.permits.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let _permit = permit.map_err(|_| Error::internal("password hashing pool closed"))?;
        let waited = queued.elapsed();
        metrics::histogram!("authzd_password_hash_wait_seconds").record(waited.as_secs_f64());
        let value = tokio::task::spawn_blocking(job)
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

    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    pub async fn hash(&self, password: &Secret) -> Result<String> {
        let password = password.clone();
        let (hash, _) = self.run(move || hash_blocking(password.expose())).await?;
        hash
    }

    /// Verifies against `hash`, or against a dummy when there is none, so an
    /// unknown user costs the same work as a wrong password.
    pub async fn verify(&self, password: &Secret, hash: Option<&str>) -> Result<bool> {
        let known = hash.is_some();
        let password = password.clone();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let started = Instant::now();
        let (ok, waited) = self
            .run(move || verify_blocking(password.expose(), &hash))
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
        let hasher = PasswordHasher::new(1, 8).unwrap();
        let secret = Secret::new("correct horse");
        let hash = hasher.hash(&secret).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify(&secret, Some(&hash)).await.unwrap());
        assert!(
            !hasher
                .verify(&Secret::new("wrong"), Some(&hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(&secret, None).await.unwrap());
        assert!(!hasher.verify(&secret, Some("not a hash")).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        // One slot, one waiting: of 6 checks at once, some are refused.
        let hasher = PasswordHasher::new(1, 1).unwrap();
        let mut checks = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let hasher = hasher.clone();
            checks.spawn(async move { hasher.verify(&Secret::new("x"), None).await });
        }
        let mut refused = 0;
        while let Some(result) = checks.join_next().await {
            match result.unwrap() {
                Ok(_) => {}
                Err(Error::LimitReached(_)) => refused += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(refused >= 1, "no check was refused");
        assert!(
            refused <= 4,
            "{refused} refused: the running and waiting ones must pass"
        );
        // The queue drains: a later check runs.
        assert!(hasher.verify(&Secret::new("x"), None).await.is_ok());
    }
}
