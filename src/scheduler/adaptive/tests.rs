//! Tests of the adaptive strategy: exact steps under paused time, and scenarios on the model
//! link (`scheduler::sim`) asserting ranges.

use super::*;
use crate::scheduler::sim::{self, Link, Report, Steps};
use crate::scheduler::{FixedStrategy, Strategy};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;

const MAX_CHUNK: u64 = 5 * MIB;
const KIB: u64 = 1024;

fn adaptive() -> AdaptiveStrategy {
    AdaptiveStrategy::new(AdaptiveConfig::default()).unwrap()
}

fn secs_f(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn obs(
    bytes: u64,
    started: Instant,
    finished: Instant,
    outcome: Outcome,
    in_flight: usize,
) -> Observation {
    Observation {
        segment_index: 0,
        bytes,
        started,
        finished,
        outcome,
        in_flight,
        app_limited: false,
    }
}

fn ctx(now: Instant, remaining_bytes: u64) -> PlanContext {
    PlanContext {
        now,
        remaining_bytes,
        remaining_segments: MAX_SEGMENTS_FOR_TESTS,
        min_chunk: remaining_bytes.div_ceil(u64::from(MAX_SEGMENTS_FOR_TESTS)),
        max_chunk: MAX_CHUNK,
    }
}

const MAX_SEGMENTS_FOR_TESTS: u32 = crate::limits::MAX_SEGMENTS;

/// A constant link of `bits` per second and `fixed_cost` seconds.
fn constant(bits: f64, fixed_cost: f64) -> Link {
    Link::new(Steps::constant_bits(bits), fixed_cost)
}

/// Runs `strategy` over `link` and returns the report with the strategy's estimates after each
/// observation.
fn run_logged(
    s: &mut AdaptiveStrategy,
    link: &Link,
    file: u64,
    base: Instant,
) -> (Report, Vec<Estimates>) {
    let mut log = Vec::new();
    let r = sim::run_with(s, link, file, MAX_CHUNK, 1e7, base, |s, _| {
        log.push(s.estimates())
    });
    (r, log)
}

/// A strategy warmed up by uploading `file` bytes over `link`; returns it with the instant the
/// upload ended.
fn warm(link: &Link, file: u64) -> (AdaptiveStrategy, Instant) {
    let base = Instant::now();
    let mut s = adaptive();
    let r = sim::run(&mut s, link, file, MAX_CHUNK, 1e7, base);
    assert!(r.completed);
    (s, base + secs_f(r.finished_at))
}

fn timeouts(r: &Report) -> usize {
    r.count(|o| matches!(o, Outcome::Timeout | Outcome::Stalled))
}

// ---------------------------------------------------------------------------------------------
// Exact steps.

#[tokio::test(start_paused = true)]
async fn a_cold_strategy_answers_the_documented_defaults() {
    let mut s = adaptive();
    let t = Instant::now();
    assert_eq!(s.chunk_size(&ctx(t, 100 * MIB)), DEFAULT_INITIAL_CHUNK);
    assert_eq!(s.max_in_flight(t), DEFAULT_INITIAL_PARALLELISM);
    assert_eq!(s.stall_timeout(), Some(DEFAULT_STALL_TIMEOUT));
    assert_eq!(s.not_before(t), None);
    // Cold: max(60 s, n·S / 32 KiB/s) = max(60 s, 2 × 1 MiB / 32 KiB/s = 64 s).
    assert_eq!(s.start_attempt(t, MIB), Duration::from_secs(64));
    assert_eq!(s.start_attempt(t, 64 * KIB), COLD_DEADLINE_FLOOR);
    let e = s.estimates();
    assert_eq!(e.delivery_rate, None);
    assert_eq!(e.fixed_cost, None);
    assert_eq!(e.bytes_between_failures, None);
    assert!(!e.warm);
}

#[test]
fn invalid_settings_name_the_key_value_and_range() {
    let cases: Vec<(AdaptiveConfig, &str)> = vec![
        (
            AdaptiveConfig {
                chunk: ChunkMode::Fixed(0),
                ..Default::default()
            },
            "adaptive.chunk = 0 is out of range; allowed 1..=1073741824",
        ),
        (
            AdaptiveConfig {
                parallelism: ParallelismMode::Fixed(33),
                ..Default::default()
            },
            "adaptive.parallelism = 33 is out of range; allowed 1..=32",
        ),
        (
            AdaptiveConfig {
                max_parallelism: 0,
                ..Default::default()
            },
            "adaptive.max_parallelism = 0",
        ),
        (
            AdaptiveConfig {
                initial_parallelism: 7,
                ..Default::default()
            },
            "adaptive.initial_parallelism = 7 is out of range; allowed 1..=6",
        ),
        (
            AdaptiveConfig {
                segment_reserve: f64::NAN,
                ..Default::default()
            },
            "adaptive.segment_reserve = NaN",
        ),
        (
            AdaptiveConfig {
                segment_reserve: 0.95,
                ..Default::default()
            },
            "allowed 0 ..= 0.9",
        ),
        (
            AdaptiveConfig {
                deadline_gain: 0.5,
                ..Default::default()
            },
            "adaptive.deadline_gain = 0.5",
        ),
        (
            AdaptiveConfig {
                target_chunk_time: Duration::from_millis(10),
                ..Default::default()
            },
            "adaptive.target_chunk_time = 10ms is out of range; allowed 1s ..= 600s",
        ),
        (
            AdaptiveConfig {
                stall_timeout: Some(Duration::ZERO),
                ..Default::default()
            },
            "adaptive.stall_timeout = 0ns",
        ),
        (
            AdaptiveConfig {
                byte_rate_cap: Some(RateCap::per_second(0)),
                ..Default::default()
            },
            "adaptive.byte_rate_cap.amount = 0",
        ),
        (
            AdaptiveConfig {
                request_rate_cap: Some(RateCap::new(10, Duration::ZERO)),
                ..Default::default()
            },
            "adaptive.request_rate_cap.per = 0ns",
        ),
    ];
    for (config, expected) in cases {
        let err = AdaptiveStrategy::new(config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.to_string().contains(expected),
            "{err} does not contain {expected}"
        );
    }
    assert!(
        AdaptiveConfig {
            stall_timeout: None,
            ..Default::default()
        }
        .validate()
        .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_holds_every_send_until_its_retry_after() {
    let mut s = adaptive();
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    s.start_attempt(t0, MIB);
    s.observe(&obs(
        MIB,
        t0,
        at(1000),
        Outcome::Throttled {
            retry_after: Some(Duration::from_secs(5)),
        },
        1,
    ));
    assert_eq!(s.not_before(at(1000)), Some(at(6000)));
    assert_eq!(s.not_before(at(5999)), Some(at(6000)));
    assert_eq!(s.not_before(at(6000)), None);
    // A later, shorter Retry-After does not shorten the hold.
    s.observe(&obs(
        MIB,
        at(1500),
        at(2000),
        Outcome::Throttled {
            retry_after: Some(Duration::from_secs(1)),
        },
        1,
    ));
    assert_eq!(s.not_before(at(2000)), Some(at(6000)));
    // Without Retry-After the hold is the default throttle hold.
    s.observe(&obs(
        MIB,
        at(9000),
        at(10_000),
        Outcome::Throttled { retry_after: None },
        1,
    ));
    assert_eq!(
        s.not_before(at(10_000)),
        Some(at(10_000) + DEFAULT_THROTTLE_HOLD)
    );
    // 429s are back pressure: the level was cut from 2 (once per round, not per response).
    assert_eq!(s.max_in_flight(at(10_000)), 1);
    // An absurd Retry-After is capped, not trusted (and does not overflow the clock).
    s.observe(&obs(
        MIB,
        at(20_000),
        at(20_000),
        Outcome::Throttled {
            retry_after: Some(Duration::MAX),
        },
        1,
    ));
    assert_eq!(
        s.not_before(at(20_000)),
        Some(at(20_000) + MAX_THROTTLE_HOLD)
    );
}

#[tokio::test(start_paused = true)]
async fn no_request_starts_during_a_429_hold_in_the_simulation() {
    let mut link = constant(10e6, 0.04);
    link.throttle = vec![(6, Some(Duration::from_secs(3)))];
    let mut s = adaptive();
    let r = sim::run(&mut s, &link, 60 * MIB, MAX_CHUNK, 1e6, Instant::now());
    assert!(r.completed);
    let throttled = r
        .attempts
        .iter()
        .find(|a| matches!(a.outcome, Outcome::Throttled { .. }))
        .expect("the scripted 429");
    let (from, until) = (throttled.finished, throttled.finished + 3.0);
    let during: Vec<_> = r
        .attempts
        .iter()
        .filter(|a| a.started > from + 1e-9 && a.started < until - 1e-9)
        .collect();
    assert!(during.is_empty(), "started during the hold: {during:?}");
    // The throttled segment is retried whole, with the same index and bytes, and before any
    // new segment (once a slot is free, which may be after the hold's end).
    let first_after = r
        .attempts
        .iter()
        .filter(|a| a.started > from + 1e-9)
        .min_by(|a, b| a.started.total_cmp(&b.started))
        .unwrap();
    assert!(first_after.started >= until - 1e-6, "{first_after:?}");
    assert_eq!(
        (first_after.index, first_after.bytes, first_after.outcome),
        (throttled.index, throttled.bytes, Outcome::Success)
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_shrinks_parallelism_rate_and_chunk() {
    let (mut s, t) = warm(&constant(10e6, 0.04), 40 * MIB);
    s.par.set(4, Phase::Steady, t);
    let before = s.estimates();
    assert!(before.chunk_target >= 2 * MIB, "{before:?}");
    let size = before.chunk_target;
    let d = s.start_attempt(t, size);
    s.observe(&obs(size, t, t + d, Outcome::Timeout, 1));
    let after = s.estimates();
    assert_eq!(s.max_in_flight(t + d), 3, "{after:?}");
    assert!(
        after.delivery_rate.unwrap() < before.delivery_rate.unwrap() / 2.0,
        "{after:?}"
    );
    assert!(after.chunk_target < before.chunk_target / 2, "{after:?}");
    assert_eq!(after.failures, 1);
    assert!(after.bytes_between_failures.is_some());
    // Each later timeout cuts again, but the link's signals never below two in flight.
    let mut now = t + d;
    for level in [2, 2] {
        let d = s.start_attempt(now, size);
        s.observe(&obs(size, now, now + d, Outcome::Timeout, 1));
        now += d;
        assert_eq!(s.max_in_flight(now), level);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stall_or_timeout_after_an_outage_counts_as_one_failure_event() {
    let (mut s, t) = warm(&constant(10e6, 0.04), 20 * MIB);
    let starts: Vec<Instant> = (0..3).map(|i| t + Duration::from_millis(i * 10)).collect();
    for &st in &starts {
        s.start_attempt(st, MIB);
    }
    for (i, &st) in starts.iter().enumerate() {
        s.observe(&obs(
            MIB,
            st,
            t + Duration::from_secs(30 + i as u64),
            Outcome::Stalled,
            3,
        ));
    }
    assert_eq!(s.estimates().failures, 1);
    // Transport errors are per connection: each counts.
    let t2 = t + Duration::from_secs(40);
    for i in 0..2 {
        s.start_attempt(t2, MIB);
        s.observe(&obs(
            MIB,
            t2,
            t2 + Duration::from_secs(1 + i),
            Outcome::RetryableError,
            2,
        ));
    }
    assert_eq!(s.estimates().failures, 3);
}

#[tokio::test(start_paused = true)]
async fn an_inflated_request_backs_off_and_resets_the_rate() {
    let (mut s, t) = warm(&constant(10e6, 0.04), 40 * MIB);
    s.par.set(3, Phase::Steady, t);
    let before = s.estimates();
    let level = s.max_in_flight(t);
    let size = 2 * MIB;
    s.start_attempt(t, size);
    // Predicted ≈ α + n·S/R ≈ 3.4 s; this one took 30 s.
    s.observe(&obs(
        size,
        t,
        t + Duration::from_secs(30),
        Outcome::Success,
        level,
    ));
    let after = s.estimates();
    assert_eq!(s.max_in_flight(t), level - 1);
    assert!(
        after.delivery_rate.unwrap() < before.delivery_rate.unwrap() / 4.0,
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn app_limited_samples_raise_but_never_lower_the_rate() {
    let (mut s, t) = warm(&constant(10e6, 0.04), 20 * MIB);
    let rate = s.estimates().delivery_rate.unwrap();
    // Ten slow app-limited samples (a dribbling tail) leave the estimate alone.
    let mut now = t;
    for _ in 0..10 {
        s.start_attempt(now, 64 * KIB);
        let end = now + Duration::from_secs(10);
        s.observe(&Observation {
            app_limited: true,
            ..obs(64 * KIB, now, end, Outcome::Success, 1)
        });
        now = end;
    }
    assert_eq!(s.estimates().delivery_rate, Some(rate));
    // A faster app-limited sample raises it.
    s.start_attempt(now, 4 * MIB);
    let end = now + Duration::from_secs(1);
    s.observe(&Observation {
        app_limited: true,
        ..obs(4 * MIB, now, end, Outcome::Success, 1)
    });
    assert!(s.estimates().delivery_rate.unwrap() > rate);
}

#[tokio::test(start_paused = true)]
async fn deadlines_scale_with_size_and_estimate() {
    let (mut fast, t) = warm(&constant(10e6, 0.04), 60 * MIB);
    let e = fast.estimates();
    let (rate, n) = (e.delivery_rate.unwrap(), e.parallelism as f64);
    assert!(e.warm);

    // A chunk that should take 2 s at its share of the link does not wait 120 s.
    let two_secs = (2.0 * rate / n) as u64;
    let d = fast.start_attempt(t, two_secs);
    assert!(d <= Duration::from_secs(40), "{d:?}");
    assert!(d >= DEFAULT_DEADLINE_FLOOR);

    // Above the floor, twice the bytes get about twice the time.
    let d1 = fast.start_attempt(t, 4 * MIB);
    let d2 = fast.start_attempt(t, 8 * MIB);
    let ratio = d2.as_secs_f64() / d1.as_secs_f64();
    assert!((1.7..=2.1).contains(&ratio), "{d1:?} {d2:?}");

    // A lower estimate gives the same bytes more time.
    let (mut slow, t2) = warm(&constant(1e6, 0.15), 8 * MIB);
    let slow_e = slow.estimates();
    assert!(slow.start_attempt(t2, 4 * MIB) > d1 * 5);

    // A chunk that should take 60 s is not killed at 30 s (nor at 60 s).
    let sixty = (60.0 * slow_e.delivery_rate.unwrap() / slow_e.parallelism as f64) as u64;
    let d60 = slow.start_attempt(t2, sixty);
    assert!(d60 >= Duration::from_secs(150), "{d60:?}");
    assert!(d60 <= DEADLINE_CEILING);
}

#[tokio::test(start_paused = true)]
async fn the_stall_timeout_grows_on_slow_links_and_can_be_disabled() {
    let state = AdaptiveState {
        version: STATE_VERSION,
        delivery_rate: Some(8000.0), // 64 kbit/s
        fixed_cost_secs: Some(0.3),
        latency_error_mean_secs: None,
        latency_error_dev_secs: 0.0,
        bytes_between_failures: None,
        chunk_target: 256 * KIB,
        parallelism: 2,
    };
    let slow = AdaptiveStrategy::from_state(AdaptiveConfig::default(), &state).unwrap();
    // 4 × 64 KiB × 2 / 8000 B/s ≈ 65.5 s.
    let stall = slow.stall_timeout().unwrap();
    assert!(
        stall > Duration::from_secs(65) && stall < Duration::from_secs(66),
        "{stall:?}"
    );
    let off = AdaptiveStrategy::new(AdaptiveConfig {
        stall_timeout: None,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(off.stall_timeout(), None);
}

#[tokio::test(start_paused = true)]
async fn rate_caps_pace_sends_through_not_before() {
    let config = AdaptiveConfig {
        byte_rate_cap: Some(RateCap::per_second(100_000)),
        request_rate_cap: Some(RateCap::new(2, Duration::from_secs(1)).with_burst(1)),
        ..Default::default()
    };
    let mut s = AdaptiveStrategy::new(config).unwrap();
    let t0 = Instant::now();
    assert_eq!(s.not_before(t0), None);
    // 10 kB at 100 kB/s: the byte cap holds the next send 0.1 s.
    s.start_attempt(t0, 10_000);
    assert_eq!(s.not_before(t0), Some(t0 + Duration::from_millis(100)));
    // A second request at 0.1 s: bytes allow 0.2 s, requests (2/s, burst 1) allow 0.5 s.
    let t1 = t0 + Duration::from_millis(100);
    s.start_attempt(t1, 10_000);
    assert_eq!(s.not_before(t1), Some(t0 + Duration::from_millis(500)));
}

#[tokio::test(start_paused = true)]
async fn fixed_modes_bypass_adaptation() {
    // Chunk and parallelism pinned, on a link that drops and recovers.
    let config = AdaptiveConfig {
        chunk: ChunkMode::Fixed(3 * MIB),
        parallelism: ParallelismMode::Fixed(4),
        ..Default::default()
    };
    let mut s = AdaptiveStrategy::new(config).unwrap();
    // A 200× drop for 200 s: deeper and longer than the deadline gain covers.
    let link = Link::new(
        Steps::bits(&[(0.0, 20e6), (40.0, 0.1e6), (240.0, 20e6)]),
        0.05,
    );
    let r = sim::run(&mut s, &link, 200 * MIB, MAX_CHUNK, 1e6, Instant::now());
    assert!(r.completed);
    assert!(timeouts(&r) > 0, "the drop should have caused timeouts");
    assert!(r.plans.iter().all(|p| p.answer == 3 * MIB));
    assert_eq!(r.limits, vec![(0.0, 4)]);
    // The estimates still run (deadlines follow them).
    assert!(s.estimates().delivery_rate.is_some());

    // Pinned chunk, adaptive parallelism: the chunk never moves, the level may.
    let config = AdaptiveConfig {
        chunk: ChunkMode::Fixed(MIB),
        ..Default::default()
    };
    let mut s = AdaptiveStrategy::new(config).unwrap();
    let r = sim::run(
        &mut s,
        &constant(10e6, 0.3),
        60 * MIB,
        MAX_CHUNK,
        1e6,
        Instant::now(),
    );
    assert!(r.plans.iter().all(|p| p.answer == MIB));
    assert!(r.limits.len() > 1);

    // The engine's segment floor still wins over a pinned chunk that is too small.
    let mut s = AdaptiveStrategy::new(AdaptiveConfig {
        chunk: ChunkMode::Fixed(KIB),
        ..Default::default()
    })
    .unwrap();
    let t = Instant::now();
    assert_eq!(s.chunk_size(&ctx(t, 100 * MIB)), (100 * MIB).div_ceil(1000));
}

#[tokio::test(start_paused = true)]
async fn state_export_and_import_round_trip() {
    // Lossy enough that the fixed cost gets measured (it is probed only once failures make
    // the failure optimum depend on it).
    let mut link = constant(10e6, 0.08);
    link.reset_every = Some(6.0 * MIB as f64);
    let (s, _) = warm(&link, 100 * MIB);
    let state = s.export_state();
    assert!(state.delivery_rate.is_some() && state.fixed_cost_secs.is_some());
    assert!(state.bytes_between_failures.is_some());

    let json = serde_json::to_string(&state).unwrap();
    let back: AdaptiveState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    let mut resumed = AdaptiveStrategy::from_state(AdaptiveConfig::default(), &back).unwrap();
    assert_eq!(resumed.export_state(), state);

    // The resumed controller starts where the first one was, not from the cold defaults.
    let t = Instant::now();
    assert_eq!(resumed.chunk_size(&ctx(t, 100 * MIB)), state.chunk_target);
    assert_eq!(resumed.max_in_flight(t), state.parallelism);
    assert_eq!(resumed.estimates().fixed_cost, s.estimates().fixed_cost);
    assert!(resumed.start_attempt(t, MIB) < adaptive().start_attempt(t, MIB));

    // A pinned configuration still wins over the state; the level is capped by the config.
    let pinned = AdaptiveConfig {
        chunk: ChunkMode::Fixed(MIB),
        max_parallelism: 1,
        initial_parallelism: 1,
        ..Default::default()
    };
    let mut p = AdaptiveStrategy::from_state(pinned, &state).unwrap();
    assert_eq!(p.chunk_size(&ctx(t, 100 * MIB)), MIB);
    assert_eq!(p.max_in_flight(t), 1);

    // Damaged states are rejected, not trusted.
    let bad = [
        (
            AdaptiveState {
                delivery_rate: Some(f64::NAN),
                ..state.clone()
            },
            "state.delivery_rate",
        ),
        (
            AdaptiveState {
                fixed_cost_secs: Some(-1.0),
                ..state.clone()
            },
            "state.fixed_cost_secs",
        ),
        (
            AdaptiveState {
                version: 99,
                ..state.clone()
            },
            "state.version = 99",
        ),
        (
            AdaptiveState {
                parallelism: 0,
                ..state.clone()
            },
            "state.parallelism = 0",
        ),
        (
            AdaptiveState {
                chunk_target: 0,
                ..state.clone()
            },
            "state.chunk_target = 0",
        ),
        (
            AdaptiveState {
                latency_error_mean_secs: Some(f64::INFINITY),
                ..state.clone()
            },
            "state.latency_error_mean_secs",
        ),
    ];
    for (state, key) in bad {
        let err = AdaptiveStrategy::from_state(AdaptiveConfig::default(), &state).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(key), "{err}");
    }
}

/// Regression (found by the proptest below; the failure of aws-sdk-js #1162): a link slower
/// than the cold guess made every attempt of the first segment time out at the same cold
/// deadline, forever. A timeout must teach the controller a rate bound even with no estimate.
#[tokio::test(start_paused = true)]
async fn a_link_slower_than_every_guess_still_finishes() {
    let link = constant(65_000.0, 0.308);
    let mut s = adaptive();
    let r = sim::run(&mut s, &link, 651 * 997, 3112 * KIB, 1e5, Instant::now());
    assert!(r.completed);
    assert!(r.attempts.len() <= 3, "{:?}", r.attempts);
    assert!(r.attempts[1].deadline > r.attempts[0].deadline * 3);
}

// ---------------------------------------------------------------------------------------------
// Scenarios on the model link. Each asserts ranges, not exact values.

/// Plans made after `after_obs` observations (and before `until` seconds), leaving out those
/// made at the same instant as the plan before them: requests that start together get graded
/// sizes on purpose (`stagger`, tested on its own), the first of them the chunk target.
fn plans_between(r: &Report, after_obs: usize, from: f64, until: f64) -> Vec<u64> {
    r.plans
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || r.plans[i - 1].at != p.at)
        .map(|(_, p)| p)
        .filter(|p| p.observations >= after_obs && p.at >= from && p.at < until)
        .map(|p| p.answer)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn requests_that_start_together_get_graded_sizes() {
    // Warm at 2 in flight on 10 Mbit/s, then three slots open at once (the level rose to 3):
    // sizes S, 2S/3, S/3 so the three finish one after the other.
    let (mut s, t) = warm(&constant(10e6, 0.04), 40 * MIB);
    let target = s.estimates().chunk_target;
    s.par.limit = 3;
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let size = s.chunk_size(&ctx(t, 100 * MIB));
        s.start_attempt(t, size);
        sizes.push(size);
    }
    assert_eq!(sizes[0], target);
    assert_eq!(sizes[1], target * 2 / 3);
    assert_eq!(sizes[2], target / 3);
    // One start a fixed cost or more later is not together: full size again.
    let later = t + Duration::from_secs(1);
    assert_eq!(s.chunk_size(&ctx(later, 100 * MIB)), target);
    // A cold controller does not grade: its ramp staggers by itself.
    let mut cold = adaptive();
    let now = Instant::now();
    let first = cold.chunk_size(&ctx(now, 100 * MIB));
    cold.start_attempt(now, first);
    assert_eq!(cold.chunk_size(&ctx(now, 100 * MIB)), first);
}

#[tokio::test(start_paused = true)]
async fn steady_10mbit_40ms_converges_to_large_chunks_and_two_or_three_in_flight() {
    // Expected: the 4 s target allows ~2.5 MB chunks at 2 in flight, 1.7 MB at 3; a third adds
    // < 5 %.
    let link = constant(10e6, 0.04);
    let file = 200 * MIB;
    let mut s = adaptive();
    let (r, log) = run_logged(&mut s, &link, file, Instant::now());
    assert!(r.completed);
    assert_eq!(timeouts(&r), 0);
    let late = plans_between(&r, 6, 0.0, f64::INFINITY);
    assert!(late.len() > 30);
    assert!(
        late.iter().all(|&a| (3 * MIB / 2..=3 * MIB).contains(&a)),
        "{late:?}"
    );
    assert!(log[6..].iter().all(|e| (2..=3).contains(&e.parallelism)));
    let goodput = r.goodput(file);
    assert!(goodput >= 0.95 * 10e6 / 8.0, "{goodput}");
    // No failures, so no fixed-cost probe: never one request alone, `α` only bounded.
    assert!(r.limits.iter().all(|&(_, l)| l >= 2), "{:?}", r.limits);
    assert_eq!(s.export_state().fixed_cost_secs, None);
}

#[tokio::test(start_paused = true)]
async fn steady_1mbit_150ms_converges_to_small_chunks() {
    // Expected: 4 s at 125 kB/s shared by 2 is ~0.25 MB, the 256 KiB floor; two or three in
    // flight.
    let link = constant(1e6, 0.15);
    let file = 20 * MIB;
    let mut s = adaptive();
    let (r, log) = run_logged(&mut s, &link, file, Instant::now());
    assert!(r.completed);
    assert_eq!(timeouts(&r), 0);
    let late = plans_between(&r, 4, 0.0, f64::INFINITY);
    assert!(late.len() > 20);
    assert!(
        late[..late.len() - 1]
            .iter()
            .all(|&a| (256 * KIB..=512 * KIB).contains(&a)),
        "{late:?}"
    );
    assert!(log[4..].iter().all(|e| (2..=3).contains(&e.parallelism)));
    assert!(r.goodput(file) >= 0.95 * 1e6 / 8.0);
    // No probe; a request that happened to run alone (the last one) may have measured `α`.
    assert!(r.limits.iter().all(|&(_, l)| l >= 2), "{:?}", r.limits);
    let alpha = s.export_state().fixed_cost_secs;
    assert!(alpha.is_none_or(|a| (0.05..=0.2).contains(&a)), "{alpha:?}");
}

#[tokio::test(start_paused = true)]
async fn a_rate_drop_shrinks_the_chunk_and_a_rise_grows_it() {
    // 20 Mbit/s, then 2 Mbit/s from 60 s, then 20 Mbit/s again from 180 s.
    let link = Link::new(
        Steps::bits(&[(0.0, 20e6), (60.0, 2e6), (180.0, 20e6)]),
        0.05,
    );
    let mut s = adaptive();
    let (r, log) = run_logged(&mut s, &link, 300 * MIB, Instant::now());
    assert!(r.completed);
    let first_after = |t: f64| r.attempts.iter().position(|a| a.finished > t).unwrap();

    let before = plans_between(&r, 6, 0.0, 60.0);
    assert!(before.iter().all(|&a| a >= 4 * MIB), "{before:?}");

    // Within 4 observations of the drop, every new chunk is at most 2.5 MiB: 8 s of 2 Mbit/s
    // is 2 MB at one in flight, and the estimate right after the drop (the maximum of samples
    // that partly span it) is up to 15 % above the new rate.
    let drop = first_after(60.0);
    let during = plans_between(&r, drop + 4, 60.0, 180.0);
    assert!(!during.is_empty());
    assert!(during.iter().all(|&a| a <= 5 * MIB / 2), "{during:?}");
    assert!(log[drop + 4].delivery_rate.unwrap() < 0.4e6);

    // Within 6 observations of the rise, chunks are back above 3 MiB: the 4 s target is 5 MB
    // at 20 Mbit/s and two in flight, and the estimate is within 20 % by then.
    let rise = first_after(180.0);
    let after = plans_between(&r, rise + 6, 180.0, f64::INFINITY);
    assert!(after.len() > 10);
    assert!(
        after[..after.len() - 1].iter().all(|&a| a >= 3 * MIB),
        "{after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lossy_link_gets_chunks_near_the_failure_optimum() {
    // Resets every 8 MiB on average at 10 Mbit/s, 80 ms. With two or more in flight the others
    // hide a request's fixed cost once chunks exceed 2·α·R = 200 kB, so little but the failure
    // waste is left and the optimum is the smallest chunk (256 KiB).
    let mut link = constant(10e6, 0.08);
    link.reset_every = Some(8.0 * MIB as f64);
    let file = 100 * MIB;
    let base = Instant::now();
    let mut s = adaptive();
    let r = sim::run(&mut s, &link, file, MAX_CHUNK, 1e7, base);
    assert!(r.completed);
    let late = plans_between(&r, 15, 0.0, f64::INFINITY);
    assert!(
        late.iter().all(|&a| (256 * KIB..=512 * KIB).contains(&a)),
        "{late:?}"
    );
    let waste = r.bytes_sent / file as f64;

    // Fewer bytes re-sent than the usual fixed 4 MiB × 3.
    let mut fixed = FixedStrategy::default();
    let f = sim::run(&mut fixed, &link, file, MAX_CHUNK, 1e7, base);
    assert!(f.completed);
    let fixed_waste = f.bytes_sent / file as f64;
    assert!(
        waste < 1.2 && waste < fixed_waste,
        "adaptive {waste}, fixed {fixed_waste}"
    );

    // One at a time, the link idles through every fixed cost: Young/Daly's trade,
    // S* = √(2·(α·R + h)·M) ≈ 1.45 MB.
    let mut one = AdaptiveStrategy::new(AdaptiveConfig {
        parallelism: ParallelismMode::Fixed(1),
        ..Default::default()
    })
    .unwrap();
    let r = sim::run(&mut one, &link, file, MAX_CHUNK, 1e7, base);
    assert!(r.completed);
    let late = plans_between(&r, 15, 0.0, f64::INFINITY);
    assert!(
        late.iter().all(|&a| (768 * KIB..=3 * MIB).contains(&a)),
        "{late:?}"
    );
}

#[test]
fn the_failure_optimum_hides_the_fixed_cost_behind_other_requests() {
    let (alpha, rate, m) = (0.08, 1.25e6, 8.0 * MIB as f64);
    let h = REQUEST_OVERHEAD_BYTES as f64;
    let sequential = (2.0 * (alpha * rate + h) * m).sqrt();
    assert!((failure_optimum(alpha, rate, m, 1.0) - sequential).abs() < 1e-6);
    // Two in flight: the hiding size 2·α·R = 200 kB beats √(2·h·M) ≈ 131 kB.
    assert!((failure_optimum(alpha, rate, m, 2.0) - 2.0 * alpha * rate).abs() < 1e-6);
    // Rare failures: the header bytes dominate, √(2·h·M), still below the sequential optimum.
    let rare = 1e9;
    let o = failure_optimum(alpha, rate, rare, 3.0);
    assert!((o - (2.0 * h * rare).sqrt()).abs() < 1e-6, "{o}");
    assert!(o < failure_optimum(alpha, rate, rare, 1.0));
    // Never above the sequential optimum, whatever the level.
    let fast = failure_optimum(0.5, 12.5e6, 2.0 * MIB as f64, 2.0);
    assert!((fast - failure_optimum(0.5, 12.5e6, 2.0 * MIB as f64, 1.0)).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn the_reserve_lets_the_segment_floor_fall() {
    // 2000 MiB on 1 Mbit/s: the controller wants ~0.5 MB, the budget forces ≥ 2 MiB at first.
    let link = constant(1e6, 0.15);
    let file = 1000 * 2 * MIB;
    let run = |reserve: f64| {
        let mut s = AdaptiveStrategy::new(AdaptiveConfig {
            segment_reserve: reserve,
            ..Default::default()
        })
        .unwrap();
        let r = sim::run(&mut s, &link, file, MAX_CHUNK, 1e8, Instant::now());
        assert!(r.completed);
        assert!(r.segments <= 1000);
        assert_eq!(r.plans.iter().map(|p| p.size).sum::<u64>(), file);
        r
    };
    let floor_at = |r: &Report, i: usize| r.plans[i].ctx.min_chunk;

    let with = run(DEFAULT_SEGMENT_RESERVE);
    let start = floor_at(&with, 0);
    assert_eq!(start, 2 * MIB);
    // By 3/4 of the segments, the floor has fallen far enough to shrink chunks by a third.
    let late = floor_at(&with, 750);
    assert!((late as f64) < 0.7 * start as f64, "{late} vs {start}");

    // Without a reserve it stays pinned at the start value.
    let without = run(0.0);
    assert_eq!(floor_at(&without, 750), start);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0c4a_4e6b),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the file and the link: every answer lies within the engine's floor and the body
    /// limit, and the plan finishes within the 1000-segment budget, covering the file exactly.
    #[test]
    fn plans_respect_the_floor_the_ceiling_and_the_budget(
        fill in 1u64..=1000,
        max_kib in 64u64..=5 * 1024,
        kbit in 32u64..=50_000,
        fixed_ms in 0u64..=600,
        resets_mib in prop::option::of(6u64..=64),
        small in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let max_chunk = max_kib * KIB;
            // Files from a few bytes to the full 1000 × max_chunk budget.
            let file = if small { fill * 997 } else { fill * max_chunk };
            let mut link = constant(kbit as f64 * 1000.0, fixed_ms as f64 / 1000.0);
            link.reset_every = resets_mib.map(|m| (m * MIB) as f64);
            let mut s = adaptive();
            let r = sim::run(&mut s, &link, file, max_chunk, 1e8, Instant::now());
            prop_assert!(r.completed);
            prop_assert!(r.segments <= 1000);
            prop_assert_eq!(r.plans.iter().map(|p| p.size).sum::<u64>(), file);
            for p in &r.plans {
                prop_assert!(p.answer >= p.ctx.min_chunk && p.answer <= p.ctx.max_chunk, "{:?}", p);
            }
            Ok(())
        })?;
    }
}

#[derive(Debug, Clone)]
struct Event {
    start_ms: u64,
    dur_ms: u64,
    bytes: u64,
    outcome: u8,
    retry_ms: Option<u64>,
    in_flight: usize,
    app_limited: bool,
    remaining: u64,
    segments: u32,
    max_chunk: u64,
}

fn event() -> impl proptest::strategy::Strategy<Value = Event> {
    (
        (
            0u64..10_000_000,
            0u64..1_000_000,
            prop_oneof![Just(0u64), 1u64..10 * MIB, Just(u64::MAX)],
        ),
        (
            0u8..6,
            prop::option::of(prop_oneof![0u64..100_000, Just(u64::MAX)]),
        ),
        (prop_oneof![0usize..40, Just(usize::MAX)], any::<bool>()),
        (0u64..=u64::MAX / 2, 0u32..=1000, 0u64..=10 * MIB),
    )
        .prop_map(
            |(
                (start_ms, dur_ms, bytes),
                (outcome, retry_ms),
                (in_flight, app_limited),
                (remaining, segments, max_chunk),
            )| Event {
                start_ms,
                dur_ms,
                bytes,
                outcome,
                retry_ms,
                in_flight,
                app_limited,
                remaining,
                segments,
                max_chunk,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0b5e),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any sequence of observations, however odd (zero or huge sizes, reversed times, absurd
    /// in-flight counts and Retry-Afters), never panics and never pushes an answer out of its
    /// bounds.
    #[test]
    fn any_observations_keep_every_answer_in_bounds(events in prop::collection::vec(event(), 1..60)) {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| Instant::from_std(t0 + Duration::from_millis(ms));
        let mut s = adaptive();
        for e in events {
            let started = at(e.start_ms);
            let finished = at(e.start_ms.saturating_add(e.dur_ms) % 20_000_000);
            let outcome = match e.outcome {
                0 | 1 => Outcome::Success,
                2 => Outcome::Timeout,
                3 => Outcome::Stalled,
                4 => Outcome::RetryableError,
                _ => Outcome::Throttled { retry_after: e.retry_ms.map(Duration::from_millis) },
            };
            let deadline = s.start_attempt(started, e.bytes);
            prop_assert!(deadline > Duration::ZERO && deadline <= DEADLINE_CEILING);
            s.observe(&Observation {
                segment_index: 0,
                bytes: e.bytes,
                started,
                finished,
                outcome,
                in_flight: e.in_flight,
                app_limited: e.app_limited,
            });
            let n = s.max_in_flight(finished);
            prop_assert!((1..=DEFAULT_MAX_PARALLELISM).contains(&n));
            let min_chunk = e.remaining.div_ceil(u64::from(e.segments.max(1)));
            let ctx = PlanContext {
                now: finished,
                remaining_bytes: e.remaining,
                remaining_segments: e.segments,
                min_chunk,
                max_chunk: e.max_chunk,
            };
            let chunk = s.chunk_size(&ctx);
            if min_chunk <= e.max_chunk {
                prop_assert!(chunk >= min_chunk && chunk <= e.max_chunk);
            } else {
                prop_assert_eq!(chunk, e.max_chunk);
            }
            let stall = s.stall_timeout().unwrap();
            prop_assert!(stall >= DEFAULT_STALL_TIMEOUT && stall <= DEADLINE_CEILING);
            let _ = s.not_before(finished);
            let _ = s.estimates();
            let _ = s.export_state();
        }
    }
}

/// The simulation behind [`DEFAULT_DEADLINE_GAIN`]: timeouts, total time and megabytes sent
/// per deadline gain, summed over several runs of each scenario: jittery links (5 Mbit/s,
/// ±90 % every 4 s, five seeds), 10× and 20× rate drops at four different times, and a clean
/// 10 Mbit/s link.
///
/// `cargo test --lib scheduler::adaptive::tests::deadline_gain_sweep -- --ignored --nocapture`
#[tokio::test(start_paused = true)]
#[ignore = "simulation table; run by hand"]
async fn deadline_gain_sweep() {
    let mut scenarios: Vec<(&str, Vec<(Link, u64)>)> = Vec::new();
    scenarios.push((
        "jittery 5 Mbit/s",
        (1..=5)
            .map(|seed| {
                (
                    Link::new(Steps::jittery_bits(5e6, 0.9, 4.0, 4000.0, seed), 0.1),
                    200 * MIB,
                )
            })
            .collect(),
    ));
    for (name, low) in [("drop 20 -> 2", 2e6), ("drop 20 -> 1", 1e6)] {
        scenarios.push((
            name,
            [30.0, 45.0, 60.0, 75.0]
                .iter()
                .map(|&t| {
                    (
                        Link::new(
                            Steps::bits(&[(0.0, 20e6), (t, low), (t + 120.0, 20e6)]),
                            0.05,
                        ),
                        300 * MIB,
                    )
                })
                .collect(),
        ));
    }
    scenarios.push(("clean 10 Mbit/s", vec![(constant(10e6, 0.04), 200 * MIB)]));
    println!(
        "{:<18} {:>5} {:>9} {:>9} {:>9}",
        "scenario", "gain", "timeouts", "time s", "sent MB"
    );
    for (name, runs) in &scenarios {
        for gain in [1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0] {
            let (mut n, mut time, mut sent) = (0, 0.0, 0.0);
            for (link, file) in runs {
                let mut s = AdaptiveStrategy::new(AdaptiveConfig {
                    deadline_gain: gain,
                    ..Default::default()
                })
                .unwrap();
                let r = sim::run(&mut s, link, *file, MAX_CHUNK, 1e7, Instant::now());
                assert!(r.completed);
                n += timeouts(&r);
                time += r.finished_at;
                sent += r.bytes_sent / 1e6;
            }
            println!("{name:<18} {gain:>5} {n:>9} {time:>9.1} {sent:>9.1}");
        }
    }
}

/// The `Strategy` trait's state hooks (what checkpoints store) carry the same estimates, and a
/// value that is not an adaptive state leaves the controller cold.
#[tokio::test(start_paused = true)]
async fn trait_state_hooks_warm_start_a_fresh_controller() {
    let mut link = constant(10e6, 0.08);
    link.reset_every = Some(6.0 * MIB as f64);
    let (s, _) = warm(&link, 100 * MIB);
    let json = Strategy::export_state(&s).expect("the adaptive strategy exports its state");
    assert!(!json.to_string().contains("secret"));

    let mut fresh = adaptive();
    Strategy::import_state(&mut fresh, &json);
    assert_eq!(fresh.export_state(), s.export_state());

    let mut cold = adaptive();
    Strategy::import_state(&mut cold, &serde_json::json!({"something": "else"}));
    assert_eq!(cold.export_state(), adaptive().export_state());
}
