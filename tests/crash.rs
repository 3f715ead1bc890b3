//! The crash test: `chunkwise upload` is killed with SIGKILL at 20 seeded points of an upload
//! over a slow emulated link, and re-run each time on the same file, which resumes it from
//! its checkpoint. At the end the emulator must hold exactly the file, no segment the
//! checkpoint recorded as acknowledged may have been sent again, and no more segments than
//! can be in flight may have been sent again after any kill.

#![cfg(unix)]

mod cli_support;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chunkwise::emulator::{Command as ApiCommand, EmulatorConfig, FaultConfig, RequestRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use cli_support::{checkpoint_files, chunkwise, only_checkpoint, output, text};
use support::{data, emulator, sha256};

/// The seed of the kill points and the file's bytes.
const SEED: u64 = 0x5EED_C4A5;
/// How many times the upload is killed.
const KILLS: usize = 20;
/// The pinned chunk size: 32 KiB, a quarter second on the link.
const CHUNK: u64 = 32 * 1024;
/// The pinned parallelism: at most this many segments can be lost in flight at a kill.
const PARALLEL: usize = 2;
/// Segments of the file (1.5 MiB): enough for 20 kills with progress in between.
const SEGMENTS: usize = 48;
/// The link: 1 Mbit/s; the RTT is lowered to 20 ms to keep the test short.
const LINK: &str = "constant-1mbit-150ms";
/// Round-trip time of the link, in milliseconds.
const RTT_MS: &str = "20";
/// The longest a run may take to reach its kill point.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn upload_command(base_url: &str, file: &Path, dir: &Path, log: &Path) -> std::process::Command {
    let mut cmd = chunkwise();
    cmd.args(["--quiet", "upload", "--base-url", base_url])
        .args(["--chunk-size", &CHUNK.to_string()])
        .args(["--parallel", &PARALLEL.to_string()])
        .args(["--link", LINK, "--rtt-ms", RTT_MS])
        .args(["--media-type", "image/png", "--category", "tweet_image"])
        .arg("--checkpoint-dir")
        .arg(dir)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("a log file"));
    cmd
}

/// Waits until the checkpoint in `dir` records at least `acked` acknowledged segments, then
/// returns how many it records. Panics if the child ends first or the time runs out.
async fn wait_for_acked(child: &mut Child, dir: &Path, acked: usize, log: &Path) -> usize {
    let started = Instant::now();
    loop {
        if let Some(cp) = only_checkpoint(dir) {
            if cp.acked.len() >= acked {
                return cp.acked.len();
            }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_20_points_resumes_without_resending_acknowledged_segments() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let base_url = emu.base_url().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("clip.png");
    let bytes = data(SEGMENTS * CHUNK as usize, SEED);
    std::fs::write(&file, &bytes).unwrap();
    let dir = tmp.path().join("checkpoints");

    // 20 distinct kill points: "after at least k segments are acknowledged, plus a few
    // milliseconds", k spread over the upload.
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut targets: Vec<usize> =
        rand::seq::index::sample(&mut rng, SEGMENTS - 4, KILLS).into_vec();
    targets.sort_unstable();
    let delays: Vec<u64> = (0..KILLS).map(|_| rng.random_range(40..250)).collect();

    // marks[i]: requests that had arrived when run i started. checkpoints[i]: the checkpoint
    // read after kill i, before run i + 1.
    let mut marks = Vec::new();
    let mut checkpoints = Vec::new();
    let mut acked = 0;
    for (i, (target, delay)) in targets.iter().zip(&delays).enumerate() {
        let log = tmp.path().join(format!("run-{i}.log"));
        marks.push(emu.requests_received());
        let mut child = upload_command(&base_url, &file, &dir, &log)
            .spawn()
            .unwrap();
        let reached = wait_for_acked(&mut child, &dir, (*target + 1).max(acked + 1), &log).await;
        tokio::time::sleep(Duration::from_millis(*delay)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let cp = only_checkpoint(&dir).expect("a killed upload leaves its checkpoint");
        assert!(cp.acked.len() >= reached);
        acked = cp.acked.len();
        if let Some(first) = checkpoints.first() {
            let first: &chunkwise::Checkpoint = first;
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

    let log = emu.request_log();
    let inits = log.iter().filter(|r| r.command == ApiCommand::Init).count();
    assert_eq!(
        inits, 1,
        "every run after the first resumed the first INIT's media"
    );
    for (i, cp) in checkpoints.iter().enumerate() {
        // After the checkpoint read at kill i, nothing it records as acknowledged is sent.
        let after = appends_in(&log, media_id.as_str(), marks[i + 1]..u64::MAX);
        let again: Vec<_> = after.iter().filter(|(_, x)| cp.acked.contains(x)).collect();
        assert!(
            again.is_empty(),
            "kill {i}: acknowledged segments sent again: {again:?}"
        );
        // Segments sent before kill i and again by the next run: at most those in flight.
        let before: BTreeSet<u32> = appends_in(&log, media_id.as_str(), 0..marks[i + 1])
            .into_iter()
            .map(|(_, x)| x)
            .collect();
        let end = marks.get(i + 2).copied().unwrap_or(u64::MAX);
        let resent: BTreeSet<u32> = appends_in(&log, media_id.as_str(), marks[i + 1]..end)
            .into_iter()
            .map(|(_, x)| x)
            .filter(|x| before.contains(x))
            .collect();
        assert!(
            resent.len() <= PARALLEL,
            "kill {i}: {} segments sent again ({resent:?}), more than the {PARALLEL} in flight",
            resent.len()
        );
    }
    emu.shutdown().await;
}
