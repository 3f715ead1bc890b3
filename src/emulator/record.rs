//! The request log: one [`RequestRecord`] per request received.

use std::fmt;
use std::time::Duration;

/// Which API a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `/1.1/media/...`.
    V1,
    /// `/2/media/...`.
    V2,
    /// Any other path (answered 404).
    Other,
}

/// The command a request carried, as far as the emulator could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// INIT (`command=INIT`, `/2/media/upload/initialize`).
    Init,
    /// APPEND.
    Append,
    /// FINALIZE.
    Finalize,
    /// STATUS.
    Status,
    /// The one-shot upload (v1.1 POST without a command, or a POSTed STATUS).
    Simple,
    /// Alt text: v2 `POST /2/media/metadata`, v1.1 `media/metadata/create.json`.
    Metadata,
    /// v2 `POST /2/media/subtitles`, v1.1 `media/subtitles/create.json`.
    SubtitlesCreate,
    /// v2 `DELETE /2/media/subtitles`, v1.1 `media/subtitles/delete.json`.
    SubtitlesDelete,
    /// Not recognised (unknown command, unknown path, unreadable body).
    Unknown,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Init => "INIT",
            Command::Append => "APPEND",
            Command::Finalize => "FINALIZE",
            Command::Status => "STATUS",
            Command::Simple => "SIMPLE",
            Command::Metadata => "METADATA",
            Command::SubtitlesCreate => "SUBTITLES_CREATE",
            Command::SubtitlesDelete => "SUBTITLES_DELETE",
            Command::Unknown => "UNKNOWN",
        })
    }
}

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The request was answered with this 5xx status.
    ServerError(u16),
    /// The request was answered 429 as part of a rate-limit burst.
    RateLimitBurst,
    /// The connection was dropped after part of the body was read; no response was sent.
    DropConnection,
}

/// One request as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Arrival order, from 0.
    pub seq: u64,
    /// Arrival time since the emulator started (the emulator's clock).
    pub at: Duration,
    /// HTTP method.
    pub method: String,
    /// Request path (no query).
    pub path: String,
    /// Which API.
    pub api: ApiVersion,
    /// Which command.
    pub command: Command,
    /// The media id the request named, if any.
    pub media_id: Option<String>,
    /// The APPEND segment index, if it parsed.
    pub segment_index: Option<u32>,
    /// Payload bytes of the APPEND or one-shot media (decoded, for base64); for a dropped
    /// connection, the body bytes read before the drop.
    pub body_bytes: u64,
    /// Response status; 0 when no response was sent (dropped connection, or the client went
    /// away before the answer).
    pub status: u16,
    /// The injected fault, if any.
    pub fault: Option<FaultKind>,
}
