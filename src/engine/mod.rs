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

mod config;
mod events;
mod plan;
mod report;
mod retry;
mod source;
mod upload;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use config::{
    DEFAULT_CHECK_AFTER, DEFAULT_CONTROL_TIMEOUT, DEFAULT_PROCESSING_DEADLINE, EngineConfig,
    MAX_CHECK_AFTER, MAX_CONFIG_DURATION, MAX_IN_FLIGHT_LIMIT, MIN_CHECK_AFTER, PollingConfig,
    StrategyFactory,
};
pub use events::{Progress, UploadEvent};
pub use plan::{Plan, Segment, check_category_limit};
pub use report::{
    AttemptOutcome, AttemptRecord, LATENCY_HISTOGRAM_MAX_MICROS, LATENCY_HISTOGRAM_SIGFIG,
    LatencySummary, UploadReport,
};
pub use retry::{
    DEFAULT_BUDGET_MIN, DEFAULT_BUDGET_RATIO, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY,
    DEFAULT_THROTTLE_BASE, DEFAULT_TRANSIENT_BASE, MAX_ATTEMPTS_LIMIT, MAX_BUDGET_RATIO,
    MAX_DELAY_LIMIT, RetryPolicy,
};
pub use source::Source;
pub use upload::STALL_CHECKS_PER_WINDOW;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::MediaCategory;
use crate::protocol::UploadProtocol;
use upload::{Shared, UploadTask};

/// Most user ids INIT's `additional_owners` may list.
///
/// Source: X API INIT reference, "at most 100" (protocol.md §3.1).
pub const MAX_ADDITIONAL_OWNERS: usize = 100;

/// What is being uploaded, as INIT describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MediaSpec {
    /// The MIME type, such as `video/mp4`.
    pub media_type: String,
    /// The category. Needed for asynchronous video and GIF processing and their larger size
    /// limits; without it the server picks one (protocol.md §2.2).
    pub category: Option<MediaCategory>,
    /// User ids allowed to attach the media (at most [`MAX_ADDITIONAL_OWNERS`]).
    pub additional_owners: Vec<String>,
    /// DM media reused across messages.
    pub shared: Option<bool>,
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

    /// Checks the spec.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if the media type is empty or more than
    /// [`MAX_ADDITIONAL_OWNERS`] owners are listed.
    pub fn validate(&self) -> Result<()> {
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
    /// [`ErrorKind::InvalidConfig`] if `config` does not pass [`EngineConfig::validate`].
    pub fn new(protocol: Arc<dyn UploadProtocol>, config: EngineConfig) -> Result<Engine> {
        config.validate()?;
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
        let (tx, rx) = unbounded_channel();
        let shared = Arc::new(Shared::default());
        let span = tracing::info_span!(
            "upload",
            media_id = tracing::field::Empty,
            total_bytes = source.len()
        );
        let task = UploadTask {
            protocol: Arc::clone(&self.inner.protocol),
            config: Arc::clone(&self.inner.config),
            source,
            spec,
            events: tx,
            shared: Arc::clone(&shared),
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
        }
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
/// [`abort`]: UploadHandle::abort
/// [`join`]: UploadHandle::join
pub struct UploadHandle {
    events: UnboundedReceiver<UploadEvent>,
    task: Option<JoinHandle<Result<UploadReport>>>,
    early: Option<Error>,
    shared: Arc<Shared>,
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

    /// Cancels the upload. See [Cancellation](UploadHandle#cancellation).
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
