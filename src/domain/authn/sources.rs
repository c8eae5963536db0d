//! Where a credential comes from, and the per-source limit on failed
//! authentications: a token bucket per source, refilled at a steady rate,
//! charged by failures only, so a sibling service's legitimate bursts pass
//! and a guesser is slowed to the refill rate.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The source of a credential: an IP address, IPv6 ones grouped by their
/// /64 (one host usually holds a whole /64, so per-address buckets would
/// give it 2^64 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// Requests with no address (in-process, local tools) share one source.
    pub const LOCAL: Source = Source(IpAddr::V6(Ipv6Addr::UNSPECIFIED));

    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }

    /// The source a request names (`client_address`, an IP address with or
    /// without a port), else its peer.
    pub fn of(field: &str, named: &str, peer: Option<std::net::SocketAddr>) -> Result<Self> {
        if named.is_empty() {
            return Ok(peer.map_or(Self::LOCAL, |p| Self::from_ip(p.ip())));
        }
        named
            .parse::<IpAddr>()
            .or_else(|_| named.parse::<std::net::SocketAddr>().map(|s| s.ip()))
            .map(Self::from_ip)
            .map_err(|_| Error::invalid(field, "must be an IP address"))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) if *self != Self::LOCAL => write!(f, "{v6}/64"),
            ip => write!(f, "{ip}"),
        }
    }
}

/// The `rate_limit.*` settings.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitSettings {
    /// Failed authentications per second a source may keep up.
    pub per_second: f64,
    /// Failures a source may make at once before the rate applies.
    pub burst: f64,
    /// Sources remembered; the least recently seen are forgotten first.
    pub max_sources: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by source, in a bounded cache: a forgotten source starts
/// with a full bucket, which is what it would have had after `burst /
/// per_second` seconds anyway, so idle entries expire after that.
#[derive(Clone)]
pub struct SourceLimiter {
    settings: RateLimitSettings,
    buckets: moka::sync::Cache<Source, Arc<Mutex<Bucket>>>,
}

impl SourceLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        let refill = Duration::from_secs_f64((settings.burst / settings.per_second).max(1.0));
        Self {
            settings,
            buckets: moka::sync::Cache::builder()
                .max_capacity(settings.max_sources)
                .time_to_idle(refill)
                .build(),
        }
    }

    fn refilled(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * self.settings.per_second).min(self.settings.burst);
        bucket.at = now;
    }

    /// Refuses a source whose failures have used up its bucket, saying when
    /// the next attempt may come. A refusal costs a token too: a source
    /// that keeps hammering stays refused (up to `burst / per_second`
    /// seconds of debt) instead of slipping a guess in at every refill.
    pub fn check(&self, source: Source) -> Result<()> {
        let Some(bucket) = self.buckets.get(&source) else {
            return Ok(());
        };
        let Ok(mut bucket) = bucket.lock() else {
            return Ok(());
        };
        self.refilled(&mut bucket, Instant::now());
        if bucket.tokens >= 1.0 {
            return Ok(());
        }
        bucket.tokens = (bucket.tokens - 1.0).max(-self.settings.burst);
        let retry_after = Duration::from_secs_f64((1.0 - bucket.tokens) / self.settings.per_second);
        drop(bucket);
        metrics::counter!("authzd_rate_limited_total").increment(1);
        log_limited(source);
        Err(Error::Busy {
            why: "too many failed authentications from this source; retry later".into(),
            retry_after,
        })
    }

    /// Takes a token for a failed authentication. Failures already in
    /// flight when the bucket ran dry leave it in debt, so over time a
    /// source's failures never exceed the rate.
    pub fn charge(&self, source: Source) {
        let burst = self.settings.burst;
        let bucket = self.buckets.get_with(source, || {
            Arc::new(Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }))
        });
        if let Ok(mut bucket) = bucket.lock() {
            self.refilled(&mut bucket, Instant::now());
            bucket.tokens = (bucket.tokens - 1.0).max(-burst);
        }
    }
}

impl SourceLimiter {
    /// Gives back a token taken by `charge` for an attempt that did not
    /// fail (password attempts are charged before they are verified).
    pub fn refund(&self, source: Source) {
        if let Some(bucket) = self.buckets.get(&source)
            && let Ok(mut bucket) = bucket.lock()
        {
            bucket.tokens = (bucket.tokens + 1.0).min(self.settings.burst);
        }
    }
}

/// The longest a refused credential check is held before it is answered.
pub const MAX_HOLD: Duration = Duration::from_secs(1);

/// Holds a `Busy` refusal for its retry delay, up to `max_hold`, before it
/// is answered; the answer's delay is what remains (at least 1 ms). A
/// client that retries at once is so paced to about one attempt a second
/// per concurrent request, and a storm of refused guesses costs next to
/// nothing instead of a tight loop of RPCs.
pub async fn held(err: Error, max_hold: Duration) -> Error {
    match err {
        Error::Busy { why, retry_after } => {
            let hold = retry_after.min(max_hold);
            if !hold.is_zero() {
                tokio::time::sleep(hold).await;
            }
            Error::Busy {
                why,
                retry_after: retry_after
                    .saturating_sub(hold)
                    .max(Duration::from_millis(1)),
            }
        }
        other => other,
    }
}

/// One log line per second at most while sources are being refused.
fn log_limited(source: Source) {
    static THROTTLE: crate::telemetry::LogThrottle = crate::telemetry::LogThrottle::new();
    if let Some(suppressed) = THROTTLE.admit() {
        tracing::warn!(%source, suppressed, "failed authentications rate-limited");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> SourceLimiter {
        SourceLimiter::new(RateLimitSettings {
            per_second,
            burst,
            max_sources: 100,
        })
    }

    #[test]
    fn failures_past_the_burst_are_refused_with_a_retry_delay_and_others_pass() {
        let limiter = limiter(1.0, 3.0);
        let a = Source::from_ip("10.0.0.1".parse().unwrap());
        let b = Source::from_ip("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.charge(a);
        }
        // Empty: refused, and the refusal itself is a token of debt.
        match limiter.check(a) {
            Err(Error::Busy { retry_after, .. }) => {
                assert!(retry_after > Duration::from_millis(1500), "{retry_after:?}");
                assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        match limiter.check(a) {
            Err(Error::Busy { retry_after, .. }) => {
                assert!(retry_after > Duration::from_millis(2500), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(limiter.check(b).is_ok(), "another source is not limited");
    }

    #[test]
    fn a_refunded_attempt_costs_nothing() {
        let limiter = limiter(1.0, 2.0);
        let a = Source::from_ip("10.0.0.1".parse().unwrap());
        for _ in 0..10 {
            assert!(limiter.check(a).is_ok());
            limiter.charge(a);
            limiter.refund(a);
        }
        limiter.charge(a);
        limiter.charge(a);
        assert!(limiter.check(a).is_err());
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let limiter = limiter(10.0, 2.0);
        let a = Source::from_ip("10.0.0.1".parse().unwrap());
        limiter.charge(a);
        limiter.charge(a);
        match limiter.check(a) {
            // One token of debt (the refusal) and one to spend: 200 ms at 10/s.
            Err(Error::Busy { retry_after, .. }) => {
                assert!(
                    (Duration::from_millis(150)..=Duration::from_millis(200))
                        .contains(&retry_after),
                    "{retry_after:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Not refilled 20 ms on; that refusal costs one more token, so
        // about 1.8 tokens of debt and one to spend: 280 ms at 10/s.
        std::thread::sleep(Duration::from_millis(20));
        assert!(limiter.check(a).is_err());
        std::thread::sleep(Duration::from_millis(400));
        assert!(limiter.check(a).is_ok());
    }

    #[tokio::test]
    async fn a_refusal_is_held_for_its_delay_up_to_a_second() {
        let busy = |ms| Error::Busy {
            why: "x".into(),
            retry_after: Duration::from_millis(ms),
        };
        let started = Instant::now();
        match held(busy(30), MAX_HOLD).await {
            Error::Busy { retry_after, .. } => assert_eq!(retry_after, Duration::from_millis(1)),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(30));
        let started = Instant::now();
        match held(busy(1100), MAX_HOLD).await {
            Error::Busy { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        assert!(
            took >= MAX_HOLD && took < Duration::from_millis(1090),
            "{took:?}"
        );
    }

    #[test]
    fn ipv6_sources_are_grouped_by_their_64_and_mapped_ipv4_is_ipv4() {
        let one = Source::from_ip("2001:db8:1:2::1".parse().unwrap());
        let other = Source::from_ip("2001:db8:1:2:ffff::9".parse().unwrap());
        let elsewhere = Source::from_ip("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(one, other);
        assert_ne!(one, elsewhere);
        assert_eq!(one.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            Source::from_ip("::ffff:10.1.2.3".parse().unwrap()),
            Source::from_ip("10.1.2.3".parse().unwrap())
        );
    }

    #[test]
    fn a_named_address_must_be_an_ip_and_may_carry_a_port() {
        let peer = Some("127.0.0.1:5000".parse().unwrap());
        assert_eq!(
            Source::of("client_address", "", peer).unwrap().to_string(),
            "127.0.0.1"
        );
        assert_eq!(
            Source::of("client_address", "192.0.2.7:443", peer)
                .unwrap()
                .to_string(),
            "192.0.2.7"
        );
        assert!(matches!(
            Source::of("client_address", "example.com", peer),
            Err(Error::InvalidArgument { field, .. }) if field == "client_address"
        ));
    }
}
