//! The scheduling seam: every decision the engine takes about *how* to send.
//!
//! The engine asks a [`Strategy`] for the size of the next segment and how many APPENDs may
//! be in flight, tells it when an attempt starts (it answers with the attempt's deadline) and tells it what
//! happened to every attempt through [`Observation`]s. A strategy holds no I/O and reads no
//! clock of its own: time comes in through the arguments (`tokio::time::Instant`, so tests
//! drive it with `tokio::time::pause`), which keeps it testable step by step.
//!
//! Whatever a strategy answers, the engine enforces the protocol's hard limits around it:
//! a segment is never larger than the per-APPEND payload limit, never smaller than the floor
//! `ceil(remaining_bytes / remaining_segments)` that keeps the upload within 1000 segments,
//! and never larger than what is left of the file.
//!
//! [`FixedStrategy`] pins chunk size, parallelism and deadline: what today's clients do.
//! [`AdaptiveStrategy`] derives all three from measurement (see [`adaptive`]).

pub mod adaptive;
mod estimator;
mod pacer;
#[cfg(test)]
pub(crate) mod sim;

pub use adaptive::{
    AdaptiveConfig, AdaptiveState, AdaptiveStrategy, ChunkMode, Estimates, ParallelismMode,
};
pub use pacer::RateCap;

use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

use crate::limits::MIB;

/// What the engine knows when it asks for the next segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanContext {
    /// Now.
    pub now: Instant,
    /// Bytes of the file not yet assigned to a segment.
    pub remaining_bytes: u64,
    /// Segment indices not yet used (of the 1000).
    pub remaining_segments: u32,
    /// The smallest size that keeps the rest of the file within the remaining segments:
    /// `ceil(remaining_bytes / remaining_segments)`.
    pub min_chunk: u64,
    /// The largest payload one APPEND may carry (body limit, base64 accounted for).
    pub max_chunk: u64,
}

/// How an APPEND attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Success,
    /// The request ran past its deadline.
    Timeout,
    /// The request made no progress for the stall time and was abandoned.
    Stalled,
    /// A retryable failure: transport error, 5xx, 408.
    RetryableError,
    /// 429; `retry_after` is the server's requested delay, if it gave one.
    Throttled {
        /// Requested delay.
        retry_after: Option<Duration>,
    },
    /// A non-retryable failure; the upload is about to end.
    Fatal,
}

/// One finished APPEND attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The segment index.
    pub segment_index: u32,
    /// Payload bytes of the segment.
    pub bytes: u64,
    /// When the request was started.
    pub started: Instant,
    /// When its response (or failure) arrived.
    pub finished: Instant,
    /// How it ended.
    pub outcome: Outcome,
    /// APPENDs in flight when this one started, itself included.
    pub in_flight: usize,
    /// Whether the engine was not keeping the link busy while this request ran (fewer
    /// requests in flight than allowed because the file was running out, or waits on
    /// retries). Rate estimates should ignore such samples.
    pub app_limited: bool,
}

/// The scheduling decisions of an upload. See the [module docs](self).
pub trait Strategy: Send + fmt::Debug {
    /// The payload size of the next segment. The engine clamps the answer to
    /// `[ctx.min_chunk, ctx.max_chunk]` and to what is left of the file. A decision: it may
    /// change the strategy's state.
    fn chunk_size(&mut self, ctx: &PlanContext) -> u64;

    /// How many APPENDs may be in flight now (at least 1). A query: it changes nothing.
    fn max_in_flight(&self, now: Instant) -> usize;

    /// An APPEND attempt of `bytes` payload bytes starts now: returns its deadline. Called
    /// exactly once per attempt, as it starts (pacing caps are charged here); every attempt
    /// started is later reported once to [`observe`](Strategy::observe), unless a pause
    /// abandons it or the upload ends first.
    fn start_attempt(&mut self, now: Instant, bytes: u64) -> Duration;

    /// How long a request may go without sending a byte before it is abandoned as stalled;
    /// `None` disables stall detection.
    fn stall_timeout(&self) -> Option<Duration> {
        None
    }

    /// No new request may start before this instant (a 429's `Retry-After`, a pacing cap).
    fn not_before(&self, _now: Instant) -> Option<Instant> {
        None
    }

    /// Learns from a finished attempt.
    fn observe(&mut self, obs: &Observation);

    /// What the strategy has learnt (rate and latency estimates...), for a
    /// [`Checkpoint`](crate::checkpoint::Checkpoint), so that a resumed upload does not start
    /// from scratch. `None` (the default) stores nothing. Must hold no credential.
    fn export_state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Restores what [`export_state`](Strategy::export_state) returned, possibly in another
    /// process and after a long time; called before the resumed upload's first decision. A
    /// value it does not understand (another strategy's, an older version's) must be
    /// ignored, not trusted. The default ignores everything.
    fn import_state(&mut self, _state: &serde_json::Value) {}
}

#[cfg(test)]
fn _obj_safe(_: Box<dyn Strategy>) {}

/// Default fixed chunk size: 4 MiB.
///
/// Source: both official X samples (large-video-upload-python, xurl) use 4 MiB and
/// protocol.md §10 recommends it as the safe default.
pub const DEFAULT_FIXED_CHUNK: u64 = 4 * MIB;

/// Default fixed parallelism: 3 APPENDs in flight.
///
/// Source: node-twitter-api-v2 runs up to 3 APPENDs at once (protocol.md §2.4), and on clean
/// links 1 MiB × 3 is already within 1% of the physical limit (issue 4's premise).
pub const DEFAULT_FIXED_PARALLELISM: usize = 3;

/// Default fixed request deadline: 120 s per APPEND.
///
/// Source: the 2-minute per-part timeout of aws-sdk-js (adaptive-anchors.md, aws-sdk-js
/// #1162), a common fixed choice; the adaptive strategy replaces it with a size-aware one.
pub const DEFAULT_FIXED_DEADLINE: Duration = Duration::from_secs(120);

/// Pinned chunk size, parallelism and deadline: no adaptation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedStrategy {
    /// Payload bytes per segment (grown by the engine when the file needs more than 1000).
    pub chunk_size: u64,
    /// APPENDs in flight.
    pub parallelism: usize,
    /// Deadline of every APPEND, whatever its size.
    pub deadline: Duration,
    retry_hold: Option<Instant>,
}

impl FixedStrategy {
    /// A fixed strategy. `parallelism` below 1 is treated as 1.
    pub fn new(chunk_size: u64, parallelism: usize, deadline: Duration) -> Self {
        FixedStrategy {
            chunk_size,
            parallelism: parallelism.max(1),
            deadline,
            retry_hold: None,
        }
    }
}

impl Default for FixedStrategy {
    /// [`DEFAULT_FIXED_CHUNK`] (4 MiB), [`DEFAULT_FIXED_PARALLELISM`] and
    /// [`DEFAULT_FIXED_DEADLINE`]. 4 MiB is above the payload limit of base64 APPENDs
    /// (3.75 MiB): pin a chunk within the limit with [`FixedStrategy::new`] there.
    fn default() -> Self {
        FixedStrategy::new(
            DEFAULT_FIXED_CHUNK,
            DEFAULT_FIXED_PARALLELISM,
            DEFAULT_FIXED_DEADLINE,
        )
    }
}

impl Strategy for FixedStrategy {
    fn chunk_size(&mut self, _ctx: &PlanContext) -> u64 {
        self.chunk_size
    }

    fn max_in_flight(&self, _now: Instant) -> usize {
        self.parallelism
    }

    fn start_attempt(&mut self, _now: Instant, _bytes: u64) -> Duration {
        self.deadline
    }

    fn not_before(&self, now: Instant) -> Option<Instant> {
        self.retry_hold.filter(|t| *t > now)
    }

    fn observe(&mut self, obs: &Observation) {
        // Even a fixed client must honour a 429's Retry-After for every request, not only the
        // one that got it: otherwise the others walk into the same wall.
        if let Outcome::Throttled {
            retry_after: Some(d),
        } = obs.outcome
        {
            let until = obs.finished + d;
            if self.retry_hold.is_none_or(|t| t < until) {
                self.retry_hold = Some(until);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fixed_strategy_holds_sends_after_429() {
        let mut s = FixedStrategy::default();
        let t0 = Instant::now();
        assert_eq!(s.not_before(t0), None);
        s.observe(&Observation {
            segment_index: 0,
            bytes: 10,
            started: t0,
            finished: t0,
            outcome: Outcome::Throttled {
                retry_after: Some(Duration::from_secs(5)),
            },
            in_flight: 1,
            app_limited: false,
        });
        assert_eq!(s.not_before(t0), Some(t0 + Duration::from_secs(5)));
        assert_eq!(s.not_before(t0 + Duration::from_secs(6)), None);
    }
}
