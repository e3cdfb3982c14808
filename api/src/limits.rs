//! Rate limits (the seed's): requests per client address, GraphQL requests per user, and
//! login attempts per address and account. Each limit is a GCRA bucket (`governor`) of
//! `burst` requests refilled evenly over its window, so a client that used its burst gets
//! one more request every `window / burst` and the whole burst back after one window.
//! A refused request is answered 429 with `Retry-After` (whole seconds, at least 1).

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

/// One limit: `burst` requests per `window`, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed in one window (`None` = unlimited).
    pub burst: Option<NonZeroU32>,
    /// The window they refill over.
    pub window: Duration,
}

impl Limit {
    /// `burst` per `window`.
    #[must_use]
    pub fn new(burst: u32, window: Duration) -> Self {
        Self { burst: NonZeroU32::new(burst), window }
    }

    /// No limit.
    #[must_use]
    pub const fn off() -> Self {
        Self { burst: None, window: Duration::from_secs(60) }
    }
}

/// Parses `N/WINDOW` (`60/1m`, `5/15m`, `10/30s`, `100/1h`) or `off`.
impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") || s == "0" {
            return Ok(Self::off());
        }
        let bad = || format!("`{s}` is not a rate limit: write N/WINDOW (60/1m, 5/15m, 10/30s) or off");
        let (n, window) = s.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let (digits, unit) = window.split_at(window.find(|c: char| !c.is_ascii_digit()).unwrap_or(window.len()));
        let amount: u64 = if digits.is_empty() { 1 } else { digits.parse().map_err(|_| bad())? };
        let secs = match unit {
            "s" => amount,
            "m" => amount * 60,
            "h" => amount * 3600,
            _ => return Err(bad()),
        };
        if secs == 0 || n == 0 {
            return Err(bad());
        }
        Ok(Self::new(n, Duration::from_secs(secs)))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.burst {
            None => f.write_str("off"),
            Some(n) => write!(f, "{n}/{}s", self.window.as_secs()),
        }
    }
}

/// The three limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Requests to `/api/graphql` per client address (seed: 60 per minute).
    pub per_ip: Limit,
    /// GraphQL requests per signed-in user (seed: 100 per minute).
    pub per_user: Limit,
    /// Login attempts per client address and account (seed: 5 per 15 minutes).
    pub login: Limit,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_ip: Limit::new(60, Duration::from_secs(60)),
            per_user: Limit::new(100, Duration::from_secs(60)),
            login: Limit::new(5, Duration::from_secs(15 * 60)),
        }
    }
}

impl LimitSettings {
    /// Every limit off (tests that are not about limits; benchmarks).
    #[must_use]
    pub const fn off() -> Self {
        Self { per_ip: Limit::off(), per_user: Limit::off(), login: Limit::off() }
    }
}

/// A keyed limiter; [`Keyed::check`] returns how long to wait when the key is over.
pub struct Keyed<K: Hash + Eq + Clone> {
    limiter: Option<RateLimiter<K, governor::state::keyed::DefaultKeyedStateStore<K>, DefaultClock>>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(limit: Limit) -> Self {
        let limiter = limit.burst.map(|burst| {
            let period = (limit.window / burst.get()).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period).map_or_else(|| Quota::per_second(burst), |q| q.allow_burst(burst));
            RateLimiter::keyed(quota)
        });
        Self { limiter, checks: AtomicU64::new(0) }
    }

    /// Counts one request for `key`: `Err(wait)` when it is over its limit.
    ///
    /// # Errors
    /// The time until the key may send again.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        // Forget idle keys now and then, so the table does not grow without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The limiters a running API shares.
pub struct RateLimits {
    /// Per client address ([`client_key`]: an IPv6 /64 is one).
    pub per_ip: Keyed<IpAddr>,
    /// Per user id.
    pub per_user: Keyed<uuid::Uuid>,
    /// Per client address ([`client_key`]) and account (lower-cased email).
    pub login: Keyed<(IpAddr, String)>,
    /// What they were built from.
    pub settings: LimitSettings,
}

impl RateLimits {
    /// Limiters for `settings`.
    #[must_use]
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            per_ip: Keyed::new(settings.per_ip),
            per_user: Keyed::new(settings.per_user),
            login: Keyed::new(settings.login),
            settings,
        }
    }
}

/// The address a client is counted under by the per-address limits (requests, logins,
/// and the HTTP server's connections): an IPv4 address (an IPv4-mapped IPv6 one as
/// IPv4), or the /64 network of an IPv6 address. One subscriber usually holds a whole /64:
/// keyed by the full address, such a client would get a fresh limit for each of its 2^64
/// addresses.
#[must_use]
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
#[must_use]
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!("60/1m".parse::<Limit>(), Ok(Limit::new(60, Duration::from_secs(60))));
        assert_eq!("5/15m".parse::<Limit>(), Ok(Limit::new(5, Duration::from_secs(900))));
        assert_eq!("10/30s".parse::<Limit>(), Ok(Limit::new(10, Duration::from_secs(30))));
        assert_eq!("100/h".parse::<Limit>(), Ok(Limit::new(100, Duration::from_secs(3600))));
        assert_eq!("off".parse::<Limit>(), Ok(Limit::off()));
        for bad in ["", "60", "60/", "x/1m", "60/1d", "0/1m", "60/0s", "-1/1m"] {
            assert!(bad.parse::<Limit>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn refuses_after_the_burst_and_names_the_wait() {
        let k = Keyed::new(Limit::new(3, Duration::from_secs(30)));
        for _ in 0..3 {
            assert!(k.check(&1).is_ok());
        }
        let wait = k.check(&1).expect_err("fourth request refused");
        assert!(wait <= Duration::from_secs(10) && wait > Duration::from_secs(9), "{wait:?}");
        assert_eq!(retry_after_secs(wait), 10);
        assert!(k.check(&2).is_ok(), "other keys are not affected");
    }

    #[test]
    fn an_ipv6_network_is_one_client_and_a_mapped_ipv4_is_its_ipv4() {
        let key = |s: &str| client_key(s.parse().expect("address"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        // Two addresses of one /64 share one request limit.
        let per_ip = Keyed::new(Limit::new(2, Duration::from_secs(60)));
        for a in ["2001:db8::1", "2001:db8::2"] {
            assert!(per_ip.check(&key(a)).is_ok(), "{a}");
        }
        assert!(per_ip.check(&key("2001:db8::3")).is_err(), "a third address of the same /64");
        assert!(per_ip.check(&key("2001:db8:0:1::1")).is_ok(), "another /64");
    }

    #[test]
    fn off_never_refuses() {
        let k = Keyed::new(Limit::off());
        for _ in 0..10_000 {
            assert!(k.check(&1).is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
