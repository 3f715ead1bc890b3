//! One upload, start to finish: checks, INIT (or a checkpoint to carry on), parallel APPENDs
//! with retries, pauses and checkpoints, FINALIZE and STATUS polling. Runs as one tokio
//! task; every APPEND in flight is a future polled by that task, so aborting the task, or a
//! cancel, drops them all.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::config::{EngineConfig, MAX_IN_FLIGHT_LIMIT};
use super::events::{Progress, UploadEvent};
use super::plan::{Plan, Segment, check_category_limit};
use super::report::{AttemptOutcome, AttemptRecord, Finished, Recorder, UploadReport};
use super::retry::{Backoff, RetryBudget};
use super::saver::{Saved, Saver};
use super::source::Source;
use super::{CancelOutcome, Control, MediaSpec, PauseMode};
use crate::checkpoint::{Checkpoint, CheckpointKey, SourceIdentity, checkpoint_error};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{
    AppendRequest, AppendResponse, InitRequest, MediaId, MediaStatus, ProcessingState,
    ProtocolTarget, UploadProtocol, is_media_id_gone,
};
use crate::scheduler::{Observation, Outcome, Strategy};

/// How many times per stall window the `sent` counter of an APPEND is checked: 4, so a stall
/// is noticed between 1× and 1.25× the stall timeout after the last byte moved.
///
/// Source: reasonable default; polling an atomic a few times per window costs nothing,
/// while the detection delay stays within a quarter of the window.
pub const STALL_CHECKS_PER_WINDOW: u32 = 4;

/// Progress shared between the upload task and its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<SharedState>,
}

#[derive(Debug, Default)]
struct SharedState {
    progress: Progress,
    /// The `sent` counters of the APPENDs in flight, by attempt id.
    sent: HashMap<u64, Arc<AtomicU64>>,
    /// What a cancel left, for [`UploadHandle::cancel`](super::UploadHandle::cancel).
    cancelled: Option<CancelOutcome>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut SharedState) -> R) -> R {
        // A panic while holding the lock cannot leave the counters inconsistent in a way
        // that matters for a progress display, so a poisoned lock is used as is.
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut g)
    }

    /// The current progress, with the live byte count of the requests in flight.
    pub(crate) fn snapshot(&self) -> Progress {
        self.with(|s| {
            let mut p = s.progress;
            p.bytes_in_flight = s.sent.values().map(|c| c.load(Ordering::Relaxed)).sum();
            p
        })
    }

    /// What the cancel left, once.
    pub(crate) fn take_cancel_outcome(&self) -> Option<CancelOutcome> {
        self.with(|s| s.cancelled.take())
    }
}

/// Everything one upload needs; consumed by [`UploadTask::run`].
#[derive(Debug)]
pub(crate) struct UploadTask {
    pub(crate) protocol: Arc<dyn UploadProtocol>,
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) source: Source,
    pub(crate) spec: MediaSpec,
    pub(crate) events: UnboundedSender<UploadEvent>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) control: watch::Receiver<Control>,
    /// The checkpoint to carry on, for [`Engine::resume`](super::Engine::resume).
    pub(crate) resume: Option<Checkpoint>,
}

impl UploadTask {
    /// Runs the upload; a failure is also sent as [`UploadEvent::Failed`] (a cancel as
    /// [`UploadEvent::Cancelled`]).
    pub(crate) async fn run(self) -> Result<UploadReport> {
        let events = self.events.clone();
        // issue 14 hook: the one-shot path for small media, then alt text and subtitles once
        // the media is ready (src/engine/oneshot.rs, src/engine/attach.rs).
        let after_ready = super::attach::AfterReady::of(&self);
        let result = if super::oneshot::chosen(&self) {
            super::oneshot::run(self).await
        } else {
            Run::new(self).execute().await
        };
        let result = after_ready.run(result).await;
        // end of issue 14 hook
        if let Err(e) = &result {
            tracing::debug!(error = %e, "upload ended without completing");
            if e.kind() != ErrorKind::Cancelled {
                // The receiver may be gone (handle dropped); nothing to do then.
                let _ = events.send(UploadEvent::Failed {
                    kind: e.kind(),
                    error: e.to_string(),
                });
            }
        }
        result
    }
}

/// Why an APPEND attempt did not return 2xx.
#[derive(Debug)]
enum Failure {
    /// The segment could not be read; no request was sent.
    Read(Error),
    /// The request ran past its deadline.
    Deadline(Duration),
    /// The request sent nothing for the stall time.
    Stalled(Duration),
    /// The protocol returned an error.
    Request(Error),
}

/// A finished APPEND attempt, as the attempt future hands it back to the scheduler. It
/// carries no payload: the bytes are dropped with the request, and read again from the
/// source for a retry, so memory holds only the segments in flight.
struct AttemptDone {
    id: u64,
    segment: Segment,
    attempt: u32,
    started: Instant,
    finished: Instant,
    result: std::result::Result<AppendResponse, Failure>,
}

/// Bookkeeping of one attempt in flight.
#[derive(Debug, Clone, Copy)]
struct Flight {
    segment: Segment,
    attempt: u32,
    launched: Instant,
    in_flight: usize,
    app_limited: bool,
}

/// A segment waiting for its retry backoff to end.
#[derive(Debug)]
struct Waiting {
    segment: Segment,
    attempt: u32,
    ready_at: Instant,
}

/// A planned segment to send before planning new ones: left unacknowledged by an earlier
/// run (a checkpoint), or abandoned by a pause.
#[derive(Debug, Clone, Copy)]
struct Pending {
    segment: Segment,
    attempt: u32,
    /// Whether its bytes were handed to an earlier attempt of this run.
    resend: bool,
}

/// The media id of the upload and what the server acknowledged under it.
#[derive(Debug, Clone)]
struct Session {
    media_id: MediaId,
    media_key: Option<String>,
    expires_at: Option<SystemTime>,
    acked: BTreeSet<u32>,
}

/// The state of one running upload.
struct Run {
    task: UploadTask,
    strategy: Box<dyn Strategy>,
    backoff: Backoff,
    budget: RetryBudget,
    rec: Recorder,
    plan: Option<Plan>,
    target: ProtocolTarget,
    identity: Option<SourceIdentity>,
    session: Option<Session>,
    /// Segments to send first when the APPENDs start (from a checkpoint).
    resume_pending: Vec<Segment>,
    saver: Saver,
    /// Checkpoint keys to remove at the end besides this upload's own (a resumed
    /// checkpoint saved under another path).
    old_keys: Vec<CheckpointKey>,
    control: watch::Receiver<Control>,
    /// False once the handle (the control sender) is gone.
    control_open: bool,
    /// The pause the run is honouring.
    paused: Option<PauseMode>,
    /// Whether the session came from a checkpoint (cleared by a restart).
    resumed: bool,
    resumed_segments: u32,
    restarted: bool,
    finalized: bool,
    /// Set while the server cannot be reached (see [`Outage`]).
    outage: Option<Outage>,
}

/// A stretch of time in which requests could not reach the server
/// ([`ErrorKind::Unreachable`]): every request waits for a probe, one at a time.
#[derive(Debug, Clone, Copy)]
struct Outage {
    /// When the first request failed to connect.
    since: Instant,
    /// Requests started since then that failed to connect too (they set the backoff).
    probes: u32,
}

impl Run {
    fn new(task: UploadTask) -> Self {
        let strategy = (task.config.strategy)();
        let backoff = Backoff::new(&task.config.retry);
        let rec = Recorder::new(Instant::now(), task.config.trace_requests);
        let saver = Saver::new(task.config.checkpoint_store.clone());
        let target = task.protocol.describe();
        let control = task.control.clone();
        Run {
            task,
            strategy,
            backoff,
            budget: RetryBudget::new(),
            rec,
            plan: None,
            target,
            identity: None,
            session: None,
            resume_pending: Vec::new(),
            saver,
            old_keys: Vec::new(),
            control,
            control_open: true,
            paused: None,
            resumed: false,
            resumed_segments: 0,
            restarted: false,
            finalized: false,
            outage: None,
        }
    }

    fn emit(&self, event: UploadEvent) {
        // The receiver may be gone (handle dropped while the task is being aborted).
        let _ = self.task.events.send(event);
    }

    fn progress(&self) {
        let p = self.task.shared.snapshot();
        self.emit(UploadEvent::Progress(p));
    }

    /// The upload-wide retry limit, from the segments the upload is projected to have.
    fn budget_limit(&self) -> u32 {
        let segments = self.plan.as_ref().map_or(1, Plan::projected_segments);
        self.task.config.retry.budget(segments)
    }

    /// A request started at `started` failed to connect with `error`: reports it and returns
    /// the delay before the next request may probe the server, or, once the server has been
    /// unreachable for the policy's `max_unreachable`, the error that ends the upload.
    fn unreachable(&mut self, error: Error, started: Instant, now: Instant) -> Result<Duration> {
        let max = self.task.config.retry.max_unreachable;
        let outage = self.outage.get_or_insert(Outage {
            since: now,
            probes: 0,
        });
        let down = now.saturating_duration_since(outage.since);
        if down >= max {
            let segment = error.segment();
            let fatal = Error::new(
                ErrorKind::Unreachable,
                format!(
                    "the server could not be reached for {down:.1?} (retry max_unreachable is \
                     {max:?}): check the network and the base URL"
                ),
            )
            .with_source(error);
            return Err(match segment {
                Some(index) => fatal.with_segment(index),
                None => fatal,
            });
        }
        // Requests already in flight when the outage began fail together and tell the same
        // thing once; only later ones are probes that lengthen the backoff.
        let retry = outage.probes;
        if started >= outage.since {
            outage.probes += 1;
        }
        let delay = self.backoff.delay(retry, false, None).min(max - down);
        tracing::debug!(?down, ?delay, error = %error, "server unreachable; holding every request");
        self.emit(UploadEvent::Unreachable {
            down,
            retry_in: delay,
            gives_up_in: max - down,
            error: error.to_string(),
        });
        Ok(delay)
    }

    /// A request started at `started` reached the server. That ends an outage, unless the
    /// request began before it (then only its success does: an old connection's failure
    /// says nothing of new ones).
    fn reached(&mut self, started: Instant, success: bool) {
        if self.outage.is_some_and(|o| success || started >= o.since) {
            tracing::debug!("server reachable again");
            self.outage = None;
        }
    }

    /// Runs the upload until it ends or is cancelled.
    async fn execute(mut self) -> Result<UploadReport> {
        let cancel = cancel_requested(self.control.clone());
        let outcome = tokio::select! {
            biased;
            () = cancel => None,
            r = self.body() => Some(r),
        };
        match outcome {
            Some(result) => result,
            None => Err(self.cancelled().await),
        }
    }

    async fn body(&mut self) -> Result<UploadReport> {
        let total = self.task.source.len();
        self.task.spec.validate()?;
        if self.task.config.enforce_category_limits {
            check_category_limit(total, self.task.spec.category)?;
        }
        let max_chunk = self.task.protocol.max_append_payload();
        self.plan = Some(Plan::new(total, max_chunk)?);
        self.task.shared.with(|s| s.progress.total_bytes = total);
        self.emit(UploadEvent::Started { total_bytes: total });
        self.identity = Some(SourceIdentity::of(&self.task.source).await?);
        if let Some(checkpoint) = self.task.resume.take() {
            self.restore(checkpoint, max_chunk)?;
        }

        let media_id = loop {
            let media_id = match &self.session {
                Some(s) => s.media_id.clone(),
                None => self.init().await?,
            };
            match self.appends(&media_id).await {
                Ok(()) => break media_id,
                Err(e) if self.resumed && is_media_id_gone(&e) => {
                    self.restart(format!(
                        "the server no longer knows media id {media_id}: {e}"
                    ))?;
                }
                Err(e) => return Err(e),
            }
        };
        self.flush_checkpoint().await;

        self.wait_while_paused().await;
        self.emit(UploadEvent::Finalizing);
        let protocol = Arc::clone(&self.task.protocol);
        let status = self
            .control("FINALIZE", || protocol.finalize(&media_id))
            .await?;
        // Every byte is delivered: the checkpoint has served its purpose, whatever
        // processing makes of the media.
        self.finalized = true;
        self.remove_checkpoints().await;
        let (status, processing_state) = self.poll(&media_id, status).await?;
        let media_key = status
            .media_key
            .or_else(|| self.session.as_ref().and_then(|s| s.media_key.clone()));
        self.emit(UploadEvent::Completed {
            media_id: media_id.clone(),
        });

        let segments = self.plan.as_ref().map_or(&[][..], Plan::segments);
        let fin = Finished {
            media_id,
            media_key,
            total_bytes: total,
            segments: u32::try_from(segments.len()).unwrap_or(u32::MAX),
            processing_state,
            chunk_min: segments.iter().map(|s| s.len).min().unwrap_or(0),
            chunk_max: segments.iter().map(|s| s.len).max().unwrap_or(0),
            resumed_segments: self.resumed_segments,
            restarted: self.restarted,
        };
        Ok(self.rec.finish(Instant::now(), fin))
    }

    /// INIT: opens the session and saves the first checkpoint before any APPEND, so the
    /// media id is on record however early the process dies.
    async fn init(&mut self) -> Result<MediaId> {
        self.wait_while_paused().await;
        let init_req = InitRequest {
            total_bytes: self.task.source.len(),
            media_type: self.task.spec.media_type.clone(),
            media_category: self.task.spec.category,
            additional_owners: self.task.spec.additional_owners.clone(),
            shared: self.task.spec.shared,
        };
        let protocol = Arc::clone(&self.task.protocol);
        let init = self.control("INIT", || protocol.init(&init_req)).await?;
        let media_id = init.media_id.clone();
        tracing::Span::current().record("media_id", media_id.as_str());
        tracing::debug!(media_id = %media_id, expires_after_secs = ?init.expires_after_secs, "initialized");
        self.emit(UploadEvent::Initialized {
            media_id: media_id.clone(),
            media_key: init.media_key.clone(),
            expires: init.expires_after_secs.map(Duration::from_secs),
        });
        self.session = Some(Session {
            media_id: media_id.clone(),
            media_key: init.media_key,
            expires_at: init
                .expires_after_secs
                .and_then(|s| SystemTime::now().checked_add(Duration::from_secs(s))),
            acked: BTreeSet::new(),
        });
        self.saver.mark_dirty();
        self.flush_checkpoint().await;
        Ok(media_id)
    }

    /// Takes over the session of a checkpoint, after checking that it belongs to this
    /// source and target; an expired one only leaves a note, and INIT starts over.
    fn restore(&mut self, cp: Checkpoint, max_chunk: u64) -> Result<()> {
        cp.validate()?;
        if cp.target != self.target {
            return Err(checkpoint_error(format!(
                "the checkpoint is for {} at {:?}, but this engine uploads to {} at {:?}; \
                 resume it with a client for that target",
                cp.target.api, cp.target.base_url, self.target.api, self.target.base_url
            )));
        }
        if let Some(current) = &self.identity {
            cp.source.check_unchanged(current)?;
        }
        if cp.plan.max_chunk() > max_chunk {
            return Err(checkpoint_error(format!(
                "the checkpoint planned segments of up to {} bytes, but the protocol now takes \
                 at most {max_chunk} per APPEND; start a new upload or restore the limit",
                cp.plan.max_chunk()
            )));
        }
        let old_key = cp.key();
        if self
            .identity
            .as_ref()
            .map(|id| CheckpointKey::for_upload(id, &self.target))
            != Some(old_key.clone())
        {
            self.old_keys.push(old_key);
        }
        if let Some(state) = &cp.strategy_state {
            self.strategy.import_state(state);
        }
        if cp.is_expired(SystemTime::now()) {
            let reason = format!(
                "media id {} expired (or expires within a minute) before the upload could \
                 carry on",
                cp.media_id
            );
            tracing::info!(media_id = %cp.media_id, "checkpoint expired; starting over");
            self.emit(UploadEvent::Restarted {
                previous_media_id: cp.media_id,
                reason,
            });
            self.restarted = true;
            return Ok(());
        }
        let pending = cp.pending_segments();
        let bytes_acked = cp.acked_bytes();
        let segments_acked = u32::try_from(cp.acked.len()).unwrap_or(u32::MAX);
        let planned = u32::try_from(cp.plan.segments().len()).unwrap_or(u32::MAX);
        tracing::Span::current().record("media_id", cp.media_id.as_str());
        tracing::info!(
            media_id = %cp.media_id,
            segments_acked,
            pending = pending.len(),
            "carrying on from a checkpoint"
        );
        self.emit(UploadEvent::ResumedFromCheckpoint {
            media_id: cp.media_id.clone(),
            segments_acked,
            bytes_acked,
            segments_pending: u32::try_from(pending.len()).unwrap_or(u32::MAX),
        });
        self.task.shared.with(|s| {
            s.progress.bytes_acked = bytes_acked;
            s.progress.segments_done = segments_acked;
            s.progress.segments_planned = planned;
        });
        self.resume_pending = pending;
        self.resumed_segments = segments_acked;
        self.resumed = true;
        self.session = Some(Session {
            media_id: cp.media_id,
            media_key: cp.media_key,
            expires_at: cp.expires_at,
            acked: cp.acked,
        });
        self.plan = Some(cp.plan);
        self.saver.mark_dirty();
        Ok(())
    }

    /// Gives up the resumed session whose media id the server no longer knows: a new INIT
    /// and a new plan follow.
    fn restart(&mut self, reason: String) -> Result<()> {
        let total = self.task.source.len();
        self.plan = Some(Plan::new(total, self.task.protocol.max_append_payload())?);
        if let Some(old) = self.session.take() {
            tracing::info!(media_id = %old.media_id, %reason, "starting over");
            self.emit(UploadEvent::Restarted {
                previous_media_id: old.media_id,
                reason,
            });
        }
        self.resumed = false;
        self.restarted = true;
        self.resumed_segments = 0;
        self.resume_pending.clear();
        self.task.shared.with(|s| {
            s.sent.clear();
            s.progress.bytes_acked = 0;
            s.progress.segments_done = 0;
            s.progress.segments_planned = 0;
            s.progress.in_flight = 0;
        });
        self.progress();
        Ok(())
    }

    /// The checkpoint of the upload as it stands, once INIT returned and until FINALIZE did.
    fn checkpoint(&self) -> Option<Checkpoint> {
        if self.finalized {
            return None;
        }
        let session = self.session.as_ref()?;
        Some(Checkpoint {
            target: self.target.clone(),
            media_id: session.media_id.clone(),
            media_key: session.media_key.clone(),
            expires_at: session.expires_at,
            source: self.identity.clone()?,
            spec: self.task.spec.clone(),
            plan: self.plan.clone()?,
            acked: session.acked.clone(),
            strategy_state: self.strategy.export_state(),
            saved_at: SystemTime::now(),
        })
    }

    /// Starts a checkpoint save if the state changed and none is running.
    fn start_save(&mut self) {
        if self.saver.wants_save() {
            let cp = self.checkpoint();
            self.saver.start(cp);
        }
    }

    /// Reports how a save ended. A failed save does not end the upload.
    fn saved(&self, saved: Saved) {
        match saved.result {
            Ok(()) => self.emit(UploadEvent::CheckpointSaved {
                segments_acked: saved.segments_acked,
            }),
            Err(e) => self.checkpoint_failed(&e),
        }
    }

    fn checkpoint_failed(&self, e: &Error) {
        tracing::warn!(error = %e, "checkpoint store failed");
        self.emit(UploadEvent::CheckpointFailed {
            error: e.to_string(),
        });
    }

    /// Waits until the checkpoint on record is the current state.
    async fn flush_checkpoint(&mut self) {
        loop {
            if self.saver.is_saving() {
                let saved = self.saver.next().await;
                self.saved(saved);
            } else if self.saver.wants_save() {
                self.start_save();
            } else {
                return;
            }
        }
    }

    /// Removes the upload's checkpoints from the store (after FINALIZE).
    async fn remove_checkpoints(&mut self) {
        let mut keys = std::mem::take(&mut self.old_keys);
        if let Some(id) = &self.identity {
            keys.push(CheckpointKey::for_upload(id, &self.target));
        }
        for e in self.saver.remove(&keys).await {
            self.checkpoint_failed(&e);
        }
    }

    /// After a cancel (the body and every request in flight already dropped): saves and
    /// returns the checkpoint, reports the cancel, and returns the error for `join`.
    async fn cancelled(&mut self) -> Error {
        self.task.shared.with(|s| {
            s.sent.clear();
            s.progress.in_flight = 0;
        });
        self.saver.mark_dirty();
        self.flush_checkpoint().await;
        let media_id = self.session.as_ref().map(|s| s.media_id.clone());
        let usable_until = self.session.as_ref().and_then(|s| s.expires_at);
        tracing::info!(media_id = ?media_id, "upload cancelled");
        self.emit(UploadEvent::Cancelled {
            media_id: media_id.clone(),
            usable_until,
        });
        let outcome = CancelOutcome {
            media_id,
            usable_until,
            checkpoint: self.checkpoint(),
            completed: None,
        };
        self.task.shared.with(|s| s.cancelled = Some(outcome));
        Error::new(ErrorKind::Cancelled, "the upload was cancelled")
    }

    /// Acts on a change of the requested pause state: reports it, and with
    /// [`PauseMode::Abandon`] drops the APPENDs in flight of `sched`.
    fn sync_control(&mut self, sched: Option<&mut Scheduler>) {
        let wanted = match *self.control.borrow_and_update() {
            Control::Pause(mode) => Some(mode),
            // A cancel is acted on by `execute`.
            Control::Run | Control::Cancel => None,
        };
        if wanted == self.paused {
            return;
        }
        self.paused = wanted;
        let Some(mode) = wanted else {
            tracing::info!("upload resumed");
            // Time spent paused is not time the server was found unreachable: the next
            // failure to connect starts a new outage.
            self.outage = None;
            self.emit(UploadEvent::Resumed);
            return;
        };
        tracing::info!(?mode, "upload paused");
        if let Some(sched) = sched {
            match mode {
                PauseMode::Abandon => self.abandon(sched),
                // Whatever drains now runs with capacity left unused on purpose.
                PauseMode::Drain => {
                    for f in sched.flights.values_mut() {
                        f.app_limited = true;
                    }
                }
            }
        }
        self.emit(UploadEvent::Paused { mode });
        self.progress();
    }

    /// Waits while the upload is paused.
    async fn wait_while_paused(&mut self) {
        loop {
            self.sync_control(None);
            if self.paused.is_none() || !self.control_open {
                return;
            }
            if self.control.changed().await.is_err() {
                self.control_open = false;
            }
        }
    }

    /// Drops every APPEND in flight; their segments are sent again, first, after the resume.
    fn abandon(&mut self, sched: &mut Scheduler) {
        drop(std::mem::take(&mut sched.in_flight));
        let now = Instant::now();
        let mut flights: Vec<(u64, Flight)> = sched.flights.drain().collect();
        flights.sort_by_key(|(_, f)| f.segment.index);
        for (id, f) in &flights {
            let record = AttemptRecord {
                segment: f.segment.index,
                attempt: f.attempt,
                bytes: f.segment.len,
                start_ms: self.rec.ms_since_start(f.launched),
                end_ms: self.rec.ms_since_start(now),
                outcome: AttemptOutcome::Abandoned,
                in_flight: f.in_flight,
                app_limited: f.app_limited,
            };
            self.rec
                .attempt_ended(record, now.saturating_duration_since(f.launched));
            self.task.shared.with(|s| s.sent.remove(id));
        }
        for (_, f) in flights.iter().rev() {
            sched.pending.push_front(Pending {
                segment: f.segment,
                attempt: f.attempt,
                resend: true,
            });
        }
        self.task.shared.with(|s| s.progress.in_flight = 0);
    }

    /// Runs INIT, FINALIZE or STATUS under the control deadline, retrying retryable
    /// failures with backoff against the upload-wide budget.
    async fn control<'p, T>(
        &mut self,
        what: &'static str,
        mut call: impl FnMut() -> BoxFuture<'p, Result<T>>,
    ) -> Result<T> {
        let max_attempts = self.task.config.retry.max_attempts;
        let timeout = self.task.config.control_timeout;
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{what} took longer than its deadline of {timeout:?}"),
                )),
            };
            let e = match result {
                Ok(v) => {
                    self.reached(started, true);
                    return Ok(v);
                }
                Err(e) => e,
            };
            if e.kind() == ErrorKind::Unreachable {
                // Spends no attempt and no budget (see `RetryPolicy`).
                let delay = self.unreachable(e, started, Instant::now())?;
                self.rec.control_retries += 1;
                tokio::time::sleep(delay).await;
                continue;
            }
            self.reached(started, false);
            if !e.is_retryable() || attempt >= max_attempts {
                return Err(with_attempts(e, attempt));
            }
            let limit = self.budget_limit();
            if !self.budget.try_spend(limit) {
                return Err(budget_exhausted(e, self.budget.spent(), limit, attempt));
            }
            let delay = self
                .backoff
                .delay(attempt - 1, e.is_throttled(), e.retry_after());
            self.rec.control_retries += 1;
            tracing::debug!(request = what, attempt, ?delay, error = %e, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sends every segment not yet acknowledged, keeping up to the strategy's limit in
    /// flight, saving checkpoints as segments are acknowledged, and honouring pauses.
    async fn appends(&mut self, media_id: &MediaId) -> Result<()> {
        let mut sched = Scheduler {
            media_id: media_id.clone(),
            in_flight: FuturesUnordered::new(),
            flights: HashMap::new(),
            waiting: Vec::new(),
            pending: self
                .resume_pending
                .drain(..)
                .map(|segment| Pending {
                    segment,
                    attempt: 1,
                    resend: false,
                })
                .collect(),
            hold_until: None,
            next_id: 0,
            unreached: HashMap::new(),
        };
        loop {
            self.sync_control(Some(&mut sched));
            // A pause holds only while the handle can still lift it (so that the `select!`
            // below always has a branch to wait on).
            let holding = self.paused.is_some() && self.control_open;
            let wake = if holding { None } else { self.fill(&mut sched) };
            self.start_save();
            let plan_done = self.plan.as_ref().is_none_or(Plan::is_complete);
            if sched.is_idle() && plan_done {
                return Ok(());
            }
            if !holding && sched.in_flight.is_empty() && wake.is_none() {
                // Unreachable with a plan built by `Plan::new`; guards against a hang.
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "the segment plan ran out of segment indices before covering the source",
                ));
            }
            tokio::select! {
                Some(done) = sched.in_flight.next(), if !sched.in_flight.is_empty() => {
                    self.on_done(&mut sched, done)?;
                    // Take in every other response that is already here before deciding new
                    // sends: a 429 that arrived together with a success must hold the send
                    // the success would otherwise start at once.
                    while let Some(Some(done)) = sched.in_flight.next().now_or_never() {
                        self.on_done(&mut sched, done)?;
                    }
                }
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
                saved = self.saver.next(), if self.saver.is_saving() => self.saved(saved),
                changed = self.control.changed(), if self.control_open => {
                    if changed.is_err() {
                        self.control_open = false;
                    }
                }
            }
        }
    }

    /// Starts attempts while the strategy allows more in flight; returns when the scheduler
    /// must wake up on its own (a hold or a backoff ending), if ever.
    fn fill(&mut self, sched: &mut Scheduler) -> Option<Instant> {
        loop {
            let now = Instant::now();
            // While the server is unreachable, one request at a time probes it.
            let allowed = if self.outage.is_some() {
                1
            } else {
                self.strategy
                    .max_in_flight(now)
                    .clamp(1, MAX_IN_FLIGHT_LIMIT)
            };
            self.task.shared.with(|s| {
                s.progress.max_in_flight = allowed;
                s.progress.in_flight = sched.in_flight.len();
            });
            if sched.in_flight.len() >= allowed {
                return None;
            }
            let hold = [self.strategy.not_before(now), sched.hold_until]
                .into_iter()
                .flatten()
                .max()
                .filter(|t| *t > now);
            if let Some(hold) = hold {
                tracing::debug!(wait = ?(hold - now), "holding new requests");
                return Some(hold);
            }
            if let Some(w) = sched.take_ready(now) {
                self.launch(sched, w.segment, w.attempt, false, now);
                continue;
            }
            if let Some(p) = sched.pending.pop_front() {
                self.launch(sched, p.segment, p.attempt, p.resend, now);
                continue;
            }
            let next = self
                .plan
                .as_mut()
                .and_then(|p| p.next_segment(self.strategy.as_mut(), now));
            if let Some(segment) = next {
                let planned = self.plan.as_ref().map_or(0, |p| p.segments().len());
                self.task.shared.with(|s| {
                    s.progress.chunk_size = segment.len;
                    s.progress.segments_planned = u32::try_from(planned).unwrap_or(u32::MAX);
                });
                self.launch(sched, segment, 1, false, now);
                continue;
            }
            // Free capacity and nothing ready to send: the file ran out or the rest waits on
            // backoff. Whatever is in flight now is not using the link fully.
            for f in sched.flights.values_mut() {
                f.app_limited = true;
            }
            return sched.waiting.iter().map(|w| w.ready_at).min();
        }
    }

    /// Starts one APPEND attempt of `segment`; its bytes are read from the source first.
    fn launch(
        &mut self,
        sched: &mut Scheduler,
        segment: Segment,
        attempt: u32,
        resend: bool,
        now: Instant,
    ) {
        let id = sched.next_id;
        sched.next_id += 1;
        let deadline = self.strategy.request_deadline(now, segment.len);
        let stall = self.strategy.stall_timeout();
        let in_flight = sched.in_flight.len() + 1;
        let sent = Arc::new(AtomicU64::new(0));
        self.task.shared.with(|s| {
            s.sent.insert(id, Arc::clone(&sent));
            s.progress.in_flight = in_flight;
        });
        sched.flights.insert(
            id,
            Flight {
                segment,
                attempt,
                launched: now,
                in_flight,
                app_limited: false,
            },
        );
        self.rec
            .attempt_started(attempt, segment.len, in_flight, resend);
        tracing::debug!(
            segment = segment.index,
            attempt,
            bytes = segment.len,
            in_flight,
            ?deadline,
            ?stall,
            "starting append"
        );
        self.emit(UploadEvent::SegmentStarted {
            index: segment.index,
            offset: segment.offset,
            len: segment.len,
            attempt,
        });
        self.progress();

        let protocol = Arc::clone(&self.task.protocol);
        let source = self.task.source.clone();
        let media_id = sched.media_id.clone();
        let span = tracing::debug_span!(
            "append",
            segment = segment.index,
            attempt,
            bytes = segment.len
        );
        let fut = async move {
            let data = match source.read(segment.offset, segment.len).await {
                Ok(d) => d,
                Err(e) => {
                    let t = Instant::now();
                    return AttemptDone {
                        id,
                        segment,
                        attempt,
                        started: t,
                        finished: t,
                        result: Err(Failure::Read(e)),
                    };
                }
            };
            let started = Instant::now();
            let req = AppendRequest {
                media_id,
                segment_index: segment.index,
                data: data.clone(),
                sent: Some(Arc::clone(&sent)),
            };
            let result = guarded(protocol.append(req), deadline, stall, &sent, segment.len).await;
            // The request is over and has dropped its body: the buffer can serve the next
            // segment (kept only if nothing else still holds it).
            source.recycle(data);
            AttemptDone {
                id,
                segment,
                attempt,
                started,
                finished: Instant::now(),
                result,
            }
        }
        .instrument(span)
        .boxed();
        sched.in_flight.push(fut);
    }

    /// Handles a finished attempt: records it, tells the strategy, and marks the segment
    /// acknowledged, schedules a retry, or ends the upload.
    fn on_done(&mut self, sched: &mut Scheduler, done: AttemptDone) -> Result<()> {
        let flight = sched.flights.remove(&done.id);
        let (in_flight, app_limited) = flight.map_or((1, false), |f| (f.in_flight, f.app_limited));
        self.task.shared.with(|s| {
            s.sent.remove(&done.id);
            s.progress.in_flight = sched.in_flight.len();
        });
        let index = done.segment.index;
        let error = match done.result {
            Ok(response) => {
                if let Some(session) = self.session.as_mut() {
                    session.acked.insert(index);
                    if let Some(at) = response.expires_at {
                        session.expires_at =
                            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(at));
                    }
                }
                self.saver.mark_dirty();
                None
            }
            Err(Failure::Read(e)) => return Err(e.with_segment(index)),
            Err(Failure::Deadline(d)) => Some((
                Outcome::Timeout,
                Error::new(
                    ErrorKind::Timeout,
                    format!("append took longer than its deadline of {d:?}"),
                ),
            )),
            Err(Failure::Stalled(d)) => Some((
                Outcome::Stalled,
                Error::new(
                    ErrorKind::Timeout,
                    format!("append stalled: no bytes were sent for {d:?}"),
                ),
            )),
            Err(Failure::Request(e)) => {
                let outcome = if e.is_throttled() {
                    Outcome::Throttled {
                        retry_after: e.retry_after(),
                    }
                } else if e.is_retryable() {
                    Outcome::RetryableError
                } else {
                    Outcome::Fatal
                };
                Some((outcome, e))
            }
        };
        let outcome = error.as_ref().map_or(Outcome::Success, |(o, _)| *o);
        let unreachable = error
            .as_ref()
            .is_some_and(|(_, e)| e.kind() == ErrorKind::Unreachable);
        if !unreachable {
            self.reached(done.started, error.is_none());
        }
        let obs = Observation {
            segment_index: index,
            bytes: done.segment.len,
            started: done.started,
            finished: done.finished,
            outcome,
            in_flight,
            app_limited,
        };
        if !unreachable {
            // A request that never connected carried nothing: it says nothing of the link's
            // rate, latency or loss.
            self.strategy.observe(&obs);
        }
        let latency = done.finished.saturating_duration_since(done.started);
        let record = AttemptRecord {
            segment: index,
            attempt: done.attempt,
            bytes: done.segment.len,
            start_ms: self.rec.ms_since_start(done.started),
            end_ms: self.rec.ms_since_start(done.finished),
            outcome: outcome.into(),
            in_flight,
            app_limited,
        };
        self.rec.attempt_ended(record, latency);

        let Some((outcome, error)) = error else {
            tracing::debug!(
                segment = index,
                attempt = done.attempt,
                ?latency,
                "append done"
            );
            self.task.shared.with(|s| {
                s.progress.bytes_acked += done.segment.len;
                s.progress.segments_done += 1;
            });
            self.emit(UploadEvent::SegmentDone {
                index,
                len: done.segment.len,
                latency,
                attempt: done.attempt,
            });
            self.progress();
            return Ok(());
        };

        let error = error.with_segment(index);
        let now = Instant::now();
        let delay = if unreachable {
            // Nothing reached the server: no attempt of the segment and no budget is spent,
            // and every request waits for the next probe (see `RetryPolicy`).
            *sched.unreached.entry(index).or_default() += 1;
            let delay = self.unreachable(error, done.started, now)?;
            sched.hold(now + delay);
            delay
        } else {
            let unreached = sched.unreached.get(&index).copied().unwrap_or(0);
            let counted = done.attempt.saturating_sub(unreached).max(1);
            if outcome == Outcome::Fatal || counted >= self.task.config.retry.max_attempts {
                return Err(with_attempts(error, done.attempt));
            }
            let limit = self.budget_limit();
            if !self.budget.try_spend(limit) {
                return Err(
                    budget_exhausted(error, self.budget.spent(), limit, done.attempt)
                        .with_segment(index),
                );
            }
            let throttled = error.is_throttled();
            if let (true, Some(ra)) = (throttled, error.retry_after()) {
                // Retry-After is a protocol rule, not a tuning choice: no request starts
                // before it ends, whatever the strategy says (the strategy is told too,
                // through the observation, and may hold longer).
                sched.hold(now + ra);
            }
            let delay = self
                .backoff
                .delay(counted - 1, throttled, error.retry_after());
            tracing::debug!(
                segment = index,
                attempt = done.attempt,
                ?delay,
                error = %error,
                "append failed; retrying"
            );
            self.emit(UploadEvent::Retry {
                index,
                attempt: done.attempt,
                delay,
                error: error.to_string(),
            });
            delay
        };
        sched.waiting.push(Waiting {
            segment: done.segment,
            attempt: done.attempt + 1,
            ready_at: now + delay,
        });
        self.progress();
        Ok(())
    }

    /// Polls STATUS until processing ends; returns the last status and the final state
    /// (`None` if the server never reported processing).
    async fn poll(
        &mut self,
        media_id: &MediaId,
        mut status: MediaStatus,
    ) -> Result<(MediaStatus, Option<ProcessingState>)> {
        let polling = self.task.config.polling;
        let deadline = Instant::now() + polling.deadline;
        let protocol = Arc::clone(&self.task.protocol);
        loop {
            let Some(info) = status.processing_info.clone() else {
                return Ok((status, None));
            };
            match info.state {
                ProcessingState::Succeeded => return Ok((status, Some(info.state))),
                ProcessingState::Failed => {
                    let mut e = Error::new(
                        ErrorKind::ProcessingFailed,
                        "the server could not process the media",
                    );
                    if let Some(msg) = info.error {
                        e = e.with_server_message(msg);
                    }
                    return Err(e);
                }
                // Pending, in progress, or a state this client does not know: not done yet.
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::ProcessingTimeout,
                    format!(
                        "media {media_id} was still {:?} after {:?}; raise the processing \
                         deadline or check the media later with STATUS",
                        info.state, polling.deadline
                    ),
                ));
            }
            let wait = polling.wait_for(info.check_after_secs);
            tracing::debug!(state = ?info.state, ?wait, "processing; polling STATUS");
            self.emit(UploadEvent::Processing {
                state: info.state,
                progress_percent: info.progress_percent,
                check_after: wait,
            });
            sleep_until((now + wait).min(deadline)).await;
            status = self.control("STATUS", || protocol.status(media_id)).await?;
        }
    }
}

/// The APPEND scheduler's state.
struct Scheduler {
    media_id: MediaId,
    in_flight: FuturesUnordered<BoxFuture<'static, AttemptDone>>,
    flights: HashMap<u64, Flight>,
    waiting: Vec<Waiting>,
    pending: VecDeque<Pending>,
    hold_until: Option<Instant>,
    next_id: u64,
    /// Per segment, its attempts that failed to reach the server (not counted against
    /// `max_attempts`).
    unreached: HashMap<u32, u32>,
}

impl Scheduler {
    /// No request starts before `until` (a later hold already in place stays).
    fn hold(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }

    /// Whether nothing is in flight, waiting for a retry, or left over to send.
    fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty() && self.pending.is_empty()
    }

    /// Takes the waiting segment whose backoff ended first, if any has.
    fn take_ready(&mut self, now: Instant) -> Option<Waiting> {
        let (i, _) = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| w.ready_at <= now)
            .min_by_key(|(_, w)| (w.ready_at, w.segment.index))?;
        Some(self.waiting.swap_remove(i))
    }
}

/// Attaches the attempt count to an error that ends a retry loop after more than one try.
fn with_attempts(e: Error, attempts: u32) -> Error {
    if attempts > 1 {
        e.with_attempts(attempts)
    } else {
        e
    }
}

/// The error for a retry the upload-wide budget does not allow.
fn budget_exhausted(last: Error, spent: u32, limit: u32, attempts: u32) -> Error {
    Error::new(
        ErrorKind::RetryBudgetExhausted,
        format!(
            "{spent} of the upload's {limit} retries are spent; the link or server is failing \
             too often"
        ),
    )
    .with_attempts(attempts)
    .with_source(last)
}

/// Runs one APPEND under its deadline and, if `stall` is set, abandons it when its `sent`
/// counter has not moved for that long while bytes remain to be sent. (Once the whole body
/// is written, waiting for the response is not a stall; the deadline covers it.)
async fn guarded(
    request: BoxFuture<'_, Result<AppendResponse>>,
    deadline: Duration,
    stall: Option<Duration>,
    sent: &AtomicU64,
    len: u64,
) -> std::result::Result<AppendResponse, Failure> {
    let watch = async {
        let Some(stall) = stall.filter(|s| !s.is_zero()) else {
            return futures::future::pending::<Duration>().await;
        };
        let tick = (stall / STALL_CHECKS_PER_WINDOW).max(Duration::from_millis(1));
        let mut last = sent.load(Ordering::Relaxed);
        let mut moved_at = Instant::now();
        loop {
            tokio::time::sleep(tick).await;
            let now = Instant::now();
            let cur = sent.load(Ordering::Relaxed);
            if cur != last || cur >= len {
                last = cur;
                moved_at = now;
            } else if now.saturating_duration_since(moved_at) >= stall {
                return stall;
            }
        }
    };
    let raced = async {
        tokio::select! {
            r = request => r.map_err(Failure::Request),
            d = watch => Err(Failure::Stalled(d)),
        }
    };
    match tokio::time::timeout(deadline, raced).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Deadline(deadline)),
    }
}

/// Resolves once the handle asks for a cancel; never if the handle is gone (dropping it
/// aborts the task instead).
async fn cancel_requested(mut control: watch::Receiver<Control>) {
    loop {
        if *control.borrow_and_update() == Control::Cancel {
            return;
        }
        if control.changed().await.is_err() {
            return futures::future::pending().await;
        }
    }
}
