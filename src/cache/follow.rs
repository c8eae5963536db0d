//! Following the change records: at start, every `poll_interval`, after
//! each local write, and (Postgres) on each NOTIFY, read the records after
//! the last one seen and evict what they touch. Notifications are only a
//! shortcut: a lost one is made good by the next poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use super::{Cache, Change};
use crate::error::Result;
use crate::store;

/// The channel the triggers notify on.
pub const CHANNEL: &str = "authzd_changes";
/// The listener's connection, as `pg_stat_activity` shows it.
pub const LISTENER_NAME: &str = "authzd-listener";
/// Records read per query while catching up.
const BATCH: u64 = 1000;

pub struct Follower {
    cache: Arc<Cache>,
    db: DatabaseConnection,
    last_seen: Mutex<i64>,
    wake: Notify,
    listening: AtomicBool,
}

impl Follower {
    /// Starts following from now: the key-id index is loaded after the
    /// position is read, so nothing in between is lost.
    pub async fn start(cache: Arc<Cache>, db: DatabaseConnection) -> Result<Arc<Self>> {
        let last_seen = store::changes::counter(&db).await?;
        let follower = Arc::new(Self {
            cache,
            db,
            last_seen: Mutex::new(last_seen),
            wake: Notify::new(),
            listening: AtomicBool::new(false),
        });
        follower.reload_key_ids().await?;
        follower.cache.mark_synced();
        Ok(follower)
    }

    async fn reload_key_ids(&self) -> Result<()> {
        let ids = store::changes::all_key_ids(&self.db).await?;
        self.cache.set_key_ids(ids);
        Ok(())
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Reads and applies every record after the last one seen. Serialised:
    /// records are applied in order, each once.
    pub async fn catch_up(&self) -> Result<()> {
        let mut last = self.last_seen.lock().await;
        loop {
            let rows = store::changes::after(&self.db, *last, BATCH).await?;
            let Some(first) = rows.first() else { break };
            if first.seq != *last + 1 {
                // Records were trimmed before this replica read them: what
                // it holds may be stale in ways it cannot know.
                tracing::warn!(
                    last_seen = *last,
                    next = first.seq,
                    "change records missed: clearing the cache"
                );
                self.cache.clear();
                self.reload_key_ids().await?;
            }
            let now_us = wall_clock_us();
            let mut understood = true;
            for row in &rows {
                match row
                    .id
                    .as_deref()
                    .and_then(|id| Change::parse(&row.kind, id))
                {
                    Some(change) => {
                        self.cache.evict(&change);
                        if let Change::Key(key_id) = &change {
                            self.cache.note_key_id(key_id, row.kind == "key");
                        }
                    }
                    None => {
                        // A record this version cannot read names something
                        // it cannot evict: forget everything, and say so,
                        // rather than stop following (or guess).
                        tracing::warn!(
                            seq = row.seq,
                            kind = %row.kind,
                            "change record not understood: clearing the cache"
                        );
                        metrics::counter!("authzd_cache_unreadable_changes_total").increment(1);
                        understood = false;
                    }
                }
                #[allow(clippy::cast_precision_loss)]
                let lag = (now_us - row.at_us).max(0) as f64 / 1e6;
                metrics::histogram!("authzd_cache_invalidation_lag_seconds").record(lag);
                *last = row.seq;
            }
            if !understood {
                self.cache.clear();
                self.reload_key_ids().await?;
            }
            metrics::gauge!("authzd_cache_followed_seq").set(*last as f64);
            if (rows.len() as u64) < BATCH {
                break;
            }
        }
        self.cache.mark_synced();
        Ok(())
    }

    /// The last change record applied.
    pub async fn position(&self) -> i64 {
        *self.last_seen.lock().await
    }

    /// Asks the poller to catch up now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }
}

/// Polls every `poll_interval` (or when woken), trims old records, and
/// reports staleness; with Postgres and `notify`, also listens.
pub async fn run_follower(follower: Arc<Follower>, url: Option<String>, stop: CancellationToken) {
    let settings = *follower.cache.settings();
    let listener = match url {
        Some(url) if settings.notify => {
            Some(tokio::spawn(listen(follower.clone(), url, stop.clone())))
        }
        _ => None,
    };
    let mut usable = true;
    let mut failing = false;
    let mut last_trim = tokio::time::Instant::now();
    loop {
        match follower.catch_up().await {
            Ok(()) => {
                if failing {
                    tracing::info!("change records followed again");
                }
                failing = false;
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(error = %err, "cannot read change records");
                }
                failing = true;
            }
        }
        let now_usable = follower.cache.usable();
        if now_usable != usable && follower.cache.settings().enabled {
            if now_usable {
                tracing::info!("cache caught up: answering from memory again");
            } else {
                tracing::warn!(
                    max_staleness_ms = settings.max_staleness.as_millis() as u64,
                    "cache stale: change records not followed; reading through to the database"
                );
            }
            usable = now_usable;
        }
        metrics::gauge!("authzd_cache_stale").set(if now_usable { 0.0 } else { 1.0 });
        metrics::gauge!("authzd_cache_last_sync_age_seconds")
            .set(follower.cache.sync_age().as_secs_f64());
        if last_trim.elapsed() > Duration::from_secs(60) {
            last_trim = tokio::time::Instant::now();
            let cutoff = wall_clock_us()
                - i64::try_from(settings.change_retention.as_micros()).unwrap_or(i64::MAX);
            if let Err(err) = store::changes::trim(&follower.db, cutoff).await {
                tracing::debug!(error = %err, "trimming change records failed");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = follower.wake.notified() => {}
            _ = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
    if let Some(listener) = listener {
        let _ = listener.await;
    }
}

async fn connect_listener(url: &str) -> std::result::Result<PgListener, sea_orm::sqlx::Error> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .application_name(LISTENER_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// One LISTEN connection, reconnected when it drops. Each notification
/// evicts at once and wakes the poller, which reads the records in order.
async fn listen(follower: Arc<Follower>, url: String, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = connect_listener(&url) => c,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(err) => {
                tracing::debug!(error = %err, "change listener cannot connect");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        follower.listening.store(true, Ordering::Relaxed);
        metrics::gauge!("authzd_cache_listener_connected").set(1.0);
        tracing::info!("change listener connected");
        // Whatever was sent while it was down is in the records.
        follower.wake();
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => {
                    follower.listening.store(false, Ordering::Relaxed);
                    return;
                }
                r = listener.try_recv() => r,
            };
            match received {
                Ok(Some(notification)) => {
                    let mut parts = notification.payload().splitn(3, ' ');
                    let (_seq, kind, id) = (parts.next(), parts.next(), parts.next());
                    if let (Some(kind), Some(id)) = (kind, id)
                        && let Some(change) = Change::parse(kind, id)
                    {
                        follower.cache.evict(&change);
                    }
                    follower.wake();
                }
                Ok(None) | Err(_) => break,
            }
        }
        follower.listening.store(false, Ordering::Relaxed);
        metrics::gauge!("authzd_cache_listener_connected").set(0.0);
        tracing::warn!("change listener disconnected; reconnecting (polling meanwhile)");
        follower.wake();
    }
}

/// The database's clock and ours agree on wall time, not on the test
/// Clock's offset: lag and retention are measured in real time.
fn wall_clock_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
