//! Abuse limits: token buckets per trader and per client address, answered 429 with Retry-After.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` per second; a request takes one. The
//! map of buckets is bounded (`max_keys`): a bucket that has refilled completely is the same as
//! no bucket, so those are dropped first; if every bucket is still in use, the least recently
//! used one is dropped (an attacker cycling addresses can only reset their own buckets early).
//! IPv6 clients are limited per /64, the block one subscriber usually holds.
//!
//! Pure apart from the lock: the caller passes the time, so tests drive the clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Measured heap bytes per bucket, at most (key, tokens, time and hash-table slack;
/// tests/memory.rs): the budget in k8s/market-view.yaml is computed from it.
pub const BYTES_PER_BUCKET: usize = 160;

/// Rate and burst of one kind of bucket (`rate` 0: unlimited).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens per second.
    pub per_second: f64,
    /// Bucket size (requests allowed at once after a quiet spell).
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by `K`.
pub struct RateLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        RateLimiter {
            rate,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket at `now`, or says how long until one is available.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        if per_second <= 0.0 {
            return Ok(());
        }
        let burst = burst.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            self.make_room(&mut buckets, per_second, burst, now);
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_second))
        }
    }

    /// Drops the buckets that refilled completely; if that frees nothing, the least recently
    /// used eighth (so the cost of making room is paid once per `max_keys / 8` new keys).
    fn make_room(
        &self,
        buckets: &mut HashMap<K, Bucket>,
        per_second: f64,
        burst: f64,
        now: Instant,
    ) {
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
        });
        if buckets.len() < self.max_keys {
            return;
        }
        let mut by_age: Vec<(Instant, K)> =
            buckets.iter().map(|(k, b)| (b.at, k.clone())).collect();
        let drop = (self.max_keys / 8 + 1).min(by_age.len());
        by_age.select_nth_unstable_by_key(drop - 1, |(at, _)| *at);
        for (_, k) in by_age.into_iter().take(drop) {
            buckets.remove(&k);
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key a client address is limited under: the address itself, or its /64 for IPv6.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Whole seconds to put in Retry-After (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = RateLimiter::new(
            Rate {
                per_second: 10.0,
                burst: 5.0,
            },
            100,
        );
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check(&"A", t0), Ok(()));
        }
        let wait = l.check(&"A", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        // Another key has its own bucket.
        assert_eq!(l.check(&"B", t0), Ok(()));
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.check(&"A", t1), Ok(()));
        assert!(l.check(&"A", t1).is_err());
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(l.check(&"A", t2), Ok(()));
        }
        assert!(l.check(&"A", t2).is_err());
    }

    #[test]
    fn a_zero_rate_is_unlimited() {
        let l = RateLimiter::new(
            Rate {
                per_second: 0.0,
                burst: 0.0,
            },
            1,
        );
        let t = Instant::now();
        assert!((0..10_000).all(|i| l.check(&i, t).is_ok()));
        assert!(l.is_empty());
    }

    #[test]
    fn the_map_of_buckets_is_bounded_and_busy_buckets_survive_idle_ones() {
        let l = RateLimiter::new(
            Rate {
                per_second: 1.0,
                burst: 2.0,
            },
            64,
        );
        let t0 = Instant::now();
        // A flooding key empties its bucket.
        assert!(l.check(&u32::MAX, t0).is_ok() && l.check(&u32::MAX, t0).is_ok());
        assert!(l.check(&u32::MAX, t0).is_err());
        // Many keys, each with one request, later on: the map never exceeds its bound…
        for i in 0..10_000u32 {
            let _ = l.check(&i, t0 + Duration::from_millis(1 + u64::from(i) / 100));
            assert!(l.len() <= 64, "{} buckets", l.len());
        }
        // …and the map was not simply reset: recent keys are still limited.
        let t = t0 + Duration::from_millis(101);
        assert!(l.check(&9_999, t).is_ok());
        assert!(l.check(&9_999, t).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let v4: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(ip_key(v4), "10.1.2.3".parse::<IpAddr>().unwrap());
    }
}
