//! The emulator's alt text and subtitles endpoints (issue 14, protocol.md §12), one test per
//! validation rule in both versions, driven by raw signed requests (so the client's own
//! checks do not stand in the way) and by the X client; and the engine's one-shot and
//! after-ready steps against the emulator.

mod support;

use std::sync::Arc;

use chunkwise::emulator::{Emulator, EmulatorConfig, EmulatorHandle, RateLimitConfig};
use chunkwise::engine::{OneShotMode, SubtitleSource, SubtitleTrack, UploadEvent};
use chunkwise::protocol::{
    ApiVersion, AppendEncoding, AppendRequest, InitRequest, MediaId, UploadProtocol, XClient,
};
use chunkwise::{Credentials, Engine, EngineConfig, ErrorKind, MediaCategory, MediaSpec, Source};
use serde_json::{Value, json};
use support::{client, creds, data};

const OTHER_TOKEN: &str = "77-other-user-token";

struct T {
    emu: EmulatorHandle,
    http: reqwest::Client,
}

/// A response as the test reads it.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Answer {
    /// The first error message of either error shape.
    fn message(&self) -> &str {
        self.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
    }
    fn code(&self) -> Option<i64> {
        self.body["errors"][0]["code"].as_i64()
    }
}

impl T {
    async fn start(config: EmulatorConfig) -> T {
        let emu = Emulator::builder()
            .credentials(creds())
            .credentials(Credentials::oauth1("ck2", "cs2", OTHER_TOKEN, "ts2"))
            .credentials(Credentials::bearer("bearer-token"))
            .config(config)
            .start()
            .await
            .unwrap();
        T {
            emu,
            http: reqwest::Client::new(),
        }
    }

    async fn default() -> T {
        T::start(EmulatorConfig::default()).await
    }

    fn client(&self, api: ApiVersion) -> XClient {
        client(&self.emu, api, AppendEncoding::Raw)
    }

    /// A raw request with a body of `content_type`, signed by `who` over the URL alone.
    async fn send(
        &self,
        who: &Credentials,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let url = self.emu.base_url().join(path).unwrap();
        let auth = who.authorization(method.as_str(), &url, &[]);
        let r = self
            .http
            .request(method, url)
            .header("authorization", auth)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> Answer {
        self.send(
            &creds(),
            method,
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// A raw body of `content_type` to the v2 metadata endpoint.
    async fn raw_meta(&self, content_type: &str, body: &[u8]) -> Answer {
        self.send(
            &creds(),
            reqwest::Method::POST,
            V2_META,
            content_type,
            body.to_vec(),
        )
        .await
    }

    /// v2 `DELETE /2/media/subtitles` of `video`'s `lang` track.
    async fn v2_delete(&self, video: &MediaId, lang: &str) -> Answer {
        let body =
            json!({"id": video.as_str(), "media_category": "TweetVideo", "language_code": lang});
        self.json(reqwest::Method::DELETE, V2_SUBS, body).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.json(reqwest::Method::POST, path, body).await
    }

    /// Uploads `len` bytes as `media_type`/`category` with INIT, APPEND and (unless
    /// `finalize` is false) FINALIZE; returns the id.
    async fn media(
        &self,
        media_type: &str,
        category: Option<MediaCategory>,
        len: usize,
        finalize: bool,
    ) -> MediaId {
        let c = self.client(ApiVersion::V2);
        let init = c
            .init(&InitRequest {
                total_bytes: len as u64,
                media_type: media_type.into(),
                media_category: category,
                additional_owners: Vec::new(),
                shared: None,
            })
            .await
            .unwrap();
        c.append(AppendRequest {
            media_id: init.media_id.clone(),
            segment_index: 0,
            data: data(len, 3).into(),
            sent: None,
        })
        .await
        .unwrap();
        if finalize {
            c.finalize(&init.media_id).await.unwrap();
        }
        init.media_id
    }

    async fn image(&self) -> MediaId {
        self.media("image/png", Some(MediaCategory::TweetImage), 100, true)
            .await
    }
    async fn video(&self) -> MediaId {
        self.media("video/mp4", Some(MediaCategory::TweetVideo), 100, true)
            .await
    }
    async fn srt(&self) -> MediaId {
        self.media("text/srt", Some(MediaCategory::Subtitles), 40, true)
            .await
    }
}

fn v2_alt(id: &str, text: &str) -> Value {
    json!({"id": id, "metadata": {"alt_text": {"text": text}}})
}
fn v1_alt(id: &str, text: &str) -> Value {
    json!({"media_id": id, "alt_text": {"text": text}})
}
fn v2_sub(video: &str, sub: &str, lang: &str) -> Value {
    json!({"id": video, "media_category": "TweetVideo",
           "subtitles": {"id": sub, "language_code": lang, "display_name": "English"}})
}
fn v1_sub(video: &str, sub: &str, lang: &str) -> Value {
    json!({"media_id": video, "media_category": "TweetVideo",
           "subtitle_info": {"subtitles": [{"media_id": sub, "language_code": lang, "display_name": "English"}]}})
}

const V2_META: &str = "/2/media/metadata";
const V1_META: &str = "/1.1/media/metadata/create.json";
const V2_SUBS: &str = "/2/media/subtitles";
const V1_SUBS: &str = "/1.1/media/subtitles/create.json";
const V1_SUBS_DELETE: &str = "/1.1/media/subtitles/delete.json";

/// A v2 invalid-request problem with `message`.
fn assert_v2(a: &Answer, message: &str) {
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["title"], "Invalid Request", "{}", a.body);
    assert_eq!(a.message(), message);
}

/// A v1.1 standard-shape error with `code` and `message`.
fn assert_v1(a: &Answer, code: i64, message: &str) {
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.code(), Some(code), "{}", a.body);
    assert_eq!(a.message(), message);
}

#[tokio::test]
async fn alt_text_is_set_on_finalized_images_and_gifs() {
    let t = T::default().await;
    let img = t.image().await;
    let a = t.post(V2_META, v2_alt(img.as_str(), "a cat")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["id"], img.as_str());
    assert!(a.headers.contains_key("x-rate-limit-remaining"));
    assert_eq!(t.emu.alt_text(&img).as_deref(), Some("a cat"));
    let gif = t
        .media("image/gif", Some(MediaCategory::TweetGif), 100, true)
        .await;
    let a = t.post(V1_META, v1_alt(gif.as_str(), "a dancing cat")).await;
    assert_eq!(a.status, 200);
    assert_eq!(t.emu.alt_text(&gif).as_deref(), Some("a dancing cat"));
    // Through the client, both versions.
    for api in [ApiVersion::V1_1, ApiVersion::V2] {
        t.client(api)
            .set_alt_text(&img, "a black cat")
            .await
            .unwrap();
        assert_eq!(t.emu.alt_text(&img).as_deref(), Some("a black cat"));
    }
    t.emu.shutdown().await;
}

#[tokio::test]
async fn alt_text_longer_than_the_configured_limit_is_rejected() {
    // 420 characters, as the zh/ja docs say (protocol.md §12): the limit is configurable.
    let t = T::start(EmulatorConfig {
        alt_text_max_chars: 420,
        ..EmulatorConfig::default()
    })
    .await;
    let img = t.image().await;
    let long = "é".repeat(421);
    assert_v2(
        &t.post(V2_META, v2_alt(img.as_str(), &long)).await,
        "Alt text must be at most 420 characters.",
    );
    assert_v1(
        &t.post(V1_META, v1_alt(img.as_str(), &long)).await,
        324,
        "Alt text must be at most 420 characters.",
    );
    let ok = t
        .post(V2_META, v2_alt(img.as_str(), &"é".repeat(420)))
        .await;
    assert_eq!(ok.status, 200);
    t.emu.shutdown().await;
}

#[tokio::test]
async fn alt_text_on_a_video_or_unfinalized_or_unknown_media_is_rejected() {
    let t = T::default().await;
    let video = t.video().await;
    assert_v2(
        &t.post(V2_META, v2_alt(video.as_str(), "x")).await,
        "Alt text can only be added to images and GIFs.",
    );
    assert_v1(
        &t.post(V1_META, v1_alt(video.as_str(), "x")).await,
        324,
        "Alt text can only be added to images and GIFs.",
    );
    let open = t
        .media("image/png", Some(MediaCategory::TweetImage), 10, false)
        .await;
    assert_v2(
        &t.post(V2_META, v2_alt(open.as_str(), "x")).await,
        "Media has not been finalized.",
    );
    assert_v1(
        &t.post(V1_META, v1_alt(open.as_str(), "x")).await,
        324,
        "Media has not been finalized.",
    );
    assert_v2(
        &t.post(V2_META, v2_alt("123", "x")).await,
        "BadRequest: Not found",
    );
    assert_v1(
        &t.post(V1_META, v1_alt("123", "x")).await,
        324,
        "Invalid media_id: Some(123).",
    );
    // Another user's image is unknown to this one.
    let img = t.image().await;
    let other = Credentials::oauth1("ck2", "cs2", OTHER_TOKEN, "ts2");
    let a = t
        .send(
            &other,
            reqwest::Method::POST,
            V2_META,
            "application/json",
            v2_alt(img.as_str(), "x").to_string().into_bytes(),
        )
        .await;
    assert_v2(&a, "BadRequest: Not found");
    // Through the client: a typed error carrying the server's text.
    let e = t
        .client(ApiVersion::V2)
        .set_alt_text(&video, "x")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.to_string().contains("images and GIFs"), "{e}");
    t.emu.shutdown().await;
}

#[tokio::test]
async fn malformed_metadata_requests_are_rejected_in_each_shape() {
    let t = T::default().await;
    let img = t.image().await;
    assert_v2(
        &t.post(V2_META, json!({"id": img.as_str()})).await,
        "The `metadata` field is required.",
    );
    assert_v2(
        &t.post(
            V2_META,
            json!({"id": img.as_str(), "metadata": {"alt_text": {}}}),
        )
        .await,
        "The `text` field is required.",
    );
    assert_v1(
        &t.post(V1_META, json!({"alt_text": {"text": "x"}})).await,
        38,
        "media_id parameter is missing.",
    );
    assert_v2(
        &t.post(V2_META, json!({"id": 12.5, "metadata": {}})).await,
        "The `id` field is invalid.",
    );
    let a = t.raw_meta("text/plain", b"id=1").await;
    assert_v2(
        &a,
        "Requests with bodies must have content-type of application/json.",
    );
    let a = t.raw_meta("application/json", b"{not json").await;
    assert_v2(&a, "Request body is not valid JSON.");
    assert_v2(
        &t.post(V2_META, json!([1, 2])).await,
        "Request body must be a JSON object.",
    );
    // Wrong method, wrong credentials.
    let a = t.json(reqwest::Method::GET, V2_META, json!({})).await;
    assert_eq!(a.status, 404);
    let a = t
        .send(
            &Credentials::bearer("bearer-token"),
            reqwest::Method::POST,
            V1_META,
            "application/json",
            v1_alt(img.as_str(), "x").to_string().into_bytes(),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (401, Some(32)),
        "v1.1 is OAuth 1.0a only"
    );
    t.emu.shutdown().await;
}

#[tokio::test]
async fn subtitles_attach_to_finalized_videos_and_delete() {
    let t = T::default().await;
    let video = t.video().await;
    let en = t.srt().await;
    let ja = t.srt().await;
    let a = t
        .post(V2_SUBS, v2_sub(video.as_str(), en.as_str(), "EN"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = t
        .post(V1_SUBS, v1_sub(video.as_str(), ja.as_str(), "JA"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let langs: Vec<String> = t.emu.subtitles(&video).into_iter().map(|x| x.0).collect();
    assert_eq!(langs, ["EN", "JA"]);
    let a = t.v2_delete(&video, "EN").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = t
        .post(
            V1_SUBS_DELETE,
            json!({"media_id": video.as_str(), "media_category": "TweetVideo",
                   "subtitle_info": {"subtitles": [{"language_code": "JA"}]}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(t.emu.subtitles(&video).is_empty());
    // Deleting a language the video does not have.
    let a = t.v2_delete(&video, "EN").await;
    assert_v2(&a, "The video has no subtitles in that language.");
    t.emu.shutdown().await;
}

#[tokio::test]
async fn subtitles_need_a_finalized_video_and_a_subtitles_media() {
    let t = T::default().await;
    let video = t.video().await;
    let srt = t.srt().await;
    let image = t.image().await;
    let open_video = t
        .media("video/mp4", Some(MediaCategory::TweetVideo), 10, false)
        .await;
    let open_srt = t
        .media("text/srt", Some(MediaCategory::Subtitles), 10, false)
        .await;
    for (video_id, sub, want) in [
        (&open_video, &srt, "Media has not been finalized."),
        (&video, &open_srt, "Media has not been finalized."),
        (
            &video,
            &image,
            "Subtitle media must be uploaded with media_category subtitles.",
        ),
        (&image, &srt, "Subtitles can only be added to videos."),
    ] {
        assert_v2(
            &t.post(V2_SUBS, v2_sub(video_id.as_str(), sub.as_str(), "EN"))
                .await,
            want,
        );
        assert_v1(
            &t.post(V1_SUBS, v1_sub(video_id.as_str(), sub.as_str(), "EN"))
                .await,
            324,
            want,
        );
    }
    assert_v2(
        &t.post(V2_SUBS, v2_sub(video.as_str(), "999", "EN")).await,
        "BadRequest: Not found",
    );
    assert_v1(
        &t.post(V1_SUBS, v1_sub("999", srt.as_str(), "EN")).await,
        324,
        "Invalid media_id: Some(999).",
    );
    assert!(t.emu.subtitles(&video).is_empty());
    t.emu.shutdown().await;
}

#[tokio::test]
async fn subtitle_fields_are_validated() {
    let t = T::default().await;
    let video = t.video().await;
    let srt = t.srt().await;
    for lang in ["en", "ENG", "E1", ""] {
        assert_v2(
            &t.post(V2_SUBS, v2_sub(video.as_str(), srt.as_str(), lang))
                .await,
            "The `language_code` field is invalid.",
        );
        assert_v1(
            &t.post(V1_SUBS, v1_sub(video.as_str(), srt.as_str(), lang))
                .await,
            324,
            "language_code parameter is invalid.",
        );
    }
    let mut body = v2_sub(video.as_str(), srt.as_str(), "EN");
    body["media_category"] = "tweet_video".into();
    assert_v2(
        &t.post(V2_SUBS, body).await,
        "The `media_category` field is invalid.",
    );
    let mut body = v2_sub(video.as_str(), srt.as_str(), "EN");
    body["subtitles"]["display_name"] = " ".into();
    assert_v2(
        &t.post(V2_SUBS, body).await,
        "The `display_name` field is invalid.",
    );
    assert_v2(
        &t.post(
            V2_SUBS,
            json!({"id": video.as_str(), "media_category": "TweetVideo"}),
        )
        .await,
        "The `subtitles` field is required.",
    );
    assert_v1(
        &t.post(
            V1_SUBS,
            json!({"media_id": video.as_str(), "media_category": "TweetVideo",
                   "subtitle_info": {"subtitles": []}}),
        )
        .await,
        324,
        "subtitles parameter is invalid.",
    );
    assert_v2(
        &t.json(
            reqwest::Method::DELETE,
            V2_SUBS,
            json!({"id": video.as_str(), "language_code": "EN"}),
        )
        .await,
        "The `media_category` field is required.",
    );
    t.emu.shutdown().await;
}

#[tokio::test]
async fn metadata_and_subtitles_have_their_own_rate_limits() {
    let t = T::start(EmulatorConfig {
        rate_limits: RateLimitConfig {
            v2_metadata: 1,
            v1_metadata: 1,
            v2_subtitles: 1,
            ..RateLimitConfig::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let img = t.image().await;
    let video = t.video().await;
    let srt = t.srt().await;
    assert_eq!(t.post(V2_META, v2_alt(img.as_str(), "a")).await.status, 200);
    let a = t.post(V2_META, v2_alt(img.as_str(), "b")).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["title"], "Too Many Requests");
    assert_eq!(a.headers["x-rate-limit-limit"], "1");
    assert_eq!(a.headers["x-rate-limit-remaining"], "0");
    assert_eq!(t.post(V1_META, v1_alt(img.as_str(), "c")).await.status, 200);
    let a = t.post(V1_META, v1_alt(img.as_str(), "d")).await;
    assert_eq!((a.status, a.code()), (429, Some(88)));
    let sub = v2_sub(video.as_str(), srt.as_str(), "EN");
    assert_eq!(t.post(V2_SUBS, sub.clone()).await.status, 200);
    assert_eq!(t.post(V2_SUBS, sub).await.status, 429);
    // Delete is its own endpoint with the same limit.
    let a = t.v2_delete(&video, "EN").await;
    assert_eq!(a.status, 200);
    // The client maps a 429 onto a retryable, throttled error.
    let e = t
        .client(ApiVersion::V2)
        .set_alt_text(&img, "e")
        .await
        .unwrap_err();
    assert!(e.is_throttled() && e.retry_after().is_some(), "{e}");
    assert_eq!(t.emu.alt_text(&img).as_deref(), Some("c"));
    t.emu.shutdown().await;
}

/// An engine over the emulator with `mode`.
fn engine(t: &T, api: ApiVersion, mode: OneShotMode) -> Engine {
    let config = EngineConfig {
        one_shot: mode,
        ..EngineConfig::default()
    }
    .with_retry(chunkwise::RetryPolicy::default().with_seed(7));
    Engine::new(Arc::new(t.client(api)), config).unwrap()
}

#[tokio::test]
async fn the_engine_chooses_the_one_shot_path_by_mode_and_media() {
    let t = T::default().await;
    let png = |len: usize| {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend(data(len - 8, 1));
        v
    };
    let count = |t: &T, c| {
        t.emu
            .request_log()
            .iter()
            .filter(|r| r.command == c)
            .count()
    };
    use chunkwise::emulator::Command as C;
    for api in [ApiVersion::V1_1, ApiVersion::V2] {
        // auto: a small image in one request, with its alt text after it.
        t.emu.clear_request_log();
        let spec = MediaSpec::new("image/png").with_alt_text("a chart");
        let mut up = engine(&t, api, OneShotMode::Auto).upload(Source::bytes(png(50_000)), spec);
        let mut events = Vec::new();
        while let Some(e) = up.next_event().await {
            events.push(e);
        }
        let report = up.join().await.unwrap();
        assert!(report.one_shot && report.alt_text_set, "{report:?}");
        assert_eq!(report.segments, 1);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, UploadEvent::OneShot { .. }))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, UploadEvent::AltTextSet { .. }))
        );
        assert_eq!((count(&t, C::Simple), count(&t, C::Init)), (1, 0));
        assert_eq!(t.emu.alt_text(&report.media_id).as_deref(), Some("a chart"));

        // auto: a file larger than the first chunk (1 MiB) goes chunked.
        t.emu.clear_request_log();
        let report = engine(&t, api, OneShotMode::Auto)
            .upload(Source::bytes(png(1_500_000)), MediaSpec::new("image/png"))
            .join()
            .await
            .unwrap();
        assert!(!report.one_shot);
        assert_eq!(count(&t, C::Simple), 0);

        // `shared` is an INIT field: such media goes chunked, and `shared` reaches INIT.
        t.emu.clear_request_log();
        let spec = MediaSpec::new("image/png")
            .with_category(MediaCategory::DmImage)
            .with_shared(true)
            .with_additional_owners(vec!["4242".into()]);
        let report = engine(&t, api, OneShotMode::Auto)
            .upload(Source::bytes(png(5000)), spec.clone())
            .join()
            .await
            .unwrap();
        assert!(!report.one_shot);
        assert_eq!(count(&t, C::Init), 1);
        // always: refused before any request for such media.
        t.emu.clear_request_log();
        let e = engine(&t, api, OneShotMode::Always)
            .upload(Source::bytes(png(5000)), spec)
            .join()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("shared"), "{e}");
        assert!(t.emu.request_log().is_empty());
    }
    t.emu.shutdown().await;
}

#[tokio::test]
async fn the_engine_attaches_subtitles_from_text_and_uploaded_media() {
    let t = T::default().await;
    let uploaded = t.srt().await;
    for api in [ApiVersion::V1_1, ApiVersion::V2] {
        let spec = MediaSpec::new("video/mp4")
            .with_category(MediaCategory::TweetVideo)
            .with_subtitles(SubtitleTrack {
                language_code: "fr".parse().unwrap(),
                display_name: "Français".into(),
                source: SubtitleSource::Text("WEBVTT\n\n00:00.000 --> 00:01.000\nSalut\n".into()),
            })
            .with_subtitles(SubtitleTrack {
                language_code: "EN".parse().unwrap(),
                display_name: "English".into(),
                source: SubtitleSource::Uploaded(uploaded.clone()),
            });
        let report = engine(&t, api, OneShotMode::Auto)
            .upload(Source::bytes(data(200_000, 4)), spec)
            .join()
            .await
            .unwrap();
        let tracks = t.emu.subtitles(&report.media_id);
        assert_eq!(tracks.len(), 2, "{api}");
        assert_eq!(tracks[0].0, "EN");
        assert_eq!(tracks[0].1, uploaded);
        assert_eq!(tracks[1].0, "FR");
        let fr = &report.subtitles[0];
        assert_eq!(fr.language_code.as_str(), "FR");
        assert_eq!(
            t.emu.media_bytes(&fr.media_id).await.unwrap(),
            b"WEBVTT\n\n00:00.000 --> 00:01.000\nSalut\n"
        );
    }
    // A subtitle media that is not a subtitles upload: the typed error names the video.
    let image = t.image().await;
    let spec = MediaSpec::new("video/mp4").with_subtitles(SubtitleTrack {
        language_code: "EN".parse().unwrap(),
        display_name: "English".into(),
        source: SubtitleSource::Uploaded(image),
    });
    let e = engine(&t, ApiVersion::V2, OneShotMode::Auto)
        .upload(Source::bytes(data(1000, 4)), spec)
        .join()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.to_string().contains("media_category subtitles"), "{e}");

    t.emu.shutdown().await;
}

#[tokio::test]
async fn the_v2_one_shot_categories_follow_the_configured_spec_version() {
    use chunkwise::emulator::V2_ONE_SHOT_CATEGORIES;
    use chunkwise::protocol::OneShotRequest;
    let req = |t: &str, c| OneShotRequest {
        media_type: t.into(),
        media_category: Some(c),
        additional_owners: Vec::new(),
        data: data(2000, 8).into(),
    };
    // Default: the v2.167 list, which takes a small video; never amplify_video.
    let t = T::default().await;
    let c = t.client(ApiVersion::V2);
    assert!(V2_ONE_SHOT_CATEGORIES.contains(&MediaCategory::TweetVideo));
    c.upload_one_shot(req("video/mp4", MediaCategory::TweetVideo))
        .await
        .unwrap();
    let e = c
        .upload_one_shot(req("video/mp4", MediaCategory::AmplifyVideo))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.to_string().contains("media_category"), "{e}");
    t.emu.shutdown().await;
    // The 2025 spec's list: images and subtitles only.
    let t = T::start(EmulatorConfig {
        v2_one_shot_categories: vec![
            MediaCategory::TweetImage,
            MediaCategory::DmImage,
            MediaCategory::Subtitles,
        ],
        ..EmulatorConfig::default()
    })
    .await;
    let c = t.client(ApiVersion::V2);
    let e = c
        .upload_one_shot(req("video/mp4", MediaCategory::TweetVideo))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    let s = c
        .upload_one_shot(req("text/srt", MediaCategory::Subtitles))
        .await
        .unwrap();
    assert!(t.emu.media_bytes(&s.media_id).await.is_some());
    t.emu.shutdown().await;
}

#[tokio::test]
async fn alt_text_subtitles_and_sharing_survive_an_emulator_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = |addr| {
        let b = Emulator::builder()
            .credentials(creds())
            .state_dir(dir.path().join("state"));
        async move {
            match addr {
                Some(a) => b.bind(a),
                None => b,
            }
            .start()
            .await
            .unwrap()
        }
    };
    let emu = start(None).await;
    let t = T {
        emu,
        http: reqwest::Client::new(),
    };
    let img = t.image().await;
    let video = t.video().await;
    let srt = t.srt().await;
    let c = t.client(ApiVersion::V2);
    c.set_alt_text(&img, "kept").await.unwrap();
    c.attach_subtitles(&chunkwise::protocol::SubtitlesRequest {
        video: video.clone(),
        video_category: None,
        subtitles: srt.clone(),
        language_code: "EN".parse().unwrap(),
        display_name: "English".into(),
    })
    .await
    .unwrap();
    let addr = t.emu.addr();
    t.emu.shutdown().await;
    let emu = start(Some(addr)).await;
    assert_eq!(emu.alt_text(&img).as_deref(), Some("kept"));
    assert_eq!(
        emu.subtitles(&video),
        vec![("EN".to_string(), srt, "English".to_string())]
    );
    assert_eq!(emu.sharing(&img), Some((Vec::new(), false)));
    emu.shutdown().await;
}
