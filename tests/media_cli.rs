//! Issue 14 end to end through the `chunkwise` binary against an in-process emulator: an
//! image with alt text goes up in one request; a video gets two subtitle tracks, then one is
//! removed with `chunkwise subtitles delete` (its INIT carrying `--additional-owners` and
//! `--shared`); `chunkwise media-status` asks for a media's processing state.

#![cfg(unix)]

mod cli_support;
mod support;

use chunkwise::emulator::{ApiVersion as LogApi, Command as ApiCommand, EmulatorHandle};
use chunkwise::emulator::{EmulatorConfig, FaultConfig};
use chunkwise::protocol::MediaId;

use cli_support::{chunkwise, fail, succeed};
use support::{data, emulator};

/// A PNG header (so the emulator sniffs its size) padded to `len` bytes.
fn png(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x02\x80\0\0\x01\xe0".to_vec();
    v.extend(data(len - v.len(), 5));
    v
}

fn upload(emu: &EmulatorHandle, dir: &std::path::Path, api: &str) -> std::process::Command {
    let mut cmd = chunkwise();
    cmd.args([
        "upload",
        "--base-url",
        emu.base_url().as_str(),
        "--api",
        api,
    ])
    .arg("--checkpoint-dir")
    .arg(dir.join("ckpt"));
    cmd
}

fn uploads(emu: &EmulatorHandle) -> Vec<ApiCommand> {
    emu.request_log()
        .iter()
        .map(|r| r.command)
        .filter(|c| {
            matches!(
                c,
                ApiCommand::Init | ApiCommand::Append | ApiCommand::Finalize | ApiCommand::Simple
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_alt_text_goes_up_in_one_request_in_both_versions() {
    for api in ["v2", "v1"] {
        let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("photo.png");
        let bytes = png(200 * 1000);
        std::fs::write(&file, &bytes).unwrap();
        let mut cmd = upload(&emu, tmp.path(), api);
        cmd.arg(&file)
            .args(["--alt-text", "A red bicycle leaning on a wall"]);
        let (stdout, stderr) = succeed(cmd).await;
        let id = MediaId(stdout.trim().to_string());
        assert!(stderr.contains("one-shot"), "{stderr}");
        // Exactly one upload request: the one-shot, no INIT/APPEND/FINALIZE.
        assert_eq!(uploads(&emu), vec![ApiCommand::Simple], "{api}");
        let log = emu.request_log();
        let meta: Vec<_> = log
            .iter()
            .filter(|r| r.command == ApiCommand::Metadata)
            .collect();
        assert_eq!(meta.len(), 1);
        assert_eq!(meta[0].status, 200);
        let want_api = if api == "v2" { LogApi::V2 } else { LogApi::V1 };
        assert!(log.iter().all(|r| r.api == want_api), "{log:?}");
        assert_eq!(emu.media_bytes(&id).await.unwrap(), bytes);
        assert_eq!(
            emu.alt_text(&id).as_deref(),
            Some("A red bicycle leaning on a wall")
        );

        // `--one-shot never` takes the chunked path for the same file.
        emu.clear_request_log();
        let mut cmd = upload(&emu, tmp.path(), api);
        cmd.arg(&file).args(["--one-shot", "never", "--no-resume"]);
        succeed(cmd).await;
        assert_eq!(
            uploads(&emu),
            vec![ApiCommand::Init, ApiCommand::Append, ApiCommand::Finalize]
        );
        emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_text_that_is_too_long_or_on_a_video_fails_before_any_request() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("photo.png");
    std::fs::write(&image, png(1000)).unwrap();
    let video = tmp.path().join("clip.mp4");
    std::fs::write(&video, data(1000, 2)).unwrap();
    let mut cmd = upload(&emu, tmp.path(), "v2");
    cmd.arg(&image).args(["--alt-text", &"x".repeat(1001)]);
    let err = fail(cmd).await;
    assert!(err.contains("1001 characters"), "{err}");
    let mut cmd = upload(&emu, tmp.path(), "v2");
    cmd.arg(&video).args(["--alt-text", "a video"]);
    let err = fail(cmd).await;
    assert!(err.contains("images and GIFs only"), "{err}");
    let mut cmd = upload(&emu, tmp.path(), "v2");
    cmd.arg(&video)
        .args(["--subtitles", "english:English:subs.srt"]);
    let err = fail(cmd).await;
    assert!(err.contains("language code"), "{err}");
    assert!(emu.request_log().is_empty(), "{:?}", emu.request_log());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_gets_two_subtitle_tracks_then_one_is_deleted() {
    for api in ["v2", "v1"] {
        let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
        let tmp = tempfile::tempdir().unwrap();
        let video = tmp.path().join("clip.mp4");
        std::fs::write(&video, data(300 * 1024, 9)).unwrap();
        let en = tmp.path().join("en.srt");
        std::fs::write(&en, "1\n00:00:00,000 --> 00:00:01,000\nHello\n").unwrap();
        let ja = tmp.path().join("ja.vtt");
        std::fs::write(&ja, "WEBVTT\n\n00:00.000 --> 00:01.000\nこんにちは\n").unwrap();
        let mut cmd = upload(&emu, tmp.path(), api);
        cmd.arg(&video)
            .arg("--subtitles")
            .arg(format!("EN:English:{}", en.display()))
            .arg("--subtitles")
            .arg(format!("ja:日本語:{}", ja.display()))
            .args(["--additional-owners", "4242,77", "--shared"]);
        let (stdout, stderr) = succeed(cmd).await;
        let id = MediaId(stdout.trim().to_string());
        // INIT's additional_owners and shared reached the server.
        assert_eq!(
            emu.sharing(&id),
            Some((vec!["4242".to_string(), "77".to_string()], true)),
            "{api}"
        );
        assert!(stderr.contains("EN subtitles attached"), "{stderr}");
        let tracks = emu.subtitles(&id);
        let langs: Vec<(&str, &str)> = tracks
            .iter()
            .map(|(l, _, n)| (l.as_str(), n.as_str()))
            .collect();
        assert_eq!(langs, vec![("EN", "English"), ("JA", "日本語")], "{api}");
        for (_, sub, _) in &tracks {
            assert!(emu.media_bytes(sub).await.is_some());
        }
        let log = emu.request_log();
        let creates = log
            .iter()
            .filter(|r| r.command == ApiCommand::SubtitlesCreate && r.status == 200)
            .count();
        assert_eq!(creates, 2);

        let mut cmd = chunkwise();
        cmd.args(["subtitles", "delete", id.as_str(), "en"]).args([
            "--base-url",
            emu.base_url().as_str(),
            "--api",
            api,
        ]);
        succeed(cmd).await;
        let left: Vec<String> = emu.subtitles(&id).into_iter().map(|t| t.0).collect();
        assert_eq!(left, vec!["JA".to_string()]);
        // Deleting it again is the server's error, printed on one line.
        let mut cmd = chunkwise();
        cmd.args(["subtitles", "delete", id.as_str(), "EN"]).args([
            "--base-url",
            emu.base_url().as_str(),
            "--api",
            api,
        ]);
        let err = fail(cmd).await;
        assert!(err.contains("no subtitles in that language"), "{err}");

        // The video was processed asynchronously: STATUS answers for it.
        let mut cmd = chunkwise();
        cmd.args(["media-status", id.as_str()]).args([
            "--base-url",
            emu.base_url().as_str(),
            "--api",
            api,
        ]);
        let (stdout, _) = succeed(cmd).await;
        let status: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(status["media_id"], id.as_str());
        assert_eq!(status["processing_info"]["state"], "succeeded");
        emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_text_given_to_a_resumed_upload_is_set_too() {
    use chunkwise::engine::UploadEvent;
    use chunkwise::protocol::{ApiVersion, AppendEncoding};
    use chunkwise::scheduler::FixedStrategy;
    use chunkwise::{Engine, EngineConfig, FileCheckpointStore, MediaCategory, MediaSpec, Source};
    use std::sync::Arc;
    use std::time::Duration;

    let emu = chunkwise::emulator::Emulator::builder()
        .credentials(support::creds())
        .faults(FaultConfig {
            added_latency: Duration::from_millis(20),
            ..FaultConfig::none()
        })
        .start()
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("photo.png");
    let bytes = png(8 * 32 * 1024);
    std::fs::write(&file, &bytes).unwrap();
    // An interrupted upload of the file, saved where the CLI looks.
    let config = EngineConfig::default()
        .with_fixed_strategy(FixedStrategy::new(32 * 1024, 1, Duration::from_secs(30)))
        .with_checkpoint_store(Arc::new(FileCheckpointStore::new(tmp.path().join("ckpt"))));
    let client = support::client(&emu, ApiVersion::V2, AppendEncoding::Raw);
    let engine = Engine::new(Arc::new(client), config).unwrap();
    let mut up = engine.upload(
        Source::file(&file).await.unwrap(),
        MediaSpec::new("image/png").with_category(MediaCategory::TweetImage),
    );
    while let Some(e) = up.next_event().await {
        if matches!(e, UploadEvent::SegmentDone { .. }) {
            break;
        }
    }
    up.cancel().await.unwrap();

    let mut cmd = upload(&emu, tmp.path(), "v2");
    cmd.arg(&file).args(["--alt-text", "kept on resume"]);
    let (stdout, _) = succeed(cmd).await;
    let id = MediaId(stdout.trim().to_string());
    assert_eq!(emu.media_bytes(&id).await.unwrap(), bytes);
    assert_eq!(emu.alt_text(&id).as_deref(), Some("kept on resume"));
    // Carried on chunked: one INIT in all.
    let inits = uploads(&emu)
        .into_iter()
        .filter(|c| *c == ApiCommand::Init)
        .count();
    assert_eq!(inits, 1);
    emu.shutdown().await;
}
