//! Pause, resume, cancel, checkpoints and carrying an upload on in a fresh engine, against
//! the scripted fake, under paused time.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::AtomicUsize;
use std::time::SystemTime;

use super::*;
use crate::checkpoint::{
    Checkpoint, CheckpointKey, CheckpointStore, FileCheckpointStore, MemoryCheckpointStore,
};
use crate::protocol::ProtocolTarget;

// ===== helpers =====

/// How many of `events` match the pattern.
macro_rules! count {
    ($events:expr, $($pat:tt)+) => {
        $events.iter().filter(|e| matches!(e, $($pat)+)).count()
    };
}

/// The index of the first of `events` that matches the pattern.
macro_rules! first {
    ($events:expr, $($pat:tt)+) => {
        $events
            .iter()
            .position(|e| matches!(e, $($pat)+))
            .expect("no such event")
    };
}

/// A store that records every save and removal, and can be slow or fail.
#[derive(Debug, Default)]
struct Recording {
    inner: MemoryCheckpointStore,
    saved: Mutex<Vec<Checkpoint>>,
    removed: Mutex<Vec<CheckpointKey>>,
    save_delay: Duration,
    fail: bool,
    saving_now: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Recording {
    fn acked_per_save(&self) -> Vec<usize> {
        self.saved
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.acked.len())
            .collect()
    }
}

impl CheckpointStore for Recording {
    fn load<'a>(
        &'a self,
        key: &'a CheckpointKey,
    ) -> BoxFuture<'a, crate::Result<Option<Checkpoint>>> {
        self.inner.load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a CheckpointKey,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, crate::Result<()>> {
        async move {
            let now = self.saving_now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.save_delay).await;
            self.saving_now.fetch_sub(1, Ordering::SeqCst);
            if self.fail {
                return Err(Error::new(ErrorKind::Checkpoint, "disk full"));
            }
            self.saved.lock().unwrap().push(checkpoint.clone());
            self.inner.save(key, checkpoint).await
        }
        .boxed()
    }

    fn remove<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, crate::Result<()>> {
        self.removed.lock().unwrap().push(key.clone());
        self.inner.remove(key)
    }

    fn list(&self) -> BoxFuture<'_, crate::Result<Vec<CheckpointKey>>> {
        self.inner.list()
    }

    fn claim<'a>(
        &'a self,
        key: &'a CheckpointKey,
    ) -> BoxFuture<'a, crate::Result<crate::checkpoint::CheckpointClaim>> {
        self.inner.claim(key)
    }
}

/// An engine over `fake` with 120 s deadlines, saving checkpoints to `store`.
fn engine_over(
    fake: &Arc<Fake>,
    chunk: u64,
    parallel: usize,
    store: Arc<dyn CheckpointStore>,
) -> Engine {
    let (c, _) = config(chunk, parallel, Duration::from_secs(120), None);
    Engine::new(fake.clone(), c.with_checkpoint_store(store)).unwrap()
}

fn slow_fake(max: u64, delay: Duration) -> Arc<Fake> {
    let mut fake = Fake::new(max);
    fake.append_delay = delay;
    Arc::new(fake)
}

/// Reads events into `seen` until one matches `pred`.
async fn until(
    handle: &mut UploadHandle,
    seen: &mut Vec<UploadEvent>,
    pred: impl Fn(&UploadEvent) -> bool,
) {
    loop {
        let e = handle.next_event().await.expect("the upload ended first");
        let hit = pred(&e);
        seen.push(e);
        if hit {
            return;
        }
    }
}

/// A checkpoint with at least `n` acknowledged segments was saved (acknowledgements that
/// arrive together share one save).
fn saved(n: u32) -> impl Fn(&UploadEvent) -> bool {
    move |e| matches!(e, UploadEvent::CheckpointSaved { segments_acked } if *segments_acked >= n)
}

fn started(e: &UploadEvent) -> bool {
    matches!(e, UploadEvent::SegmentStarted { .. })
}

fn temp_file(data: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    f.flush().unwrap();
    f
}

/// What a crashed upload leaves: the server (1 s per APPEND of at most `max` bytes), the
/// store, the engine (100-byte segments, `parallel` at a time) and the saved checkpoint.
struct Crashed {
    fake: Arc<Fake>,
    store: Arc<MemoryCheckpointStore>,
    engine: Engine,
    cp: Checkpoint,
}

/// Uploads `source` until `acked` segments are saved, then kills the upload.
async fn crashed(max: u64, parallel: usize, source: Source, acked: u32) -> Crashed {
    let fake = slow_fake(max, Duration::from_secs(1));
    let store = Arc::new(MemoryCheckpointStore::new());
    let engine = engine_over(&fake, 100, parallel, store.clone());
    let cp = crash_after(&engine, source, acked, &*store).await;
    Crashed {
        fake,
        store,
        engine,
        cp,
    }
}

/// Runs an upload of `data` until `acked` segments are saved in `store`, then kills it
/// (as a crash would) and returns the stored checkpoint.
async fn crash_after(
    engine: &Engine,
    source: Source,
    acked: u32,
    store: &dyn CheckpointStore,
) -> Checkpoint {
    let mut handle = engine.upload(source, video());
    until(&mut handle, &mut Vec::new(), saved(acked)).await;
    handle.abort();
    assert_eq!(
        handle.join().await.unwrap_err().kind(),
        ErrorKind::Cancelled
    );
    let keys = store.list().await.unwrap();
    assert_eq!(keys.len(), 1);
    store.load(&keys[0]).await.unwrap().unwrap()
}

// ===== checkpoints during an upload =====

#[tokio::test(start_paused = true)]
async fn checkpoint_is_saved_after_init_and_each_ack_and_removed_on_success() {
    let store = Arc::new(Recording::default());
    let fake = Arc::new(Fake::new(100));
    let engine = engine_over(&fake, 100, 1, store.clone());
    let data = random_bytes(500, 20);
    let (events, report) = run_collect(engine.upload(Source::bytes(data.clone()), video())).await;
    report.unwrap();
    assert_eq!(fake.assembled(), data.to_vec());
    // After INIT (nothing acknowledged yet), then after each of the 5 segments.
    assert_eq!(store.acked_per_save(), [0, 1, 2, 3, 4, 5]);
    let first = store.saved.lock().unwrap()[0].clone();
    assert_eq!(first.media_id, MediaId::from("42"));
    assert_eq!(first.target.api, "fake");
    assert!(first.expires_at.is_some());
    let removed = store.removed.lock().unwrap().clone();
    assert_eq!(removed, [first.key()]);
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(count!(events, UploadEvent::CheckpointSaved { .. }), 6);
    // The first save lands before the first APPEND starts.
    let pos = |p: &dyn Fn(&UploadEvent) -> bool| events.iter().position(p).unwrap();
    assert!(pos(&saved(0)) < pos(&started));
}

#[tokio::test(start_paused = true)]
async fn saves_are_coalesced_and_never_overlap() {
    let store = Arc::new(Recording {
        save_delay: Duration::from_secs(1),
        ..Recording::default()
    });
    let fake = Arc::new(Fake::new(100));
    let engine = engine_over(&fake, 100, 4, store.clone());
    let data = random_bytes(2000, 21);
    let (_, report) = run_collect(engine.upload(Source::bytes(data.clone()), video())).await;
    report.unwrap();
    assert_eq!(fake.assembled(), data.to_vec());
    let acked = store.acked_per_save();
    assert!(acked.len() < 21, "one save per ack: {acked:?}");
    assert!(acked.windows(2).all(|w| w[0] <= w[1]), "{acked:?}");
    // The last save before FINALIZE records every segment.
    assert_eq!(acked.last(), Some(&20));
    assert_eq!(store.most_at_once.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_writes_sends_no_segment_and_gives_up_resumable() {
    let store = Arc::new(Recording {
        fail: true,
        ..Recording::default()
    });
    let fake = Arc::new(Fake::new(100));
    let engine = engine_over(&fake, 100, 2, store);
    let started = Instant::now();
    let (events, report) =
        run_collect(engine.upload(Source::bytes(random_bytes(400, 22)), video())).await;
    let e = report.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
    assert!(e.to_string().contains("max_store_outage"), "{e}");
    // Write-ahead: INIT, but no segment that no checkpoint records.
    assert_eq!(fake.st().inits, 1);
    assert!(fake.st().calls.is_empty(), "{:?}", fake.st().calls);
    // It kept trying the store, with the backoff, for the policy's bound.
    let bound = RetryPolicy::default().max_store_outage;
    let took = started.elapsed();
    assert!(
        took >= bound && took < bound + Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        count!(events, UploadEvent::CheckpointFailed { error } if error.contains("disk full")) > 5
    );
    assert_eq!(count!(events, UploadEvent::CheckpointSaved { .. }), 0);
}

// ===== pause and resume =====

/// Starts uploading `len` random bytes in 100-byte segments that take 1 s each,
/// `parallel` at a time, and returns once all `parallel` have started.
async fn slow_upload_started(
    len: usize,
    parallel: usize,
) -> (Arc<Fake>, Bytes, UploadHandle, Vec<UploadEvent>) {
    let fake = slow_fake(100, Duration::from_secs(1));
    let (c, _) = config(100, parallel, Duration::from_secs(120), None);
    let engine = Engine::new(fake.clone(), c).unwrap();
    let data = random_bytes(len, len as u64);
    let mut handle = engine.upload(Source::bytes(data.clone()), video());
    let mut events = Vec::new();
    for _ in 0..parallel {
        until(&mut handle, &mut events, started).await;
    }
    (fake, data, handle, events)
}

#[tokio::test(start_paused = true)]
async fn drain_pause_lets_requests_in_flight_finish_and_starts_nothing() {
    let (fake, data, handle, mut events) = slow_upload_started(1000, 3).await;
    handle.pause(PauseMode::Drain);
    assert!(handle.is_paused());
    tokio::time::sleep(Duration::from_secs(30)).await;
    {
        let st = fake.st();
        assert_eq!(st.calls.len(), 3, "a request started while paused");
        assert_eq!(st.stored.len(), 3, "the drained requests did not finish");
        assert_eq!(st.dropped, 0);
    }
    assert_eq!(handle.progress().segments_done, 3);
    assert_eq!(handle.progress().in_flight, 0);
    handle.resume();
    assert!(!handle.is_paused());
    let (rest, report) = run_collect(handle).await;
    events.extend(rest);
    let report = report.unwrap();
    assert_eq!(fake.assembled(), data.to_vec());
    assert_eq!((report.attempts, report.bytes_resent), (10, 0));
    let paused = first!(
        events,
        UploadEvent::Paused {
            mode: PauseMode::Drain
        }
    );
    let resumed = first!(events, UploadEvent::Resumed);
    assert!(paused < resumed);
    assert!(!events[paused..resumed].iter().any(started));
    // The drained segments finished while paused.
    assert_eq!(
        count!(events[paused..resumed], UploadEvent::SegmentDone { .. }),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn abandon_pause_drops_requests_and_resends_them_with_the_same_index() {
    let (fake, data, handle, mut events) = slow_upload_started(600, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.pause(PauseMode::Abandon);
    tokio::time::sleep(Duration::from_secs(30)).await;
    {
        let st = fake.st();
        assert_eq!(st.dropped, 2, "the requests in flight were not dropped");
        assert_eq!(st.in_flight, 0);
        assert_eq!(st.calls.len(), 2);
        assert!(st.stored.is_empty());
    }
    assert_eq!(handle.progress().bytes_in_flight, 0);
    handle.resume();
    let (rest, report) = run_collect(handle).await;
    events.extend(rest);
    let report = report.unwrap();
    assert_eq!(fake.assembled(), data.to_vec());
    for i in 0..2u32 {
        let calls = fake.calls_of(i);
        assert_eq!(calls.len(), 2, "segment {i}");
        let range = i as usize * 100..(i as usize + 1) * 100;
        assert!(calls.iter().all(|c| c.data == data.slice(range.clone())));
    }
    for i in 2..6 {
        assert_eq!(fake.calls_of(i).len(), 1);
    }
    assert_eq!(report.retries, 0, "an abandoned attempt is not a retry");
    assert_eq!(report.bytes_resent, 200);
    let abandoned: Vec<u32> = report
        .trace
        .iter()
        .filter(|r| r.outcome == AttemptOutcome::Abandoned)
        .map(|r| r.segment)
        .collect();
    assert_eq!(abandoned, [0, 1]);
    assert!(
        count!(
            events,
            UploadEvent::Paused {
                mode: PauseMode::Abandon
            }
        ) > 0
    );
}

#[tokio::test(start_paused = true)]
async fn pause_before_init_holds_it() {
    let fake = Arc::new(Fake::new(100));
    let (c, _) = config(100, 1, Duration::from_secs(120), None);
    let engine = Engine::new(fake.clone(), c).unwrap();
    let handle = engine.upload(Source::bytes(random_bytes(100, 25)), video());
    handle.pause(PauseMode::Drain);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(fake.st().inits, 0);
    handle.resume();
    handle.join().await.unwrap();
    assert_eq!(fake.st().inits, 1);
}

// ===== cancel =====

#[tokio::test(start_paused = true)]
async fn cancel_says_until_when_the_media_id_is_usable_and_keeps_the_checkpoint() {
    let mut fake = Fake::new(100);
    fake.append_delay = Duration::from_secs(1);
    fake.init_expires = Some(3600);
    let fake = Arc::new(fake);
    let store = Arc::new(MemoryCheckpointStore::new());
    let engine = engine_over(&fake, 100, 1, store.clone());
    let mut handle = engine.upload(Source::bytes(random_bytes(500, 26)), video());
    let mut events = Vec::new();
    until(&mut handle, &mut events, saved(2)).await;
    let now = SystemTime::now();
    let outcome = handle.cancel().await.unwrap();
    assert_eq!(outcome.media_id, Some(MediaId::from("42")));
    assert!(outcome.completed.is_none());
    let until_t = outcome.usable_until.unwrap();
    assert!(until_t > now + Duration::from_secs(3500) && until_t < now + Duration::from_secs(3700));
    assert!(outcome.is_usable_at(now));
    assert!(!outcome.is_usable_at(now + Duration::from_secs(7200)));
    let cp = outcome.checkpoint.unwrap();
    assert_eq!(cp.acked, BTreeSet::from([0, 1]));
    assert_eq!(cp.expires_at, Some(until_t));
    // The store keeps the latest state, for a later resume.
    let stored = store.load(&cp.key()).await.unwrap().unwrap();
    assert_eq!((stored.media_id, stored.acked), (cp.media_id, cp.acked));
    // The request in flight was dropped, nothing was finalized.
    let st = fake.st();
    assert_eq!((st.dropped, st.finalizes), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn cancel_reports_the_expiry_from_append_answers_without_a_store() {
    let mut fake = Fake::new(100);
    fake.append_expires_at = Some(4_000_000_000);
    fake.append_delay = Duration::from_secs(1);
    let fake = Arc::new(fake);
    let (c, _) = config(100, 1, Duration::from_secs(120), None);
    let engine = Engine::new(fake.clone(), c).unwrap();
    let mut handle = engine.upload(Source::bytes(random_bytes(500, 27)), video());
    until(&mut handle, &mut Vec::new(), |e| {
        matches!(e, UploadEvent::SegmentDone { .. })
    })
    .await;
    let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let outcome = handle.cancel().await.unwrap();
    assert_eq!(outcome.usable_until, Some(expected));
    // Without a store, the checkpoint is still handed back.
    assert_eq!(outcome.checkpoint.unwrap().acked, BTreeSet::from([0]));
}

#[tokio::test(start_paused = true)]
async fn cancel_events_end_with_cancelled_not_failed() {
    let fake = slow_fake(100, Duration::from_secs(1));
    let (c, _) = config(100, 1, Duration::from_secs(120), None);
    let engine = Engine::new(fake.clone(), c).unwrap();
    // `cancel` consumes the handle, so ask for the cancel through its control channel and
    // keep reading the events.
    let mut handle = engine.upload(Source::bytes(random_bytes(300, 28)), video());
    until(&mut handle, &mut Vec::new(), started).await;
    handle.control.send_replace(Control::Cancel);
    let (events, result) = run_collect(handle).await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(matches!(
        events.last(),
        Some(UploadEvent::Cancelled {
            media_id: Some(_),
            usable_until: Some(_)
        })
    ));
    assert_eq!(count!(events, UploadEvent::Failed { .. }), 0);
}

#[tokio::test(start_paused = true)]
async fn cancel_before_init_and_after_completion() {
    let fake = Arc::new(Fake::new(100));
    let (c, _) = config(100, 1, Duration::from_secs(120), None);
    let engine = Engine::new(fake.clone(), c).unwrap();
    let outcome = engine
        .upload(Source::bytes(random_bytes(100, 29)), video())
        .cancel()
        .await
        .unwrap();
    assert_eq!(outcome.media_id, None);
    assert_eq!(outcome.checkpoint, None);
    assert!(!outcome.is_usable_at(SystemTime::now()));
    assert_eq!(fake.st().inits, 0);

    let handle = engine.upload(Source::bytes(random_bytes(100, 29)), video());
    while !handle.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcome = handle.cancel().await.unwrap();
    let report = outcome.completed.unwrap();
    assert_eq!(report.media_id, MediaId::from("42"));
    assert_eq!(outcome.checkpoint, None);
}

// ===== resume from a checkpoint =====

#[tokio::test(start_paused = true)]
async fn resume_in_a_fresh_engine_sends_only_unacknowledged_segments() {
    let data = random_bytes(1000, 30);
    let file = temp_file(&data);
    let Crashed {
        fake, store, cp, ..
    } = crashed(200, 2, Source::file(file.path()).await.unwrap(), 4).await;
    assert_eq!(cp.acked, BTreeSet::from([0, 1, 2, 3]));
    let planned = cp.plan.segments().len() as u32;
    let pending = cp.pending_segments();
    assert!(!pending.is_empty(), "nothing was in flight at the crash");
    let before = fake.st().calls.len();

    // Another process: a new engine with another chunk size, the file opened again.
    let second = engine_over(&fake, 150, 3, store.clone());
    let source = Source::file(file.path()).await.unwrap();
    let (events, report) = run_collect(second.resume(cp.clone(), source)).await;
    let report = report.unwrap();
    assert_eq!(fake.assembled(), data.to_vec());
    assert_eq!(fake.st().inits, 1);
    assert_eq!((report.resumed_segments, report.restarted), (4, false));

    let calls: Vec<Call> = fake.st().calls[before..].to_vec();
    assert!(calls.iter().all(|c| c.media_id == cp.media_id));
    assert!(
        calls.iter().all(|c| !cp.acked.contains(&c.index)),
        "an acknowledged segment was sent again"
    );
    // The pending segments went first, with their original index, offset and size.
    for seg in &pending {
        let sent: Vec<&Call> = calls.iter().filter(|c| c.index == seg.index).collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].data,
            data.slice(seg.offset as usize..seg.end() as usize)
        );
    }
    // Then planning carried on after the highest planned index, with the new chunk size.
    let mut new: Vec<u32> = calls
        .iter()
        .map(|c| c.index)
        .filter(|i| *i >= planned)
        .collect();
    new.sort_unstable();
    let expected: Vec<u32> = (planned..planned + new.len() as u32).collect();
    assert_eq!(new, expected);
    let planned_bytes = cp.plan.planned_bytes() as usize;
    let rest = calls.iter().find(|c| c.index == planned).unwrap();
    assert_eq!(
        rest.data,
        data.slice(planned_bytes..(planned_bytes + 150).min(1000))
    );
    assert_eq!(report.segments, planned + new.len() as u32);

    assert!(matches!(
        events[0],
        UploadEvent::Started { total_bytes: 1000 }
    ));
    assert!(matches!(
        &events[1],
        UploadEvent::ResumedFromCheckpoint { segments_acked: 4, bytes_acked: 400, segments_pending, .. }
            if *segments_pending as usize == pending.len()
    ));
    assert_eq!(count!(events, UploadEvent::Initialized { .. }), 0);
    assert!(
        store.list().await.unwrap().is_empty(),
        "checkpoint left after success"
    );
}

#[tokio::test(start_paused = true)]
async fn resume_keeps_planning_within_1000_segments() {
    let mut fake = Fake::new(11);
    fake.append_delay = Duration::from_millis(1);
    let fake = Arc::new(fake);
    let store = Arc::new(MemoryCheckpointStore::new());
    let data = random_bytes(10_500, 31);
    let first = engine_over(&fake, 8, 4, store.clone());
    let cp = crash_after(&first, Source::bytes(data.clone()), 300, &*store).await;
    let second = engine_over(&fake, 8, 4, store.clone());
    let report = second
        .resume(cp, Source::bytes(data.clone()))
        .join()
        .await
        .unwrap();
    assert_eq!(fake.assembled(), data.to_vec());
    assert_eq!(report.segments, 1000);
    assert!(
        fake.st()
            .calls
            .iter()
            .all(|c| c.index < 1000 && c.data.len() <= 11)
    );
}

#[tokio::test(start_paused = true)]
async fn resume_refuses_a_changed_source_and_sends_nothing() {
    let data = random_bytes(1000, 32);
    let file = temp_file(&data);
    let Crashed {
        fake, engine, cp, ..
    } = crashed(100, 1, Source::file(file.path()).await.unwrap(), 2).await;
    let calls = fake.st().calls.len();
    let inits = fake.st().inits;

    let refuse = |source: Source, cp: Checkpoint, engine: Engine| async move {
        let e = engine.resume(cp, source).join().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
        e.to_string()
    };

    // Same size, other bytes in memory (no modification time either).
    let mut other = data.to_vec();
    other[0] ^= 1;
    let text = refuse(Source::bytes(other.clone()), cp.clone(), engine.clone()).await;
    assert!(
        text.contains("not the file the checkpoint was made from"),
        "{text}"
    );

    // The file rewritten in place with the same size.
    std::fs::write(file.path(), &other).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file.path())
        .unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    let text = refuse(
        Source::file(file.path()).await.unwrap(),
        cp.clone(),
        engine.clone(),
    )
    .await;
    assert!(text.contains("modification time"), "{text}");

    // Grown.
    let mut grown = data.to_vec();
    grown.push(0);
    std::fs::write(file.path(), &grown).unwrap();
    let text = refuse(
        Source::file(file.path()).await.unwrap(),
        cp.clone(),
        engine.clone(),
    )
    .await;
    assert!(text.contains("size changed"), "{text}");

    // The right file, but an engine for another target.
    std::fs::write(file.path(), &data).unwrap();
    let mut elsewhere = Fake::new(100);
    elsewhere.target = Some(ProtocolTarget {
        api: "x-v2".into(),
        base_url: "https://api.x.com/".into(),
    });
    let (c, _) = config(100, 1, Duration::from_secs(120), None);
    let other_engine = Engine::new(Arc::new(elsewhere), c).unwrap();
    let text = refuse(Source::bytes(data.clone()), cp.clone(), other_engine).await;
    assert!(text.contains("https://api.x.com/"), "{text}");

    // An inconsistent checkpoint.
    let mut broken = cp.clone();
    broken.acked.insert(999);
    refuse(Source::bytes(data.clone()), broken, engine.clone()).await;

    assert_eq!(
        fake.st().calls.len(),
        calls,
        "a refused resume sent an APPEND"
    );
    assert_eq!(fake.st().inits, inits);
}

#[tokio::test(start_paused = true)]
async fn an_expired_checkpoint_starts_over_with_a_new_init() {
    let data = random_bytes(1000, 33);
    let Crashed {
        fake,
        engine,
        mut cp,
        ..
    } = crashed(100, 2, Source::bytes(data.clone()), 3).await;
    cp.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
    let before = fake.st().calls.len();

    let (events, report) = run_collect(engine.resume(cp, Source::bytes(data.clone()))).await;
    let report = report.unwrap();
    assert!(report.restarted);
    assert_eq!(report.resumed_segments, 0);
    assert_eq!(report.media_id, MediaId::from("43"));
    assert_eq!(fake.st().inits, 2);
    assert_eq!(fake.assembled(), data.to_vec());
    let calls = fake.st().calls[before..].to_vec();
    assert_eq!(calls.len(), 10, "every segment is sent again");
    assert!(calls.iter().all(|c| c.media_id == MediaId::from("43")));
    assert!(
        count!(events, UploadEvent::Restarted { previous_media_id, reason } if *previous_media_id == MediaId::from("42") && reason.contains("expired"))
            > 0
    );
    assert_eq!(count!(events, UploadEvent::ResumedFromCheckpoint { .. }), 0);
}

#[tokio::test(start_paused = true)]
async fn an_id_the_server_forgot_starts_over_once() {
    let data = random_bytes(1000, 34);
    let Crashed {
        fake, engine, cp, ..
    } = crashed(100, 2, Source::bytes(data.clone()), 3).await;
    fake.forget_ids();

    let (events, report) = run_collect(engine.resume(cp, Source::bytes(data.clone()))).await;
    let report = report.unwrap();
    assert!(report.restarted);
    assert_eq!(fake.st().inits, 2);
    assert_eq!(fake.assembled(), data.to_vec());
    assert!(
        count!(events, UploadEvent::Restarted { reason, .. } if reason.contains("no longer knows"))
            > 0
    );
    // It said so before the new INIT.
    let restarted = first!(events, UploadEvent::Restarted { .. });
    let init = first!(events, UploadEvent::Initialized { .. });
    assert!(restarted < init);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_finalize_whose_segments_do_not_add_up_checks_status_and_starts_over() {
    let data = random_bytes(1000, 36);
    let Crashed {
        fake, engine, cp, ..
    } = crashed(100, 2, Source::bytes(data.clone()), 3).await;
    // The server lost the segments it had acknowledged (its id still works): the resumed
    // upload sends only the rest, and FINALIZE finds that they do not add up.
    fake.st().stored.clear();
    let (events, report) = run_collect(engine.resume(cp, Source::bytes(data.clone()))).await;
    let report = report.unwrap();
    assert!(report.restarted);
    assert_eq!(fake.st().inits, 2);
    assert_eq!(
        fake.st().finalizes,
        2,
        "the failed one and the new upload's"
    );
    assert!(!fake.st().status_calls.is_empty(), "STATUS was asked first");
    assert_eq!(fake.assembled(), data.to_vec());
    assert!(
        count!(events, UploadEvent::Restarted { reason, .. } if reason.contains("FINALIZE") && reason.contains("do not add up"))
            > 0,
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_id_fails_a_fresh_upload_and_a_second_time_a_resumed_one() {
    // A fresh upload whose id the server forgets: the rejection is final.
    let mut fake = Fake::new(100);
    fake.forget_after = Some(0);
    let fake = Arc::new(fake);
    let store = Arc::new(MemoryCheckpointStore::new());
    let engine = engine_over(&fake, 100, 1, store.clone());
    let data = random_bytes(500, 35);
    let e = engine
        .upload(Source::bytes(data.clone()), video())
        .join()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MediaGone);
    assert_eq!(e.segment(), Some(1));
    assert_eq!(fake.st().inits, 1);

    // Resumed: it starts over once, and a second loss is final (no loop).
    let key = store.list().await.unwrap().remove(0);
    let cp = store.load(&key).await.unwrap().unwrap();
    let e = engine
        .resume(cp, Source::bytes(data))
        .join()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MediaGone);
    assert_eq!(fake.st().inits, 2);
}

// ===== credentials, bad input =====

#[tokio::test(start_paused = true)]
async fn no_credential_reaches_a_checkpoint_file() {
    use crate::auth::Credentials;
    use crate::protocol::XClient;
    let secrets = [
        "ck-PUBLIC-key",
        "cs-SECRET-consumer",
        "tok-SECRET-token",
        "ts-SECRET-tsecret",
    ];
    let oauth = XClient::builder()
        .credentials(Credentials::oauth1(
            secrets[0], secrets[1], secrets[2], secrets[3],
        ))
        .base_url(url::Url::parse("http://127.0.0.1:9/media").unwrap())
        .build()
        .unwrap();
    let bearer = XClient::builder()
        .credentials(Credentials::bearer("BEARER-SECRET-token"))
        .build()
        .unwrap();
    for (client, secrets) in [
        (oauth, &secrets[..]),
        (bearer, &["BEARER-SECRET-token"][..]),
    ] {
        let target = client.describe();
        assert!(target.api.starts_with("x-v"), "{target:?}");
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileCheckpointStore::new(dir.path()));
        let mut fake = Fake::new(100);
        fake.append_delay = Duration::from_secs(1);
        fake.target = Some(target.clone());
        let fake = Arc::new(fake);
        let engine = engine_over(&fake, 100, 1, store.clone());
        let mut handle = engine.upload(Source::bytes(random_bytes(500, 36)), video());
        until(&mut handle, &mut Vec::new(), saved(2)).await;
        let outcome = handle.cancel().await.unwrap();
        let file = store.path_for(&outcome.checkpoint.unwrap().key());
        let text = String::from_utf8(std::fs::read(&file).unwrap()).unwrap();
        assert!(text.contains(&target.base_url), "the target is recorded");
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_chunk_size_above_the_protocol_limit_is_invalid_config() {
    let fake: Arc<dyn UploadProtocol> = Arc::new(Fake::new(5 * 1024 * 1024));
    let config = |chunk| {
        EngineConfig::default().with_fixed_strategy(FixedStrategy::new(
            chunk,
            1,
            Duration::from_secs(1),
        ))
    };
    let e = Engine::new(fake.clone(), config(8 * 1024 * 1024)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert!(e.to_string().contains("above the protocol"), "{e}");
    assert_eq!(
        Engine::new(fake.clone(), config(0)).unwrap_err().kind(),
        ErrorKind::InvalidConfig
    );
    Engine::new(fake, config(5 * 1024 * 1024)).unwrap();
}
