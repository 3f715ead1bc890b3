//! Issue 11, "Hostile conditions, round two", from the command line: results that must
//! never be lost (a report path that cannot be written, a closed or full stdout, Ctrl-C,
//! SIGTERM and SIGHUP), waits that must be bounded (FIFOs and devices as settings files and
//! checkpoints), errors that must be clear, and server text that must not reach the terminal
//! raw. Misbehaving servers are scripted here on 127.0.0.1; every child process is killed if
//! it outlives its bound.

#![cfg(unix)]

mod cli_support;
mod support;

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chunkwise::checkpoint::CheckpointStore as _;
use chunkwise::emulator::{Emulator, EmulatorHandle, FaultConfig};
use chunkwise::protocol::{ApiVersion, MediaId, XClient};
use chunkwise::{Checkpoint, FileCheckpointStore};

use cli_support::{checkpoint_files, chunkwise, output_within, text};
use support::{creds, data, sha256};

const CHUNK: u64 = 32 * 1024;

/// Every child is killed after this: far above what any of them needs.
const LIMIT: Duration = Duration::from_secs(60);

/// An emulator with `latency` added to every request.
async fn emulator(latency: Duration) -> EmulatorHandle {
    Emulator::builder()
        .credentials(creds())
        .faults(FaultConfig {
            added_latency: latency,
            ..FaultConfig::none()
        })
        .start()
        .await
        .unwrap()
}

/// A temporary directory with `name` (`segments` chunks and a bit) and a checkpoint
/// directory.
fn files(name: &[u8], segments: usize) -> (tempfile::TempDir, PathBuf, PathBuf, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(std::ffi::OsStr::from_bytes(name));
    let bytes = data(segments * CHUNK as usize + 100, 11);
    std::fs::write(&file, &bytes).unwrap();
    let dir = tmp.path().join("ckpt");
    (tmp, file, dir, bytes)
}

/// `chunkwise upload` of `file` to `base_url`, checkpoints in `dir`, chunks pinned small.
fn upload(base_url: &str, dir: &Path, file: &Path) -> std::process::Command {
    let mut cmd = chunkwise();
    cmd.args([
        "upload",
        "--base-url",
        base_url,
        "--media-type",
        "image/png",
    ])
    .args(["--chunk-size", &CHUNK.to_string(), "--parallel", "1"])
    .arg("--checkpoint-dir")
    .arg(dir)
    .arg(file);
    cmd
}

/// `chunkwise SUBCOMMAND --checkpoint-dir dir ARGS...`.
fn in_dir(subcommand: &str, dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = chunkwise();
    cmd.arg(subcommand)
        .arg("--checkpoint-dir")
        .arg(dir)
        .args(args);
    cmd
}

/// Waits for `child` to end within [`LIMIT`], collecting what it wrote to pipes.
async fn finish(mut child: Child) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("still running after {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// Sends `signal` (`INT`, `TERM`, `HUP`) to `child`.
fn send(child: &Child, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -s {signal}");
}

/// Waits until a checkpoint file is in `dir`.
async fn until_checkpoint(dir: &Path) {
    let started = Instant::now();
    while checkpoint_files(dir).is_empty() {
        assert!(
            started.elapsed() < LIMIT,
            "no checkpoint in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Uploads `file` through the library as the CLI would (v2, `emu`, checkpoints in `dir`)
/// until `acked` segments are done, then cancels: the checkpoint stays in `dir`.
async fn saved_upload(emu: &EmulatorHandle, dir: &Path, file: &Path, acked: usize) -> Checkpoint {
    let client = XClient::builder()
        .api(ApiVersion::V2)
        .base_url(emu.base_url())
        .credentials(creds())
        .build()
        .unwrap();
    cli_support::saved_upload(Arc::new(client), CHUNK, dir, file, acked).await
}

/// What a scripted server answers a request (method, path and query): a status and a JSON
/// body, or `None` to never answer.
type Script = Arc<dyn Fn(&str, &str) -> Option<(u16, String)> + Send + Sync>;

/// A server on 127.0.0.1 that answers as `script` says; returns its base URL and the
/// requests it saw (`METHOD /path?query`).
async fn scripted(script: Script) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, _body: axum::body::Bytes| {
            let script = Arc::clone(&script);
            let log = Arc::clone(&log);
            async move {
                let path = uri.path_and_query().map_or("", |p| p.as_str()).to_string();
                log.lock().unwrap().push(format!("{method} {path}"));
                let Some((status, body)) = script(method.as_str(), &path) else {
                    return std::future::pending().await;
                };
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// A v2 server that gives media id `id` and key `key`, takes every APPEND, and answers
/// FINALIZE with `finalize`.
fn v2_script(id: &'static str, key: &'static str, finalize: (u16, String)) -> Script {
    Arc::new(move |_method, path| {
        Some(if path.ends_with("/initialize") {
            let body = serde_json::json!({"data": {"id": id, "media_key": key, "expires_after_secs": 86399}});
            (200, body.to_string())
        } else if path.ends_with("/append") {
            (200, "{}".to_string())
        } else if path.ends_with("/finalize") {
            finalize.clone()
        } else {
            (404, "{}".to_string())
        })
    })
}

/// Server text a terminal must never see raw: OSC (window title), BEL, colour, a clear.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[31mred\u{1b}[0m\u{1b}[2J\u{202e}";

fn assert_terminal_safe(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{what} has control characters: {text:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Never lose the result

#[tokio::test]
async fn a_report_path_that_cannot_be_written_fails_before_the_first_request() {
    let emu = emulator(Duration::ZERO).await;
    let (tmp, file, dir, _) = files(b"clip.png", 4);
    let mut cmd = upload(emu.base_url().as_str(), &dir, &file);
    cmd.arg("--report")
        .arg(tmp.path().join("missing/report.json"));
    let out = output_within(cmd, LIMIT).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the report"), "{stderr}");
    assert!(stderr.contains("missing/report.json"), "{stderr}");
    assert!(emu.request_log().is_empty(), "nothing was sent");
    assert!(checkpoint_files(&dir).is_empty());

    // A report that can only fail when written (/dev/full): the media id is on stdout first.
    let mut cmd = upload(emu.base_url().as_str(), &dir, &file);
    cmd.args(["--quiet", "--report", "/dev/full"]);
    let out = output_within(cmd, LIMIT).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let id = MediaId::from(stdout.trim());
    assert!(emu.media_sha256(&id).is_some(), "{stdout:?}");
    assert!(
        stderr.contains(&format!("media {id} was uploaded")),
        "{stderr}"
    );
    assert!(stderr.contains("/dev/full"), "{stderr}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_closed_or_full_stdout_is_a_one_line_error_that_names_the_media_id() {
    let emu = emulator(Duration::ZERO).await;
    let (tmp, file, dir, _) = files(b"clip.png", 4);
    let check = |out: &Output, what: &str| {
        let (_, stderr) = text(out);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(stderr.starts_with("error: "), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        stderr
    };
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };

    // `chunkwise upload f -q | true`: the reader is gone before the id is printed.
    let mut cmd = upload(emu.base_url().as_str(), &dir, &file);
    cmd.arg("-q").stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let stderr = check(&finish(child).await, "closed stdout");
    assert!(stderr.contains("could not be printed"), "{stderr}");
    let id = stderr
        .split("media ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap();
    assert!(emu.media_sha256(&MediaId::from(id)).is_some(), "{stderr}");

    // `chunkwise upload f 2>&1 | true`: progress lines to a closed stderr are lost, not a
    // panic (exit 101); the id is in the (lost) error, and the exit code says it failed.
    let mut piped = std::process::Command::new("bash");
    piped
        .args(["-c", r#""$@" 2>&1 | true; exit "${PIPESTATUS[0]}""#, "bash"])
        .arg(env!("CARGO_BIN_EXE_chunkwise"))
        .args(["upload", "--base-url", emu.base_url().as_str()])
        .args([
            "--media-type",
            "image/png",
            "--no-resume",
            "--checkpoint-dir",
        ])
        .arg(&dir)
        .arg(&file)
        .envs(cli_support::CREDS_ENV)
        .env_remove("RUST_LOG");
    let out = output_within(piped, LIMIT).await;
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));

    // `> /dev/full`, with a report: the report is still written, and says the id too.
    let report = tmp.path().join("report.json");
    let mut cmd = upload(emu.base_url().as_str(), &dir, &file);
    cmd.arg("-q")
        .arg("--report")
        .arg(&report)
        .stdout(full())
        .stderr(Stdio::piped());
    let stderr = check(&finish(cmd.spawn().unwrap()).await, "full stdout");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let id = json["media_id"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("media {id} was uploaded")),
        "{stderr}"
    );

    // `resume` and `status` as well.
    let cp = saved_upload(&emu, &dir, &file, 2).await;
    let mut cmd = in_dir("status", &dir, &[]);
    cmd.stdout(full()).stderr(Stdio::piped());
    check(&finish(cmd.spawn().unwrap()).await, "status");
    let mut cmd = in_dir("resume", &dir, &["--all", "-q"]);
    cmd.stdout(full()).stderr(Stdio::piped());
    let stderr = check(&finish(cmd.spawn().unwrap()).await, "resume");
    assert!(
        stderr.contains(&format!("media {} was uploaded", cp.media_id)),
        "{stderr}"
    );
    // `config` too.
    let mut cmd = chunkwise();
    cmd.args(["config", "presets"])
        .stdout(full())
        .stderr(Stdio::piped());
    check(&finish(cmd.spawn().unwrap()).await, "config presets");
    emu.shutdown().await;
}

#[tokio::test]
async fn interrupts_save_the_checkpoint_say_how_to_resume_and_exit_with_the_signal_code() {
    // 100 ms a request, one APPEND at a time: each upload runs for seconds.
    let emu = emulator(Duration::from_millis(100)).await;
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let (_tmp, file, dir, bytes) = files(b"clip.png", 40);
        let mut cmd = upload(emu.base_url().as_str(), &dir, &file);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        until_checkpoint(&dir).await;
        let sent = Instant::now();
        send(&child, signal);
        let out = finish(child).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(sent.elapsed() < Duration::from_secs(10), "SIG{signal}");
        assert_eq!(stdout, "", "no media id: the upload did not finish");
        let files = checkpoint_files(&dir);
        assert_eq!(files.len(), 1, "SIG{signal}: the checkpoint is kept");
        let cp = Checkpoint::from_bytes(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert!(
            stderr.contains(&format!("interrupted by SIG{signal}"))
                && stderr.contains(&format!("chunkwise resume {}", cp.key())),
            "{stderr}"
        );
        if signal == "INT" {
            let out = output_within(in_dir("resume", &dir, &["--all", "-q"]), LIMIT).await;
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "{stderr}");
            assert_eq!(stdout.trim(), cp.media_id.as_str());
            assert_eq!(emu.media_sha256(&cp.media_id), Some(sha256(&bytes)));
        }
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn an_append_that_never_answers_is_abandoned_after_the_grace_or_a_second_interrupt() {
    let appends = Arc::new(Mutex::new(0));
    let count = Arc::clone(&appends);
    let inner = v2_script("1234", "7_1234", (200, "{}".into()));
    // The second APPEND hangs forever.
    let (url, _) = scripted(Arc::new(move |method, path| {
        if path.ends_with("/append") {
            let mut n = count.lock().unwrap();
            *n += 1;
            if *n >= 2 {
                return None;
            }
        }
        inner(method, path)
    }))
    .await;
    for second in [false, true] {
        *appends.lock().unwrap() = 0;
        let (_tmp, file, dir, _) = files(b"clip.png", 4);
        let mut cmd = upload(&url, &dir, &file);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let started = Instant::now();
        while *appends.lock().unwrap() < 2 {
            assert!(started.elapsed() < LIMIT);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sent = Instant::now();
        send(&child, "INT");
        if second {
            tokio::time::sleep(Duration::from_millis(200)).await;
            send(&child, "INT");
        }
        let out = finish(child).await;
        let took = sent.elapsed();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        assert!(stderr.contains("interrupt again to stop now"), "{stderr}");
        assert!(stderr.contains("chunkwise resume"), "{stderr}");
        if second {
            // Well before the 3 s grace ends.
            assert!(took < Duration::from_millis(2500), "{took:?}");
        } else {
            assert!(took >= Duration::from_secs(3), "{took:?}");
            assert!(took < Duration::from_secs(15), "{took:?}");
        }
        let cp = Checkpoint::from_bytes(&std::fs::read(&checkpoint_files(&dir)[0]).unwrap());
        assert_eq!(cp.unwrap().acked.len(), 1);
    }
}

// ---------------------------------------------------------------------------------------
// Every wait bounded

#[tokio::test]
async fn fifos_and_devices_as_settings_files_or_checkpoints_do_not_hang() {
    let emu = emulator(Duration::ZERO).await;
    let (tmp, file, dir, _) = files(b"clip.png", 2);
    let mkfifo = |path: &Path| {
        let ok = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let fifo = tmp.path().join("settings.toml");
    mkfifo(&fifo);
    let mut check = chunkwise();
    check.args(["config", "check"]).arg(&fifo);
    let mut with_fifo = upload(emu.base_url().as_str(), &dir, &file);
    with_fifo.arg("--config").arg(&fifo);
    let mut with_zero = upload(emu.base_url().as_str(), &dir, &file);
    with_zero.args(["--config", "/dev/zero"]);
    let mut from_env = upload(emu.base_url().as_str(), &dir, &file);
    from_env.env("CHUNKWISE_CONFIG", &fifo);
    for cmd in [check, with_fifo, with_zero, from_env] {
        let out = output_within(cmd, Duration::from_secs(20)).await;
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success());
        // `config check` lists the problems on stdout, the others in their error.
        assert!(
            format!("{stdout}{stderr}").contains("not a regular file"),
            "{stdout}{stderr}"
        );
    }
    assert!(emu.request_log().is_empty(), "nothing was sent");

    // A FIFO named like a checkpoint.
    std::fs::create_dir_all(&dir).unwrap();
    let trap = dir.join(format!("{}.ckpt", "0".repeat(32)));
    mkfifo(&trap);
    for cmd in [
        in_dir("status", &dir, &[]),
        in_dir("resume", &dir, &["--all"]),
        in_dir("resume", &dir, &[&"0".repeat(32)]),
    ] {
        let out = output_within(cmd, Duration::from_secs(20)).await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
    // An upload of another file looks at it (same file elsewhere?) and goes on.
    let out = output_within(upload(emu.base_url().as_str(), &dir, &file), LIMIT).await;
    assert!(out.status.success(), "{}", text(&out).1);
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Clear errors

#[tokio::test]
async fn a_finalize_that_keeps_failing_points_at_no_resume() {
    let body = serde_json::json!({"errors": [{"code": 324, "message": "Bad media, try later"}]});
    let (url, seen) = scripted(v2_script("1234", "7_1234", (400, body.to_string()))).await;
    let (_tmp, file, dir, _) = files(b"clip.png", 2);
    for run in ["first", "resumed"] {
        let out = output_within(upload(&url, &dir, &file), LIMIT).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{run}: {stderr}");
        assert!(stderr.contains("Bad media, try later"), "{run}: {stderr}");
        assert!(
            stderr.contains("run again with --no-resume to discard it"),
            "{run}: {stderr}"
        );
        assert_eq!(checkpoint_files(&dir).len(), 1, "{run}");
    }
    let inits = |seen: &Mutex<Vec<String>>| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| r.ends_with("/initialize"))
            .count()
    };
    assert_eq!(inits(&seen), 1, "the second run resumed");
    let out = output_within(in_dir("resume", &dir, &["--all"]), LIMIT).await;
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("chunkwise upload --no-resume") && stderr.contains("clip.png"),
        "{stderr}"
    );
    let mut cmd = upload(&url, &dir, &file);
    cmd.arg("--no-resume");
    output_within(cmd, LIMIT).await;
    assert_eq!(inits(&seen), 2, "--no-resume started over");
}

#[tokio::test]
async fn a_smaller_append_limit_moves_the_default_first_chunk_and_names_a_pinned_one() {
    let emu = emulator(Duration::ZERO).await;
    let (_tmp, file, dir, bytes) = files(b"clip.png", 40);
    let mut cmd = chunkwise();
    cmd.args(["upload", "--base-url", emu.base_url().as_str()])
        .args(["--max-append-bytes", "1MB", "-q", "--checkpoint-dir"])
        .arg(&dir)
        .arg(&file);
    let out = output_within(cmd, LIMIT).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let id = MediaId::from(stdout.trim());
    assert_eq!(emu.media_sha256(&id), Some(sha256(&bytes)));

    let mut cmd = chunkwise();
    cmd.args(["upload", "--base-url", emu.base_url().as_str()])
        .args(["--max-append-bytes", "1MB"])
        .args(["--set", "scheduler.initial_chunk=2MiB", "--checkpoint-dir"])
        .arg(&dir)
        .arg(&file);
    let out = output_within(cmd, LIMIT).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("scheduler.initial_chunk = \"2 MiB\" (command line --set)")
            && stderr.contains("command line --max-append-bytes"),
        "{stderr}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn config_check_lists_every_problem_of_a_file_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("many.toml");
    std::fs::write(
        &path,
        "[api]\nmedia_data = \"yes\"\ncontrol_timeout = 5\nversion = \"v3\"\n\n\
         [scheduler]\nchunk_size = \"4 MiBB\"\nmax_paralelism = 4\nparallelism = 0\n\
         initial_parallelism = \"two\"\n\n\
         [retry]\nmax_attempts = 0\nbudget_ratio = 99.0\n\n[pollling]\ndeadline = \"1m\"\n",
    )
    .unwrap();
    let mut cmd = chunkwise();
    cmd.args(["config", "check"]).arg(&path);
    let out = output_within(cmd, LIMIT).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("10 invalid settings"), "{stderr}");
    assert_eq!(stdout.lines().count(), 10, "{stdout}");
    for key in [
        "api.media_data",
        "api.version",
        "scheduler.chunk_size",
        "pollling",
    ] {
        assert!(stdout.contains(key), "{key}: {stdout}");
    }
}

#[tokio::test]
async fn partial_oauth_and_a_bearer_token_with_a_line_break_name_the_variable() {
    let emu = emulator(Duration::ZERO).await;
    let (_tmp, file, dir, _) = files(b"clip.png", 2);
    let mut partial = upload(emu.base_url().as_str(), &dir, &file);
    partial.env_remove("X_ACCESS_TOKEN_SECRET");
    let out = output_within(partial, LIMIT).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "not the demo credentials: {stderr}");
    assert!(
        stderr.contains("incomplete OAuth 1.0a credentials")
            && stderr.contains("X_ACCESS_TOKEN_SECRET is not;"),
        "{stderr}"
    );

    let mut bearer = upload(emu.base_url().as_str(), &dir, &file);
    for (name, _) in cli_support::CREDS_ENV {
        bearer.env_remove(name);
    }
    bearer.env("X_BEARER_TOKEN", "secret-bearer-value\r\n");
    let out = output_within(bearer, LIMIT).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("X_BEARER_TOKEN contains a line break"),
        "{stderr}"
    );
    assert!(!stderr.contains("builder error"), "{stderr}");
    assert!(!stderr.contains("secret-bearer-value"), "{stderr}");
    assert!(emu.request_log().is_empty(), "nothing was sent");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_resumed_upload_that_starts_over_says_why() {
    let emu = emulator(Duration::from_millis(5)).await;
    let (_tmp, file, dir, bytes) = files(b"clip.png", 4);
    let mut cp = saved_upload(&emu, &dir, &file, 2).await;
    cp.expires_at = Some(SystemTime::now() - Duration::from_secs(60));
    let store = FileCheckpointStore::new(&dir);
    store.save(&cp.key(), &cp).await.unwrap();
    let out = output_within(upload(emu.base_url().as_str(), &dir, &file), LIMIT).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot carry on media {}", cp.media_id))
            && stderr.contains("expired")
            && stderr.contains("starting over"),
        "{stderr}"
    );
    let id = MediaId::from(stdout.trim());
    assert_ne!(id, cp.media_id);
    assert_eq!(emu.media_sha256(&id), Some(sha256(&bytes)));
    emu.shutdown().await;
}

#[tokio::test]
async fn an_empty_trace_file_is_named_as_a_trace_not_an_unknown_link() {
    let (tmp, file, dir, _) = files(b"clip.png", 2);
    let trace = tmp.path().join("empty.up");
    std::fs::write(&trace, "").unwrap();
    let mut cmd = upload("http://127.0.0.1:9", &dir, &file);
    cmd.arg("--link").arg(&trace);
    let out = output_within(cmd, LIMIT).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(!stderr.contains("unknown link"), "{stderr}");
    assert!(
        stderr.contains("cannot use the trace file") && stderr.contains("empty.up"),
        "{stderr}"
    );
    // A FIFO as a trace, or as the report, is not waited on.
    let fifo = tmp.path().join("fifo.up");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let mut cmd = upload("http://127.0.0.1:9", &dir, &file);
    cmd.arg("--link").arg(&fifo);
    let out = output_within(cmd, Duration::from_secs(20)).await;
    assert!(
        text(&out).1.contains("not a regular file"),
        "{}",
        text(&out).1
    );
    let mut cmd = upload("http://127.0.0.1:9", &dir, &file);
    cmd.arg("--report").arg(&fifo);
    cmd.args(["--set", "retry.max_unreachable=1s"]);
    let out = output_within(cmd, Duration::from_secs(20)).await;
    assert!(text(&out).1.contains("unreachable"), "{}", text(&out).1);
}

// ---------------------------------------------------------------------------------------
// Output safety

#[tokio::test]
async fn server_text_reaches_the_terminal_stripped_and_cut() {
    let message = format!("{HOSTILE} media rejected {}", "x".repeat(900_000));
    let body = serde_json::json!({"errors": [{"code": 1, "message": message}], "title": HOSTILE});
    let key: &'static str = "7_1234\u{1b}[2J\u{7}";
    let (url, _) = scripted(v2_script("1234", key, (400, body.to_string()))).await;
    let (_tmp, file, dir, _) = files(b"clip.png", 2);
    let out = output_within(upload(&url, &dir, &file), LIMIT).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_terminal_safe("the error", &stderr);
    assert!(stderr.contains("[31mred[0m"), "{stderr}");
    assert!(stderr.contains("more characters)"), "{stderr}");
    assert!(stderr.len() < 4096, "{} bytes", stderr.len());
    // The media key the server sent is in the checkpoint, and `status` shows it safely.
    let out = output_within(in_dir("status", &dir, &[]), LIMIT).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_terminal_safe("status", &stdout);
    assert!(stdout.contains("media key 7_1234[2J"), "{stdout}");

    // A processing error.
    let failed = serde_json::json!({"data": {"id": "1234", "processing_info": {
        "state": "failed",
        "error": {"code": 1, "name": format!("InvalidMedia{HOSTILE}"), "message": message}
    }}});
    let (url, _) = scripted(v2_script("1234", "7_1234", (200, failed.to_string()))).await;
    let (_tmp, file, dir, _) = files(b"clip.png", 2);
    let out = output_within(upload(&url, &dir, &file), LIMIT).await;
    let (_, stderr) = text(&out);
    assert!(stderr.contains("processing failed"), "{stderr}");
    assert_terminal_safe("the processing error", &stderr);
    assert!(stderr.len() < 4096, "{} bytes", stderr.len());
}

#[tokio::test]
async fn a_checkpoint_with_a_path_for_a_media_id_is_refused() {
    let emu = emulator(Duration::ZERO).await;
    let (_tmp, file, dir, _) = files(b"clip.png", 4);
    let mut cp = saved_upload(&emu, &dir, &file, 1).await;
    cp.media_id = MediaId::from("../../../etc/passwd");
    let store = FileCheckpointStore::new(&dir);
    std::fs::write(store.path_for(&cp.key()), cp.to_bytes().unwrap()).unwrap();
    let before = emu.request_log().len();
    let out = output_within(in_dir("resume", &dir, &[cp.key().as_str()]), LIMIT).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("media id \"../../../etc/passwd\" is not 1 to 20 decimal digits"),
        "{stderr}"
    );
    assert_eq!(emu.request_log().len(), before, "nothing was sent");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_file_whose_name_is_not_utf8_resumes_with_resume_all() {
    let emu = emulator(Duration::from_millis(5)).await;
    let (_tmp, file, dir, bytes) = files(b"clip-\xff\xfe.png", 4);
    let cp = saved_upload(&emu, &dir, &file, 2).await;
    assert!(cp.source.path.as_deref().unwrap().contains('\u{fffd}'));
    let out = output_within(in_dir("resume", &dir, &["--all", "-q"]), LIMIT).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), cp.media_id.as_str());
    assert_eq!(emu.media_sha256(&cp.media_id), Some(sha256(&bytes)));
    assert!(checkpoint_files(&dir).is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn an_interrupt_while_init_hangs_stops_at_once_with_nothing_to_resume() {
    let (url, seen) = scripted(Arc::new(|_, _| None)).await;
    let (_tmp, file, dir, _) = files(b"clip.png", 2);
    let mut cmd = upload(&url, &dir, &file);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(started.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = Instant::now();
    send(&child, "TERM");
    let out = finish(child).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "no APPEND to wait for"
    );
    assert!(
        stderr.contains("before the server gave it a media id"),
        "{stderr}"
    );
    assert!(checkpoint_files(&dir).is_empty());
}
