//! The strategies `chunkwise bench` compares: fixed presets that behave like common X upload
//! clients, and the engine's default.
//!
//! Each entry of [`STRATEGIES`] is a name, a description and a function building the
//! [`EngineConfig`] an upload with that strategy runs under. Adding a strategy (the adaptive
//! scheduler, say) is one more entry:
//!
//! ```text
//! StrategyPreset {
//!     name: "adaptive",
//!     description: "the adaptive scheduler",
//!     build: || EngineConfig::default().with_strategy(AdaptiveStrategy::default),
//! },
//! ```
//!
//! The presets copy the clients' chunk size, parallelism and per-request timeout. They do
//! not copy the clients' retry behaviour (most retry nothing): every fixed preset retries
//! with [`baseline_retry`], more persistently than the engine's default
//! [`RetryPolicy`](chunkwise::RetryPolicy), so that a fixed preset finishes wherever
//! retrying can get it through and the comparison is about sizing and timeouts, not about
//! whether a client retries at all.

use std::time::Duration;

use chunkwise::limits::MIB;
use chunkwise::scheduler::FixedStrategy;
use chunkwise::{EngineConfig, RetryPolicy};

/// One strategy of the bench.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StrategyPreset {
    /// Short name, used on the command line and in the tables.
    pub(crate) name: &'static str,
    /// One line saying what it is and which client it imitates.
    pub(crate) description: &'static str,
    /// Builds the engine configuration of one upload.
    pub(crate) build: fn() -> EngineConfig,
}

/// Chunk size of the 1 MiB presets.
///
/// Source: node-twitter-api-v2 and egg-mode send 1 MiB segments (protocol.md §2.4, S10, S12).
const ONE_MIB_CHUNK: u64 = MIB;

/// Chunk size of the xurl preset.
///
/// Source: xurl `api/media.go` ("Upload in chunks of 4MB", `4 * 1024 * 1024`); the official
/// Python sample (large-video-upload-python) uses the same 4 MiB.
const XURL_CHUNK: u64 = 4 * MIB;

/// Chunk size of the twit preset.
///
/// Source: twit `lib/file_uploader.js`, `MAX_FILE_CHUNK_BYTES = 5 * 1024 * 1024`.
const TWIT_CHUNK: u64 = 5 * MIB;

/// APPENDs in flight of the node-twitter-api-v2 preset.
///
/// Source: node-twitter-api-v2 runs up to 3 APPENDs at once (protocol.md §2.4, S10).
const NODE_PARALLELISM: usize = 3;

/// Per-request timeout of xurl.
///
/// Source: xurl `api/client.go`, `http.Client{Timeout: 30 * time.Second}`; Go's client
/// timeout covers the whole exchange, body upload included.
const XURL_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-request timeout of the twit preset.
///
/// Source: twit's README constructor example, `timeout_ms: 60*1000` ("optional HTTP request
/// timeout to apply to all requests"), which twit users copy; twit sets none when it is
/// omitted.
const TWIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Stand-in deadline for clients that set no request timeout at all.
///
/// Source: node-twitter-api-v2 calls Node's `https.request` without `timeout`, and egg-mode
/// sends through hyper without one, so an APPEND waits until TCP gives up: on Linux about
/// 15 minutes of unacknowledged data (`tcp_retries2` = 15), and never for a response that
/// does not come. 120 s, the 2-minute per-part timeout of aws-sdk-js (aws-sdk-js #1162, also
/// the engine's `DEFAULT_FIXED_DEADLINE`), never cuts a healthy 1 MiB request on the links of
/// the bench (8.4 s at 1 Mbit/s) and keeps a hung one from stalling a cell for minutes.
const NO_TIMEOUT_STAND_IN: Duration = Duration::from_secs(120);

/// Attempts per segment of the fixed presets.
///
/// Source: on the `lossy` link (a reset every 8 MiB on average) a 4 MiB request gets
/// through with probability e^(-4/8) ≈ 0.61, so the engine's default of 5 attempts and a
/// budget of 50 % of the segments ran out and `4mib-seq` never finished (session-1 run at
/// bb01d0b), leaving no time to compare. With 10 attempts a 5 MiB segment (through with
/// probability e^(-5/8) ≈ 0.54) fails outright with probability 0.46^10 ≈ 4e-4.
const BASELINE_MAX_ATTEMPTS: u32 = 10;

/// The retry policy of the fixed presets: [`BASELINE_MAX_ATTEMPTS`] per segment and the
/// largest upload-wide budget a configuration may have
/// ([`MAX_BUDGET_RATIO`](chunkwise::engine::MAX_BUDGET_RATIO) retries per segment).
/// Retrying more only ever helps a fixed preset finish, so the comparison with the default
/// (which keeps the engine's default policy) stays on the baselines' side.
pub(crate) fn baseline_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: BASELINE_MAX_ATTEMPTS,
        budget_ratio: chunkwise::engine::MAX_BUDGET_RATIO,
        ..RetryPolicy::default()
    }
}

/// A fixed-strategy configuration.
fn fixed(chunk: u64, parallelism: usize, deadline: Duration) -> EngineConfig {
    EngineConfig::default()
        .with_fixed_strategy(FixedStrategy::new(chunk, parallelism, deadline))
        .with_retry(baseline_retry())
}

/// Every strategy of the bench, in table order.
pub(crate) const STRATEGIES: &[StrategyPreset] = &[
    StrategyPreset {
        name: "1mib-seq",
        description: "1 MiB, one at a time, no client timeout (120 s stand-in): like egg-mode",
        build: || fixed(ONE_MIB_CHUNK, 1, NO_TIMEOUT_STAND_IN),
    },
    StrategyPreset {
        name: "4mib-seq",
        description: "4 MiB, one at a time, 30 s timeout: like xurl (and the official Python sample's size)",
        build: || fixed(XURL_CHUNK, 1, XURL_TIMEOUT),
    },
    StrategyPreset {
        name: "1mib-x3",
        description: "1 MiB, 3 in parallel, no client timeout (120 s stand-in): like node-twitter-api-v2",
        build: || fixed(ONE_MIB_CHUNK, NODE_PARALLELISM, NO_TIMEOUT_STAND_IN),
    },
    StrategyPreset {
        name: "5mib-seq",
        description: "5 MiB, one at a time, 60 s timeout: like twit",
        build: || fixed(TWIT_CHUNK, 1, TWIT_TIMEOUT),
    },
    StrategyPreset {
        name: "4mib-x3",
        description: "4 MiB, 3 in parallel, 120 s timeout: chunkwise's earlier fixed default (protocol.md §10's size, node's parallelism)",
        build: || {
            fixed(
                chunkwise::scheduler::DEFAULT_FIXED_CHUNK,
                chunkwise::scheduler::DEFAULT_FIXED_PARALLELISM,
                chunkwise::scheduler::DEFAULT_FIXED_DEADLINE,
            )
        },
    },
    StrategyPreset {
        name: "default",
        description: "the engine's default configuration: the adaptive controller (EngineConfig::default())",
        build: EngineConfig::default,
    },
];

/// The preset named `name` (ignoring ASCII case).
pub(crate) fn find(name: &str) -> Option<&'static StrategyPreset> {
    STRATEGIES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The names of every preset, comma-separated (for error messages).
pub(crate) fn names() -> String {
    STRATEGIES
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chunkwise::scheduler::PlanContext;
    use tokio::time::Instant;

    #[test]
    fn names_are_unique_and_found_ignoring_case() {
        for (i, s) in STRATEGIES.iter().enumerate() {
            assert!(
                STRATEGIES[..i].iter().all(|t| t.name != s.name),
                "{} twice",
                s.name
            );
            assert_eq!(find(&s.name.to_uppercase()).map(|p| p.name), Some(s.name));
        }
        assert!(find("nope").is_none());
        assert!(names().contains("1mib-x3"));
    }

    #[tokio::test(start_paused = true)]
    async fn presets_are_valid_and_pin_what_they_say() {
        let now = Instant::now();
        let ctx = PlanContext {
            now,
            remaining_bytes: 100 * MIB,
            remaining_segments: 1000,
            min_chunk: 1,
            max_chunk: 5 * MIB,
        };
        let expect = [
            ("1mib-seq", MIB, 1, NO_TIMEOUT_STAND_IN),
            ("4mib-seq", 4 * MIB, 1, XURL_TIMEOUT),
            ("1mib-x3", MIB, 3, NO_TIMEOUT_STAND_IN),
            ("5mib-seq", 5 * MIB, 1, TWIT_TIMEOUT),
        ];
        for (name, chunk, parallel, deadline) in expect {
            let config = (find(name).unwrap().build)();
            config.validate().unwrap();
            let mut s = (config.strategy)();
            assert_eq!(s.chunk_size(&ctx), chunk, "{name}");
            assert_eq!(s.max_in_flight(now), parallel, "{name}");
            assert_eq!(s.start_attempt(now, chunk), deadline, "{name}");
            assert_eq!(config.retry.max_attempts, BASELINE_MAX_ATTEMPTS, "{name}");
        }
        let default = (find("default").unwrap().build)();
        default.validate().unwrap();
        assert_eq!(
            default.retry.max_attempts,
            RetryPolicy::default().max_attempts,
            "the default strategy keeps the engine's default retry policy"
        );
    }
}
