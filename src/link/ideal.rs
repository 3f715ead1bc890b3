//! The ideal completion time of an upload over a link profile, and efficiency; what is
//! counted is documented on [`IdealTime`].

use std::time::Duration;

use super::profiles::LinkProfile;
use super::schedule::Bottleneck;

/// Request/response round trips a protocol cannot overlap with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoundTrips {
    /// Round trips before the first payload byte can be sent (INIT).
    pub before: u32,
    /// Round trips after the last APPEND's response (FINALIZE, and any STATUS poll the caller
    /// wants to count).
    pub after: u32,
}

impl RoundTrips {
    /// The X chunked upload: INIT before the payload, FINALIZE after it.
    pub const CHUNKED_UPLOAD: RoundTrips = RoundTrips {
        before: 1,
        after: 1,
    };
    /// No protocol round trips (the transfer plus the tail only).
    pub const NONE: RoundTrips = RoundTrips {
        before: 0,
        after: 0,
    };
}

impl Default for RoundTrips {
    /// [`RoundTrips::CHUNKED_UPLOAD`].
    fn default() -> Self {
        RoundTrips::CHUNKED_UPLOAD
    }
}

/// The ideal completion time of an upload, broken down into its parts.
///
/// # What is counted
///
/// The ideal is the fastest any client could finish a chunked upload of `payload_bytes` over the
/// profile, starting at schedule time `start` (the proxy's start offset plus the time between
/// the proxy's start and the upload's start):
///
/// 1. **Round trips before the payload** ([`RoundTrips::before`], 1 for INIT): each costs one
///    propagation RTT, `up.delay + down.delay`.
/// 2. **The payload**: every uplink capacity byte offered after that point carries payload, from
///    the first one on, with no gap, until `payload_bytes` have left the bottleneck (a saturated
///    FIFO queue on the uplink schedule, outages and start offset included).
/// 3. **The tail**: the last payload byte's one-way trip to the server (`up.delay`) and the last
///    APPEND response's one-way trip back (`down.delay`).
/// 4. **Round trips after the payload** ([`RoundTrips::after`], 1 for FINALIZE): one RTT each.
///
/// Not counted: the TCP handshake (one RTT through [`LinkProxy`](crate::link::LinkProxy); use
/// `RoundTrips { before: 2, .. }` to count one connection setup), TCP, TLS and HTTP headers, multipart framing and the request and response
/// bodies other than the payload; TCP slow start; server processing and STATUS polling. The
/// round trips of steps 1 and 4 are pure propagation and are assumed to get through even
/// during an outage. So the ideal is a lower bound, and `efficiency = ideal / actual <= 1`
/// for any real upload over the emulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdealTime {
    /// The round trips before the payload.
    pub before: Duration,
    /// From the first usable uplink opportunity to the departure of the last payload byte.
    pub transfer: Duration,
    /// The last byte's one-way trip plus its response's one-way trip back.
    pub tail: Duration,
    /// The round trips after the payload.
    pub after: Duration,
    /// The sum of the above.
    pub total: Duration,
}

impl IdealTime {
    /// The ideal for `payload_bytes` over `profile`, starting at schedule time `start`.
    pub fn compute(
        profile: &LinkProfile,
        start: Duration,
        payload_bytes: u64,
        round_trips: RoundTrips,
    ) -> IdealTime {
        let (up, down) = (profile.up(), profile.down());
        let rtt = up.delay().saturating_add(down.delay());
        let before = rtt.saturating_mul(round_trips.before);
        let after = rtt.saturating_mul(round_trips.after);
        let tail = rtt;
        // The payload enters the uplink queue, all at once, when the round trips before it are
        // done; the queue then never runs empty until the last byte leaves.
        let payload_start = start.saturating_add(before);
        let mut queue = Bottleneck::new(up.schedule().clone(), payload_start);
        let transfer = queue.enqueue(Duration::ZERO, payload_bytes).last_departure;
        let total = before
            .saturating_add(transfer)
            .saturating_add(tail)
            .saturating_add(after);
        IdealTime {
            before,
            transfer,
            tail,
            after,
            total,
        }
    }
}

/// The ideal completion time of an upload of `payload_bytes` over `profile` started at
/// schedule time 0; [`IdealTime`] lists what is counted.
///
/// ```
/// use std::time::Duration;
/// use chunkwise::link::{ideal_time, LinkProfile, RoundTrips};
///
/// // 10 Mbit/s, 20 ms each way: INIT (40 ms) + 1.25 MB at 1.25 MB/s (1 s) + tail (40 ms)
/// // + FINALIZE (40 ms).
/// let p = LinkProfile::from_name("constant-10mbit-40ms")?;
/// let t = ideal_time(&p, 1_250_000, RoundTrips::CHUNKED_UPLOAD);
/// assert_eq!(t, Duration::from_millis(1120));
/// # Ok::<(), chunkwise::Error>(())
/// ```
pub fn ideal_time(profile: &LinkProfile, payload_bytes: u64, round_trips: RoundTrips) -> Duration {
    IdealTime::compute(profile, Duration::ZERO, payload_bytes, round_trips).total
}

/// The smallest payload (a multiple of `granule` bytes, at most `max_bytes`) whose ideal time
/// over `profile` (from schedule time 0, with `round_trips`) is at least `target`: how the
/// bench harness and the scenario simulations size a file for a link. The ideal grows with
/// the payload, so a bisection finds it; `max_bytes` is returned when even it falls short.
/// A `granule` of 0 is treated as 1.
///
/// ```
/// use chunkwise::link::{LinkProfile, RoundTrips, ideal_time, payload_for_ideal};
/// use std::time::Duration;
/// let p = LinkProfile::from_name("constant-10mbit-40ms")?;
/// let size = payload_for_ideal(&p, Duration::from_secs(10), RoundTrips::CHUNKED_UPLOAD, 1024, 1 << 30);
/// assert!(ideal_time(&p, size, RoundTrips::CHUNKED_UPLOAD) >= Duration::from_secs(10));
/// assert!(ideal_time(&p, size - 1024, RoundTrips::CHUNKED_UPLOAD) < Duration::from_secs(10));
/// # Ok::<(), chunkwise::Error>(())
/// ```
pub fn payload_for_ideal(
    profile: &LinkProfile,
    target: Duration,
    round_trips: RoundTrips,
    granule: u64,
    max_bytes: u64,
) -> u64 {
    let granule = granule.max(1);
    let reaches = |units: u64| ideal_time(profile, units * granule, round_trips) >= target;
    let max_units = max_bytes / granule;
    if !reaches(max_units) {
        return max_bytes;
    }
    // Invariant: `lo` does not reach the target (or is 0), `hi` does.
    let (mut lo, mut hi) = (0u64, max_units);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reaches(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi * granule
}

/// `ideal / actual`: 1.0 means the upload used every opportunity; 0.0 if `actual` is zero.
pub fn efficiency(ideal: Duration, actual: Duration) -> f64 {
    if actual.is_zero() {
        return 0.0;
    }
    ideal.as_secs_f64() / actual.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Link, Schedule};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn profile(up: Schedule, up_delay: u64, down_delay: u64) -> LinkProfile {
        LinkProfile::new(
            "test",
            Link::new(up, ms(up_delay), 1 << 20),
            Link::constant(100_000_000, ms(down_delay)).unwrap(),
        )
    }

    #[test]
    fn constant_link_ideal_is_transfer_plus_round_trips() {
        // 8 Mbit/s = 1 MB/s, 10 ms up, 30 ms down: RTT 40 ms.
        let p = profile(Schedule::constant(8_000_000).unwrap(), 10, 30);
        let t = IdealTime::compute(&p, Duration::ZERO, 1_000_000, RoundTrips::CHUNKED_UPLOAD);
        // The payload is enqueued at 40 ms; its first byte leaves 1 µs later, its last at
        // 1040 ms.
        assert_eq!(t.before, ms(40));
        assert_eq!(t.transfer, ms(1000));
        assert_eq!(t.tail, ms(40));
        assert_eq!(t.after, ms(40));
        assert_eq!(t.total, ms(1120));
        let bare = ideal_time(&p, 1_000_000, RoundTrips::NONE);
        assert_eq!(bare, ms(1040));
        let two_polls = ideal_time(
            &p,
            1_000_000,
            RoundTrips {
                before: 1,
                after: 3,
            },
        );
        assert_eq!(two_polls, t.total + ms(80));
    }

    #[test]
    fn ideal_follows_steps_outages_and_start_offset() {
        // 1 MB/s for 1 s, then 0 for 1 s (loop 2 s); no delays.
        let s = Schedule::steps([(ms(1000), 8_000_000), (ms(1000), 0)]).unwrap();
        let p = profile(s, 0, 0);
        // 1.5 MB: 1 MB in the first second, nothing in the second, 0.5 MB in the third.
        assert_eq!(ideal_time(&p, 1_500_000, RoundTrips::NONE), ms(2500));
        // Starting at 0.5 s: 0.5 MB, pause, 1 MB.
        let t = IdealTime::compute(&p, ms(500), 1_500_000, RoundTrips::NONE);
        assert_eq!(t.total, ms(2500));
        // Starting inside the silent second.
        let t = IdealTime::compute(&p, ms(1500), 1_000, RoundTrips::NONE);
        assert_eq!(t.total, ms(501));

        // Trace: a packet at 1 and 2 ms of each 2 ms loop; an outage over (2, 6] ms;
        // 5 ms delay each way, so INIT ends at 10 ms.
        let s = Schedule::from_mahimahi_str("1\n2\n")
            .unwrap()
            .with_outage(ms(2), ms(4));
        let p = profile(s, 5, 5);
        // Payload enters at 10 ms; opportunities after 10 ms: 11, 12 → 3000 bytes done at 12.
        let t = IdealTime::compute(&p, Duration::ZERO, 3000, RoundTrips::CHUNKED_UPLOAD);
        assert_eq!(t.transfer, ms(2));
        assert_eq!(t.total, ms(10 + 2 + 10 + 10));
        // Starting at 0 with no round trips before: opportunities 1, 2, (3-6 out), 7, 8.
        let t = IdealTime::compute(&p, Duration::ZERO, 4 * 1500, RoundTrips::NONE);
        assert_eq!(t.transfer, ms(8));
    }

    #[test]
    fn efficiency_is_a_ratio() {
        assert_eq!(efficiency(ms(500), ms(1000)), 0.5);
        assert_eq!(efficiency(ms(500), Duration::ZERO), 0.0);
    }
}
