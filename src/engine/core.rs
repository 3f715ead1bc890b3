//! The upload core: all of one upload's state and every decision about it, with no I/O.
//!
//! [`Core`] is a state machine. Its driver feeds it [`Input`]s (a request's reply or failure,
//! a checkpoint written or not, the time passing, pause, resume, cancel) and carries out the
//! [`Action`]s it returns (send INIT, persist the checkpoint, send APPEND `k` with its
//! deadline, abort a request, FINALIZE, STATUS, emit an event, finish). It reads no clock:
//! every input comes with `now`, and [`Core::next_wake`] says when it wants to be woken. The
//! scheduling [`Strategy`] is lent to every call, so the core holds no policy of its own
//! beyond the protocol's rules.
//!
//! Two drivers run the very same core: the tokio engine (`engine::upload`), which performs
//! the actions over a real [`UploadProtocol`](crate::protocol::UploadProtocol) and
//! [`CheckpointStore`](crate::checkpoint::CheckpointStore), and the simulator
//! (`scheduler::sim`), which answers them from a model link in virtual time. So the retry,
//! backoff, hold and write-ahead rules exist once.
//!
//! # The rules it keeps
//!
//! - **Write-ahead plan.** With a checkpoint store, a segment is sent for the first time
//!   only once a checkpoint that records it (index, offset, length) has been written. If
//!   the store fails, nothing new is sent: the core retries the store with the transient
//!   backoff, says so ([`UploadEvent::CheckpointFailed`]), keeps re-sending segments that
//!   are already on record, and gives up after
//!   [`RetryPolicy::max_store_outage`](super::RetryPolicy::max_store_outage) with the last
//!   written checkpoint, which is consistent. A resumed upload sends every recorded segment
//!   with its recorded index, offset and length, so the server never sees one index with
//!   two lengths.
//! - **One retry path** for INIT, APPEND, FINALIZE and STATUS: attempts per request, the
//!   upload-wide budget, full-jitter backoff, a `Retry-After` that holds every request, and
//!   an unreachable server that is probed by one request at a time (see
//!   [`RetryPolicy`](super::RetryPolicy)).
//! - **A media id that is gone.** A resumed upload whose media id the server no longer
//!   knows ([`ErrorKind::MediaGone`]) starts over with a new INIT, once. A resumed FINALIZE
//!   that fails because the segments do not add up ([`ErrorKind::SegmentMismatch`]) or the
//!   id is gone is checked with STATUS first: media the server already has (an earlier run
//!   finalized it) completes the upload; otherwise it starts over and says why.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::config::{EngineConfig, MAX_IN_FLIGHT_LIMIT, PollingConfig};
use super::events::{ControlRequest, Progress, UploadEvent};
use super::plan::{Plan, Segment, check_category_limit};
use super::report::{AttemptOutcome, AttemptRecord, Finished, Recorder, UploadReport};
use super::retry::{Retrier, RetryPolicy};
use super::{CancelOutcome, MediaSpec, PauseMode};
use crate::checkpoint::{Checkpoint, CheckpointKey, SourceIdentity, checkpoint_error};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{
    AppendResponse, InitRequest, InitResponse, MediaId, MediaStatus, ProcessingState,
    ProtocolTarget,
};
use crate::scheduler::{Observation, Outcome, PlanContext, Strategy};

/// Identifies one request attempt the core asked for.
pub(crate) type ReqId = u64;

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send INIT under `deadline`.
    Init {
        id: ReqId,
        request: InitRequest,
        deadline: Duration,
    },
    /// Read `segment` from the source and send it as an APPEND under `deadline`, abandoning
    /// it if it sends nothing for `stall`.
    Append {
        id: ReqId,
        media_id: MediaId,
        segment: Segment,
        attempt: u32,
        deadline: Duration,
        stall: Option<Duration>,
    },
    /// Send FINALIZE under `deadline`.
    Finalize {
        id: ReqId,
        media_id: MediaId,
        deadline: Duration,
    },
    /// Send STATUS under `deadline`.
    Status {
        id: ReqId,
        media_id: MediaId,
        deadline: Duration,
    },
    /// Drop request `id` (its reply, if one still comes, is ignored).
    Abort { id: ReqId },
    /// Write `checkpoint` to the store, then report [`Input::Persisted`] with `seq`.
    Persist {
        seq: u64,
        checkpoint: Box<Checkpoint>,
    },
    /// Remove these checkpoints from the store, then report [`Input::Removed`].
    Remove { keys: Vec<CheckpointKey> },
    /// Tell the caller.
    Emit(UploadEvent),
    /// The upload ended; nothing more will be asked.
    Done(Result<UploadReport>),
}

/// A successful reply.
#[derive(Debug)]
pub(crate) enum Reply {
    Init(InitResponse),
    Append(AppendResponse),
    /// FINALIZE's or STATUS's answer.
    Status(MediaStatus),
}

/// Why a request did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The segment could not be read; nothing was sent.
    Read(Error),
    /// The request ran past its deadline.
    Deadline(Duration),
    /// The request sent nothing for the stall time.
    Stalled(Duration),
    /// The protocol returned an error.
    Request(Error),
}

/// What happened.
#[derive(Debug)]
pub(crate) enum Input {
    /// The driver is ready: start.
    Start,
    /// Time passed (a wake-up the core asked for, or any other reason).
    Tick,
    /// Request `id`, started at `started`, ended.
    Reply {
        id: ReqId,
        started: Instant,
        result: std::result::Result<Reply, Failure>,
    },
    /// The checkpoint of [`Action::Persist`] `seq` was written, or not.
    Persisted { seq: u64, result: Result<()> },
    /// [`Action::Remove`] ended with these failures.
    Removed { errors: Vec<Error> },
    /// The caller paused the upload.
    Pause(PauseMode),
    /// The caller resumed it.
    Resume,
    /// The caller cancelled it.
    Cancel,
}

/// The numbers of [`EngineConfig`] the core needs.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    pub(crate) retry: RetryPolicy,
    pub(crate) polling: PollingConfig,
    pub(crate) control_timeout: Duration,
    pub(crate) enforce_category_limits: bool,
    pub(crate) trace_requests: bool,
    /// Whether checkpoints are written (and so whether the write-ahead rule applies).
    pub(crate) persist: bool,
    /// Record every planning decision ([`Core::plan_log`]), for the simulator.
    pub(crate) log_plans: bool,
}

impl CoreConfig {
    pub(crate) fn of(config: &EngineConfig) -> Self {
        CoreConfig {
            retry: config.retry.clone(),
            polling: config.polling,
            control_timeout: config.control_timeout,
            enforce_category_limits: config.enforce_category_limits,
            trace_requests: config.trace_requests,
            persist: config.checkpoint_store.is_some(),
            log_plans: false,
        }
    }
}

/// What one upload is, for [`Core::new`].
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) total_bytes: u64,
    pub(crate) max_chunk: u64,
    pub(crate) spec: MediaSpec,
    pub(crate) target: ProtocolTarget,
    /// The source's identity, for checkpoints (`None`: no checkpoint can be made).
    pub(crate) identity: Option<SourceIdentity>,
    /// The checkpoint to carry on.
    pub(crate) resume: Option<Checkpoint>,
}

/// One planning decision, when [`CoreConfig::log_plans`] is set (read by the simulator).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct PlanRecord {
    pub(crate) at: Instant,
    pub(crate) ctx: PlanContext,
    /// The strategy's raw answer.
    pub(crate) answer: u64,
    /// The size after the engine's clamp.
    pub(crate) size: u64,
    /// APPEND attempts observed before this decision.
    pub(crate) observations: usize,
}

/// One request the core can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Init,
    Append(Segment),
    Finalize,
    Status,
}

impl Job {
    fn control(self) -> Option<ControlRequest> {
        match self {
            Job::Init => Some(ControlRequest::Init),
            Job::Finalize => Some(ControlRequest::Finalize),
            Job::Status => Some(ControlRequest::Status),
            Job::Append(_) => None,
        }
    }
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct Flight {
    job: Job,
    attempt: u32,
    launched: Instant,
    /// APPENDs in flight when it started, itself included.
    in_flight: usize,
    app_limited: bool,
}

/// A request waiting for its retry backoff to end.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    job: Job,
    attempt: u32,
    ready_at: Instant,
}

/// A recorded segment to send before new ones: left unacknowledged by an earlier run, or
/// abandoned by a pause.
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

/// The checkpoint store's state.
#[derive(Debug, Default)]
struct Store {
    /// The state changed since the last write started.
    dirty: bool,
    /// The write in progress: its sequence number, the session epoch and plan length it
    /// records.
    saving: Option<(u64, u64, usize)>,
    next_seq: u64,
    /// Plan segments of the current session that a written checkpoint records.
    durable: usize,
    /// Since when every write failed, how many did, and when to try again.
    failing: Option<(Instant, u32, Instant)>,
    /// Stop writing (FINALIZE succeeded, or the upload ended).
    closed: bool,
}

/// Where the upload is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Not started.
    Idle,
    /// Opening a session.
    Init,
    /// Sending segments.
    Appends,
    /// Every segment acknowledged; the checkpoint is brought up to date before FINALIZE.
    Flush,
    Finalize,
    /// A resumed FINALIZE failed with this error; STATUS tells whether the server has the
    /// media.
    Verify(String),
    /// Polling STATUS until processing ends.
    Poll {
        deadline: Instant,
        next_at: Instant,
    },
    /// Cancelled; the checkpoint is being written.
    Cancelling,
    Done,
}

/// One upload's state machine. See the [module docs](self).
pub(crate) struct Core {
    cfg: CoreConfig,
    total: u64,
    max_chunk: u64,
    spec: MediaSpec,
    target: ProtocolTarget,
    identity: Option<SourceIdentity>,
    /// The wall clock at `t0`: expiry times are wall-clock times.
    wall0: SystemTime,
    t0: Instant,
    retrier: Retrier,
    rec: Recorder,
    plan: Plan,
    session: Option<Session>,
    /// Bumped by every new session, so a late checkpoint write of an old one is not taken
    /// for the new one's.
    epoch: u64,
    phase: Phase,
    flights: HashMap<ReqId, Flight>,
    waiting: Vec<Waiting>,
    pending: VecDeque<Pending>,
    /// Planned segments never sent yet, in index order.
    fresh: VecDeque<Segment>,
    hold_until: Option<Instant>,
    next_id: ReqId,
    /// Per segment, its attempts that failed to reach the server.
    unreached: HashMap<u32, u32>,
    /// Of the current control request, attempts that failed to reach the server.
    control_unreached: u32,
    paused: Option<PauseMode>,
    store: Store,
    old_keys: Vec<CheckpointKey>,
    resumed: bool,
    resumed_segments: u32,
    restarted: bool,
    finalized: bool,
    progress: Progress,
    observations: usize,
    plan_log: Vec<PlanRecord>,
    cancel_outcome: Option<CancelOutcome>,
    /// The checkpoint to carry on, until [`Input::Start`].
    restore: Option<Checkpoint>,
    /// When the strategy's hold on new APPENDs ends, if it holds them.
    strategy_wake: Option<Instant>,
    /// The latest `now` seen: what was due by then has been acted on.
    last_now: Instant,
    /// When the server last answered (or the upload started or was resumed from a pause),
    /// or when the wait it asked for ends.
    last_progress: Instant,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("phase", &self.phase)
            .field("flights", &self.flights.len())
            .field("planned", &self.plan.segments().len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core for `upload`, checked before any request: the spec, the category limit, the
    /// segment budget and, when resuming, the checkpoint.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a source that cannot be uploaded,
    /// [`ErrorKind::Checkpoint`] for a checkpoint that cannot be carried on.
    pub(crate) fn new(
        cfg: CoreConfig,
        upload: Upload,
        strategy: &mut dyn Strategy,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Core> {
        let Upload {
            total_bytes,
            max_chunk,
            spec,
            target,
            identity,
            resume,
        } = upload;
        spec.validate()?;
        if cfg.enforce_category_limits {
            check_category_limit(total_bytes, spec.category)?;
        }
        let plan = Plan::new(total_bytes, max_chunk)?;
        let mut core = Core {
            retrier: Retrier::new(&cfg.retry),
            rec: Recorder::new(now, cfg.trace_requests),
            cfg,
            total: total_bytes,
            max_chunk,
            spec,
            target,
            identity,
            wall0: wall,
            t0: now,
            plan,
            session: None,
            epoch: 0,
            phase: Phase::Idle,
            flights: HashMap::new(),
            waiting: Vec::new(),
            pending: VecDeque::new(),
            fresh: VecDeque::new(),
            hold_until: None,
            next_id: 0,
            unreached: HashMap::new(),
            control_unreached: 0,
            paused: None,
            store: Store::default(),
            old_keys: Vec::new(),
            resumed: false,
            resumed_segments: 0,
            restarted: false,
            finalized: false,
            progress: Progress {
                total_bytes,
                ..Progress::default()
            },
            observations: 0,
            plan_log: Vec::new(),
            cancel_outcome: None,
            restore: None,
            strategy_wake: None,
            last_now: now,
            last_progress: now,
        };
        if let Some(cp) = resume {
            core.check_checkpoint(&cp)?;
            if let Some(state) = &cp.strategy_state {
                strategy.import_state(state);
            }
            core.restore = Some(cp);
        }
        Ok(core)
    }

    /// The progress counters (without the live bytes of the requests in flight, which only
    /// the driver sees).
    pub(crate) fn progress(&self) -> Progress {
        self.progress
    }

    /// When the core wants an [`Input::Tick`] if nothing else happens first.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        // What was due by the last step was acted on, or waits for a reply (a retry with no
        // free slot): only later instants need a wake-up.
        let last = self.last_now;
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| {
            if t > last {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        for w in &self.waiting {
            at(w.ready_at);
        }
        if let Some(h) = self.hold_until {
            at(h);
        }
        if let Some((_, _, retry_at)) = self.store.failing {
            at(retry_at);
        }
        if let Phase::Poll { next_at, .. } = self.phase {
            at(next_at);
        }
        if let Some(t) = self.strategy_wake {
            at(t);
        }
        if let Some(t) = self.stall_deadline() {
            at(t);
        }
        wake
    }

    /// When the upload stops for lack of progress (see `RetryPolicy::max_no_progress`), in
    /// the phases that wait on requests and while not paused.
    fn stall_deadline(&self) -> Option<Instant> {
        let waits_on_requests = matches!(
            self.phase,
            Phase::Init | Phase::Appends | Phase::Flush | Phase::Finalize | Phase::Verify(_)
        );
        (waits_on_requests && self.paused.is_none())
            .then(|| self.last_progress + self.cfg.retry.max_no_progress)
    }

    /// What a cancel left, once the core is done after [`Input::Cancel`].
    pub(crate) fn take_cancel_outcome(&mut self) -> Option<CancelOutcome> {
        self.cancel_outcome.take()
    }

    /// Every planning decision, when [`CoreConfig::log_plans`] is set.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn plan_log(&self) -> &[PlanRecord] {
        &self.plan_log
    }

    /// Retries spent so far (APPEND and control requests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn retries_spent(&self) -> u32 {
        self.retrier.spent()
    }

    /// Segments planned so far.
    pub(crate) fn segments_planned(&self) -> u32 {
        u32::try_from(self.plan.segments().len()).unwrap_or(u32::MAX)
    }

    /// Handles `input` at `now`, then starts whatever may start: [`input`](Core::input)
    /// followed by [`step`](Core::step).
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        input: Input,
        strategy: &mut dyn Strategy,
        out: &mut Vec<Action>,
    ) {
        self.input(now, input, strategy, out);
        self.step(now, strategy, out);
    }

    /// Takes in what happened at `now`, without starting anything new yet. A driver that
    /// has several inputs at one instant (responses that arrived together) feeds them all
    /// before one [`step`](Core::step): a 429 that arrived with a success must hold the send
    /// the success would otherwise start at once.
    pub(crate) fn input(
        &mut self,
        now: Instant,
        input: Input,
        strategy: &mut dyn Strategy,
        out: &mut Vec<Action>,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        self.last_now = self.last_now.max(now);
        let result = match input {
            Input::Start if self.phase == Phase::Idle => {
                self.start(now, out);
                Ok(())
            }
            Input::Start | Input::Tick => Ok(()),
            Input::Reply {
                id,
                started,
                result,
            } => self.on_reply(now, id, started, result, strategy, out),
            Input::Persisted { seq, result } => self.on_persisted(now, seq, result, out),
            Input::Removed { errors } => {
                for e in errors {
                    self.checkpoint_failed(&e, out);
                }
                Ok(())
            }
            Input::Pause(mode) => {
                self.pause(now, mode, out);
                Ok(())
            }
            Input::Resume => {
                self.resume(out);
                Ok(())
            }
            Input::Cancel => {
                self.cancel(out);
                Ok(())
            }
        };
        if let Err(e) = result {
            self.fail(e, out);
        }
    }

    /// Starts whatever may start at `now` (requests, a checkpoint write), or ends the upload.
    pub(crate) fn step(
        &mut self,
        now: Instant,
        strategy: &mut dyn Strategy,
        out: &mut Vec<Action>,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        self.last_now = self.last_now.max(now);
        if let Err(e) = self.advance(now, strategy, out) {
            self.fail(e, out);
        }
    }
}

impl Core {
    fn wall(&self, now: Instant) -> SystemTime {
        let since = now.saturating_duration_since(self.t0);
        self.wall0.checked_add(since).unwrap_or(self.wall0)
    }

    fn emit(out: &mut Vec<Action>, event: UploadEvent) {
        out.push(Action::Emit(event));
    }

    fn emit_progress(&self, out: &mut Vec<Action>) {
        Self::emit(out, UploadEvent::Progress(self.progress));
    }

    /// APPENDs in flight.
    fn appends_in_flight(&self) -> usize {
        self.flights
            .values()
            .filter(|f| matches!(f.job, Job::Append(_)))
            .count()
    }

    /// Checks that a checkpoint belongs to this source and target and fits the protocol.
    fn check_checkpoint(&mut self, cp: &Checkpoint) -> Result<()> {
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
        if cp.plan.max_chunk() > self.max_chunk {
            return Err(checkpoint_error(format!(
                "the checkpoint planned segments of up to {} bytes, but the protocol now takes \
                 at most {} per APPEND; start a new upload or restore the limit",
                cp.plan.max_chunk(),
                self.max_chunk
            )));
        }
        let old_key = cp.key();
        let own = self
            .identity
            .as_ref()
            .map(|id| CheckpointKey::for_upload(id, &self.target));
        if own != Some(old_key.clone()) {
            self.old_keys.push(old_key);
        }
        Ok(())
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        Self::emit(
            out,
            UploadEvent::Started {
                total_bytes: self.total,
            },
        );
        self.phase = Phase::Init;
        if let Some(cp) = self.restore.take() {
            self.carry_on(cp, now, out);
        }
    }

    /// Takes over the session of a checked checkpoint; an expired one only leaves a note,
    /// and INIT starts over.
    fn carry_on(&mut self, cp: Checkpoint, now: Instant, out: &mut Vec<Action>) {
        if cp.is_expired(self.wall(now)) {
            let reason = format!(
                "media id {} expired (or expires within a minute) before the upload could \
                 carry on",
                cp.media_id
            );
            tracing::info!(media_id = %cp.media_id, "checkpoint expired; starting over");
            Self::emit(
                out,
                UploadEvent::Restarted {
                    previous_media_id: cp.media_id,
                    reason,
                },
            );
            self.restarted = true;
            return;
        }
        let pending = cp.pending_segments();
        let bytes_acked = cp.acked_bytes();
        let segments_acked = u32::try_from(cp.acked.len()).unwrap_or(u32::MAX);
        tracing::Span::current().record("media_id", cp.media_id.as_str());
        tracing::info!(
            media_id = %cp.media_id,
            segments_acked,
            pending = pending.len(),
            "carrying on from a checkpoint"
        );
        Self::emit(
            out,
            UploadEvent::ResumedFromCheckpoint {
                media_id: cp.media_id.clone(),
                segments_acked,
                bytes_acked,
                segments_pending: u32::try_from(pending.len()).unwrap_or(u32::MAX),
            },
        );
        self.progress.bytes_acked = bytes_acked;
        self.progress.segments_done = segments_acked;
        self.progress.segments_planned = u32::try_from(cp.plan.segments().len()).unwrap_or(0);
        self.pending = pending
            .into_iter()
            .map(|segment| Pending {
                segment,
                attempt: 1,
                resend: false,
            })
            .collect();
        self.resumed_segments = segments_acked;
        self.resumed = true;
        self.session = Some(Session {
            media_id: cp.media_id,
            media_key: cp.media_key,
            expires_at: cp.expires_at,
            acked: cp.acked,
        });
        self.plan = cp.plan;
        // Every planned segment is on record in the checkpoint just read; saving again puts
        // it under this upload's key with the strategy's current state.
        self.store.durable = self.plan.segments().len();
        self.store.dirty = true;
        self.phase = Phase::Appends;
    }

    /// Gives up the resumed session: every request is dropped, a new INIT and a new plan
    /// follow, once.
    fn restart(&mut self, reason: String, out: &mut Vec<Action>) -> Result<()> {
        for id in self.flights.keys() {
            out.push(Action::Abort { id: *id });
        }
        self.flights.clear();
        self.waiting.clear();
        self.pending.clear();
        self.fresh.clear();
        self.unreached.clear();
        self.plan = Plan::new(self.total, self.max_chunk)?;
        if let Some(old) = self.session.take() {
            tracing::info!(media_id = %old.media_id, %reason, "starting over");
            Self::emit(
                out,
                UploadEvent::Restarted {
                    previous_media_id: old.media_id,
                    reason,
                },
            );
        }
        self.resumed = false;
        self.restarted = true;
        self.resumed_segments = 0;
        self.finalized = false;
        self.epoch += 1;
        self.store.durable = 0;
        self.store.dirty = false;
        self.store.closed = false;
        self.progress = Progress {
            total_bytes: self.total,
            ..Progress::default()
        };
        self.phase = Phase::Init;
        self.emit_progress(out);
        Ok(())
    }

    /// The checkpoint of the upload as it stands, once INIT returned and until FINALIZE did.
    fn checkpoint(&self, now: Instant, strategy: &dyn Strategy) -> Option<Checkpoint> {
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
            spec: self.spec.clone(),
            plan: self.plan.clone(),
            acked: session.acked.clone(),
            strategy_state: strategy.export_state(),
            saved_at: self.wall(now),
        })
    }

    fn checkpoint_failed(&self, e: &Error, out: &mut Vec<Action>) {
        tracing::warn!(error = %e, "checkpoint store failed");
        Self::emit(
            out,
            UploadEvent::CheckpointFailed {
                error: e.to_string(),
            },
        );
    }

    /// Starts a checkpoint write if the state changed and none is running.
    fn maybe_save(&mut self, now: Instant, strategy: &dyn Strategy, out: &mut Vec<Action>) {
        let phase_saves = matches!(
            self.phase,
            Phase::Init | Phase::Appends | Phase::Flush | Phase::Cancelling
        );
        if !self.cfg.persist
            || !phase_saves
            || self.store.closed
            || self.store.saving.is_some()
            || !self.store.dirty
            || self.store.failing.is_some_and(|(_, _, at)| now < at)
        {
            return;
        }
        self.store.dirty = false;
        let Some(cp) = self.checkpoint(now, strategy) else {
            return;
        };
        let seq = self.store.next_seq;
        self.store.next_seq += 1;
        self.store.saving = Some((seq, self.epoch, cp.plan.segments().len()));
        out.push(Action::Persist {
            seq,
            checkpoint: Box::new(cp),
        });
    }

    fn on_persisted(
        &mut self,
        now: Instant,
        seq: u64,
        result: Result<()>,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let Some((saving, epoch, planned)) = self.store.saving else {
            return Ok(());
        };
        if saving != seq {
            return Ok(());
        }
        self.store.saving = None;
        match result {
            Ok(()) => {
                if epoch == self.epoch {
                    self.store.durable = self.store.durable.max(planned);
                }
                self.store.failing = None;
                let acked = self.session.as_ref().map_or(0, |s| s.acked.len());
                Self::emit(
                    out,
                    UploadEvent::CheckpointSaved {
                        segments_acked: u32::try_from(acked).unwrap_or(u32::MAX),
                    },
                );
                Ok(())
            }
            Err(e) => {
                self.checkpoint_failed(&e, out);
                self.store.dirty = true;
                let (since, failures) = self.store.failing.map_or((now, 0), |(s, n, _)| (s, n));
                let down = now.saturating_duration_since(since);
                let max = self.cfg.retry.max_store_outage;
                let blocking = matches!(self.phase, Phase::Init | Phase::Appends);
                if blocking && down >= max {
                    return Err(checkpoint_error(format!(
                        "the checkpoint store has failed for {down:.1?} (retry \
                         max_store_outage is {max:?}); nothing was sent that the last \
                         checkpoint written does not record: fix the store (disk space, \
                         permissions) and run the upload again to resume it"
                    ))
                    .with_source(e));
                }
                let delay = self.retrier.backoff.delay(failures, false, None);
                self.store.failing = Some((since, failures + 1, now + delay));
                Ok(())
            }
        }
    }

    fn pause(&mut self, now: Instant, mode: PauseMode, out: &mut Vec<Action>) {
        if self.paused == Some(mode) || self.phase == Phase::Cancelling {
            return;
        }
        self.paused = Some(mode);
        tracing::info!(?mode, "upload paused");
        match mode {
            PauseMode::Abandon => self.abandon(now, out),
            // Whatever drains now runs with capacity left unused on purpose.
            PauseMode::Drain => {
                for f in self.flights.values_mut() {
                    f.app_limited = true;
                }
            }
        }
        Self::emit(out, UploadEvent::Paused { mode });
        self.emit_progress(out);
    }

    fn resume(&mut self, out: &mut Vec<Action>) {
        if self.paused.take().is_none() {
            return;
        }
        tracing::info!("upload resumed");
        // Time spent paused is not time the server was found unreachable, nor time without
        // progress: the next failure to connect starts a new outage.
        self.retrier.end_outage();
        self.last_progress = self.last_now;
        Self::emit(out, UploadEvent::Resumed);
    }

    /// Drops every APPEND in flight; their segments are sent again, first, after the resume.
    fn abandon(&mut self, now: Instant, out: &mut Vec<Action>) {
        let mut dropped: Vec<(ReqId, Flight, Segment)> = self
            .flights
            .iter()
            .filter_map(|(id, f)| match f.job {
                Job::Append(segment) => Some((*id, *f, segment)),
                _ => None,
            })
            .collect();
        dropped.sort_by_key(|(_, _, segment)| segment.index);
        for (id, f, segment) in &dropped {
            self.flights.remove(id);
            out.push(Action::Abort { id: *id });
            let record = AttemptRecord {
                segment: segment.index,
                attempt: f.attempt,
                bytes: segment.len,
                start_ms: self.rec.ms_since_start(f.launched),
                end_ms: self.rec.ms_since_start(now),
                outcome: AttemptOutcome::Abandoned,
                in_flight: f.in_flight,
                app_limited: f.app_limited,
            };
            self.rec
                .attempt_ended(record, now.saturating_duration_since(f.launched));
        }
        for (_, f, segment) in dropped.into_iter().rev() {
            self.pending.push_front(Pending {
                segment,
                attempt: f.attempt,
                resend: true,
            });
        }
        self.progress.in_flight = self.appends_in_flight();
    }

    fn cancel(&mut self, out: &mut Vec<Action>) {
        for id in self.flights.keys() {
            out.push(Action::Abort { id: *id });
        }
        self.flights.clear();
        self.progress.in_flight = 0;
        self.store.dirty = self.cfg.persist;
        // A failing store gets one more try, not a wait.
        self.store.failing = None;
        self.phase = Phase::Cancelling;
    }

    /// Ends a cancel once the checkpoint is written (or failed to be).
    fn finish_cancel(&mut self, now: Instant, strategy: &dyn Strategy, out: &mut Vec<Action>) {
        let media_id = self.session.as_ref().map(|s| s.media_id.clone());
        let usable_until = self.session.as_ref().and_then(|s| s.expires_at);
        tracing::info!(media_id = ?media_id, "upload cancelled");
        Self::emit(
            out,
            UploadEvent::Cancelled {
                media_id: media_id.clone(),
                usable_until,
            },
        );
        self.cancel_outcome = Some(CancelOutcome {
            media_id,
            usable_until,
            checkpoint: self.checkpoint(now, strategy),
            completed: None,
        });
        self.phase = Phase::Done;
        out.push(Action::Done(Err(Error::new(
            ErrorKind::Cancelled,
            "the upload was cancelled",
        ))));
    }

    /// Ends the upload with `e` (the driver reports it as [`UploadEvent::Failed`]).
    fn fail(&mut self, e: Error, out: &mut Vec<Action>) {
        self.phase = Phase::Done;
        out.push(Action::Done(Err(e)));
    }

    /// The upload-wide retry limit, from the segments the upload is projected to have.
    fn budget_limit(&self) -> u32 {
        self.cfg.retry.budget(self.plan.projected_segments())
    }

    /// No request starts before `until` (a later hold already in place stays).
    fn hold(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }

    /// The hold on new requests at `now`, if one is still running.
    fn held(&self, now: Instant) -> Option<Instant> {
        self.hold_until.filter(|h| *h > now)
    }

    /// The one retry path: `job`'s attempt `attempt`, started at `started`, failed with
    /// `error`. The policy's rules ([`Retrier`]) decide whether and when it is tried again;
    /// here every request is held for a server's `Retry-After` or while the server cannot be
    /// reached, the retry is queued, and it is reported.
    fn retry(
        &mut self,
        job: Job,
        attempt: u32,
        error: Error,
        started: Instant,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let delay = if error.kind() == ErrorKind::Unreachable {
            // Nothing reached the server: no attempt and no budget is spent, and every
            // request waits for the next probe (see `RetryPolicy`).
            match job {
                Job::Append(s) => *self.unreached.entry(s.index).or_default() += 1,
                _ => self.control_unreached += 1,
            }
            if job.control().is_some() {
                self.rec.control_retries += 1;
            }
            let text = error.to_string();
            let u = self.retrier.unreachable(error, started, now)?;
            tracing::debug!(down = ?u.down, delay = ?u.delay, error = %text, "server unreachable; holding every request");
            Self::emit(
                out,
                UploadEvent::Unreachable {
                    down: u.down,
                    retry_in: u.delay,
                    gives_up_in: u.gives_up_in,
                    error: text,
                },
            );
            self.hold(now + u.delay);
            u.delay
        } else {
            self.retrier.reached(started, false);
            let expires = self.session.as_ref().and_then(|s| s.expires_at);
            if let Some(e) = self
                .retrier
                .too_long_a_wait(&error, self.wall(now), expires)
            {
                return Err(e.with_source(error));
            }
            if error.status().is_some() {
                // The server answered: it is alive. A wait it asks for is not a lack of
                // progress.
                self.last_progress = now + error.retry_after().unwrap_or_default();
            }
            if let Some(ra) = error.retry_after() {
                // Retry-After is a protocol rule, not a tuning choice: no request starts
                // before it ends, whatever the strategy says.
                self.hold(now + ra);
            }
            let unreached = match job {
                Job::Append(s) => self.unreached.get(&s.index).copied().unwrap_or(0),
                _ => self.control_unreached,
            };
            let counted = attempt.saturating_sub(unreached).max(1);
            let text = error.to_string();
            let limit = self.budget_limit();
            let delay = self
                .retrier
                .failed(error, attempt, counted, limit)
                .map_err(|e| match job {
                    Job::Append(s) if e.kind() == ErrorKind::RetryBudgetExhausted => {
                        e.with_segment(s.index)
                    }
                    _ => e,
                })?;
            tracing::debug!(?job, attempt, ?delay, error = %text, "request failed; retrying");
            match (job, job.control()) {
                (Job::Append(s), _) => Self::emit(
                    out,
                    UploadEvent::Retry {
                        index: s.index,
                        attempt,
                        delay,
                        error: text,
                    },
                ),
                (_, Some(request)) => {
                    self.rec.control_retries += 1;
                    Self::emit(
                        out,
                        UploadEvent::ControlRetry {
                            request,
                            attempt,
                            delay,
                            error: text,
                        },
                    );
                }
                (_, None) => {}
            }
            delay
        };
        self.waiting.push(Waiting {
            job,
            attempt: attempt + 1,
            ready_at: now + delay,
        });
        Ok(())
    }
}

impl Core {
    fn on_reply(
        &mut self,
        now: Instant,
        id: ReqId,
        started: Instant,
        result: std::result::Result<Reply, Failure>,
        strategy: &mut dyn Strategy,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        // An aborted request's late reply is ignored.
        let Some(flight) = self.flights.remove(&id) else {
            return Ok(());
        };
        self.progress.in_flight = self.appends_in_flight();
        match flight.job {
            Job::Append(segment) => {
                let result = result.map(|r| match r {
                    Reply::Append(a) => a,
                    // A driver bug; an APPEND answer carries nothing else the core needs.
                    Reply::Init(_) | Reply::Status(_) => AppendResponse::default(),
                });
                self.on_append(now, flight, segment, started, result, strategy, out)
            }
            job => {
                let result = result.map_err(|f| match f {
                    Failure::Request(e) | Failure::Read(e) => e,
                    Failure::Deadline(d) | Failure::Stalled(d) => Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "{} took longer than its deadline of {d:?}",
                            job.control().map_or("a request", ControlRequest::name)
                        ),
                    ),
                });
                self.on_control(now, job, flight.attempt, started, result, out)
            }
        }
    }

    /// Handles a finished APPEND attempt: records it, tells the strategy, and marks the
    /// segment acknowledged, schedules a retry, or ends the upload.
    #[allow(clippy::too_many_arguments)]
    fn on_append(
        &mut self,
        now: Instant,
        flight: Flight,
        segment: Segment,
        started: Instant,
        result: std::result::Result<AppendResponse, Failure>,
        strategy: &mut dyn Strategy,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let index = segment.index;
        let error = match result {
            Ok(response) => {
                if let Some(session) = self.session.as_mut() {
                    session.acked.insert(index);
                    if let Some(at) = response.expires_at {
                        session.expires_at =
                            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(at));
                    }
                }
                self.store.dirty = self.cfg.persist;
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
            self.retrier.reached(started, error.is_none());
            // A request that never connected carried nothing: it says nothing of the link's
            // rate, latency or loss.
            strategy.observe(&Observation {
                segment_index: index,
                bytes: segment.len,
                started,
                finished: now,
                outcome,
                in_flight: flight.in_flight,
                app_limited: flight.app_limited,
            });
            self.observations += 1;
        }
        let latency = now.saturating_duration_since(started);
        let record = AttemptRecord {
            segment: index,
            attempt: flight.attempt,
            bytes: segment.len,
            start_ms: self.rec.ms_since_start(started),
            end_ms: self.rec.ms_since_start(now),
            outcome: outcome.into(),
            in_flight: flight.in_flight,
            app_limited: flight.app_limited,
        };
        self.rec.attempt_ended(record, latency);

        let Some((_, error)) = error else {
            tracing::debug!(
                segment = index,
                attempt = flight.attempt,
                ?latency,
                "append done"
            );
            self.progress.bytes_acked += segment.len;
            self.progress.segments_done += 1;
            Self::emit(
                out,
                UploadEvent::SegmentDone {
                    index,
                    len: segment.len,
                    latency,
                    attempt: flight.attempt,
                },
            );
            self.emit_progress(out);
            return Ok(());
        };
        let error = error.with_segment(index);
        if self.resumed && error.kind() == ErrorKind::MediaGone {
            let media_id = self.session.as_ref().map(|s| s.media_id.clone());
            let shown = media_id.map_or_else(String::new, |m| m.to_string());
            return self.restart(
                format!("the server no longer knows media id {shown}: {error}"),
                out,
            );
        }
        self.retry(
            Job::Append(segment),
            flight.attempt,
            error,
            started,
            now,
            out,
        )?;
        self.emit_progress(out);
        Ok(())
    }

    /// Handles a finished INIT, FINALIZE or STATUS.
    fn on_control(
        &mut self,
        now: Instant,
        job: Job,
        attempt: u32,
        started: Instant,
        result: std::result::Result<Reply, Error>,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let reply = match result {
            Ok(reply) => {
                self.retrier.reached(started, true);
                self.last_progress = now;
                reply
            }
            Err(e) => return self.control_failed(now, job, attempt, started, e, out),
        };
        match (job, reply) {
            (Job::Init, Reply::Init(init)) => {
                let media_id = init.media_id.clone();
                tracing::Span::current().record("media_id", media_id.as_str());
                tracing::debug!(media_id = %media_id, expires_after_secs = ?init.expires_after_secs, "initialized");
                Self::emit(
                    out,
                    UploadEvent::Initialized {
                        media_id: media_id.clone(),
                        media_key: init.media_key.clone(),
                        expires: init.expires_after_secs.map(Duration::from_secs),
                    },
                );
                let expires_at = init
                    .expires_after_secs
                    .and_then(|s| self.wall(now).checked_add(Duration::from_secs(s)));
                self.session = Some(Session {
                    media_id,
                    media_key: init.media_key,
                    expires_at,
                    acked: BTreeSet::new(),
                });
                self.epoch += 1;
                self.store.durable = 0;
                self.store.dirty = self.cfg.persist;
                self.phase = Phase::Appends;
            }
            (Job::Finalize, Reply::Status(status)) => {
                self.finalized(now, status, out)?;
            }
            (Job::Status, Reply::Status(status)) => {
                if let Phase::Verify(why) = &self.phase {
                    let known = status
                        .processing_info
                        .as_ref()
                        .is_some_and(|p| p.state != ProcessingState::Failed);
                    if !known {
                        let why = why.clone();
                        return self.restart(
                            format!(
                                "FINALIZE of the resumed upload failed ({why}) and STATUS does \
                                 not show the media being processed"
                            ),
                            out,
                        );
                    }
                    tracing::info!("a resumed FINALIZE failed, but the server has the media");
                    self.finalized(now, status, out)?;
                } else {
                    self.processing(now, status, out)?;
                }
            }
            (job, reply) => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("the driver answered {job:?} with {reply:?}"),
                ));
            }
        }
        Ok(())
    }

    fn control_failed(
        &mut self,
        now: Instant,
        job: Job,
        attempt: u32,
        started: Instant,
        error: Error,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let gone = matches!(
            error.kind(),
            ErrorKind::MediaGone | ErrorKind::SegmentMismatch
        );
        match (&self.phase, job) {
            (Phase::Finalize, Job::Finalize) if self.resumed && gone => {
                // The checkpoint may be older than what the server has (an earlier run
                // finalized the media, or lost it): ask before starting over.
                tracing::info!(error = %error, "resumed FINALIZE failed; checking STATUS");
                self.phase = Phase::Verify(error.to_string());
                return Ok(());
            }
            (Phase::Verify(why), Job::Status) if !error.is_retryable() => {
                let why = why.clone();
                return self.restart(
                    format!(
                        "FINALIZE of the resumed upload failed ({why}) and STATUS failed too \
                         ({error})"
                    ),
                    out,
                );
            }
            _ => {}
        }
        self.retry(job, attempt, error, started, now, out)
    }

    /// FINALIZE succeeded (or the server showed it had): the checkpoint has served its
    /// purpose, whatever processing makes of the media.
    fn finalized(
        &mut self,
        now: Instant,
        status: MediaStatus,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        self.finalized = true;
        self.store.closed = true;
        if self.cfg.persist {
            let mut keys = std::mem::take(&mut self.old_keys);
            if let Some(id) = &self.identity {
                keys.push(CheckpointKey::for_upload(id, &self.target));
            }
            out.push(Action::Remove { keys });
        }
        self.phase = Phase::Poll {
            deadline: now + self.cfg.polling.deadline,
            next_at: now,
        };
        self.processing(now, status, out)
    }

    /// Follows a FINALIZE or STATUS answer: done, failed, or the next STATUS.
    fn processing(
        &mut self,
        now: Instant,
        status: MediaStatus,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let Phase::Poll { deadline, .. } = self.phase else {
            return Ok(());
        };
        let Some(info) = status.processing_info.clone() else {
            return self.complete(now, status, None, out);
        };
        match info.state {
            ProcessingState::Succeeded => return self.complete(now, status, Some(info.state), out),
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
        if now >= deadline {
            return Err(Error::new(
                ErrorKind::ProcessingTimeout,
                format!(
                    "media {} was still {:?} after {:?}; raise the processing deadline or check \
                     the media later with STATUS",
                    status.media_id, info.state, self.cfg.polling.deadline
                ),
            ));
        }
        let wait = self.cfg.polling.wait_for(info.check_after_secs);
        tracing::debug!(state = ?info.state, ?wait, "processing; polling STATUS");
        Self::emit(
            out,
            UploadEvent::Processing {
                state: info.state,
                progress_percent: info.progress_percent,
                check_after: wait,
            },
        );
        self.phase = Phase::Poll {
            deadline,
            next_at: (now + wait).min(deadline),
        };
        Ok(())
    }

    fn complete(
        &mut self,
        now: Instant,
        status: MediaStatus,
        processing_state: Option<ProcessingState>,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        let session_key = self.session.as_ref().and_then(|s| s.media_key.clone());
        let media_key = status.media_key.or(session_key);
        let media_id = self
            .session
            .as_ref()
            .map_or_else(|| status.media_id.clone(), |s| s.media_id.clone());
        Self::emit(
            out,
            UploadEvent::Completed {
                media_id: media_id.clone(),
            },
        );
        let segments = self.plan.segments();
        let fin = Finished {
            media_id,
            media_key,
            total_bytes: self.total,
            segments: u32::try_from(segments.len()).unwrap_or(u32::MAX),
            processing_state,
            chunk_min: segments.iter().map(|s| s.len).min().unwrap_or(0),
            chunk_max: segments.iter().map(|s| s.len).max().unwrap_or(0),
            resumed_segments: self.resumed_segments,
            restarted: self.restarted,
        };
        let report = self.rec.finish(now, fin);
        self.phase = Phase::Done;
        out.push(Action::Done(Ok(report)));
        Ok(())
    }

    /// Starts whatever may start now.
    fn advance(
        &mut self,
        now: Instant,
        strategy: &mut dyn Strategy,
        out: &mut Vec<Action>,
    ) -> Result<()> {
        self.strategy_wake = None;
        if self.stall_deadline().is_some_and(|at| now >= at) {
            let quiet = now.saturating_duration_since(self.last_progress);
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the server has not answered for {quiet:.0?} (retry max_no_progress is \
                     {:?}): the server or the link does not answer; the upload is saved, run it \
                     again to carry it on",
                    self.cfg.retry.max_no_progress
                ),
            ));
        }
        loop {
            match self.phase.clone() {
                Phase::Idle | Phase::Done => return Ok(()),
                Phase::Init => {
                    if self.paused.is_none() {
                        self.launch_control(Job::Init, now, out);
                    }
                }
                Phase::Appends => {
                    self.fill(now, strategy, out);
                    let idle = self.flights.is_empty()
                        && self.waiting.is_empty()
                        && self.pending.is_empty()
                        && self.fresh.is_empty();
                    if idle && self.plan.is_complete() {
                        self.phase = Phase::Flush;
                        continue;
                    }
                    let held = self.held(now).is_some() || self.strategy_wake.is_some();
                    if idle && self.paused.is_none() && !held {
                        // Unreachable with a plan built by `Plan::new`; guards against a hang.
                        return Err(Error::new(
                            ErrorKind::InvalidInput,
                            "the segment plan ran out of segment indices before covering the \
                             source",
                        ));
                    }
                }
                Phase::Flush => {
                    self.maybe_save(now, strategy, out);
                    let settled = self.store.saving.is_none()
                        && (!self.store.dirty || self.store.failing.is_some());
                    if settled {
                        self.phase = Phase::Finalize;
                        Self::emit(out, UploadEvent::Finalizing);
                        continue;
                    }
                }
                Phase::Finalize => {
                    if self.paused.is_none() {
                        self.launch_control(Job::Finalize, now, out);
                    }
                }
                Phase::Verify(_) => self.launch_control(Job::Status, now, out),
                Phase::Poll { next_at, .. } => {
                    if now >= next_at {
                        self.launch_control(Job::Status, now, out);
                    }
                }
                Phase::Cancelling => {
                    self.maybe_save(now, strategy, out);
                    if self.store.saving.is_none() {
                        self.finish_cancel(now, strategy, out);
                    }
                    return Ok(());
                }
            }
            break;
        }
        self.maybe_save(now, strategy, out);
        Ok(())
    }

    /// Starts INIT, FINALIZE or STATUS unless one is in flight, its retry is not due, or
    /// requests are held.
    fn launch_control(&mut self, job: Job, now: Instant, out: &mut Vec<Action>) {
        if self.flights.values().any(|f| f.job == job) || self.held(now).is_some() {
            return;
        }
        let attempt = match self.waiting.iter().position(|w| w.job == job) {
            Some(i) if self.waiting[i].ready_at <= now => self.waiting.swap_remove(i).attempt,
            Some(_) => return,
            None => {
                self.control_unreached = 0;
                1
            }
        };
        let Some(media_id) = self.session.as_ref().map(|s| s.media_id.clone()) else {
            if job == Job::Init {
                let id = self.new_flight(job, attempt, now, 0);
                out.push(Action::Init {
                    id,
                    request: InitRequest {
                        total_bytes: self.total,
                        media_type: self.spec.media_type.clone(),
                        media_category: self.spec.category,
                        additional_owners: self.spec.additional_owners.clone(),
                        shared: self.spec.shared,
                    },
                    deadline: self.cfg.control_timeout,
                });
            }
            return;
        };
        let deadline = self.cfg.control_timeout;
        let id = self.new_flight(job, attempt, now, 0);
        out.push(match job {
            Job::Finalize => Action::Finalize {
                id,
                media_id,
                deadline,
            },
            _ => Action::Status {
                id,
                media_id,
                deadline,
            },
        });
    }

    fn new_flight(&mut self, job: Job, attempt: u32, now: Instant, in_flight: usize) -> ReqId {
        let id = self.next_id;
        self.next_id += 1;
        self.flights.insert(
            id,
            Flight {
                job,
                attempt,
                launched: now,
                in_flight,
                app_limited: false,
            },
        );
        id
    }

    /// Starts APPENDs while the strategy allows more in flight.
    fn fill(&mut self, now: Instant, strategy: &mut dyn Strategy, out: &mut Vec<Action>) {
        loop {
            // While the server is unreachable, one request at a time probes it.
            let allowed = if self.retrier.in_outage() {
                1
            } else {
                strategy.max_in_flight(now).clamp(1, MAX_IN_FLIGHT_LIMIT)
            };
            let in_flight = self.appends_in_flight();
            self.progress.max_in_flight = allowed;
            self.progress.in_flight = in_flight;
            if self.paused.is_some() || in_flight >= allowed {
                return;
            }
            let hold = [strategy.not_before(now), self.hold_until]
                .into_iter()
                .flatten()
                .max()
                .filter(|t| *t > now);
            if let Some(hold) = hold {
                tracing::debug!(wait = ?(hold - now), "holding new requests");
                self.strategy_wake = Some(hold);
                return;
            }
            if let Some(w) = self.take_ready_append(now) {
                if let Job::Append(segment) = w.job {
                    self.launch(segment, w.attempt, false, now, strategy, out);
                }
                continue;
            }
            if let Some(p) = self.pending.pop_front() {
                self.launch(p.segment, p.attempt, p.resend, now, strategy, out);
                continue;
            }
            // New segments: with a store, as many as there are free slots, so one checkpoint
            // write puts them all on record; without one, one at a time.
            let want = if self.cfg.persist {
                allowed - in_flight
            } else {
                1
            };
            while self.fresh.len() < want {
                let Some(segment) = self.plan_next(now, strategy) else {
                    break;
                };
                self.fresh.push_back(segment);
                self.store.dirty = self.cfg.persist;
            }
            let durable =
                |s: &Segment| !self.cfg.persist || (s.index as usize) < self.store.durable;
            if let Some(segment) = self.fresh.front().copied().filter(durable) {
                self.fresh.pop_front();
                self.launch(segment, 1, false, now, strategy, out);
                continue;
            }
            if !self.fresh.is_empty() {
                // Waiting for the checkpoint that records them (write-ahead).
                return;
            }
            // Free capacity and nothing ready to send: the file ran out or the rest waits on
            // backoff. Whatever is in flight now is not using the link fully.
            for f in self.flights.values_mut() {
                f.app_limited = true;
            }
            return;
        }
    }

    /// Takes the waiting APPEND whose backoff ended first, if any has.
    fn take_ready_append(&mut self, now: Instant) -> Option<Waiting> {
        let (i, _) = self
            .waiting
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w.job {
                Job::Append(s) if w.ready_at <= now => Some((i, (w.ready_at, s.index))),
                _ => None,
            })
            .min_by_key(|(_, key)| *key)?;
        Some(self.waiting.swap_remove(i))
    }

    /// Plans the next segment.
    fn plan_next(&mut self, now: Instant, strategy: &mut dyn Strategy) -> Option<Segment> {
        let (segment, ctx, answer) = self.plan.plan_next(strategy, now)?;
        if self.cfg.log_plans {
            self.plan_log.push(PlanRecord {
                at: now,
                ctx,
                answer,
                size: segment.len,
                observations: self.observations,
            });
        }
        self.progress.chunk_size = segment.len;
        self.progress.segments_planned = self.segments_planned();
        Some(segment)
    }

    /// Starts one APPEND attempt of `segment`.
    fn launch(
        &mut self,
        segment: Segment,
        attempt: u32,
        resend: bool,
        now: Instant,
        strategy: &mut dyn Strategy,
        out: &mut Vec<Action>,
    ) {
        let Some(media_id) = self.session.as_ref().map(|s| s.media_id.clone()) else {
            return;
        };
        let deadline = strategy.start_attempt(now, segment.len);
        let stall = strategy.stall_timeout();
        let in_flight = self.appends_in_flight() + 1;
        let id = self.new_flight(Job::Append(segment), attempt, now, in_flight);
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
        Self::emit(
            out,
            UploadEvent::SegmentStarted {
                index: segment.index,
                offset: segment.offset,
                len: segment.len,
                attempt,
            },
        );
        self.progress.in_flight = in_flight;
        self.emit_progress(out);
        out.push(Action::Append {
            id,
            media_id,
            segment,
            attempt,
            deadline,
            stall,
        });
    }
}
