//! Emulator configuration: status codes, expiry, processing, limits, rate limits, spill and
//! fault injection. Every default is a named constant with its source.

use crate::error::{Error, ErrorKind, Result, ServerMessage};
use crate::limits::{DEFAULT_MAX_APPEND_BYTES, MIB, MediaCategory};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// v1.1 INIT success status: 202 Accepted.
///
/// Source: protocol.md §3.1 (go-twitter#16 log "Media Init 202 Accepted").
pub const V1_INIT_STATUS: u16 = 202;
/// v1.1 APPEND success status: 204 No Content.
///
/// Source: protocol.md §3.2 (twython#396, go-twitter#16).
pub const V1_APPEND_STATUS: u16 = 204;
/// v1.1 FINALIZE success status: 201 Created.
///
/// Source: protocol.md §3.3 and §11.2 (inferred from the v2 command era, x-ruby#54).
pub const V1_FINALIZE_STATUS: u16 = 201;
/// v1.1 STATUS and simple-upload success status: 200 OK.
///
/// Source: protocol.md §3.4 and §3.5.
pub const V1_OK_STATUS: u16 = 200;
/// v2 dedicated-endpoint success status for every call: 200 OK.
///
/// Source: protocol.md §4.1–4.4 (the OpenAPI spec; unconfirmed by logs, §11.3).
pub const V2_STATUS: u16 = 200;

/// Seconds left reported by a v1.1 INIT.
///
/// Source: protocol.md §2.5 (the twurl walkthrough shows 3599).
pub const V1_INIT_EXPIRES_AFTER_SECS: u64 = 3599;
/// Seconds left reported by a v2 INIT.
///
/// Source: protocol.md §2.5 (a real v2 INIT response shows 86399).
pub const V2_INIT_EXPIRES_AFTER_SECS: u64 = 86_399;
/// Seconds left reported by an INIT with category `amplify_video` (about 15 days).
///
/// Source: protocol.md §2.5 (X docs show 1295999).
pub const AMPLIFY_INIT_EXPIRES_AFTER_SECS: u64 = 1_295_999;
/// Seconds left reported by FINALIZE and the one-shot upload.
///
/// Source: protocol.md §2.5 (X docs and twurl walkthrough show 86400).
pub const FINALIZED_EXPIRES_AFTER_SECS: u64 = 86_400;

/// `check_after_secs` sent while media is pending or in progress.
///
/// Source: protocol.md §2.6 (typical values 1, 5 and 10; the FINALIZE example uses 1).
pub const DEFAULT_CHECK_AFTER_SECS: u64 = 1;

/// Largest video or GIF that can be finalized synchronously (no category on v1.1): 15 MiB.
///
/// Source: protocol.md §2.2–2.3 ("15 mb (sync) / 512 mb (async)", twit#292, python-twitter#635).
pub const SYNC_MAX_BYTES: u64 = 15 * MIB;

/// Largest `total_bytes` the v2 INIT schema accepts: 16 GiB.
///
/// Source: protocol.md §4.1 (current OpenAPI spec, `maximum: 17179869184`).
pub const V2_TOTAL_BYTES_MAX: u64 = 17_179_869_184;

/// Length of a rate-limit window: 15 minutes.
///
/// Source: protocol.md §5 (X's per-user limits are per 15 minutes).
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Per-user limit of `POST /2/media/upload/initialize`, `…/append` and `…/finalize`.
///
/// Source: protocol.md §5 (X rate-limit docs: 1,875 per 15 min per user).
pub const V2_CHUNKED_PER_USER: u32 = 1875;
/// Per-user limit of `GET /2/media/upload` (STATUS).
///
/// Source: protocol.md §5 (1,000 per 15 min per user).
pub const V2_STATUS_PER_USER: u32 = 1000;
/// Per-user limit of the one-shot `POST /2/media/upload`.
///
/// Source: protocol.md §5 (500 per 15 min per user).
pub const V2_UPLOAD_PER_USER: u32 = 500;
/// Per-user limit of `POST /1.1/media/upload.json`.
///
/// Source: none published (protocol.md §5, §11.5); assumed equal to the v2 chunked endpoints
/// so that a 1000-segment upload fits in one window.
pub const V1_POST_PER_USER: u32 = V2_CHUNKED_PER_USER;
/// Per-user limit of `GET /1.1/media/upload.json` (STATUS).
///
/// Source: none published (protocol.md §11.5); assumed equal to the v2 STATUS limit.
pub const V1_GET_PER_USER: u32 = V2_STATUS_PER_USER;

/// The categories the v2 one-shot upload takes by default: those of the newest spec,
/// v2.167 (2026-08).
///
/// Source: protocol.md §4.5 (`tweet_image, dm_image, subtitles` from 2025 to 2026-01, plus
/// `tweet_video, tweet_gif, dm_video, dm_gif` in v2.167); which one the real server follows
/// is uncertain, so [`EmulatorConfig::v2_one_shot_categories`] can be set to the older list.
pub const V2_ONE_SHOT_CATEGORIES: [MediaCategory; 7] = [
    MediaCategory::TweetImage,
    MediaCategory::DmImage,
    MediaCategory::Subtitles,
    MediaCategory::TweetVideo,
    MediaCategory::TweetGif,
    MediaCategory::DmVideo,
    MediaCategory::DmGif,
];

/// Per-user limit of `POST /2/media/metadata` (alt text).
///
/// Source: protocol.md §12 (X's v2 rate-limit table: 500 per 15 min per user).
pub const V2_METADATA_PER_USER: u32 = 500;
/// Per-user limit of `POST /2/media/subtitles` and of `DELETE /2/media/subtitles` (each).
///
/// Source: protocol.md §12 (X's v2 rate-limit table: 100 per 15 min per user).
pub const V2_SUBTITLES_PER_USER: u32 = 100;
/// Per-user limit of `POST /1.1/media/metadata/create.json`.
///
/// Source: none published for v1.1 (protocol.md §11.5); assumed equal to v2's.
pub const V1_METADATA_PER_USER: u32 = V2_METADATA_PER_USER;
/// Per-user limit of `POST /1.1/media/subtitles/create.json` and of `delete.json` (each).
///
/// Source: none published for v1.1 (protocol.md §11.5); assumed equal to v2's.
pub const V1_SUBTITLES_PER_USER: u32 = V2_SUBTITLES_PER_USER;

/// Default spill threshold: segments beyond 64 MiB of one media go to disk.
///
/// Source: reasonable default; keeps a 512 MiB video from sitting in memory while small test
/// uploads never touch the disk.
pub const DEFAULT_SPILL_THRESHOLD: u64 = 64 * MIB;

/// HTTP status of an injected server error.
///
/// Source: reasonable default (503 is what overloaded front ends answer); configurable.
pub const DEFAULT_FAULT_STATUS: u16 = 503;

/// Success status codes of one API version, per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCodes {
    /// INIT (`/initialize` on v2).
    pub init: u16,
    /// APPEND. A 204 is sent with an empty body.
    pub append: u16,
    /// FINALIZE.
    pub finalize: u16,
    /// STATUS.
    pub status: u16,
    /// The one-shot (simple) upload.
    pub simple: u16,
}

impl StatusCodes {
    /// v1.1: INIT 202, APPEND 204, FINALIZE 201, STATUS 200, simple 200.
    pub const V1: StatusCodes = StatusCodes {
        init: V1_INIT_STATUS,
        append: V1_APPEND_STATUS,
        finalize: V1_FINALIZE_STATUS,
        status: V1_OK_STATUS,
        simple: V1_OK_STATUS,
    };
    /// v2 dedicated endpoints: 200 everywhere.
    pub const V2: StatusCodes = StatusCodes {
        init: V2_STATUS,
        append: V2_STATUS,
        finalize: V2_STATUS,
        status: V2_STATUS,
        simple: V2_STATUS,
    };

    fn all(&self) -> [u16; 5] {
        [
            self.init,
            self.append,
            self.finalize,
            self.status,
            self.simple,
        ]
    }
}

/// The `expires_after_secs` values the emulator reports (and enforces) per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryConfig {
    /// v1.1 INIT. Default [`V1_INIT_EXPIRES_AFTER_SECS`].
    pub v1_init_secs: u64,
    /// v2 INIT. Default [`V2_INIT_EXPIRES_AFTER_SECS`].
    pub v2_init_secs: u64,
    /// INIT with category `amplify_video` (either version). Default
    /// [`AMPLIFY_INIT_EXPIRES_AFTER_SECS`].
    pub amplify_init_secs: u64,
    /// From FINALIZE (and the one-shot upload) on. Default [`FINALIZED_EXPIRES_AFTER_SECS`].
    pub finalized_secs: u64,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        ExpiryConfig {
            v1_init_secs: V1_INIT_EXPIRES_AFTER_SECS,
            v2_init_secs: V2_INIT_EXPIRES_AFTER_SECS,
            amplify_init_secs: AMPLIFY_INIT_EXPIRES_AFTER_SECS,
            finalized_secs: FINALIZED_EXPIRES_AFTER_SECS,
        }
    }
}

/// How asynchronous processing advances after FINALIZE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingTimeline {
    /// By STATUS polls: the first `pending` STATUS answers say `pending`, the next
    /// `in_progress` say `in_progress`, every later one gives the final state. FINALIZE itself
    /// always says `pending`. Deterministic whatever the timing.
    Polls {
        /// STATUS answers that still say `pending`.
        pending: u32,
        /// STATUS answers that then say `in_progress`.
        in_progress: u32,
    },
    /// By time since FINALIZE (the emulator's clock, see
    /// [`EmulatorHandle::advance_clock`](super::EmulatorHandle::advance_clock)).
    Timed {
        /// How long the media stays `pending`.
        pending: Duration,
        /// How long it then stays `in_progress`.
        in_progress: Duration,
    },
}

impl Default for ProcessingTimeline {
    /// `Polls { pending: 0, in_progress: 1 }`: FINALIZE says pending, the first STATUS
    /// in_progress, the second the final state. Source: reasonable default; a client sees
    /// every state with two polls.
    fn default() -> Self {
        ProcessingTimeline::Polls {
            pending: 0,
            in_progress: 1,
        }
    }
}

/// Which asynchronously processed media end in state `failed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProcessingFailure {
    /// Processing always succeeds.
    #[default]
    Never,
    /// Processing always fails.
    Always,
    /// Processing fails for these media types (compared ignoring ASCII case).
    MediaTypes(Vec<String>),
}

impl ProcessingFailure {
    pub(crate) fn fails(&self, media_type: &str) -> bool {
        match self {
            ProcessingFailure::Never => false,
            ProcessingFailure::Always => true,
            ProcessingFailure::MediaTypes(types) => {
                types.iter().any(|t| t.eq_ignore_ascii_case(media_type))
            }
        }
    }
}

/// Asynchronous processing (video and GIF with a category).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingConfig {
    /// `check_after_secs` while pending or in progress. Default [`DEFAULT_CHECK_AFTER_SECS`].
    pub check_after_secs: u64,
    /// How the states advance. Default: see [`ProcessingTimeline::default`].
    pub timeline: ProcessingTimeline,
    /// Which media fail. Default [`ProcessingFailure::Never`].
    pub failure: ProcessingFailure,
    /// The `error` of a failed state, sent with HTTP 200. Default
    /// `{"code":1,"name":"InvalidMedia","message":"Unsupported video format"}`
    /// (protocol.md §2.6).
    pub failure_error: ServerMessage,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            check_after_secs: DEFAULT_CHECK_AFTER_SECS,
            timeline: ProcessingTimeline::default(),
            failure: ProcessingFailure::Never,
            failure_error: ServerMessage {
                code: Some(1),
                name: Some("InvalidMedia".into()),
                message: "Unsupported video format".into(),
            },
        }
    }
}

/// Per-user rate limits, one fixed window per user and endpoint. The `x-rate-limit-*`
/// headers go on every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Window length. Default [`RATE_LIMIT_WINDOW`].
    pub window: Duration,
    /// `POST /1.1/media/upload.json`. Default [`V1_POST_PER_USER`].
    pub v1_post: u32,
    /// `GET /1.1/media/upload.json`. Default [`V1_GET_PER_USER`].
    pub v1_get: u32,
    /// `POST /2/media/upload/initialize`. Default [`V2_CHUNKED_PER_USER`].
    pub v2_initialize: u32,
    /// `POST /2/media/upload/{id}/append`. Default [`V2_CHUNKED_PER_USER`].
    pub v2_append: u32,
    /// `POST /2/media/upload/{id}/finalize`. Default [`V2_CHUNKED_PER_USER`].
    pub v2_finalize: u32,
    /// `GET /2/media/upload`. Default [`V2_STATUS_PER_USER`].
    pub v2_status: u32,
    /// `POST /2/media/upload` (one-shot). Default [`V2_UPLOAD_PER_USER`].
    pub v2_upload: u32,
    /// `POST /2/media/metadata`. Default [`V2_METADATA_PER_USER`].
    pub v2_metadata: u32,
    /// `POST /2/media/subtitles` and `DELETE /2/media/subtitles`, each. Default
    /// [`V2_SUBTITLES_PER_USER`].
    pub v2_subtitles: u32,
    /// `POST /1.1/media/metadata/create.json`. Default [`V1_METADATA_PER_USER`].
    pub v1_metadata: u32,
    /// `POST /1.1/media/subtitles/create.json` and `delete.json`, each. Default
    /// [`V1_SUBTITLES_PER_USER`].
    pub v1_subtitles: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            window: RATE_LIMIT_WINDOW,
            v1_post: V1_POST_PER_USER,
            v1_get: V1_GET_PER_USER,
            v2_initialize: V2_CHUNKED_PER_USER,
            v2_append: V2_CHUNKED_PER_USER,
            v2_finalize: V2_CHUNKED_PER_USER,
            v2_status: V2_STATUS_PER_USER,
            v2_upload: V2_UPLOAD_PER_USER,
            v2_metadata: V2_METADATA_PER_USER,
            v2_subtitles: V2_SUBTITLES_PER_USER,
            v1_metadata: V1_METADATA_PER_USER,
            v1_subtitles: V1_SUBTITLES_PER_USER,
        }
    }
}

/// Everything about the emulator's behaviour except credentials, faults and the address.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorConfig {
    /// Per-APPEND limit on the media field as sent (raw `media` bytes, or `media_data`
    /// base64 characters). Default [`DEFAULT_MAX_APPEND_BYTES`] (5 MiB).
    pub max_append_bytes: u64,
    /// v1.1 success codes. Default [`StatusCodes::V1`].
    pub v1_status: StatusCodes,
    /// v2 success codes. Default [`StatusCodes::V2`].
    pub v2_status: StatusCodes,
    /// Expiry windows.
    pub expiry: ExpiryConfig,
    /// Asynchronous processing.
    pub processing: ProcessingConfig,
    /// Size limit per category, in bytes, checked at INIT. Missing categories fall back to
    /// [`MediaCategory::max_bytes`] (binary MiB), which is also the default for all.
    pub category_max_bytes: HashMap<MediaCategory, u64>,
    /// Largest video/GIF finalized synchronously. Default [`SYNC_MAX_BYTES`].
    pub sync_max_bytes: u64,
    /// Per-user rate limits.
    pub rate_limits: RateLimitConfig,
    /// Once a media's segments in memory would exceed this many bytes, further segments are
    /// written to files. `None` keeps everything in memory. Default
    /// `Some(`[`DEFAULT_SPILL_THRESHOLD`]`)`.
    pub spill_threshold_bytes: Option<u64>,
    /// Directory in which the spill directory is created. `None`: the system temp dir.
    pub spill_dir: Option<PathBuf>,
    /// Seed of the media id generator: the same seed gives the same ids in INIT order.
    pub id_seed: u64,
    /// Longest alt text accepted, in characters. Default
    /// [`MAX_ALT_TEXT_CHARS`](crate::protocol::MAX_ALT_TEXT_CHARS) (1000, the English
    /// docs); the zh/ja docs say 420 (protocol.md §12, uncertain).
    pub alt_text_max_chars: usize,
    /// The `media_category` values the v2 one-shot `POST /2/media/upload` takes. Default
    /// [`V2_ONE_SHOT_CATEGORIES`] (the v2.167 spec); the 2025 spec's list is `tweet_image`,
    /// `dm_image`, `subtitles` (protocol.md §4.5).
    pub v2_one_shot_categories: Vec<MediaCategory>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            v1_status: StatusCodes::V1,
            v2_status: StatusCodes::V2,
            expiry: ExpiryConfig::default(),
            processing: ProcessingConfig::default(),
            category_max_bytes: MediaCategory::ALL
                .into_iter()
                .map(|c| (c, c.max_bytes()))
                .collect(),
            sync_max_bytes: SYNC_MAX_BYTES,
            rate_limits: RateLimitConfig::default(),
            spill_threshold_bytes: Some(DEFAULT_SPILL_THRESHOLD),
            spill_dir: None,
            id_seed: 0,
            alt_text_max_chars: crate::protocol::MAX_ALT_TEXT_CHARS,
            v2_one_shot_categories: V2_ONE_SHOT_CATEGORIES.to_vec(),
        }
    }
}

impl EmulatorConfig {
    /// The size limit of a category.
    pub fn category_limit(&self, category: MediaCategory) -> u64 {
        self.category_max_bytes
            .get(&category)
            .copied()
            .unwrap_or_else(|| category.max_bytes())
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::new(ErrorKind::InvalidConfig, what.to_string()));
        if self.max_append_bytes == 0 {
            return invalid("emulator max_append_bytes must be positive");
        }
        for code in self.v1_status.all().into_iter().chain(self.v2_status.all()) {
            if !(200..=299).contains(&code) {
                return invalid("emulator success status codes must be 2xx");
            }
        }
        if self.rate_limits.window.is_zero() {
            return invalid("emulator rate-limit window must be positive");
        }
        Ok(())
    }
}

/// A rate-limit burst: every `every`-th APPEND starts `length` consecutive 429 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitBurst {
    /// Period in APPEND requests (counted from 1, all APPENDs counted); at least 2.
    pub every: u64,
    /// Number of consecutive APPENDs answered 429, starting with the `every`-th; at least 1.
    pub length: u64,
    /// Sent as `Retry-After` (whole seconds, rounded up) and as `x-rate-limit-reset`
    /// (now + this, epoch seconds).
    pub retry_after: Duration,
}

/// Seeded fault injection. The same seed gives the same faults for the same sequence of
/// requests: the decision for the n-th APPEND depends only on the seed and n.
///
/// Faults apply to APPEND requests after authentication and the rate limit. The order of
/// checks for one APPEND is: burst 429, dropped connection, 5xx.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Seed of every random decision.
    pub seed: u64,
    /// Probability that an APPEND is answered with [`FaultConfig::server_error_status`].
    pub append_5xx_probability: f64,
    /// Status of injected server errors; `None` means [`DEFAULT_FAULT_STATUS`].
    pub server_error_status: Option<u16>,
    /// Periodic bursts of 429s on APPEND.
    pub rate_limit_burst: Option<RateLimitBurst>,
    /// Latency added before every request is handled.
    pub added_latency: Duration,
    /// Probability that an APPEND's connection is dropped after part of its body was read,
    /// without any response.
    pub drop_connection_probability: f64,
}

impl FaultConfig {
    /// No faults, seed 0.
    pub fn none() -> Self {
        FaultConfig::default()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::new(ErrorKind::InvalidConfig, what.to_string()));
        for p in [
            self.append_5xx_probability,
            self.drop_connection_probability,
        ] {
            if !(0.0..=1.0).contains(&p) {
                return invalid("fault probabilities must be within 0.0..=1.0");
            }
        }
        if let Some(code) = self.server_error_status {
            if !(500..=599).contains(&code) {
                return invalid("injected server error status must be 5xx");
            }
        }
        if let Some(b) = self.rate_limit_burst {
            if b.every < 2 || b.length == 0 {
                return invalid("rate-limit burst needs every >= 2 and length >= 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_limits_are_binary_mib() {
        let c = EmulatorConfig::default();
        c.validate().unwrap();
        assert_eq!(c.category_limit(MediaCategory::TweetGif), 15_728_640);
        assert_eq!(c.max_append_bytes, 5_242_880);
        FaultConfig::none().validate().unwrap();
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut c = EmulatorConfig::default();
        c.v2_status.append = 404;
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let f = FaultConfig {
            append_5xx_probability: 1.5,
            ..FaultConfig::none()
        };
        assert!(f.validate().is_err());
        let f = FaultConfig {
            drop_connection_probability: f64::NAN,
            ..FaultConfig::none()
        };
        assert!(f.validate().is_err());
        let f = FaultConfig {
            rate_limit_burst: Some(RateLimitBurst {
                every: 1,
                length: 1,
                retry_after: Duration::from_secs(1),
            }),
            ..FaultConfig::none()
        };
        assert!(f.validate().is_err());
    }

    #[test]
    fn failure_predicate_ignores_case() {
        let f = ProcessingFailure::MediaTypes(vec!["video/webm".into()]);
        assert!(f.fails("VIDEO/WEBM"));
        assert!(!f.fails("video/mp4"));
    }
}
