//! Engine tests against a scripted in-memory protocol, under paused time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::time::Instant;

use super::*;
use crate::protocol::{
    AppendRequest, AppendResponse, InitRequest, InitResponse, MediaId, MediaStatus, ProcessingInfo,
    ProcessingState,
};
use crate::scheduler::{FixedStrategy, Observation, Outcome, PlanContext, Strategy};
use crate::{ErrorKind, ServerMessage};

// ===== the fake protocol =====

/// How one scripted APPEND attempt misbehaves.
#[derive(Debug, Clone, Copy)]
enum Fail {
    /// 503 after `FAIL_DELAY`.
    ServerError,
    /// 429 after `FAIL_DELAY`, with this Retry-After.
    Throttled(Option<Duration>),
    /// 400 after `FAIL_DELAY`.
    BadRequest,
    /// Succeeds, but only after this long.
    Slow(Duration),
    /// Writes half the body, then never moves again.
    Stall,
}

/// How long a scripted failure takes to come back.
const FAIL_DELAY: Duration = Duration::from_millis(50);

/// How long a refused connection takes to come back.
const REFUSED_DELAY: Duration = Duration::from_millis(1);

/// One APPEND call as the fake saw it.
#[derive(Debug, Clone)]
struct Call {
    media_id: MediaId,
    index: u32,
    data: Bytes,
    at: Instant,
}

#[derive(Debug, Default)]
struct FakeState {
    /// `total_bytes` of the last INIT: FINALIZE checks the segments against it.
    total_bytes: u64,
    calls: Vec<Call>,
    stored: HashMap<u32, Bytes>,
    in_flight: usize,
    max_in_flight: usize,
    dropped: usize,
    inits: usize,
    finalizes: usize,
    status_calls: Vec<Instant>,
    failure_times: Vec<(u32, Instant)>,
    /// Media ids INIT issued and the server still knows.
    known: std::collections::HashSet<MediaId>,
    /// Media ids INIT issued.
    issued: usize,
    /// APPENDs refused while the server was unreachable: when, and how many APPENDs were
    /// in flight then (this one included).
    refused: Vec<(Instant, usize)>,
    /// INITs refused while the server was unreachable.
    refused_inits: usize,
}

type Hook = Box<dyn Fn(u32) + Send + Sync>;

/// A scripted, in-memory [`UploadProtocol`].
struct Fake {
    max_payload: u64,
    append_delay: Duration,
    state: Mutex<FakeState>,
    /// Per segment, what its first attempts do (one entry per attempt).
    script: Mutex<HashMap<u32, VecDeque<Fail>>>,
    /// Fails every APPEND of every segment, forever.
    always_fail: bool,
    /// The FINALIZE answer's processing info.
    finalize_info: Option<ProcessingInfo>,
    /// STATUS answers, in order; the last one repeats.
    statuses: Mutex<VecDeque<ProcessingInfo>>,
    /// Called with the segment index when an APPEND completes successfully.
    on_append: Option<Hook>,
    /// How many INITs fail with 503 before one succeeds.
    init_failures: Mutex<u32>,
    /// What `describe` answers (the trait's default when `None`).
    target: Option<crate::protocol::ProtocolTarget>,
    /// INIT's `expires_after_secs`.
    init_expires: Option<u64>,
    /// APPEND's `expires_at`.
    append_expires_at: Option<u64>,
    /// Once this segment is stored, the server forgets every media id.
    forget_after: Option<u32>,
    /// From when until when every request fails to connect ([`ErrorKind::Unreachable`]).
    unreachable: Option<(Instant, Instant)>,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fake")
            .field("max_payload", &self.max_payload)
            .finish()
    }
}

impl Fake {
    fn new(max_payload: u64) -> Self {
        Fake {
            max_payload,
            append_delay: Duration::from_millis(100),
            state: Mutex::default(),
            script: Mutex::default(),
            always_fail: false,
            finalize_info: None,
            statuses: Mutex::default(),
            on_append: None,
            init_failures: Mutex::new(0),
            target: None,
            init_expires: Some(86_399),
            append_expires_at: None,
            forget_after: None,
            unreachable: None,
        }
    }

    /// Every request fails to connect from `from` until `until` after now.
    fn unreachable(mut self, from: Duration, until: Duration) -> Self {
        let now = Instant::now();
        self.unreachable = Some((now + from, now + until));
        self
    }

    /// Whether a request made now cannot reach the server.
    fn is_unreachable(&self) -> bool {
        let now = Instant::now();
        self.unreachable
            .is_some_and(|(from, until)| from <= now && now < until)
    }

    /// Forgets every media id, as a server does when they expire.
    fn forget_ids(&self) {
        self.st().known.clear();
    }

    fn fail(self, index: u32, fails: &[Fail]) -> Self {
        self.script
            .lock()
            .unwrap()
            .insert(index, fails.iter().copied().collect());
        self
    }

    fn processing(mut self, first: ProcessingInfo, then: Vec<ProcessingInfo>) -> Self {
        self.finalize_info = Some(first);
        self.statuses = Mutex::new(then.into());
        self
    }

    fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// The stored segments, concatenated by index.
    fn assembled(&self) -> Vec<u8> {
        let st = self.st();
        let mut idx: Vec<_> = st.stored.keys().copied().collect();
        idx.sort_unstable();
        assert_eq!(
            idx,
            (0..idx.len() as u32).collect::<Vec<_>>(),
            "gap in segments"
        );
        idx.iter().flat_map(|i| st.stored[i].to_vec()).collect()
    }

    fn calls_of(&self, index: u32) -> Vec<Call> {
        self.st()
            .calls
            .iter()
            .filter(|c| c.index == index)
            .cloned()
            .collect()
    }

    fn status_of(&self, media_id: &MediaId, info: Option<ProcessingInfo>) -> MediaStatus {
        MediaStatus {
            media_id: media_id.clone(),
            media_key: Some("7_42".into()),
            size: None,
            expires_after_secs: Some(86_400),
            processing_info: info,
        }
    }
}

/// Counts an APPEND in flight; if dropped before `done`, the engine dropped the future.
struct InFlight<'a> {
    fake: &'a Fake,
    done: bool,
}

impl<'a> InFlight<'a> {
    fn new(fake: &'a Fake) -> Self {
        let mut st = fake.st();
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        InFlight { fake, done: false }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.fake.st();
        st.in_flight -= 1;
        if !self.done {
            st.dropped += 1;
        }
    }
}

fn pending_info(state: &str, check_after: Option<u64>) -> ProcessingInfo {
    ProcessingInfo {
        state: ProcessingState::from_wire(state),
        check_after_secs: check_after,
        progress_percent: None,
        error: None,
    }
}

impl UploadProtocol for Fake {
    fn describe(&self) -> crate::protocol::ProtocolTarget {
        self.target
            .clone()
            .unwrap_or_else(|| crate::protocol::ProtocolTarget {
                api: "fake".into(),
                base_url: "memory://fake/".into(),
            })
    }

    fn max_append_payload(&self) -> u64 {
        self.max_payload
    }

    fn init<'a>(&'a self, req: &'a InitRequest) -> BoxFuture<'a, crate::Result<InitResponse>> {
        async move {
            if self.is_unreachable() {
                self.st().refused_inits += 1;
                tokio::time::sleep(REFUSED_DELAY).await;
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    "init: connection refused",
                ));
            }
            self.st().inits += 1;
            {
                let mut left = self.init_failures.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err(Error::new(ErrorKind::ServerError, "init").with_status(503));
                }
            }
            // Ids 42, 43, ...; a new session starts with no segments.
            let mut st = self.st();
            st.total_bytes = req.total_bytes;
            let id = MediaId((42 + st.issued).to_string());
            st.issued += 1;
            st.known.insert(id.clone());
            st.stored.clear();
            Ok(InitResponse {
                media_key: Some(format!("7_{id}")),
                media_id: id,
                expires_after_secs: self.init_expires,
            })
        }
        .boxed()
    }

    fn append(&self, req: AppendRequest) -> BoxFuture<'_, crate::Result<AppendResponse>> {
        async move {
            let mut guard = InFlight::new(self);
            let index = req.segment_index;
            let len = req.data.len() as u64;
            if self.is_unreachable() {
                {
                    let mut st = self.st();
                    let in_flight = st.in_flight;
                    st.refused.push((Instant::now(), in_flight));
                }
                tokio::time::sleep(REFUSED_DELAY).await;
                guard.done = true;
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    "append: connection refused",
                ));
            }
            let sent = req.sent.clone().unwrap();
            assert!(
                len <= self.max_payload,
                "segment {index} above the payload limit"
            );
            let known = {
                let mut st = self.st();
                st.calls.push(Call {
                    media_id: req.media_id.clone(),
                    index,
                    data: req.data.clone(),
                    at: Instant::now(),
                });
                st.known.contains(&req.media_id)
            };
            if !known {
                tokio::time::sleep(FAIL_DELAY).await;
                guard.done = true;
                // As `XClient` classifies X's answer (see `protocol::parse`).
                return Err(Error::new(ErrorKind::MediaGone, "append")
                    .with_status(400)
                    .with_server_message(ServerMessage {
                        code: None,
                        name: None,
                        message: "Invalid media_id: Some().".into(),
                    }));
            }
            let scripted = self
                .script
                .lock()
                .unwrap()
                .get_mut(&index)
                .and_then(VecDeque::pop_front);
            let scripted = scripted.or(self.always_fail.then_some(Fail::ServerError));
            let err = |e: crate::Error| {
                self.st().failure_times.push((index, Instant::now()));
                Err(e)
            };
            match scripted {
                Some(Fail::ServerError) => {
                    tokio::time::sleep(FAIL_DELAY).await;
                    guard.done = true;
                    return err(Error::new(ErrorKind::ServerError, "append").with_status(503));
                }
                Some(Fail::Throttled(ra)) => {
                    tokio::time::sleep(FAIL_DELAY).await;
                    guard.done = true;
                    let mut e = Error::new(ErrorKind::RateLimited, "append").with_status(429);
                    if let Some(ra) = ra {
                        e = e.with_retry_after(ra);
                    }
                    return err(e);
                }
                Some(Fail::BadRequest) => {
                    tokio::time::sleep(FAIL_DELAY).await;
                    guard.done = true;
                    return err(Error::new(ErrorKind::Rejected, "append").with_status(400));
                }
                Some(Fail::Stall) => {
                    sent.store(len / 2, Ordering::Relaxed);
                    futures::future::pending::<()>().await;
                }
                Some(Fail::Slow(d)) => {
                    sent.store(len, Ordering::Relaxed);
                    tokio::time::sleep(d).await;
                }
                None => {
                    sent.store(len / 2, Ordering::Relaxed);
                    tokio::time::sleep(self.append_delay).await;
                    sent.store(len, Ordering::Relaxed);
                }
            }
            self.st().stored.insert(index, req.data.clone());
            if self.forget_after == Some(index) {
                self.forget_ids();
            }
            if let Some(hook) = &self.on_append {
                hook(index);
            }
            guard.done = true;
            Ok(AppendResponse {
                expires_at: self.append_expires_at,
                rate_limit: None,
            })
        }
        .boxed()
    }

    fn finalize<'a>(&'a self, media_id: &'a MediaId) -> BoxFuture<'a, crate::Result<MediaStatus>> {
        async move {
            let mut st = self.st();
            st.finalizes += 1;
            // As X does: the stored segments must add up to INIT's size.
            let stored: u64 = st.stored.values().map(|b| b.len() as u64).sum();
            if stored != st.total_bytes {
                return Err(Error::new(ErrorKind::SegmentMismatch, "finalize")
                    .with_status(400)
                    .with_server_message(ServerMessage {
                        code: None,
                        name: None,
                        message: "Segments do not add up to provided total file size.".into(),
                    }));
            }
            drop(st);
            Ok(self.status_of(media_id, self.finalize_info.clone()))
        }
        .boxed()
    }

    fn status<'a>(&'a self, media_id: &'a MediaId) -> BoxFuture<'a, crate::Result<MediaStatus>> {
        async move {
            self.st().status_calls.push(Instant::now());
            let mut q = self.statuses.lock().unwrap();
            let info = if q.len() > 1 {
                q.pop_front()
            } else {
                q.front().cloned()
            };
            Ok(self.status_of(media_id, info))
        }
        .boxed()
    }
}

// ===== helpers =====

/// A fixed strategy that records what it observes and can enable stall detection.
#[derive(Debug)]
struct Spy {
    inner: FixedStrategy,
    stall: Option<Duration>,
    seen: Arc<Mutex<Vec<Observation>>>,
}

impl Strategy for Spy {
    fn chunk_size(&mut self, ctx: &PlanContext) -> u64 {
        self.inner.chunk_size(ctx)
    }
    fn max_in_flight(&self, now: Instant) -> usize {
        self.inner.max_in_flight(now)
    }
    fn start_attempt(&mut self, now: Instant, bytes: u64) -> Duration {
        self.inner.start_attempt(now, bytes)
    }
    fn stall_timeout(&self) -> Option<Duration> {
        self.stall
    }
    fn not_before(&self, now: Instant) -> Option<Instant> {
        self.inner.not_before(now)
    }
    fn observe(&mut self, obs: &Observation) {
        self.seen.lock().unwrap().push(*obs);
        self.inner.observe(obs);
    }
}

struct Setup {
    fake: Arc<Fake>,
    engine: Engine,
    seen: Arc<Mutex<Vec<Observation>>>,
}

fn config(
    chunk: u64,
    parallel: usize,
    deadline: Duration,
    stall: Option<Duration>,
) -> (EngineConfig, Arc<Mutex<Vec<Observation>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let mut c = EngineConfig::default()
        .with_strategy(move || Spy {
            inner: FixedStrategy::new(chunk, parallel, deadline),
            stall,
            seen: Arc::clone(&s2),
        })
        .with_retry(RetryPolicy::default().with_seed(7));
    c.trace_requests = true;
    (c, seen)
}

fn setup(fake: Fake, chunk: u64, parallel: usize) -> Setup {
    setup_with(
        fake,
        config(chunk, parallel, Duration::from_secs(120), None),
    )
}

fn setup_with(fake: Fake, (config, seen): (EngineConfig, Arc<Mutex<Vec<Observation>>>)) -> Setup {
    let fake = Arc::new(fake);
    let engine = Engine::new(fake.clone(), config).unwrap();
    Setup { fake, engine, seen }
}

impl Setup {
    /// Starts uploading `len` seeded random bytes as a video.
    fn start(&self, len: usize, seed: u64) -> UploadHandle {
        self.engine
            .upload(Source::bytes(random_bytes(len, seed)), video())
    }

    /// Uploads `len` seeded random bytes as a video and waits for the result.
    async fn run(&self, len: usize, seed: u64) -> crate::Result<UploadReport> {
        self.start(len, seed).join().await
    }
}

/// 100-byte segments one at a time, with `tune` applied to the configuration.
fn setup_tuned(fake: Fake, tune: impl FnOnce(&mut EngineConfig)) -> Setup {
    let (mut c, seen) = config(100, 1, Duration::from_secs(120), None);
    tune(&mut c);
    setup_with(fake, (c, seen))
}

fn random_bytes(n: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; n];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    Bytes::from(v)
}

fn video() -> MediaSpec {
    MediaSpec::new("video/mp4").with_category(MediaCategory::TweetVideo)
}

async fn run_collect(handle: UploadHandle) -> (Vec<UploadEvent>, crate::Result<UploadReport>) {
    let mut handle = handle;
    let mut events = Vec::new();
    while let Some(e) = handle.next_event().await {
        events.push(e);
    }
    (events, handle.join().await)
}

// ===== tests =====

#[tokio::test(start_paused = true)]
async fn upload_reassembles_byte_identical_and_events_are_in_order() {
    let s = setup(Fake::new(1000), 700, 3);
    let data = random_bytes(10_000, 1);
    let (events, report) = run_collect(s.engine.upload(Source::bytes(data.clone()), video())).await;
    let report = report.unwrap();
    assert_eq!(s.fake.assembled(), data.to_vec());

    assert_eq!(report.media_id, MediaId::from("42"));
    assert_eq!(report.media_key.as_deref(), Some("7_42"));
    assert_eq!(report.segments, 15);
    assert_eq!((report.chunk_min, report.chunk_max), (200, 700));
    assert_eq!((report.attempts, report.retries), (15, 0));
    assert_eq!((report.bytes_sent, report.bytes_resent), (10_000, 0));
    assert_eq!(report.max_in_flight, 3);
    assert_eq!(s.fake.st().max_in_flight, 3);
    assert_eq!(report.processing_state, None);
    assert_eq!(report.trace.len(), 15);
    // 15 segments, 3 at a time, 100 ms each.
    assert_eq!(report.elapsed, Duration::from_millis(500));
    assert_eq!(report.goodput_bytes_per_sec, 20_000.0);
    assert!(
        (report.latency.p50_ms - 100.0).abs() < 0.5,
        "{:?}",
        report.latency
    );

    // Order: Started, Initialized, the segments, Finalizing, Completed.
    assert!(matches!(
        events[0],
        UploadEvent::Started {
            total_bytes: 10_000
        }
    ));
    assert!(matches!(events[1], UploadEvent::Initialized { .. }));
    assert!(matches!(events.last(), Some(UploadEvent::Completed { .. })));
    let pos = |pred: &dyn Fn(&UploadEvent) -> bool| events.iter().position(pred).unwrap();
    let finalizing = pos(&|e| matches!(e, UploadEvent::Finalizing));
    let mut next_offset = 0;
    for i in 0..15u32 {
        let started =
            pos(&|e| matches!(e, UploadEvent::SegmentStarted { index, .. } if *index == i));
        let done = pos(&|e| matches!(e, UploadEvent::SegmentDone { index, .. } if *index == i));
        assert!(
            1 < started && started < done && done < finalizing,
            "segment {i}"
        );
        if let UploadEvent::SegmentStarted { offset, len, .. } = &events[started] {
            assert_eq!(*offset, next_offset);
            next_offset += len;
        }
    }
    // Progress only grows, and ends complete.
    let acked: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            UploadEvent::Progress(p) => Some(p.bytes_acked),
            _ => None,
        })
        .collect();
    assert!(acked.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(acked.last(), Some(&10_000));
}

#[tokio::test(start_paused = true)]
async fn failing_segment_is_resent_alone_with_same_index_and_bytes() {
    let fake = Fake::new(1000).fail(2, &[Fail::ServerError, Fail::ServerError]);
    let s = setup(fake, 1000, 3);
    let data = random_bytes(5_500, 2);
    let (events, report) = run_collect(s.engine.upload(Source::bytes(data.clone()), video())).await;
    let report = report.unwrap();
    assert_eq!(s.fake.assembled(), data.to_vec());

    let calls = s.fake.calls_of(2);
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.data == data.slice(2000..3000)));
    for i in [0, 1, 3, 4, 5] {
        assert_eq!(s.fake.calls_of(i).len(), 1, "segment {i} was re-sent");
    }
    assert_eq!(report.attempts, 8);
    assert_eq!(report.retries, 2);
    assert_eq!(report.bytes_sent, 5_500 + 2_000);
    assert_eq!(report.bytes_resent, 2_000);

    let retries: Vec<(u32, u32)> = events
        .iter()
        .filter_map(|e| match e {
            UploadEvent::Retry { index, attempt, .. } => Some((*index, *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(2, 1), (2, 2)]);
    let started: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            UploadEvent::SegmentStarted {
                index: 2, attempt, ..
            } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(started, [1, 2, 3]);
    // The strategy saw both failures as retryable and the success.
    let outcomes: Vec<Outcome> = s
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.segment_index == 2)
        .map(|o| o.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::RetryableError,
            Outcome::RetryableError,
            Outcome::Success
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn throttle_holds_new_sends_until_retry_after() {
    let ra = Duration::from_secs(30);
    let fake = Fake::new(100).fail(1, &[Fail::Throttled(Some(ra))]);
    let s = setup(fake, 100, 3);
    let data = random_bytes(900, 3);
    let t0 = Instant::now();
    let (events, report) = run_collect(s.engine.upload(Source::bytes(data.clone()), video())).await;
    report.unwrap();
    assert_eq!(s.fake.assembled(), data.to_vec());

    let (_, throttled_at) = s.fake.st().failure_times[0];
    assert_eq!(throttled_at, t0 + FAIL_DELAY);
    let calls = s.fake.st().calls.clone();
    for c in calls.iter().filter(|c| c.at > throttled_at) {
        assert!(
            c.at >= throttled_at + ra,
            "segment {} started {:?} after the 429",
            c.index,
            c.at - throttled_at
        );
    }
    assert!(
        calls.iter().any(|c| c.at > throttled_at),
        "nothing sent after the hold"
    );
    let delay = events.iter().find_map(|e| match e {
        UploadEvent::Retry { delay, .. } => Some(*delay),
        _ => None,
    });
    assert_eq!(delay, Some(ra));
    let seen = s.seen.lock().unwrap();
    assert!(seen.iter().any(|o| o.outcome
        == Outcome::Throttled {
            retry_after: Some(ra)
        }));
}

#[tokio::test(start_paused = true)]
async fn bad_request_is_fatal_with_the_segment_and_no_retry() {
    let fake = Fake::new(100).fail(1, &[Fail::BadRequest]);
    let s = setup(fake, 100, 1);
    let (events, result) = run_collect(s.start(500, 4)).await;
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert_eq!(e.segment(), Some(1));
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.attempts(), None);
    assert_eq!(s.fake.calls_of(1).len(), 1);
    assert_eq!(s.fake.calls_of(2).len(), 0);
    assert_eq!(s.fake.st().finalizes, 0);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, UploadEvent::Retry { .. }))
    );
    assert!(matches!(
        events.last(),
        Some(UploadEvent::Failed {
            kind: ErrorKind::Rejected,
            ..
        })
    ));
    let last = *s.seen.lock().unwrap().last().unwrap();
    assert_eq!(last.outcome, Outcome::Fatal);
}

#[tokio::test(start_paused = true)]
async fn retry_budget_exhaustion_ends_the_upload() {
    let mut fake = Fake::new(100);
    fake.always_fail = true;
    let s = setup_tuned(fake, |c| {
        c.retry.max_attempts = 50;
        c.retry.budget_min = 3;
        c.retry.budget_ratio = 0.0;
    });
    let e = s.run(1000, 5).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RetryBudgetExhausted);
    // While a segment waits for its retry, the free slot sends the next one, so the
    // failures spread over segments 0 and 1.
    assert!(matches!(e.segment(), Some(0 | 1)), "{e}");
    assert!(e.attempts().is_some());
    let source = std::error::Error::source(&e).unwrap();
    let source = source.downcast_ref::<crate::Error>().unwrap();
    assert_eq!(source.kind(), ErrorKind::ServerError);
    assert_eq!(s.fake.st().calls.len(), 4, "1 attempt + 3 retries");
}

#[tokio::test(start_paused = true)]
async fn per_segment_attempt_cap_ends_the_upload_with_the_last_error() {
    let fake = Fake::new(100).fail(0, &[Fail::ServerError; 5]);
    let s = setup_tuned(fake, |c| {
        c.retry.max_attempts = 2;
    });
    let e = s.run(300, 6).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerError);
    assert_eq!(e.segment(), Some(0));
    assert_eq!(e.attempts(), Some(2));
    assert_eq!(s.fake.calls_of(0).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn slow_request_times_out_and_is_retried() {
    let fake = Fake::new(100).fail(0, &[Fail::Slow(Duration::from_secs(600))]);
    let s = setup_with(fake, config(100, 2, Duration::from_secs(5), None));
    let t0 = Instant::now();
    let (events, report) = run_collect(s.start(300, 7)).await;
    let report = report.unwrap();
    assert_eq!(report.retries, 1);
    let calls = s.fake.calls_of(0);
    assert_eq!(calls.len(), 2);
    // Retried after the 5 s deadline plus a backoff of at most 100 ms, not after 600 s.
    assert!(calls[1].at >= t0 + Duration::from_secs(5));
    assert!(calls[1].at <= t0 + Duration::from_millis(5_100));
    assert_eq!(
        s.fake.st().dropped,
        1,
        "the timed-out request was not dropped"
    );
    let err = events.iter().find_map(|e| match e {
        UploadEvent::Retry { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(err.unwrap().contains("deadline"));
    let first = report
        .trace
        .iter()
        .find(|r| r.segment == 0 && r.attempt == 1)
        .unwrap();
    assert_eq!(first.outcome, AttemptOutcome::Timeout);
    assert_eq!(first.end_ms - first.start_ms, 5_000.0);
}

#[tokio::test(start_paused = true)]
async fn stalled_request_is_abandoned_when_the_strategy_enables_stall_detection() {
    let fake = Fake::new(100).fail(0, &[Fail::Stall]);
    let stall = Duration::from_secs(2);
    let s = setup_with(fake, config(100, 1, Duration::from_secs(120), Some(stall)));
    let t0 = Instant::now();
    let (events, report) = run_collect(s.start(200, 8)).await;
    let report = report.unwrap();
    let calls = s.fake.calls_of(0);
    assert_eq!(calls.len(), 2);
    // Noticed within 1.25 × the stall time (plus at most 100 ms of backoff), long before
    // the 120 s deadline.
    let retry_at = calls[1].at - t0;
    assert!(retry_at >= stall && retry_at <= stall * 5 / 4 + Duration::from_millis(100));
    assert_eq!(s.fake.st().dropped, 1);
    assert_eq!(report.trace[0].outcome, AttemptOutcome::Stalled);
    assert_eq!(s.seen.lock().unwrap()[0].outcome, Outcome::Stalled);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, UploadEvent::Retry { error, .. } if error.contains("stalled")))
    );
}

#[tokio::test(start_paused = true)]
async fn stalled_request_runs_to_its_deadline_without_stall_detection() {
    let fake = Fake::new(100).fail(0, &[Fail::Stall]);
    let s = setup_with(fake, config(100, 1, Duration::from_secs(30), None));
    let t0 = Instant::now();
    let report = s.run(200, 9).await.unwrap();
    assert!(s.fake.calls_of(0)[1].at - t0 >= Duration::from_secs(30));
    assert_eq!(report.trace[0].segment, 0);
    assert_eq!(report.trace[0].outcome, AttemptOutcome::Timeout);
}

#[tokio::test(start_paused = true)]
async fn processing_is_polled_honouring_check_after_and_unknown_states() {
    let fake = Fake::new(100).processing(
        pending_info("pending", Some(5)),
        vec![
            ProcessingInfo {
                progress_percent: Some(40),
                ..pending_info("in_progress", Some(10))
            },
            pending_info("uploading", None),
            pending_info("succeeded", None),
        ],
    );
    let s = setup(fake, 100, 1);
    let (events, report) = run_collect(s.start(100, 10)).await;
    let report = report.unwrap();
    assert_eq!(report.processing_state, Some(ProcessingState::Succeeded));
    let finalized_at = s.fake.calls_of(0)[0].at + Duration::from_millis(100);
    let polls: Vec<Duration> = s
        .fake
        .st()
        .status_calls
        .iter()
        .map(|t| *t - finalized_at)
        .collect();
    // 5 s, then 10 s more, then the 1 s default for the unknown state without a hint.
    assert_eq!(polls, [5, 15, 16].map(Duration::from_secs));
    let processing: Vec<(ProcessingState, Option<u8>, Duration)> = events
        .iter()
        .filter_map(|e| match e {
            UploadEvent::Processing {
                state,
                progress_percent,
                check_after,
            } => Some((state.clone(), *progress_percent, *check_after)),
            _ => None,
        })
        .collect();
    assert_eq!(
        processing,
        [
            (ProcessingState::Pending, None, Duration::from_secs(5)),
            (
                ProcessingState::InProgress,
                Some(40),
                Duration::from_secs(10)
            ),
            (
                ProcessingState::Unknown("uploading".into()),
                None,
                Duration::from_secs(1)
            ),
        ]
    );
    assert!(matches!(events.last(), Some(UploadEvent::Completed { .. })));
}

#[tokio::test(start_paused = true)]
async fn failed_processing_carries_the_server_message() {
    let failed = ProcessingInfo {
        error: Some(ServerMessage {
            code: Some(1),
            name: Some("InvalidMedia".into()),
            message: "Unsupported video format".into(),
        }),
        ..pending_info("failed", None)
    };
    let fake = Fake::new(100).processing(pending_info("pending", Some(1)), vec![failed]);
    let s = setup(fake, 100, 1);
    let e = s.run(100, 11).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProcessingFailed);
    let msg = e.server_message().unwrap();
    assert_eq!(msg.code, Some(1));
    assert_eq!(msg.name.as_deref(), Some("InvalidMedia"));
    assert!(e.to_string().contains("Unsupported video format"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn processing_past_the_deadline_times_out() {
    let fake = Fake::new(100).processing(
        pending_info("pending", Some(10)),
        vec![pending_info("in_progress", Some(10))],
    );
    let s = setup_tuned(fake, |c| {
        c.polling.deadline = Duration::from_secs(25);
    });
    let t0 = Instant::now();
    let e = s.run(100, 12).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProcessingTimeout);
    // Polled at 10 s, 20 s and once more at the 25 s deadline.
    assert_eq!(s.fake.st().status_calls.len(), 3);
    let elapsed = Instant::now() - t0;
    assert!(elapsed >= Duration::from_secs(25) && elapsed < Duration::from_secs(26));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_cancels_in_flight_requests() {
    let mut fake = Fake::new(100);
    fake.append_delay = Duration::from_secs(60);
    let s = setup(fake, 100, 3);
    let mut handle = s.start(1000, 13);
    let mut started = 0;
    while started < 3 {
        if let Some(UploadEvent::SegmentStarted { .. }) = handle.next_event().await {
            started += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(s.fake.st().in_flight, 3);
    drop(handle);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let st = s.fake.st();
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.dropped, 3);
    assert_eq!(st.calls.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn abort_then_join_is_cancelled() {
    let mut fake = Fake::new(100);
    fake.append_delay = Duration::from_secs(60);
    let s = setup(fake, 100, 2);
    let handle = s.start(1000, 14);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!handle.is_finished());
    let p = handle.progress();
    assert_eq!((p.in_flight, p.total_bytes), (2, 1000));
    // The fake reports half of each body written.
    assert_eq!(p.bytes_in_flight, 100);
    handle.abort();
    let e = handle.join().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(s.fake.st().dropped, 2);
}

#[tokio::test(start_paused = true)]
async fn tail_and_backoff_samples_are_app_limited() {
    // Segment 5 takes 150 ms where the others take 100 ms.
    let fake = Fake::new(100).fail(5, &[Fail::Slow(Duration::from_millis(150))]);
    let s = setup(fake, 100, 3);
    s.run(600, 15).await.unwrap();
    let seen = s.seen.lock().unwrap();
    let by_index: HashMap<u32, bool> = seen
        .iter()
        .map(|o| (o.segment_index, o.app_limited))
        .collect();
    // Segments 0–4 ran with all 3 slots busy; 5 was still running after 3 and 4 returned,
    // when the file had run out and slots stood empty.
    for i in 0..5 {
        assert!(!by_index[&i], "segment {i}");
    }
    assert!(by_index[&5], "segment 5");
    assert!(seen.iter().all(|o| o.in_flight <= 3 && o.in_flight >= 1));
}

#[tokio::test(start_paused = true)]
async fn invalid_inputs_fail_before_any_request() {
    let s = setup(Fake::new(10), 10, 1);
    let cases = [
        (Source::bytes(Bytes::new()), video()),
        // More than 1000 segments of the 10-byte limit.
        (
            Source::bytes(random_bytes(10_001, 16)),
            MediaSpec::new("video/mp4"),
        ),
        (
            Source::bytes(random_bytes(6 * 1024 * 1024, 16)),
            MediaSpec::new("image/png").with_category(MediaCategory::TweetImage),
        ),
        (Source::bytes(random_bytes(10, 16)), MediaSpec::new(" ")),
    ];
    for (source, spec) in cases {
        let e = s.engine.upload(source, spec).join().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    assert_eq!(s.fake.st().inits, 0);
    assert!(s.fake.st().calls.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_file_needing_more_than_1000_chunks_grows_the_chunk() {
    let mut fake = Fake::new(11);
    fake.append_delay = Duration::ZERO;
    let s = setup(fake, 8, 4);
    let data = random_bytes(10_500, 17);
    let report = s
        .engine
        .upload(Source::bytes(data.clone()), MediaSpec::new("video/mp4"))
        .join()
        .await
        .unwrap();
    assert_eq!(s.fake.assembled(), data.to_vec());
    assert_eq!(report.segments, 1000);
    assert!(report.chunk_max <= 11 && report.chunk_min >= 10);
}

#[tokio::test(start_paused = true)]
async fn file_source_uploads_and_a_shrinking_file_fails() {
    use std::io::Write;
    let data = random_bytes(5_000, 18);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&data).unwrap();
    f.flush().unwrap();

    let s = setup(Fake::new(1000), 1000, 2);
    let source = Source::file(f.path()).await.unwrap();
    s.engine.upload(source, video()).join().await.unwrap();
    assert_eq!(s.fake.assembled(), data.to_vec());

    // The file is cut to half once segment 1 is stored.
    let (e, fake) = upload_changing(&f, 1, |file| file.set_len(2_500).unwrap()).await;
    assert!(e.to_string().contains("changed size"), "{e}");
    assert_eq!(e.segment(), Some(2));
    assert_eq!(fake.st().calls.len(), 2);

    // Rewritten in place (same size, new modification time) once segment 0 is stored.
    let (e, _) = upload_changing(&f, 0, |file| {
        file.set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
            .unwrap()
    })
    .await;
    assert!(e.to_string().contains("modified during the upload"), "{e}");
    assert_eq!(e.segment(), Some(1));
}

/// Uploads file `f` one 1000-byte segment at a time, applying `change` to the file once
/// segment `after` is stored; the upload must fail with `Io`.
async fn upload_changing(
    f: &tempfile::NamedTempFile,
    after: u32,
    change: impl Fn(&std::fs::File) + Send + Sync + 'static,
) -> (crate::Error, Arc<Fake>) {
    let file = f.reopen().unwrap();
    let mut fake = Fake::new(1000);
    fake.on_append = Some(Box::new(move |index| {
        if index == after {
            change(&file);
        }
    }));
    let s = setup(fake, 1000, 1);
    let source = Source::file(f.path()).await.unwrap();
    let e = s.engine.upload(source, video()).join().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    (e, s.fake)
}

#[tokio::test(start_paused = true)]
async fn invalid_config_is_rejected_by_engine_new() {
    let mut s = FixedStrategy::default();
    s.parallelism = 0;
    let e = Engine::new(
        Arc::new(Fake::new(10)),
        EngineConfig::default().with_fixed_strategy(s),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn upload_outside_a_runtime_reports_an_error() {
    let engine = Engine::new(Arc::new(Fake::new(10)), EngineConfig::default()).unwrap();
    let handle = engine.upload(Source::bytes(Bytes::from_static(b"x")), video());
    let e = futures::executor::block_on(handle.join()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
}

#[tokio::test(start_paused = true)]
async fn failed_init_is_retried_and_counted_as_a_control_retry() {
    let fake = Fake::new(100);
    *fake.init_failures.lock().unwrap() = 2;
    let s = setup(fake, 100, 1);
    let report = s.run(100, 19).await.unwrap();
    assert_eq!(s.fake.st().inits, 3);
    assert_eq!(report.control_retries, 2);
    assert_eq!(report.retries, 0);

    // With one attempt allowed, the first failure is final.
    let fake = Fake::new(100);
    *fake.init_failures.lock().unwrap() = 1;
    let s = setup_tuned(fake, |c| {
        c.retry.max_attempts = 1;
    });
    let e = s.run(100, 19).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ServerError);
    assert!(s.fake.st().calls.is_empty());
}

/// No retry allowed at all: one attempt per request and no budget. Any failure that spent
/// an attempt or the budget would end the upload.
fn no_retries(c: &mut EngineConfig) {
    c.retry.max_attempts = 1;
    c.retry.budget_ratio = 0.0;
    c.retry.budget_min = 0;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_server_is_probed_one_request_at_a_time_and_spends_no_attempt() {
    // Two rounds of 3 APPENDs (100 ms each) get through; then the server cannot be reached
    // for 30 s.
    let fake = Fake::new(100).unreachable(Duration::from_millis(150), Duration::from_secs(30));
    let (mut c, seen) = config(100, 3, Duration::from_secs(120), None);
    no_retries(&mut c);
    let s = setup_with(fake, (c, seen));
    let data = random_bytes(2000, 31);
    let started = Instant::now();
    let (events, report) = run_collect(s.engine.upload(Source::bytes(data.clone()), video())).await;
    let report = report.unwrap();
    assert_eq!(s.fake.assembled(), data.to_vec());
    let elapsed = started.elapsed();
    let max_delay = RetryPolicy::default().max_delay;
    assert!(
        elapsed >= Duration::from_secs(30) && elapsed < Duration::from_secs(30) + 2 * max_delay,
        "{elapsed:?}"
    );

    let refused = s.fake.st().refused.clone();
    // The first refusals hit the requests of one round, sent together; every later one is
    // a lone probe, spaced by the transient backoff (never more than max_delay apart).
    let first = refused[0].0;
    let probes: Vec<_> = refused.iter().filter(|(at, _)| *at > first).collect();
    assert!(probes.len() >= 5, "{refused:?}");
    assert!(
        probes.iter().all(|(_, in_flight)| *in_flight == 1),
        "{refused:?}"
    );
    for pair in refused.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 <= max_delay + REFUSED_DELAY,
            "{refused:?}"
        );
    }
    // Every refused attempt is in the report's count of retries (they were retried), yet
    // none spent an attempt or the (empty) budget; the strategy heard of none of them.
    assert_eq!(report.retries as usize, refused.len());
    // Each was reported as the server being unreachable, none as an ordinary retry, with
    // the time left before the upload would give up.
    let unreachable: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            UploadEvent::Unreachable {
                down, gives_up_in, ..
            } => Some(*down + *gives_up_in),
            _ => None,
        })
        .collect();
    assert_eq!(unreachable.len(), refused.len());
    let max_unreachable = RetryPolicy::default().max_unreachable;
    assert!(
        unreachable.iter().all(|t| *t == max_unreachable),
        "{unreachable:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, UploadEvent::Retry { .. }))
    );
    assert!(
        s.seen
            .lock()
            .unwrap()
            .iter()
            .all(|o| o.outcome == Outcome::Success)
    );
}

#[tokio::test(start_paused = true)]
async fn init_waits_for_an_unreachable_server() {
    let fake = Fake::new(100).unreachable(Duration::ZERO, Duration::from_secs(20));
    let s = setup_tuned(fake, no_retries);
    let report = s.run(300, 32).await.unwrap();
    let st = s.fake.st();
    assert_eq!(st.inits, 1);
    assert!(st.refused_inits >= 5, "{}", st.refused_inits);
    assert_eq!(report.control_retries as usize, st.refused_inits);
}

#[tokio::test(start_paused = true)]
async fn a_server_unreachable_past_max_unreachable_ends_the_upload() {
    let fake = Fake::new(100).unreachable(Duration::from_millis(150), Duration::from_secs(86_400));
    let s = setup_tuned(fake, |c| {
        c.retry.max_unreachable = Duration::from_secs(60);
    });
    let started = Instant::now();
    let e = s.run(1000, 33).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert!(e.to_string().contains("max_unreachable"), "{e}");
    assert!(e.segment().is_some(), "{e}");
    assert!(
        elapsed >= Duration::from_secs(60) && elapsed < Duration::from_secs(61),
        "{elapsed:?}"
    );
    // A short outage does not end it: the same policy rides out 59 s.
    let fake = Fake::new(100).unreachable(Duration::from_millis(150), Duration::from_secs(59));
    let s = setup_tuned(fake, |c| {
        c.retry.max_unreachable = Duration::from_secs(60);
    });
    s.run(1000, 33).await.unwrap();
}

mod core_model;
mod resume;

// ===== every wait bounded =====

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_max_wait_stops_the_upload_and_says_when_to_try_again() {
    // A Retry-After of about 31 years: the upload stops at once instead of sleeping.
    let ra = Duration::from_secs(999_999_999);
    let fake = Fake::new(100).fail(1, &[Fail::Throttled(Some(ra))]);
    let s = setup(fake, 100, 1);
    let t0 = Instant::now();
    let e = s.run(500, 41).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("max_wait") && text.contains("run it again"),
        "{text}"
    );
    // When to try again: an HTTP date and the wait.
    assert!(text.contains("GMT") && text.contains("31years"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_wait_within_max_wait_is_honoured() {
    let ra = Duration::from_secs(600);
    let fake = Fake::new(100).fail(0, &[Fail::Throttled(Some(ra))]);
    let s = setup(fake, 100, 1);
    let t0 = Instant::now();
    s.run(300, 42).await.unwrap();
    assert!(t0.elapsed() >= ra);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_stops_the_upload_after_max_no_progress() {
    // Every APPEND takes an hour; deadlines of 20 min would let five attempts take 100 min.
    let bound = Duration::from_secs(300);
    let mut fake = Fake::new(100);
    fake.append_delay = Duration::from_secs(3600);
    let (mut c, seen) = config(100, 2, Duration::from_secs(1200), None);
    c.retry.max_no_progress = bound;
    let s = setup_with(fake, (c, seen));
    let t0 = Instant::now();
    let e = s.run(500, 43).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("max_no_progress"), "{e}");
    let took = t0.elapsed();
    assert!(
        took >= bound && took < bound + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn time_paused_does_not_count_as_no_progress() {
    let bound = Duration::from_secs(60);
    let fake = Fake::new(100);
    let (mut c, seen) = config(100, 1, Duration::from_secs(120), None);
    c.retry.max_no_progress = bound;
    let s = setup_with(fake, (c, seen));
    let handle = s.start(300, 44);
    handle.pause(PauseMode::Drain);
    tokio::time::sleep(bound * 3).await;
    handle.resume();
    handle.join().await.unwrap();
}
