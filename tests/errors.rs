//! Errors that no retry can fix surface at once as the right typed error, without retries.

mod support;

use std::sync::Arc;

use chunkwise::emulator::{Command, EmulatorConfig, FaultConfig};
use chunkwise::protocol::{
    ApiVersion, AppendEncoding, AppendRequest, AppendResponse, InitRequest, InitResponse, MediaId,
    MediaStatus, UploadProtocol, XClient,
};
use chunkwise::{Credentials, ErrorKind, MediaCategory, Source};
use futures::future::BoxFuture;
use support::*;

/// Wraps the X client and rewrites every APPEND, to send what the engine never would.
#[derive(Debug)]
struct Tamper {
    inner: XClient,
    rewrite: fn(AppendRequest) -> AppendRequest,
}

impl UploadProtocol for Tamper {
    fn max_append_payload(&self) -> u64 {
        self.inner.max_append_payload()
    }
    fn init<'a>(&'a self, req: &'a InitRequest) -> BoxFuture<'a, chunkwise::Result<InitResponse>> {
        self.inner.init(req)
    }
    fn append(&self, req: AppendRequest) -> BoxFuture<'_, chunkwise::Result<AppendResponse>> {
        self.inner.append((self.rewrite)(req))
    }
    fn finalize<'a>(&'a self, id: &'a MediaId) -> BoxFuture<'a, chunkwise::Result<MediaStatus>> {
        self.inner.finalize(id)
    }
    fn status<'a>(&'a self, id: &'a MediaId) -> BoxFuture<'a, chunkwise::Result<MediaStatus>> {
        self.inner.status(id)
    }
}

fn count(emu: &chunkwise::emulator::EmulatorHandle, command: Command) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.command == command)
        .count()
}

#[tokio::test]
async fn wrong_signature_is_unauthorized_without_retries() {
    for api in [ApiVersion::V1_1, ApiVersion::V2] {
        let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
        let client = XClient::builder()
            .api(api)
            .base_url(emu.base_url())
            .credentials(Credentials::oauth1(
                "test-consumer-key",
                "WRONG-secret",
                "test-token",
                "test-token-secret",
            ))
            .build()
            .unwrap();
        let engine = engine(Arc::new(client), 64 * 1024, 3);
        let err = engine
            .upload(
                Source::bytes(data(1000, 1)),
                spec("image/png", Some(MediaCategory::TweetImage)),
            )
            .join()
            .await
            .expect_err("a wrong signature is refused");
        assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
        assert_eq!(err.status(), Some(401));
        assert!(!err.is_retryable());
        assert_eq!(
            emu.request_log().len(),
            1,
            "one INIT, no retry: {:?}",
            emu.request_log()
        );
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn unknown_media_id_is_media_gone_without_retries() {
    for api in [ApiVersion::V1_1, ApiVersion::V2] {
        let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
        let tamper = Tamper {
            inner: client(&emu, api, AppendEncoding::Raw),
            rewrite: |mut r| {
                r.media_id = MediaId("1234567890123456789".into());
                r
            },
        };
        let engine = engine(Arc::new(tamper), 64 * 1024, 1);
        let err = engine
            .upload(
                Source::bytes(data(200_000, 2)),
                spec("video/mp4", Some(MediaCategory::TweetVideo)),
            )
            .join()
            .await
            .expect_err("an unknown media id is refused");
        assert_eq!(err.kind(), ErrorKind::MediaGone, "{err}");
        assert_eq!(err.status(), Some(400));
        assert_eq!(err.segment(), Some(0));
        assert!(
            err.server_message().is_some(),
            "the server's text is kept: {err}"
        );
        assert_eq!(count(&emu, Command::Append), 1, "no retry");
        assert_eq!(count(&emu, Command::Finalize), 0);
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn out_of_range_segment_index_is_rejected_without_retries() {
    for api in [ApiVersion::V1_1, ApiVersion::V2] {
        let emu = emulator(EmulatorConfig::default(), FaultConfig::none()).await;
        let tamper = Tamper {
            inner: client(&emu, api, AppendEncoding::Raw),
            rewrite: |mut r| {
                r.segment_index += 1000;
                r
            },
        };
        let engine = engine(Arc::new(tamper), 64 * 1024, 1);
        let err = engine
            .upload(
                Source::bytes(data(100, 3)),
                spec("image/png", Some(MediaCategory::TweetImage)),
            )
            .join()
            .await
            .expect_err("segment 1000 is refused");
        assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
        assert_eq!(err.status(), Some(400));
        let msg = err
            .server_message()
            .map(|m| m.message.clone())
            .unwrap_or_default();
        assert!(
            msg.contains("SegmentIndex must be between 0 and 999."),
            "{err}"
        );
        assert_eq!(count(&emu, Command::Append), 1, "no retry");
        emu.shutdown().await;
    }
}
