//! The emulator over real loopback HTTP: flows, validation errors, faults, the request log
//! and spilling. Driven with reqwest and the crate's OAuth signer (not the protocol client).
#![cfg(feature = "emulator")]

use base64::Engine as _;
use chunkwise::Credentials;
use chunkwise::emulator::{
    ApiVersion, Command, Emulator, EmulatorBuilder, EmulatorConfig, EmulatorHandle, FaultConfig,
    FaultKind, ProcessingConfig, ProcessingFailure, ProcessingTimeline, RateLimitBurst,
    RateLimitConfig,
};
use chunkwise::protocol::MediaId;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

const BEARER: &str = "bearer-token-for-tests";

fn oauth() -> Credentials {
    Credentials::oauth1(
        "consumer-key",
        "consumer-secret",
        "4242-access",
        "token-secret",
    )
}

/// Same keys, wrong secret: signatures do not verify.
fn forged() -> Credentials {
    Credentials::oauth1(
        "consumer-key",
        "wrong-secret",
        "4242-access",
        "token-secret",
    )
}

#[derive(Clone, Copy)]
enum Who {
    OAuth,
    Forged,
    Bearer,
    BadBearer,
    None,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct T {
    emu: EmulatorHandle,
    http: reqwest::Client,
}

/// A deterministic payload.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A 1×1-ish PNG header with the given dimensions (enough for the emulator's sniffing).
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 6, 0, 0, 0, 1, 2, 3, 4]);
    v
}

impl T {
    async fn start(b: EmulatorBuilder) -> T {
        let emu = b
            .credentials(oauth())
            .credentials(Credentials::bearer(BEARER))
            .start()
            .await
            .unwrap();
        T {
            emu,
            http: reqwest::Client::new(),
        }
    }

    async fn default() -> T {
        T::start(Emulator::builder()).await
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> url::Url {
        let mut u = self.emu.base_url().join(path).unwrap();
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        u
    }

    fn authorize(
        &self,
        rb: reqwest::RequestBuilder,
        auth: Who,
        method: &str,
        url: &url::Url,
        form: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        let value = match auth {
            Who::OAuth => oauth().authorization(method, url, form),
            Who::Forged => forged().authorization(method, url, form),
            Who::Bearer => format!("Bearer {BEARER}"),
            Who::BadBearer => "Bearer not-the-token".to_string(),
            Who::None => return rb,
        };
        rb.header("authorization", value)
    }

    async fn send(rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.unwrap();
        Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    /// A v1.1 GET (STATUS), query signed.
    async fn v1_get(&self, query: &[(&str, &str)], auth: Who) -> Resp {
        let url = self.url("/1.1/media/upload.json", query);
        let rb = self.http.get(url.clone());
        T::send(self.authorize(rb, auth, "GET", &url, &[])).await
    }

    /// A v1.1 urlencoded POST; the body parameters are signed.
    async fn v1_form(&self, pairs: &[(&str, &str)], auth: Who) -> Resp {
        let url = self.url("/1.1/media/upload.json", &[]);
        let form: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let rb = self
            .http
            .post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        T::send(self.authorize(rb, auth, "POST", &url, &form)).await
    }

    /// A v1.1 multipart POST; only the query is signed.
    async fn v1_multipart(&self, query: &[(&str, &str)], form: Form, auth: Who) -> Resp {
        let url = self.url("/1.1/media/upload.json", query);
        let rb = self.http.post(url.clone()).multipart(form);
        T::send(self.authorize(rb, auth, "POST", &url, &[])).await
    }

    /// A v2 POST with a JSON body.
    async fn v2_json(&self, path: &str, body: &Value, auth: Who) -> Resp {
        let url = self.url(path, &[]);
        let rb = self.http.post(url.clone()).json(body);
        T::send(self.authorize(rb, auth, "POST", &url, &[])).await
    }

    /// A v2 POST with a multipart body.
    async fn v2_multipart(&self, path: &str, form: Form, auth: Who) -> Resp {
        let url = self.url(path, &[]);
        let rb = self.http.post(url.clone()).multipart(form);
        T::send(self.authorize(rb, auth, "POST", &url, &[])).await
    }

    /// A POST with a raw body and content type.
    async fn raw_post(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        auth: Who,
    ) -> Resp {
        let url = self.url(path, &[]);
        let mut rb = self.http.post(url.clone()).body(body);
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        T::send(self.authorize(rb, auth, "POST", &url, &[])).await
    }

    /// `GET /2/media/upload?command=STATUS&media_id=`.
    async fn v2_status(&self, id: &str, auth: Who) -> Resp {
        let url = self.url(
            "/2/media/upload",
            &[("command", "STATUS"), ("media_id", id)],
        );
        let rb = self.http.get(url.clone());
        T::send(self.authorize(rb, auth, "GET", &url, &[])).await
    }

    /// v1.1 INIT (multipart); returns the id.
    async fn v1_init(&self, total: usize, media_type: &str, category: Option<&str>) -> String {
        let mut form = Form::new()
            .text("command", "INIT")
            .text("total_bytes", total.to_string())
            .text("media_type", media_type.to_string());
        if let Some(c) = category {
            form = form.text("media_category", c.to_string());
        }
        let r = self.v1_multipart(&[], form, Who::OAuth).await;
        assert_eq!(r.status, 202, "{}", r.body);
        r.json()["media_id_string"].as_str().unwrap().to_string()
    }

    /// v1.1 APPEND of raw bytes (multipart `media`).
    async fn v1_append(&self, id: &str, index: u32, data: &[u8]) -> Resp {
        let form = Form::new()
            .text("command", "APPEND")
            .text("media_id", id.to_string())
            .text("segment_index", index.to_string())
            .part("media", Part::bytes(data.to_vec()));
        self.v1_multipart(&[], form, Who::OAuth).await
    }

    async fn v1_finalize(&self, id: &str) -> Resp {
        self.v1_form(&[("command", "FINALIZE"), ("media_id", id)], Who::OAuth)
            .await
    }

    /// v2 INIT as the bearer user; returns the id.
    async fn v2_init(&self, total: usize, media_type: &str, category: Option<&str>) -> String {
        let mut body = json!({ "total_bytes": total, "media_type": media_type });
        if let Some(c) = category {
            body["media_category"] = json!(c);
        }
        let r = self
            .v2_json("/2/media/upload/initialize", &body, Who::Bearer)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"]["id"].as_str().unwrap().to_string()
    }

    /// v2 multipart APPEND.
    async fn v2_append(&self, id: &str, index: u32, data: &[u8], auth: Who) -> Resp {
        let form = Form::new()
            .text("segment_index", index.to_string())
            .part("media", Part::bytes(data.to_vec()));
        self.v2_multipart(&format!("/2/media/upload/{id}/append"), form, auth)
            .await
    }

    /// v2 FINALIZE with no body, as the owner (bearer) of [`T::v2_init`]'s media.
    async fn v2_finalize(&self, id: &str) -> Resp {
        self.raw_post(
            &format!("/2/media/upload/{id}/finalize"),
            None,
            Vec::new(),
            Who::Bearer,
        )
        .await
    }
}

fn assert_legacy(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let want = format!(
        r#"{{"request":"\/1.1\/media\/upload.json","error":"{}"}}"#,
        error.replace('/', "\\/")
    );
    assert_eq!(r.body, want);
}

fn assert_v1_code(r: &Resp, status: u16, code: i64, message: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({ "errors": [{ "code": code, "message": message }] })
    );
}

fn assert_v2_invalid(r: &Resp, message: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({
            "errors": [{ "message": message }],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        })
    );
}

fn assert_v2_problem(r: &Resp, status: u16, title: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        r.json(),
        json!({ "title": title, "type": "about:blank", "status": status, "detail": title })
    );
}

fn assert_rate_headers(r: &Resp) {
    for h in [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        assert!(
            r.header(h).is_some_and(|v| v.parse::<u64>().is_ok()),
            "{h} missing on {} {}",
            r.status,
            r.body
        );
    }
}

#[tokio::test]
async fn v1_chunked_flow_out_of_order_matches_the_source() {
    let t = T::default().await;
    let data = payload(300_000, 1);
    let id = t.v1_init(data.len(), "video/mp4", None).await;
    // INIT without a category: no media_key; both id forms agree.
    let chunks: Vec<&[u8]> = data.chunks(100_000).collect();
    for i in [2usize, 0] {
        let r = t.v1_append(&id, i as u32, chunks[i]).await;
        assert_eq!(r.status, 204, "{}", r.body);
        assert!(r.body.is_empty());
        assert_rate_headers(&r);
    }
    // Segment 1 as urlencoded base64 `media_data` (what egg-mode does).
    let r = t
        .v1_form(
            &[
                ("command", "APPEND"),
                ("media_id", &id),
                ("segment_index", "1"),
                ("media_data", &b64(chunks[1])),
            ],
            Who::OAuth,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = t.v1_finalize(&id).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let j = r.json();
    assert_eq!(j["media_id_string"], json!(id));
    assert_eq!(j["media_id"].as_u64().unwrap().to_string(), id);
    assert_eq!(j["media_key"], json!(format!("7_{id}")));
    assert_eq!(j["size"], json!(300_000));
    assert_eq!(j["expires_after_secs"], json!(86_400));
    assert_eq!(j["video"], json!({ "video_type": "video/mp4" }));
    assert!(j.get("processing_info").is_none());
    let mid = MediaId(id.clone());
    assert_eq!(t.emu.media_sha256(&mid), Some(sha(&data)));
    assert_eq!(t.emu.media_bytes(&mid).await.unwrap(), data);
    // Synchronous media has no STATUS: v1.1 answers 404.
    let r = t
        .v1_get(&[("command", "STATUS"), ("media_id", &id)], Who::OAuth)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    t.emu.shutdown().await;
}

#[tokio::test]
async fn v1_init_response_shape() {
    let t = T::default().await;
    let form = Form::new()
        .text("command", "INIT")
        .text("total_bytes", "10")
        .text("media_type", "video/mp4")
        .text("media_category", "TWEET_VIDEO");
    let r = t.v1_multipart(&[], form, Who::OAuth).await;
    assert_eq!(r.status, 202);
    let j = r.json();
    let id = j["media_id_string"].as_str().unwrap();
    assert_eq!(id.len(), 19);
    assert_eq!(
        j,
        json!({
            "media_id": id.parse::<u64>().unwrap(),
            "media_id_string": id,
            "media_key": format!("7_{id}"),
            "expires_after_secs": 3599,
        })
    );
    // Parameters in the query string work too (and are signed).
    let r = t
        .v1_multipart(
            &[
                ("command", "INIT"),
                ("total_bytes", "5"),
                ("media_type", "image/png"),
            ],
            Form::new().text("shared", "false"),
            Who::OAuth,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    t.emu.shutdown().await;
}

#[tokio::test]
async fn v1_async_video_goes_pending_in_progress_succeeded() {
    let t = T::start(Emulator::builder().processing(ProcessingConfig {
        timeline: ProcessingTimeline::Polls {
            pending: 1,
            in_progress: 1,
        },
        ..ProcessingConfig::default()
    }))
    .await;
    let data = payload(50_000, 2);
    // INIT urlencoded: its body parameters are part of the signature.
    let r = t
        .v1_form(
            &[
                ("command", "INIT"),
                ("total_bytes", "50000"),
                ("media_type", "video/mp4"),
                ("media_category", "tweet_video"),
            ],
            Who::OAuth,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["media_id_string"].as_str().unwrap().to_string();
    assert_eq!(t.v1_append(&id, 0, &data).await.status, 204);
    let f = t.v1_finalize(&id).await.json();
    assert_eq!(
        f["processing_info"],
        json!({ "state": "pending", "check_after_secs": 1 })
    );
    assert!(f.get("video").is_none());
    let mut states = Vec::new();
    for _ in 0..3 {
        let r = t
            .v1_get(&[("command", "STATUS"), ("media_id", &id)], Who::OAuth)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        states.push(r.json());
    }
    assert_eq!(states[0]["processing_info"]["state"], "pending");
    assert_eq!(states[1]["processing_info"]["state"], "in_progress");
    assert_eq!(states[1]["processing_info"]["progress_percent"], 50);
    assert_eq!(
        states[2]["processing_info"],
        json!({ "state": "succeeded", "progress_percent": 100 })
    );
    assert_eq!(states[2]["video"], json!({ "video_type": "video/mp4" }));
    assert!(states[2]["expires_after_secs"].as_u64().unwrap() <= 86_400);
    assert_eq!(t.emu.media_sha256(&MediaId(id)), Some(sha(&data)));
    t.emu.shutdown().await;
}

#[tokio::test]
async fn failed_processing_is_reported_with_http_200() {
    let t = T::start(Emulator::builder().processing(ProcessingConfig {
        failure: ProcessingFailure::MediaTypes(vec!["video/webm".into()]),
        ..ProcessingConfig::default()
    }))
    .await;
    let id = t.v2_init(4, "video/webm", Some("tweet_video")).await;
    assert_eq!(t.v2_append(&id, 0, b"webm", Who::Bearer).await.status, 200);
    assert_eq!(
        t.v2_finalize(&id).await.json()["data"]["processing_info"]["state"],
        "pending"
    );
    assert_eq!(
        t.v2_status(&id, Who::Bearer).await.json()["data"]["processing_info"]["state"],
        "in_progress"
    );
    let r = t.v2_status(&id, Who::Bearer).await;
    assert_eq!(r.status, 200);
    let d = &r.json()["data"];
    assert_eq!(
        d["processing_info"],
        json!({
            "state": "failed",
            "progress_percent": 100,
            "error": { "code": 1, "name": "InvalidMedia", "message": "Unsupported video format" },
        })
    );
    assert!(d.get("expires_after_secs").is_none());
    assert!(d.get("video").is_none());
    t.emu.shutdown().await;
}

#[tokio::test]
async fn v2_flow_with_multipart_and_json_appends() {
    let t = T::default().await;
    let data = payload(200_000, 3);
    let r = t
        .v2_json(
            "/2/media/upload/initialize",
            &json!({ "total_bytes": data.len(), "media_type": "video/mp4", "media_category": "amplify_video", "shared": false, "additional_owners": ["12"] }),
            Who::OAuth,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json()["data"].clone();
    let id = d["id"].as_str().unwrap().to_string();
    assert_eq!(
        d,
        json!({ "id": id, "media_key": format!("13_{id}"), "expires_after_secs": 1_295_999 })
    );
    let chunks: Vec<&[u8]> = data.chunks(64 * 1024).collect();
    // Out of order: multipart for odd indices, JSON base64 for even ones.
    for i in (0..chunks.len()).rev() {
        let r = if i % 2 == 1 {
            t.v2_append(&id, i as u32, chunks[i], Who::OAuth).await
        } else {
            t.v2_json(
                &format!("/2/media/upload/{id}/append"),
                &json!({ "media": b64(chunks[i]), "segment_index": i }),
                Who::OAuth,
            )
            .await
        };
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.json()["data"]["expires_at"].as_u64().unwrap() > 1_700_000_000);
    }
    // FINALIZE with `{}` (JSON) is accepted like an empty body.
    let r = t
        .v2_json(
            &format!("/2/media/upload/{id}/finalize"),
            &json!({}),
            Who::OAuth,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json()["data"].clone();
    assert_eq!(d["size"], json!(200_000));
    assert_eq!(d["expires_after_secs"], json!(86_400));
    assert_eq!(d["processing_info"]["state"], "pending");
    let r = t.v2_status(&id, Who::OAuth).await;
    assert_eq!(r.json()["data"]["processing_info"]["state"], "in_progress");
    let r = t.v2_status(&id, Who::OAuth).await;
    let d = r.json()["data"].clone();
    assert_eq!(d["processing_info"]["state"], "succeeded");
    assert_eq!(d["video"]["video_type"], "video/mp4");
    // Another user cannot see the media.
    assert_v2_invalid(
        &t.v2_status(&id, Who::Bearer).await,
        "BadRequest: Not found",
    );
    // A repeated FINALIZE answers the current state.
    let again = t
        .raw_post(
            &format!("/2/media/upload/{id}/finalize"),
            None,
            vec![],
            Who::OAuth,
        )
        .await;
    assert_eq!(
        again.json()["data"]["processing_info"]["state"],
        "succeeded"
    );
    let mid = MediaId(id);
    assert_eq!(t.emu.media_sha256(&mid), Some(sha(&data)));
    assert_eq!(t.emu.media_bytes(&mid).await.unwrap(), data);
    t.emu.shutdown().await;
}

#[tokio::test]
async fn simple_uploads_v1_and_v2() {
    let t = T::default().await;
    let image = png(640, 480);
    // v1.1 urlencoded `media_data` (the official sample), no category: no media_key.
    let r = t.v1_form(&[("media_data", &b64(&image))], Who::OAuth).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert!(j.get("media_key").is_none());
    assert_eq!(j["size"], json!(image.len()));
    assert_eq!(
        j["image"],
        json!({ "image_type": "image/png", "w": 640, "h": 480 })
    );
    assert_eq!(
        t.emu
            .media_sha256(&MediaId(j["media_id_string"].as_str().unwrap().into())),
        Some(sha(&image))
    );
    // Bytes that are no image.
    let r = t
        .v1_form(&[("media_data", &b64(b"not an image"))], Who::OAuth)
        .await;
    assert_legacy(&r, 400, "media type unrecognized.");
    // Too large for an image: code 324.
    let mut big = png(1, 1);
    big.resize(5 * 1024 * 1024 + 1, 0);
    let r = t
        .v1_multipart(&[], Form::new().part("media", Part::bytes(big)), Who::OAuth)
        .await;
    assert_v1_code(&r, 400, 324, "Image file size must be <= 5242880 bytes");
    // v2 one-shot, multipart, category in the body.
    let form = Form::new()
        .text("media_category", "tweet_image")
        .part("media", Part::bytes(image.clone()));
    let r = t.v2_multipart("/2/media/upload", form, Who::Bearer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json()["data"].clone();
    assert!(d["media_key"].as_str().unwrap().starts_with("3_"));
    assert_eq!(d["image"]["w"], 640);
    // The category is required.
    let form = Form::new().part("media", Part::bytes(image.clone()));
    let r = t.v2_multipart("/2/media/upload", form, Who::Bearer).await;
    assert_v2_invalid(&r, "The `media_category` field is required.");
    // JSON one-shot with base64 media.
    let r = t
        .v2_json(
            "/2/media/upload",
            &json!({ "media": b64(&image), "media_category": "dm_image", "additional_owners": "1,2" }),
            Who::Bearer,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // STATUS on a synchronously finalized image: 400 Not found (xurl#18).
    let id = r.json()["data"]["id"].as_str().unwrap().to_string();
    assert_v2_invalid(
        &t.v2_status(&id, Who::Bearer).await,
        "BadRequest: Not found",
    );
    t.emu.shutdown().await;
}

#[tokio::test]
async fn v1_auth_and_validation_errors() {
    let cfg = EmulatorConfig {
        max_append_bytes: 1024,
        sync_max_bytes: 100,
        ..EmulatorConfig::default()
    };
    let t = T::start(Emulator::builder().config(cfg)).await;
    // Bad signature, bearer on v1.1, no auth: 401 code 32, with rate-limit headers.
    for auth in [Who::Forged, Who::Bearer, Who::None] {
        let r = t
            .v1_get(&[("command", "STATUS"), ("media_id", "1")], auth)
            .await;
        assert_v1_code(&r, 401, 32, "Could not authenticate you.");
        assert_rate_headers(&r);
    }
    // The signature covers urlencoded body params: a body changed after signing fails.
    let url = t.url("/1.1/media/upload.json", &[]);
    let signed = oauth().authorization(
        "POST",
        &url,
        &[
            ("command".into(), "INIT".into()),
            ("total_bytes".into(), "1".into()),
        ],
    );
    let r = T::send(
        t.http
            .post(url)
            .header("authorization", signed)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("command=INIT&total_bytes=2&media_type=image%2Fpng"),
    )
    .await;
    assert_eq!(r.status, 401);
    // A POSTed STATUS is a simple upload missing its media (codebird#252).
    let r = t
        .v1_form(&[("command", "STATUS"), ("media_id", "1")], Who::OAuth)
        .await;
    assert_v1_code(&r, 400, 38, "media parameter is missing.");
    // Required fields, enum values, size against the category.
    let r = t
        .v1_form(
            &[("command", "INIT"), ("media_type", "video/mp4")],
            Who::OAuth,
        )
        .await;
    assert_v1_code(&r, 400, 38, "total_bytes parameter is missing.");
    let r = t
        .v1_form(
            &[
                ("command", "INIT"),
                ("total_bytes", "10"),
                ("media_type", "video/mp4"),
                ("media_category", "tweet_audio"),
            ],
            Who::OAuth,
        )
        .await;
    assert_legacy(&r, 400, "media_category parameter is invalid.");
    let r = t
        .v1_form(
            &[
                ("command", "INIT"),
                ("total_bytes", "-5"),
                ("media_type", "video/mp4"),
            ],
            Who::OAuth,
        )
        .await;
    assert_legacy(&r, 400, "total_bytes parameter is invalid.");
    let r = t
        .v1_form(
            &[
                ("command", "INIT"),
                ("total_bytes", "15728641"),
                ("media_type", "image/gif"),
                ("media_category", "tweet_gif"),
            ],
            Who::OAuth,
        )
        .await;
    assert_legacy(&r, 400, "File size exceeds 15728640 bytes.");
    let r = t.v1_form(&[("command", "JUMP")], Who::OAuth).await;
    assert_legacy(&r, 400, "command parameter is invalid.");

    let id = t.v1_init(30, "video/mp4", Some("tweet_video")).await;
    // segment_index out of range, over-limit chunk, both media fields, unknown id.
    let r = t.v1_append(&id, 1000, b"x").await;
    assert_legacy(&r, 400, "SegmentIndex must be between 0 and 999.");
    let r = t
        .v1_form(
            &[
                ("command", "APPEND"),
                ("media_id", &id),
                ("segment_index", "-1"),
                ("media_data", "eA=="),
            ],
            Who::OAuth,
        )
        .await;
    assert_legacy(&r, 400, "SegmentIndex must be between 0 and 999.");
    let r = t.v1_append(&id, 0, &[0u8; 1025]).await;
    assert_legacy(&r, 400, "Segment size exceeds 1024 bytes.");
    let form = Form::new()
        .text("command", "APPEND")
        .text("media_id", id.clone())
        .text("segment_index", "0")
        .text("media_data", b64(b"abc"))
        .part("media", Part::bytes(b"abc".to_vec()));
    let r = t.v1_multipart(&[], form, Who::OAuth).await;
    assert_legacy(&r, 400, "media and media_data must not both be present.");
    let r = t.v1_append("123", 0, b"abc").await;
    assert_legacy(&r, 400, "Invalid media_id: Some(123).");
    let r = t.v1_append("", 0, b"abc").await;
    assert_legacy(&r, 400, "Invalid media_id: Some().");
    let form = Form::new()
        .text("command", "APPEND")
        .text("media_id", id.clone())
        .text("segment_index", "0");
    assert_v1_code(
        &t.v1_multipart(&[], form, Who::OAuth).await,
        400,
        38,
        "media parameter is missing.",
    );
    // Gaps at FINALIZE.
    assert_eq!(t.v1_append(&id, 0, &[1u8; 10]).await.status, 204);
    assert_eq!(t.v1_append(&id, 2, &[3u8; 10]).await.status, 204);
    assert_legacy(
        &t.v1_finalize(&id).await,
        400,
        "Segments do not add up to provided total file size.",
    );
    // Filling the gap fixes it.
    assert_eq!(t.v1_append(&id, 1, &[2u8; 10]).await.status, 204);
    assert_eq!(t.v1_finalize(&id).await.status, 201);
    // APPEND after FINALIZE.
    assert_eq!(t.v1_append(&id, 3, b"x").await.status, 400);

    // Raw bytes sent as `media_data` are "decoded" shorter and fail at FINALIZE (§2.4).
    let id = t.v1_init(8, "video/mp4", Some("tweet_video")).await;
    let raw = [0xFFu8, 0x00, 0x80, 0x7F, 0x01, 0xFE, 0x10, 0x20];
    let form = Form::new()
        .text("command", "APPEND")
        .text("media_id", id.clone())
        .text("segment_index", "0")
        .part("media_data", Part::bytes(raw.to_vec()));
    assert_eq!(t.v1_multipart(&[], form, Who::OAuth).await.status, 204);
    assert_legacy(
        &t.v1_finalize(&id).await,
        400,
        "Segments do not add up to provided total file size.",
    );

    // Video without a category over the synchronous limit (configured 100 bytes here).
    let id = t.v1_init(101, "video/mp4", None).await;
    assert_eq!(t.v1_append(&id, 0, &[0u8; 101]).await.status, 204);
    assert_legacy(
        &t.v1_finalize(&id).await,
        400,
        "Large file can not be finalized synchronously.",
    );
    t.emu.shutdown().await;
}

#[tokio::test]
async fn v2_auth_and_validation_errors() {
    let t = T::start(Emulator::builder().max_append_bytes(1024)).await;
    let init = "/2/media/upload/initialize";
    let ok = json!({ "total_bytes": 10, "media_type": "video/mp4" });
    for auth in [Who::Forged, Who::BadBearer, Who::None] {
        let r = t.v2_json(init, &ok, auth).await;
        assert_v2_problem(&r, 401, "Unauthorized");
        assert_rate_headers(&r);
    }
    let ct = "Requests with bodies must have content-type of application/json.";
    let r = t
        .raw_post(
            init,
            Some("text/plain"),
            ok.to_string().into_bytes(),
            Who::OAuth,
        )
        .await;
    assert_v2_invalid(&r, ct);
    let r = t
        .raw_post(
            init,
            Some("application/json"),
            b"{nope".to_vec(),
            Who::OAuth,
        )
        .await;
    assert_v2_invalid(&r, "Request body is not valid JSON.");
    let r = t
        .raw_post(init, Some("application/json"), b"[1]".to_vec(), Who::OAuth)
        .await;
    assert_v2_invalid(&r, "Request body must be a JSON object.");
    let r = t
        .v2_json(
            init,
            &json!({ "total_bytes": 10, "media_type": "video/mp4", "colour": "red" }),
            Who::OAuth,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`")
    );
    let r = t
        .v2_json(init, &json!({ "media_type": "video/mp4" }), Who::OAuth)
        .await;
    assert_v2_invalid(&r, "The `total_bytes` field is required.");
    let r = t
        .v2_json(
            init,
            &json!({ "total_bytes": 10, "media_type": "video/avi" }),
            Who::OAuth,
        )
        .await;
    assert_v2_invalid(&r, "The `media_type` field is invalid.");
    let r = t
        .v2_json(init, &json!({ "total_bytes": 10, "media_type": "video/mp4", "media_category": "TWEET_VIDEO" }), Who::OAuth)
        .await;
    assert_v2_invalid(&r, "The `media_category` field is invalid.");
    let r = t
        .v2_json(
            init,
            &json!({ "total_bytes": 5_242_881, "media_type": "image/png" }),
            Who::OAuth,
        )
        .await;
    assert_v2_invalid(&r, "File size exceeds 5242880 bytes.");

    let id = t.v2_init(2048, "video/mp4", None).await;
    let append = format!("/2/media/upload/{id}/append");
    // `multipart/form-data, boundary=` (comma) is not multipart to X (x-ruby#62).
    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"segment_index\"\r\n\r\n0\r\n--XyZ\r\nContent-Disposition: form-data; name=\"media\"\r\n\r\nabc\r\n--XyZ--\r\n".to_vec();
    let r = t
        .raw_post(
            &append,
            Some("multipart/form-data, boundary=XyZ"),
            body.clone(),
            Who::Bearer,
        )
        .await;
    assert_v2_invalid(&r, ct);
    let r = t
        .raw_post(
            &append,
            Some("multipart/form-data; boundary=XyZ"),
            body,
            Who::Bearer,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_v2_invalid(
        &t.v2_append(&id, 1000, b"x", Who::Bearer).await,
        "SegmentIndex must be between 0 and 999.",
    );
    assert_v2_invalid(
        &t.v2_append(&id, 1, &[0u8; 1025], Who::Bearer).await,
        "Segment size exceeds 1024 bytes.",
    );
    let r = t
        .v2_json(&append, &json!({ "segment_index": 1 }), Who::Bearer)
        .await;
    assert_v2_invalid(&r, "The `media` field is required.");
    let r = t
        .v2_json(
            &append,
            &json!({ "segment_index": "2", "media": "%%%" }),
            Who::Bearer,
        )
        .await;
    assert_v2_invalid(&r, "The `media` field is invalid.");
    assert_v2_invalid(
        &t.v2_append("1234", 0, b"x", Who::Bearer).await,
        "BadRequest: Not found",
    );
    assert_v2_invalid(
        &t.v2_append("12x", 0, b"x", Who::Bearer).await,
        "BadRequest: Not found",
    );
    // FINALIZE: a JSON body must be an object; gaps fail.
    let fin = format!("/2/media/upload/{id}/finalize");
    let r = t
        .raw_post(&fin, Some("application/json"), b"[]".to_vec(), Who::Bearer)
        .await;
    assert_v2_invalid(&r, "Request body must be a JSON object.");
    assert_v2_invalid(
        &t.v2_finalize(&id).await,
        "Segments do not add up to provided total file size.",
    );
    // STATUS before FINALIZE, or on an unknown id.
    assert_v2_invalid(
        &t.v2_status(&id, Who::Bearer).await,
        "BadRequest: Not found",
    );
    assert_v2_invalid(
        &t.v2_status("999", Who::Bearer).await,
        "BadRequest: Not found",
    );
    // Unknown paths.
    let r = t
        .raw_post("/2/media/nothing", None, vec![], Who::OAuth)
        .await;
    assert_eq!(r.status, 404);
    t.emu.shutdown().await;
}

#[tokio::test]
async fn expired_ids_are_rejected() {
    let t = T::default().await;
    let v1 = t.v1_init(3, "video/mp4", Some("tweet_video")).await;
    let v2 = t.v2_init(3, "video/mp4", None).await;
    t.emu.advance_clock(Duration::from_secs(3599));
    assert_legacy(
        &t.v1_append(&v1, 0, b"abc").await,
        400,
        &format!("Invalid media_id: Some({v1})."),
    );
    // The v2 id (86399 s) is still alive.
    assert_eq!(t.v2_append(&v2, 0, b"abc", Who::Bearer).await.status, 200);
    t.emu.advance_clock(Duration::from_secs(86_400));
    assert_v2_invalid(&t.v2_finalize(&v2).await, "BadRequest: Not found");
    t.emu.shutdown().await;
}

#[tokio::test]
async fn per_user_rate_limits_answer_429_with_headers() {
    let t = T::start(Emulator::builder().rate_limits(RateLimitConfig {
        v2_status: 2,
        v1_get: 1,
        ..RateLimitConfig::default()
    }))
    .await;
    let a = t.v2_status("1", Who::Bearer).await;
    assert_eq!(a.header("x-rate-limit-limit"), Some("2"));
    assert_eq!(a.header("x-rate-limit-remaining"), Some("1"));
    let b = t.v2_status("1", Who::Bearer).await;
    assert_eq!(b.header("x-rate-limit-remaining"), Some("0"));
    let c = t.v2_status("1", Who::Bearer).await;
    assert_v2_problem(&c, 429, "Too Many Requests");
    assert_eq!(c.header("x-rate-limit-remaining"), Some("0"));
    assert_eq!(
        c.header("x-rate-limit-reset"),
        a.header("x-rate-limit-reset")
    );
    // OAuth user 4242 has its own window.
    assert_eq!(
        t.v2_status("1", Who::OAuth)
            .await
            .header("x-rate-limit-remaining"),
        Some("1")
    );
    t.v1_get(&[("command", "STATUS"), ("media_id", "1")], Who::OAuth)
        .await;
    let r = t
        .v1_get(&[("command", "STATUS"), ("media_id", "1")], Who::OAuth)
        .await;
    assert_v1_code(&r, 429, 88, "Rate limit exceeded");
    // After the window the limit resets.
    t.emu.advance_clock(Duration::from_secs(15 * 60));
    assert_eq!(t.v2_status("1", Who::Bearer).await.status, 400);
    t.emu.shutdown().await;
}

/// 200 sequential APPENDs with a 25 % 5xx probability: the outcome sequence depends only on
/// the seed.
async fn five_xx_run(seed: u64) -> (Vec<u16>, Vec<Option<FaultKind>>) {
    let t = T::start(Emulator::builder().faults(FaultConfig {
        seed,
        append_5xx_probability: 0.25,
        ..FaultConfig::none()
    }))
    .await;
    let id = t.v2_init(200, "video/mp4", None).await;
    let mut statuses = Vec::new();
    for i in 0..200u32 {
        statuses.push(t.v2_append(&id, i, b"x", Who::Bearer).await.status);
    }
    let faults = t
        .emu
        .request_log()
        .into_iter()
        .filter(|r| r.command == Command::Append)
        .map(|r| r.fault)
        .collect();
    t.emu.shutdown().await;
    (statuses, faults)
}

#[tokio::test]
async fn injected_5xx_follow_the_seed() {
    let (a, fa) = five_xx_run(11).await;
    let errors = a.iter().filter(|s| **s == 503).count();
    assert_eq!(a.iter().filter(|s| **s == 200).count() + errors, 200);
    assert!((30..=70).contains(&errors), "{errors} of 200");
    let (b, fb) = five_xx_run(11).await;
    assert_eq!(a, b);
    assert_eq!(fa, fb);
    assert_eq!(
        fa.iter()
            .filter(|f| **f == Some(FaultKind::ServerError(503)))
            .count(),
        errors
    );
    let (c, _) = five_xx_run(12).await;
    assert_ne!(a, c);
}

#[tokio::test]
async fn v1_injected_5xx_has_code_131() {
    let t = T::start(Emulator::builder().faults(FaultConfig {
        append_5xx_probability: 1.0,
        server_error_status: Some(500),
        ..FaultConfig::none()
    }))
    .await;
    let id = t.v1_init(1, "video/mp4", None).await;
    assert_v1_code(&t.v1_append(&id, 0, b"x").await, 500, 131, "Internal error");
    t.emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_bursts_carry_retry_after_and_reset() {
    let t = T::start(Emulator::builder().faults(FaultConfig {
        rate_limit_burst: Some(RateLimitBurst {
            every: 3,
            length: 2,
            retry_after: Duration::from_millis(1500),
        }),
        ..FaultConfig::none()
    }))
    .await;
    let id = t.v2_init(10, "video/mp4", None).await;
    let mut statuses = Vec::new();
    for i in 0..6u32 {
        let r = t.v2_append(&id, i, b"x", Who::Bearer).await;
        if r.status == 429 {
            assert_v2_problem(&r, 429, "Too Many Requests");
            assert_eq!(r.header("retry-after"), Some("2"));
            assert_eq!(r.header("x-rate-limit-remaining"), Some("0"));
            let reset: u64 = r.header("x-rate-limit-reset").unwrap().parse().unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert!(reset >= now && reset <= now + 3, "{reset} vs {now}");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![200, 200, 429, 429, 200, 429]);
    let bursts = t
        .emu
        .request_log()
        .iter()
        .filter(|r| r.fault == Some(FaultKind::RateLimitBurst))
        .count();
    assert_eq!(bursts, 3);
    t.emu.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_give_transport_errors() {
    let t = T::start(Emulator::builder().faults(FaultConfig {
        drop_connection_probability: 1.0,
        ..FaultConfig::none()
    }))
    .await;
    let id = t.v2_init(1 << 20, "video/mp4", None).await;
    let big = payload(1 << 20, 9);
    // v2: the APPEND is known from the path; the body is cut midway.
    let url = t.url(&format!("/2/media/upload/{id}/append"), &[]);
    let form = Form::new()
        .text("segment_index", "0")
        .part("media", Part::bytes(big.clone()));
    let err = t
        .http
        .post(url)
        .header("authorization", format!("Bearer {BEARER}"))
        .multipart(form)
        .send()
        .await
        .expect_err("a dropped connection must not produce a response");
    assert!(err.status().is_none());
    // v1.1 with the command in the multipart fields: dropped after the body was parsed.
    let v1 = t.v1_init(3, "video/mp4", None).await;
    let url = t.url("/1.1/media/upload.json", &[]);
    let form = Form::new()
        .text("command", "APPEND")
        .text("media_id", v1.clone())
        .text("segment_index", "0")
        .part("media", Part::bytes(b"abc".to_vec()));
    let auth = oauth().authorization("POST", &url, &[]);
    let err = t
        .http
        .post(url)
        .header("authorization", auth)
        .multipart(form)
        .send()
        .await
        .expect_err("a dropped connection must not produce a response");
    assert!(err.status().is_none());
    // Other requests still work on new connections.
    assert_eq!(t.v1_finalize(&v1).await.status, 400);
    let log = t.emu.request_log();
    let dropped: Vec<_> = log
        .iter()
        .filter(|r| r.fault == Some(FaultKind::DropConnection))
        .collect();
    assert_eq!(dropped.len(), 2);
    for r in &dropped {
        assert_eq!(r.status, 0);
        assert_eq!(r.command, Command::Append);
    }
    assert_eq!(dropped[0].api, ApiVersion::V2);
    assert!(dropped[0].body_bytes > 0 && dropped[0].body_bytes < (1 << 20) + 1024);
    assert_eq!(dropped[1].api, ApiVersion::V1);
    t.emu.shutdown().await;
}

#[tokio::test]
async fn request_log_records_every_request_in_order() {
    let t = T::default().await;
    let id = t.v1_init(6, "video/mp4", None).await;
    t.v1_append(&id, 1, b"def").await;
    t.v1_append(&id, 0, b"abc").await;
    t.v1_finalize(&id).await;
    t.v2_status("77", Who::Forged).await;
    let log = t.emu.request_log();
    let got: Vec<_> = log
        .iter()
        .map(|r| {
            (
                r.api,
                r.command,
                r.media_id.clone(),
                r.segment_index,
                r.body_bytes,
                r.status,
                r.fault,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                ApiVersion::V1,
                Command::Init,
                Some(id.clone()),
                None,
                0,
                202,
                None
            ),
            (
                ApiVersion::V1,
                Command::Append,
                Some(id.clone()),
                Some(1),
                3,
                204,
                None
            ),
            (
                ApiVersion::V1,
                Command::Append,
                Some(id.clone()),
                Some(0),
                3,
                204,
                None
            ),
            (
                ApiVersion::V1,
                Command::Finalize,
                Some(id.clone()),
                None,
                0,
                201,
                None
            ),
            (ApiVersion::V2, Command::Status, None, None, 0, 401, None),
        ]
    );
    assert!(
        log.windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at)
    );
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[4].path, "/2/media/upload");
    t.emu.clear_request_log();
    assert!(t.emu.request_log().is_empty());
    t.emu.shutdown().await;
}

#[tokio::test]
async fn spilled_media_has_the_same_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let t =
        T::start(Emulator::builder().spill(Some(8 * 1024), Some(dir.path().to_path_buf()))).await;
    let data = payload(40 * 1024, 5);
    let id = t.v2_init(data.len(), "video/mp4", None).await;
    for (i, c) in data.chunks(4096).enumerate().rev() {
        assert_eq!(t.v2_append(&id, i as u32, c, Who::Bearer).await.status, 200);
    }
    // Resend one spilled segment: it replaces the old one.
    assert_eq!(
        t.v2_append(&id, 9, &data[9 * 4096..], Who::Bearer)
            .await
            .status,
        200
    );
    let spill_root = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(std::fs::read_dir(&spill_root).unwrap().count() >= 7);
    assert_eq!(t.v2_finalize(&id).await.status, 200);
    let mid = MediaId(id);
    assert_eq!(t.emu.media_sha256(&mid), Some(sha(&data)));
    assert_eq!(t.emu.media_bytes(&mid).await.unwrap(), data);
    t.emu.shutdown().await;
    assert!(
        !spill_root.exists(),
        "the spill directory is deleted on shutdown"
    );
}

#[tokio::test]
async fn malformed_input_gets_4xx_and_never_panics() {
    let t = T::default().await;
    let mp = Some("multipart/form-data; boundary=B");
    let bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("/1.1/media/upload.json", mp, b"--B\r\ngarbage".to_vec()),
        ("/1.1/media/upload.json", mp, vec![0xFF; 100]),
        (
            "/1.1/media/upload.json",
            Some("application/x-www-form-urlencoded"),
            b"command=INIT&total_bytes=99999999999999999999999&media_type=%FF".to_vec(),
        ),
        (
            "/1.1/media/upload.json",
            Some("application/x-www-form-urlencoded"),
            b"command=%FF%FE".to_vec(),
        ),
        (
            "/1.1/media/upload.json",
            Some("application/x-www-form-urlencoded"),
            b"command=APPEND&media_id=99999999999999999999999999&segment_index=0&media=x".to_vec(),
        ),
        (
            "/2/media/upload/initialize",
            Some("application/json"),
            br#"{"total_bytes":1e400,"media_type":"video/mp4"}"#.to_vec(),
        ),
        (
            "/2/media/upload/initialize",
            Some("application/json"),
            br#"{"total_bytes":-1,"media_type":"video/mp4"}"#.to_vec(),
        ),
        (
            "/2/media/upload/1/append",
            mp,
            b"--B\r\nContent-Disposition: form-data; name=\"media\"\r\n\r\n\xff\xfe\r\n--B--\r\n"
                .to_vec(),
        ),
        (
            "/2/media/upload/1/append",
            Some("application/json"),
            br#"{"segment_index":18446744073709551616,"media":""}"#.to_vec(),
        ),
        (
            "/2/media/upload/99999999999999999999999/finalize",
            None,
            vec![],
        ),
        ("/2/media/upload", mp, vec![b'-'; 1000]),
    ];
    for (path, ct, body) in bodies {
        for auth in [Who::OAuth, Who::Bearer] {
            let r = t.raw_post(path, ct, body.clone(), auth).await;
            assert!(
                (400..500).contains(&r.status),
                "{path} {ct:?}: {} {}",
                r.status,
                r.body
            );
        }
    }
    // A body over the request limit: 413.
    let huge = vec![b'a'; 9 * 1024 * 1024];
    let r = t
        .raw_post(
            "/2/media/upload/1/append",
            Some("application/json"),
            huge,
            Who::Bearer,
        )
        .await;
    assert_v2_problem(&r, 413, "Payload Too Large");
    // No panic happened in any handler (shutdown re-raises them).
    t.emu.shutdown().await;
}

#[tokio::test]
async fn start_rejects_bad_configuration() {
    let e = Emulator::builder().start().await.unwrap_err();
    assert_eq!(e.kind(), chunkwise::ErrorKind::InvalidConfig);
    let e = Emulator::builder()
        .credentials(oauth())
        .faults(FaultConfig {
            append_5xx_probability: 2.0,
            ..FaultConfig::none()
        })
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), chunkwise::ErrorKind::InvalidConfig);
}

#[tokio::test]
async fn parallel_faulty_uploads_complete_with_retries() {
    let t = T::start(
        Emulator::builder()
            .spill(Some(64 * 1024), None)
            .faults(FaultConfig {
                seed: 3,
                append_5xx_probability: 0.2,
                drop_connection_probability: 0.2,
                rate_limit_burst: Some(RateLimitBurst {
                    every: 7,
                    length: 1,
                    retry_after: Duration::ZERO,
                }),
                ..FaultConfig::none()
            }),
    )
    .await;
    let data = payload(48 * 16 * 1024, 8);
    let id = t
        .v2_init(data.len(), "video/mp4", Some("tweet_video"))
        .await;
    let chunks: Vec<Vec<u8>> = data.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    let sends = chunks.iter().enumerate().map(|(i, c)| {
        let t = &t;
        let id = &id;
        async move {
            for attempt in 1..=50u32 {
                let url = t.url(&format!("/2/media/upload/{id}/append"), &[]);
                let form = Form::new()
                    .text("segment_index", i.to_string())
                    .part("media", Part::bytes(c.clone()));
                let sent = t
                    .http
                    .post(url)
                    .header("authorization", format!("Bearer {BEARER}"))
                    .multipart(form)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return attempt,
                    Ok(r) => assert!(matches!(r.status().as_u16(), 429 | 503), "{}", r.status()),
                    Err(e) => assert!(e.status().is_none()),
                }
            }
            panic!("segment {i} never got through");
        }
    });
    let attempts: Vec<u32> = futures::future::join_all(sends).await;
    assert!(attempts.iter().any(|a| *a > 1), "some segment met a fault");
    assert_eq!(t.v2_finalize(&id).await.status, 200);
    assert_eq!(t.emu.media_sha256(&MediaId(id)), Some(sha(&data)));
    let log = t.emu.request_log();
    let appends = log.iter().filter(|r| r.command == Command::Append).count();
    assert_eq!(appends as u32, attempts.iter().sum::<u32>());
    for kind in [
        FaultKind::DropConnection,
        FaultKind::ServerError(503),
        FaultKind::RateLimitBurst,
    ] {
        assert!(
            log.iter().any(|r| r.fault == Some(kind)),
            "{kind:?} never injected"
        );
    }
    t.emu.shutdown().await;
}

#[tokio::test]
async fn status_codes_are_configurable() {
    let mut cfg = EmulatorConfig::default();
    cfg.v2_status.init = 202;
    cfg.v2_status.append = 204;
    cfg.v2_status.finalize = 201;
    cfg.v1_status.finalize = 200;
    let t = T::start(Emulator::builder().config(cfg)).await;
    let r = t
        .v2_json(
            "/2/media/upload/initialize",
            &json!({ "total_bytes": 1, "media_type": "image/png" }),
            Who::Bearer,
        )
        .await;
    assert_eq!(r.status, 202);
    let id = r.json()["data"]["id"].as_str().unwrap().to_string();
    let r = t.v2_append(&id, 0, b"x", Who::Bearer).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = t.v2_finalize(&id).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["data"]["image"]["image_type"], "image/png");
    let id = t.v1_init(1, "image/png", None).await;
    assert_eq!(t.v1_append(&id, 0, b"x").await.status, 204);
    assert_eq!(t.v1_finalize(&id).await.status, 200);
    t.emu.shutdown().await;
}
