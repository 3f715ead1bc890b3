//! Shared helpers for the integration tests: the emulator, clients, engines, test data.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use chunkwise::emulator::{Command, EmulatorConfig, EmulatorHandle, FaultConfig, RequestRecord};
use chunkwise::protocol::{ApiVersion, AppendEncoding, MediaId, XClient};
use chunkwise::scheduler::FixedStrategy;
use chunkwise::{
    Credentials, Engine, EngineConfig, MediaCategory, MediaSpec, RetryPolicy, Source, UploadReport,
};
use sha2::Digest;

/// The credentials the test emulators accept.
pub fn creds() -> Credentials {
    Credentials::oauth1(
        "test-consumer-key",
        "test-consumer-secret",
        "test-token",
        "test-token-secret",
    )
}

/// `len` deterministic pseudo-random bytes (xorshift64*), different per seed.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(&v.to_le_bytes()[..(len - out.len()).min(8)]);
    }
    out
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// Starts an emulator on 127.0.0.1:0 that accepts [`creds`].
pub async fn emulator(config: EmulatorConfig, faults: FaultConfig) -> EmulatorHandle {
    chunkwise::emulator::Emulator::builder()
        .credentials(creds())
        .config(config)
        .faults(faults)
        .start()
        .await
        .expect("emulator starts")
}

/// An X client for the emulator.
pub fn client(emu: &EmulatorHandle, api: ApiVersion, encoding: AppendEncoding) -> XClient {
    XClient::builder()
        .api(api)
        .base_url(emu.base_url())
        .credentials(creds())
        .append_encoding(encoding)
        .build()
        .expect("client builds")
}

/// An engine with a fixed strategy and a seeded retry policy.
pub fn engine(
    protocol: Arc<dyn chunkwise::protocol::UploadProtocol>,
    chunk: u64,
    parallel: usize,
) -> Engine {
    let mut config = EngineConfig::default()
        .with_fixed_strategy(FixedStrategy::new(chunk, parallel, Duration::from_secs(30)))
        .with_retry(RetryPolicy::default().with_seed(42));
    config.trace_requests = true;
    // These tests exercise the chunked path; small images would otherwise go up in one
    // request (issue 14; tests/media_cli.rs and tests/media_api.rs cover that path).
    config.one_shot = chunkwise::engine::OneShotMode::Never;
    Engine::new(protocol, config).expect("engine config is valid")
}

/// A media spec.
pub fn spec(media_type: &str, category: Option<MediaCategory>) -> MediaSpec {
    let spec = MediaSpec::new(media_type);
    match category {
        Some(c) => spec.with_category(c),
        None => spec,
    }
}

/// Uploads `bytes` and checks that the emulator assembled exactly them.
pub async fn upload_checked(
    emu: &EmulatorHandle,
    engine: &Engine,
    bytes: &[u8],
    spec: MediaSpec,
) -> UploadReport {
    let report = engine
        .upload(Source::bytes(bytes.to_vec()), spec)
        .join()
        .await
        .expect("upload succeeds");
    assert_eq!(
        emu.media_sha256(&report.media_id),
        Some(sha256(bytes)),
        "the emulator's assembled SHA-256 equals the source's"
    );
    assert_eq!(report.total_bytes, bytes.len() as u64);
    report
}

/// The APPEND records of one media, in arrival order.
pub fn appends(emu: &EmulatorHandle, id: &MediaId) -> Vec<RequestRecord> {
    emu.request_log()
        .into_iter()
        .filter(|r| r.command == Command::Append && r.media_id.as_deref() == Some(id.as_str()))
        .collect()
}

/// All APPEND records (in a test emulator that served one upload). Faulted APPENDs may
/// carry no media id or segment index: the emulator fails them before parsing the body.
pub fn all_appends(emu: &EmulatorHandle) -> Vec<RequestRecord> {
    emu.request_log()
        .into_iter()
        .filter(|r| r.command == Command::Append)
        .collect()
}

/// Asserts that only failed segments were sent again, from both sides:
/// - the client's trace: for every segment, every attempt but the last failed and the last
///   succeeded;
/// - the server's log: exactly one successful APPEND per segment index `0..n`, every other
///   APPEND failed, and the server received exactly as many APPENDs as the client attempted.
///
/// Needs `EngineConfig::trace_requests`. Returns the number of re-sent APPENDs.
pub fn assert_only_failed_segments_resent(emu: &EmulatorHandle, report: &UploadReport) -> usize {
    use chunkwise::engine::AttemptOutcome;
    assert!(!report.trace.is_empty(), "the engine recorded its attempts");
    let mut by_index: std::collections::BTreeMap<u32, Vec<_>> = Default::default();
    for a in &report.trace {
        by_index.entry(a.segment).or_default().push(a);
    }
    for (index, attempts) in &by_index {
        let (last, earlier) = attempts.split_last().expect("at least one attempt");
        assert_eq!(
            last.outcome,
            AttemptOutcome::Success,
            "segment {index}: last attempt succeeded"
        );
        for a in earlier {
            assert_ne!(
                a.outcome,
                AttemptOutcome::Success,
                "segment {index} was sent again after a success"
            );
        }
    }
    let n = report.segments;
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );

    let records = all_appends(emu);
    let ok: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .collect();
    let mut ok_indices: Vec<u32> = ok
        .iter()
        .map(|r| r.segment_index.expect("a 2xx APPEND has an index"))
        .collect();
    ok_indices.sort_unstable();
    assert_eq!(
        ok_indices,
        (0..n).collect::<Vec<_>>(),
        "one successful APPEND per segment"
    );
    assert!(
        ok.iter()
            .all(|r| r.media_id.as_deref() == Some(report.media_id.as_str()))
    );
    assert_eq!(
        records.len(),
        report.trace.len(),
        "the server saw every attempt and no other"
    );
    records.len() - ok.len()
}
