//! Model links, and the engine's upload core driven over them in virtual time, for testing
//! strategies without sockets or clocks.
//!
//! The driver ([`drive`], or [`run`] / [`run_with`] with a policy that does not give up) runs
//! the engine's own [`Core`] (`engine::core`): the same planning, parallelism, holds,
//! retries, backoff (seeded full jitter), retry accounting and app-limited marking as the
//! tokio engine, because it is the same code. The driver only answers the core's actions:
//! INIT, FINALIZE and STATUS at once (the link's [`Session::closing_time`] and
//! `FifoLink::opening_time` account for them), APPENDs over the model link, with their
//! deadlines and stall timeouts enforced as the engine's driver does. With the engine's
//! default [`RetryPolicy`] in [`Setup::retry`], a run stops where the engine would fail the
//! upload ([`Report::gave_up`]).
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
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use super::{Observation, Outcome, PlanContext, Strategy};
use crate::engine::core::{Action, Core, CoreConfig, Failure, Input, Reply, ReqId, Upload};
use crate::engine::{
    DEFAULT_CONTROL_TIMEOUT, MAX_ATTEMPTS_LIMIT, MAX_BUDGET_RATIO, MAX_CONFIG_DURATION, MediaSpec,
    PollingConfig, RetryPolicy,
};
use crate::error::{Error, ErrorKind};
use crate::protocol::{AppendResponse, InitResponse, MediaId, MediaStatus, ProtocolTarget};

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
    /// Why the engine failed the upload (a segment out of attempts, the upload out of retry
    /// budget), if it did.
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
}

/// Seed of the backoff jitter of [`run`] and [`run_with`].
///
/// Source: arbitrary fixed value (tests are deterministic).
pub(crate) const BACKOFF_SEED: u64 = 7;

/// A retry policy that practically never gives up (the most attempts, the largest budget
/// and the longest waits a configuration may ask for), with the engine's backoff, seeded:
/// for runs that measure a strategy past the point where the default policy would end the
/// upload, such as one segment of megabytes over a 32 kbit/s model link.
pub(crate) fn persistent_retry(seed: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: MAX_ATTEMPTS_LIMIT,
        budget_ratio: MAX_BUDGET_RATIO,
        budget_min: u32::MAX,
        max_wait: MAX_CONFIG_DURATION,
        max_no_progress: MAX_CONFIG_DURATION,
        ..RetryPolicy::default().with_seed(seed)
    }
}

impl Setup {
    /// The engine's backoff (seeded) with a policy that does not give up
    /// ([`persistent_retry`]).
    pub(crate) fn new(file_len: u64, max_chunk: u64, time_limit: f64) -> Self {
        Setup {
            file_len,
            max_chunk,
            time_limit,
            retry: persistent_retry(BACKOFF_SEED),
        }
    }
}

/// An APPEND on the model link, kept under its number on the link (APPEND attempts in start
/// order, from 0).
struct Active {
    /// The core's id of the request.
    id: ReqId,
    index: u32,
    bytes: u64,
    started: f64,
    deadline: f64,
    deadline_d: Duration,
    stall: Option<f64>,
    in_flight: usize,
}

const EPS: f64 = 1e-9;

fn instant(base: Instant, t: f64) -> Instant {
    base + Duration::from_secs_f64(t.max(0.0))
}

fn secs(base: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(base).as_secs_f64()
}

/// Lends a strategy of any type to the core as a `dyn Strategy`.
#[derive(Debug)]
struct Lend<'a, S: ?Sized>(&'a mut S);

impl<S: Strategy + ?Sized> Strategy for Lend<'_, S> {
    fn chunk_size(&mut self, ctx: &PlanContext) -> u64 {
        self.0.chunk_size(ctx)
    }
    fn max_in_flight(&self, now: Instant) -> usize {
        self.0.max_in_flight(now)
    }
    fn start_attempt(&mut self, now: Instant, bytes: u64) -> Duration {
        self.0.start_attempt(now, bytes)
    }
    fn stall_timeout(&self) -> Option<Duration> {
        self.0.stall_timeout()
    }
    fn not_before(&self, now: Instant) -> Option<Instant> {
        self.0.not_before(now)
    }
    fn observe(&mut self, obs: &Observation) {
        self.0.observe(obs);
    }
    fn export_state(&self) -> Option<serde_json::Value> {
        self.0.export_state()
    }
    fn import_state(&mut self, state: &serde_json::Value) {
        self.0.import_state(state);
    }
}

/// Uploads `file_len` bytes over `net` with `strategy` and a retry policy that does not give
/// up, stopping at `time_limit` seconds.
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

/// The reply of the model server to a request that does not cross the link.
fn instant_reply(action: &Action) -> Option<(ReqId, Reply)> {
    let status = |media_id: &MediaId| MediaStatus {
        media_id: media_id.clone(),
        media_key: None,
        size: None,
        expires_after_secs: None,
        processing_info: None,
    };
    match action {
        Action::Init { id, .. } => Some((
            *id,
            Reply::Init(InitResponse {
                media_id: MediaId::from("1"),
                media_key: None,
                expires_after_secs: None,
            }),
        )),
        Action::Finalize { id, media_id, .. } | Action::Status { id, media_id, .. } => {
            Some((*id, Reply::Status(status(media_id))))
        }
        _ => None,
    }
}

/// The failure the engine's driver reports for an outcome on the model link.
fn failure(outcome: Outcome, deadline: Duration, stall: Option<f64>) -> Failure {
    match outcome {
        Outcome::Timeout => Failure::Deadline(deadline),
        Outcome::Stalled => Failure::Stalled(Duration::from_secs_f64(stall.unwrap_or(0.0))),
        Outcome::Throttled { retry_after } => {
            let e = Error::new(ErrorKind::RateLimited, "429 on the model link");
            Failure::Request(match retry_after {
                Some(d) => e.with_retry_after(d),
                None => e,
            })
        }
        Outcome::Fatal => Failure::Request(Error::new(ErrorKind::Rejected, "rejected")),
        Outcome::Success | Outcome::RetryableError => {
            Failure::Request(Error::new(ErrorKind::Transport, "reset on the model link"))
        }
    }
}

/// The engine's upload core ([`Core`]) driven over a model link in virtual time; see the
/// [module docs](self).
pub(crate) fn drive<S: Strategy + ?Sized>(
    strategy: &mut S,
    net: &dyn Network,
    setup: &Setup,
    base: Instant,
    mut after: impl FnMut(&S, &Attempt),
) -> Report {
    let mut link = net.open();
    let mut lend = Lend(strategy);
    let mut report = Report::default();
    let cfg = CoreConfig {
        retry: setup.retry.clone(),
        polling: PollingConfig::default(),
        control_timeout: DEFAULT_CONTROL_TIMEOUT,
        enforce_category_limits: false,
        trace_requests: false,
        persist: false,
        log_plans: true,
    };
    let upload = Upload {
        total_bytes: setup.file_len,
        max_chunk: setup.max_chunk,
        spec: MediaSpec::new("video/mp4"),
        target: ProtocolTarget::default(),
        identity: None,
        resume: None,
    };
    let mut core = match Core::new(cfg, upload, &mut lend, base, SystemTime::UNIX_EPOCH) {
        Ok(c) => c,
        Err(e) => {
            report.gave_up = Some(e.to_string());
            return report;
        }
    };
    let mut active: HashMap<u64, Active> = HashMap::new();
    let mut appends_started = 0u64;
    let mut out = Vec::new();
    let mut ended: Vec<(u64, Outcome)> = Vec::new();
    let mut t = 0.0_f64;
    core.handle(base, Input::Start, &mut lend, &mut out);

    'run: loop {
        // Carry out what the core asked for; requests that do not cross the link are
        // answered at once.
        while !out.is_empty() {
            let now = instant(base, t);
            let mut replies = Vec::new();
            for action in out.drain(..) {
                if let Some(reply) = instant_reply(&action) {
                    replies.push(reply);
                    continue;
                }
                match action {
                    Action::Append {
                        id,
                        segment,
                        deadline,
                        stall,
                        ..
                    } => {
                        let link_id = appends_started;
                        appends_started += 1;
                        link.start(t, link_id, segment.len);
                        let in_flight = active.len() + 1;
                        active.insert(
                            link_id,
                            Active {
                                id,
                                index: segment.index,
                                bytes: segment.len,
                                started: t,
                                deadline: t + deadline.as_secs_f64().min(1e9),
                                deadline_d: deadline,
                                stall: stall.filter(|d| !d.is_zero()).map(|d| d.as_secs_f64()),
                                in_flight,
                            },
                        );
                    }
                    Action::Abort { id } => {
                        let on_link = active.iter().find(|(_, r)| r.id == id).map(|(l, _)| *l);
                        if let Some(link_id) = on_link {
                            active.remove(&link_id);
                            link.abort(t, link_id);
                        }
                    }
                    Action::Done(result) => {
                        report.completed = result.is_ok();
                        report.gave_up = result.err().map(|e| e.to_string());
                        break 'run;
                    }
                    // No store and no listener in the model.
                    _ => {}
                }
            }
            let mut next = Vec::new();
            for (id, reply) in replies {
                let input = Input::Reply {
                    id,
                    started: now,
                    result: Ok(reply),
                };
                core.input(now, input, &mut lend, &mut next);
            }
            core.step(now, &mut lend, &mut next);
            out = next;
        }
        let now = instant(base, t);
        let limit = lend.0.max_in_flight(now).max(1);
        if report.limits.last().is_none_or(|&(_, l)| l != limit) {
            report.limits.push((t, limit));
        }
        if t > setup.time_limit {
            break;
        }

        // The next event: on the link, a deadline or stall, or a wake-up of the core.
        let mut next = link.next_event(t);
        for (link_id, r) in &active {
            next = next.min(r.deadline);
            if let (Some(st), Some(lp)) = (r.stall, link.progress(*link_id)) {
                next = next.min(lp + st);
            }
        }
        if let Some(w) = core.next_wake() {
            next = next.min(secs(base, w));
        }
        if !next.is_finite() {
            break; // nothing can ever happen again
        }
        let next = next.max(t);
        ended.clear();
        link.advance(next, &mut ended);
        t = next;
        let now = instant(base, t);

        // What ended at `t`: responses and resets from the link, then deadlines and stalls.
        let mut finished: Vec<(Active, Outcome)> = ended
            .iter()
            .filter_map(|&(link_id, outcome)| active.remove(&link_id).map(|r| (r, outcome)))
            .collect();
        let expired: Vec<(u64, Outcome)> = active
            .iter()
            .filter_map(|(link_id, r)| {
                let stalled = match (r.stall, link.progress(*link_id)) {
                    (Some(st), Some(lp)) => t - lp >= st - EPS,
                    _ => false,
                };
                if r.deadline <= t + EPS {
                    Some((*link_id, Outcome::Timeout))
                } else if stalled {
                    Some((*link_id, Outcome::Stalled))
                } else {
                    None
                }
            })
            .collect();
        for (link_id, outcome) in expired {
            if let Some(r) = active.remove(&link_id) {
                link.abort(t, link_id);
                finished.push((r, outcome));
            }
        }
        // Report simultaneous completions in start order, then segment order.
        finished.sort_by(|a, b| {
            a.0.started
                .total_cmp(&b.0.started)
                .then(a.0.index.cmp(&b.0.index))
        });
        for (r, outcome) in finished {
            let result = match outcome {
                Outcome::Success => Ok(Reply::Append(AppendResponse::default())),
                other => Err(failure(other, r.deadline_d, r.stall)),
            };
            let input = Input::Reply {
                id: r.id,
                started: instant(base, r.started),
                result,
            };
            core.input(now, input, &mut lend, &mut out);
            let attempt = Attempt {
                index: r.index,
                bytes: r.bytes,
                started: r.started,
                finished: t,
                outcome,
                in_flight: r.in_flight,
                deadline: r.deadline_d,
            };
            after(&*lend.0, &attempt);
            report.attempts.push(attempt);
        }
        core.input(now, Input::Tick, &mut lend, &mut out);
        core.step(now, &mut lend, &mut out);
    }
    report.finished_at = t;
    report.closing = link.closing_time();
    report.segments = core.segments_planned();
    report.bytes_sent = link.bytes_sent();
    report.retries = core.retries_spent();
    report.plans = core
        .plan_log()
        .iter()
        .map(|p| Plan {
            at: secs(base, p.at),
            ctx: p.ctx,
            answer: p.answer,
            size: p.size,
            observations: p.observations,
        })
        .collect();
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
        setup.retry = RetryPolicy::default().with_seed(BACKOFF_SEED);
        let r = drive(&mut s, &link, &setup, Instant::now(), |_, _| {});
        assert!(!r.completed);
        assert_eq!(r.attempts.len(), 5);
        let why = r.gave_up.clone().unwrap_or_default();
        assert!(why.contains("deadline") && why.contains('5'), "{why}");
        // With a persistent policy the run goes on.
        setup.retry = persistent_retry(BACKOFF_SEED);
        setup.time_limit = 20.0;
        let r = drive(&mut s, &link, &setup, Instant::now(), |_, _| {});
        assert!(r.attempts.len() > 5);
        assert!(!r.completed);
    }
}
