//! Retries: which failures are retried, how long to wait, and how many retries an upload may
//! spend. See [`RetryPolicy`].

use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};

/// Default attempts per request (the first one included): 5.
///
/// Source: boto3's `num_download_attempts` 5, Mux UpChunk's 5 attempts and aws-c-s3's 5
/// retries (adaptive-anchors.md §1 rows 5, 7, 11); more forgiving than AWS TM's 3 because
/// mobile links fail more often, while the upload-wide budget bounds the total.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Default backoff base for transient failures (timeouts, transport errors, 5xx): 100 ms.
///
/// Source: aws-s3-transfer-manager-rs `retry.md` (adaptive-anchors.md §2.3).
pub const DEFAULT_TRANSIENT_BASE: Duration = Duration::from_millis(100);

/// Default backoff base for throttling (429): 1 s.
///
/// Source: aws-s3-transfer-manager-rs `retry.md` (adaptive-anchors.md §2.3).
pub const DEFAULT_THROTTLE_BASE: Duration = Duration::from_secs(1);

/// Default cap of one backoff delay: 5 s (a server's `Retry-After` may ask for longer and is
/// honoured).
///
/// Source: aws-s3-transfer-manager-rs `retry.md` (adaptive-anchors.md §2.3).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

/// Default upload-wide retry budget as a share of the segments: 50 %.
///
/// Source: reqwest's retry budget allows 20 % extra load (style.md §4b), but that is too
/// tight for a cellular uploader: when 20 % of APPENDs fail (the fault rate chunkwise must
/// survive, issue 2), retries alone are 0.2 / 0.8 = 25 % of the segments. 50 % survives that
/// with a 2× margin and still stops a storm (every request failing) after half the file's
/// worth of segments has been re-sent.
pub const DEFAULT_BUDGET_RATIO: f64 = 0.5;

/// Default floor of the upload-wide retry budget: 10 retries, so a small upload still
/// survives a short outage.
///
/// Source: reasonable default; equal to rclone's `--low-level-retries` 10
/// (adaptive-anchors.md §2.6).
pub const DEFAULT_BUDGET_MIN: u32 = 10;

/// Default of how long the engine keeps waiting for an unreachable server: 120 s.
///
/// Source: the longest stretch without a single delivery opportunity in the uplink traces of
/// `shared/traces` is 78.3 s (ATT-LTE-driving.up; the others: 11.2 s Verizon EVDO, 5.8 s
/// T-Mobile UMTS, 4.1 s ATT LTE 2016), measured as the largest gap between two consecutive
/// timestamps of each file: `awk 'NR>1 && $1-p>m {m=$1-p} {p=$1} END {print m}' FILE` (ms). 120 s rides out such a drive's dead zone with a margin, and a
/// server that stays away longer is better reported than waited on (the upload can be
/// resumed from its checkpoint).
pub const DEFAULT_MAX_UNREACHABLE: Duration = Duration::from_secs(120);

/// Default of how long the engine keeps trying a checkpoint store that fails to write: 120 s.
///
/// Source: the same patience as for an unreachable server ([`DEFAULT_MAX_UNREACHABLE`]): a
/// store that cannot write for two minutes (a full disk, a lost network mount) is reported
/// rather than waited on, and the upload, which sent nothing the last written checkpoint
/// does not record, can be resumed once the store is fixed.
pub const DEFAULT_MAX_STORE_OUTAGE: Duration = Duration::from_secs(120);

/// Default of the longest wait a server may ask for (`Retry-After`, `x-rate-limit-reset`)
/// before the upload stops instead of sleeping: 15 minutes.
///
/// Source: X's rate limits count requests per 15-minute window (protocol.md §5, the v2
/// per-user limits), so a 429 asks for at most 15 minutes when the window is honest; a
/// longer ask (a reset far ahead, a `Retry-After` of years) is reported with when to try
/// again, and the upload stays resumable.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Default of how long an upload may go without an answer from the server (a success, or an
/// error the server sent; a wait it asks for does not count) before it stops: 10 minutes.
///
/// Source: reasonable default; at the adaptive strategy's smallest chunk (256 KiB) ten
/// minutes without an acknowledgement means under 3.5 kbit/s, no usable link; a server that
/// accepts connections and never answers would otherwise hold the upload for hours as
/// deadlines grow (each attempt's deadline is the strategy's). The upload stays resumable.
pub const DEFAULT_MAX_NO_PROGRESS: Duration = Duration::from_secs(10 * 60);

/// The most attempts per request a configuration may ask for.
///
/// Source: reasonable default; beyond this a segment that keeps failing is a broken server
/// or link, and retrying only spends the user's data.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// The largest backoff cap or base a configuration may ask for: 1 hour.
///
/// Source: reasonable default; a longer wait is indistinguishable from a hung upload.
pub const MAX_DELAY_LIMIT: Duration = Duration::from_secs(3600);

/// The largest budget ratio a configuration may ask for: 10 retries per segment.
///
/// Source: reasonable default; twice the per-segment cap's default is already generous.
pub const MAX_BUDGET_RATIO: f64 = 10.0;

/// How failed requests are retried.
///
/// A failed APPEND is retried alone, with the same `segment_index` and the same bytes. Each
/// retry waits an exponential backoff with *full jitter*,
/// `delay = U[0, min(cap, base · 2^retry)]`, with a short base for transient failures
/// (timeouts, transport errors, 5xx) and a longer one for throttling (429); a 429 waits at
/// least as long as the server asked (`Retry-After` / `x-rate-limit-reset`).
///
/// # Why a budget and not only a per-segment cap
///
/// When the link or the server degrades, every segment starts failing at once. With only a
/// per-segment attempt cap, an upload of 1000 segments may then send up to five times its
/// size before giving up, which on a metered mobile link is the user's money, and keeps a
/// struggling server busy (a retry storm). So besides the per-segment cap, the whole upload
/// may spend at most `max(budget_min, budget_ratio × segments)` retries, after which it
/// fails with [`ErrorKind::RetryBudgetExhausted`](crate::ErrorKind::RetryBudgetExhausted)
/// carrying the last failure as its source.
///
/// # An unreachable server
///
/// A failure that never reached the server ([`ErrorKind::Unreachable`]: connection refused,
/// no route, connect timeout) says nothing about the request, only that the server cannot be
/// reached now. It does not count against the segment's attempts or the budget. Instead the
/// engine holds every new request and probes with one request at a time, waiting the
/// transient backoff between probes, until the server answers (any HTTP response), or fails
/// with the last such error once the server has been unreachable for `max_unreachable`.
///
/// # Defaults
///
/// | field | default | source |
/// |---|---|---|
/// | `max_attempts` | 5 | [`DEFAULT_MAX_ATTEMPTS`] |
/// | `transient_base` | 100 ms | [`DEFAULT_TRANSIENT_BASE`] |
/// | `throttle_base` | 1 s | [`DEFAULT_THROTTLE_BASE`] |
/// | `max_delay` | 5 s | [`DEFAULT_MAX_DELAY`] |
/// | `budget_ratio` | 0.5 | [`DEFAULT_BUDGET_RATIO`] |
/// | `budget_min` | 10 | [`DEFAULT_BUDGET_MIN`] |
/// | `max_unreachable` | 120 s | [`DEFAULT_MAX_UNREACHABLE`] |
/// | `max_store_outage` | 120 s | [`DEFAULT_MAX_STORE_OUTAGE`] |
/// | `max_wait` | 15 min | [`DEFAULT_MAX_WAIT`] |
/// | `max_no_progress` | 10 min | [`DEFAULT_MAX_NO_PROGRESS`] |
/// | `seed` | none (from the OS) | |
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included (≥ 1). A segment that fails this many
    /// times ends the upload with its last error.
    pub max_attempts: u32,
    /// Backoff base for transient failures.
    pub transient_base: Duration,
    /// Backoff base after a 429.
    pub throttle_base: Duration,
    /// Cap of one backoff delay (not of a server's `Retry-After`).
    pub max_delay: Duration,
    /// Upload-wide retries allowed, as a share of the segments.
    pub budget_ratio: f64,
    /// Upload-wide retries allowed at least.
    pub budget_min: u32,
    /// How long the server may stay unreachable (every request failing to connect) before
    /// the upload gives up; at most [`MAX_DELAY_LIMIT`]. Zero gives up at the first request
    /// that cannot connect.
    pub max_unreachable: Duration,
    /// How long the checkpoint store may keep failing to write before the upload gives up;
    /// at most [`MAX_DELAY_LIMIT`]. Meanwhile no segment is sent for the first time (a
    /// segment is on record before its first byte is sent) and the store is retried with the
    /// transient backoff.
    pub max_store_outage: Duration,
    /// The longest wait a server may ask for (`Retry-After`, `x-rate-limit-reset`): a longer
    /// one, or one that ends after the media id expires, stops the upload (resumable) with
    /// an error that says when to try again, instead of sleeping. At most
    /// [`MAX_CONFIG_DURATION`](super::MAX_CONFIG_DURATION).
    pub max_wait: Duration,
    /// How long the upload may go without an answer from the server (a success, or an error
    /// it sent) before it stops (resumable), whatever the deadlines of its requests. Time
    /// spent paused, waiting as the server asked (`Retry-After`) or polling STATUS does not
    /// count. At most [`MAX_CONFIG_DURATION`](super::MAX_CONFIG_DURATION).
    pub max_no_progress: Duration,
    /// Seed of the jitter; `None` draws one from the OS. Set it for reproducible runs.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            transient_base: DEFAULT_TRANSIENT_BASE,
            throttle_base: DEFAULT_THROTTLE_BASE,
            max_delay: DEFAULT_MAX_DELAY,
            budget_ratio: DEFAULT_BUDGET_RATIO,
            budget_min: DEFAULT_BUDGET_MIN,
            max_unreachable: DEFAULT_MAX_UNREACHABLE,
            max_store_outage: DEFAULT_MAX_STORE_OUTAGE,
            max_wait: DEFAULT_MAX_WAIT,
            max_no_progress: DEFAULT_MAX_NO_PROGRESS,
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// The same policy with a fixed jitter seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks that every value is in range.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] if `max_attempts` is 0 or above [`MAX_ATTEMPTS_LIMIT`],
    /// a delay or `max_unreachable` is above [`MAX_DELAY_LIMIT`], a base exceeds the cap, or
    /// `budget_ratio` is not a number in `[0, MAX_BUDGET_RATIO]`.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::new(ErrorKind::InvalidConfig, msg));
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS_LIMIT {
            return bad(format!(
                "retry max_attempts is {}; it must be between 1 and {MAX_ATTEMPTS_LIMIT}",
                self.max_attempts
            ));
        }
        if self.max_unreachable > MAX_DELAY_LIMIT {
            return bad(format!(
                "retry max_unreachable is {:?}; it must be at most {MAX_DELAY_LIMIT:?}",
                self.max_unreachable
            ));
        }
        if self.max_store_outage > MAX_DELAY_LIMIT {
            return bad(format!(
                "retry max_store_outage is {:?}; it must be at most {MAX_DELAY_LIMIT:?}",
                self.max_store_outage
            ));
        }
        for (name, d) in [
            ("max_wait", self.max_wait),
            ("max_no_progress", self.max_no_progress),
        ] {
            if d.is_zero() || d > super::MAX_CONFIG_DURATION {
                return bad(format!(
                    "retry {name} is {d:?}; it must be above 0 and at most 24 h"
                ));
            }
        }
        if self.max_delay > MAX_DELAY_LIMIT {
            return bad(format!(
                "retry max_delay is {:?}; it must be at most {MAX_DELAY_LIMIT:?}",
                self.max_delay
            ));
        }
        if self.transient_base > self.max_delay || self.throttle_base > self.max_delay {
            return bad(format!(
                "retry bases ({:?} transient, {:?} throttle) must not exceed max_delay {:?}",
                self.transient_base, self.throttle_base, self.max_delay
            ));
        }
        if !(0.0..=MAX_BUDGET_RATIO).contains(&self.budget_ratio) {
            return bad(format!(
                "retry budget_ratio is {}; it must be between 0 and {MAX_BUDGET_RATIO}",
                self.budget_ratio
            ));
        }
        Ok(())
    }

    /// The upload-wide retry budget for an upload of `segments` segments.
    ///
    /// ```
    /// use chunkwise::engine::RetryPolicy;
    /// let p = RetryPolicy::default();
    /// assert_eq!(p.budget(10), 10);
    /// assert_eq!(p.budget(1000), 500);
    /// ```
    pub fn budget(&self, segments: u32) -> u32 {
        // budget_ratio is validated to [0, 10], so the product fits comfortably in f64 and
        // the cast back saturates at worst.
        let share = (f64::from(segments) * self.budget_ratio).ceil() as u32;
        share.max(self.budget_min)
    }
}

/// Backoff delays with full jitter from a seeded RNG.
///
/// Hand-written rather than built on `backon`: backon's jitter *adds* `U(0, d)` to the
/// exponential delay instead of drawing the whole delay from `U[0, d]` (AWS's full jitter),
/// and its `Retry` wrapper owns the loop, while here the engine's scheduler owns it: each
/// attempt is reported to the [`Strategy`](crate::scheduler::Strategy) and a retry waits in
/// the scheduler's queue, not in a sleeping future.
#[derive(Debug)]
pub(crate) struct Backoff {
    rng: StdRng,
    transient_base: Duration,
    throttle_base: Duration,
    max_delay: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        let rng = match policy.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Backoff {
            rng,
            transient_base: policy.transient_base,
            throttle_base: policy.throttle_base,
            max_delay: policy.max_delay,
        }
    }

    /// The delay before retry number `retry` (0 for the first retry) of a request:
    /// `U[0, min(cap, base · 2^retry)]`, and at least `retry_after` when the server gave one.
    pub(crate) fn delay(
        &mut self,
        retry: u32,
        throttled: bool,
        retry_after: Option<Duration>,
    ) -> Duration {
        let base = if throttled {
            self.throttle_base
        } else {
            self.transient_base
        };
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        let ceiling = base.saturating_mul(factor).min(self.max_delay);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(self.rng.random_range(0..=ceiling_nanos));
        retry_after.map_or(jittered, |ra| jittered.max(ra))
    }
}

/// The upload-wide retry counter.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    spent: u32,
}

impl RetryBudget {
    pub(crate) fn new() -> Self {
        RetryBudget { spent: 0 }
    }

    /// Spends one retry if `limit` allows it.
    pub(crate) fn try_spend(&mut self, limit: u32) -> bool {
        if self.spent < limit {
            self.spent += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn spent(&self) -> u32 {
        self.spent
    }
}

/// A stretch of time in which requests could not reach the server.
#[derive(Debug, Clone, Copy)]
struct Outage {
    /// When the first request failed to connect.
    since: Instant,
    /// Requests started since then that failed to connect too (they set the backoff).
    probes: u32,
}

/// The server could not be reached: how long so far, and the wait before the next probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unreached {
    pub(crate) down: Duration,
    pub(crate) delay: Duration,
    pub(crate) gives_up_in: Duration,
}

/// The rules of a [`RetryPolicy`] for one upload, in one place: the upload core's requests
/// and the requests around it (one-shot upload, alt text, subtitles) take their decisions
/// here. It holds the backoff's random state, the upload-wide budget and the outage clock.
#[derive(Debug)]
pub(crate) struct Retrier {
    pub(crate) policy: RetryPolicy,
    pub(crate) backoff: Backoff,
    budget: RetryBudget,
    outage: Option<Outage>,
}

impl Retrier {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        Retrier {
            policy: policy.clone(),
            backoff: Backoff::new(policy),
            budget: RetryBudget::new(),
            outage: None,
        }
    }

    /// Retries spent from the budget.
    pub(crate) fn spent(&self) -> u32 {
        self.budget.spent()
    }

    /// Whether the server is being waited for (one request at a time probes it).
    pub(crate) fn in_outage(&self) -> bool {
        self.outage.is_some()
    }

    /// Forgets the outage (time spent paused is not time the server was unreachable).
    pub(crate) fn end_outage(&mut self) {
        self.outage = None;
    }

    /// A request started at `started` failed to connect at `now`: the wait before the next
    /// probe, or, once the server has been unreachable for `max_unreachable`, the error that
    /// ends the upload. Spends no attempt and no budget.
    pub(crate) fn unreachable(
        &mut self,
        error: Error,
        started: Instant,
        now: Instant,
    ) -> Result<Unreached> {
        let max = self.policy.max_unreachable;
        let outage = self.outage.get_or_insert(Outage {
            since: now,
            probes: 0,
        });
        let down = now.saturating_duration_since(outage.since);
        if down >= max {
            let segment = error.segment();
            let fatal = Error::new(
                ErrorKind::Unreachable,
                format!(
                    "the server could not be reached for {down:.1?} (retry max_unreachable is \
                     {max:?}): check the network and the base URL"
                ),
            )
            .with_source(error);
            return Err(match segment {
                Some(index) => fatal.with_segment(index),
                None => fatal,
            });
        }
        // Requests already in flight when the outage began fail together and tell the same
        // thing once; only later ones are probes that lengthen the backoff.
        let retry = outage.probes;
        if started >= outage.since {
            outage.probes += 1;
        }
        let delay = self.backoff.delay(retry, false, None).min(max - down);
        Ok(Unreached {
            down,
            delay,
            gives_up_in: max - down,
        })
    }

    /// A request started at `started` reached the server. That ends an outage, unless the
    /// request began before it (then only its success does: an old connection's failure
    /// says nothing of new ones).
    pub(crate) fn reached(&mut self, started: Instant, success: bool) {
        if self.outage.is_some_and(|o| success || started >= o.since) {
            tracing::debug!("server reachable again");
            self.outage = None;
        }
    }

    /// A request's attempt `attempt` (of which `counted` count against `max_attempts`)
    /// failed with `error`, an answer or a lost connection: the backoff before the next
    /// attempt, or the error that ends the upload (not retryable, out of attempts, or out
    /// of the `budget_limit` retries).
    pub(crate) fn failed(
        &mut self,
        error: Error,
        attempt: u32,
        counted: u32,
        budget_limit: u32,
    ) -> Result<Duration> {
        if !error.is_retryable() || counted >= self.policy.max_attempts {
            return Err(if attempt > 1 {
                error.with_attempts(attempt)
            } else {
                error
            });
        }
        if !self.budget.try_spend(budget_limit) {
            return Err(Error::new(
                ErrorKind::RetryBudgetExhausted,
                format!(
                    "{} of the upload's {budget_limit} retries are spent; the link or server \
                     is failing too often",
                    self.budget.spent()
                ),
            )
            .with_attempts(attempt)
            .with_source(error));
        }
        Ok(self
            .backoff
            .delay(counted - 1, error.is_throttled(), error.retry_after()))
    }

    /// The error that ends the upload when `error` asks for a wait (`Retry-After`) longer
    /// than the policy's `max_wait`, or one that ends after `expires` (the media id's
    /// expiry), at wall-clock time `wall`.
    pub(crate) fn too_long_a_wait(
        &self,
        error: &Error,
        wall: SystemTime,
        expires: Option<SystemTime>,
    ) -> Option<Error> {
        let wait = error.retry_after()?;
        let until = wall.checked_add(wait);
        let when = until.map_or_else(
            || "a time beyond the calendar".to_string(),
            |t| {
                format!(
                    "{} ({})",
                    httpdate::fmt_http_date(t),
                    humantime::format_duration(wait)
                )
            },
        );
        let max = self.policy.max_wait;
        let message = if wait > max {
            format!(
                "the server asks to wait until {when}, longer than retry max_wait ({}): the \
                 upload is saved; run it again after that time",
                humantime::format_duration(max)
            )
        } else if expires.is_some_and(|t| until.is_none_or(|u| u > t)) {
            format!(
                "the server asks to wait until {when}, after the media id expires: run the \
                 upload again after that time (it will start over with a new INIT)"
            )
        } else {
            return None;
        };
        Some(Error::new(error.kind(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling() {
        let mut b = Backoff::new(&RetryPolicy::default().with_seed(7));
        for retry in 0..10 {
            let ceiling = (DEFAULT_TRANSIENT_BASE * 2u32.pow(retry)).min(DEFAULT_MAX_DELAY);
            for _ in 0..50 {
                assert!(b.delay(retry, false, None) <= ceiling);
            }
            let throttle = (DEFAULT_THROTTLE_BASE * 2u32.pow(retry)).min(DEFAULT_MAX_DELAY);
            assert!(b.delay(retry, true, None) <= throttle);
        }
        // Huge retry numbers saturate instead of overflowing.
        assert!(b.delay(u32::MAX, false, None) <= DEFAULT_MAX_DELAY);
    }

    #[test]
    fn jitter_is_spread_and_reproducible() {
        let draw = |seed| {
            let mut b = Backoff::new(&RetryPolicy::default().with_seed(seed));
            (0..100)
                .map(|_| b.delay(5, false, None))
                .collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
        // Full jitter: draws fall in both halves of [0, 3.2 s].
        let half = Duration::from_millis(1600);
        assert!(a.iter().any(|d| *d < half));
        assert!(a.iter().any(|d| *d > half));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(&RetryPolicy::default().with_seed(3));
        let ra = Duration::from_secs(30);
        assert_eq!(b.delay(0, true, Some(ra)), ra);
    }

    #[test]
    fn validation_rejects_out_of_range_values() {
        assert!(RetryPolicy::default().validate().is_ok());
        let cases = [
            RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                max_attempts: MAX_ATTEMPTS_LIMIT + 1,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                transient_base: Duration::from_secs(10),
                ..RetryPolicy::default()
            },
            RetryPolicy {
                max_delay: Duration::from_secs(7200),
                ..RetryPolicy::default()
            },
            RetryPolicy {
                max_unreachable: MAX_DELAY_LIMIT + Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            RetryPolicy {
                budget_ratio: f64::NAN,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                budget_ratio: -0.5,
                ..RetryPolicy::default()
            },
        ];
        for p in cases {
            assert_eq!(
                p.validate().unwrap_err().kind(),
                ErrorKind::InvalidConfig,
                "{p:?}"
            );
        }
    }

    #[test]
    fn budget_counts_down() {
        let mut b = RetryBudget::new();
        assert!(b.try_spend(2));
        assert!(b.try_spend(2));
        assert!(!b.try_spend(2));
        assert_eq!(b.spent(), 2);
    }
}
