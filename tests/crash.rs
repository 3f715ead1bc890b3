//! Crash safety with the settings users run (no pinned chunk size or parallelism: the
//! adaptive strategy picks both, and its sizes change from run to run):
//!
//! - `chunkwise upload` is killed with SIGKILL at 20 seeded points of an upload over a slow
//!   emulated link, half of them while a checkpoint is being written, and re-run each time
//!   on the same file. At the end the emulator holds exactly the file from one INIT, no
//!   segment a checkpoint recorded as acknowledged was sent again, and the server never saw
//!   one segment index with two lengths.
//! - A checkpoint store that fails in the middle of an upload: nothing is sent that the last
//!   written checkpoint does not record, the upload gives up resumable, and a resume
//!   finishes it.
//! - Two `chunkwise upload` processes of one file: the second refuses at once naming the
//!   first's pid; with `--wait` it takes over once the first is killed.

#![cfg(unix)]

mod cli_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chunkwise::checkpoint::{
    Checkpoint, CheckpointClaim, CheckpointKey, CheckpointStore, FileCheckpointStore,
};
use chunkwise::emulator::{Command as ApiCommand, EmulatorConfig, FaultConfig, RequestRecord};
use chunkwise::protocol::{ApiVersion, AppendEncoding, MediaId};
use chunkwise::{Engine, EngineConfig, ErrorKind, MediaCategory, Source};
use futures::FutureExt;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use cli_support::{checkpoint_files, chunkwise, only_checkpoint, output, text};
use support::{client, data, emulator, sha256, spec};

/// The seed of the kill points and the file's bytes.
const SEED: u64 = 0x5EED_C4A5;
/// How many times the upload is killed.
const KILLS: usize = 20;
/// The file: 5 MiB, about 14 of the adaptive strategy's segments on this link (1 MiB at
/// first, then its smallest chunk, 256 KiB), so the 10 kills that wait for progress fit.
const FILE_BYTES: usize = 5 * 1024 * 1024;
/// The link: 1 Mbit/s; the RTT is lowered to 20 ms to keep the test short.
const LINK: &str = "constant-1mbit-150ms";
/// Round-trip time of the link, in milliseconds.
const RTT_MS: &str = "20";
/// The longest a run may take to reach its kill point.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long a run watches for a checkpoint write to kill it in, before it is killed anyway.
const WRITE_WATCH: Duration = Duration::from_secs(5);

fn upload_command(base_url: &str, file: &Path, dir: &Path, log: &Path) -> std::process::Command {
    let mut cmd = chunkwise();
    cmd.args(["--quiet", "upload", "--base-url", base_url])
        .args(["--link", LINK, "--rtt-ms", RTT_MS])
        .args(["--media-type", "video/mp4", "--category", "tweet_video"])
        .arg("--checkpoint-dir")
        .arg(dir)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("a log file"));
    cmd
}

/// Waits until the checkpoint in `dir` records at least `acked` acknowledged segments.
/// Panics if the child ends first or the time runs out.
async fn wait_for_acked(child: &mut Child, dir: &Path, acked: usize, log: &Path) {
    let started = Instant::now();
    loop {
        if only_checkpoint(dir).is_some_and(|cp| cp.acked.len() >= acked) {
            return;
        }
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            panic!(
                "the upload ended ({status}) before {acked} segments were acknowledged: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < RUN_LIMIT,
            "no checkpoint with {acked} acknowledged segments within {RUN_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a checkpoint is being written in `dir`: the file store's temporary file (a
/// dot-file) exists between its creation and its rename over the checkpoint.
fn writing(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with('.') && name.ends_with(".tmp")
        })
    })
}

/// Polls `dir` for a checkpoint write for at most [`WRITE_WATCH`]; true if one was seen
/// (the caller kills at once).
async fn wait_for_write(dir: &Path) -> bool {
    let started = Instant::now();
    while started.elapsed() < WRITE_WATCH {
        if writing(dir) {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// The APPEND records of `media_id` with `seq` in `range`, as (seq, index).
fn appends_in(
    log: &[RequestRecord],
    media_id: &str,
    range: std::ops::Range<u64>,
) -> Vec<(u64, u32)> {
    log.iter()
        .filter(|r| r.command == ApiCommand::Append && r.media_id.as_deref() == Some(media_id))
        .filter(|r| range.contains(&r.seq))
        .filter_map(|r| r.segment_index.map(|i| (r.seq, i)))
        .collect()
}

/// INIT requests the emulator received.
fn inits(emu: &chunkwise::emulator::EmulatorHandle) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.command == ApiCommand::Init)
        .count()
}

/// Every length each segment index was received with, in complete (2xx) APPENDs.
fn lengths_by_index(log: &[RequestRecord], media_id: &str) -> BTreeMap<u32, BTreeSet<u64>> {
    let mut by_index: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for r in log {
        if r.command == ApiCommand::Append
            && r.media_id.as_deref() == Some(media_id)
            && (200..300).contains(&r.status)
        {
            if let Some(i) = r.segment_index {
                by_index.entry(i).or_default().insert(r.body_bytes);
            }
        }
    }
    by_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_20_points_with_default_settings_resumes_without_corruption() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let base_url = emu.base_url().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("clip.mp4");
    let bytes = data(FILE_BYTES, SEED);
    std::fs::write(&file, &bytes).unwrap();
    let dir = tmp.path().join("checkpoints");

    // Even kills: wait for at least one more acknowledged segment, then kill after a random
    // delay. Odd kills: kill while a checkpoint is being written (a resumed run writes one
    // at once, and one per acknowledgement and per new segment).
    let mut rng = StdRng::seed_from_u64(SEED);
    let delays: Vec<u64> = (0..KILLS).map(|_| rng.random_range(0..300)).collect();

    // marks[i]: requests that had arrived when run i started. checkpoints[i]: the checkpoint
    // read after kill i, before run i + 1.
    let mut marks = Vec::new();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut during_writes = 0;
    let mut acked = 0;
    for (i, delay) in delays.iter().enumerate() {
        let log = tmp.path().join(format!("run-{i}.log"));
        marks.push(emu.requests_received());
        let mut child = upload_command(&base_url, &file, &dir, &log)
            .spawn()
            .unwrap();
        if i % 2 == 1 {
            if wait_for_write(&dir).await {
                during_writes += 1;
            }
        } else {
            wait_for_acked(&mut child, &dir, acked + 1, &log).await;
            tokio::time::sleep(Duration::from_millis(*delay)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let cp = only_checkpoint(&dir).expect("a killed upload leaves its checkpoint");
        assert!(
            cp.acked.len() >= acked,
            "kill {i}: acknowledged segments lost"
        );
        acked = cp.acked.len();
        if let Some(first) = checkpoints.first() {
            assert_eq!(
                cp.media_id, first.media_id,
                "run {i} resumed the same media"
            );
        }
        checkpoints.push(cp);
    }

    // The last run ends the upload.
    let log = tmp.path().join("run-final.log");
    marks.push(emu.requests_received());
    let out = output(upload_command(&base_url, &file, &dir, &log)).await;
    let (_, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{stderr}{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let media_id = checkpoints[0].media_id.clone();
    assert_eq!(emu.media_sha256(&media_id), Some(sha256(&bytes)));
    assert!(
        checkpoint_files(&dir).is_empty(),
        "the finished upload removed its checkpoint"
    );
    eprintln!(
        "{during_writes} of the {} kills aimed at a checkpoint write hit one",
        KILLS / 2
    );
    assert!(
        during_writes > 0,
        "no kill of the {} aimed at a checkpoint write found one in progress",
        KILLS / 2
    );

    assert_eq!(
        inits(&emu),
        1,
        "every run after the first resumed the first INIT's media"
    );
    let log = emu.request_log();
    // The server never saw one index with two lengths, though the sizes vary.
    let lengths = lengths_by_index(&log, media_id.as_str());
    let twice: Vec<_> = lengths.iter().filter(|(_, l)| l.len() > 1).collect();
    assert!(twice.is_empty(), "indices sent with two lengths: {twice:?}");
    let sizes: BTreeSet<u64> = lengths.values().flatten().copied().collect();
    assert!(
        sizes.len() >= 2,
        "the default strategy's chunk sizes vary: {sizes:?}"
    );
    for (i, cp) in checkpoints.iter().enumerate() {
        // After the checkpoint read at kill i, nothing it records as acknowledged is sent.
        let after = appends_in(&log, media_id.as_str(), marks[i + 1]..u64::MAX);
        let again: Vec<_> = after.iter().filter(|(_, x)| cp.acked.contains(x)).collect();
        assert!(
            again.is_empty(),
            "kill {i}: acknowledged segments sent again: {again:?}"
        );
        // Everything sent before kill i is in the checkpoint (written ahead of the send).
        let before: BTreeSet<u32> = appends_in(&log, media_id.as_str(), 0..marks[i + 1])
            .into_iter()
            .map(|(_, x)| x)
            .collect();
        let planned: BTreeSet<u32> = cp.plan.segments().iter().map(|s| s.index).collect();
        assert!(
            before.is_subset(&planned),
            "kill {i}: segments sent but not in the checkpoint: {:?}",
            before.difference(&planned).collect::<Vec<_>>()
        );
    }
    emu.shutdown().await;
}

/// A file store whose saves fail after the first `healthy` ones, until healed.
#[derive(Debug)]
struct FlakyStore {
    inner: FileCheckpointStore,
    healthy: usize,
    saves: AtomicUsize,
    healed: std::sync::atomic::AtomicBool,
}

impl CheckpointStore for FlakyStore {
    fn load<'a>(
        &'a self,
        key: &'a CheckpointKey,
    ) -> BoxFuture<'a, chunkwise::Result<Option<Checkpoint>>> {
        self.inner.load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a CheckpointKey,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, chunkwise::Result<()>> {
        let n = self.saves.fetch_add(1, Ordering::SeqCst);
        if n >= self.healthy && !self.healed.load(Ordering::SeqCst) {
            let e = chunkwise::Error::new(ErrorKind::Checkpoint, "disk full (test)");
            return async move { Err(e) }.boxed();
        }
        self.inner.save(key, checkpoint)
    }

    fn remove<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, chunkwise::Result<()>> {
        self.inner.remove(key)
    }

    fn list(&self) -> BoxFuture<'_, chunkwise::Result<Vec<CheckpointKey>>> {
        self.inner.list()
    }

    fn claim<'a>(
        &'a self,
        key: &'a CheckpointKey,
    ) -> BoxFuture<'a, chunkwise::Result<CheckpointClaim>> {
        self.inner.claim(key)
    }
}

#[tokio::test]
async fn a_store_that_fails_mid_upload_sends_nothing_unrecorded_and_a_resume_finishes() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore {
        inner: FileCheckpointStore::new(tmp.path().join("checkpoints")),
        healthy: 3,
        saves: AtomicUsize::new(0),
        healed: std::sync::atomic::AtomicBool::new(false),
    });
    let mut config = EngineConfig::default().with_checkpoint_store(store.clone());
    config.retry.max_store_outage = Duration::from_secs(1);
    let engine = Engine::new(
        Arc::new(client(&emu, ApiVersion::V2, AppendEncoding::Raw)),
        config,
    )
    .unwrap();
    // 24 MiB: the default strategy's 1 MiB first chunks, many segments.
    let bytes = data(24 * 1024 * 1024, SEED + 1);
    let video = spec("video/mp4", Some(MediaCategory::TweetVideo));
    let e = engine
        .upload(Source::bytes(bytes.clone()), video.clone())
        .join()
        .await
        .expect_err("the store stops writing");
    assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");

    let key = store.inner.list().await.unwrap().remove(0);
    let cp = store
        .inner
        .load(&key)
        .await
        .unwrap()
        .expect("the last written checkpoint");
    let sent: BTreeSet<u32> = emu
        .request_log()
        .iter()
        .filter(|r| r.command == ApiCommand::Append)
        .filter_map(|r| r.segment_index)
        .collect();
    let planned: BTreeSet<u32> = cp.plan.segments().iter().map(|s| s.index).collect();
    assert!(!sent.is_empty());
    assert!(
        sent.is_subset(&planned),
        "sent but never recorded: {:?}",
        sent.difference(&planned).collect::<Vec<_>>()
    );
    assert!(!cp.plan.is_complete(), "it stopped in the middle");

    store.healed.store(true, Ordering::SeqCst);
    let report = engine
        .resume(cp.clone(), Source::bytes(bytes.clone()))
        .join()
        .await
        .expect("the resumed upload finishes");
    assert_eq!(report.media_id, cp.media_id);
    assert_eq!(emu.media_sha256(&cp.media_id), Some(sha256(&bytes)));
    assert_eq!(
        inits(&emu),
        1,
        "one INIT: the upload was carried on, not restarted"
    );
    assert!(store.inner.list().await.unwrap().is_empty());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upload_of_the_same_file_refuses_or_waits_and_takes_over() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let base_url = emu.base_url().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("clip.mp4");
    let bytes = data(3 * 1024 * 1024, SEED + 2);
    std::fs::write(&file, &bytes).unwrap();
    let dir = tmp.path().join("checkpoints");

    let first_log = tmp.path().join("first.log");
    let mut first = upload_command(&base_url, &file, &dir, &first_log)
        .spawn()
        .unwrap();
    wait_for_acked(&mut first, &dir, 1, &first_log).await;

    // A second run of the same command: refused at once, naming the first's pid.
    let second_log = tmp.path().join("second.log");
    let started = Instant::now();
    let mut second = upload_command(&base_url, &file, &dir, &second_log);
    second.stderr(Stdio::piped());
    let out = output(second).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", first.id())),
        "names the holder: {stderr}"
    );
    assert!(stderr.contains("--wait"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // With --wait it waits while the first runs, then carries on its upload.
    let third_log = tmp.path().join("third.log");
    let mut third = upload_command(&base_url, &file, &dir, &third_log);
    third.arg("--wait").stdout(Stdio::piped());
    let mut third = third.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        third.try_wait().unwrap().is_none(),
        "--wait waits: {}",
        std::fs::read_to_string(&third_log).unwrap_or_default()
    );
    let media_id = only_checkpoint(&dir)
        .expect("the first's checkpoint")
        .media_id;
    first.kill().unwrap();
    first.wait().unwrap();
    let third = tokio::task::spawn_blocking(move || third.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        third.status.success(),
        "{}",
        std::fs::read_to_string(&third_log).unwrap_or_default()
    );
    let printed = String::from_utf8_lossy(&third.stdout).trim().to_string();
    assert_eq!(
        MediaId(printed),
        media_id,
        "it carried on the first's media"
    );
    assert_eq!(emu.media_sha256(&media_id), Some(sha256(&bytes)));
    assert_eq!(
        inits(&emu),
        1,
        "one INIT: the upload was carried on, not restarted"
    );
    emu.shutdown().await;
}
