//! Rate caps on bytes and on requests, enforced through [`Strategy::not_before`].
//!
//! [`Strategy::not_before`]: super::Strategy::not_before

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// A rate cap: at most `amount` units (bytes or requests) per `per`, with `burst` units that
/// may go out back to back before pacing starts.
///
/// Used for [`AdaptiveConfig::byte_rate_cap`](super::AdaptiveConfig::byte_rate_cap) (units are
/// payload bytes: leave headroom on metered or shared links, as rclone's `--bwlimit` does) and
/// [`AdaptiveConfig::request_rate_cap`](super::AdaptiveConfig::request_rate_cap) (units are
/// APPEND attempts: stay under a server's request quota).
///
/// ```
/// use chunkwise::scheduler::RateCap;
/// use std::time::Duration;
/// // 1 MB/s with a 256 KiB burst.
/// let cap = RateCap::per_second(1_000_000).with_burst(256 * 1024);
/// assert_eq!(cap.per, Duration::from_secs(1));
/// // 900 APPENDs per 15 minutes.
/// let quota = RateCap::new(900, Duration::from_secs(15 * 60));
/// assert_eq!(quota.burst, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCap {
    /// Units allowed per `per`.
    pub amount: u64,
    /// The period `amount` refers to.
    pub per: Duration,
    /// Units that may be sent at once on top of the steady pace (0: strictly paced).
    pub burst: u64,
}

impl RateCap {
    /// `amount` units per `per`, strictly paced.
    pub const fn new(amount: u64, per: Duration) -> Self {
        RateCap {
            amount,
            per,
            burst: 0,
        }
    }

    /// `amount` units per second, strictly paced.
    pub const fn per_second(amount: u64) -> Self {
        RateCap::new(amount, Duration::from_secs(1))
    }

    /// The same cap with a burst allowance.
    pub const fn with_burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }

    /// Units per second.
    pub fn units_per_sec(&self) -> f64 {
        self.amount as f64 / self.per.as_secs_f64()
    }
}

/// GCRA ("virtual scheduling") accounting for one [`RateCap`], charged *after* the fact.
///
/// Hand-written rather than governor's `RateLimiter` because the controller learns the size of
/// a request only as it starts (in `start_attempt`) and cannot refuse it then: the request
/// must be charged in full, going into debt if it is larger than the burst, and the *next*
/// send delayed accordingly. governor's `check_n` only charges conforming batches and rejects
/// any batch above the burst with `InsufficientCapacity` (adaptive-anchors.md §4), so it cannot
/// express that; the GCRA it implements is the three lines below, driven by the engine's own
/// `Instant`s (no clock to fake).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer {
    /// Seconds one unit occupies at the capped rate.
    emission: f64,
    /// Seconds of burst tolerance.
    tolerance: Duration,
    /// Theoretical arrival time of the next unit.
    tat: Option<Instant>,
}

impl Pacer {
    /// Pacing for `cap` (which [`RateCap`] validation has checked is positive).
    pub(crate) fn new(cap: RateCap) -> Self {
        let emission = cap.per.as_secs_f64() / cap.amount.max(1) as f64;
        Pacer {
            emission,
            tolerance: secs(emission * cap.burst as f64),
            tat: None,
        }
    }

    /// Charges `units` sent at `now`.
    pub(crate) fn charge(&mut self, now: Instant, units: u64) {
        let start = self.tat.map_or(now, |t| t.max(now));
        self.tat = Some(later(start, secs(self.emission * units as f64)));
    }

    /// The earliest instant the next send conforms, if that is after `now`.
    pub(crate) fn not_before(&self, now: Instant) -> Option<Instant> {
        let tat = self.tat?;
        let allowed = tat.checked_sub(self.tolerance).unwrap_or(now);
        (allowed > now).then_some(allowed)
    }
}

/// `t + d`, saturating instead of panicking when the sum does not fit an `Instant` (a huge
/// `Retry-After`, a cap charged with an absurd size): then `t` plus about a century, or `t`.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d)
        .or_else(|| t.checked_add(CENTURY))
        .unwrap_or(t)
}

/// A `Duration` from seconds, saturating instead of panicking: NaN and negatives give zero,
/// infinity and overflow give `Duration::MAX`.
pub(crate) fn secs(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gcra_paces_bytes_and_allows_the_burst() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // 1000 B/s, burst 500 B.
        let mut p = Pacer::new(RateCap::per_second(1000).with_burst(500));
        assert_eq!(p.not_before(t0), None);
        p.charge(t0, 500); // tat = 0.5 s, tolerance 0.5 s: next may go now
        assert_eq!(p.not_before(t0), None);
        p.charge(t0, 1000); // tat = 1.5 s: next at 1.0 s
        assert_eq!(p.not_before(t0), Some(ms(1000)));
        assert_eq!(p.not_before(ms(1000)), None);
        // Idle time does not bank credit beyond the burst.
        p.charge(ms(5000), 1000); // tat = 6 s → next at 5.5 s
        assert_eq!(p.not_before(ms(5000)), Some(ms(5500)));
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_charges_do_not_panic() {
        let t0 = Instant::now();
        let mut p = Pacer::new(RateCap::new(1, Duration::from_secs(3600)));
        p.charge(t0, u64::MAX);
        p.charge(t0, u64::MAX);
        assert!(p.not_before(t0).is_some_and(|t| t > t0));
        assert_eq!(
            later(t0, Duration::MAX),
            later(t0, Duration::from_secs(100 * 365 * 24 * 3600))
        );
    }

    #[test]
    fn secs_saturates() {
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::INFINITY), Duration::MAX);
        assert_eq!(secs(1e300), Duration::MAX);
        assert_eq!(secs(1.5), Duration::from_millis(1500));
    }
}
