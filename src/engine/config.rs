//! The engine's configuration and its defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::oneshot::OneShotMode;
use super::retry::RetryPolicy;
use crate::checkpoint::CheckpointStore;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::{DEFAULT_MAX_APPEND_BYTES, MAX_SEGMENTS};
use crate::scheduler::{AdaptiveStrategy, FixedStrategy, PlanContext, Strategy};

/// Makes a fresh [`Strategy`] for each upload (a strategy learns from one upload's attempts).
pub type StrategyFactory = Arc<dyn Fn() -> Box<dyn Strategy> + Send + Sync>;

/// The most APPENDs a strategy may keep in flight; larger answers are rejected by
/// [`EngineConfig::validate`] and clamped at run time.
///
/// Source: the highest default concurrency of any anchor, aws-s3-transfer-manager-rs's 128
/// workers (adaptive-anchors.md §1 row 6), which is a datacenter figure; more for one file of
/// at most 1000 segments is a misconfiguration.
pub const MAX_IN_FLIGHT_LIMIT: usize = 128;

/// Wait before the next STATUS when the server sent no `check_after_secs`: 1 s.
///
/// Source: protocol.md §10 ("default 1–5 s if missing"); 1 s is also the most common value
/// the server sends (§2.6).
pub const DEFAULT_CHECK_AFTER: Duration = Duration::from_secs(1);

/// Shortest wait between STATUS requests, whatever the server sends (a `check_after_secs` of
/// 0 would otherwise poll in a tight loop): 1 s.
///
/// Source: `check_after_secs` is whole seconds on the wire (protocol.md §2.6), so 1 s is the
/// finest wait the server can mean.
pub const MIN_CHECK_AFTER: Duration = Duration::from_secs(1);

/// Longest wait between STATUS requests, whatever the server sends: 60 s.
///
/// Source: reasonable default; the server's typical values are 1, 5 and 10 s
/// (protocol.md §2.6), so a longer one is more likely a mistake than advice.
pub const MAX_CHECK_AFTER: Duration = Duration::from_secs(60);

/// How long processing may take after FINALIZE before the upload fails with
/// [`ErrorKind::ProcessingTimeout`]: 10 minutes.
///
/// Source: google-resumable-media gives up after 600 s of cumulative sleep
/// (adaptive-anchors.md §2.4); X processes videos of the 512 MiB era within minutes.
pub const DEFAULT_PROCESSING_DEADLINE: Duration = Duration::from_secs(600);

/// Deadline of one INIT, FINALIZE or STATUS request: 60 s.
///
/// Source: the 60 s read timeout of google-resumable-media's request helpers
/// (adaptive-anchors.md §2.4); these requests carry no payload, so a size-aware deadline is
/// not needed.
pub const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest duration any configuration value may have: 24 hours, the lifetime of a v2
/// media id (`expires_after_secs` 86399, protocol.md §2.5). Nothing can usefully wait longer.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(86_400);

/// STATUS polling after FINALIZE.
///
/// # Default
///
/// `default_check_after` [`DEFAULT_CHECK_AFTER`], `min_check_after` [`MIN_CHECK_AFTER`],
/// `max_check_after` [`MAX_CHECK_AFTER`], `deadline` [`DEFAULT_PROCESSING_DEADLINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollingConfig {
    /// Wait when the server sent no `check_after_secs`.
    pub default_check_after: Duration,
    /// Shortest wait between STATUS requests.
    pub min_check_after: Duration,
    /// Longest wait between STATUS requests.
    pub max_check_after: Duration,
    /// How long processing may take in all.
    pub deadline: Duration,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            default_check_after: DEFAULT_CHECK_AFTER,
            min_check_after: MIN_CHECK_AFTER,
            max_check_after: MAX_CHECK_AFTER,
            deadline: DEFAULT_PROCESSING_DEADLINE,
        }
    }
}

impl PollingConfig {
    /// The wait before the next STATUS for a server hint of `hint` seconds.
    pub(crate) fn wait_for(&self, hint: Option<u64>) -> Duration {
        // Not `clamp`, which panics if a caller broke min <= max after validation.
        hint.map_or(self.default_check_after, Duration::from_secs)
            .min(self.max_check_after)
            .max(self.min_check_after)
    }

    fn validate(&self) -> Result<()> {
        let in_range = |d: Duration| !d.is_zero() && d <= MAX_CONFIG_DURATION;
        if !in_range(self.min_check_after)
            || self.min_check_after > self.max_check_after
            || !in_range(self.max_check_after)
            || !(self.min_check_after..=self.max_check_after).contains(&self.default_check_after)
        {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "STATUS polling waits must satisfy 0 < min ({:?}) <= default ({:?}) <= max \
                     ({:?}) <= 24 h",
                    self.min_check_after, self.default_check_after, self.max_check_after
                ),
            ));
        }
        if !in_range(self.deadline) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the processing deadline is {:?}; it must be above 0 and at most 24 h",
                    self.deadline
                ),
            ));
        }
        Ok(())
    }
}

/// How the [`Engine`](super::Engine) uploads.
///
/// # Default
///
/// A cold [`AdaptiveStrategy::default()`] per upload (chunk size, parallelism and deadlines
/// follow the measured link),
/// [`RetryPolicy::default()`], [`PollingConfig::default()`], INIT/FINALIZE/STATUS deadline
/// [`DEFAULT_CONTROL_TIMEOUT`], category size limits enforced, request tracing off, no
/// checkpoint store, one-shot uploads [`OneShotMode::Auto`].
///
/// ```
/// use chunkwise::engine::EngineConfig;
/// use chunkwise::scheduler::FixedStrategy;
/// use std::time::Duration;
/// let config = EngineConfig::default()
///     .with_fixed_strategy(FixedStrategy::new(1 << 20, 2, Duration::from_secs(30)));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct EngineConfig {
    /// Makes the scheduling strategy of each upload.
    pub strategy: StrategyFactory,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
    /// STATUS polling after FINALIZE.
    pub polling: PollingConfig,
    /// Deadline of one INIT, FINALIZE or STATUS request.
    pub control_timeout: Duration,
    /// Reject sources larger than their [`MediaCategory`](crate::MediaCategory)'s documented
    /// limit before any request. Turn off for accounts with larger limits (Premium v2 video).
    pub enforce_category_limits: bool,
    /// Record every APPEND attempt in [`UploadReport::trace`](super::UploadReport::trace).
    pub trace_requests: bool,
    /// Where each upload's [`Checkpoint`](crate::checkpoint::Checkpoint) is saved, after INIT
    /// and after acknowledged segments, and removed once FINALIZE succeeded; `None` saves
    /// nothing (a cancelled upload still hands its checkpoint back in
    /// [`CancelOutcome`](super::CancelOutcome)).
    pub checkpoint_store: Option<Arc<dyn CheckpointStore>>,
    /// When a new upload goes up in one request instead of INIT, APPEND and FINALIZE.
    pub one_shot: OneShotMode,
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("strategy", &(self.strategy)())
            .field("retry", &self.retry)
            .field("polling", &self.polling)
            .field("control_timeout", &self.control_timeout)
            .field("enforce_category_limits", &self.enforce_category_limits)
            .field("trace_requests", &self.trace_requests)
            .field("checkpoint_store", &self.checkpoint_store)
            .field("one_shot", &self.one_shot)
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            strategy: Arc::new(|| Box::new(AdaptiveStrategy::default())),
            retry: RetryPolicy::default(),
            polling: PollingConfig::default(),
            control_timeout: DEFAULT_CONTROL_TIMEOUT,
            enforce_category_limits: true,
            trace_requests: false,
            checkpoint_store: None,
            one_shot: OneShotMode::Auto,
        }
    }
}

impl EngineConfig {
    /// Uses `make` to create each upload's strategy.
    pub fn with_strategy<S, F>(mut self, make: F) -> Self
    where
        S: Strategy + 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        self.strategy = Arc::new(move || Box::new(make()));
        self
    }

    /// Uses a copy of `strategy` for each upload.
    pub fn with_fixed_strategy(self, strategy: FixedStrategy) -> Self {
        self.with_strategy(move || strategy)
    }

    /// Saves checkpoints to `store`.
    pub fn with_checkpoint_store(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.checkpoint_store = Some(store);
        self
    }

    /// Uses `retry` as the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Checks every value. The strategy is checked by making one and asking it for its first
    /// chunk size (with the default 5 MiB payload limit), its parallelism, its deadline for a
    /// full-size segment and its stall timeout. [`Engine::new`](super::Engine::new) also
    /// checks the chunk size against the protocol's own limit.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] naming the first value out of range: a strategy that
    /// asks for 0-byte segments, allows 0 or more than [`MAX_IN_FLIGHT_LIMIT`] APPENDs in
    /// flight, or gives a zero deadline or stall timeout; a retry policy out of range
    /// ([`RetryPolicy::validate`]); polling waits out of order or 0; a zero control timeout;
    /// any duration above [`MAX_CONFIG_DURATION`].
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::new(ErrorKind::InvalidConfig, msg));
        let mut probe = (self.strategy)();
        let now = Instant::now();
        if probe_chunk_size(probe.as_mut(), now, DEFAULT_MAX_APPEND_BYTES) == 0 {
            return bad(
                "the strategy's chunk size is 0 bytes; give a positive size such as 4 MiB"
                    .to_string(),
            );
        }
        let parallelism = probe.max_in_flight(now);
        if parallelism == 0 || parallelism > MAX_IN_FLIGHT_LIMIT {
            return bad(format!(
                "the strategy allows {parallelism} APPENDs in flight; it must allow between 1 \
                 and {MAX_IN_FLIGHT_LIMIT}"
            ));
        }
        let deadline = probe.start_attempt(now, DEFAULT_MAX_APPEND_BYTES);
        if deadline.is_zero() || deadline > MAX_CONFIG_DURATION {
            return bad(format!(
                "the strategy's request deadline is {deadline:?}; it must be above 0 and at \
                 most 24 h"
            ));
        }
        if let Some(stall) = probe.stall_timeout() {
            if stall.is_zero() || stall > MAX_CONFIG_DURATION {
                return bad(format!(
                    "the strategy's stall timeout is {stall:?}; it must be above 0 and at most \
                     24 h"
                ));
            }
        }
        self.retry.validate()?;
        self.polling.validate()?;
        if self.control_timeout.is_zero() || self.control_timeout > MAX_CONFIG_DURATION {
            return bad(format!(
                "the control request timeout is {:?}; it must be above 0 and at most 24 h",
                self.control_timeout
            ));
        }
        Ok(())
    }
}

/// The chunk size `strategy` asks for at the start of an upload with a per-APPEND limit of
/// `max_chunk`: a large file, every segment index free, a floor of 1 byte.
pub(crate) fn probe_chunk_size(strategy: &mut dyn Strategy, now: Instant, max_chunk: u64) -> u64 {
    strategy.chunk_size(&PlanContext {
        now,
        remaining_bytes: u64::from(MAX_SEGMENTS).saturating_mul(max_chunk),
        remaining_segments: MAX_SEGMENTS,
        min_chunk: 1,
        max_chunk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        EngineConfig::default().validate().unwrap();
        let dbg = format!("{:?}", EngineConfig::default());
        assert!(dbg.contains("AdaptiveStrategy"), "{dbg}");
    }

    /// The error text of a configuration with strategy `s`, which must be invalid.
    fn rejected(s: FixedStrategy) -> String {
        let e = EngineConfig::default()
            .with_fixed_strategy(s)
            .validate()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        e.to_string()
    }

    #[test]
    fn zero_and_absurd_parallelism_and_zero_chunks_are_rejected() {
        for parallelism in [0, MAX_IN_FLIGHT_LIMIT + 1, usize::MAX] {
            let mut s = FixedStrategy::default();
            s.parallelism = parallelism;
            let e = rejected(s);
            assert!(e.contains("in flight"), "{e}");
        }
        let e = rejected(FixedStrategy::new(0, 1, Duration::from_secs(1)));
        assert!(e.contains("chunk size is 0"), "{e}");
    }

    #[test]
    fn zero_and_absurd_durations_are_rejected() {
        let day = MAX_CONFIG_DURATION + Duration::from_secs(1);
        for deadline in [Duration::ZERO, day] {
            let e = rejected(FixedStrategy::new(1, 1, deadline));
            assert!(e.contains("deadline"), "{e}");
        }

        let polling = |f: fn(&mut PollingConfig)| {
            let mut p = PollingConfig::default();
            f(&mut p);
            EngineConfig {
                polling: p,
                ..EngineConfig::default()
            }
        };
        let cases = [
            polling(|p| p.min_check_after = Duration::ZERO),
            polling(|p| p.default_check_after = Duration::from_secs(120)),
            polling(|p| p.deadline = Duration::ZERO),
            EngineConfig {
                control_timeout: Duration::ZERO,
                ..EngineConfig::default()
            },
            EngineConfig::default().with_retry(RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            }),
            polling(|p| p.deadline = MAX_CONFIG_DURATION + Duration::from_secs(1)),
            EngineConfig {
                control_timeout: day,
                ..EngineConfig::default()
            },
            EngineConfig::default().with_retry(RetryPolicy {
                max_delay: Duration::MAX,
                ..RetryPolicy::default()
            }),
        ];
        for c in cases {
            assert_eq!(
                c.validate().unwrap_err().kind(),
                ErrorKind::InvalidConfig,
                "{c:?}"
            );
        }
    }

    #[test]
    fn polling_waits_are_clamped() {
        let p = PollingConfig::default();
        assert_eq!(p.wait_for(None), DEFAULT_CHECK_AFTER);
        assert_eq!(p.wait_for(Some(0)), MIN_CHECK_AFTER);
        assert_eq!(p.wait_for(Some(5)), Duration::from_secs(5));
        assert_eq!(p.wait_for(Some(100_000)), MAX_CHECK_AFTER);
    }
}
