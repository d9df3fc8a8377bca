//! The failed-authentication throttle of the admin API: failures are counted per client address
//! and per presented key prefix (`cbk_<12 hex>`) in a fixed window; once a subject reaches the
//! limit, its requests answer 429 (with `Retry-After`) until the window ends, whether or not the
//! key they carry is right. Guessing keys from one address, or guessing one key's secret from many
//! addresses, is slowed to `limit` tries per window.
//!
//! It owns only the counting; it must not check keys (that is `auth`) or log presented keys.
//! Time is passed in, so tests drive it without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failures allowed per subject per window.
pub const FAILURES_PER_WINDOW: u32 = 10;
/// The counting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Subjects tracked at most; past it, subjects whose window ended are forgotten first.
const MAX_SUBJECTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Address(IpAddr),
    Prefix(String),
}

#[derive(Debug, Clone, Copy)]
struct Count {
    since: Instant,
    failures: u32,
}

/// See the module docs.
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<Subject, Count>>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self::new(FAILURES_PER_WINDOW, WINDOW)
    }
}

fn subjects(address: Option<IpAddr>, prefix: Option<&str>) -> impl Iterator<Item = Subject> {
    address
        .map(Subject::Address)
        .into_iter()
        .chain(prefix.map(|p| Subject::Prefix(p.to_owned())))
}

impl AuthThrottle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when the address or the prefix is over the limit at `now`.
    pub fn check(
        &self,
        address: Option<IpAddr>,
        prefix: Option<&str>,
        now: Instant,
    ) -> Result<(), Duration> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for subject in subjects(address, prefix) {
            if let Some(count) = counts.get(&subject) {
                let ends = count.since + self.window;
                if count.failures >= self.limit && now < ends {
                    let left = ends - now;
                    wait = Some(wait.map_or(left, |w: Duration| w.max(left)));
                }
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed authentication of `address` with `prefix`.
    pub fn failed(&self, address: Option<IpAddr>, prefix: Option<&str>, now: Instant) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_SUBJECTS {
            let window = self.window;
            counts.retain(|_, c| now < c.since + window);
        }
        for subject in subjects(address, prefix) {
            if counts.len() >= MAX_SUBJECTS && !counts.contains_key(&subject) {
                // Still full of live subjects: count no new ones rather than grow without bound.
                continue;
            }
            let count = counts.entry(subject).or_insert(Count {
                since: now,
                failures: 0,
            });
            if now >= count.since + self.window {
                *count = Count {
                    since: now,
                    failures: 0,
                };
            }
            count.failures = count.failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_per_address_and_per_prefix_until_the_window_ends() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let a: IpAddr = "203.0.113.7".parse().expect("ip");
        let b: IpAddr = "198.51.100.9".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(throttle.check(Some(a), None, t0), Ok(()));
            throttle.failed(Some(a), Some("cbk_0123456789ab"), t0);
        }
        // The address is throttled, another address with another prefix is not…
        assert_eq!(
            throttle.check(Some(a), None, t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert_eq!(
            throttle.check(Some(b), Some("cbk_ffffffffffff"), t0),
            Ok(())
        );
        // …but the guessed key's prefix is, from any address.
        assert!(
            throttle
                .check(Some(b), Some("cbk_0123456789ab"), t0)
                .is_err()
        );
        // The window ends: allowed again.
        assert_eq!(
            throttle.check(
                Some(a),
                Some("cbk_0123456789ab"),
                t0 + Duration::from_secs(60)
            ),
            Ok(())
        );
    }
}
