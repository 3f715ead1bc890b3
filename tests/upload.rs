//! End-to-end uploads against the emulator: both API versions, image, GIF and video
//! categories (video and GIF through asynchronous processing), edge sizes, raw and base64
//! APPEND. Every successful upload is checked byte for byte by the emulator's SHA-256.

mod support;

use std::sync::Arc;

use chunkwise::emulator::{Command, EmulatorConfig, FaultConfig};
use chunkwise::protocol::{ApiVersion, AppendEncoding, ProcessingState};
use chunkwise::{ErrorKind, MediaCategory, Source};
use support::*;

/// Small chunks keep the segment counts meaningful while the tests stay fast.
const CHUNK: u64 = 64 * 1024;

async fn roundtrip(
    api: ApiVersion,
    encoding: AppendEncoding,
    len: usize,
    media_type: &str,
    category: Option<MediaCategory>,
) -> chunkwise::UploadReport {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let engine = engine(Arc::new(client(&emu, api, encoding)), CHUNK, 3);
    let bytes = data(len, len as u64 + 1);
    let report = upload_checked(&emu, &engine, &bytes, spec(media_type, category)).await;
    let appends = appends(&emu, &report.media_id);
    assert_eq!(
        appends.len() as u32,
        report.segments,
        "one APPEND per segment, none repeated"
    );
    assert_eq!(report.retries, 0);
    emu.shutdown().await;
    report
}

fn assert_async_processed(report: &chunkwise::UploadReport) {
    assert_eq!(
        report.processing_state,
        Some(ProcessingState::Succeeded),
        "{report:?}"
    );
}

#[tokio::test]
async fn v1_image_one_byte_raw() {
    let r = roundtrip(
        ApiVersion::V1_1,
        AppendEncoding::Raw,
        1,
        "image/png",
        Some(MediaCategory::TweetImage),
    )
    .await;
    assert_eq!(r.segments, 1);
}

#[tokio::test]
async fn v2_image_one_byte_base64() {
    let r = roundtrip(
        ApiVersion::V2,
        AppendEncoding::Base64,
        1,
        "image/jpeg",
        Some(MediaCategory::TweetImage),
    )
    .await;
    assert_eq!(r.segments, 1);
}

#[tokio::test]
async fn v1_gif_exactly_one_chunk_async() {
    let r = roundtrip(
        ApiVersion::V1_1,
        AppendEncoding::Raw,
        CHUNK as usize,
        "image/gif",
        Some(MediaCategory::TweetGif),
    )
    .await;
    assert_eq!(r.segments, 1);
    assert_async_processed(&r);
}

#[tokio::test]
async fn v2_gif_exactly_one_chunk_base64_async() {
    let r = roundtrip(
        ApiVersion::V2,
        AppendEncoding::Base64,
        CHUNK as usize,
        "image/gif",
        Some(MediaCategory::TweetGif),
    )
    .await;
    assert_eq!(r.segments, 1);
    assert_async_processed(&r);
}

#[tokio::test]
async fn v1_video_one_byte_over_a_chunk_base64() {
    let r = roundtrip(
        ApiVersion::V1_1,
        AppendEncoding::Base64,
        CHUNK as usize + 1,
        "video/mp4",
        Some(MediaCategory::TweetVideo),
    )
    .await;
    assert_eq!(r.segments, 2);
    assert_eq!((r.chunk_min, r.chunk_max), (1, CHUNK));
    assert_async_processed(&r);
}

#[tokio::test]
async fn v2_video_one_byte_over_a_chunk_raw() {
    let r = roundtrip(
        ApiVersion::V2,
        AppendEncoding::Raw,
        CHUNK as usize + 1,
        "video/mp4",
        Some(MediaCategory::TweetVideo),
    )
    .await;
    assert_eq!(r.segments, 2);
    assert_async_processed(&r);
}

#[tokio::test]
async fn v2_video_many_segments_raw() {
    let r = roundtrip(
        ApiVersion::V2,
        AppendEncoding::Raw,
        3 * 1024 * 1024 + 77,
        "video/mp4",
        Some(MediaCategory::AmplifyVideo),
    )
    .await;
    assert_eq!(r.segments, 49);
    assert_async_processed(&r);
}

#[tokio::test]
async fn image_without_category_is_finalized_synchronously() {
    let r = roundtrip(
        ApiVersion::V1_1,
        AppendEncoding::Raw,
        100_000,
        "image/png",
        None,
    )
    .await;
    assert_eq!(r.processing_state, None);
}

/// A file larger than 1000 × the configured chunk: the chunk grows so that the upload stays
/// within segment indices 0..=999.
async fn chunk_grows(api: ApiVersion, encoding: AppendEncoding) {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let chunk = 1024;
    let engine = engine(Arc::new(client(&emu, api, encoding)), chunk, 4);
    let bytes = data(1000 * chunk as usize + 123_457, 9);
    let report = upload_checked(
        &emu,
        &engine,
        &bytes,
        spec("video/mp4", Some(MediaCategory::TweetVideo)),
    )
    .await;
    let appends = appends(&emu, &report.media_id);
    assert!(report.segments <= 1000, "{} segments", report.segments);
    assert_eq!(appends.len() as u32, report.segments);
    assert!(
        appends
            .iter()
            .all(|a| a.segment_index.is_some_and(|i| i <= 999))
    );
    assert!(
        report.chunk_max > chunk,
        "the chunk grew beyond {chunk}: {}",
        report.chunk_max
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn v1_chunk_grows_to_stay_within_1000_segments() {
    chunk_grows(ApiVersion::V1_1, AppendEncoding::Raw).await;
}

#[tokio::test]
async fn v2_chunk_grows_to_stay_within_1000_segments_base64() {
    chunk_grows(ApiVersion::V2, AppendEncoding::Base64).await;
}

/// Base64 segments carry at most 3/4 of the body limit in payload: with the default 5 MiB
/// limit, 3.75 MiB of payload is exactly 5 MiB of `media_data` on the wire, which the emulator
/// accepts. A pinned chunk above the payload limit (even the fixed strategy's 4 MiB default)
/// is refused before any request.
#[tokio::test]
async fn base64_payload_is_three_quarters_of_the_body_limit() {
    const LIMIT: u64 = 5 * 1024 * 1024 / 4 * 3;
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let protocol = Arc::new(client(&emu, ApiVersion::V2, AppendEncoding::Base64));
    assert_eq!(
        chunkwise::protocol::UploadProtocol::max_append_payload(&*protocol),
        LIMIT
    );
    for fixed in [
        chunkwise::scheduler::FixedStrategy::new(
            5 * 1024 * 1024,
            2,
            std::time::Duration::from_secs(30),
        ),
        chunkwise::scheduler::FixedStrategy::default(),
    ] {
        let too_big = chunkwise::Engine::new(
            protocol.clone(),
            chunkwise::EngineConfig::default().with_fixed_strategy(fixed),
        );
        let e = too_big.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(
            e.to_string().contains(&format!("at most {LIMIT} bytes")),
            "{e}"
        );
    }

    let engine = engine(protocol, LIMIT, 2);
    let bytes = data(9 * 1024 * 1024, 5);
    let report = upload_checked(
        &emu,
        &engine,
        &bytes,
        spec("video/mp4", Some(MediaCategory::TweetVideo)),
    )
    .await;
    assert_eq!(report.chunk_max, LIMIT);
    for a in appends(&emu, &report.media_id) {
        assert!(a.body_bytes <= LIMIT);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn empty_file_is_a_clear_error_before_any_request() {
    for api in [ApiVersion::V1_1, ApiVersion::V2] {
        let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
        let engine = engine(Arc::new(client(&emu, api, AppendEncoding::Raw)), CHUNK, 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.mp4");
        std::fs::write(&path, b"").unwrap();
        let err = match Source::file(&path).await {
            Err(e) => e,
            Ok(source) => engine
                .upload(source, spec("video/mp4", Some(MediaCategory::TweetVideo)))
                .join()
                .await
                .expect_err("an empty file cannot be uploaded"),
        };
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(emu.request_log().is_empty(), "no request was sent");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn too_big_for_category_is_a_clear_error_before_any_request() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let engine = engine(
        Arc::new(client(&emu, ApiVersion::V2, AppendEncoding::Raw)),
        CHUNK,
        3,
    );
    let bytes = data(5 * 1024 * 1024 + 1, 3);
    let err = engine
        .upload(
            Source::bytes(bytes),
            spec("image/png", Some(MediaCategory::TweetImage)),
        )
        .join()
        .await
        .expect_err("an image over 5 MiB is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(emu.request_log().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn file_source_uploads_byte_identical() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
    let engine = engine(
        Arc::new(client(&emu, ApiVersion::V2, AppendEncoding::Raw)),
        CHUNK,
        3,
    );
    let bytes = data(700_001, 11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let source = Source::file(&path).await.unwrap();
    let report = engine
        .upload(source, spec("video/mp4", Some(MediaCategory::TweetVideo)))
        .join()
        .await
        .unwrap();
    assert_eq!(emu.media_sha256(&report.media_id), Some(sha256(&bytes)));
    let log = emu.request_log();
    assert_eq!(log.first().map(|r| r.command), Some(Command::Init));
    emu.shutdown().await;
}
