//! Uploads under injected faults complete byte-identical, and only failed segments are sent
//! again (checked in the emulator's request log).

mod support;

use std::sync::Arc;
use std::time::Duration;

use chunkwise::MediaCategory;
use chunkwise::emulator::{EmulatorConfig, FaultConfig, FaultKind, RateLimitBurst};
use chunkwise::engine::AttemptOutcome;
use chunkwise::protocol::{ApiVersion, AppendEncoding};
use support::*;

const CHUNK: u64 = 64 * 1024;
/// 48 segments of 64 KiB.
const LEN: usize = 48 * CHUNK as usize - 1000;

async fn faulty_upload(
    api: ApiVersion,
    encoding: AppendEncoding,
    faults: FaultConfig,
) -> (
    usize,
    chunkwise::UploadReport,
    Vec<chunkwise::emulator::RequestRecord>,
) {
    let emu = emulator(EmulatorConfig::default(), faults).await;
    let engine = engine(Arc::new(client(&emu, api, encoding)), CHUNK, 3);
    let bytes = data(LEN, 77);
    let report = upload_checked(
        &emu,
        &engine,
        &bytes,
        spec("video/mp4", Some(MediaCategory::TweetVideo)),
    )
    .await;
    let appends = all_appends(&emu);
    let resent = assert_only_failed_segments_resent(&emu, &report);
    assert_eq!(
        report.retries as usize, resent,
        "the report counts the re-sent APPENDs"
    );
    emu.shutdown().await;
    (resent, report, appends)
}

fn server_errors(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        append_5xx_probability: 0.2,
        ..FaultConfig::none()
    }
}

#[tokio::test]
async fn v1_survives_5xx_on_20_percent_of_appends() {
    let (resent, _, appends) =
        faulty_upload(ApiVersion::V1_1, AppendEncoding::Raw, server_errors(1)).await;
    assert!(resent > 0, "the seed injected faults");
    assert!(
        appends
            .iter()
            .filter(|a| matches!(a.fault, Some(FaultKind::ServerError(_))))
            .count()
            == resent
    );
}

#[tokio::test]
async fn v2_survives_5xx_on_20_percent_of_appends() {
    let (resent, _, _) = faulty_upload(ApiVersion::V2, AppendEncoding::Raw, server_errors(2)).await;
    assert!(resent > 0, "the seed injected faults");
}

#[tokio::test]
async fn survives_429_bursts_and_waits_for_retry_after() {
    let faults = FaultConfig {
        seed: 3,
        rate_limit_burst: Some(RateLimitBurst {
            every: 20,
            length: 2,
            retry_after: Duration::from_secs(1),
        }),
        ..FaultConfig::none()
    };
    let (resent, report, appends) =
        faulty_upload(ApiVersion::V2, AppendEncoding::Raw, faults).await;
    assert!(resent >= 2, "at least one burst hit: {resent}");
    assert!(
        appends
            .iter()
            .any(|a| a.fault == Some(FaultKind::RateLimitBurst))
    );
    // No APPEND starts after the client saw a 429 until its Retry-After (1 s) has passed;
    // requests already in flight when it arrived may still land.
    let throttled: Vec<_> = report
        .trace
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Throttled)
        .collect();
    assert!(!throttled.is_empty());
    for t in &throttled {
        for a in report.trace.iter().filter(|a| a.start_ms > t.end_ms) {
            assert!(
                a.start_ms >= t.end_ms + 999.0,
                "{a:?} started within Retry-After of {t:?}"
            );
        }
    }
    assert!(report.elapsed >= Duration::from_secs(1));
}

#[tokio::test]
async fn survives_dropped_connections() {
    let faults = FaultConfig {
        seed: 4,
        drop_connection_probability: 0.1,
        ..FaultConfig::none()
    };
    let (resent, _, appends) = faulty_upload(ApiVersion::V1_1, AppendEncoding::Raw, faults).await;
    assert!(resent > 0, "the seed dropped connections");
    assert!(
        appends
            .iter()
            .any(|a| a.fault == Some(FaultKind::DropConnection))
    );
}

#[tokio::test]
async fn survives_all_faults_at_once_with_base64() {
    let faults = FaultConfig {
        seed: 5,
        append_5xx_probability: 0.1,
        drop_connection_probability: 0.05,
        rate_limit_burst: Some(RateLimitBurst {
            every: 30,
            length: 1,
            retry_after: Duration::from_secs(1),
        }),
        ..FaultConfig::none()
    };
    let (resent, _, _) = faulty_upload(ApiVersion::V2, AppendEncoding::Base64, faults).await;
    assert!(resent > 0, "the seed injected faults");
}
