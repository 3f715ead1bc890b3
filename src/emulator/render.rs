//! JSON bodies of media objects (v1.1 flat, v2 under `data`) and the rendering of
//! [`OpError`]s in each API's error shape.

use super::state::{MediaKind, MediaView, OpError, ProcView};
use super::wire::{self, text};
use axum::response::Response;
use http::StatusCode;
use serde::Serialize;

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    message: &'a str,
}

#[derive(Serialize)]
struct ProcJson<'a> {
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    check_after_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress_percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorJson<'a>>,
}

impl<'a> ProcJson<'a> {
    fn of(p: &'a ProcView) -> Self {
        ProcJson {
            state: p.state,
            check_after_secs: p.check_after_secs,
            progress_percent: p.progress_percent,
            error: p.error.as_ref().map(|e| ErrorJson {
                code: e.code,
                name: e.name.as_deref(),
                message: &e.message,
            }),
        }
    }
}

#[derive(Serialize)]
struct ImageJson<'a> {
    image_type: &'a str,
    w: u32,
    h: u32,
}

#[derive(Serialize)]
struct VideoJson<'a> {
    video_type: &'a str,
}

fn image(k: &MediaKind) -> Option<ImageJson<'_>> {
    match k {
        MediaKind::Image { image_type, w, h } => Some(ImageJson {
            image_type,
            w: *w,
            h: *h,
        }),
        _ => None,
    }
}

fn video(k: &MediaKind) -> Option<VideoJson<'_>> {
    match k {
        MediaKind::Video { video_type } => Some(VideoJson { video_type }),
        _ => None,
    }
}

/// The fields both versions' media objects share, after the id fields.
#[derive(Serialize)]
struct MediaFields<'a> {
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_after_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processing_info: Option<ProcJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<ImageJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<VideoJson<'a>>,
}

impl<'a> MediaFields<'a> {
    fn of(v: &'a MediaView) -> Self {
        MediaFields {
            size: v.size,
            expires_after_secs: v.expires_after_secs,
            processing_info: v.processing.as_ref().map(ProcJson::of),
            image: image(&v.kind),
            video: video(&v.kind),
        }
    }
}

/// The v1.1 media object (FINALIZE, STATUS, simple upload).
pub(crate) fn v1_media(status: StatusCode, v: &MediaView, with_key: bool) -> Response {
    #[derive(Serialize)]
    struct V1Media<'a> {
        media_id: u64,
        media_id_string: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        media_key: Option<&'a str>,
        #[serde(flatten)]
        rest: MediaFields<'a>,
    }
    wire::json_body(
        status,
        &V1Media {
            media_id: v.id,
            media_id_string: v.id.to_string(),
            media_key: with_key.then_some(v.media_key.as_str()),
            rest: MediaFields::of(v),
        },
    )
}

/// `{"data": {...}}` around a v2 body.
#[derive(Serialize)]
pub(crate) struct Data<T> {
    pub(crate) data: T,
}

/// The v2 media object (FINALIZE, STATUS, one-shot upload).
pub(crate) fn v2_media(status: StatusCode, v: &MediaView) -> Response {
    #[derive(Serialize)]
    struct V2Media<'a> {
        id: String,
        media_key: &'a str,
        #[serde(flatten)]
        rest: MediaFields<'a>,
    }
    wire::json_body(
        status,
        &Data {
            data: V2Media {
                id: v.id.to_string(),
                media_key: &v.media_key,
                rest: MediaFields::of(v),
            },
        },
    )
}

/// An operation error in the v1.1 shapes; `media_id` is the id as the client sent it.
pub(crate) fn v1_error(e: OpError, media_id: &str) -> Response {
    let bad = StatusCode::BAD_REQUEST;
    match e {
        OpError::UnknownId => wire::v1_legacy(bad, &text::invalid_media_id(media_id)),
        OpError::AlreadyFinalized => wire::v1_legacy(bad, text::ALREADY_FINALIZED),
        OpError::Busy => wire::v1_legacy(bad, text::FINALIZE_IN_PROGRESS),
        OpError::SegmentsMismatch => wire::v1_legacy(bad, text::SEGMENTS_DO_NOT_ADD_UP),
        OpError::LargeSync => wire::v1_legacy(bad, text::LARGE_SYNC),
        OpError::FileTooLarge(l) => wire::v1_legacy(bad, &text::file_size_exceeds(l)),
        OpError::NotAsync => wire::v1_legacy(StatusCode::NOT_FOUND, text::STATUS_NOT_FOUND),
        OpError::Storage => wire::v1_errors(StatusCode::INTERNAL_SERVER_ERROR, 131, text::STORAGE),
        OpError::NotFinalized
        | OpError::NotImage
        | OpError::NotVideo
        | OpError::NotSubtitles
        | OpError::NoSuchSubtitles => v1_media_api_error(e, media_id),
    }
}

/// An error of the v1.1 metadata and subtitles endpoints, in the standard shape with code 324
/// (media validation, protocol.md §3.6): they are not `upload.json`, whose legacy shape names
/// that path.
pub(crate) fn v1_media_api_error(e: OpError, media_id: &str) -> Response {
    let bad = StatusCode::BAD_REQUEST;
    let message = match e {
        OpError::UnknownId => text::invalid_media_id(media_id),
        OpError::NotFinalized => text::NOT_FINALIZED.to_string(),
        OpError::NotImage => text::ALT_TEXT_MEDIA.to_string(),
        OpError::NotVideo => text::SUBTITLES_VIDEO.to_string(),
        OpError::NotSubtitles => text::SUBTITLES_CATEGORY.to_string(),
        OpError::NoSuchSubtitles => text::NO_SUCH_SUBTITLES.to_string(),
        OpError::Storage => {
            return wire::v1_errors(StatusCode::INTERNAL_SERVER_ERROR, 131, text::STORAGE);
        }
        other => return v1_error(other, media_id),
    };
    wire::v1_errors(bad, 324, &message)
}

/// An operation error in the v2 shapes.
pub(crate) fn v2_error(e: OpError) -> Response {
    match e {
        OpError::UnknownId | OpError::NotAsync => wire::v2_invalid(text::V2_NOT_FOUND),
        OpError::AlreadyFinalized => wire::v2_invalid(text::ALREADY_FINALIZED),
        OpError::Busy => wire::v2_invalid(text::FINALIZE_IN_PROGRESS),
        OpError::SegmentsMismatch => wire::v2_invalid(text::SEGMENTS_DO_NOT_ADD_UP),
        OpError::LargeSync => wire::v2_invalid(text::LARGE_SYNC),
        OpError::FileTooLarge(l) => wire::v2_invalid(&text::file_size_exceeds(l)),
        OpError::Storage => wire::v2_problem(StatusCode::INTERNAL_SERVER_ERROR),
        OpError::NotFinalized => wire::v2_invalid(text::NOT_FINALIZED),
        OpError::NotImage => wire::v2_invalid(text::ALT_TEXT_MEDIA),
        OpError::NotVideo => wire::v2_invalid(text::SUBTITLES_VIDEO),
        OpError::NotSubtitles => wire::v2_invalid(text::SUBTITLES_CATEGORY),
        OpError::NoSuchSubtitles => wire::v2_invalid(text::NO_SUCH_SUBTITLES),
    }
}

/// [`v2_error`] as a [`Reject`](super::wire::Reject).
pub(crate) fn v2_reject(e: OpError) -> super::wire::Reject {
    v2_error(e).into()
}
