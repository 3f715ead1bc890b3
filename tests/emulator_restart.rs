//! The emulator stopped and started again on the same state directory and address in the
//! middle of an upload: the client waits for it, carries on with the same media id, and the
//! media is byte-identical at the end.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chunkwise::emulator::{Command, Emulator, EmulatorHandle, FaultConfig};
use chunkwise::engine::UploadEvent;
use chunkwise::protocol::{ApiVersion, AppendEncoding};
use chunkwise::{MediaCategory, Source};
use support::{client, creds, data, engine, sha256, spec};

const CHUNK: u64 = 32 * 1024;

/// How long the server is away. Requests that cannot connect meanwhile are retried about
/// every 0.1-5 s (the transient backoff); if each refusal spent an attempt, 5 attempts
/// would run out in about a second.
const SERVER_AWAY: Duration = Duration::from_secs(3);

async fn start(dir: &std::path::Path, bind: Option<std::net::SocketAddr>) -> EmulatorHandle {
    let mut b = Emulator::builder()
        .credentials(creds())
        .state_dir(dir)
        // A little latency, so the restart lands while APPENDs are still to come.
        .faults(FaultConfig {
            added_latency: Duration::from_millis(20),
            ..FaultConfig::none()
        });
    if let Some(addr) = bind {
        b = b.bind(addr);
    }
    b.start().await.expect("the emulator starts")
}

#[tokio::test]
async fn a_restart_mid_upload_keeps_the_session_and_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), None).await;
    let addr = first.addr();
    let engine = engine(
        Arc::new(client(&first, ApiVersion::V2, AppendEncoding::Raw)),
        CHUNK,
        2,
    );
    let bytes = data(40 * CHUNK as usize + 123, 9);
    let mut upload = engine.upload(
        Source::bytes(bytes.clone()),
        spec("video/mp4", Some(MediaCategory::TweetVideo)),
    );
    let mut done = 0;
    let mut refused = 0;
    let mut first = Some(first);
    let mut second = None;
    while let Some(event) = upload.next_event().await {
        match &event {
            UploadEvent::SegmentDone { .. } => done += 1,
            UploadEvent::Unreachable { error, .. } => {
                assert!(error.contains("could not connect"), "{error}");
                refused += 1;
            }
            _ => {}
        }
        if done == 10 {
            if let Some(emu) = first.take() {
                // The upload runs on while the server is away (those in flight finish).
                emu.shutdown().await;
                tokio::time::sleep(SERVER_AWAY).await;
                second = Some(start(dir.path(), Some(addr)).await);
            }
        }
    }
    let report = upload
        .join()
        .await
        .expect("the upload carries on after the restart");
    let second = second.expect("the emulator was restarted");
    assert!(
        refused >= 1,
        "requests were refused while the server was away"
    );
    assert!(!report.restarted, "the same media id was used throughout");
    assert_eq!(second.media_sha256(&report.media_id), Some(sha256(&bytes)));
    assert_eq!(
        second.media_bytes(&report.media_id).await.as_deref(),
        Some(&bytes[..])
    );
    let log = second.request_log();
    assert!(
        log.iter().all(|r| r.command != Command::Init),
        "no new INIT after the restart"
    );
    assert!(
        log.iter()
            .any(|r| r.command == Command::Append && r.status / 100 == 2),
        "APPENDs went on after the restart"
    );
    assert!(log.iter().any(|r| r.command == Command::Finalize));
    assert!(log.iter().any(|r| r.command == Command::Status));

    // A second restart still knows the finalized media; new ids do not repeat old ones.
    second.shutdown().await;
    let third = start(dir.path(), Some(addr)).await;
    assert_eq!(third.media_sha256(&report.media_id), Some(sha256(&bytes)));
    let engine = support::engine(
        Arc::new(client(&third, ApiVersion::V1_1, AppendEncoding::Raw)),
        CHUNK,
        2,
    );
    let small = data(1000, 3);
    let again = support::upload_checked(
        &third,
        &engine,
        &small,
        spec("image/png", Some(MediaCategory::TweetImage)),
    )
    .await;
    assert_ne!(again.media_id, report.media_id);
    third.shutdown().await;
    // Nothing in the state directory is deleted at shutdown.
    assert!(dir.path().join("emulator.json").is_file());
}

#[tokio::test]
async fn without_a_state_dir_a_restart_forgets() {
    let emu = support::emulator(Default::default(), FaultConfig::none()).await;
    let addr = emu.addr();
    let engine = engine(
        Arc::new(client(&emu, ApiVersion::V2, AppendEncoding::Raw)),
        CHUNK,
        1,
    );
    let bytes = data(1000, 4);
    let report = support::upload_checked(
        &emu,
        &engine,
        &bytes,
        spec("image/png", Some(MediaCategory::TweetImage)),
    )
    .await;
    emu.shutdown().await;
    let again = Emulator::builder()
        .credentials(creds())
        .bind(addr)
        .start()
        .await
        .unwrap();
    assert_eq!(again.media_sha256(&report.media_id), None);
    again.shutdown().await;
}
