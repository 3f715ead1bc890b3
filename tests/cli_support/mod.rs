//! Helpers for the tests that run the `chunkwise` binary against an in-process emulator.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chunkwise::checkpoint::{CHECKPOINT_FILE_EXTENSION, Checkpoint};
use chunkwise::engine::UploadEvent;
use chunkwise::protocol::UploadProtocol;
use chunkwise::scheduler::FixedStrategy;
use chunkwise::{EngineConfig, FileCheckpointStore, MediaCategory, MediaSpec, Source};

/// The `X_*` variables of the test credentials (`support::creds`), as the child reads them.
pub const CREDS_ENV: [(&str, &str); 4] = [
    ("X_API_KEY", "test-consumer-key"),
    ("X_API_SECRET", "test-consumer-secret"),
    ("X_ACCESS_TOKEN", "test-token"),
    ("X_ACCESS_TOKEN_SECRET", "test-token-secret"),
];

/// The binary with the test credentials in `X_*` and no `X_*`, `CHUNKWISE_*` or `RUST_LOG`
/// variable from the test's own environment.
pub fn chunkwise() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chunkwise"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("X_") || n.starts_with("CHUNKWISE_") || n == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.envs(CREDS_ENV);
    cmd
}

/// Runs `cmd` off the async runtime (the test's emulator keeps serving meanwhile).
pub async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .expect("the blocking task ends")
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd`, checks it succeeded, returns stdout and stderr.
pub async fn succeed(cmd: Command) -> (String, String) {
    let out = output(cmd).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

/// Runs `cmd`, checks it failed, returns stderr.
pub async fn fail(cmd: Command) -> String {
    let out = output(cmd).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    stderr
}

/// The checkpoint files in `dir`, sorted.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == CHECKPOINT_FILE_EXTENSION)
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// The one checkpoint in `dir`, read with [`Checkpoint::from_bytes`], if there is exactly one.
pub fn only_checkpoint(dir: &Path) -> Option<Checkpoint> {
    let files = checkpoint_files(dir);
    assert!(files.len() <= 1, "one upload, one checkpoint: {files:?}");
    let data = std::fs::read(files.first()?).ok()?;
    Some(Checkpoint::from_bytes(&data).expect("a saved checkpoint reads back"))
}

/// Runs `cmd` off the async runtime, killing it if it has not ended within `limit`: a
/// command that hangs fails the test instead of hanging it.
pub async fn output_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the binary runs");
    // Drained on threads, so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&err)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Uploads the PNG `file` through the library with `protocol` as the CLI would (pinned
/// `chunk`, one at a time, checkpoints in `dir`) until `acked` segments are done, then
/// cancels: the checkpoint stays in `dir`, and is returned.
pub async fn saved_upload(
    protocol: std::sync::Arc<dyn UploadProtocol>,
    chunk: u64,
    dir: &Path,
    file: &Path,
    acked: usize,
) -> Checkpoint {
    let config = EngineConfig::default()
        .with_fixed_strategy(FixedStrategy::new(
            chunk,
            1,
            std::time::Duration::from_secs(30),
        ))
        .with_checkpoint_store(std::sync::Arc::new(FileCheckpointStore::new(dir)));
    let engine = chunkwise::Engine::new(protocol, config).unwrap();
    let spec = MediaSpec::new("image/png").with_category(MediaCategory::TweetImage);
    let mut upload = engine.upload(Source::file(file).await.unwrap(), spec);
    let mut done = 0;
    while let Some(event) = upload.next_event().await {
        if matches!(event, UploadEvent::SegmentDone { .. }) {
            done += 1;
            if done == acked {
                break;
            }
        }
    }
    let out = upload.cancel().await.unwrap();
    out.checkpoint.expect("a checkpoint after INIT")
}
