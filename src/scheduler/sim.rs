//! Model links and an engine-like driver for testing strategies without sockets or clocks.
//!
//! The driver ([`drive`], or [`run`] / [`run_with`] with the defaults) does what the engine
//! (`engine::upload`) does with a [`Strategy`]: plans segments one at a time with the engine's
//! clamp (`[ceil(remaining / segments_left), max_chunk]` and what is left), keeps up to
//! `max_in_flight` requests going, honours `not_before` and a 429's `Retry-After`, enforces
//! `request_deadline` and `stall_timeout`, retries failed segments with the same bytes after
//! the engine's backoff (full jitter, seeded), and reports every attempt, marking requests
//! app-limited when a slot stayed empty because the file ran out or the rest waited on backoff.
//! It also keeps the engine's retry accounting (attempts per segment, the upload-wide budget)
//! and, with [`Setup::give_up`], stops where the engine would fail the upload.
//!
//! A link is a [`Network`]; one run talks to a fresh [`Session`] of it. Two links exist:
//!
//! - [`Link`]: a processor-sharing bottleneck. Every request in its transfer phase gets an
//!   equal share of the scheduled rate; after its last byte it waits the fixed cost (round trip
//!   and server time) for its response. Optional random resets (exponential bytes between
//!   failures, fixed seed; the first request in transfer fails) and scripted 429s. The rate
//!   comes from a [`RateSchedule`]. Simple enough to compute by hand, which the step tests of
//!   the adaptive controller rely on.
//! - `fifo::FifoLink` (feature `emulator`): the link proxy's model on the link emulator's own
//!   schedule logic (`link::Bottleneck`): one FIFO queue of bounded size shared by every
//!   connection, propagation delays, connection setup, per-connection resets. The scenario
//!   table (`scenarios`) runs on it.
//!
//! Time is `f64` seconds from the start of the APPEND phase; observations carry
//! `base + t` as `tokio::time::Instant`s.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

use super::{Observation, Outcome, PlanContext, Strategy};
use crate::engine::RetryPolicy;
use crate::limits::MAX_SEGMENTS;

#[cfg(feature = "emulator")]
pub(crate) mod fifo;
#[cfg(feature = "emulator")]
mod scenarios;

/// A model link: something a run can open a fresh [`Session`] on.
pub(crate) trait Network {
    /// A fresh session (nothing in flight, the link's clock at 0).
    fn open(&self) -> Box<dyn Session + '_>;
}

/// One upload's view of a model link. Requests are identified by the driver's attempt number
/// (0-based, in start order). Times never go backwards between calls.
pub(crate) trait Session {
    /// Starts request `id` carrying `bytes` payload bytes at `t`.
    fn start(&mut self, t: f64, id: u64, bytes: u64);
    /// The client abandons request `id` at `t` (deadline or stall): it sends nothing more and
    /// its connection is closed.
    fn abort(&mut self, t: f64, id: u64);
    /// The next instant after `t` (the time of the last call) at which something happens on the
    /// link on its own; infinity if nothing ever will.
    fn next_event(&self, t: f64) -> f64;
    /// Moves the link to `to` (at most [`Session::next_event`]) and appends the requests that
    /// ended at `to` with their outcome (success, transport error, 429).
    fn advance(&mut self, to: f64, ended: &mut Vec<(u64, Outcome)>);
    /// When request `id` last moved a byte onto the link (its start if none yet), while it
    /// still has bytes to send; `None` once every byte is out (waiting for the response is not
    /// a stall, as in the engine).
    fn progress(&self, id: u64) -> Option<f64>;
    /// Payload bytes put on the link so far, by every attempt.
    fn bytes_sent(&self) -> f64;
    /// Seconds the upload still needs after its last APPEND response (FINALIZE), if the link
    /// models it.
    fn closing_time(&self) -> f64 {
        0.0
    }
}

/// Link rate over time, in bytes per second.
pub(crate) trait RateSchedule {
    /// The rate at `t` seconds.
    fn rate_at(&self, t: f64) -> f64;
    /// The next instant after `t` at which the rate changes.
    fn next_change_after(&self, t: f64) -> Option<f64>;
}

/// A piecewise-constant rate: `(start_secs, bytes_per_sec)` steps, the last one held.
#[derive(Debug, Clone)]
pub(crate) struct Steps(pub(crate) Vec<(f64, f64)>);

impl Steps {
    /// A constant rate in bits per second.
    pub(crate) fn constant_bits(bits_per_sec: f64) -> Self {
        Steps(vec![(0.0, bits_per_sec / 8.0)])
    }

    /// Steps given as `(start_secs, bits_per_sec)`.
    pub(crate) fn bits(steps: &[(f64, f64)]) -> Self {
        Steps(steps.iter().map(|&(t, b)| (t, b / 8.0)).collect())
    }

    /// A jittery link: every `period` seconds the rate is `mean_bits` times a factor drawn
    /// uniformly from `[1 − spread, 1 + spread]` (fixed seed), for `len` seconds, then held.
    pub(crate) fn jittery_bits(
        mean_bits: f64,
        spread: f64,
        period: f64,
        len: f64,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut steps = Vec::new();
        let mut t = 0.0;
        while t < len {
            let f = 1.0 - spread + 2.0 * spread * rng.random::<f64>();
            steps.push((t, mean_bits * f / 8.0));
            t += period;
        }
        Steps(steps)
    }
}

impl RateSchedule for Steps {
    fn rate_at(&self, t: f64) -> f64 {
        self.0
            .iter()
            .take_while(|(s, _)| *s <= t + 1e-12)
            .last()
            .map_or(0.0, |&(_, r)| r)
    }

    fn next_change_after(&self, t: f64) -> Option<f64> {
        self.0.iter().map(|&(s, _)| s).find(|s| *s > t + 1e-12)
    }
}

/// The processor-sharing model link.
pub(crate) struct Link {
    /// Rate schedule.
    pub(crate) schedule: Box<dyn RateSchedule>,
    /// Seconds from a request's last byte to its response.
    pub(crate) fixed_cost: f64,
    /// Mean bytes between random transport resets (`None`: no resets).
    pub(crate) reset_every: Option<f64>,
    /// Attempt numbers (0-based, in start order) answered with 429 and this `Retry-After`.
    pub(crate) throttle: Vec<(u64, Option<Duration>)>,
    /// Seed of the reset draws.
    pub(crate) seed: u64,
}

impl Link {
    /// A link with a schedule and fixed cost, no faults.
    pub(crate) fn new(schedule: impl RateSchedule + 'static, fixed_cost: f64) -> Self {
        Link {
            schedule: Box::new(schedule),
            fixed_cost,
            reset_every: None,
            throttle: Vec::new(),
            seed: 1,
        }
    }
}

impl Network for Link {
    fn open(&self) -> Box<dyn Session + '_> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let next_reset = draw_reset(self.reset_every, &mut rng);
        Box::new(SharedLink {
            link: self,
            rng,
            next_reset,
            transferred: 0.0,
            now: 0.0,
            reqs: Vec::new(),
        })
    }
}

fn draw_reset(mean: Option<f64>, rng: &mut StdRng) -> f64 {
    mean.map_or(f64::INFINITY, |m| -m * (1.0 - rng.random::<f64>()).ln())
}

struct SharedReq {
    id: u64,
    remaining: f64,
    last_progress: f64,
    resp_at: Option<f64>,
    throttled: Option<Option<Duration>>,
}

/// A session of the processor-sharing [`Link`].
struct SharedLink<'a> {
    link: &'a Link,
    rng: StdRng,
    next_reset: f64,
    transferred: f64,
    now: f64,
    reqs: Vec<SharedReq>,
}

impl SharedLink<'_> {
    /// The rate now, and each transferring request's share of it.
    fn shares(&self) -> (f64, usize, f64) {
        let rate = self.link.schedule.rate_at(self.now);
        let k = self.reqs.iter().filter(|r| r.resp_at.is_none()).count();
        let share = if k > 0 { rate / k as f64 } else { 0.0 };
        (rate, k, share)
    }
}

impl Session for SharedLink<'_> {
    fn start(&mut self, t: f64, id: u64, bytes: u64) {
        let throttled = self
            .link
            .throttle
            .iter()
            .find(|(n, _)| *n == id)
            .map(|&(_, d)| d);
        self.reqs.push(SharedReq {
            id,
            remaining: if throttled.is_some() {
                0.0
            } else {
                bytes as f64
            },
            last_progress: t,
            resp_at: throttled.map(|_| t + self.link.fixed_cost),
            throttled,
        });
    }

    fn abort(&mut self, _t: f64, id: u64) {
        self.reqs.retain(|r| r.id != id);
    }

    fn next_event(&self, t: f64) -> f64 {
        let (rate, k, share) = self.shares();
        let mut next = f64::INFINITY;
        for r in &self.reqs {
            match r.resp_at {
                None if share > 0.0 => next = next.min(t + r.remaining / share),
                None => {}
                Some(at) => next = next.min(at),
            }
        }
        if let Some(c) = self.link.schedule.next_change_after(t) {
            next = next.min(c);
        }
        if k > 0 && rate > 0.0 {
            next = next.min(t + (self.next_reset - self.transferred).max(0.0) / rate);
        }
        next
    }

    fn advance(&mut self, to: f64, ended: &mut Vec<(u64, Outcome)>) {
        let (rate, k, share) = self.shares();
        let dt = (to - self.now).max(0.0);
        for r in self.reqs.iter_mut().filter(|r| r.resp_at.is_none()) {
            r.remaining -= share * dt;
            if share > 0.0 {
                r.last_progress = to;
            }
        }
        if k > 0 {
            self.transferred += rate * dt;
        }
        self.now = to;

        if k > 0 && self.transferred >= self.next_reset - 1e-6 {
            if let Some(i) = self.reqs.iter().position(|r| r.resp_at.is_none()) {
                ended.push((self.reqs.remove(i).id, Outcome::RetryableError));
            }
            self.next_reset = self.transferred + draw_reset(self.link.reset_every, &mut self.rng);
        }
        let fixed_cost = self.link.fixed_cost;
        self.reqs.retain_mut(|r| {
            if r.resp_at.is_none() && r.remaining <= 1e-6 {
                r.remaining = 0.0;
                r.resp_at = Some(to + fixed_cost);
            }
            if r.resp_at.is_some_and(|at| at <= to + EPS) {
                let outcome = match r.throttled {
                    Some(retry_after) => Outcome::Throttled { retry_after },
                    None => Outcome::Success,
                };
                ended.push((r.id, outcome));
                false
            } else {
                true
            }
        });
    }

    fn progress(&self, id: u64) -> Option<f64> {
        self.reqs
            .iter()
            .find(|r| r.id == id && r.resp_at.is_none())
            .map(|r| r.last_progress)
    }

    fn bytes_sent(&self) -> f64 {
        self.transferred
    }
}

/// One attempt as the driver saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    pub(crate) index: u32,
    pub(crate) bytes: u64,
    pub(crate) started: f64,
    pub(crate) finished: f64,
    pub(crate) outcome: Outcome,
    pub(crate) in_flight: usize,
    pub(crate) deadline: Duration,
}

/// One planning decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) at: f64,
    pub(crate) ctx: PlanContext,
    /// The strategy's raw answer.
    pub(crate) answer: u64,
    /// The size after the engine's clamp.
    pub(crate) size: u64,
    /// Observations delivered before this decision.
    pub(crate) observations: usize,
}

/// What happened in one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) plans: Vec<Plan>,
    /// `(t, limit)` whenever `max_in_flight` changed.
    pub(crate) limits: Vec<(f64, usize)>,
    /// When the last APPEND ended (or the run stopped).
    pub(crate) finished_at: f64,
    /// The link's closing time after the last APPEND (FINALIZE), see [`Session::closing_time`].
    pub(crate) closing: f64,
    pub(crate) completed: bool,
    pub(crate) segments: u32,
    /// Payload bytes put on the link, by every attempt.
    pub(crate) bytes_sent: f64,
    /// Retries the engine's accounting spent.
    pub(crate) retries: u32,
    /// Why the engine would have failed the upload (a segment out of attempts, the upload out
    /// of retry budget), if it would have.
    pub(crate) gave_up: Option<String>,
}

impl Report {
    /// Payload bytes per second over the whole upload.
    pub(crate) fn goodput(&self, file_len: u64) -> f64 {
        file_len as f64 / self.finished_at.max(1e-9)
    }

    /// Attempts that ended with `pred`.
    pub(crate) fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.attempts.iter().filter(|a| pred(&a.outcome)).count()
    }
}

/// What the driver uploads and how the engine around the strategy behaves.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// File size.
    pub(crate) file_len: u64,
    /// The per-APPEND payload limit.
    pub(crate) max_chunk: u64,
    /// The run stops (incomplete) after this many seconds.
    pub(crate) time_limit: f64,
    /// The engine's retry policy; its seed drives the backoff jitter.
    pub(crate) retry: RetryPolicy,
    /// Stop where the engine would fail the upload (a segment out of attempts, or the retry
    /// budget spent); otherwise only record it in [`Report::gave_up`] and go on.
    pub(crate) give_up: bool,
}

/// Seed of the backoff jitter of [`run`] and [`run_with`].
///
/// Source: arbitrary fixed value (tests are deterministic).
pub(crate) const BACKOFF_SEED: u64 = 7;

impl Setup {
    /// The engine's defaults (seeded jitter), recording but not stopping at a give-up.
    pub(crate) fn new(file_len: u64, max_chunk: u64, time_limit: f64) -> Self {
        Setup {
            file_len,
            max_chunk,
            time_limit,
            retry: RetryPolicy::default().with_seed(BACKOFF_SEED),
            give_up: false,
        }
    }
}

struct Active {
    id: u64,
    index: u32,
    bytes: u64,
    attempt: u32,
    started: f64,
    deadline: f64,
    deadline_d: Duration,
    stall: Option<f64>,
    in_flight: usize,
    app_limited: bool,
}

/// A segment waiting for its backoff to end.
struct Waiting {
    index: u32,
    bytes: u64,
    attempt: u32,
    ready_at: f64,
}

const EPS: f64 = 1e-9;

fn instant(base: Instant, t: f64) -> Instant {
    base + Duration::from_secs_f64(t.max(0.0))
}

/// The engine's backoff before retry number `retry` (0 for the first):
/// `U[0, min(cap, base · 2^retry)]`, at least the `Retry-After`. The same formula as
/// `engine::retry::Backoff::delay`, which is private to the engine.
fn backoff(
    rng: &mut StdRng,
    policy: &RetryPolicy,
    retry: u32,
    throttled: bool,
    retry_after: Option<Duration>,
) -> f64 {
    let base = if throttled {
        policy.throttle_base
    } else {
        policy.transient_base
    };
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    let ceiling = base.saturating_mul(factor).min(policy.max_delay);
    let jittered = ceiling.as_secs_f64() * rng.random::<f64>();
    retry_after.map_or(jittered, |ra| jittered.max(ra.as_secs_f64()))
}

/// Uploads `file_len` bytes over `net` with `strategy` and the engine's default retry policy,
/// stopping at `time_limit` seconds.
pub(crate) fn run<S: Strategy + ?Sized>(
    strategy: &mut S,
    net: &dyn Network,
    file_len: u64,
    max_chunk: u64,
    time_limit: f64,
    base: Instant,
) -> Report {
    run_with(
        strategy,
        net,
        file_len,
        max_chunk,
        time_limit,
        base,
        |_, _| {},
    )
}

/// [`run`], calling `after` with the strategy after each observation it was given.
pub(crate) fn run_with<S: Strategy + ?Sized>(
    strategy: &mut S,
    net: &dyn Network,
    file_len: u64,
    max_chunk: u64,
    time_limit: f64,
    base: Instant,
    after: impl FnMut(&S, &Attempt),
) -> Report {
    let setup = Setup::new(file_len, max_chunk, time_limit);
    drive(strategy, net, &setup, base, after)
}

/// The engine-like driver; see the [module docs](self).
pub(crate) fn drive<S: Strategy + ?Sized>(
    strategy: &mut S,
    net: &dyn Network,
    setup: &Setup,
    base: Instant,
    mut after: impl FnMut(&S, &Attempt),
) -> Report {
    let mut link = net.open();
    let policy = &setup.retry;
    let mut jitter = StdRng::seed_from_u64(policy.seed.unwrap_or(BACKOFF_SEED));
    let max_chunk = setup.max_chunk;

    let mut report = Report::default();
    let mut active: Vec<Active> = Vec::new();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut hold_until: Option<f64> = None;
    let mut remaining = setup.file_len;
    let mut next_index = 0u32;
    let mut last_size: Option<u64> = None;
    let mut attempts_started = 0u64;
    let mut observations = 0usize;
    let mut ended: Vec<(u64, Outcome)> = Vec::new();
    let mut t = 0.0_f64;

    'run: loop {
        // Start what may be started (the engine's `fill`).
        let mut wake: Option<f64> = None;
        loop {
            let now = instant(base, t);
            let limit = strategy.max_in_flight(now).max(1);
            if report.limits.last().is_none_or(|&(_, l)| l != limit) {
                report.limits.push((t, limit));
            }
            if active.len() >= limit {
                break;
            }
            let nb = strategy
                .not_before(now)
                .map(|nb| nb.saturating_duration_since(base).as_secs_f64());
            let hold = [nb, hold_until].into_iter().flatten().reduce(f64::max);
            if let Some(hold) = hold.filter(|h| *h > t + EPS) {
                wake = Some(hold);
                break;
            }
            let ready = waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| w.ready_at <= t + EPS)
                .min_by(|a, b| {
                    a.1.ready_at
                        .total_cmp(&b.1.ready_at)
                        .then(a.1.index.cmp(&b.1.index))
                })
                .map(|(i, _)| i);
            let (index, bytes, attempt) = match ready.and_then(|i| waiting.remove(i)) {
                Some(w) => (w.index, w.bytes, w.attempt),
                None if remaining > 0 => {
                    let segments_left = MAX_SEGMENTS.saturating_sub(next_index);
                    let ctx = PlanContext {
                        now,
                        remaining_bytes: remaining,
                        remaining_segments: segments_left,
                        min_chunk: remaining.div_ceil(u64::from(segments_left.max(1))),
                        max_chunk,
                    };
                    let answer = strategy.chunk_size(&ctx);
                    let size = answer.max(ctx.min_chunk).min(max_chunk).min(remaining);
                    report.plans.push(Plan {
                        at: t,
                        ctx,
                        answer,
                        size,
                        observations,
                    });
                    remaining -= size;
                    next_index += 1;
                    last_size = Some(size);
                    (next_index - 1, size, 1)
                }
                None => {
                    // Free capacity and nothing ready: the file ran out or the rest waits on
                    // backoff. What is in flight is not using the link fully.
                    for r in &mut active {
                        r.app_limited = true;
                    }
                    wake = waiting.iter().map(|w| w.ready_at).reduce(f64::min);
                    break;
                }
            };
            let deadline_d = strategy.request_deadline(now, bytes);
            let stall = strategy.stall_timeout().map(|d| d.as_secs_f64());
            let id = attempts_started;
            attempts_started += 1;
            link.start(t, id, bytes);
            active.push(Active {
                id,
                index,
                bytes,
                attempt,
                started: t,
                deadline: t + deadline_d.as_secs_f64().min(1e9),
                deadline_d,
                stall,
                in_flight: active.len() + 1,
                app_limited: false,
            });
        }
        if active.is_empty() && waiting.is_empty() && remaining == 0 {
            report.completed = true;
            break;
        }
        if t > setup.time_limit {
            break;
        }

        // The next event.
        let mut next = link.next_event(t);
        for r in &active {
            next = next.min(r.deadline);
            if let (Some(st), Some(lp)) = (r.stall, link.progress(r.id)) {
                next = next.min(lp + st);
            }
        }
        if let Some(w) = wake {
            next = next.min(w);
        }
        if !next.is_finite() {
            break; // nothing can ever happen again
        }
        let next = next.max(t);
        ended.clear();
        link.advance(next, &mut ended);
        t = next;

        // What ended at `t`: responses and resets from the link, then deadlines and stalls.
        let mut finished: Vec<(Active, Outcome)> = Vec::new();
        for &(id, outcome) in &ended {
            if let Some(i) = active.iter().position(|r| r.id == id) {
                finished.push((active.swap_remove(i), outcome));
            }
        }
        let mut i = 0;
        while i < active.len() {
            let r = &active[i];
            let stalled = match (r.stall, link.progress(r.id)) {
                (Some(st), Some(lp)) => t - lp >= st - EPS,
                _ => false,
            };
            let outcome = if r.deadline <= t + EPS {
                Some(Outcome::Timeout)
            } else if stalled {
                Some(Outcome::Stalled)
            } else {
                None
            };
            match outcome {
                Some(o) => {
                    link.abort(t, r.id);
                    finished.push((active.swap_remove(i), o));
                }
                None => i += 1,
            }
        }
        // Report simultaneous completions in start order, then segment order.
        finished.sort_by(|a, b| {
            a.0.started
                .total_cmp(&b.0.started)
                .then(a.0.index.cmp(&b.0.index))
        });
        for (r, outcome) in finished {
            let obs = Observation {
                segment_index: r.index,
                bytes: r.bytes,
                started: instant(base, r.started),
                finished: instant(base, t),
                outcome,
                in_flight: r.in_flight,
                app_limited: r.app_limited,
            };
            strategy.observe(&obs);
            observations += 1;
            let attempt = Attempt {
                index: r.index,
                bytes: r.bytes,
                started: r.started,
                finished: t,
                outcome,
                in_flight: r.in_flight,
                deadline: r.deadline_d,
            };
            after(strategy, &attempt);
            report.attempts.push(attempt);
            if outcome == Outcome::Success {
                continue;
            }
            // The engine's retry accounting (`Run::on_done`).
            if report.gave_up.is_none() {
                let projected = u64::from(next_index)
                    .saturating_add(remaining.div_ceil(last_size.unwrap_or(max_chunk).max(1)))
                    .min(u64::from(MAX_SEGMENTS));
                let budget = policy.budget(u32::try_from(projected).unwrap_or(MAX_SEGMENTS));
                if r.attempt >= policy.max_attempts {
                    report.gave_up = Some(format!(
                        "segment {} failed {} times (last: {outcome:?})",
                        r.index, r.attempt
                    ));
                } else if report.retries >= budget {
                    report.gave_up = Some(format!("the retry budget of {budget} is spent"));
                }
                if report.gave_up.is_some() && setup.give_up {
                    break 'run;
                }
            }
            report.retries += 1;
            let (throttled, retry_after) = match outcome {
                Outcome::Throttled { retry_after } => (true, retry_after),
                _ => (false, None),
            };
            let delay = backoff(
                &mut jitter,
                policy,
                r.attempt.saturating_sub(1),
                throttled,
                retry_after,
            );
            if let Some(ra) = retry_after {
                let until = t + ra.as_secs_f64().min(1e9);
                hold_until = Some(hold_until.map_or(until, |h| h.max(until)));
            }
            waiting.push_back(Waiting {
                index: r.index,
                bytes: r.bytes,
                attempt: r.attempt + 1,
                ready_at: t + delay,
            });
        }
    }
    report.finished_at = t;
    report.closing = link.closing_time();
    report.segments = next_index;
    report.bytes_sent = link.bytes_sent();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::FixedStrategy;

    #[tokio::test(start_paused = true)]
    async fn model_link_matches_hand_computed_times() {
        // 1 MB/s, 0.1 s fixed cost, 2 in flight, 1 MB chunks, 4 MB file: two requests share
        // the link (2 s each), respond at 2.1 s; the next two start at 2.1 s, end at 4.2 s.
        let link = Link::new(Steps(vec![(0.0, 1e6)]), 0.1);
        let mut s = FixedStrategy::new(1_000_000, 2, Duration::from_secs(100));
        let r = run(&mut s, &link, 4_000_000, 5_000_000, 100.0, Instant::now());
        assert!(r.completed);
        assert_eq!(r.segments, 4);
        assert!((r.finished_at - 4.2).abs() < 1e-6, "{}", r.finished_at);
        assert!((r.attempts[0].finished - 2.1).abs() < 1e-6);
        assert_eq!(r.attempts[1].in_flight, 2);
        assert!((r.bytes_sent - 4e6).abs() < 1.0);
        assert_eq!(r.retries, 0);
        assert!(r.gave_up.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_and_throttles_are_enforced() {
        let mut link = Link::new(Steps(vec![(0.0, 1e5)]), 0.0);
        link.throttle = vec![(0, Some(Duration::from_secs(3)))];
        // 1 MB at 100 kB/s takes 10 s: a 5 s deadline times out every attempt.
        let mut s = FixedStrategy::new(1_000_000, 1, Duration::from_secs(5));
        let r = run(&mut s, &link, 1_000_000, 5_000_000, 30.0, Instant::now());
        assert!(!r.completed);
        assert!(matches!(r.attempts[0].outcome, Outcome::Throttled { .. }));
        // The 429's Retry-After holds every send: the retry starts at 3 s.
        assert!((r.attempts[1].started - 3.0).abs() < 1e-6);
        assert_eq!(r.attempts[1].outcome, Outcome::Timeout);
        assert!((r.attempts[1].finished - 8.0).abs() < 1e-6);
        // The next retry waits the transient backoff: full jitter under 2 × 100 ms.
        let gap = r.attempts[2].started - r.attempts[1].finished;
        assert!((0.0..=0.2).contains(&gap), "{gap}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_engines_retry_accounting_gives_up_like_the_engine() {
        // Every attempt times out: the fifth attempt of segment 0 is the last the engine makes.
        let link = Link::new(Steps(vec![(0.0, 1e5)]), 0.0);
        let mut s = FixedStrategy::new(1_000_000, 1, Duration::from_secs(1));
        let mut setup = Setup::new(1_000_000, 5_000_000, 1e4);
        setup.give_up = true;
        let r = drive(&mut s, &link, &setup, Instant::now(), |_, _| {});
        assert!(!r.completed);
        assert_eq!(r.attempts.len(), 5);
        assert!(
            r.gave_up
                .as_deref()
                .is_some_and(|g| g.contains("failed 5 times"))
        );
        // Without `give_up` the run goes on and only records it.
        setup.give_up = false;
        setup.time_limit = 20.0;
        let r = drive(&mut s, &link, &setup, Instant::now(), |_, _| {});
        assert!(r.attempts.len() > 5);
        assert!(r.gave_up.is_some());
    }
}
