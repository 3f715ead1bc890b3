//! The adaptive strategy: chunk size, parallelism and deadlines from measurement.
//!
//! [`AdaptiveStrategy`] is a [`Strategy`] with no I/O and no clock of its own. It learns from
//! every finished APPEND ([`Observation`]) and answers the engine's three questions from a small
//! model of the link, in the manner of BBR (adaptive-anchors.md §2.7) and the size-aware
//! controllers of xet-core and huggingface.js (§2.8), tied together as §3 proposes.
//!
//! # The model
//!
//! A request of `S` bytes sharing the link with `n − 1` others takes about
//! `α + n·S / R`: a fixed cost `α` (round trip, server commit) plus its share of the link rate
//! `R`. Three estimates feed every decision ([`AdaptiveStrategy::estimates`]):
//!
//! - **Delivery rate `R`**: a windowed *maximum* of aggregate goodput samples (bytes acknowledged
//!   by all requests over the sample's lifetime, not one request's `bytes / time`, which is only
//!   `R / n`). Samples taken while the engine was app-limited (tail of the file, waits on
//!   retries) never lower the estimate; samples whose window saw the pipe drain, or that count
//!   a request which started long before the window, are dropped (they overstate). A timeout
//!   replaces the estimate with the upper bound the failed request proves, until the next real
//!   sample, and a request that took more than twice the model's prediction resets it to its
//!   own sample, also until the next one: a stale maximum is the dangerous error, an
//!   underestimate corrects itself with the next sample.
//! - **Fixed cost `α`**: `T − S/R` of a request that had the link to itself. Over overlapping
//!   requests the same expression is only an upper bound (their sharing counts as cost), so,
//!   as BBR's PROBE_RTT does for the propagation delay, the controller briefly runs a single
//!   request when `α` has not been measured for a while, but only once failures have been
//!   seen: `α` then sets the failure optimum, while elsewhere it is hidden by the other requests
//!   in flight and a probe would only idle the link twice. A request far slower than the model
//!   predicts teaches nothing about `α`: it means the rate changed; so does a "fixed cost" above
//!   a third of a request alone ([`MAX_FIXED_COST_SHARE`]), and a probe at most doubles `α`
//!   ([`FIXED_COST_GROWTH_LIMIT`]).
//! - **Bytes between failures `M`**: an EWMA of the payload bytes delivered between failures:
//!   transport errors, and timeouts or stalls (one sample per outage, not per request it
//!   killed).
//!
//! # The decisions
//!
//! - **Chunk size**: `S = (t − α)·R / n`, so a chunk takes about the target time `t`
//!   ([`AdaptiveConfig::target_chunk_time`], at least 9·α so the fixed cost stays under 10 %),
//!   capped by the failure optimum once failures have been seen: Young/Daly's `√(2·α·R·M)`
//!   (§2.9.4) one at a time, and with others in flight (which hide `α`) the smallest chunk that
//!   still hides it or `√(2·h·M)` for the header bytes `h`, whichever is larger; never below
//!   [`AdaptiveConfig::min_chunk`], and growing at most ×2 per observation. Requests that start
//!   together get graded sizes (`S`, `(n−1)·S/n`, …) so they do not finish together and idle
//!   the link while the next ones start. The
//!   answer never breaks the segment budget: it is at least `remaining_bytes / (f ·
//!   remaining_segments)`, planning against only a fraction `f = 1 −`
//!   [`AdaptiveConfig::segment_reserve`] of the segments left, so the engine's floor
//!   `remaining_bytes / remaining_segments` keeps falling and smaller chunks stay possible later.
//! - **Parallelism**: plateau seeking as huggingface.js does. After an epoch (a round of
//!   completions) at level `n`, the controller tries `n + 1` and keeps it only if goodput rose
//!   by 5 %, or tries `n − 1` and keeps it if goodput fell by less than 5 % (enough in flight to
//!   cover the bandwidth-delay product, and no more). It holds for a while after a failed probe.
//!   Timeouts, stalls, 429s and inflated latencies cut the level (AIMD ×0.9, at least −1, once
//!   per round; the link's signals not below two, a 429 down to one). Probing never goes below
//!   two APPENDs, so the link does not idle through every fixed cost (§3 item 11), nor below
//!   `⌈1 + α·R/S − 0.05⌉` when the fixed cost needs more.
//! - **Deadline**: `gain·(α + n·S/R) + 2.5·σ`, at least a floor, 60 s until the estimate is
//!   warm (`σ`: deviation of lateness against the model). The gain (12) lets requests in
//!   flight ride out a tenfold rate drop: on a shared link abandoning a slow request only
//!   wastes its bytes, which the retry sends again over the same slow link; dead connections
//!   are the stall timeout's job. A chunk that should take 2 s does not wait 120 s, and one
//!   that should take 60 s is not killed at 30 s; each timeout lowers the rate bound, so the
//!   next deadline is longer even on a link slower than every guess. The stall timeout scales
//!   with the estimate too.
//! - **Holds**: a 429 holds every send until its `Retry-After`; optional byte-rate and
//!   request-rate caps ([`RateCap`]) pace sends through [`Strategy::not_before`].
//!
//! [`ChunkMode::Fixed`] and [`ParallelismMode::Fixed`] pin a knob and bypass its adaptation;
//! the other estimates keep running (deadlines still follow them).
//!
//! # Engine contract
//!
//! The engine calls [`Strategy::start_attempt`] exactly once per APPEND attempt, as it
//! starts it, and reports every attempt once through [`Strategy::observe`], in completion
//! order. The strategy relies on that: the caps are charged in `start_attempt`, and the
//! starts it sees tell it how many requests are in flight (for drained samples) and whether a
//! request had the link to itself (for `α`). Without those calls it still works, with less
//! accurate samples.
//!
//! # Warm start
//!
//! [`AdaptiveStrategy::export_state`] returns the estimates as a serialisable
//! [`AdaptiveState`]; [`AdaptiveStrategy::from_state`] starts a new upload from them, so a
//! resumed upload (or the next one on the same network) skips the ramp.
//!
//! ```
//! use chunkwise::scheduler::{AdaptiveConfig, AdaptiveStrategy, PlanContext, Strategy};
//! use tokio::time::Instant;
//!
//! let mut s = AdaptiveStrategy::new(AdaptiveConfig::default())?;
//! let now = Instant::now();
//! let ctx = PlanContext {
//!     now,
//!     remaining_bytes: 100 << 20,
//!     remaining_segments: 1000,
//!     min_chunk: (100 << 20) / 1000 + 1,
//!     max_chunk: 5 << 20,
//! };
//! assert_eq!(s.chunk_size(&ctx), 1 << 20); // cold: the initial chunk
//! assert_eq!(s.max_in_flight(now), 2);
//! # Ok::<(), chunkwise::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

use super::estimator::{DeliveryTracker, EwmaVar, WindowedMax};
use super::pacer::{Pacer, RateCap, later, secs};
use super::{Observation, Outcome, PlanContext, Strategy};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::MIB;

// ---------------------------------------------------------------------------------------------
// Tuning constants. Each says where its value comes from.

/// Default first chunk size, before anything is measured: 1 MiB.
///
/// Source: the chunk of node-twitter-api-v2, egg-mode and the xdk samples (protocol.md §2.4);
/// small enough that the first measurement on a slow link arrives quickly, and the size
/// doubles per observation on a fast one.
pub const DEFAULT_INITIAL_CHUNK: u64 = MIB;

/// Default smallest chunk the controller asks for: 256 KiB (the engine's segment floor may
/// still raise it).
///
/// Source: the minimum chunk of Mux UpChunk and ngx-uploadx `DynamicChunk`
/// (adaptive-anchors.md §1 rows 11–12); §2.9.3 puts poor-3G chunks at 256 KiB–1 MiB.
pub const DEFAULT_MIN_CHUNK: u64 = 256 * 1024;

/// Default target duration of one APPEND at the current estimate: 4 s.
///
/// Source: simulation on the link proxy's FIFO model, `cargo test --lib
/// scheduler::sim::scenarios::target_chunk_time_sweep -- --ignored --nocapture` (targets 2 to
/// 8 s; the lossy link over 30 seeds besides the table). ngx-uploadx's 8–24 s band and
/// UpChunk's 10–30 s (adaptive-anchors.md §1 rows 11–12) are for uploaders that send one chunk
/// at a time, where every chunk pays a round trip of idle link; this controller keeps two or
/// more in flight, which hides it, and what a long chunk still costs is exposure: on mobile a
/// failure loses the whole chunk (§2.9.3), and the engine retries a segment with the same
/// bytes, so the chunks planned before the first failure keep failing at their full size.
/// On the lossy link (30 seeds) 8 s gave mean efficiency 0.939, worst 0.866 and up to 14.8 %
/// of the file sent twice, 6 s 0.945, 0.851 and 17.0 %; 4 s gave 0.956, 0.918 and 8.3 %, 3 s
/// 0.958, 0.924, 7.8 %, 2 s 0.963, 0.933, 6.5 %. Elsewhere every target was within 0.3 %
/// (2 s lost most, on the ATT trace). 4 s is the longest target that keeps the worst seed
/// under issue 4's 10 % of re-sent bytes with margin: per-request costs the model leaves out
/// (server work, request quotas) favour fewer, larger requests.
pub const DEFAULT_TARGET_CHUNK_TIME: Duration = Duration::from_secs(4);

/// A chunk takes at least this many fixed costs, so the fixed cost is at most 10 % of a
/// request.
///
/// Source: adaptive-anchors.md §2.9.2: "90 % needs S ≥ 9·α·B".
pub const FIXED_COST_MULTIPLE: f64 = 9.0;

/// The chunk target grows at most by this factor per observation (it shrinks at once).
///
/// Source: Mux UpChunk and ngx-uploadx double or halve the chunk per step
/// (adaptive-anchors.md §1 rows 11–12); growing gradually keeps one lucky sample from
/// committing a 5 MiB chunk.
pub const CHUNK_GROWTH_LIMIT: f64 = 2.0;

/// Default share of the remaining segments kept in reserve: plans use 75 % of them.
///
/// Source: derived (adaptive-anchors.md §3 item 2). When the segment floor binds, planning
/// against a fraction `f` of the `s` remaining segments spends `b / (f·s)` per segment, so the
/// remaining bytes fall like `s^(1/f)` and the forced chunk like `s^(1/f − 1)`: with `f = 0.75`
/// it shrinks like `s^(1/3)`, to 79 % of its start at half the budget and 63 % at a quarter,
/// instead of staying pinned at the start value (`f = 1`).
pub const DEFAULT_SEGMENT_RESERVE: f64 = 0.25;

/// Default starting parallelism: 2 APPENDs in flight.
///
/// Source: xet-core's upload controller starts at 2 (adaptive-anchors.md §1 row 15), and two
/// requests keep the link busy during each other's fixed cost (§3 item 11).
pub const DEFAULT_INITIAL_PARALLELISM: usize = 2;

/// Default maximum parallelism: 6.
///
/// Source: adaptive-anchors.md §2.9.6: mobile evidence (huggingface.js, OneTrainer #1656,
/// huggingface_hub #4893) says cap low, ≈ 4–6; we take the top of that range because the
/// plateau test, not the cap, normally decides.
pub const DEFAULT_MAX_PARALLELISM: usize = 6;

/// Highest parallelism the controller supports (the size of its per-level table).
///
/// Source: reasonable bound: five times the mobile cap; datacenter-scale concurrency (64, 128
/// in §1 rows 6 and 15) is not what a single media upload needs.
pub const MAX_PARALLELISM_LIMIT: usize = 32;

/// A parallelism probe is kept only if goodput changed by at least this fraction.
///
/// Source: huggingface.js' plateau controller keeps a +1 only if it is ≥ 5 % better
/// (adaptive-anchors.md §1 row 16, §2.8).
pub const PLATEAU_GAIN: f64 = 0.05;

/// After a failed probe or a back-off, the level is held at least this long.
///
/// Source: huggingface.js backs off and holds about 5 s (adaptive-anchors.md §1 row 16).
pub const PROBE_HOLD: Duration = Duration::from_secs(5);

/// …and at least this many epochs, so that probing takes a minority of the time when one
/// epoch lasts longer than [`PROBE_HOLD`] (APPENDs take seconds, huggingface.js' ticks 500 ms).
///
/// Source: reasonable default: a probe epoch then costs at most a quarter of the time.
pub const PROBE_HOLD_EPOCHS: u32 = 3;

/// An epoch (one measurement of a parallelism level) needs at least this many goodput samples,
/// and at least one per APPEND in flight (one round).
///
/// Source: reasonable default, after BBR judging the pipe full over 3 rounds (§2.7).
pub const MIN_EPOCH_SAMPLES: u32 = 3;

/// Multiplicative decrease of parallelism on back pressure (at least −1).
///
/// Source: Netflix AIMD `backoffRatio` 0.9 and Vector's `decrease_ratio` 0.9
/// (adaptive-anchors.md §1 rows 1 and 4).
pub const BACKOFF_RATIO: f64 = 0.9;

/// A request that took more than this multiple of the model's prediction (plus the deviation
/// allowance) is latency inflation: the rate estimate is stale or a queue is building.
///
/// Source: BBR's `cwnd_gain` of 2: in-flight data beyond twice the bandwidth-delay product is
/// queue (adaptive-anchors.md §2.7).
pub const INFLATION_RATIO: f64 = 2.0;

/// Adaptive parallelism never probes below two APPENDs in flight.
///
/// Source: adaptive-anchors.md §3 item 11 and IMC'16 (§2.7): with one request at a time the
/// link idles for every fixed cost, and on Android those gaps restarted TCP slow start; keep a
/// second request queued "even when n should be 1".
pub const MIN_AUTO_PARALLELISM: usize = 2;

/// Parallelism stays at least `⌈1 + α·R/S − IDLE_TOLERANCE⌉`: one more APPEND once the fixed
/// cost would leave the link idle more than about 5 % of the time.
///
/// Source: the same 5 % huggingface.js uses as "no measurable gain" (§1 row 16).
pub const IDLE_TOLERANCE: f64 = 0.05;

/// A chunk-target change larger than this fraction restarts the parallelism epoch.
///
/// Source: reasonable default: goodput at a level depends on the chunk size (through the
/// fixed cost), so levels are compared at settled sizes; 25 % is well above the drift of a
/// steady estimate and well below the ×2 steps of a ramp.
pub const CHUNK_CHANGE_RESTARTS_EPOCH: f64 = 0.25;

/// A request that ran alone measures the fixed cost only if the measurement is at most this
/// share of its duration; a larger "fixed cost" is a rate drop the estimate missed, and the
/// request's own goodput replaces the rate estimate instead.
///
/// Source: derived. A probe request was sized for the level `n` it returns to, `S = (t − α)·R
/// / n` with `t ≥ 9α` ([`FIXED_COST_MULTIPLE`]), so alone it takes `T = α + (t − α)/n ≥ α·(1 +
/// 8/n)`: at most 0.27·T at three in flight, the most any scenario settles at. A third leaves
/// a little margin. Found once deadlines let requests ride out rate drops (`cargo test --lib
/// scheduler::adaptive::tests::a_rate_drop_shrinks_the_chunk_and_a_rise_grows_it`): after the
/// 20 → 2 Mbit/s drop a probe against the stale maximum "measured" a fixed cost of 9 s, which
/// then sized 5 MiB chunks for a link that moves 250 kB/s.
pub const MAX_FIXED_COST_SHARE: f64 = 1.0 / 3.0;

/// A fixed-cost probe may at most double the measured fixed cost (any request that ran alone
/// may lower it at once).
///
/// Source: derived, as [`CHUNK_GROWTH_LIMIT`]. A measurement is `T − S/R`, so a rate estimate
/// a few percent stale shows as a fixed cost of a few percent of `T` (0.9 s instead of 50 ms
/// after the drop above); an underestimate costs little (sizing is bounded by the target time
/// anyway), an overestimate inflates chunks and the parallelism floor. A path whose round trip
/// really grew is followed by doubling at every probe ([`FIXED_COST_MAX_AGE`]). Without the
/// limit, at one in flight every request re-measured and doubled it (18 → 150 ms in three
/// requests after the drop).
pub const FIXED_COST_GROWTH_LIMIT: f64 = 2.0;

/// Bytes an APPEND carries besides its payload (request line, headers, authorization,
/// multipart framing, and the response), the per-request cost that stays when the fixed cost
/// is hidden by other requests in flight.
///
/// Source: estimate of the protocol client's APPEND: about 300 bytes of headers, 400 of OAuth
/// `Authorization`, 300 of multipart boundaries and part headers, and a small response.
pub const REQUEST_OVERHEAD_BYTES: u64 = 1024;

/// Smallest fixed cost used in the failure optimum `√(2·α·R·M)`, so a near-zero measurement
/// (a very fast path) cannot shrink chunks to nothing.
///
/// Source: the 30 ms p50 request latency aws-s3-transfer-manager-rs assumes (§2.3); any APPEND
/// over a real network costs at least a round trip.
pub const MIN_FIXED_COST: Duration = Duration::from_millis(30);

/// Goodput samples the delivery-rate maximum is taken over.
///
/// Source: BBR's bottleneck-bandwidth filter spans 10 round trips (adaptive-anchors.md §2.7);
/// counted here in completions, so with `n` in flight it spans `10 / n` rounds, which lets a
/// rate drop show within a few requests.
pub const RATE_WINDOW: usize = 10;

/// The fixed-cost estimate is re-verified (one request run alone) when it is older than this,
/// once failures have been seen (before, no decision depends on it enough to pay for a probe:
/// on the FIFO model the probes cost up to 1.4 % of efficiency on the traces and steps, with
/// nothing gained).
///
/// Source: BBR re-probes its min-RTT when it is 10 s stale, about 100 round trips of a
/// cellular path (§2.7). One of our rounds is one APPEND (a few seconds), so 10 s would probe
/// every other round or two; 60 s keeps the probe to a small share of the rounds.
pub const FIXED_COST_MAX_AGE: Duration = Duration::from_secs(60);

/// Weight of a new sample in the latency-error EWMA.
///
/// Source: Vector ARC's `ewma_alpha` 0.4 (adaptive-anchors.md §2.1).
pub const LATENCY_EWMA_WEIGHT: f64 = 0.4;

/// Standard deviations of latency error allowed on top of the model's prediction.
///
/// Source: Vector ARC's `rtt_deviation_scale` 2.5 (adaptive-anchors.md §2.1).
pub const LATENCY_DEV_SCALE: f64 = 2.5;

/// Weight of a new failure interval in the bytes-between-failures EWMA: a half-life of 8
/// failures, `1 − 2^(−1/8)`.
///
/// Source: xet-core's success-ratio EWMA half-life of 8 (adaptive-anchors.md §2.8).
pub const FAILURE_EWMA_WEIGHT: f64 = 0.083_001_718_709_403_96;

/// Successful samples before the estimate counts as warm (normal deadline gain and floor).
///
/// Source: BBR decides the pipe is full after 3 rounds without growth (§2.7); the shortest
/// history any anchor treats as settled.
pub const WARMUP_SAMPLES: u64 = 3;

/// Default deadline gain: a request may run at a twelfth of its estimated share of the link.
///
/// Source: simulation on the link proxy's FIFO model, `cargo test --lib
/// scheduler::sim::scenarios::deadline_gain_sweep -- --ignored --nocapture` (efficiency per
/// scenario, gains 4 to 24), and the processor-sharing sweep, `cargo test --lib
/// scheduler::adaptive::tests::deadline_gain_sweep -- --ignored --nocapture`. A rate drop
/// leaves the requests in flight with their old deadlines, and abandoning them only wastes
/// their bytes, which the retries send again over the same slow link. On the FIFO model gain
/// 4 gave 0.743 on the 20 → 2 Mbit/s step, 0.971 on the 20 s outage and 0.974 on the step
/// loop, against 0.991, 0.999 and 0.998 from gain 8 on (with 8 s chunks, 8 was not enough
/// either: 0.74 on the step); every other scenario was the same at every gain. On the
/// processor-sharing model the 20 → 2 Mbit/s drops still timed out once at gain 8 and never
/// from 12, and jittery links (±90 % every 4 s) had no spurious timeouts from gain 4. 12 is
/// the smallest gain that rides out a tenfold drop on both models. The cost is paid on a
/// connection that trickles bytes (the stall timer does not catch it): it is abandoned after
/// 12 rather than 4 times its expected time, under a minute for a 4 s chunk. It was 4 before
/// the FIFO model showed the drop.
pub const DEFAULT_DEADLINE_GAIN: f64 = 12.0;

/// Default smallest deadline once warm: 10 s.
///
/// Source: reasonable default: covers a cellular handover (seconds of silence) without
/// waiting minutes for a small chunk; §2.9.5 asks for a total deadline from the estimate plus
/// a stall timer, and the stall timer catches dead connections sooner.
pub const DEFAULT_DEADLINE_FLOOR: Duration = Duration::from_secs(10);

/// Smallest deadline before the estimate is warm: 60 s.
///
/// Source: tusd's `NetworkTimeout` and google-resumable-media's read timeout, both 60 s
/// (adaptive-anchors.md §2.4–2.5).
pub const COLD_DEADLINE_FLOOR: Duration = Duration::from_secs(60);

/// Link rate assumed for deadlines before anything is measured: 32 KiB/s.
///
/// Source: half the 67 KB/s link of aws-sdk-js #1162, where fixed deadlines never let a 5 MB
/// part finish (adaptive-anchors.md §1 row 7).
pub const COLD_ASSUMED_RATE: f64 = 32.0 * 1024.0;

/// Largest deadline ever given: 30 min.
///
/// Source: reasonable bound: the stall timeout, not the deadline, catches dead connections; this
/// only keeps an absurd estimate from producing an unbounded wait.
pub const DEADLINE_CEILING: Duration = Duration::from_secs(30 * 60);

/// Default stall timeout floor: abandon a request after 30 s without sending a byte.
///
/// Source: Uppy #1658/#2929 ("no progress for 30 s ⇒ retry"; adaptive-anchors.md §2.5).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Granularity of the engine's sent-bytes counter.
///
/// Source: the X protocol client streams APPEND bodies in 64 KiB slices and counts each as the
/// transport takes it (`AppendRequest::sent`); a slice waits for socket-buffer room, which on
/// a slow shared link takes `slice · n / R`.
pub const STALL_PROGRESS_QUANTUM: u64 = 64 * 1024;

/// The stall timeout is at least this many slice times at the current estimate.
///
/// Source: reasonable default: the margin [`DEFAULT_DEADLINE_GAIN`] had before the FIFO model
/// showed that deadlines must ride out tenfold drops. A stall is no progress at all, not slow
/// progress, and above the 30 s floor this gain only binds below about 140 kbit/s at two in
/// flight (`4 × 64 KiB × 2 / R > 30 s`).
pub const STALL_GAIN: f64 = 4.0;

/// Hold applied after a 429 that carries no `Retry-After`.
///
/// Source: the 1 s throttle base of aws-s3-transfer-manager-rs' retry design
/// (adaptive-anchors.md §2.3).
pub const DEFAULT_THROTTLE_HOLD: Duration = Duration::from_secs(1);

/// Longest hold a 429 can impose; a longer `Retry-After` is treated as this.
///
/// Source: X's longest rate-limit window, 24 h (protocol.md §5); a server asking for more is
/// more likely broken than serious, and the engine's retry budget ends such an upload anyway.
pub const MAX_THROTTLE_HOLD: Duration = Duration::from_secs(24 * 3600);

/// Version of [`AdaptiveState`]'s layout.
pub const STATE_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------
// Configuration.

/// How the chunk size is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkMode {
    /// From the estimates (see the [module docs](self)).
    #[default]
    Auto,
    /// Always this many payload bytes (the engine still grows it when the file needs more than
    /// 1000 segments, and caps it at the body limit).
    Fixed(u64),
}

/// How the number of APPENDs in flight is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParallelismMode {
    /// Plateau seeking (see the [module docs](self)).
    #[default]
    Auto,
    /// Always this many.
    Fixed(usize),
}

/// Settings of the [`AdaptiveStrategy`].
///
/// # Default
///
/// | field | default |
/// |---|---|
/// | `chunk` | [`ChunkMode::Auto`] |
/// | `parallelism` | [`ParallelismMode::Auto`] |
/// | `initial_chunk` | [`DEFAULT_INITIAL_CHUNK`] (1 MiB) |
/// | `min_chunk` | [`DEFAULT_MIN_CHUNK`] (256 KiB) |
/// | `target_chunk_time` | [`DEFAULT_TARGET_CHUNK_TIME`] (4 s) |
/// | `segment_reserve` | [`DEFAULT_SEGMENT_RESERVE`] (0.25) |
/// | `initial_parallelism` | [`DEFAULT_INITIAL_PARALLELISM`] (2) |
/// | `max_parallelism` | [`DEFAULT_MAX_PARALLELISM`] (6) |
/// | `deadline_gain` | [`DEFAULT_DEADLINE_GAIN`] (12) |
/// | `deadline_floor` | [`DEFAULT_DEADLINE_FLOOR`] (10 s) |
/// | `stall_timeout` | `Some(`[`DEFAULT_STALL_TIMEOUT`]`)` (30 s) |
/// | `byte_rate_cap` | `None` |
/// | `request_rate_cap` | `None` |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// Chunk size: adaptive or pinned.
    pub chunk: ChunkMode,
    /// APPENDs in flight: adaptive or pinned.
    pub parallelism: ParallelismMode,
    /// First chunk size, before anything is measured (1 byte ..= 1 GiB).
    pub initial_chunk: u64,
    /// Smallest chunk the controller asks for (1 byte ..= 1 GiB); the segment budget may force
    /// larger ones.
    pub min_chunk: u64,
    /// How long one APPEND should take at the current estimate (1 s ..= 10 min).
    pub target_chunk_time: Duration,
    /// Share of the remaining segments kept in reserve when planning (0 ..= 0.9).
    pub segment_reserve: f64,
    /// APPENDs in flight at the start (1 ..= `max_parallelism`).
    pub initial_parallelism: usize,
    /// Most APPENDs in flight (1 ..= [`MAX_PARALLELISM_LIMIT`]).
    pub max_parallelism: usize,
    /// How many times its predicted duration a request may take before it times out
    /// (1 ..= 100).
    pub deadline_gain: f64,
    /// Smallest deadline once the estimate is warm (1 s ..= 1 h).
    pub deadline_floor: Duration,
    /// Smallest stall timeout (it grows on slow links); `None` disables stall detection
    /// (1 s ..= 1 h when set).
    pub stall_timeout: Option<Duration>,
    /// Cap on payload bytes sent per unit of time, e.g. to leave headroom on a metered link.
    pub byte_rate_cap: Option<RateCap>,
    /// Cap on APPEND attempts per unit of time, e.g. to stay under a server's request quota.
    pub request_rate_cap: Option<RateCap>,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            chunk: ChunkMode::Auto,
            parallelism: ParallelismMode::Auto,
            initial_chunk: DEFAULT_INITIAL_CHUNK,
            min_chunk: DEFAULT_MIN_CHUNK,
            target_chunk_time: DEFAULT_TARGET_CHUNK_TIME,
            segment_reserve: DEFAULT_SEGMENT_RESERVE,
            initial_parallelism: DEFAULT_INITIAL_PARALLELISM,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            deadline_gain: DEFAULT_DEADLINE_GAIN,
            deadline_floor: DEFAULT_DEADLINE_FLOOR,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            byte_rate_cap: None,
            request_rate_cap: None,
        }
    }
}

/// Largest chunk size any setting accepts: 1 GiB (far above any APPEND body limit).
const MAX_CHUNK_SETTING: u64 = 1024 * MIB;

fn out_of_range(key: &str, value: impl std::fmt::Display, allowed: &str) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        format!("adaptive.{key} = {value} is out of range; allowed {allowed}"),
    )
}

fn check_u64(key: &str, v: u64, lo: u64, hi: u64) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(out_of_range(key, v, &format!("{lo}..={hi}")))
    }
}

fn check_f64(key: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(out_of_range(key, v, &format!("{lo} ..= {hi}")))
    }
}

fn check_duration(key: &str, v: Duration, lo: Duration, hi: Duration) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(out_of_range(
            key,
            format!("{v:?}"),
            &format!("{lo:?} ..= {hi:?}"),
        ))
    }
}

fn check_cap(key: &str, cap: Option<RateCap>) -> Result<()> {
    let Some(cap) = cap else { return Ok(()) };
    check_u64(&format!("{key}.amount"), cap.amount, 1, u64::MAX)?;
    check_duration(
        &format!("{key}.per"),
        cap.per,
        Duration::from_millis(1),
        Duration::from_secs(7 * 24 * 3600),
    )
}

impl AdaptiveConfig {
    /// Checks every setting; an out-of-range one gives [`ErrorKind::InvalidConfig`] naming the
    /// key, the value and the allowed range.
    ///
    /// ```
    /// use chunkwise::scheduler::{AdaptiveConfig, ParallelismMode};
    /// let bad = AdaptiveConfig { parallelism: ParallelismMode::Fixed(0), ..Default::default() };
    /// let err = bad.validate().unwrap_err();
    /// assert!(err.to_string().contains("adaptive.parallelism = 0"), "{err}");
    /// assert!(AdaptiveConfig::default().validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if let ChunkMode::Fixed(s) = self.chunk {
            check_u64("chunk", s, 1, MAX_CHUNK_SETTING)?;
        }
        if let ParallelismMode::Fixed(n) = self.parallelism {
            check_u64("parallelism", n as u64, 1, MAX_PARALLELISM_LIMIT as u64)?;
        }
        check_u64("initial_chunk", self.initial_chunk, 1, MAX_CHUNK_SETTING)?;
        check_u64("min_chunk", self.min_chunk, 1, MAX_CHUNK_SETTING)?;
        check_duration(
            "target_chunk_time",
            self.target_chunk_time,
            Duration::from_secs(1),
            Duration::from_secs(600),
        )?;
        check_f64("segment_reserve", self.segment_reserve, 0.0, 0.9)?;
        check_u64(
            "max_parallelism",
            self.max_parallelism as u64,
            1,
            MAX_PARALLELISM_LIMIT as u64,
        )?;
        check_u64(
            "initial_parallelism",
            self.initial_parallelism as u64,
            1,
            self.max_parallelism as u64,
        )?;
        check_f64("deadline_gain", self.deadline_gain, 1.0, 100.0)?;
        check_duration(
            "deadline_floor",
            self.deadline_floor,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        if let Some(stall) = self.stall_timeout {
            check_duration(
                "stall_timeout",
                stall,
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )?;
        }
        check_cap("byte_rate_cap", self.byte_rate_cap)?;
        check_cap("request_rate_cap", self.request_rate_cap)
    }
}

// ---------------------------------------------------------------------------------------------
// Public views of the estimates.

/// The controller's current estimates and decisions, for events, logs and plots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimates {
    /// Delivery rate `R` in payload bytes per second (windowed maximum of aggregate goodput).
    pub delivery_rate: Option<f64>,
    /// Per-request fixed cost `α`: measured by a request that ran alone, or until then (and
    /// on links without failures, where it is not probed) the smallest upper bound seen.
    pub fixed_cost: Option<Duration>,
    /// Standard deviation of how late requests finish against the model's prediction.
    pub latency_deviation: Duration,
    /// Mean payload bytes delivered between failures `M`; `None` before the first failure.
    pub bytes_between_failures: Option<f64>,
    /// The chunk size the controller aims for (before the segment floor and body limit).
    pub chunk_target: u64,
    /// The parallelism level the controller has settled on (while it briefly runs a single
    /// request to measure the fixed cost, [`Strategy::max_in_flight`] answers 1).
    pub parallelism: usize,
    /// Successful APPENDs observed.
    pub successes: u64,
    /// Failure events observed: transport errors, and timeouts or stalls (those that hit
    /// several requests at once count once).
    pub failures: u64,
    /// Payload bytes acknowledged.
    pub bytes_delivered: u64,
    /// Whether enough has been measured for the normal deadline gain.
    pub warm: bool,
}

/// The estimates worth keeping across uploads (serde), for a warm start.
///
/// ```
/// use chunkwise::scheduler::{AdaptiveConfig, AdaptiveStrategy};
/// let s = AdaptiveStrategy::new(AdaptiveConfig::default())?;
/// let json = serde_json::to_string(&s.export_state()).unwrap();
/// let state = serde_json::from_str(&json).unwrap();
/// let resumed = AdaptiveStrategy::from_state(AdaptiveConfig::default(), &state)?;
/// assert_eq!(resumed.export_state(), s.export_state());
/// # Ok::<(), chunkwise::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveState {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// Delivery rate in bytes per second.
    pub delivery_rate: Option<f64>,
    /// Measured fixed cost in seconds (`None` until a request that ran alone measured it).
    pub fixed_cost_secs: Option<f64>,
    /// Mean lateness (request duration minus prediction, at least 0), in seconds.
    pub latency_error_mean_secs: Option<f64>,
    /// Standard deviation of that lateness, in seconds.
    pub latency_error_dev_secs: f64,
    /// Mean bytes between failures.
    pub bytes_between_failures: Option<f64>,
    /// Chunk target in bytes.
    pub chunk_target: u64,
    /// APPENDs in flight.
    pub parallelism: usize,
}

// ---------------------------------------------------------------------------------------------
// Parallelism controller (private).

/// What the parallelism controller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// At an established level.
    Steady,
    /// Trying `base + 1`.
    ProbeUp { base: usize },
    /// Trying `base − 1`.
    ProbeDown { base: usize },
    /// Running a single request to measure the fixed cost, then back to `base`.
    ProbeFixedCost { base: usize, since: Instant },
}

/// Bounds and requests the strategy hands the parallelism controller at an epoch's end.
#[derive(Debug, Clone, Copy)]
struct LevelBounds {
    /// Never probe below this.
    floor: usize,
    /// Never go above this.
    max: usize,
    /// The fixed cost needs re-measuring: run one request alone.
    want_fixed_cost_probe: bool,
}

/// Plateau-seeking parallelism (huggingface.js, adaptive-anchors.md §1 row 16) with AIMD back
/// pressure (Netflix, row 4).
///
/// An epoch measures one level: it begins when the level is set and ends once
/// `max(MIN_EPOCH_SAMPLES, level)` requests started since then have finished (one round at
/// least). Its goodput is the best aggregate sample among them: each sample already spans a
/// round, and the maximum is exact for the last of a batch that finishes together, whatever
/// the order in which the engine reports it. Requests started before the epoch (at the old
/// level) do not count.
#[derive(Debug, Clone, Copy)]
struct Parallelism {
    limit: usize,
    phase: Phase,
    /// When the current epoch began; only requests started since then fill it.
    epoch_start: Option<Instant>,
    epoch_completions: u32,
    /// Best goodput sample of the epoch.
    epoch_best: f64,
    last_epoch_len: Duration,
    /// Goodput of the latest epoch at each level, 0 = never measured.
    level_rate: [f64; MAX_PARALLELISM_LIMIT + 1],
    hold_until: Option<Instant>,
    probe_down_next: bool,
}

impl Parallelism {
    fn new(limit: usize) -> Self {
        Parallelism {
            limit,
            phase: Phase::Steady,
            epoch_start: None,
            epoch_completions: 0,
            epoch_best: 0.0,
            last_epoch_len: Duration::ZERO,
            level_rate: [0.0; MAX_PARALLELISM_LIMIT + 1],
            hold_until: None,
            probe_down_next: false,
        }
    }

    /// The level to size chunks for: during a probe of the fixed cost, the level it returns to.
    fn established(&self) -> usize {
        match self.phase {
            Phase::ProbeFixedCost { base, .. } => base,
            _ => self.limit,
        }
    }

    fn is_probing_level(&self) -> bool {
        matches!(self.phase, Phase::ProbeUp { .. } | Phase::ProbeDown { .. })
    }

    /// Moves to `limit` in `phase` and starts a new epoch.
    fn set(&mut self, limit: usize, phase: Phase, now: Instant) {
        self.limit = limit.clamp(1, MAX_PARALLELISM_LIMIT);
        self.phase = phase;
        self.restart_epoch(now);
    }

    fn restart_epoch(&mut self, now: Instant) {
        self.epoch_start = Some(now);
        self.epoch_completions = 0;
        self.epoch_best = 0.0;
    }

    fn hold(&mut self, now: Instant) {
        let by_epochs = self.last_epoch_len.saturating_mul(PROBE_HOLD_EPOCHS);
        self.hold_until = Some(later(now, PROBE_HOLD.max(by_epochs)));
    }

    /// Back pressure: undo a probe and cut the level (AIMD, at least −1), then hold.
    /// Never cuts below `floor` (nor raises a level already below it).
    fn back_off(&mut self, now: Instant, floor: usize) {
        let from = match self.phase {
            Phase::ProbeUp { base } | Phase::ProbeFixedCost { base, .. } => base,
            Phase::Steady | Phase::ProbeDown { .. } => self.limit,
        };
        let cut = ((from as f64) * BACKOFF_RATIO).floor() as usize;
        let level = cut.min(from.saturating_sub(1)).max(floor.min(from)).max(1);
        self.set(level, Phase::Steady, now);
        self.hold(now);
    }

    /// A failure that is not back pressure ends a probe without a verdict.
    fn abandon_probe(&mut self, now: Instant) {
        match self.phase {
            Phase::ProbeUp { base } | Phase::ProbeDown { base } => {
                self.set(base, Phase::Steady, now);
                self.hold(now);
            }
            Phase::ProbeFixedCost { base, .. } => self.set(base, Phase::Steady, now),
            Phase::Steady => {}
        }
    }

    /// Counts a successful request with its goodput sample (`None` if it had none or it was
    /// unusable), and judges the epoch when it is full.
    fn on_success(&mut self, obs: &Observation, sample: Option<f64>, bounds: LevelBounds) {
        let now = obs.finished;
        if obs.app_limited {
            // The engine did not fill the level: this epoch measures nothing.
            self.restart_epoch(now);
            return;
        }
        let start = *self.epoch_start.get_or_insert(obs.started);
        if obs.started < start {
            return;
        }
        self.epoch_completions += 1;
        if let Some(g) = sample {
            self.epoch_best = self.epoch_best.max(g);
        }
        if self.epoch_completions < MIN_EPOCH_SAMPLES.max(self.limit as u32)
            || self.epoch_best <= 0.0
        {
            return;
        }
        let goodput = self.epoch_best;
        self.last_epoch_len = now.saturating_duration_since(start);
        // The latest epoch only: a probe always follows an epoch at its base, and an older
        // average would carry a link that has since changed.
        self.level_rate[self.limit] = goodput;
        self.decide(now, goodput, bounds);
    }

    fn decide(&mut self, now: Instant, goodput: f64, b: LevelBounds) {
        let held = self.hold_until.is_some_and(|t| now < t);
        let level = self.limit;
        match self.phase {
            Phase::ProbeUp { base } => {
                if goodput >= self.level_rate[base] * (1.0 + PLATEAU_GAIN) {
                    // The extra APPEND paid off: keep it and try one more (a ramp).
                    if level < b.max {
                        self.set(level + 1, Phase::ProbeUp { base: level }, now);
                    } else {
                        self.set(level, Phase::Steady, now);
                    }
                } else {
                    self.set(base, Phase::Steady, now);
                    self.hold(now);
                    self.probe_down_next = true;
                }
            }
            Phase::ProbeDown { base } => {
                if goodput >= self.level_rate[base] * (1.0 - PLATEAU_GAIN) {
                    // One fewer costs nothing measurable: keep it, and try one fewer still.
                    if level > b.floor {
                        self.set(level - 1, Phase::ProbeDown { base: level }, now);
                    } else {
                        self.set(level, Phase::Steady, now);
                        self.hold(now);
                        self.probe_down_next = false;
                    }
                } else {
                    self.set(base, Phase::Steady, now);
                    self.hold(now);
                    self.probe_down_next = false;
                }
            }
            // Ends with the request that ran alone (see the strategy), not with an epoch.
            Phase::ProbeFixedCost { .. } => {}
            Phase::Steady => {
                if level < b.floor {
                    // Covering the fixed cost needs no measurement.
                    self.set(b.floor.min(b.max), Phase::Steady, now);
                } else if level > b.max {
                    self.set(b.max, Phase::Steady, now);
                } else if b.want_fixed_cost_probe && level > 1 {
                    self.set(
                        1,
                        Phase::ProbeFixedCost {
                            base: level,
                            since: now,
                        },
                        now,
                    );
                } else if held {
                    self.restart_epoch(now);
                } else if self.probe_down_next && level > b.floor {
                    self.set(level - 1, Phase::ProbeDown { base: level }, now);
                } else if level < b.max {
                    self.set(level + 1, Phase::ProbeUp { base: level }, now);
                } else if level > b.floor {
                    self.set(level - 1, Phase::ProbeDown { base: level }, now);
                } else {
                    self.restart_epoch(now);
                }
            }
        }
    }
}

/// The chunk size that loses least to failures and per-request costs, with fixed cost `α`
/// (seconds), rate `R`, `M` bytes between failures and `n` requests in flight.
///
/// A request costs its fixed cost and [`REQUEST_OVERHEAD_BYTES`]; a failure wastes on average
/// half a chunk. One at a time, the link idles through every fixed cost: the overhead per byte
/// `(α·R + h)/S + S/(2M)` is least at Young/Daly's `√(2·(α·R + h)·M)` (adaptive-anchors.md
/// §2.9.4). With `n ≥ 2` in flight, the others' remaining bytes (about `(n − 1)·S/2` when
/// staggered) keep the link busy through a request's fixed cost once `S ≥ 2·α·R/(n − 1)`;
/// above that size only the header bytes remain, and the optimum is `√(2·h·M)` or the
/// smallest size that still hides the fixed cost, whichever is larger (never above the
/// sequential optimum).
fn failure_optimum(alpha: f64, rate: f64, m: f64, n: f64) -> f64 {
    let h = REQUEST_OVERHEAD_BYTES as f64;
    let sequential = (2.0 * (alpha * rate + h) * m).sqrt();
    if n < 2.0 {
        return sequential;
    }
    let pipelined = (2.0 * h * m).sqrt();
    let hiding = 2.0 * alpha * rate / (n - 1.0);
    hiding.max(pipelined).min(sequential)
}

// ---------------------------------------------------------------------------------------------
// The strategy.

/// The adaptive [`Strategy`]. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct AdaptiveStrategy {
    config: AdaptiveConfig,
    delivery: DeliveryTracker,
    rate: WindowedMax<RATE_WINDOW>,
    /// The rate is only an upper bound (left by a timeout or an inflated request) until the
    /// next real sample.
    rate_provisional: bool,
    /// When an inflated request last showed the rate fell: requests started before then ran
    /// partly at the old rate, and their samples may lower the estimate but not raise it.
    rate_fell_at: Option<Instant>,
    /// Fixed cost `α` in seconds: measured, or until then a minimum of upper bounds.
    fixed_cost: Option<f64>,
    /// `α` was measured (by a request running alone, here or in the upload a state came from).
    fixed_cost_measured: bool,
    /// When this controller last measured `α`; `None` makes it due.
    fixed_cost_at: Option<Instant>,
    /// Lateness against the prediction (duration minus prediction, at least 0), seconds.
    latency: EwmaVar,
    /// Mean bytes between failures.
    failure_interval: Option<f64>,
    delivered_since_failure: u64,
    last_failure: Option<Instant>,
    successes: u64,
    failures: u64,
    chunk_target: f64,
    /// The body limit seen in the last `chunk_size` call.
    max_chunk_seen: Option<u64>,
    par: Parallelism,
    last_backoff: Option<Instant>,
    retry_hold: Option<Instant>,
    byte_pacer: Option<Pacer>,
    request_pacer: Option<Pacer>,
    /// Recent request starts (from `start_attempt`), to tell whether a request ran alone.
    starts: [Option<Instant>; START_HISTORY],
    next_start: usize,
    /// Requests started (`start_attempt`) and not yet observed.
    in_flight_now: u64,
}

impl Default for AdaptiveStrategy {
    /// A cold controller with [`AdaptiveConfig::default`] (which always validates; a unit test
    /// checks it).
    fn default() -> Self {
        Self::from_valid_config(AdaptiveConfig::default())
    }
}

/// Request starts remembered. Source: reasonable default: only "was there more than one start
/// during this request" is asked, so any history longer than one round will do.
const START_HISTORY: usize = 16;

impl AdaptiveStrategy {
    /// A cold controller. Fails with [`ErrorKind::InvalidConfig`] if `config` does not
    /// [`validate`](AdaptiveConfig::validate).
    pub fn new(config: AdaptiveConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::from_valid_config(config))
    }

    /// A cold controller from a configuration that has been validated.
    fn from_valid_config(config: AdaptiveConfig) -> Self {
        let limit = match config.parallelism {
            ParallelismMode::Auto => config.initial_parallelism,
            ParallelismMode::Fixed(n) => n,
        };
        AdaptiveStrategy {
            config,
            delivery: DeliveryTracker::new(),
            rate: WindowedMax::new(),
            rate_provisional: false,
            rate_fell_at: None,
            fixed_cost: None,
            fixed_cost_measured: false,
            fixed_cost_at: None,
            latency: EwmaVar::new(LATENCY_EWMA_WEIGHT),
            failure_interval: None,
            delivered_since_failure: 0,
            last_failure: None,
            successes: 0,
            failures: 0,
            chunk_target: config.initial_chunk as f64,
            max_chunk_seen: None,
            par: Parallelism::new(limit),
            last_backoff: None,
            retry_hold: None,
            byte_pacer: config.byte_rate_cap.map(Pacer::new),
            request_pacer: config.request_rate_cap.map(Pacer::new),
            starts: [None; START_HISTORY],
            next_start: 0,
            in_flight_now: 0,
        }
    }

    /// A controller that starts from saved estimates (see [`export_state`](Self::export_state)).
    /// The state is checked like configuration: [`ErrorKind::InvalidConfig`] for a wrong version
    /// or a non-finite or negative value.
    pub fn from_state(config: AdaptiveConfig, state: &AdaptiveState) -> Result<Self> {
        let mut s = AdaptiveStrategy::new(config)?;
        if state.version != STATE_VERSION {
            return Err(out_of_range(
                "state.version",
                state.version,
                &STATE_VERSION.to_string(),
            ));
        }
        let finite = |key: &str, v: Option<f64>| -> Result<()> {
            match v {
                Some(x) if !x.is_finite() || x < 0.0 => {
                    Err(out_of_range(key, x, "a finite number ≥ 0"))
                }
                _ => Ok(()),
            }
        };
        finite("state.delivery_rate", state.delivery_rate)?;
        finite("state.fixed_cost_secs", state.fixed_cost_secs)?;
        finite(
            "state.latency_error_dev_secs",
            Some(state.latency_error_dev_secs),
        )?;
        finite("state.bytes_between_failures", state.bytes_between_failures)?;
        if let Some(m) = state.latency_error_mean_secs.filter(|m| !m.is_finite()) {
            return Err(out_of_range(
                "state.latency_error_mean_secs",
                m,
                "a finite number",
            ));
        }
        check_u64(
            "state.chunk_target",
            state.chunk_target,
            1,
            MAX_CHUNK_SETTING,
        )?;
        check_u64(
            "state.parallelism",
            state.parallelism as u64,
            1,
            MAX_PARALLELISM_LIMIT as u64,
        )?;

        if let Some(r) = state.delivery_rate {
            s.rate.reset_to(r);
        }
        // A saved α was measured; it is used at once and re-measured at the first chance.
        s.fixed_cost = state.fixed_cost_secs;
        s.fixed_cost_measured = state.fixed_cost_secs.is_some();
        if let Some(mean) = state.latency_error_mean_secs {
            s.latency.seed(mean, state.latency_error_dev_secs);
        }
        s.failure_interval = state.bytes_between_failures;
        if config.chunk == ChunkMode::Auto {
            s.chunk_target = state.chunk_target as f64;
        }
        if config.parallelism == ParallelismMode::Auto {
            s.par.limit = state.parallelism.clamp(1, config.max_parallelism);
        }
        Ok(s)
    }

    /// The estimates worth saving for a warm start.
    pub fn export_state(&self) -> AdaptiveState {
        AdaptiveState {
            version: STATE_VERSION,
            delivery_rate: self.rate.get(),
            fixed_cost_secs: self.fixed_cost.filter(|_| self.fixed_cost_measured),
            latency_error_mean_secs: self.latency.mean(),
            latency_error_dev_secs: self.latency.dev(),
            bytes_between_failures: self.failure_interval,
            chunk_target: self.chunk_target.round().max(1.0) as u64,
            parallelism: self.par.established(),
        }
    }

    /// The current estimates and decisions.
    pub fn estimates(&self) -> Estimates {
        Estimates {
            delivery_rate: self.rate.get(),
            fixed_cost: self.fixed_cost.map(secs),
            latency_deviation: secs(self.latency.dev()),
            bytes_between_failures: self.effective_failure_interval(),
            chunk_target: self.chunk_target.round().max(1.0) as u64,
            parallelism: self.par.established(),
            successes: self.successes,
            failures: self.failures,
            bytes_delivered: self.delivery.delivered(),
            warm: self.is_warm(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    fn is_warm(&self) -> bool {
        self.successes >= WARMUP_SAMPLES
    }

    /// `α` for sizing: only once a request that ran alone has measured it. Before that the
    /// estimate is an upper bound inflated by overlapping requests, which would make chunks
    /// too large (sizing then uses 0: the target time alone, and the `S*` floor).
    fn sizing_fixed_cost(&self) -> f64 {
        if self.fixed_cost_measured {
            self.fixed_cost.unwrap_or(0.0)
        } else {
            0.0
        }
    }

    /// `M`, at least as long as the current failure-free run.
    fn effective_failure_interval(&self) -> Option<f64> {
        self.failure_interval
            .map(|m| m.max(self.delivered_since_failure as f64))
    }

    /// The chunk size the estimates call for, before the growth limit and the segment floor.
    fn desired_chunk(&self) -> f64 {
        let Some(rate) = self.rate.get().filter(|r| *r > 0.0) else {
            return self.chunk_target;
        };
        let n = self.par.established().max(1) as f64;
        let alpha = self.sizing_fixed_cost();
        let target = self
            .config
            .target_chunk_time
            .as_secs_f64()
            .max(FIXED_COST_MULTIPLE * alpha);
        let mut size = (target - alpha) * rate / n;
        if let Some(m) = self.effective_failure_interval() {
            size = size.min(failure_optimum(
                alpha.max(MIN_FIXED_COST.as_secs_f64()),
                rate,
                m,
                n,
            ));
        }
        size.max(self.config.min_chunk as f64)
    }

    fn update_chunk_target(&mut self, now: Instant, force: bool) {
        if self.config.chunk != ChunkMode::Auto || (self.par.is_probing_level() && !force) {
            return;
        }
        let desired = self.desired_chunk();
        let mut next = desired.min(self.chunk_target * CHUNK_GROWTH_LIMIT);
        if let Some(max) = self.max_chunk_seen {
            next = next.min(max as f64);
        }
        let next = next.max(1.0);
        let change = (next - self.chunk_target).abs() / self.chunk_target.max(1.0);
        self.chunk_target = next;
        // A level's goodput depends on the chunk size: measure it at a settled one.
        if change > CHUNK_CHANGE_RESTARTS_EPOCH && self.par.phase == Phase::Steady {
            self.par.restart_epoch(now);
        }
    }

    /// The share of the chunk target for a request starting at `now`: `(n − k) / n` when `k`
    /// of the `n` allowed requests started together with it (within a fixed cost), else 1.
    ///
    /// Requests of equal size that start together share the link and finish together, and then
    /// the link idles for a fixed cost while their responses come back and the next ones start,
    /// every round. Graded sizes make them finish one after the other (each `S/n` apart), after
    /// which every completion starts one full-size request while the others still send, so the
    /// pipeline stays staggered. Requests start together after a fixed-cost probe (one request
    /// alone, then the whole level at once) and whenever several slots open at one moment.
    /// Found by the FIFO link model: after a probe, pairs finished together for the rest of
    /// the upload, and on the 20 → 2 Mbit/s step each such gap in the fast phase cost ten
    /// times its length in the slow one (efficiency 0.970 → 0.977 with grading).
    fn stagger(&self, now: Instant) -> f64 {
        if !self.is_warm() {
            // The cold ramp grows the chunk at every completion, which staggers by itself;
            // graded sizes there would only feed the first rate samples odd mixes.
            return 1.0;
        }
        let n = self.par.limit.max(1);
        let window = secs(self.sizing_fixed_cost().max(MIN_FIXED_COST.as_secs_f64()));
        let k = self
            .starts
            .iter()
            .flatten()
            .filter(|t| **t <= now && now.saturating_duration_since(**t) <= window)
            .count();
        if k == 0 || k >= n {
            1.0
        } else {
            (n - k) as f64 / n as f64
        }
    }

    /// The smallest level probing may go down to: two (no idle gaps between chunks), and
    /// `⌈1 + α·R/S − tolerance⌉` when the fixed cost needs more to keep the link busy (Little's
    /// law, §2.9.2). At most the maximum.
    fn parallelism_floor(&self) -> usize {
        let max = self.config.max_parallelism;
        let mut floor = MIN_AUTO_PARALLELISM;
        if let Some(rate) = self.rate.get() {
            let alpha = self.sizing_fixed_cost();
            let need = (1.0 + alpha * rate / self.chunk_target.max(1.0) - IDLE_TOLERANCE).ceil();
            if need.is_finite() && need > floor as f64 {
                floor = (need as usize).min(MAX_PARALLELISM_LIMIT);
            }
        }
        floor.min(max)
    }

    /// How many requests shared the link with this one at some point, itself included: those
    /// in flight when it started plus those started until it finished (an upper bound; 1 means
    /// it ran alone).
    fn overlapping(&self, obs: &Observation) -> usize {
        let started_during = self
            .starts
            .iter()
            .flatten()
            .filter(|t| **t >= obs.started && **t <= obs.finished)
            .count();
        // `started_during` counts the request itself when the engine reported its start.
        let in_flight = obs.in_flight.max(1);
        in_flight.max((in_flight - 1).saturating_add(started_during))
    }

    fn level_bounds(&self, now: Instant) -> LevelBounds {
        LevelBounds {
            floor: self.parallelism_floor(),
            max: self.config.max_parallelism,
            want_fixed_cost_probe: self.fixed_cost_stale(now) && self.failure_interval.is_some(),
        }
    }

    fn fixed_cost_stale(&self, now: Instant) -> bool {
        self.fixed_cost_at
            .is_none_or(|t| now.saturating_duration_since(t) > FIXED_COST_MAX_AGE)
    }

    /// Back pressure (timeout, stall, 429, inflation): one reaction per round, i.e. only for a
    /// request started after the previous reaction. The link's signals (timeout, stall,
    /// inflation) cut no lower than [`MIN_AUTO_PARALLELISM`]: one request at a time leaves the
    /// link idle for every fixed cost and sends no fewer bytes through a slow link. A 429 is the
    /// server asking for fewer requests, and may cut to one.
    fn congestion(&mut self, obs: &Observation) {
        if self.last_backoff.is_some_and(|t| obs.started < t) {
            return;
        }
        self.last_backoff = Some(obs.finished);
        if self.config.parallelism == ParallelismMode::Auto {
            let floor = match obs.outcome {
                Outcome::Throttled { .. } => 1,
                _ => MIN_AUTO_PARALLELISM,
            };
            self.par.back_off(obs.finished, floor);
        }
    }

    fn on_success(&mut self, obs: &Observation, duration: f64, in_flight: usize) {
        self.successes += 1;
        self.delivered_since_failure = self.delivered_since_failure.saturating_add(obs.bytes);
        let in_flight_after = u32::try_from(self.in_flight_now).unwrap_or(u32::MAX);
        let sample = self
            .delivery
            .on_delivery(obs.started, obs.finished, obs.bytes, in_flight_after)
            .filter(|s| !s.drained)
            .map(|s| s.rate);
        let bytes = obs.bytes as f64;

        // First, judge the request against the model as it stood. The request shared the link
        // with those in flight at its start and those started after it: about the level, in a
        // pipelined steady state. Far slower than predicted means the rate fell (or a queue is
        // building): take the new rate, back off, and learn nothing else from it; in particular
        // its duration says nothing about the fixed cost, and it must not widen the deviation
        // that would hide the next inflated request.
        let measured_before = self
            .rate
            .get()
            .filter(|r| *r > 0.0 && !self.rate_provisional);
        if let Some(before) = measured_before {
            let sharing = in_flight.max(self.par.limit) as f64;
            let predicted = self.fixed_cost.unwrap_or(0.0) + sharing * bytes / before;
            let allowance = INFLATION_RATIO * predicted + LATENCY_DEV_SCALE * self.latency.dev();
            if !obs.app_limited && self.is_warm() && duration > allowance {
                if let Some(g) = sample {
                    // The sample spans the change (part of its bytes went at the old rate):
                    // provisional, like a timeout's bound, until a request started after the
                    // change replaces it.
                    self.rate.reset_to(g);
                    self.rate_provisional = true;
                    self.rate_fell_at = Some(obs.finished);
                }
                self.congestion(obs);
                return;
            }
            // Only lateness counts: the prediction is an upper envelope (sharing hides the
            // fixed cost), so early requests are normal and must not widen the allowance.
            self.latency.push((duration - predicted).max(0.0));
        }

        if let Some(g) = sample {
            let mixed = self.rate_fell_at.is_some_and(|t| obs.started < t);
            if mixed {
                // Started before the fall was seen: its window mixes both rates (found by the
                // step tests: such samples held the estimate at 1.8 times the new rate).
                if !obs.app_limited && self.rate.get().is_none_or(|r| g < r) {
                    self.rate.reset_to(g);
                }
            } else if self.rate_provisional && !obs.app_limited {
                // A timeout left only an upper bound: the first real sample replaces it.
                self.rate.reset_to(g);
                self.rate_provisional = false;
            } else if !obs.app_limited || self.rate.get().is_none_or(|r| g > r) {
                // App-limited samples may raise the estimate, never lower it (BBR).
                self.rate.push(g);
            }
        }

        // Fixed cost: a request that ran alone measures it as `T − S/R`. Until one has, the
        // same expression over overlapping requests gives upper bounds (loose: their sharing
        // counts as cost), good enough for deadlines but not for sizing. Only against a rate
        // that other samples measured: against its own goodput a request would always show
        // α = 0. After a measurement, bounds are not used: against a rate that has since been
        // underestimated they would not even be bounds.
        if let (Some(before), Some(rate)) = (measured_before, self.rate.get()) {
            let bound = (duration - bytes / rate.max(before)).max(0.0);
            // If this request is itself the fastest sample, `α` against it is 0 by
            // construction: no measurement.
            let own_rate_is_max = sample.is_some_and(|g| g > before);
            if self.overlapping(obs) == 1 && !own_rate_is_max {
                if bound <= MAX_FIXED_COST_SHARE * duration {
                    // Any request alone may lower a measured `α`; only the probe may raise it,
                    // by at most the growth limit (at one in flight every request runs alone,
                    // and each would compound a stale rate's error).
                    let probing = matches!(self.par.phase, Phase::ProbeFixedCost { .. });
                    let limit = match self.fixed_cost {
                        Some(a) if self.fixed_cost_measured && probing => {
                            (FIXED_COST_GROWTH_LIMIT * a).max(MIN_FIXED_COST.as_secs_f64())
                        }
                        Some(a) if self.fixed_cost_measured => a,
                        _ => f64::INFINITY,
                    };
                    self.fixed_cost = Some(bound.min(limit));
                    self.fixed_cost_measured = true;
                } else if let Some(g) = sample.filter(|_| !obs.app_limited) {
                    // Alone on the link and far slower than its bytes at the estimated rate:
                    // not a fixed cost but a rate the (windowed maximum) estimate has not
                    // caught up with. Its own goodput is the best evidence of the rate now.
                    self.rate.reset_to(g);
                }
                self.fixed_cost_at = Some(obs.finished);
            } else if !self.fixed_cost_measured && self.fixed_cost.is_none_or(|a| bound < a) {
                self.fixed_cost = Some(bound);
            }
        }

        match self.par.phase {
            Phase::ProbeFixedCost { base, since } if in_flight == 1 && obs.started >= since => {
                self.par.set(base, Phase::Steady, obs.finished);
            }
            Phase::ProbeFixedCost { .. } => {}
            _ if self.config.parallelism == ParallelismMode::Auto => {
                let bounds = self.level_bounds(obs.finished);
                self.par.on_success(obs, sample, bounds);
            }
            _ => {}
        }
    }

    fn on_failure(&mut self, obs: &Observation) {
        // A timeout or stall of a request that started before the previous failure is the
        // same link-wide event (an outage, a rate collapse) seen again; transport errors are
        // per connection and each counts.
        let link_wide = matches!(obs.outcome, Outcome::Timeout | Outcome::Stalled);
        if link_wide && self.last_failure.is_some_and(|t| obs.started < t) {
            return;
        }
        self.last_failure = Some(obs.finished);
        self.failures += 1;
        // The failed attempt sent about half its bytes on average before it died.
        let interval = self.delivered_since_failure as f64 + obs.bytes as f64 / 2.0;
        self.failure_interval = Some(match self.failure_interval {
            Some(m) => m + FAILURE_EWMA_WEIGHT * (interval - m),
            None => interval,
        });
        self.delivered_since_failure = 0;
    }
}

impl Strategy for AdaptiveStrategy {
    /// The estimates of [`AdaptiveStrategy::export_state`], as JSON, for checkpoints.
    fn export_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(AdaptiveStrategy::export_state(self)).ok()
    }

    /// Starts warm from a checkpoint's estimates; a value that is not a valid
    /// [`AdaptiveState`] (another strategy's, another version's, damaged) is ignored and the
    /// controller stays cold.
    fn import_state(&mut self, state: &serde_json::Value) {
        let Ok(state) = serde_json::from_value::<AdaptiveState>(state.clone()) else {
            return;
        };
        if let Ok(warm) = AdaptiveStrategy::from_state(self.config, &state) {
            *self = warm;
        }
    }

    fn chunk_size(&mut self, ctx: &PlanContext) -> u64 {
        self.max_chunk_seen = Some(ctx.max_chunk);
        let wanted = match self.config.chunk {
            ChunkMode::Fixed(s) => s,
            ChunkMode::Auto => {
                // Plan against a fraction of the remaining segments so the engine's floor keeps
                // falling and later shrinking stays possible.
                let usable = (f64::from(ctx.remaining_segments)
                    * (1.0 - self.config.segment_reserve))
                    .max(1.0);
                let plan_floor = (ctx.remaining_bytes as f64 / usable).ceil();
                let staggered =
                    (self.chunk_target * self.stagger(ctx.now)).max(self.config.min_chunk as f64);
                staggered.max(plan_floor).min(u64::MAX as f64) as u64
            }
        };
        // Never below the engine's floor nor above the body limit (not `clamp`, which panics
        // if a caller ever passed min > max).
        wanted.max(ctx.min_chunk).min(ctx.max_chunk)
    }

    fn max_in_flight(&self, _now: Instant) -> usize {
        self.par.limit.max(1)
    }

    fn start_attempt(&mut self, now: Instant, bytes: u64) -> Duration {
        if let Some(p) = self.byte_pacer.as_mut() {
            p.charge(now, bytes);
        }
        if let Some(p) = self.request_pacer.as_mut() {
            p.charge(now, 1);
        }
        self.starts[self.next_start] = Some(now);
        self.next_start = (self.next_start + 1) % START_HISTORY;
        self.in_flight_now = self.in_flight_now.saturating_add(1);
        let n = self.par.limit.max(1) as f64;
        let bytes = bytes as f64;
        let deadline = match self.rate.get().filter(|r| *r > 0.0) {
            Some(rate) => {
                let alpha = self.fixed_cost.unwrap_or(0.0);
                let predicted = alpha + n * bytes / rate;
                // Until warm, only the floor is the cold one: the gain already covers a rate
                // ten times below the estimate, and so an early estimate twice too high.
                let floor = if self.is_warm() {
                    self.config.deadline_floor
                } else {
                    COLD_DEADLINE_FLOOR
                };
                let d =
                    self.config.deadline_gain * predicted + LATENCY_DEV_SCALE * self.latency.dev();
                secs(d).max(floor)
            }
            None => secs(n * bytes / COLD_ASSUMED_RATE).max(COLD_DEADLINE_FLOOR),
        };
        deadline.min(DEADLINE_CEILING)
    }

    fn stall_timeout(&self) -> Option<Duration> {
        let floor = self.config.stall_timeout?;
        let slice_time = match self.rate.get().filter(|r| *r > 0.0) {
            Some(rate) => STALL_PROGRESS_QUANTUM as f64 * self.par.limit.max(1) as f64 / rate,
            None => 0.0,
        };
        Some(secs(STALL_GAIN * slice_time).clamp(floor, DEADLINE_CEILING.max(floor)))
    }

    fn not_before(&self, now: Instant) -> Option<Instant> {
        [
            self.retry_hold,
            self.byte_pacer.and_then(|p| p.not_before(now)),
            self.request_pacer.and_then(|p| p.not_before(now)),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .max()
    }

    fn observe(&mut self, obs: &Observation) {
        let duration = obs
            .finished
            .saturating_duration_since(obs.started)
            .as_secs_f64();
        let in_flight = obs.in_flight.max(1);
        self.in_flight_now = self.in_flight_now.saturating_sub(1);
        let mut force = false;
        match obs.outcome {
            Outcome::Success => self.on_success(obs, duration, in_flight),
            Outcome::Timeout | Outcome::Stalled => {
                self.on_failure(obs);
                // It did not finish in `duration` while sharing the link with at most
                // `overlapping − 1` others: the aggregate rate was below that many times its
                // bytes over its duration.
                if duration > 0.0 {
                    let sharing = self.overlapping(obs) as f64;
                    let bound = sharing * obs.bytes as f64 / duration;
                    // Even with no estimate yet: the bound makes the next deadline longer
                    // (≈ gain × sharing × this one), so a link slower than every guess still
                    // lets a retry finish (aws-sdk-js #1162 never did).
                    if self.rate.get().is_none_or(|r| r > bound) {
                        self.rate.reset_to(bound);
                        self.rate_provisional = true;
                    }
                }
                self.congestion(obs);
                force = true;
            }
            Outcome::RetryableError => {
                self.on_failure(obs);
                self.par.abandon_probe(obs.finished);
                force = true;
            }
            Outcome::Throttled { retry_after } => {
                let hold = retry_after
                    .unwrap_or(DEFAULT_THROTTLE_HOLD)
                    .min(MAX_THROTTLE_HOLD);
                let until = later(obs.finished, hold);
                if self.retry_hold.is_none_or(|t| t < until) {
                    self.retry_hold = Some(until);
                }
                self.congestion(obs);
                force = true;
            }
            Outcome::Fatal => {}
        }
        self.update_chunk_target(obs.finished, force);
    }
}

#[cfg(test)]
mod tests;
