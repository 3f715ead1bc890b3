//! The upload protocol: INIT, APPEND, FINALIZE and STATUS, independent of the wire format.
//!
//! [`UploadProtocol`] is the seam between the engine and the network. [`XClient`] implements
//! it for X's v1.1 (`/1.1/media/upload.json?command=...`) and v2
//! (`/2/media/upload/initialize`, `/{id}/append`, `/{id}/finalize`, `GET /2/media/upload`)
//! APIs; tests and other services can implement it too.
//!
//! Besides the chunked upload, the trait has the rest of X's media API (issue 14; protocol.md
//! §3.5, §4.5, §12), each with a default that fails with
//! [`ErrorKind::Unsupported`]: the one-shot upload
//! ([`UploadProtocol::accepts_one_shot`], [`UploadProtocol::upload_one_shot`]), alt text
//! ([`UploadProtocol::set_alt_text`]) and subtitles ([`UploadProtocol::attach_subtitles`],
//! [`UploadProtocol::delete_subtitles`]), for media uploaded earlier as well as by the engine
//! once an upload's media is ready.
//!
//! What every implementation must do (protocol.md §10):
//! - accept any 2xx with an empty or JSON body as success for INIT, APPEND and FINALIZE;
//! - read ids as strings (`media_id_string`, `data.id`);
//! - map failures onto [`crate::Error`] kinds: 401/403 → `Unauthorized`, 429 → `RateLimited`
//!   with the delay from `Retry-After` or `x-rate-limit-reset`, 408 and 5xx → `ServerError`,
//!   other 4xx → `Rejected` (with the server's message), no connection made (refused, no
//!   route, connect timeout) → `Unreachable` (the engine then waits for the server without
//!   spending attempts), a connection lost or timed out mid-request → `Transport` or
//!   `Timeout`, an unparseable 2xx body → `Protocol`;
//! - treat a processing state it does not know as pending.

// The X client (v1.1 and v2 over reqwest) and the response parsers live in submodules
// `client` and `parse`.
mod client;
mod media;
mod parse;

pub use client::{
    ApiVersion, AppendEncoding, CONNECT_TIMEOUT, DEFAULT_V1_1_BASE_URL, DEFAULT_V2_BASE_URL,
    TCP_KEEPALIVE, USER_AGENT, UnknownApiVersion, XClient, XClientBuilder,
};

pub use media::{
    LanguageCode, MAX_ALT_TEXT_CHARS, OneShotRequest, SubtitlesRequest, accepts_alt_text,
    check_alt_text, check_display_name, subtitles_video_category,
};

use crate::error::{Error, ErrorKind, Result, ServerMessage};
use crate::limits::MediaCategory;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A media id: a 64-bit snowflake kept as its decimal string, because JSON numbers lose
/// precision above 2^53 (protocol.md §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MediaId(pub String);

impl MediaId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MediaId {
    fn from(s: &str) -> Self {
        MediaId(s.to_string())
    }
}

/// What INIT needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitRequest {
    /// The size of the whole file in bytes.
    pub total_bytes: u64,
    /// The MIME type, such as `video/mp4`.
    pub media_type: String,
    /// The category; needed for asynchronous video/GIF processing and the larger limits.
    pub media_category: Option<MediaCategory>,
    /// User ids allowed to attach the media (at most 100).
    pub additional_owners: Vec<String>,
    /// DM media reused across messages (`shared`).
    pub shared: Option<bool>,
}

/// What INIT answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitResponse {
    /// The new media id.
    pub media_id: MediaId,
    /// The media key (`7_...`), when the server sent one (it may not).
    pub media_key: Option<String>,
    /// Seconds left before the id expires, when sent.
    pub expires_after_secs: Option<u64>,
}

/// One APPEND.
#[derive(Clone)]
pub struct AppendRequest {
    /// The media id from INIT.
    pub media_id: MediaId,
    /// The segment index, 0..=999.
    pub segment_index: u32,
    /// The segment's payload (raw bytes; the client base64-encodes them if configured).
    pub data: Bytes,
    /// If set, the client adds the number of payload bytes handed to the connection as the
    /// body is written, so the engine can report live progress and detect stalls.
    pub sent: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendRequest")
            .field("media_id", &self.media_id)
            .field("segment_index", &self.segment_index)
            .field("len", &self.data.len())
            .finish()
    }
}

/// The `x-rate-limit-*` headers of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// `x-rate-limit-limit`: requests allowed per window.
    pub limit: u64,
    /// `x-rate-limit-remaining`: requests left in this window.
    pub remaining: u64,
    /// `x-rate-limit-reset`: when the window resets, Unix epoch seconds.
    pub reset_epoch_secs: u64,
}

/// What APPEND answers (v2 sends `expires_at`; v1.1 sends nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AppendResponse {
    /// When the media id expires, epoch seconds (v2).
    pub expires_at: Option<u64>,
    /// The rate-limit headers, when present.
    pub rate_limit: Option<RateLimit>,
}

/// The processing state of a finalized media (protocol.md §2.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingState {
    /// Queued.
    Pending,
    /// Being processed.
    InProgress,
    /// Ready to use.
    Succeeded,
    /// Processing failed; see [`ProcessingInfo::error`].
    Failed,
    /// A state this client does not know (such as the `uploading` of early v2 docs); treated
    /// as not finished yet.
    Unknown(String),
}

impl ProcessingState {
    /// Parses a wire state name; unknown names become [`ProcessingState::Unknown`].
    pub fn from_wire(s: &str) -> Self {
        match s {
            "pending" => ProcessingState::Pending,
            "in_progress" => ProcessingState::InProgress,
            "succeeded" => ProcessingState::Succeeded,
            "failed" => ProcessingState::Failed,
            other => ProcessingState::Unknown(other.to_string()),
        }
    }

    /// Whether processing has ended (succeeded or failed).
    pub fn is_terminal(&self) -> bool {
        matches!(self, ProcessingState::Succeeded | ProcessingState::Failed)
    }
}

/// `processing_info` of a FINALIZE or STATUS response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingInfo {
    /// The state.
    pub state: ProcessingState,
    /// How long to wait before the next STATUS, when sent.
    pub check_after_secs: Option<u64>,
    /// Progress 0–100, when sent. Informational only.
    pub progress_percent: Option<u8>,
    /// The error of a `failed` state.
    pub error: Option<ServerMessage>,
}

/// What FINALIZE and STATUS answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaStatus {
    /// The media id.
    pub media_id: MediaId,
    /// The media key, when sent.
    pub media_key: Option<String>,
    /// The size in bytes, when sent.
    pub size: Option<u64>,
    /// Seconds left before the id expires, when sent.
    pub expires_after_secs: Option<u64>,
    /// Present while (or after) the media is processed asynchronously. Absent means ready.
    pub processing_info: Option<ProcessingInfo>,
}

impl MediaStatus {
    /// Whether the media is ready to use: no `processing_info`, or state `succeeded`.
    pub fn is_ready(&self) -> bool {
        self.processing_info
            .as_ref()
            .is_none_or(|p| p.state == ProcessingState::Succeeded)
    }
}

/// Which service a protocol talks to, as recorded in a
/// [`Checkpoint`](crate::checkpoint::Checkpoint): enough to tell whether a checkpoint belongs
/// to this target, and never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ProtocolTarget {
    /// The API spoken, such as `x-v2` or `x-v1.1`.
    pub api: String,
    /// The base URL, without user info, query or fragment.
    pub base_url: String,
}

/// The four calls of a chunked upload. Implementations must be cheap to share (`&self`
/// methods, used concurrently from many tasks).
pub trait UploadProtocol: Send + Sync + fmt::Debug {
    /// The API and base URL this protocol uploads to, for checkpoints. The default,
    /// `{api: "unknown", base_url: ""}`, suits protocols that are not meant to be resumed
    /// across processes. Must never include a credential.
    fn describe(&self) -> ProtocolTarget {
        ProtocolTarget {
            api: "unknown".to_string(),
            base_url: String::new(),
        }
    }

    /// The largest payload one APPEND may carry: the per-APPEND body limit on the wire, less
    /// the base64 expansion when segments are sent as `media_data`
    /// (see [`crate::limits::max_payload_per_append`]). The engine never plans a larger segment.
    fn max_append_payload(&self) -> u64;
    /// INIT: opens an upload session.
    fn init<'a>(&'a self, req: &'a InitRequest) -> BoxFuture<'a, Result<InitResponse>>;
    /// APPEND: sends one segment.
    fn append(&self, req: AppendRequest) -> BoxFuture<'_, Result<AppendResponse>>;
    /// FINALIZE: closes the session; the server assembles the segments.
    fn finalize<'a>(&'a self, media_id: &'a MediaId) -> BoxFuture<'a, Result<MediaStatus>>;
    /// STATUS: reads the processing state.
    fn status<'a>(&'a self, media_id: &'a MediaId) -> BoxFuture<'a, Result<MediaStatus>>;

    /// Whether [`upload_one_shot`](Self::upload_one_shot) takes the media INIT would
    /// describe as `req` (its type, category, size and INIT-only fields such as `shared`).
    /// The default, `false`, suits protocols without a one-shot upload.
    fn accepts_one_shot(&self, req: &InitRequest) -> bool {
        let _ = req;
        false
    }

    /// The one-shot upload: the whole media in one request, answered like FINALIZE
    /// (protocol.md §3.5, §4.5). The default fails with [`ErrorKind::Unsupported`].
    fn upload_one_shot(&self, req: OneShotRequest) -> BoxFuture<'_, Result<MediaStatus>> {
        let _ = req;
        unsupported("the one-shot upload")
    }

    /// Sets the alt text of an image or GIF uploaded earlier (v2 `POST /2/media/metadata`,
    /// v1.1 `media/metadata/create.json`; protocol.md §12). Implementations check the text
    /// with [`check_alt_text`] before sending. The default fails with
    /// [`ErrorKind::Unsupported`].
    fn set_alt_text<'a>(
        &'a self,
        media_id: &'a MediaId,
        text: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (media_id, text);
        unsupported("alt text")
    }

    /// Attaches a subtitle track (a media uploaded with category `subtitles`) to a video
    /// uploaded earlier (v2 `POST /2/media/subtitles`, v1.1 `media/subtitles/create.json`;
    /// protocol.md §12). The default fails with [`ErrorKind::Unsupported`].
    fn attach_subtitles<'a>(&'a self, req: &'a SubtitlesRequest) -> BoxFuture<'a, Result<()>> {
        let _ = req;
        unsupported("subtitles")
    }

    /// Removes a video's subtitle track in `language` (v2 `DELETE /2/media/subtitles`, v1.1
    /// `media/subtitles/delete.json`; protocol.md §12). `video_category` is the video's
    /// category (`None`: `tweet_video`). The default fails with [`ErrorKind::Unsupported`].
    fn delete_subtitles<'a>(
        &'a self,
        video: &'a MediaId,
        video_category: Option<MediaCategory>,
        language: &'a LanguageCode,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (video, video_category, language);
        unsupported("subtitles")
    }
}

/// The error of a call a protocol does not implement.
fn unsupported<T: Send + 'static>(what: &str) -> BoxFuture<'static, Result<T>> {
    let e = Error::new(
        ErrorKind::Unsupported,
        format!("this protocol does not implement {what}; use XClient or a protocol that does"),
    );
    Box::pin(async move { Err(e) })
}

/// Thin wrappers over the private response parsers, for the fuzz targets in `fuzz/` and the
/// seeded-corpus tests. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use super::MediaId;
    use super::parse::{self, Command};
    use std::time::SystemTime;

    /// Feeds `data` to every response parser as a body and as header values; must never
    /// panic.
    pub fn parse_response(data: &[u8]) {
        let id = MediaId::from("1");
        let _ = parse::init_response(data);
        let _ = parse::append_response(data);
        let _ = parse::media_status(Command::Finalize, data, &id);
        let _ = parse::media_status(Command::Status, data, &id);
        let _ = parse::media_status(Command::OneShot, data, &MediaId(String::new()));
        let _ = parse::server_message(data);
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(data) {
            for name in [
                "retry-after",
                "x-rate-limit-limit",
                "x-rate-limit-remaining",
                "x-rate-limit-reset",
            ] {
                headers.insert(name, v.clone());
            }
        }
        let now = SystemTime::UNIX_EPOCH;
        let _ = parse::rate_limit(&headers);
        let _ = parse::retry_after(&headers, now);
        for status in [400, 404, 429, 503] {
            let _ = parse::status_error(Command::Append, Some(0), status, &headers, data, now);
        }
    }
}

#[cfg(test)]
fn _obj_safe(_: &dyn UploadProtocol) {}
