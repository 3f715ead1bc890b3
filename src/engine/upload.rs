//! One upload, start to finish: checks, INIT, parallel APPENDs with retries, FINALIZE and
//! STATUS polling. Runs as one tokio task; every APPEND in flight is a future polled by that
//! task, so aborting the task drops them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::MediaSpec;
use super::config::{EngineConfig, MAX_IN_FLIGHT_LIMIT};
use super::events::{Progress, UploadEvent};
use super::plan::{Plan, Segment, check_category_limit};
use super::report::{AttemptRecord, Finished, Recorder, UploadReport};
use super::retry::{Backoff, RetryBudget};
use super::source::Source;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{
    AppendRequest, AppendResponse, InitRequest, MediaId, MediaStatus, ProcessingState,
    UploadProtocol,
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
}

impl UploadTask {
    /// Runs the upload; a failure is also sent as [`UploadEvent::Failed`].
    pub(crate) async fn run(self) -> Result<UploadReport> {
        let events = self.events.clone();
        let result = Run::new(self).execute().await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "upload failed");
            // The receiver may be gone (handle dropped); nothing to do then.
            let _ = events.send(UploadEvent::Failed {
                kind: e.kind(),
                error: e.to_string(),
            });
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

/// A finished APPEND attempt, as the attempt future hands it back to the scheduler.
struct AttemptDone {
    id: u64,
    segment: Segment,
    attempt: u32,
    /// The segment's bytes, kept for a retry; `None` if reading them failed.
    data: Option<Bytes>,
    started: Instant,
    finished: Instant,
    result: std::result::Result<AppendResponse, Failure>,
}

/// Bookkeeping of one attempt in flight.
#[derive(Debug, Clone, Copy)]
struct Flight {
    in_flight: usize,
    app_limited: bool,
}

/// A segment waiting for its retry backoff to end.
#[derive(Debug)]
struct Waiting {
    segment: Segment,
    data: Bytes,
    attempt: u32,
    ready_at: Instant,
}

/// The state of one running upload.
struct Run {
    task: UploadTask,
    strategy: Box<dyn Strategy>,
    backoff: Backoff,
    budget: RetryBudget,
    rec: Recorder,
    plan: Option<Plan>,
}

impl Run {
    fn new(task: UploadTask) -> Self {
        let strategy = (task.config.strategy)();
        let backoff = Backoff::new(&task.config.retry);
        let rec = Recorder::new(Instant::now(), task.config.trace_requests);
        Run {
            task,
            strategy,
            backoff,
            budget: RetryBudget::new(),
            rec,
            plan: None,
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

    async fn execute(mut self) -> Result<UploadReport> {
        let total = self.task.source.len();
        self.task.spec.validate()?;
        if self.task.config.enforce_category_limits {
            check_category_limit(total, self.task.spec.category)?;
        }
        self.plan = Some(Plan::new(total, self.task.protocol.max_append_payload())?);
        self.task.shared.with(|s| s.progress.total_bytes = total);
        self.emit(UploadEvent::Started { total_bytes: total });

        let init_req = InitRequest {
            total_bytes: total,
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

        self.appends(&media_id).await?;

        self.emit(UploadEvent::Finalizing);
        let status = self
            .control("FINALIZE", || protocol.finalize(&media_id))
            .await?;
        let (status, processing_state) = self.poll(&media_id, status).await?;
        let media_key = status.media_key.or(init.media_key);
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
        };
        let rec = self.rec;
        Ok(rec.finish(Instant::now(), fin))
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
            let result = match tokio::time::timeout(timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{what} took longer than its deadline of {timeout:?}"),
                )),
            };
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
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

    /// Sends every segment, keeping up to the strategy's limit in flight.
    async fn appends(&mut self, media_id: &MediaId) -> Result<()> {
        let mut sched = Scheduler {
            media_id: media_id.clone(),
            in_flight: FuturesUnordered::new(),
            flights: HashMap::new(),
            waiting: Vec::new(),
            hold_until: None,
            next_id: 0,
        };
        loop {
            let wake = self.fill(&mut sched);
            let plan_done = self.plan.as_ref().is_none_or(Plan::is_complete);
            if sched.in_flight.is_empty() && sched.waiting.is_empty() && plan_done {
                return Ok(());
            }
            if sched.in_flight.is_empty() && wake.is_none() {
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
            }
        }
    }

    /// Starts attempts while the strategy allows more in flight; returns when the scheduler
    /// must wake up on its own (a hold or a backoff ending), if ever.
    fn fill(&mut self, sched: &mut Scheduler) -> Option<Instant> {
        loop {
            let now = Instant::now();
            let allowed = self
                .strategy
                .max_in_flight(now)
                .clamp(1, MAX_IN_FLIGHT_LIMIT);
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
                self.launch(sched, w.segment, Some(w.data), w.attempt, now);
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
                self.launch(sched, segment, None, 1, now);
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

    fn launch(
        &mut self,
        sched: &mut Scheduler,
        segment: Segment,
        data: Option<Bytes>,
        attempt: u32,
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
                in_flight,
                app_limited: false,
            },
        );
        self.rec.attempt_started(attempt, segment.len, in_flight);
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
            let data = match data {
                Some(d) => d,
                None => match source.read(segment.offset, segment.len).await {
                    Ok(d) => d,
                    Err(e) => {
                        let t = Instant::now();
                        return AttemptDone {
                            id,
                            segment,
                            attempt,
                            data: None,
                            started: t,
                            finished: t,
                            result: Err(Failure::Read(e)),
                        };
                    }
                },
            };
            let started = Instant::now();
            let req = AppendRequest {
                media_id,
                segment_index: segment.index,
                data: data.clone(),
                sent: Some(Arc::clone(&sent)),
            };
            let result = guarded(protocol.append(req), deadline, stall, &sent, segment.len).await;
            AttemptDone {
                id,
                segment,
                attempt,
                data: Some(data),
                started,
                finished: Instant::now(),
                result,
            }
        }
        .instrument(span)
        .boxed();
        sched.in_flight.push(fut);
    }

    /// Handles a finished attempt: records it, tells the strategy, and schedules a retry or
    /// ends the upload.
    fn on_done(&mut self, sched: &mut Scheduler, done: AttemptDone) -> Result<()> {
        let flight = sched.flights.remove(&done.id).unwrap_or(Flight {
            in_flight: 1,
            app_limited: false,
        });
        self.task.shared.with(|s| {
            s.sent.remove(&done.id);
            s.progress.in_flight = sched.in_flight.len();
        });
        let index = done.segment.index;
        let Some(data) = done.data else {
            return Err(match done.result {
                Err(Failure::Read(e)) => e.with_segment(index),
                _ => Error::new(ErrorKind::Io, "reading the segment failed").with_segment(index),
            });
        };
        let error = match done.result {
            Ok(_) => None,
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
            Err(Failure::Request(e)) | Err(Failure::Read(e)) => {
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
        let obs = Observation {
            segment_index: index,
            bytes: done.segment.len,
            started: done.started,
            finished: done.finished,
            outcome,
            in_flight: flight.in_flight,
            app_limited: flight.app_limited,
        };
        self.strategy.observe(&obs);
        let latency = done.finished.saturating_duration_since(done.started);
        let record = AttemptRecord {
            segment: index,
            attempt: done.attempt,
            bytes: done.segment.len,
            start_ms: self.rec.ms_since_start(done.started),
            end_ms: self.rec.ms_since_start(done.finished),
            outcome: outcome.into(),
            in_flight: flight.in_flight,
            app_limited: flight.app_limited,
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
        if outcome == Outcome::Fatal || done.attempt >= self.task.config.retry.max_attempts {
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
        let delay = self
            .backoff
            .delay(done.attempt - 1, throttled, error.retry_after());
        let now = Instant::now();
        if let (true, Some(ra)) = (throttled, error.retry_after()) {
            // Retry-After is a protocol rule, not a tuning choice: no request starts before
            // it ends, whatever the strategy says (the strategy is told too, through the
            // observation, and may hold longer).
            let until = now + ra;
            sched.hold_until = Some(sched.hold_until.map_or(until, |h| h.max(until)));
        }
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
        sched.waiting.push(Waiting {
            segment: done.segment,
            data,
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
    hold_until: Option<Instant>,
    next_id: u64,
}

impl Scheduler {
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
