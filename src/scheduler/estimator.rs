//! Allocation-free estimators the adaptive controller is built from: a windowed maximum, an
//! EWMA of mean and variance, and a delivery tracker that turns finished APPENDs into
//! aggregate goodput samples.
//!
//! No crate covers these (adaptive-anchors.md §4, "EWMA / filters": "write them"), and they are
//! a few lines each. Every one works in fixed-size arrays so that one `observe` stays far below a
//! microsecond and never allocates.

use std::time::Duration;
use tokio::time::Instant;

/// The maximum of the last `N` samples (BBR's bottleneck-bandwidth filter, counted in samples
/// instead of round trips).
///
/// A plain ring scanned on insert: with `N` ≤ 16 a scan is a handful of comparisons, simpler
/// than Kathleen Nichols' three-sample filter and exact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowedMax<const N: usize> {
    buf: [f64; N],
    len: usize,
    next: usize,
    max: f64,
}

impl<const N: usize> WindowedMax<N> {
    /// An empty filter.
    pub(crate) const fn new() -> Self {
        WindowedMax {
            buf: [0.0; N],
            len: 0,
            next: 0,
            max: 0.0,
        }
    }

    /// Adds a sample (non-finite or negative samples are ignored), evicting the oldest.
    pub(crate) fn push(&mut self, x: f64) {
        if !x.is_finite() || x < 0.0 || N == 0 {
            return;
        }
        self.buf[self.next] = x;
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
        self.recompute();
    }

    /// The maximum of the window, `None` while empty.
    pub(crate) fn get(&self) -> Option<f64> {
        (self.len > 0).then_some(self.max)
    }

    /// Forgets everything and starts again from one sample.
    pub(crate) fn reset_to(&mut self, x: f64) {
        *self = Self::new();
        self.push(x);
    }

    fn recompute(&mut self) {
        self.max = self.buf[..self.len].iter().copied().fold(0.0, f64::max);
    }
}

/// An exponentially weighted mean and variance, with West's incremental recurrence as in
/// Vector's `EwmaVar` (adaptive-anchors.md §2.1):
/// `diff = x − mean; mean += a·diff; var = (1 − a)·(var + a·diff²)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EwmaVar {
    weight: f64,
    mean: f64,
    var: f64,
    seeded: bool,
}

impl EwmaVar {
    /// An empty average where each new sample has weight `weight` (0 < weight ≤ 1).
    pub(crate) const fn new(weight: f64) -> Self {
        EwmaVar {
            weight,
            mean: 0.0,
            var: 0.0,
            seeded: false,
        }
    }

    /// Starts from a known mean and standard deviation (a warm start).
    pub(crate) fn seed(&mut self, mean: f64, dev: f64) {
        if mean.is_finite() && dev.is_finite() {
            self.mean = mean;
            self.var = dev * dev;
            self.seeded = true;
        }
    }

    /// Adds a sample; the first one sets the mean.
    pub(crate) fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if !self.seeded {
            self.mean = x;
            self.var = 0.0;
            self.seeded = true;
            return;
        }
        let diff = x - self.mean;
        self.mean += self.weight * diff;
        self.var = (1.0 - self.weight) * (self.var + self.weight * diff * diff);
    }

    /// The mean, `None` before the first sample.
    pub(crate) fn mean(&self) -> Option<f64> {
        self.seeded.then_some(self.mean)
    }

    /// The standard deviation (0 before the second sample).
    pub(crate) fn dev(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// How many recent completions the delivery tracker remembers.
///
/// Source: reasonable default. A sample's window reaches back to the last completion before
/// the request started, i.e. at most `max_in_flight` completions (≤ 32); 64 covers that with
/// room to spare, and older history only ever makes the window longer (more conservative).
const DELIVERY_HISTORY: usize = 64;

/// Windows shorter than this give no rate sample.
///
/// Source: Netflix concurrency-limits' `WindowedLimit` ignores RTTs below 100 µs
/// (adaptive-anchors.md §2.2): such intervals measure timer noise, not the link.
const MIN_RATE_INTERVAL: Duration = Duration::from_micros(100);

/// An aggregate goodput sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateSample {
    /// Payload bytes per second.
    pub(crate) rate: f64,
    /// Bytes sent before the window were delivered inside it with nothing to balance them, so
    /// the sample overstates the rate: fewer requests were in flight at the end of the window
    /// than at its start (the pipe drained), or a request counted in it had started more than
    /// a window's length before the window (a long-lived request, most of whose bytes went
    /// before).
    pub(crate) drained: bool,
}

/// Turns finished APPENDs into *aggregate* goodput samples, BBR's delivery-rate sampling
/// applied to whole requests (adaptive-anchors.md §2.7).
///
/// With `k` requests sharing a link, one request's own `bytes / duration` is about `rate / k`.
/// So a sample instead counts every byte acknowledged — by any request — between the last
/// completion before this request started and this request's completion, over that interval
/// (BBR's `ack_elapsed`). In a pipelined steady state that window holds exactly the `k`
/// completions of one round and the sample equals the link's goodput: the bytes other requests
/// sent before the window are balanced by the bytes still in flight at its end. When the pipe
/// drains instead (fewer requests in flight at the end), nothing balances them and the sample
/// is flagged [`RateSample::drained`]; BBR guards the same case with `send_elapsed`, which for
/// multi-megabyte requests would understate every steady-state sample. The same flag marks a
/// window that counts a request which started more than a window's length before it: in a
/// pipelined steady state every request counted started within one round (one window) before
/// the window, and a request older than that (one that lived through several rounds of
/// others, slowed by sharing) brings more bytes from before the window than the requests in
/// flight at its end can balance. Found by the FIFO link model (`sim::fifo`): on a 1 Mbit/s
/// link a 1 MiB request that lived 15 s while small ones came and went made a 4 s window
/// read 2.5 times the link rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeliveryTracker {
    /// `(completion time, bytes delivered after it, requests still in flight after it, start
    /// of the request that completed)`.
    history: [Option<(Instant, u64, u32, Instant)>; DELIVERY_HISTORY],
    next: usize,
    pushed: u64,
    delivered: u64,
}

impl DeliveryTracker {
    /// No deliveries yet.
    pub(crate) const fn new() -> Self {
        DeliveryTracker {
            history: [None; DELIVERY_HISTORY],
            next: 0,
            pushed: 0,
            delivered: 0,
        }
    }

    /// Total payload bytes acknowledged so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Records a successful request of `bytes` that ran from `started` to `finished`, after
    /// which `in_flight_after` requests remain in flight, and returns the aggregate goodput
    /// sample, if the interval is long enough to mean anything.
    pub(crate) fn on_delivery(
        &mut self,
        started: Instant,
        finished: Instant,
        bytes: u64,
        in_flight_after: u32,
    ) -> Option<RateSample> {
        // The latest completion at or before `started` (entries may be slightly out of order,
        // so scan them all; of simultaneous ones, the last recorded).
        let mut base: Option<(Instant, u64, u32)> = None;
        let mut oldest: Option<(Instant, u64, u32)> = None;
        for &(t, c, n, _) in self.history.iter().flatten() {
            if t <= started && base.is_none_or(|(bt, bc, _)| t > bt || (t == bt && c > bc)) {
                base = Some((t, c, n));
            }
            if oldest.is_none_or(|(ot, _, _)| t < ot) {
                oldest = Some((t, c, n));
            }
        }
        let (t0, c0, n0) = match base {
            Some(b) => b,
            // Nothing finished before this request started and nothing was forgotten: the
            // window starts with the request, from zero delivered.
            None if self.pushed <= DELIVERY_HISTORY as u64 => (started, 0, 0),
            // History overflowed during a long request: measure over what is remembered.
            None => oldest.unwrap_or((started, self.delivered, 0)),
        };
        let interval = finished.saturating_duration_since(t0);
        // A request counted in the window (completed after its start) that started more than
        // a window's length before it.
        let old_counted = t0.checked_sub(interval).is_some_and(|limit| {
            self.history
                .iter()
                .flatten()
                .any(|&(t, c, _, s)| (t > t0 || (t == t0 && c > c0)) && s < limit)
        });

        self.delivered = self.delivered.saturating_add(bytes);
        self.history[self.next] = Some((finished, self.delivered, in_flight_after, started));
        self.next = (self.next + 1) % DELIVERY_HISTORY;
        self.pushed += 1;

        if interval < MIN_RATE_INTERVAL {
            return None;
        }
        Some(RateSample {
            rate: self.delivered.saturating_sub(c0) as f64 / interval.as_secs_f64(),
            drained: in_flight_after < n0 || old_counted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_max_tracks_the_last_n_samples() {
        let mut w = WindowedMax::<3>::new();
        assert_eq!(w.get(), None);
        w.push(5.0);
        w.push(1.0);
        w.push(2.0);
        assert_eq!(w.get(), Some(5.0));
        w.push(1.0); // evicts 5
        assert_eq!(w.get(), Some(2.0));
        w.push(f64::NAN);
        w.push(-1.0);
        assert_eq!(w.get(), Some(2.0));
        w.reset_to(0.5);
        assert_eq!(w.get(), Some(0.5));
    }

    #[test]
    fn ewma_var_follows_wests_recurrence() {
        let mut e = EwmaVar::new(0.5);
        assert_eq!(e.mean(), None);
        e.push(2.0);
        assert_eq!(e.mean(), Some(2.0));
        assert_eq!(e.dev(), 0.0);
        e.push(4.0);
        // diff = 2, mean = 3, var = 0.5·(0 + 0.5·4) = 1
        assert_eq!(e.mean(), Some(3.0));
        assert!((e.dev() - 1.0).abs() < 1e-12);
    }

    #[tokio::test(start_paused = true)]
    async fn delivery_samples_count_every_request_sharing_the_link() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let rate = |x: Option<RateSample>| x.unwrap().rate;
        let mut d = DeliveryTracker::new();
        // Two requests of 1000 B start together and share a 1000 B/s link: both end at 2 s.
        let first = d.on_delivery(s(0), s(2000), 1000, 1).unwrap();
        assert!((first.rate - 500.0).abs() < 1e-9, "{first:?}");
        assert!(!first.drained);
        let second = rate(d.on_delivery(s(0), s(2000), 1000, 0));
        assert!((second - 1000.0).abs() < 1e-9, "{second}");
        // Pipelined: a request started at 2 s (when the others finished) and ending at 4 s,
        // with another completion at 3 s in between, saw 2000 B in 2 s.
        d.on_delivery(s(1000), s(3000), 1000, 1);
        let third = d.on_delivery(s(2000), s(4000), 1000, 1).unwrap();
        assert!((third.rate - 1000.0).abs() < 1e-9, "{third:?}");
        assert!(!third.drained);
        assert_eq!(d.delivered(), 4000);
        // A zero-length interval gives no sample.
        assert_eq!(d.on_delivery(s(4000), s(4000), 10, 1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_pipe_flags_its_samples() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut d = DeliveryTracker::new();
        // A completes at 1 s leaving B in flight (B was nearly done); C starts at 1 s; B ends
        // at 1.5 s, C at 2 s with nothing left in flight: 2000 B "in" 1 s, from a 1000 B/s link.
        d.on_delivery(s(0), s(1000), 1000, 1);
        d.on_delivery(s(200), s(1500), 1000, 1);
        let c = d.on_delivery(s(1000), s(2000), 1000, 0).unwrap();
        assert!((c.rate - 2000.0).abs() < 1e-9);
        assert!(c.drained);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_counting_a_long_lived_request_is_flagged() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut d = DeliveryTracker::new();
        // A (1000 B) runs from 0 to 17.9 s while B comes and goes beside it; C starts at 13.8 s
        // (when B ends) and ends at 18 s, after A: its window (4.2 s) counts A, which started
        // 13.8 s before the window. One request stays in flight throughout (no drain).
        d.on_delivery(s(9000), s(13_800), 100, 1);
        let a = d.on_delivery(s(0), s(17_900), 1000, 1).unwrap();
        assert!(!a.drained, "{a:?}");
        let c = d.on_delivery(s(13_800), s(18_000), 100, 1).unwrap();
        assert!(c.drained, "{c:?}");
        assert!(c.rate > 250.0, "{c:?}"); // 1100 B in 4.2 s, from a link doing ≈ 60 B/s

        // Pipelined 4 s requests, one starting every 2 s: each window counts one neighbour
        // that started 2 s before it, which is normal.
        let mut d = DeliveryTracker::new();
        for i in 0..6u64 {
            let x = d
                .on_delivery(s(2000 * i), s(2000 * i + 4000), 100, 1)
                .unwrap();
            assert!(!x.drained, "{i}: {x:?}");
        }
    }
}
