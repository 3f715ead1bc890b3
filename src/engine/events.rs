//! What an upload tells its caller while it runs.
//!
//! Events go through an unbounded channel so the upload never waits on a slow reader. Their
//! number is bounded all the same: a handful per upload, plus four per APPEND attempt
//! (`SegmentStarted`, then `SegmentDone` or `Retry`, each followed by a `Progress`), at most
//! one checkpoint event per acknowledged segment, two per pause, and one per STATUS poll.
//! Attempts are bounded by segments × the retry policy's per-segment cap, and further by its
//! upload-wide budget (attempts abandoned by a pause are bounded by the pauses); STATUS
//! polls by the processing deadline. For a live byte count between events, poll
//! [`UploadHandle::progress`](super::UploadHandle::progress).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::PauseMode;
use crate::error::ErrorKind;
use crate::protocol::{LanguageCode, MediaId, ProcessingState};

/// A snapshot of an upload's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Payload bytes whose APPEND returned 2xx.
    pub bytes_acked: u64,
    /// The size of the source.
    pub total_bytes: u64,
    /// Payload bytes of the APPENDs in flight that the protocol reports as written to the
    /// connection (0 for a protocol that does not report progress).
    pub bytes_in_flight: u64,
    /// The size of the most recently planned segment.
    pub chunk_size: u64,
    /// APPENDs in flight.
    pub in_flight: usize,
    /// APPENDs the strategy allows in flight.
    pub max_in_flight: usize,
    /// Segments acknowledged.
    pub segments_done: u32,
    /// Segments planned so far.
    pub segments_planned: u32,
}

/// A request of an upload other than APPEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlRequest {
    /// INIT.
    Init,
    /// FINALIZE.
    Finalize,
    /// STATUS.
    Status,
    /// The one-shot upload of a small media.
    OneShot,
    /// Setting the alt text.
    AltText,
    /// Attaching subtitles.
    Subtitles,
}

impl ControlRequest {
    /// The command's name, as the protocol documents it: `INIT`, `FINALIZE`, `STATUS`.
    pub fn name(self) -> &'static str {
        match self {
            ControlRequest::Init => "INIT",
            ControlRequest::Finalize => "FINALIZE",
            ControlRequest::Status => "STATUS",
            ControlRequest::OneShot => "one-shot upload",
            ControlRequest::AltText => "alt text",
            ControlRequest::Subtitles => "subtitles",
        }
    }
}

impl std::fmt::Display for ControlRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One step of an upload, in the order they happen.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UploadEvent {
    /// The upload task started and the source passed its checks.
    Started {
        /// The size of the source.
        total_bytes: u64,
    },
    /// INIT returned a media id.
    Initialized {
        /// The new media id.
        media_id: MediaId,
        /// The media key, when the server sent one.
        media_key: Option<String>,
        /// Seconds before the id expires, when the server said.
        expires: Option<Duration>,
    },
    /// An APPEND attempt was started (for attempt 1, the segment is read first).
    SegmentStarted {
        /// The segment index.
        index: u32,
        /// Offset of the segment in the source.
        offset: u64,
        /// Payload bytes.
        len: u64,
        /// 1 for the first attempt, 2 for the first retry, ...
        attempt: u32,
    },
    /// Counts changed (after a segment started, finished or failed).
    Progress(Progress),
    /// A segment's APPEND returned 2xx.
    SegmentDone {
        /// The segment index.
        index: u32,
        /// Payload bytes.
        len: u64,
        /// Time from request start to response of the successful attempt.
        latency: Duration,
        /// Which attempt succeeded.
        attempt: u32,
    },
    /// An APPEND attempt failed and the segment will be sent again after `delay`.
    Retry {
        /// The segment index.
        index: u32,
        /// The attempt that failed (the retry will be `attempt + 1`).
        attempt: u32,
        /// How long the segment waits before it is sent again.
        delay: Duration,
        /// The failure, as text.
        error: String,
    },
    /// A request other than an APPEND (INIT, FINALIZE, STATUS, a one-shot upload, alt text,
    /// subtitles) failed and will be sent again after `delay` (the same retry rules as an
    /// APPEND's: see [`RetryPolicy`](crate::RetryPolicy)).
    ControlRetry {
        /// Which request.
        request: ControlRequest,
        /// The attempt that failed.
        attempt: u32,
        /// How long it waits before it is sent again.
        delay: Duration,
        /// The failure, as text.
        error: String,
    },
    /// A request (INIT, an APPEND, FINALIZE or STATUS) could not connect to the server
    /// ([`ErrorKind::Unreachable`](crate::ErrorKind::Unreachable)). Every request waits and
    /// one at a time probes the server; the attempt is not counted against the request's
    /// attempts or the retry budget (see [`RetryPolicy`](crate::RetryPolicy)). Comes instead
    /// of [`Retry`](UploadEvent::Retry) for such a failure.
    Unreachable {
        /// How long the server has been unreachable so far.
        down: Duration,
        /// When the next request may probe it.
        retry_in: Duration,
        /// How much longer the upload waits for the server before it fails.
        gives_up_in: Duration,
        /// The failure, as text.
        error: String,
    },
    /// Every segment was acknowledged; FINALIZE is being sent.
    Finalizing,
    /// The server is processing the media; the next STATUS is sent after `check_after`.
    Processing {
        /// The processing state.
        state: ProcessingState,
        /// Progress 0–100, when the server sent one.
        progress_percent: Option<u8>,
        /// The wait before the next STATUS.
        check_after: Duration,
    },
    /// The media is ready to use.
    Completed {
        /// The media id.
        media_id: MediaId,
    },
    /// A resumed upload carries on from its checkpoint with the media id of an earlier run.
    ResumedFromCheckpoint {
        /// The media id from the checkpoint.
        media_id: MediaId,
        /// Segments the server already has; they are not sent again.
        segments_acked: u32,
        /// Their payload bytes.
        bytes_acked: u64,
        /// Planned segments the server does not have yet; they are sent first.
        segments_pending: u32,
    },
    /// The media id of a resumed upload expired or the server no longer knows it, so the
    /// upload starts over with a new INIT and sends every byte again.
    Restarted {
        /// The media id given up.
        previous_media_id: MediaId,
        /// Why, as text.
        reason: String,
    },
    /// The checkpoint was saved to the configured store.
    CheckpointSaved {
        /// Segments it records as acknowledged.
        segments_acked: u32,
    },
    /// Saving or removing the checkpoint failed. The upload goes on (the next save may
    /// succeed), but until a save succeeds it cannot be resumed from the latest state.
    CheckpointFailed {
        /// The failure, as text.
        error: String,
    },
    /// The upload was paused: no new request starts until it is resumed.
    Paused {
        /// What happens to the APPENDs that were in flight.
        mode: PauseMode,
    },
    /// A paused upload was resumed.
    Resumed,
    /// The upload was cancelled by [`UploadHandle::cancel`](super::UploadHandle::cancel).
    Cancelled {
        /// The media id, if INIT had returned one.
        media_id: Option<MediaId>,
        /// Until when that id can still be used to resume, when the server said.
        usable_until: Option<SystemTime>,
    },
    /// The whole media is sent in one request, the one-shot upload, instead of INIT, APPEND
    /// and FINALIZE (see [`OneShotMode`](super::OneShotMode)).
    OneShot {
        /// The size of the media.
        total_bytes: u64,
    },
    /// The alt text of [`MediaSpec::alt_text`](super::MediaSpec::alt_text) was set on the
    /// ready media.
    AltTextSet {
        /// The media.
        media_id: MediaId,
    },
    /// A subtitle track of [`MediaSpec::subtitles`](super::MediaSpec::subtitles) was
    /// attached to the ready video.
    SubtitlesAttached {
        /// The track's language.
        language_code: LanguageCode,
        /// The media id of the subtitle file.
        subtitles_media_id: MediaId,
    },
    /// The upload failed; [`UploadHandle::join`](super::UploadHandle::join) returns the error.
    Failed {
        /// The kind of the error.
        kind: ErrorKind,
        /// The error, as text.
        error: String,
    },
}
