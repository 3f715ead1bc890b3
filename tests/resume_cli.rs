//! Saved uploads from the command line: `chunkwise status` lists them, `chunkwise resume`
//! continues them, `chunkwise upload` resumes automatically (or starts over with
//! `--no-resume`), and bad checkpoints, changed files, bad inputs and credentials are handled
//! as the issue asks.

#![cfg(unix)]

mod cli_support;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chunkwise::checkpoint::{CheckpointKey, SourceIdentity};
use chunkwise::emulator::{Command as ApiCommand, Emulator, EmulatorHandle, FaultConfig};
use chunkwise::protocol::{ApiVersion, UploadProtocol, XClient};
use chunkwise::{Checkpoint, Credentials, FileCheckpointStore, Source};

use cli_support::{checkpoint_files, chunkwise, fail, succeed};
use support::{creds, data, sha256};

const CHUNK: u64 = 32 * 1024;
const SEGMENTS: usize = 8;

/// An emulator with a little latency (so an upload can be cancelled half-way).
async fn slow_emulator(credentials: Credentials) -> EmulatorHandle {
    Emulator::builder()
        .credentials(credentials)
        .faults(FaultConfig {
            added_latency: Duration::from_millis(20),
            ..FaultConfig::none()
        })
        .start()
        .await
        .unwrap()
}

/// A temporary directory with `clip.png` (8 chunks and a bit) and a checkpoint directory.
fn files() -> (tempfile::TempDir, PathBuf, PathBuf, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("clip.png");
    let bytes = data(SEGMENTS * CHUNK as usize + 100, 11);
    std::fs::write(&file, &bytes).unwrap();
    let dir = tmp.path().join("ckpt");
    (tmp, file, dir, bytes)
}

fn client(emu: &EmulatorHandle) -> XClient {
    XClient::builder()
        .api(ApiVersion::V2)
        .base_url(emu.base_url())
        .credentials(creds())
        .build()
        .unwrap()
}

/// Uploads `file` as the CLI would (v2, same base URL) until `acked` segments are done, then
/// cancels: the checkpoint stays in `dir`.
async fn saved_upload(emu: &EmulatorHandle, dir: &Path, file: &Path, acked: usize) -> Checkpoint {
    let cp = cli_support::saved_upload(Arc::new(client(emu)), CHUNK, dir, file, acked).await;
    assert!(cp.acked.len() >= acked && cp.acked.len() < SEGMENTS);
    cp
}

/// `chunkwise upload` of `file` to `emu`, checkpoints in `dir`, no pins.
fn plain_upload(emu: &EmulatorHandle, dir: &Path, file: &Path) -> std::process::Command {
    let mut cmd = chunkwise();
    cmd.args(["upload", "--base-url", emu.base_url().as_str()])
        .arg("--checkpoint-dir")
        .arg(dir)
        .arg(file);
    cmd
}

/// [`plain_upload`] with the chunk size and parallelism pinned.
fn upload_cmd(emu: &EmulatorHandle, dir: &Path, file: &Path) -> std::process::Command {
    let mut cmd = plain_upload(emu, dir, file);
    cmd.args(["--chunk-size", &CHUNK.to_string(), "--parallel", "2"]);
    cmd
}

fn count(emu: &EmulatorHandle, command: ApiCommand) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.command == command)
        .count()
}

#[tokio::test]
async fn status_lists_a_saved_upload_and_resume_continues_it() {
    let emu = slow_emulator(creds()).await;
    let (_tmp, file, dir, bytes) = files();
    let cp = saved_upload(&emu, &dir, &file, 3).await;
    let key = cp.key();

    let mut status = chunkwise();
    status.args(["status", "--checkpoint-dir"]).arg(&dir);
    let (stdout, _) = succeed(status).await;
    for part in [
        key.as_str().to_string(),
        file.canonicalize().unwrap().display().to_string(),
        cp.media_id.to_string(),
        format!(
            "segments: {} of {} planned",
            cp.acked.len(),
            cp.plan.segments().len()
        ),
        format!("{} of {} acknowledged", cp.acked_bytes(), bytes.len()),
        "x-v2".to_string(),
        emu.base_url().to_string(),
        "expires:".to_string(),
    ] {
        assert!(stdout.contains(&part), "{part:?} not in {stdout}");
    }
    let mut json = chunkwise();
    json.args(["status", "--json", "--checkpoint-dir"])
        .arg(&dir);
    let (stdout, _) = succeed(json).await;
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["key"], key.as_str());
    assert_eq!(v["acked_segments"], cp.acked.len());
    assert_eq!(v["expired"], false);

    let inits = count(&emu, ApiCommand::Init);
    let mut resume = chunkwise();
    resume
        .args(["resume", key.as_str(), "--checkpoint-dir"])
        .arg(&dir);
    let (stdout, stderr) = succeed(resume).await;
    assert_eq!(stdout.trim(), cp.media_id.as_str());
    assert!(stderr.contains("resuming media"), "{stderr}");
    assert_eq!(emu.media_sha256(&cp.media_id), Some(sha256(&bytes)));
    assert_eq!(count(&emu, ApiCommand::Init), inits, "no new INIT");
    assert!(checkpoint_files(&dir).is_empty());

    // Nothing left: status says so, resume --all does nothing, an unknown key is an error.
    let mut status = chunkwise();
    status.args(["status", "--checkpoint-dir"]).arg(&dir);
    let (stdout, stderr) = succeed(status).await;
    assert_eq!(stdout, "");
    assert!(stderr.contains("no saved uploads"), "{stderr}");
    let mut all = chunkwise();
    all.args(["resume", "--all", "--checkpoint-dir"]).arg(&dir);
    succeed(all).await;
    let mut gone = chunkwise();
    gone.args(["resume", key.as_str(), "--checkpoint-dir"])
        .arg(&dir);
    let stderr = fail(gone).await;
    assert!(stderr.contains("no saved upload"), "{stderr}");
    emu.shutdown().await;
}

#[tokio::test]
async fn upload_resumes_by_itself_and_no_resume_starts_over() {
    let emu = slow_emulator(creds()).await;
    let (_tmp, file, dir, bytes) = files();

    // Automatic: the same media id, no second INIT.
    let cp = saved_upload(&emu, &dir, &file, 2).await;
    let inits = count(&emu, ApiCommand::Init);
    let (stdout, _) = succeed(upload_cmd(&emu, &dir, &file)).await;
    assert_eq!(stdout.trim(), cp.media_id.as_str());
    assert_eq!(count(&emu, ApiCommand::Init), inits);
    assert_eq!(emu.media_sha256(&cp.media_id), Some(sha256(&bytes)));
    assert!(checkpoint_files(&dir).is_empty());

    // --no-resume: the checkpoint is removed and a new INIT starts a new media.
    let cp = saved_upload(&emu, &dir, &file, 2).await;
    let inits = count(&emu, ApiCommand::Init);
    let mut cmd = upload_cmd(&emu, &dir, &file);
    cmd.arg("--no-resume");
    let (stdout, _) = succeed(cmd).await;
    let id = chunkwise::protocol::MediaId::from(stdout.trim());
    assert_ne!(id, cp.media_id);
    assert_eq!(count(&emu, ApiCommand::Init), inits + 1);
    assert_eq!(emu.media_sha256(&id), Some(sha256(&bytes)));
    assert!(checkpoint_files(&dir).is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_checkpoint_is_a_clear_error_from_status_and_upload() {
    let emu = slow_emulator(creds()).await;
    let (_tmp, file, dir, bytes) = files();
    // The file the CLI will look for, with garbage in it.
    let identity = SourceIdentity::of(&Source::file(&file).await.unwrap())
        .await
        .unwrap();
    let key = CheckpointKey::for_upload(&identity, &client(&emu).describe());
    std::fs::create_dir_all(&dir).unwrap();
    let path = FileCheckpointStore::new(&dir).path_for(&key);
    std::fs::write(
        &path,
        b"{\"format\":\"chunkwise-checkpoint\",\"version\":1}\ngarbage",
    )
    .unwrap();

    let mut status = chunkwise();
    status.args(["status", "--checkpoint-dir"]).arg(&dir);
    let stderr = fail(status).await;
    assert!(stderr.contains(key.as_str()), "{stderr}");
    assert!(stderr.contains("could not be read"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let before = emu.request_log().len();
    let stderr = fail(upload_cmd(&emu, &dir, &file)).await;
    assert!(stderr.contains("unreadable"), "{stderr}");
    assert!(stderr.contains("--no-resume"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(emu.request_log().len(), before, "nothing was sent");

    // A foreign file, too.
    std::fs::write(&path, b"hello, I am not a checkpoint").unwrap();
    let stderr = fail(upload_cmd(&emu, &dir, &file)).await;
    assert!(stderr.contains("not a chunkwise checkpoint"), "{stderr}");

    let mut cmd = upload_cmd(&emu, &dir, &file);
    cmd.arg("--no-resume");
    let (stdout, _) = succeed(cmd).await;
    let id = chunkwise::protocol::MediaId::from(stdout.trim());
    assert_eq!(emu.media_sha256(&id), Some(sha256(&bytes)));
    assert!(!path.exists());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_changed_file_is_a_clear_error_from_upload_and_resume() {
    let emu = slow_emulator(creds()).await;
    let (_tmp, file, dir, mut bytes) = files();
    let cp = saved_upload(&emu, &dir, &file, 2).await;

    // Same size, other content (and modification time).
    bytes[0] ^= 0xff;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, &bytes).unwrap();
    let before = emu.request_log().len();
    let stderr = fail(upload_cmd(&emu, &dir, &file)).await;
    assert!(
        stderr.contains("changed since its upload was interrupted"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-resume"), "{stderr}");
    let mut resume = chunkwise();
    resume
        .args(["resume", cp.key().as_str(), "--checkpoint-dir"])
        .arg(&dir);
    let stderr = fail(resume).await;
    assert!(
        stderr.contains("changed since its upload was interrupted"),
        "{stderr}"
    );

    // Another size: the checkpoint is under another key, and still found.
    bytes.push(1);
    std::fs::write(&file, &bytes).unwrap();
    let stderr = fail(upload_cmd(&emu, &dir, &file)).await;
    assert!(
        stderr.contains("changed since its upload was interrupted"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("has {} now", bytes.len())),
        "{stderr}"
    );
    assert_eq!(emu.request_log().len(), before, "nothing was sent");
    emu.shutdown().await;
}

#[tokio::test]
async fn no_credential_reaches_checkpoints_or_trace_logs() {
    const SECRETS: [&str; 4] = [
        "ck-leak-canary-1",
        "cs-leak-canary-2",
        "77-tok-leak-canary-3",
        "ts-leak-canary-4",
    ];
    let emu = slow_emulator(Credentials::oauth1(
        SECRETS[0], SECRETS[1], SECRETS[2], SECRETS[3],
    ))
    .await;
    let (_tmp, file, dir, _) = files();
    let with_secrets = |mut cmd: std::process::Command| {
        cmd.envs([
            ("X_API_KEY", SECRETS[0]),
            ("X_API_SECRET", SECRETS[1]),
            ("X_ACCESS_TOKEN", SECRETS[2]),
            ("X_ACCESS_TOKEN_SECRET", SECRETS[3]),
        ]);
        cmd
    };
    // Interrupt a CLI upload, so its own checkpoint is on disk.
    let log = dir.with_extension("log");
    let mut cmd = with_secrets(upload_cmd(&emu, &dir, &file));
    // A slow link, so the upload is still running when its first checkpoint appears.
    cmd.args(["--link", "constant-1mbit-150ms", "--rtt-ms", "20"])
        .stderr(std::fs::File::create(&log).unwrap());
    cmd.args(["--log", "trace"]);
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while checkpoint_files(&dir).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "no checkpoint");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut saved = Vec::new();
    for f in checkpoint_files(&dir) {
        saved.extend(std::fs::read(f).unwrap());
    }
    assert!(!saved.is_empty());
    // Resume it at trace level too.
    let mut cmd = with_secrets(upload_cmd(&emu, &dir, &file));
    cmd.args(["--log", "trace"]);
    let (_, stderr) = succeed(cmd).await;
    let first = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.len() > 1000 && first.len() > 100,
        "trace logs were written"
    );
    let saved = String::from_utf8_lossy(&saved);
    for secret in SECRETS {
        for (what, text) in [("checkpoint", &*saved), ("log", &*first), ("log", &*stderr)] {
            assert!(!text.contains(secret), "{secret} in the {what}");
        }
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_files_and_settings_fail_before_any_request() {
    let emu = slow_emulator(creds()).await;
    let (tmp, file, dir, _) = files();
    let run = |path: &Path, extra: &[&str]| {
        let mut cmd = plain_upload(&emu, &dir, path);
        cmd.args(["--media-type", "image/png"]).args(extra);
        cmd
    };
    let empty = tmp.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let fifo = tmp.path().join("fifo.png");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let cases: Vec<(PathBuf, &[&str], &str)> = vec![
        (empty, &[], "empty"),
        (tmp.path().join("missing.png"), &[], "missing.png"),
        (tmp.path().to_path_buf(), &[], "not a regular file"),
        (PathBuf::from("/dev/null"), &[], "not a regular file"),
        (fifo, &[], "not a regular file"),
        (file.clone(), &["--chunk-size", "0"], "scheduler.chunk_size"),
        (
            file.clone(),
            &["--chunk-size", "6MiB"],
            "scheduler.chunk_size",
        ),
        (file.clone(), &["--parallel", "0"], "scheduler.parallelism"),
        (
            file.clone(),
            &["--set", "api.control_timeout=-5s"],
            "api.control_timeout",
        ),
        (
            file.clone(),
            &["--set", "polling.deadline=100000000h"],
            "polling.deadline",
        ),
    ];
    // Permissions do not apply to root, so an unreadable file is only tried as a user.
    let unreadable = tmp.path().join("unreadable.png");
    std::fs::write(&unreadable, b"x").unwrap();
    let mut cases = cases;
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
        cases.push((unreadable, &[], "unreadable.png"));
    }
    for (path, extra, says) in cases {
        let stderr = fail(run(&path, extra)).await;
        assert!(stderr.contains(says), "{path:?} {extra:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(emu.request_log().is_empty(), "nothing was sent");
    emu.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_server_is_reported_while_waited_for_and_then_as_the_error() {
    let (_tmp, file, dir, _) = files();
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cmd = chunkwise();
    cmd.args(["upload", "--base-url", &format!("http://{addr}")])
        .args(["--set", "retry.max_unreachable=1s", "--checkpoint-dir"])
        .arg(&dir)
        .arg(&file);
    let stderr = fail(cmd).await;
    // While waiting: what is wrong, when the next try comes, and when it gives up.
    assert!(
        stderr.contains("no connection to the server for") && stderr.contains("giving up in"),
        "{stderr}"
    );
    // At the end: how long it waited, the setting that bounds the wait, and what to check.
    assert!(stderr.contains("max_unreachable is 1s"), "{stderr}");
    assert!(
        stderr.contains("check the network and the base URL"),
        "{stderr}"
    );
}
