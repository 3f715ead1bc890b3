//! The upload engine: planning, parallel APPENDs, retries, progress and the final report.
//!
//! An [`Engine`] drives any [`UploadProtocol`] (the X client, the local emulator, a fake in a
//! test). [`Engine::upload`] spawns one upload on the current tokio runtime and returns an
//! [`UploadHandle`] to follow it ([`UploadHandle::next_event`], [`UploadHandle::progress`])
//! and to wait for its [`UploadReport`] ([`UploadHandle::join`]).
//!
//! One upload goes like this:
//!
//! 1. **Checks, before any request** ([`ErrorKind::InvalidInput`]): the source is not empty,
//!    not larger than its category's limit, and fits in 1000 segments of the protocol's
//!    per-APPEND payload limit.
//! 2. **INIT.**
//! 3. **APPENDs.** Segments are planned one at a time ([`Plan`]), each read from the source
//!    just before it is first sent. Up to the strategy's limit run at once; each runs under
//!    the strategy's deadline and, if the strategy enables it, stall detection (which reads
//!    the [`AppendRequest::sent`](crate::protocol::AppendRequest::sent) counter, so it needs
//!    a protocol that reports how much of the body it has written). Every
//!    decision is asked of the [`Strategy`](crate::scheduler::Strategy), and every attempt is
//!    reported to it as an [`Observation`](crate::scheduler::Observation). A failed segment
//!    is retried alone with the same index and bytes ([`RetryPolicy`]).
//! 4. **FINALIZE**, once every segment returned 2xx.
//! 5. **STATUS polling** while FINALIZE or STATUS report processing that has not ended
//!    ([`PollingConfig`]).
//!
//! Every decision of an upload is taken by one state machine with no I/O (the upload core,
//! `engine/core.rs`), which the engine's tokio task drives with real requests and which the
//! crate's simulator drives in virtual time: the retry, backoff and write-ahead rules exist
//! once.
//!
//! # Pause, resume, cancel, and carrying on in another process
//!
//! [`UploadHandle::pause`] stops new requests (the APPENDs in flight finish or are abandoned,
//! per [`PauseMode`]), [`UploadHandle::resume`] carries on, and [`UploadHandle::cancel`]
//! stops the upload and says whether and until when its media id can still be used
//! ([`CancelOutcome`]).
//!
//! With a [`CheckpointStore`](crate::checkpoint::CheckpointStore) in
//! [`EngineConfig::checkpoint_store`], every upload first claims its key in the store (one
//! owner per upload: a second upload of the same source to the same target fails with
//! [`ErrorKind::Claimed`]), then saves a [`Checkpoint`] whenever its state changes: a new
//! segment is on record (index, offset, length) *before* its first byte is sent, and
//! acknowledged segments are recorded as they come. If the store fails, no new segment is
//! sent until it works again (see [`RetryPolicy::max_store_outage`]).
//! [`Engine::resume`] carries such a checkpoint on, in this process or another:
//! it checks that the source is unchanged, sends only the segments the server did not
//! acknowledge (with their original indices and sizes), and plans the rest; if the media id
//! expired, it starts over with a new INIT and says so ([`UploadEvent::Restarted`],
//! [`UploadReport::restarted`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use chunkwise::engine::{Engine, EngineConfig, MediaSpec, Source, UploadEvent};
//! use chunkwise::protocol::UploadProtocol;
//! use chunkwise::MediaCategory;
//!
//! # async fn example(protocol: Arc<dyn UploadProtocol>) -> chunkwise::Result<()> {
//! let engine = Engine::new(protocol, EngineConfig::default())?;
//! let source = Source::file("clip.mp4").await?;
//! let spec = MediaSpec::new("video/mp4").with_category(MediaCategory::TweetVideo);
//!
//! // Fire and wait:
//! let report = engine.upload(source.clone(), spec.clone()).join().await?;
//! println!("{} at {:.0} B/s", report.media_id, report.goodput_bytes_per_sec);
//!
//! // Or follow the events:
//! let mut upload = engine.upload(source, spec);
//! while let Some(event) = upload.next_event().await {
//!     if let UploadEvent::Progress(p) = event {
//!         println!("{}/{}", p.bytes_acked, p.total_bytes);
//!     }
//! }
//! let report = upload.join().await?;
//! # Ok(()) }
//! ```

mod attach;
mod calls;
mod config;
pub(crate) mod core;
mod events;
mod oneshot;
mod plan;
mod report;
mod retry;
mod source;
mod upload;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use attach::{SubtitleSource, SubtitleTrack};
pub use config::{
    DEFAULT_CHECK_AFTER, DEFAULT_CONTROL_TIMEOUT, DEFAULT_PROCESSING_DEADLINE, EngineConfig,
    MAX_CHECK_AFTER, MAX_CONFIG_DURATION, MAX_IN_FLIGHT_LIMIT, MIN_CHECK_AFTER, PollingConfig,
    StrategyFactory,
};
pub use events::{ControlRequest, Progress, UploadEvent};
pub use oneshot::OneShotMode;
pub use plan::{Plan, Segment, check_category_limit};
pub use report::{
    AttachedSubtitles, AttemptOutcome, AttemptRecord, LATENCY_HISTOGRAM_MAX_MICROS,
    LATENCY_HISTOGRAM_SIGFIG, LatencySummary, UploadReport,
};
pub use retry::{
    DEFAULT_BUDGET_MIN, DEFAULT_BUDGET_RATIO, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY,
    DEFAULT_MAX_NO_PROGRESS, DEFAULT_MAX_STORE_OUTAGE, DEFAULT_MAX_UNREACHABLE, DEFAULT_MAX_WAIT,
    DEFAULT_THROTTLE_BASE, DEFAULT_TRANSIENT_BASE, MAX_ATTEMPTS_LIMIT, MAX_BUDGET_RATIO,
    MAX_DELAY_LIMIT, RetryPolicy,
};
pub use source::Source;
pub use upload::STALL_CHECKS_PER_WINDOW;

use crate::checkpoint::{Checkpoint, CheckpointClaim};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::MediaCategory;
use crate::protocol::{
    MediaId, UploadProtocol, accepts_alt_text, check_alt_text, check_display_name,
    subtitles_video_category,
};
use upload::{Shared, UploadTask};

/// Most user ids INIT's `additional_owners` may list.
///
/// Source: X API INIT reference, "at most 100" (protocol.md §3.1).
pub const MAX_ADDITIONAL_OWNERS: usize = 100;

/// What is being uploaded, as INIT describes it, and what is done once it is ready.
///
/// `alt_text` and `subtitles` are applied after the media is ready (after FINALIZE and
/// processing, or the one-shot upload); an upload that fails there returns the error, and
/// the media id is in its text.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MediaSpec {
    /// The MIME type, such as `video/mp4`.
    pub media_type: String,
    /// The category. Needed for asynchronous video and GIF processing and their larger size
    /// limits; without it the server picks one (protocol.md §2.2).
    pub category: Option<MediaCategory>,
    /// User ids allowed to attach the media (at most [`MAX_ADDITIONAL_OWNERS`]); INIT's
    /// `additional_owners` (comma-separated in v1.1, an array in v2).
    pub additional_owners: Vec<String>,
    /// DM media reused across messages: INIT's `shared` (protocol.md §3.1). Only INIT
    /// carries it, so such media never goes up in one request.
    pub shared: Option<bool>,
    /// Alt text to set once the media is ready: images and GIFs only, at most
    /// [`MAX_ALT_TEXT_CHARS`](crate::protocol::MAX_ALT_TEXT_CHARS) characters
    /// (protocol.md §12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
    /// Subtitle tracks to attach once the video is ready: videos of category `tweet_video`
    /// or `amplify_video` (or none) only, one track per language (protocol.md §12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtitles: Vec<SubtitleTrack>,
}

impl MediaSpec {
    /// A spec with only a MIME type.
    pub fn new(media_type: impl Into<String>) -> Self {
        MediaSpec {
            media_type: media_type.into(),
            ..MediaSpec::default()
        }
    }

    /// Sets the category.
    pub fn with_category(mut self, category: MediaCategory) -> Self {
        self.category = Some(category);
        self
    }

    /// Sets the alt text (see [`MediaSpec::alt_text`]).
    pub fn with_alt_text(mut self, text: impl Into<String>) -> Self {
        self.alt_text = Some(text.into());
        self
    }

    /// Adds a subtitle track (see [`MediaSpec::subtitles`]).
    pub fn with_subtitles(mut self, track: SubtitleTrack) -> Self {
        self.subtitles.push(track);
        self
    }

    /// Sets the user ids allowed to attach the media.
    pub fn with_additional_owners(mut self, owners: Vec<String>) -> Self {
        self.additional_owners = owners;
        self
    }

    /// Sets INIT's `shared` flag.
    pub fn with_shared(mut self, shared: bool) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Checks the spec.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if the media type is empty, more than
    /// [`MAX_ADDITIONAL_OWNERS`] owners are listed or one is not a numeric user id, the alt
    /// text is blank, too long or set on media other than an image or GIF, or subtitle tracks
    /// are given for media other than a `tweet_video`/`amplify_video` video, with a blank
    /// display name or twice for one language.
    pub fn validate(&self) -> Result<()> {
        self.validate_init()?;
        if let Some(text) = &self.alt_text {
            check_alt_text(text)?;
            if !accepts_alt_text(&self.media_type) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "alt text can be set on images and GIFs only, not on {} media; drop \
                         the alt text",
                        self.media_type
                    ),
                ));
            }
        }
        if !self.subtitles.is_empty() {
            if !self
                .media_type
                .trim()
                .to_ascii_lowercase()
                .starts_with("video/")
            {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "subtitles can be attached to videos only, not to {} media",
                        self.media_type
                    ),
                ));
            }
            subtitles_video_category(self.category)?;
        }
        let mut languages = std::collections::BTreeSet::new();
        for track in &self.subtitles {
            check_display_name(&track.display_name)?;
            if !languages.insert(&track.language_code) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "two subtitle tracks are in {}; a video has one track per language",
                        track.language_code
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The checks of what INIT carries.
    fn validate_init(&self) -> Result<()> {
        if self
            .additional_owners
            .iter()
            .any(|o| o.is_empty() || o.len() > 20 || !o.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "an additional owner is not a numeric X user id; give ids such as 783214",
            ));
        }
        if self.media_type.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the media type is empty; give a MIME type such as video/mp4",
            ));
        }
        if self.additional_owners.len() > MAX_ADDITIONAL_OWNERS {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} additional owners given; at most {MAX_ADDITIONAL_OWNERS} are allowed",
                    self.additional_owners.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Uploads media through one protocol with one configuration. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    protocol: Arc<dyn UploadProtocol>,
    config: Arc<EngineConfig>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("protocol", &self.inner.protocol)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Engine {
    /// An engine over `protocol`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] if `config` does not pass [`EngineConfig::validate`], or
    /// its strategy asks for segments larger than the protocol's per-APPEND payload limit
    /// ([`UploadProtocol::max_append_payload`]): for example a
    /// [`FixedStrategy::default`](crate::scheduler::FixedStrategy)'s 4 MiB with base64
    /// APPENDs, which carry at most 3.75 MiB. The default configuration (the adaptive
    /// strategy) sizes its chunks within the limit of every protocol.
    pub fn new(protocol: Arc<dyn UploadProtocol>, config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let max = protocol.max_append_payload();
        let mut probe = (config.strategy)();
        let chunk = config::probe_chunk_size(probe.as_mut(), tokio::time::Instant::now(), max);
        if chunk > max {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the strategy's chunk size is {chunk} bytes, above the protocol's \
                     per-APPEND payload limit of {max} bytes: pin a chunk of at most {max} \
                     bytes (base64 `media_data` carries 3/4 of the body limit)"
                ),
            ));
        }
        Ok(Engine {
            inner: Arc::new(EngineInner {
                protocol,
                config: Arc::new(config),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Starts uploading `source` as `spec` on the current tokio runtime.
    ///
    /// Returns at once; nothing is sent before the runtime polls the new task. Called outside
    /// a tokio runtime, the upload does not start and [`UploadHandle::join`] returns
    /// [`ErrorKind::InvalidConfig`].
    pub fn upload(&self, source: Source, spec: MediaSpec) -> UploadHandle {
        self.spawn(source, spec, None, None)
    }

    /// Carries on the upload `checkpoint` records, reading the rest from `source` (the same
    /// file, possibly opened by another process and moved since), on the current tokio
    /// runtime. Returns at once, like [`upload`](Engine::upload).
    ///
    /// Before any request, the upload checks that the checkpoint is consistent, was made
    /// for this engine's target ([`UploadProtocol::describe`]) and that `source` is
    /// unchanged (size, modification time, fingerprint: [`SourceIdentity`]); then it sends
    /// only the segments the server did not acknowledge, with their original indices and
    /// sizes, and plans the rest of the file with the segment indices left. The strategy
    /// gets the checkpoint's exported state
    /// ([`Strategy::import_state`](crate::scheduler::Strategy::import_state)).
    ///
    /// If the media id has expired (by the checkpoint's expiry, less
    /// [`RESUME_EXPIRY_MARGIN`]) or the server rejects an APPEND because it does not know
    /// the id, the upload starts over with a new INIT and a new plan, once: see
    /// [`UploadEvent::Restarted`] and [`UploadReport::restarted`].
    ///
    /// # Errors
    ///
    /// Through [`UploadHandle::join`], with nothing sent: [`ErrorKind::Checkpoint`] if the
    /// checkpoint is inconsistent, for another target, or the source changed; the errors of
    /// [`upload`](Engine::upload) otherwise.
    ///
    /// [`SourceIdentity`]: crate::checkpoint::SourceIdentity
    /// [`RESUME_EXPIRY_MARGIN`]: crate::checkpoint::RESUME_EXPIRY_MARGIN
    pub fn resume(&self, checkpoint: Checkpoint, source: Source) -> UploadHandle {
        let spec = checkpoint.spec.clone();
        self.spawn(source, spec, Some(checkpoint), None)
    }

    /// [`upload`](Engine::upload) (with `checkpoint` `None`) or [`resume`](Engine::resume),
    /// for a caller that already holds the claim on the upload's key
    /// ([`CheckpointStore::claim`](crate::checkpoint::CheckpointStore::claim) of
    /// [`CheckpointKey::for_upload`](crate::checkpoint::CheckpointKey::for_upload)), so that
    /// it could look for the checkpoint under the claim: no other process can then change
    /// or carry on that checkpoint between the look and the upload. The engine holds the
    /// claim until the upload ends, and does not claim the key again.
    pub fn upload_claimed(
        &self,
        claim: CheckpointClaim,
        checkpoint: Option<Checkpoint>,
        source: Source,
        spec: MediaSpec,
    ) -> UploadHandle {
        let spec = checkpoint.as_ref().map_or(spec, |c| c.spec.clone());
        self.spawn(source, spec, checkpoint, Some(claim))
    }

    fn spawn(
        &self,
        source: Source,
        spec: MediaSpec,
        resume: Option<Checkpoint>,
        claim: Option<CheckpointClaim>,
    ) -> UploadHandle {
        let (tx, rx) = unbounded_channel();
        let (control_tx, control_rx) = watch::channel(Control::Run);
        let shared = Arc::new(Shared::default());
        let span = tracing::info_span!(
            "upload",
            media_id = tracing::field::Empty,
            total_bytes = source.len(),
            resumed = resume.is_some()
        );
        let task = UploadTask {
            protocol: Arc::clone(&self.inner.protocol),
            config: Arc::clone(&self.inner.config),
            source,
            spec,
            events: tx,
            shared: Arc::clone(&shared),
            control: control_rx,
            resume,
            claim,
        };
        let (task, early) = match tokio::runtime::Handle::try_current() {
            Ok(rt) => (Some(rt.spawn(task.run().instrument(span))), None),
            Err(e) => (
                None,
                Some(
                    Error::new(
                        ErrorKind::InvalidConfig,
                        "Engine::upload was called outside a tokio runtime",
                    )
                    .with_source(e),
                ),
            ),
        };
        UploadHandle {
            events: rx,
            task,
            early,
            shared,
            control: control_tx,
        }
    }
}

/// What [`UploadHandle::pause`] does with the APPENDs in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseMode {
    /// Let them finish (and count their outcome); only new requests wait. The gentle
    /// choice: nothing already sent is wasted.
    #[default]
    Drain,
    /// Drop them at once (closing their connections), to free the link now. Their segments
    /// are sent again after the resume, with the same indices and bytes; an abandoned
    /// attempt does not count against the retry limits.
    Abandon,
}

/// What the upload task is asked to do; the handle writes it, the task watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Pause(PauseMode),
    Cancel,
}

/// What [`UploadHandle::cancel`] leaves behind.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelOutcome {
    /// The media id, if INIT had returned one. It was never finalized: it can be resumed
    /// (with [`checkpoint`](CancelOutcome::checkpoint)) until it expires, and is then dropped
    /// by the server.
    pub media_id: Option<MediaId>,
    /// When the media id stops working, when the server said (INIT's `expires_after_secs`,
    /// APPEND's `expires_at`). `None` with a media id: unknown.
    pub usable_until: Option<SystemTime>,
    /// The checkpoint to resume from with [`Engine::resume`], if INIT had returned a media
    /// id. The configured store, if any, keeps it too; remove it there to give up for good.
    pub checkpoint: Option<Checkpoint>,
    /// The report, if the upload had already completed when the cancel arrived: then
    /// nothing was cancelled.
    pub completed: Option<UploadReport>,
}

impl CancelOutcome {
    /// Whether the media id can still be used at `now` (to resume the upload).
    pub fn is_usable_at(&self, now: SystemTime) -> bool {
        self.completed.is_none()
            && self.media_id.is_some()
            && self.usable_until.is_none_or(|t| t > now)
    }
}

/// A running upload.
///
/// # Cancellation
///
/// Dropping the handle aborts the upload: its task is cancelled, and with it every APPEND in
/// flight (their futures are dropped, which closes their connections), at the task's next
/// yield point, which is immediate for a task waiting on I/O or a timer. [`abort`] does the
/// same but keeps the handle, so that [`join`] then returns [`ErrorKind::Cancelled`].
/// Dropping the future returned by [`join`] also aborts the upload.
///
/// The server is not told: the media id of an aborted upload is never finalized and
/// expires on its own (`expires_after_secs`).
///
/// [`cancel`] is the orderly way: it stops the upload the same way, then saves its latest
/// checkpoint and returns it with the media id and its expiry ([`CancelOutcome`]).
///
/// [`abort`]: UploadHandle::abort
/// [`join`]: UploadHandle::join
/// [`cancel`]: UploadHandle::cancel
pub struct UploadHandle {
    events: UnboundedReceiver<UploadEvent>,
    task: Option<JoinHandle<Result<UploadReport>>>,
    early: Option<Error>,
    shared: Arc<Shared>,
    control: watch::Sender<Control>,
}

impl fmt::Debug for UploadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadHandle")
            .field("progress", &self.shared.snapshot())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl UploadHandle {
    /// The next event, in the order they happened; `None` once the upload has ended and
    /// every event was read. See [`UploadEvent`] for why the channel is unbounded.
    pub async fn next_event(&mut self) -> Option<UploadEvent> {
        self.events.recv().await
    }

    /// The current progress, with a live count of the bytes the APPENDs in flight have
    /// written (for protocols that report it).
    pub fn progress(&self) -> Progress {
        self.shared.snapshot()
    }

    /// Whether the upload has ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Pauses the upload: no new request starts (APPEND, and INIT or FINALIZE if they are
    /// next) until [`resume`](UploadHandle::resume). The APPENDs in flight finish or are
    /// dropped, per `mode`; calling it again with [`PauseMode::Abandon`] drops those still
    /// draining. STATUS polling, being the server's work, goes on. Reported as
    /// [`UploadEvent::Paused`]. Does nothing once the upload is being cancelled.
    pub fn pause(&self, mode: PauseMode) {
        self.control.send_if_modified(|c| {
            let next = Control::Pause(mode);
            let change = *c != Control::Cancel && *c != next;
            if change {
                *c = next;
            }
            change
        });
    }

    /// Resumes a paused upload; reported as [`UploadEvent::Resumed`]. Does nothing if it is
    /// not paused.
    pub fn resume(&self) {
        self.control.send_if_modified(|c| {
            let change = matches!(c, Control::Pause(_));
            if change {
                *c = Control::Run;
            }
            change
        });
    }

    /// Whether [`pause`](UploadHandle::pause) was called and not followed by
    /// [`resume`](UploadHandle::resume).
    pub fn is_paused(&self) -> bool {
        matches!(*self.control.borrow(), Control::Pause(_))
    }

    /// Cancels the upload and waits for it to stop: the requests in flight are dropped, the
    /// latest checkpoint is saved to the configured store (if any) and returned, and
    /// [`UploadEvent::Cancelled`] is sent. See [`CancelOutcome`] for what is left.
    ///
    /// # Errors
    ///
    /// The upload's own error if it failed before the cancel arrived.
    ///
    /// # Panics
    ///
    /// Resumes the panic of the upload task, as [`join`](UploadHandle::join) does.
    pub async fn cancel(self) -> Result<CancelOutcome> {
        self.control.send_replace(Control::Cancel);
        let shared = Arc::clone(&self.shared);
        match self.join().await {
            Ok(report) => Ok(CancelOutcome {
                media_id: Some(report.media_id.clone()),
                usable_until: None,
                checkpoint: None,
                completed: Some(report),
            }),
            Err(e) if e.kind() == ErrorKind::Cancelled => shared.take_cancel_outcome().ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// Cancels the upload at once, without saving a checkpoint. See
    /// [Cancellation](UploadHandle#cancellation).
    pub fn abort(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }

    /// Waits for the upload to end; events not read yet are discarded.
    ///
    /// # Errors
    ///
    /// The upload's error, or [`ErrorKind::Cancelled`] if it was aborted.
    ///
    /// # Panics
    ///
    /// Resumes the panic of the upload task, if it panicked (a bug, or a panicking
    /// [`Strategy`](crate::scheduler::Strategy) or protocol).
    pub async fn join(mut self) -> Result<UploadReport> {
        if let Some(e) = self.early.take() {
            return Err(e);
        }
        let Some(task) = self.task.as_mut() else {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the upload was never started",
            ));
        };
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                Err(Error::new(ErrorKind::Cancelled, "the upload was aborted").with_source(e))
            }
        }
    }
}

impl Drop for UploadHandle {
    fn drop(&mut self) {
        self.abort();
    }
}
