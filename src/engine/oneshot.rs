//! The one-shot upload path (issue 14): a small media that the protocol takes in one request
//! (v1.1 simple upload, v2 `POST /2/media/upload`; protocol.md §3.5, §4.5) goes up in that
//! one request instead of INIT, APPEND and FINALIZE, saving two round trips.
//!
//! Hooked into [`UploadTask::run`](super::upload::UploadTask) before the chunked path; kept
//! apart from it so the hook can move with the engine's core.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep_until};

use super::calls::Calls;
use super::events::{ControlRequest, Progress, UploadEvent};
use super::plan::check_category_limit;
use super::report::{AttemptOutcome, AttemptRecord, Finished, Recorder, UploadReport};
use super::upload::UploadTask;
use super::{Control, MediaSpec};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::MAX_SEGMENTS;
use crate::protocol::{InitRequest, MediaStatus, OneShotRequest, ProcessingState};
use crate::scheduler::PlanContext;

/// When the engine uses the one-shot upload.
///
/// Settings key `api.one_shot`; `chunkwise upload --one-shot`.
///
/// A one-shot upload is retried whole under the engine's [`RetryPolicy`](super::RetryPolicy)
/// (with the deadline the strategy gives a segment of its size, at least the control
/// timeout), reports [`UploadEvent::OneShot`] instead of INIT and segment events, and
/// leaves no checkpoint: [`UploadHandle::cancel`](super::UploadHandle::cancel) of one returns
/// [`ErrorKind::Cancelled`], and a pause holds it only before its request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneShotMode {
    /// When the protocol takes the media in one request
    /// ([`UploadProtocol::accepts_one_shot`](crate::protocol::UploadProtocol::accepts_one_shot)) and the whole file fits in the first chunk the
    /// strategy would plan: the chunked upload would then send it in one APPEND too, so one
    /// request instead of INIT, APPEND and FINALIZE saves two round trips and gives up no
    /// retry granularity.
    #[default]
    Auto,
    /// Always the chunked upload (resumable, retried per segment).
    Never,
    /// The one-shot upload for every new upload; media the protocol does not take in one
    /// request fail with [`ErrorKind::InvalidInput`] before any request. A resumed upload
    /// carries on chunked.
    Always,
}

impl fmt::Display for OneShotMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OneShotMode::Auto => "auto",
            OneShotMode::Never => "never",
            OneShotMode::Always => "always",
        })
    }
}

impl FromStr for OneShotMode {
    type Err = Error;

    /// Parses `auto`, `never` or `always`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(OneShotMode::Auto),
            "never" => Ok(OneShotMode::Never),
            "always" => Ok(OneShotMode::Always),
            _ => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "{:?} is not a one-shot mode; expected auto, never or always",
                    s.chars().take(32).collect::<String>()
                ),
            )),
        }
    }
}

/// What INIT would say about `spec` and a file of `total` bytes.
pub(crate) fn init_request(spec: &MediaSpec, total: u64) -> InitRequest {
    InitRequest {
        total_bytes: total,
        media_type: spec.media_type.clone(),
        media_category: spec.category,
        additional_owners: spec.additional_owners.clone(),
        shared: spec.shared,
    }
}

/// Whether `task` goes up in one request: never for a resumed upload; per
/// [`EngineConfig::one_shot`](super::EngineConfig::one_shot) otherwise.
pub(crate) fn chosen(task: &UploadTask) -> bool {
    if task.resume.is_some() {
        return false;
    }
    let total = task.source.len();
    match task.config.one_shot {
        OneShotMode::Never => false,
        OneShotMode::Always => true,
        OneShotMode::Auto => {
            task.protocol
                .accepts_one_shot(&init_request(&task.spec, total))
                && first_chunk(task, total) >= total
        }
    }
}

/// The first chunk the strategy would plan for a file of `total` bytes.
fn first_chunk(task: &UploadTask, total: u64) -> u64 {
    let mut strategy = (task.config.strategy)();
    strategy.chunk_size(&PlanContext {
        now: Instant::now(),
        remaining_bytes: total,
        remaining_segments: MAX_SEGMENTS,
        min_chunk: 1,
        max_chunk: task.protocol.max_append_payload(),
    })
}

/// Waits while the upload is paused; returns at once when it is not (or the handle is gone).
async fn wait_while_paused(task: &UploadTask) {
    let mut control = task.control.clone();
    let _ = control.wait_for(|c| !matches!(c, Control::Pause(_))).await;
}

/// Resolves when the handle asks for a cancel; never if the handle is gone.
pub(crate) async fn cancel_requested(task: &UploadTask) {
    let mut control = task.control.clone();
    if control.wait_for(|c| *c == Control::Cancel).await.is_err() {
        futures::future::pending::<()>().await;
    }
}

/// Runs the one-shot upload of `task`, cancellable through its handle (a cancel leaves no
/// checkpoint: there is no session to carry on).
pub(crate) async fn run(task: UploadTask) -> Result<UploadReport> {
    tokio::select! {
        biased;
        () = cancel_requested(&task) => Err(Error::new(
            ErrorKind::Cancelled,
            "the one-shot upload was cancelled; nothing of it is kept on the server",
        )),
        r = upload(&task) => r,
    }
}

async fn upload(task: &UploadTask) -> Result<UploadReport> {
    let started = Instant::now();
    let total = task.source.len();
    let spec = &task.spec;
    spec.validate()?;
    if task.config.enforce_category_limits {
        check_category_limit(total, spec.category)?;
    }
    if !task.protocol.accepts_one_shot(&init_request(spec, total)) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "one_shot is `always`, but the protocol does not take this media in one request \
                 ({}, {total} bytes, category {}{}): set one_shot to auto or never",
                spec.media_type,
                spec.category.map_or("none", |c| c.as_str()),
                if spec.shared.is_some() {
                    ", `shared` set (an INIT field)"
                } else {
                    ""
                }
            ),
        ));
    }
    let emit = |e: UploadEvent| {
        let _ = task.events.send(e);
    };
    emit(UploadEvent::Started { total_bytes: total });
    emit(UploadEvent::OneShot { total_bytes: total });
    wait_while_paused(task).await;
    let data = task.source.read(0, total).await?;
    let req = OneShotRequest {
        media_type: spec.media_type.clone(),
        media_category: spec.category,
        additional_owners: spec.additional_owners.clone(),
        data,
    };
    // The request carries the whole file: it gets the deadline the strategy gives a
    // segment of that size, and never less than a control request's.
    let deadline = (task.config.strategy)()
        .start_attempt(Instant::now(), total)
        .max(task.config.control_timeout);
    let mut calls = Calls::new(&task.config.retry, task.events.clone());
    let protocol = Arc::clone(&task.protocol);
    let sent = Instant::now();
    let (status, attempts) = calls
        .call(ControlRequest::OneShot, deadline, || {
            protocol.upload_one_shot(req.clone())
        })
        .await?;
    let answered = Instant::now();
    tracing::Span::current().record("media_id", status.media_id.as_str());
    emit(UploadEvent::Progress(Progress {
        bytes_acked: total,
        total_bytes: total,
        chunk_size: total,
        max_in_flight: 1,
        segments_done: 1,
        segments_planned: 1,
        ..Progress::default()
    }));
    let (status, processing_state) = poll(task, &mut calls, status).await?;
    emit(UploadEvent::Completed {
        media_id: status.media_id.clone(),
    });

    let mut rec = Recorder::new(started, false);
    for attempt in 1..=attempts {
        rec.attempt_started(attempt, total, 1, false);
    }
    rec.attempt_ended(
        AttemptRecord {
            segment: 0,
            attempt: attempts,
            bytes: total,
            start_ms: rec.ms_since_start(sent),
            end_ms: rec.ms_since_start(answered),
            outcome: AttemptOutcome::Success,
            in_flight: 1,
            app_limited: false,
        },
        answered.saturating_duration_since(sent),
    );
    rec.control_retries = calls.retries.saturating_sub(attempts - 1);
    let mut report = rec.finish(
        Instant::now(),
        Finished {
            media_id: status.media_id,
            media_key: status.media_key,
            total_bytes: total,
            segments: 1,
            processing_state,
            chunk_min: total,
            chunk_max: total,
            resumed_segments: 0,
            restarted: false,
        },
    );
    report.one_shot = true;
    Ok(report)
}

/// Polls STATUS while the one-shot answer says processing has not ended (the categories the
/// X client sends in one request are processed synchronously, so this is for servers that
/// process them anyway).
async fn poll(
    task: &UploadTask,
    calls: &mut Calls,
    mut status: MediaStatus,
) -> Result<(MediaStatus, Option<ProcessingState>)> {
    let polling = task.config.polling;
    let deadline = Instant::now() + polling.deadline;
    loop {
        let Some(info) = status.processing_info.clone() else {
            return Ok((status, None));
        };
        if info.state == ProcessingState::Failed {
            let failed = Error::new(
                ErrorKind::ProcessingFailed,
                "the server could not process the one-shot media",
            );
            return Err(match info.error {
                Some(m) => failed.with_server_message(m),
                None => failed,
            });
        }
        if info.state.is_terminal() {
            return Ok((status, Some(info.state)));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(
                ErrorKind::ProcessingTimeout,
                format!(
                    "media {} was still {:?} after {:?}; raise the processing deadline",
                    status.media_id, info.state, polling.deadline
                ),
            ));
        }
        let wait = polling.wait_for(info.check_after_secs);
        let _ = task.events.send(UploadEvent::Processing {
            state: info.state,
            progress_percent: info.progress_percent,
            check_after: wait,
        });
        sleep_until((now + wait).min(deadline)).await;
        let protocol = Arc::clone(&task.protocol);
        let id = status.media_id.clone();
        status = calls
            .call(ControlRequest::Status, task.config.control_timeout, || {
                protocol.status(&id)
            })
            .await?
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig, RetryPolicy, Source};
    use crate::protocol::{AppendRequest, AppendResponse, InitResponse, MediaId, UploadProtocol};
    use futures::future::BoxFuture;
    use std::sync::Mutex;

    /// Takes one-shot uploads, failing the first `failures` with a 503 (then a 429 with
    /// `Retry-After`), and records when each attempt arrived.
    #[derive(Debug)]
    struct OneShotFake {
        failures: Mutex<u32>,
        attempts: Mutex<Vec<Instant>>,
    }

    impl UploadProtocol for OneShotFake {
        fn max_append_payload(&self) -> u64 {
            1 << 20
        }
        fn init<'a>(&'a self, _: &'a InitRequest) -> BoxFuture<'a, Result<InitResponse>> {
            panic!("the one-shot path sends no INIT")
        }
        fn append(&self, _: AppendRequest) -> BoxFuture<'_, Result<AppendResponse>> {
            panic!("the one-shot path sends no APPEND")
        }
        fn finalize<'a>(&'a self, _: &'a MediaId) -> BoxFuture<'a, Result<MediaStatus>> {
            panic!("the one-shot path sends no FINALIZE")
        }
        fn status<'a>(&'a self, _: &'a MediaId) -> BoxFuture<'a, Result<MediaStatus>> {
            panic!("no processing")
        }
        fn accepts_one_shot(&self, req: &InitRequest) -> bool {
            req.media_type == "image/png"
        }
        fn upload_one_shot(&self, req: OneShotRequest) -> BoxFuture<'_, Result<MediaStatus>> {
            Box::pin(async move {
                self.attempts.lock().unwrap().push(Instant::now());
                let mut left = self.failures.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err(if *left % 2 == 1 {
                        Error::new(ErrorKind::ServerError, "one-shot").with_status(503)
                    } else {
                        Error::new(ErrorKind::RateLimited, "one-shot")
                            .with_status(429)
                            .with_retry_after(std::time::Duration::from_secs(30))
                    });
                }
                Ok(MediaStatus {
                    media_id: MediaId::from("7"),
                    media_key: None,
                    size: Some(req.data.len() as u64),
                    expires_after_secs: Some(86_400),
                    processing_info: None,
                })
            })
        }
    }

    fn engine(fake: Arc<OneShotFake>, mode: OneShotMode, attempts: u32) -> Engine {
        let config = EngineConfig {
            one_shot: mode,
            ..EngineConfig::default()
        }
        .with_retry(RetryPolicy {
            max_attempts: attempts,
            ..RetryPolicy::default().with_seed(1)
        });
        Engine::new(fake, config).unwrap()
    }

    fn fake(failures: u32) -> Arc<OneShotFake> {
        Arc::new(OneShotFake {
            failures: Mutex::new(failures),
            attempts: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn one_shot_failures_are_retried_with_the_policys_backoff_and_retry_after() {
        let f = fake(2);
        let t0 = Instant::now();
        let mut up = engine(f.clone(), OneShotMode::Auto, 5)
            .upload(Source::bytes(vec![1u8; 1000]), MediaSpec::new("image/png"));
        let mut retries = Vec::new();
        while let Some(e) = up.next_event().await {
            if let UploadEvent::ControlRetry { attempt, delay, .. } = e {
                retries.push((attempt, delay));
            }
        }
        let r = up.join().await.unwrap();
        assert!(r.one_shot);
        assert_eq!((r.attempts, r.retries, r.bytes_sent), (3, 2, 3000));
        let at = f.attempts.lock().unwrap().clone();
        assert_eq!(at.len(), 3);
        // The 503 waits a jittered transient backoff (at most 100 ms for a first retry);
        // the 429 at least its Retry-After.
        assert_eq!(retries.len(), 2);
        assert!(retries[0].1 <= crate::engine::DEFAULT_TRANSIENT_BASE);
        assert!(retries[1].1 >= std::time::Duration::from_secs(30));
        assert!(at[2] - at[1] >= std::time::Duration::from_secs(30));
        assert!(at[0] >= t0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_shot_gives_up_after_max_attempts_with_the_last_error() {
        let f = fake(10);
        let e = engine(f.clone(), OneShotMode::Always, 2)
            .upload(Source::bytes(vec![1u8; 10]), MediaSpec::new("image/png"))
            .join()
            .await
            .unwrap_err();
        assert_eq!(e.attempts(), Some(2));
        assert!(e.is_retryable());
        assert_eq!(f.attempts.lock().unwrap().len(), 2);
    }

    #[test]
    fn modes_parse_and_display() {
        for m in [OneShotMode::Auto, OneShotMode::Never, OneShotMode::Always] {
            assert_eq!(m.to_string().parse::<OneShotMode>().unwrap(), m);
        }
        assert_eq!(
            " ALWAYS ".parse::<OneShotMode>().unwrap(),
            OneShotMode::Always
        );
        assert!("sometimes".parse::<OneShotMode>().is_err());
    }
}
