//! The table of setting keys: their names, what they mean, and which other keys their
//! validity depends on.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{Settings, SettingsBuilder};
use crate::engine::OneShotMode;
use crate::protocol::ApiVersion;
use crate::scheduler::{ChunkMode, ParallelismMode, RateCap};

/// One setting key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted name, `section.key`, as in the file (`[section]` then `key = ...`).
    pub name: &'static str,
    /// What the value is written as.
    pub unit: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Keys this one is checked against (a base against the cap, a chunk against the body
    /// limit); a problem found only together with them is reported on this key.
    pub(crate) depends_on: &'static [&'static str],
    /// Copies this key's value from one settings value to another.
    pub(crate) copy: fn(&Settings, &mut Settings),
}

impl Key {
    /// The section: the part of the name before the dot.
    pub fn section(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(s, _)| s)
    }

    /// The key within its section.
    pub fn field(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(_, k)| k)
    }

    /// The environment variable that sets it: `CHUNKWISE_<SECTION>__<KEY>`.
    pub fn env_var(&self) -> String {
        env_var(self.name)
    }
}

/// The environment variable of a dotted key: `scheduler.max_parallelism` is
/// `CHUNKWISE_SCHEDULER__MAX_PARALLELISM`.
pub fn env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// The prefix of every settings environment variable.
pub const ENV_PREFIX: &str = "CHUNKWISE_";

/// The sections, in file order.
pub const SECTIONS: [&str; 5] = ["api", "scheduler", "retry", "polling", "checkpoint"];

macro_rules! keys {
    ($( $name:literal => $($field:ident).+ : $ty:ty, $setter:ident, $unit:literal,
        [$($dep:literal),*], $doc:literal ;)*) => {
        /// Every setting key, in file order.
        pub const KEYS: &[Key] = &[ $( Key {
            name: $name,
            unit: $unit,
            doc: $doc,
            depends_on: &[$($dep),*],
            copy: |from: &Settings, to: &mut Settings| {
                to.$($field).+ = Clone::clone(&from.$($field).+);
            },
        } ),* ];

        /// One typed setter per key: explicit values, applied after every layer.
        impl SettingsBuilder {
            $(
                #[doc = $doc]
                #[doc = concat!("\n\nSets `", $name, "`.")]
                pub fn $setter(self, value: $ty) -> Self {
                    self.typed_override($name, move |s: &mut Settings| s.$($field).+ = value)
                }
            )*
        }
    };
}

keys! {
    "api.version" => api.version: ApiVersion, api_version, "v1.1 | v2", [],
        "API version: v1.1 (`media/upload.json`) or v2 (`/2/media/upload/...`).";
    "api.base_url" => api.base_url: Option<Url>, base_url, "URL", [],
        "Base URL the API paths are appended to; unset: the version's X host.";
    "api.media_data" => api.media_data: bool, media_data, "bool", [],
        "Send segments base64-encoded (`media_data`) instead of raw `media` bytes.";
    "api.max_append_bytes" => api.max_append_bytes: u64, max_append_bytes, "size", [],
        "Largest APPEND request body on the wire.";
    "api.control_timeout" => api.control_timeout: Duration, control_timeout, "duration", [],
        "Deadline of one INIT, FINALIZE or STATUS request.";
    "api.enforce_category_limits" => api.enforce_category_limits: bool, enforce_category_limits, "bool", [],
        "Reject files above their media category's documented size before any request.";
    "api.one_shot" => api.one_shot: OneShotMode, one_shot, "auto | never | always", [],
        "One-shot upload (one request instead of INIT, APPEND and FINALIZE): `auto` for small media the API takes that way, `never`, or `always`.";
    "scheduler.chunk_size" => scheduler.adaptive.chunk: ChunkMode, chunk_size, "auto | size",
        ["api.max_append_bytes", "api.media_data"],
        "Segment payload size: `auto` adapts it to the link, a size pins it.";
    "scheduler.parallelism" => scheduler.adaptive.parallelism: ParallelismMode, parallelism, "auto | count", [],
        "APPENDs in flight: `auto` seeks the plateau, a count pins it.";
    "scheduler.initial_chunk" => scheduler.adaptive.initial_chunk: u64, initial_chunk, "size",
        ["api.max_append_bytes", "api.media_data"],
        "First chunk size, before anything is measured (auto chunk size).";
    "scheduler.min_chunk" => scheduler.adaptive.min_chunk: u64, min_chunk, "size",
        ["api.max_append_bytes", "api.media_data"],
        "Smallest chunk the controller asks for (auto chunk size).";
    "scheduler.target_chunk_time" => scheduler.adaptive.target_chunk_time: Duration, target_chunk_time, "duration", [],
        "How long one APPEND should take at the current rate estimate (auto chunk size).";
    "scheduler.segment_reserve" => scheduler.adaptive.segment_reserve: f64, segment_reserve, "0 ..= 0.9", [],
        "Share of the remaining segments kept in reserve when planning chunk sizes.";
    "scheduler.initial_parallelism" => scheduler.adaptive.initial_parallelism: usize, initial_parallelism, "count",
        ["scheduler.max_parallelism"],
        "APPENDs in flight at the start (auto parallelism).";
    "scheduler.max_parallelism" => scheduler.adaptive.max_parallelism: usize, max_parallelism, "count", [],
        "Most APPENDs in flight (auto parallelism).";
    "scheduler.deadline_gain" => scheduler.adaptive.deadline_gain: f64, deadline_gain, "1 ..= 100", [],
        "How many times its predicted duration an APPEND may take before it times out.";
    "scheduler.deadline_floor" => scheduler.adaptive.deadline_floor: Duration, deadline_floor, "duration", [],
        "Smallest APPEND deadline once the estimates are warm.";
    "scheduler.request_deadline" => scheduler.request_deadline: Option<Duration>, request_deadline, "auto | duration",
        ["scheduler.stall_timeout"],
        "APPEND deadline: `auto` follows the estimates, a duration pins it for every APPEND.";
    "scheduler.stall_timeout" => scheduler.adaptive.stall_timeout: Option<Duration>, stall_timeout, "duration | off", [],
        "An APPEND that sends nothing for this long is abandoned; grows on slow links.";
    "scheduler.byte_rate_cap" => scheduler.adaptive.byte_rate_cap: Option<RateCap>, byte_rate_cap, "size/period | off", [],
        "Cap on payload bytes sent per period, such as `1 MiB/s`.";
    "scheduler.request_rate_cap" => scheduler.adaptive.request_rate_cap: Option<RateCap>, request_rate_cap, "count/period | off",
        [],
        "Cap on APPEND attempts per period, such as `900/15m`.";
    "retry.max_attempts" => retry.max_attempts: u32, max_attempts, "count", [],
        "Attempts per request, the first included.";
    "retry.transient_base" => retry.transient_base: Duration, transient_base, "duration", ["retry.max_delay"],
        "Backoff base after timeouts, transport errors and 5xx.";
    "retry.throttle_base" => retry.throttle_base: Duration, throttle_base, "duration", ["retry.max_delay"],
        "Backoff base after a 429.";
    "retry.max_delay" => retry.max_delay: Duration, max_delay, "duration", [],
        "Cap of one backoff delay (a server's Retry-After may ask for longer).";
    "retry.budget_ratio" => retry.budget_ratio: f64, budget_ratio, "0 ..= 10", [],
        "Upload-wide retries allowed, as a share of the segments.";
    "retry.budget_min" => retry.budget_min: u32, budget_min, "count", [],
        "Upload-wide retries allowed at least.";
    "retry.max_unreachable" => retry.max_unreachable: Duration, max_unreachable, "duration", [],
        "How long the server may stay unreachable (every connection failing) before the upload gives up.";
    "retry.max_store_outage" => retry.max_store_outage: Duration, max_store_outage, "duration", [],
        "How long the checkpoint store may keep failing to write before the upload gives up (resumable).";
    "retry.max_wait" => retry.max_wait: Duration, max_wait, "duration", [],
        "The longest wait a server may ask for (Retry-After, x-rate-limit-reset) before the upload stops, resumable, and says when to try again.";
    "retry.max_no_progress" => retry.max_no_progress: Duration, max_no_progress, "duration", [],
        "How long an upload may go without an answer from the server before it stops (resumable).";
    "retry.seed" => retry.seed: Option<u64>, retry_seed, "integer", [],
        "Seed of the backoff jitter; unset: from the OS.";
    "polling.default_check_after" => polling.default_check_after: Duration, default_check_after, "duration",
        ["polling.min_check_after", "polling.max_check_after"],
        "Wait between STATUS requests when the server gives none.";
    "polling.min_check_after" => polling.min_check_after: Duration, min_check_after, "duration",
        ["polling.max_check_after"],
        "Shortest wait between STATUS requests.";
    "polling.max_check_after" => polling.max_check_after: Duration, max_check_after, "duration", [],
        "Longest wait between STATUS requests.";
    "polling.deadline" => polling.deadline: Duration, processing_deadline, "duration", [],
        "How long processing after FINALIZE may take in all.";
    "checkpoint.dir" => checkpoint.dir: PathBuf, checkpoint_dir, "path", [],
        "Directory of resumable-upload checkpoints (absolute, or starting with `~/`).";
}

/// The key named `name`, if there is one.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The known name closest to `name`, if one is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d > 0 && *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
