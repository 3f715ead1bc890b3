//! The tokio driver of one upload: it claims the upload in the checkpoint store, then runs
//! the [`Core`](super::core::Core) state machine, carrying out its actions (requests over the
//! [`UploadProtocol`], checkpoint writes, events) and feeding it what happened. Every
//! decision is the core's; this file only performs I/O and measures it. It runs as one tokio
//! task; every request in flight is a future polled by that task, so aborting the task drops
//! them all.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{AbortHandle, BoxFuture, abortable};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::config::EngineConfig;
use super::core::{Action, Core, CoreConfig, Failure, Input, Reply, ReqId, Upload};
use super::events::{Progress, UploadEvent};
use super::report::UploadReport;
use super::source::Source;
use super::{CancelOutcome, Control, MediaSpec};
use crate::checkpoint::{Checkpoint, CheckpointClaim, CheckpointKey, SourceIdentity};
use crate::error::{ErrorKind, Result};
use crate::protocol::{AppendRequest, AppendResponse, UploadProtocol};
use crate::scheduler::Strategy;

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
    /// The `sent` counters of the APPENDs in flight, by request id.
    sent: HashMap<ReqId, Arc<AtomicU64>>,
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

    /// `p` with the live byte count of the requests in flight.
    fn live(&self, mut p: Progress) -> Progress {
        self.with(|s| {
            p.bytes_in_flight = s.sent.values().map(|c| c.load(Ordering::Relaxed)).sum();
        });
        p
    }

    /// The current progress, with the live byte count of the requests in flight.
    pub(crate) fn snapshot(&self) -> Progress {
        let p = self.with(|s| s.progress);
        self.live(p)
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
    /// The claim on the upload's key, when the caller took it
    /// ([`Engine::upload_claimed`](super::Engine::upload_claimed)).
    pub(crate) claim: Option<CheckpointClaim>,
}

/// A finished request, as its future hands it back.
type Finished = (ReqId, Instant, std::result::Result<Reply, Failure>);

impl UploadTask {
    /// Runs the upload; a failure is also sent as [`UploadEvent::Failed`] (a cancel as
    /// [`UploadEvent::Cancelled`]).
    pub(crate) async fn run(self) -> Result<UploadReport> {
        let events = self.events.clone();
        // Small media may go up in one request (oneshot.rs); alt text and subtitles follow
        // once the media is ready (attach.rs).
        let after_ready = super::attach::AfterReady::of(&self);
        let result = if super::oneshot::chosen(&self) {
            super::oneshot::run(self).await
        } else {
            match self.prepare().await {
                Ok(driver) => driver.drive().await,
                Err(e) => Err(e),
            }
        };
        let result = after_ready.run(result).await;
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

    /// Everything before the first request: the source's identity, the claim on the upload,
    /// and the core's checks.
    async fn prepare(mut self) -> Result<Driver> {
        let identity = SourceIdentity::of(&self.source).await?;
        let target = self.protocol.describe();
        let claim = match (self.claim.take(), &self.config.checkpoint_store) {
            (Some(claim), _) => Some(claim),
            (None, Some(store)) => {
                let key = CheckpointKey::for_upload(&identity, &target);
                Some(store.claim(&key).await?)
            }
            (None, None) => None,
        };
        let mut strategy = (self.config.strategy)();
        let upload = Upload {
            total_bytes: self.source.len(),
            max_chunk: self.protocol.max_append_payload(),
            spec: self.spec.clone(),
            target,
            identity: Some(identity),
            resume: self.resume.take(),
        };
        let core = Core::new(
            CoreConfig::of(&self.config),
            upload,
            strategy.as_mut(),
            Instant::now(),
            SystemTime::now(),
        )?;
        Ok(Driver {
            control: self.control.clone(),
            task: self,
            core,
            strategy,
            _claim: claim,
            requests: FuturesUnordered::new(),
            aborts: HashMap::new(),
            saving: None,
            control_open: true,
        })
    }
}

/// The driver's state: the core, and the I/O in progress on its behalf.
struct Driver {
    task: UploadTask,
    core: Core,
    strategy: Box<dyn Strategy>,
    /// Held for the whole upload: no other process drives it meanwhile.
    _claim: Option<CheckpointClaim>,
    requests: FuturesUnordered<BoxFuture<'static, Option<Finished>>>,
    aborts: HashMap<ReqId, AbortHandle>,
    saving: Option<BoxFuture<'static, (u64, Result<()>)>>,
    control: watch::Receiver<Control>,
    /// False once the handle (the control sender) is gone.
    control_open: bool,
}

impl Driver {
    async fn drive(mut self) -> Result<UploadReport> {
        let mut queue = VecDeque::new();
        // A pause or cancel asked for before the task ran holds INIT too.
        self.sync_control(&mut queue);
        self.feed(Input::Start, &mut queue);
        loop {
            while let Some(action) = queue.pop_front() {
                if let Some(result) = self.perform(action, &mut queue).await {
                    return result;
                }
            }
            let progress = self.core.progress();
            self.task.shared.with(|s| s.progress = progress);
            let wake = self.core.next_wake();
            tokio::select! {
                Some(done) = self.requests.next(), if !self.requests.is_empty() => {
                    // Take in every other response that is already here before deciding new
                    // sends (see `Core::input`).
                    let mut out = Vec::new();
                    self.finished(done, &mut out);
                    while let Some(Some(done)) = self.requests.next().now_or_never() {
                        self.finished(done, &mut out);
                    }
                    self.core.step(Instant::now(), self.strategy.as_mut(), &mut out);
                    queue.extend(out);
                }
                (seq, result) = next_save(&mut self.saving), if self.saving.is_some() => {
                    self.saving = None;
                    self.feed(Input::Persisted { seq, result }, &mut queue);
                }
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    self.feed(Input::Tick, &mut queue);
                }
                changed = self.control.changed(), if self.control_open => {
                    if changed.is_err() {
                        self.control_open = false;
                    }
                    self.sync_control(&mut queue);
                }
            }
        }
    }

    fn feed(&mut self, input: Input, queue: &mut VecDeque<Action>) {
        let mut out = Vec::new();
        self.core
            .handle(Instant::now(), input, self.strategy.as_mut(), &mut out);
        queue.extend(out);
    }

    /// Takes in a finished request, without starting anything new.
    fn finished(&mut self, done: Option<Finished>, out: &mut Vec<Action>) {
        // `None`: an aborted request.
        let Some((id, started, result)) = done else {
            return;
        };
        self.aborts.remove(&id);
        self.task.shared.with(|s| s.sent.remove(&id));
        let input = Input::Reply {
            id,
            started,
            result,
        };
        self.core
            .input(Instant::now(), input, self.strategy.as_mut(), out);
    }

    /// Tells the core what the handle asks for now (a resume of an upload that is not
    /// paused, or a repeated pause, changes nothing there).
    fn sync_control(&mut self, queue: &mut VecDeque<Action>) {
        let input = match *self.control.borrow_and_update() {
            Control::Cancel => Input::Cancel,
            Control::Pause(mode) => Input::Pause(mode),
            Control::Run => Input::Resume,
        };
        self.feed(input, queue);
    }

    /// Carries out one action; the upload's result once it is done.
    async fn perform(
        &mut self,
        action: Action,
        queue: &mut VecDeque<Action>,
    ) -> Option<Result<UploadReport>> {
        let protocol = || Arc::clone(&self.task.protocol);
        match action {
            Action::Init {
                id,
                request,
                deadline,
            } => {
                let protocol = protocol();
                self.request(id, deadline, async move {
                    protocol.init(&request).await.map(Reply::Init)
                });
            }
            Action::Append {
                id,
                media_id,
                segment,
                attempt,
                deadline,
                stall,
            } => {
                let protocol = protocol();
                let sent = Arc::new(AtomicU64::new(0));
                self.task
                    .shared
                    .with(|s| s.sent.insert(id, Arc::clone(&sent)));
                let source = self.task.source.clone();
                let span = tracing::debug_span!(
                    "append",
                    segment = segment.index,
                    attempt,
                    bytes = segment.len
                );
                let fut = async move {
                    let data = match source.read(segment.offset, segment.len).await {
                        Ok(d) => d,
                        Err(e) => return (Instant::now(), Err(Failure::Read(e))),
                    };
                    let started = Instant::now();
                    let req = AppendRequest {
                        media_id,
                        segment_index: segment.index,
                        data: data.clone(),
                        sent: Some(Arc::clone(&sent)),
                    };
                    let result =
                        guarded(protocol.append(req), deadline, stall, &sent, segment.len).await;
                    // The request is over and has dropped its body: the buffer can serve the
                    // next segment (kept only if nothing else still holds it).
                    source.recycle(data);
                    (started, result.map(Reply::Append))
                }
                .instrument(span);
                self.spawn(id, fut);
            }
            Action::Finalize {
                id,
                media_id,
                deadline,
            } => {
                let protocol = protocol();
                self.request(id, deadline, async move {
                    protocol.finalize(&media_id).await.map(Reply::Status)
                });
            }
            Action::Status {
                id,
                media_id,
                deadline,
            } => {
                let protocol = protocol();
                self.request(id, deadline, async move {
                    protocol.status(&media_id).await.map(Reply::Status)
                });
            }
            Action::Abort { id } => {
                if let Some(h) = self.aborts.remove(&id) {
                    h.abort();
                }
                self.task.shared.with(|s| s.sent.remove(&id));
            }
            Action::Persist { seq, checkpoint } => {
                if let Some(store) = self.task.config.checkpoint_store.clone() {
                    self.saving = Some(
                        async move {
                            let key = checkpoint.key();
                            (seq, store.save(&key, &checkpoint).await)
                        }
                        .boxed(),
                    );
                }
            }
            Action::Remove { keys } => {
                let mut errors = Vec::new();
                if let Some(store) = self.task.config.checkpoint_store.clone() {
                    for key in &keys {
                        if let Err(e) = store.remove(key).await {
                            errors.push(e);
                        }
                    }
                }
                let mut out = Vec::new();
                self.core.handle(
                    Instant::now(),
                    Input::Removed { errors },
                    self.strategy.as_mut(),
                    &mut out,
                );
                for a in out.into_iter().rev() {
                    queue.push_front(a);
                }
            }
            Action::Emit(event) => {
                let event = match event {
                    UploadEvent::Progress(p) => UploadEvent::Progress(self.task.shared.live(p)),
                    other => other,
                };
                // The receiver may be gone (handle dropped while the task is being aborted).
                let _ = self.task.events.send(event);
            }
            Action::Done(result) => {
                let progress = self.core.progress();
                let cancelled = self.core.take_cancel_outcome();
                self.task.shared.with(|s| {
                    s.progress = progress;
                    s.sent.clear();
                    s.cancelled = cancelled;
                });
                return Some(result);
            }
        }
        None
    }

    /// Runs an INIT, FINALIZE or STATUS under its deadline.
    fn request(
        &mut self,
        id: ReqId,
        deadline: Duration,
        call: impl Future<Output = Result<Reply>> + Send + 'static,
    ) {
        let fut = async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(deadline, call).await {
                Ok(r) => r.map_err(Failure::Request),
                Err(_) => Err(Failure::Deadline(deadline)),
            };
            (started, result)
        };
        self.spawn(id, fut);
    }

    /// Adds a request future, abortable by id.
    fn spawn(
        &mut self,
        id: ReqId,
        fut: impl Future<Output = (Instant, std::result::Result<Reply, Failure>)> + Send + 'static,
    ) {
        let (fut, handle) = abortable(fut);
        self.aborts.insert(id, handle);
        self.requests.push(
            fut.map(move |r| r.ok().map(|(started, result)| (id, started, result)))
                .boxed(),
        );
    }
}

/// The end of the checkpoint write in progress (never, if there is none). Cancel-safe: the
/// write stays in `saving` if this future is dropped.
async fn next_save(
    saving: &mut Option<BoxFuture<'static, (u64, Result<()>)>>,
) -> (u64, Result<()>) {
    match saving.as_mut() {
        Some(f) => f.await,
        None => futures::future::pending().await,
    }
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
