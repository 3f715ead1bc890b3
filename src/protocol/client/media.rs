//! [`XClient`]'s calls besides the chunked upload (issue 14): the one-shot upload, alt text
//! and subtitles, in both API versions.
//!
//! | call | v1.1 | v2 |
//! |---|---|---|
//! | one-shot | POST `/1.1/media/upload.json`, multipart: `media` (or `media_data`), `media_category`, `additional_owners` | POST `/2/media/upload`, multipart (`media`, `media_category`, `media_type`, `additional_owners`) or JSON with base64 `media` |
//! | alt text | POST `/1.1/media/metadata/create.json`, JSON `{"media_id","alt_text":{"text"}}` | POST `/2/media/metadata`, JSON `{"id","metadata":{"alt_text":{"text"}}}` |
//! | subtitles | POST `/1.1/media/subtitles/create.json` and `delete.json`, JSON with `subtitle_info.subtitles[]` | POST and DELETE `/2/media/subtitles`, JSON |
//!
//! Sources: protocol.md §3.5, §4.5, §6 and §12. Every body is multipart or JSON, so only the
//! URL and the `oauth_*` parameters are signed (protocol.md §7).

use super::{Command, Payload, XClient, check_media_id, join, raw_part};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::MediaCategory;
use crate::protocol::parse;
use crate::protocol::{
    ApiVersion, AppendEncoding, InitRequest, LanguageCode, MediaId, MediaStatus, OneShotRequest,
    SubtitlesRequest, check_alt_text, check_display_name, subtitles_video_category,
};
use base64::Engine as _;
use reqwest::multipart::Form;
use serde_json::{Value, json};

/// The categories a v2 one-shot upload takes in every published version of the spec.
///
/// Source: protocol.md §4.5: `tweet_image`, `dm_image` and `subtitles` from 2025 to
/// 2026-01; v2.167 (2026-08) adds video and GIF categories, which are left to the chunked
/// upload until a server is known to take them.
const V2_ONE_SHOT_CATEGORIES: [MediaCategory; 3] = [
    MediaCategory::TweetImage,
    MediaCategory::DmImage,
    MediaCategory::Subtitles,
];

/// The categories of a v1.1 simple upload, which takes images only (protocol.md §3.5; an
/// animated GIF needs the chunked upload with `tweet_gif`, §2.3).
const V1_ONE_SHOT_CATEGORIES: [MediaCategory; 2] =
    [MediaCategory::TweetImage, MediaCategory::DmImage];

/// Whether `media_type` is a still image (any `image/` type but GIF).
fn is_still_image(media_type: &str) -> bool {
    let t = media_type.trim().to_ascii_lowercase();
    t.starts_with("image/") && t != "image/gif"
}

/// Whether `media_type` is a subtitle file type X takes (protocol.md §12).
fn is_subtitle_type(media_type: &str) -> bool {
    matches!(
        media_type.trim().to_ascii_lowercase().as_str(),
        "text/srt" | "text/vtt"
    )
}

impl XClient {
    /// A URL under the base: `segments` appended to its path.
    fn url(&self, segments: &[&str]) -> url::Url {
        join(&self.inner.base, segments)
    }

    /// Sends a JSON body to `segments`, for the calls whose answer carries nothing needed.
    async fn send_json(
        &self,
        command: Command,
        method: reqwest::Method,
        segments: &[&str],
        body: Value,
    ) -> Result<()> {
        let url = self.url(segments);
        self.send(command, None, method, url, Payload::Json(body))
            .await
            .map(|_| ())
    }

    pub(super) fn accepts_one_shot_impl(&self, req: &InitRequest) -> bool {
        // `shared` is an INIT field only: the v1.1 simple upload never had it and v2.167
        // dropped it from the one-shot upload (protocol.md §3.5, §4.5).
        if req.shared.is_some() {
            return false;
        }
        let (allowed, category): (&[MediaCategory], _) = match self.inner.api {
            ApiVersion::V1_1 => (&V1_ONE_SHOT_CATEGORIES, req.media_category),
            ApiVersion::V2 => (
                &V2_ONE_SHOT_CATEGORIES,
                req.media_category
                    .or_else(|| MediaCategory::guess_from_media_type(&req.media_type)),
            ),
        };
        let kind_ok = match category {
            Some(MediaCategory::Subtitles) => is_subtitle_type(&req.media_type),
            Some(c) => allowed.contains(&c) && is_still_image(&req.media_type),
            // v1.1 without a category: a still image is a simple upload as it is.
            None => self.inner.api == ApiVersion::V1_1 && is_still_image(&req.media_type),
        };
        let allowed_category = category.is_none_or(|c| allowed.contains(&c));
        let limit = category.unwrap_or(MediaCategory::TweetImage).max_bytes();
        kind_ok && allowed_category && req.total_bytes > 0 && req.total_bytes <= limit
    }

    pub(super) async fn upload_one_shot_impl(&self, req: OneShotRequest) -> Result<MediaStatus> {
        let base64 = self.inner.encoding == AppendEncoding::Base64;
        let owners = req.additional_owners.join(",");
        let (url, payload) = match self.inner.api {
            ApiVersion::V1_1 => {
                let mut form = Form::new();
                if let Some(c) = req.media_category {
                    form = form.text("media_category", c.as_str());
                }
                if !owners.is_empty() {
                    form = form.text("additional_owners", owners);
                }
                form = if base64 {
                    form.text(
                        "media_data",
                        base64::engine::general_purpose::STANDARD.encode(&req.data),
                    )
                } else {
                    form.part("media", raw_part(req.data, None))
                };
                (
                    self.inner.endpoints.upload.clone(),
                    Payload::Multipart(form),
                )
            }
            ApiVersion::V2 => {
                // `media_category` is required, in the body (protocol.md §4.5).
                let category = req
                    .media_category
                    .or_else(|| MediaCategory::guess_from_media_type(&req.media_type))
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidInput,
                            format!(
                                "the one-shot upload needs a media category and none follows \
                                 from the media type {:?}: give one",
                                req.media_type
                            ),
                        )
                    })?;
                let payload = if base64 {
                    let mut body = json!({
                        "media": base64::engine::general_purpose::STANDARD.encode(&req.data),
                        "media_category": category.as_str(),
                        "media_type": req.media_type,
                    });
                    if !owners.is_empty() {
                        // The 2026 spec's comma-separated form (protocol.md §4.5, §11.13).
                        body["additional_owners"] = owners.into();
                    }
                    Payload::Json(body)
                } else {
                    let mut form = Form::new()
                        .text("media_category", category.as_str())
                        .text("media_type", req.media_type.clone());
                    if !owners.is_empty() {
                        form = form.text("additional_owners", owners);
                    }
                    Payload::Multipart(form.part("media", raw_part(req.data, None)))
                };
                (self.inner.endpoints.upload.clone(), payload)
            }
        };
        let (_, body) = self
            .send(Command::OneShot, None, reqwest::Method::POST, url, payload)
            .await?;
        let status = parse::media_status(Command::OneShot, &body, &MediaId(String::new()))?;
        if status.media_id.as_str().is_empty() {
            return Err(Error::new(
                ErrorKind::Protocol,
                "the one-shot upload response has no usable media id; check that the base URL \
                 points at an X media upload API",
            ));
        }
        Ok(status)
    }

    pub(super) async fn set_alt_text_impl(&self, media_id: &MediaId, text: &str) -> Result<()> {
        check_media_id(media_id, Command::Metadata)?;
        check_alt_text(text)?;
        match self.inner.api {
            ApiVersion::V1_1 => {
                let body = json!({"media_id": media_id.as_str(), "alt_text": {"text": text}});
                self.send_json(
                    Command::Metadata,
                    reqwest::Method::POST,
                    &["1.1", "media", "metadata", "create.json"],
                    body,
                )
                .await
            }
            ApiVersion::V2 => {
                let body = json!({
                    "id": media_id.as_str(),
                    "metadata": {"alt_text": {"text": text}},
                });
                self.send_json(
                    Command::Metadata,
                    reqwest::Method::POST,
                    &["2", "media", "metadata"],
                    body,
                )
                .await
            }
        }
    }

    pub(super) async fn attach_subtitles_impl(&self, req: &SubtitlesRequest) -> Result<()> {
        check_media_id(&req.video, Command::SubtitlesCreate)?;
        check_media_id(&req.subtitles, Command::SubtitlesCreate)?;
        check_display_name(&req.display_name)?;
        let category = subtitles_video_category(req.video_category)?;
        let language = req.language_code.as_str();
        match self.inner.api {
            ApiVersion::V1_1 => {
                // The docs' sample JSON is malformed; this object-in-array form is protocol.md
                // §12's reading of it.
                let body = json!({
                    "media_id": req.video.as_str(),
                    "media_category": category,
                    "subtitle_info": {"subtitles": [{
                        "media_id": req.subtitles.as_str(),
                        "language_code": language,
                        "display_name": req.display_name,
                    }]},
                });
                self.send_json(
                    Command::SubtitlesCreate,
                    reqwest::Method::POST,
                    &["1.1", "media", "subtitles", "create.json"],
                    body,
                )
                .await
            }
            ApiVersion::V2 => {
                let body = json!({
                    "id": req.video.as_str(),
                    "media_category": category,
                    "subtitles": {
                        "id": req.subtitles.as_str(),
                        "language_code": language,
                        "display_name": req.display_name,
                    },
                });
                self.send_json(
                    Command::SubtitlesCreate,
                    reqwest::Method::POST,
                    &["2", "media", "subtitles"],
                    body,
                )
                .await
            }
        }
    }

    pub(super) async fn delete_subtitles_impl(
        &self,
        video: &MediaId,
        video_category: Option<MediaCategory>,
        language: &LanguageCode,
    ) -> Result<()> {
        check_media_id(video, Command::SubtitlesDelete)?;
        let category = subtitles_video_category(video_category)?;
        match self.inner.api {
            ApiVersion::V1_1 => {
                let body = json!({
                    "media_id": video.as_str(),
                    "media_category": category,
                    "subtitle_info": {"subtitles": [{"language_code": language.as_str()}]},
                });
                self.send_json(
                    Command::SubtitlesDelete,
                    reqwest::Method::POST,
                    &["1.1", "media", "subtitles", "delete.json"],
                    body,
                )
                .await
            }
            ApiVersion::V2 => {
                let body = json!({
                    "id": video.as_str(),
                    "media_category": category,
                    "language_code": language.as_str(),
                });
                self.send_json(
                    Command::SubtitlesDelete,
                    reqwest::Method::DELETE,
                    &["2", "media", "subtitles"],
                    body,
                )
                .await
            }
        }
    }
}
