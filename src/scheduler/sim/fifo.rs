//! The link proxy's model in virtual time, on the link emulator's own schedule logic.
//!
//! [`FifoLink`] is what `link::LinkProxy` does to an upload, computed instead of waited for:
//!
//! - **Uplink**: one `link::Bottleneck` (the FIFO arithmetic the proxy itself runs) over the
//!   profile's uplink schedule, outages and loops included, holding at most the profile's
//!   queue size. Connections put bytes in only while the queue has room (the proxy's
//!   backpressure), in turn, at most [`SLICE`] at a time (the proxy reads 64 KiB per
//!   connection). A request's link bytes are its payload plus [`REQUEST_OVERHEAD`].
//! - **Response**: when a request's last byte has left the queue, it crosses the uplink delay,
//!   the server takes [`SERVER_TIME`], and [`RESPONSE_BYTES`] go back through a FIFO queue on
//!   the downlink schedule (outages included) and its delay. So the fixed cost of a request is
//!   one round trip plus the server time, and queueing behind other requests' bytes comes on
//!   top, as on the proxy.
//! - **Connections**: a pool as reqwest keeps one: a request takes an idle connection or opens
//!   a new one, whose first byte moves one round trip later (the proxy delays relaying by one
//!   RTT after accepting, as a TCP handshake would). A finished request returns its connection
//!   to the pool; an abandoned (deadline, stall) or reset one loses it. INIT leaves one idle
//!   connection ([`FifoLink::opening_time`]); FINALIZE is one more round trip
//!   ([`Session::closing_time`]).
//! - **Resets**: `Faults::resets_per_mib` resets **one connection**, the one whose bytes cross a
//!   seeded, exponentially distributed distance in bytes carried, as the proxy's reset dice do
//!   (the `lossy` profile); its request fails with a transport error at once and the others go
//!   on. `Faults::reset_at` resets **every** connection at those times, as a handover does.
//!   Bytes already in the queue of a failed or abandoned request still use their capacity.
//! - **Outages** stall requests: their bytes stay queued, nothing new enters, so their
//!   progress stops and the strategy's stall timeout or deadline decides.
//!
//! Not modelled: TCP congestion control and slow start (the proxy is a loopback relay with flow
//! control and no loss), socket buffers (progress is counted when bytes enter the emulated
//! queue, not the client's socket), response bytes in the reset count, and the engine's stall
//! check granularity (a stall is detected exactly at the stall timeout, not up to a quarter
//! later).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

use super::{Network, Session};
use crate::link::{Bottleneck, LinkProfile};
use crate::scheduler::Outcome;

/// Bytes a connection moves into the queue at a time.
///
/// Source: the link proxy's `READ_CHUNK` (64 KiB per read), which is also the slice the
/// protocol client streams an APPEND body in (`STALL_PROGRESS_QUANTUM`).
pub(crate) const SLICE: u64 = 64 * 1024;

/// Link bytes of an APPEND besides its payload: request line, headers (OAuth or bearer
/// authorization, content type, length) and the multipart framing of `media_id`,
/// `segment_index` and `media`.
///
/// Source: reasonable estimate of what the protocol client sends: about 300 bytes of headers,
/// 400 of `Authorization`, 300 of multipart boundaries and part headers.
pub(crate) const REQUEST_OVERHEAD: u64 = 1024;

/// Link bytes of an APPEND's response (status line and headers; the v1 204 has no body, v2's
/// JSON is small).
///
/// Source: reasonable estimate of a small HTTP/1.1 response.
pub(crate) const RESPONSE_BYTES: u64 = 512;

/// Server time per request: from the last byte received to the response sent.
///
/// Source: reasonable estimate for the local emulator, which stores a segment in memory (or a
/// spill file) and answers; X's own servers report a few milliseconds per APPEND.
pub(crate) const SERVER_TIME: Duration = Duration::from_millis(5);

/// A link profile as the link proxy would carry an upload (see the [module docs](self)).
pub(crate) struct FifoLink {
    /// Uplink, downlink, faults.
    pub(crate) profile: LinkProfile,
    /// Seed of the reset distances (the proxy's `ProxyOptions::seed`).
    pub(crate) seed: u64,
}

impl FifoLink {
    /// The profile with reset seed `seed`.
    pub(crate) fn new(profile: LinkProfile, seed: u64) -> Self {
        FifoLink { profile, seed }
    }

    /// The round trip, in seconds.
    pub(crate) fn rtt(&self) -> f64 {
        self.profile.rtt().as_secs_f64()
    }

    /// Seconds from the start of the upload to the first APPEND: INIT over a new connection
    /// (a handshake and a request round trip, plus the server time). The APPEND phase starts
    /// at this schedule time.
    pub(crate) fn opening_time(&self) -> f64 {
        2.0 * self.rtt() + SERVER_TIME.as_secs_f64()
    }
}

impl Network for FifoLink {
    fn open(&self) -> Box<dyn Session + '_> {
        let offset = Duration::from_secs_f64(self.opening_time());
        let up = self.profile.up();
        let down = self.profile.down();
        let cap = up.queue_bytes();
        let faults = self.profile.faults();
        let mut handovers: Vec<u64> = faults
            .reset_at
            .iter()
            .filter(|t| **t > offset)
            .map(|t| ns_of(*t - offset))
            .collect();
        handovers.sort_unstable();
        let mean = faults
            .has_reset_rate()
            .then(|| 1024.0 * 1024.0 / faults.resets_per_mib);
        Box::new(FifoSession {
            up: Bottleneck::new(up.schedule().clone(), offset),
            down: Bottleneck::new(down.schedule().clone(), offset),
            cap,
            admit: SLICE.min(cap / 2).max(1),
            up_delay: ns_of(up.delay()),
            down_delay: ns_of(down.delay()),
            rtt: ns_of(up.delay() + down.delay()),
            reqs: Vec::new(),
            idle: 1,
            turn: 0,
            dice: Dice::new(self.seed, mean),
            handovers,
            next_handover: 0,
            payload_sent: 0,
            now: 0,
        })
    }
}

fn ns_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Seconds (the driver's clock) to nanoseconds (the session's); negatives give 0.
fn ns(t: f64) -> u64 {
    // A float-to-int `as` cast saturates (and maps NaN to 0).
    (t * 1e9).round() as u64
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The seeded reset distances of the proxy (`link::proxy::ResetDice`, private there): an
/// exponentially distributed number of bytes carried between two resets.
struct Dice {
    rng: StdRng,
    mean: Option<f64>,
    carried: u64,
    next_at: Option<u64>,
}

impl Dice {
    fn new(seed: u64, mean: Option<f64>) -> Dice {
        let mut rng = StdRng::seed_from_u64(seed);
        let next_at = mean.map(|m| exponential(&mut rng, m));
        Dice {
            rng,
            mean,
            carried: 0,
            next_at,
        }
    }

    /// Counts `n` bytes carried; true if the connection carrying them is reset.
    fn carry(&mut self, n: u64) -> bool {
        self.carried = self.carried.saturating_add(n);
        match (self.next_at, self.mean) {
            (Some(at), Some(mean)) if self.carried >= at => {
                let d = exponential(&mut self.rng, mean);
                self.next_at = Some(self.carried.saturating_add(d));
                true
            }
            _ => false,
        }
    }
}

/// `-ln(1 − U)·mean`, at least 1 (the proxy's inverse-CDF draw).
fn exponential(rng: &mut StdRng, mean: f64) -> u64 {
    let u: f64 = rng.random();
    ((-(1.0 - u).ln() * mean) as u64).max(1)
}

struct FifoReq {
    id: u64,
    /// Link bytes (overhead, then payload) not yet in the queue.
    left: u64,
    /// Link bytes in the queue so far.
    queued: u64,
    /// When its connection can carry bytes (after a handshake if it is new), ns.
    ready_at: u64,
    /// When it last put bytes into the queue (its start before that), ns.
    last_progress: u64,
    /// When its response arrives, once every byte is queued, ns.
    resp_at: Option<u64>,
}

/// A session of [`FifoLink`]. Times are ns since the start of the APPEND phase (emulation time
/// of the bottlenecks).
struct FifoSession {
    up: Bottleneck,
    down: Bottleneck,
    cap: u64,
    /// Bytes of free queue space a connection waits for before it reads again.
    admit: u64,
    up_delay: u64,
    down_delay: u64,
    rtt: u64,
    /// In start order.
    reqs: Vec<FifoReq>,
    /// Idle connections in the pool.
    idle: u32,
    /// Round-robin position: the next sender is the first with an id at or after this.
    turn: u64,
    dice: Dice,
    handovers: Vec<u64>,
    next_handover: usize,
    payload_sent: u64,
    now: u64,
}

impl FifoSession {
    fn free(&self) -> u64 {
        self.cap
            .saturating_sub(self.up.backlog(Duration::from_nanos(self.now)))
    }

    fn is_sender(&self, r: &FifoReq) -> bool {
        r.left > 0 && r.ready_at <= self.now
    }

    /// The next sender in turn.
    fn next_sender(&self) -> Option<usize> {
        let pick = |from: u64| {
            self.reqs
                .iter()
                .position(|r| r.id >= from && self.is_sender(r))
        };
        pick(self.turn).or_else(|| pick(0))
    }

    /// Moves bytes into the queue while it has room, a slice per connection in turn.
    fn fill(&mut self, ended: &mut Vec<(u64, Outcome)>) {
        let now = Duration::from_nanos(self.now);
        loop {
            let free = self.free();
            if free < self.admit {
                return;
            }
            let Some(i) = self.next_sender() else { return };
            let r = &mut self.reqs[i];
            let n = free.min(SLICE).min(r.left);
            let e = self.up.enqueue(now, n);
            let payload_before = r.queued.saturating_sub(REQUEST_OVERHEAD);
            r.queued += n;
            r.left -= n;
            r.last_progress = self.now;
            self.payload_sent += r.queued.saturating_sub(REQUEST_OVERHEAD) - payload_before;
            self.turn = r.id + 1;
            if self.dice.carry(n) {
                ended.push((self.reqs.remove(i).id, Outcome::RetryableError));
                continue;
            }
            if r.left == 0 {
                // Last byte at the server, the server's answer, the answer's trip back.
                let at_server = e.last_departure + Duration::from_nanos(self.up_delay);
                let answered = at_server + SERVER_TIME;
                let back = self.down.enqueue(answered, RESPONSE_BYTES).last_departure;
                r.resp_at = Some(ns_of(back).saturating_add(self.down_delay));
            }
        }
    }
}

impl Session for FifoSession {
    fn start(&mut self, t: f64, id: u64, bytes: u64) {
        let now = ns(t).max(self.now);
        let ready_at = if self.idle > 0 {
            self.idle -= 1;
            now
        } else {
            now.saturating_add(self.rtt)
        };
        self.reqs.push(FifoReq {
            id,
            left: bytes.saturating_add(REQUEST_OVERHEAD),
            queued: 0,
            ready_at,
            last_progress: now,
            resp_at: None,
        });
    }

    fn abort(&mut self, _t: f64, id: u64) {
        self.reqs.retain(|r| r.id != id);
    }

    fn next_event(&self, _t: f64) -> f64 {
        let mut next = u64::MAX;
        let mut sending = false;
        for r in &self.reqs {
            if let Some(at) = r.resp_at {
                next = next.min(at);
            } else if r.ready_at > self.now {
                next = next.min(r.ready_at);
            } else {
                sending |= r.left > 0;
            }
        }
        if sending {
            let room = if self.free() >= self.admit {
                self.now
            } else {
                let at = self.up.drained_to(self.cap - self.admit);
                ns_of(at).max(self.now + 1)
            };
            next = next.min(room);
        }
        if let Some(&h) = self.handovers.get(self.next_handover) {
            next = next.min(h.max(self.now));
        }
        if next == u64::MAX {
            f64::INFINITY
        } else {
            secs(next)
        }
    }

    fn advance(&mut self, to: f64, ended: &mut Vec<(u64, Outcome)>) {
        self.now = ns(to).max(self.now);
        while self
            .handovers
            .get(self.next_handover)
            .is_some_and(|h| *h <= self.now)
        {
            self.next_handover += 1;
            self.idle = 0;
            for r in self.reqs.drain(..) {
                ended.push((r.id, Outcome::RetryableError));
            }
        }
        let now = self.now;
        let mut returned = 0;
        self.reqs.retain(|r| {
            if r.resp_at.is_some_and(|at| at <= now) {
                ended.push((r.id, Outcome::Success));
                returned += 1;
                false
            } else {
                true
            }
        });
        self.idle += returned;
        self.fill(ended);
    }

    fn progress(&self, id: u64) -> Option<f64> {
        self.reqs
            .iter()
            .find(|r| r.id == id && r.left > 0)
            .map(|r| secs(r.last_progress))
    }

    fn bytes_sent(&self) -> f64 {
        self.payload_sent as f64
    }

    fn closing_time(&self) -> f64 {
        // FINALIZE: a round trip and the server time, after a handshake if no connection is
        // left in the pool.
        let handshake = if self.idle > 0 { 0 } else { self.rtt };
        secs(self.rtt + handshake) + SERVER_TIME.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Faults, Link, LinkProfile, RoundTrips, Schedule, ideal_time};
    use crate::scheduler::FixedStrategy;
    use crate::scheduler::sim::{Setup, drive};
    use tokio::time::Instant;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// 8 Mbit/s (1 byte per µs) up with a 100 kB (100 ms) queue, 10 ms each way.
    fn one_mb_per_sec() -> LinkProfile {
        LinkProfile::new(
            "test",
            Link::new(Schedule::constant(8_000_000).unwrap(), ms(10), 100_000),
            Link::constant(1_000_000_000, ms(10)).unwrap(),
        )
    }

    fn run_fixed(link: &FifoLink, chunk: u64, n: usize, file: u64) -> super::super::Report {
        let mut s = FixedStrategy::new(chunk, n, Duration::from_secs(600));
        let setup = Setup::new(file, 5 << 20, 1e5);
        drive(&mut s, link, &setup, Instant::now(), |_, _| {})
    }

    #[tokio::test(start_paused = true)]
    async fn one_request_costs_its_bytes_and_a_round_trip() {
        let link = FifoLink::new(one_mb_per_sec(), 1);
        let r = run_fixed(&link, 1_000_000, 1, 1_000_000);
        assert!(r.completed);
        // 1 MB + overhead at 1 B/µs, 10 ms up, 5 ms server, 512 B down (≈ 4 µs), 10 ms back.
        let expected = (1_000_000 + REQUEST_OVERHEAD) as f64 * 1e-6 + 0.025 + 512.0 * 8e-9;
        assert!((r.finished_at - expected).abs() < 1e-5, "{}", r.finished_at);
        assert_eq!(r.bytes_sent, 1e6);
        // INIT + APPEND + FINALIZE against the ideal INIT + transfer + tail + FINALIZE.
        let total = link.opening_time() + r.finished_at + r.closing;
        let ideal = ideal_time(&link.profile, 1_000_000, RoundTrips::CHUNKED_UPLOAD);
        // Beyond the ideal: INIT's handshake (20 ms), three server times (15 ms) and the
        // request overhead (1 ms).
        let extra = total - ideal.as_secs_f64();
        assert!((extra - 0.036).abs() < 1e-4, "{total} {ideal:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sequential_requests_idle_the_link_parallel_ones_fill_it() {
        let link = FifoLink::new(one_mb_per_sec(), 1);
        let file = 10_000_000;
        // Ten 1 MB requests one at a time: ten transfers and ten fixed costs of ≈ 25 ms.
        let seq = run_fixed(&link, 1_000_000, 1, file);
        let each = (1_000_000 + REQUEST_OVERHEAD) as f64 * 1e-6 + 0.025;
        assert!(
            (seq.finished_at - 10.0 * each).abs() < 1e-3,
            "{}",
            seq.finished_at
        );
        // Two at a time: the second connection's handshake (20 ms) once, then the link stays
        // busy; the last response's fixed cost at the end.
        let par = run_fixed(&link, 1_000_000, 2, file);
        assert!(
            par.finished_at < 10.0 + 0.03 + 0.025 + 0.01,
            "{}",
            par.finished_at
        );
        assert!(par.finished_at > 10.0);
        // The two shared the queue in turns: the second, which waited for its handshake while
        // the first filled the queue, ends about a queue's time (100 ms) and a handshake later.
        let (a, b) = (&par.attempts[0], &par.attempts[1]);
        let gap = b.finished - a.finished;
        assert!((0.1..0.2).contains(&gap), "{a:?} {b:?}");
        assert!(a.finished > 1.8, "{a:?}"); // not 1 s: it shared the link
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_holds_requests_until_it_ends() {
        // 1 MB/s with nothing in (1 s, 11 s] of schedule time, both directions.
        let p = one_mb_per_sec();
        let up = p.up().clone();
        let up = up
            .clone()
            .with_schedule(up.schedule().clone().with_outage(ms(1000), ms(10_000)));
        let link = FifoLink::new(p.with_up(up), 1);
        let mut s = FixedStrategy::new(4_000_000, 1, Duration::from_secs(600));
        let setup = Setup::new(4_000_000, 5 << 20, 1e5);
        let r = drive(&mut s, &link, &setup, Instant::now(), |_, _| {});
        assert!(r.completed);
        assert_eq!(r.attempts.len(), 1);
        // 4 MB at 1 MB/s plus the 10 s outage.
        assert!((r.finished_at - 14.03).abs() < 0.05, "{}", r.finished_at);
    }

    #[tokio::test(start_paused = true)]
    async fn resets_hit_one_connection_handovers_all() {
        let lossy = one_mb_per_sec().with_faults(Faults {
            resets_per_mib: 0.25,
            reset_at: Vec::new(),
        });
        let link = FifoLink::new(lossy, 3);
        let file = 20_000_000;
        let r = run_fixed(&link, 1_000_000, 3, file);
        assert!(r.completed);
        let resets = r.count(|o| *o == Outcome::RetryableError);
        // About one reset per 4 MiB carried: ≈ 20 MB plus what the failed attempts carried.
        assert!((2..=10).contains(&resets), "{resets}");
        // A reset fails one request: the others in flight carry on.
        let first = r
            .attempts
            .iter()
            .find(|a| a.outcome == Outcome::RetryableError)
            .unwrap();
        assert_eq!(
            r.attempts
                .iter()
                .filter(|a| a.outcome == Outcome::RetryableError && a.finished == first.finished)
                .count(),
            1
        );
        assert!(r.bytes_sent > file as f64);

        let handover = one_mb_per_sec().with_faults(Faults {
            resets_per_mib: 0.0,
            reset_at: vec![Duration::from_secs(5)],
        });
        let link = FifoLink::new(handover, 3);
        let r = run_fixed(&link, 1_000_000, 3, file);
        assert!(r.completed);
        let at_handover: Vec<_> = r
            .attempts
            .iter()
            .filter(|a| a.outcome == Outcome::RetryableError)
            .collect();
        assert_eq!(at_handover.len(), 3, "{at_handover:?}");
        let t = 5.0 - link.opening_time();
        assert!(at_handover.iter().all(|a| (a.finished - t).abs() < 1e-6));
    }
}
