//! Helpers for the tests that run the `chunkwise` binary against an in-process emulator.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chunkwise::checkpoint::{CHECKPOINT_FILE_EXTENSION, Checkpoint};

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
