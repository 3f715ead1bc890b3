//! A model link and an engine-like driver for testing strategies without sockets or clocks.
//!
//! The link is a processor-sharing bottleneck: every request in its transfer phase gets an
//! equal share of the scheduled rate; after its last byte it waits the fixed cost (round trip
//! and server time) for its response. Optional random resets (exponential bytes between
//! failures, fixed seed) and scripted 429s. The rate comes from a [`RateSchedule`], the seam a
//! `link::Schedule` can implement later.
//!
//! The driver does what the engine does with a [`Strategy`]: plans segments one at a time with
//! the engine's clamp (`[ceil(remaining / segments_left), max_chunk]` and what is left), keeps
//! up to `max_in_flight` requests going, honours `not_before`, enforces `request_deadline` and
//! `stall_timeout`, retries failed segments with the same bytes, and reports every attempt,
//! marking requests app-limited when a slot stayed empty because the file ran out.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

use super::{Observation, Outcome, PlanContext, Strategy};
use crate::limits::MAX_SEGMENTS;

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

/// The model link.
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
    pub(crate) finished_at: f64,
    pub(crate) completed: bool,
    pub(crate) segments: u32,
    pub(crate) bytes_sent: f64,
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

struct Req {
    index: u32,
    bytes: u64,
    remaining: f64,
    started: f64,
    deadline: f64,
    deadline_d: Duration,
    stall: Option<f64>,
    last_progress: f64,
    resp_at: Option<f64>,
    throttled: Option<Option<Duration>>,
    in_flight: usize,
    app_limited: bool,
}

const EPS: f64 = 1e-9;

fn instant(base: Instant, t: f64) -> Instant {
    base + Duration::from_secs_f64(t.max(0.0))
}

/// Uploads `file_len` bytes over `link` with `strategy`, stopping at `time_limit` seconds.
pub(crate) fn run<S: Strategy + ?Sized>(
    strategy: &mut S,
    link: &Link,
    file_len: u64,
    max_chunk: u64,
    time_limit: f64,
    base: Instant,
) -> Report {
    run_with(
        strategy,
        link,
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
    link: &Link,
    file_len: u64,
    max_chunk: u64,
    time_limit: f64,
    base: Instant,
    mut after: impl FnMut(&S, &Attempt),
) -> Report {
    let mut rng = StdRng::seed_from_u64(link.seed);
    let draw_reset = |rng: &mut StdRng| {
        link.reset_every
            .map_or(f64::INFINITY, |m| -m * (1.0 - rng.random::<f64>()).ln())
    };
    let mut next_reset = draw_reset(&mut rng);
    let mut transferred = 0.0_f64;

    let mut report = Report::default();
    let mut active: Vec<Req> = Vec::new();
    let mut retries: VecDeque<(u32, u64)> = VecDeque::new();
    let mut remaining = file_len;
    let mut next_index = 0u32;
    let mut attempts_started = 0u64;
    let mut observations = 0usize;
    let mut t = 0.0_f64;

    loop {
        // Start what may be started.
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
            if retries.is_empty() && remaining == 0 {
                for r in &mut active {
                    r.app_limited = true;
                }
                break;
            }
            if let Some(nb) = strategy.not_before(now) {
                let at = nb.saturating_duration_since(base).as_secs_f64();
                if at > t + EPS {
                    wake = Some(at);
                    break;
                }
            }
            let (index, bytes) = match retries.pop_front() {
                Some(r) => r,
                None => {
                    let segments_left = MAX_SEGMENTS - next_index;
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
                    (next_index - 1, size)
                }
            };
            let deadline_d = strategy.request_deadline(now, bytes);
            let stall = strategy.stall_timeout().map(|d| d.as_secs_f64());
            let throttled = link
                .throttle
                .iter()
                .find(|(n, _)| *n == attempts_started)
                .map(|&(_, d)| d);
            attempts_started += 1;
            active.push(Req {
                index,
                bytes,
                remaining: if throttled.is_some() {
                    0.0
                } else {
                    bytes as f64
                },
                started: t,
                deadline: t + deadline_d.as_secs_f64().min(1e9),
                deadline_d,
                stall,
                last_progress: t,
                resp_at: throttled.map(|_| t + link.fixed_cost),
                throttled,
                in_flight: active.len() + 1,
                app_limited: false,
            });
        }
        if active.is_empty() && retries.is_empty() && remaining == 0 {
            report.completed = true;
            break;
        }
        if t > time_limit {
            break;
        }

        // The next event.
        let rate = link.schedule.rate_at(t);
        let k = active.iter().filter(|r| r.resp_at.is_none()).count();
        let share = if k > 0 { rate / k as f64 } else { 0.0 };
        let mut next = f64::INFINITY;
        for r in &active {
            match r.resp_at {
                None if share > 0.0 => next = next.min(t + r.remaining / share),
                None => {
                    if let Some(st) = r.stall {
                        next = next.min(r.last_progress + st);
                    }
                }
                Some(at) => next = next.min(at),
            }
            next = next.min(r.deadline);
        }
        if let Some(c) = link.schedule.next_change_after(t) {
            next = next.min(c);
        }
        if let Some(w) = wake {
            next = next.min(w);
        }
        if k > 0 && rate > 0.0 {
            next = next.min(t + (next_reset - transferred).max(0.0) / rate);
        }
        if !next.is_finite() {
            break; // nothing can ever happen again
        }
        let dt = (next - t).max(0.0);
        for r in active.iter_mut().filter(|r| r.resp_at.is_none()) {
            r.remaining -= share * dt;
            if share > 0.0 {
                r.last_progress = next;
            }
        }
        if k > 0 {
            transferred += rate * dt;
            report.bytes_sent += rate * dt;
        }
        t = next;

        // Process what happened at `t`.
        let mut done: Vec<(usize, Outcome)> = Vec::new();
        if k > 0 && transferred >= next_reset - 1e-6 {
            if let Some(i) = active.iter().position(|r| r.resp_at.is_none()) {
                done.push((i, Outcome::RetryableError));
            }
            next_reset = transferred + draw_reset(&mut rng);
        }
        for (i, r) in active.iter_mut().enumerate() {
            if done.iter().any(|(j, _)| *j == i) {
                continue;
            }
            if r.resp_at.is_none() && r.remaining <= 1e-6 {
                r.remaining = 0.0;
                r.resp_at = Some(t + link.fixed_cost);
            }
            let outcome = if r.resp_at.is_some_and(|at| at <= t + EPS) {
                Some(match r.throttled {
                    Some(retry_after) => Outcome::Throttled { retry_after },
                    None => Outcome::Success,
                })
            } else if r.deadline <= t + EPS {
                Some(Outcome::Timeout)
            } else if r.resp_at.is_none()
                && r.stall.is_some_and(|st| t - r.last_progress >= st - EPS)
            {
                Some(Outcome::Stalled)
            } else {
                None
            };
            if let Some(o) = outcome {
                done.push((i, o));
            }
        }
        done.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        let mut finished: Vec<(Req, Outcome)> = done
            .into_iter()
            .map(|(i, o)| (active.remove(i), o))
            .collect();
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
            if outcome != Outcome::Success {
                retries.push_back((r.index, r.bytes));
            }
        }
    }
    report.finished_at = t;
    report.segments = next_index;
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
        // The last two ran while the file had run out: app-limited in the driver's view.
        assert!((r.bytes_sent - 4e6).abs() < 1.0);
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
        // The fixed strategy holds sends for the Retry-After: the retry starts at 3 s.
        assert!((r.attempts[1].started - 3.0).abs() < 1e-6);
        assert_eq!(r.attempts[1].outcome, Outcome::Timeout);
        assert!((r.attempts[1].finished - 8.0).abs() < 1e-6);
    }
}
