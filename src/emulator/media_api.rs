//! Alt text and subtitles (issue 14; protocol.md §12), both versions:
//! - v2 `POST /2/media/metadata` `{"id","metadata":{"alt_text":{"text"}}}`;
//! - v2 `POST /2/media/subtitles` `{"id","media_category","subtitles":{"id","language_code","display_name"}}`
//!   and `DELETE /2/media/subtitles` `{"id","media_category","language_code"}`;
//! - v1.1 `POST /1.1/media/metadata/create.json` `{"media_id","alt_text":{"text"}}`,
//!   `POST /1.1/media/subtitles/create.json` and `delete.json`
//!   `{"media_id","media_category","subtitle_info":{"subtitles":[{..}]}}`.
//!
//! Checked in the emulator's usual order (protocol.md §9): authentication and the per-user
//! rate limit, a JSON object body, required fields, enum values and patterns
//! (`media_category` `TweetVideo`/`AmplifyVideo`, `language_code` `^[A-Z]{2}$`), the alt
//! text's length, then the media: known and the caller's, finalized, an image or GIF for alt
//! text, a video for subtitles, and a subtitle media uploaded with category `subtitles`.
//! v2 errors are 400 invalid-request problems; v1.1 errors the standard shape (code 38 for a
//! missing field, 324 for the rest). X does not document the success bodies: v2 answers 200
//! with a `data` object, v1.1 200 with no body.

use super::ratelimit::Endpoint;
use super::record::{ApiVersion, Command};
use super::render::{self, Data};
use super::server::{Exchange, Incoming, Shared, gate, not_found, unreadable};
use super::state::OpError;
use super::v1::parse_id;
use super::wire::{self, BodyKind, Reject, text};
use axum::response::Response;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

/// Which call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Metadata,
    SubtitlesCreate,
    SubtitlesDelete,
}

/// One authenticated request: the server, the API, the user and the JSON body.
#[derive(Clone, Copy)]
struct Req<'a> {
    sh: &'a Shared,
    api: ApiVersion,
    user: u64,
    obj: &'a Map<String, Value>,
}

/// The `media_category` values of the subtitles calls (protocol.md §12).
const SUBTITLE_VIDEO_CATEGORIES: [&str; 2] = ["TweetVideo", "AmplifyVideo"];

/// A field that is missing, in the API's shape.
fn missing(api: ApiVersion, name: &str) -> Reject {
    match api {
        ApiVersion::V2 => wire::v2_invalid(&text::v2_missing(name)).into(),
        _ => wire::v1_errors(StatusCode::BAD_REQUEST, 38, &text::missing(name)).into(),
    }
}

/// A field that does not validate, in the API's shape.
fn invalid(api: ApiVersion, name: &str) -> Reject {
    match api {
        ApiVersion::V2 => wire::v2_invalid(&text::v2_invalid(name)).into(),
        _ => wire::v1_errors(StatusCode::BAD_REQUEST, 324, &text::invalid(name)).into(),
    }
}

/// A free-text 400 in the API's shape.
fn bad(api: ApiVersion, message: &str) -> Reject {
    match api {
        ApiVersion::V2 => wire::v2_invalid(message).into(),
        _ => wire::v1_errors(StatusCode::BAD_REQUEST, 324, message).into(),
    }
}

/// An operation error in the API's shape; `id` is the media id as sent.
fn op_error(api: ApiVersion, e: OpError, id: &str) -> Reject {
    match api {
        ApiVersion::V2 => render::v2_reject(e),
        _ => render::v1_media_api_error(e, id).into(),
    }
}

/// Routes a request to a call by method (v2 `/2/media/subtitles` is POST to create and
/// DELETE to delete; everything else is POST only) and answers it.
pub(crate) async fn handle(
    sh: &Shared,
    ex: &mut Exchange,
    mut inc: Incoming,
    api: ApiVersion,
    post: Call,
) -> Response {
    let call = match (&inc.method, post) {
        (&Method::POST, c) => c,
        (&Method::DELETE, Call::SubtitlesCreate) if api == ApiVersion::V2 => Call::SubtitlesDelete,
        _ => {
            inc.drain(sh.body_limit).await;
            return not_found(api);
        }
    };
    ex.rec.command = match call {
        Call::Metadata => Command::Metadata,
        Call::SubtitlesCreate => Command::SubtitlesCreate,
        Call::SubtitlesDelete => Command::SubtitlesDelete,
    };
    let ep = match (api, call) {
        (ApiVersion::V2, Call::Metadata) => Endpoint::V2Metadata,
        (ApiVersion::V2, Call::SubtitlesCreate) => Endpoint::V2SubtitlesCreate,
        (ApiVersion::V2, Call::SubtitlesDelete) => Endpoint::V2SubtitlesDelete,
        (_, Call::Metadata) => Endpoint::V1Metadata,
        (_, Call::SubtitlesCreate) => Endpoint::V1SubtitlesCreate,
        (_, Call::SubtitlesDelete) => Endpoint::V1SubtitlesDelete,
    };
    let run = async {
        let user = gate(sh, ex, &mut inc, api, ep).await?;
        let obj = json_object(sh, &mut inc, api).await?;
        let r = Req {
            sh,
            api,
            user,
            obj: &obj,
        };
        match call {
            Call::Metadata => metadata(r, ex).await,
            Call::SubtitlesCreate => create(r, ex).await,
            Call::SubtitlesDelete => delete(r, ex).await,
        }
    };
    run.await.unwrap_or_else(Reject::into_response)
}

/// The body as a JSON object (both versions take JSON only here).
async fn json_object(
    sh: &Shared,
    inc: &mut Incoming,
    api: ApiVersion,
) -> Result<Map<String, Value>, Reject> {
    let raw = inc
        .read(sh.body_limit)
        .await
        .map_err(|e| unreadable(api, e))?;
    if inc.kind != BodyKind::Json {
        return Err(bad(api, text::V2_CONTENT_TYPE));
    }
    match serde_json::from_slice::<Value>(&raw) {
        Err(_) => Err(bad(api, text::V2_NOT_JSON)),
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad(api, text::V2_NOT_OBJECT)),
    }
}

/// A required media id field (a string of digits, or a JSON integer), as sent.
fn id_field(obj: &Map<String, Value>, api: ApiVersion, name: &str) -> Result<String, Reject> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(missing(api, name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        Some(_) => Err(invalid(api, name)),
    }
}

/// A required string field.
fn str_field<'a>(
    obj: &'a Map<String, Value>,
    api: ApiVersion,
    name: &str,
) -> Result<&'a str, Reject> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(missing(api, name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(api, name)),
    }
}

/// A required object field.
fn obj_field<'a>(
    obj: &'a Map<String, Value>,
    api: ApiVersion,
    name: &str,
) -> Result<&'a Map<String, Value>, Reject> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(missing(api, name)),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(invalid(api, name)),
    }
}

/// `media_category`: `TweetVideo` or `AmplifyVideo`.
fn video_category(obj: &Map<String, Value>, api: ApiVersion) -> Result<String, Reject> {
    let c = str_field(obj, api, "media_category")?;
    if SUBTITLE_VIDEO_CATEGORIES.contains(&c) {
        Ok(c.to_string())
    } else {
        Err(invalid(api, "media_category"))
    }
}

/// `language_code`: `^[A-Z]{2}$` (protocol.md §12).
fn language(obj: &Map<String, Value>, api: ApiVersion) -> Result<String, Reject> {
    let l = str_field(obj, api, "language_code")?;
    if l.len() == 2 && l.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(l.to_string())
    } else {
        Err(invalid(api, "language_code"))
    }
}

/// A media id as sent, parsed; an id that does not parse names no media.
fn media(api: ApiVersion, id: &str) -> Result<u64, Reject> {
    let limit = if api == ApiVersion::V2 { 19 } else { 20 };
    (id.len() <= limit)
        .then(|| parse_id(id))
        .flatten()
        .ok_or_else(|| op_error(api, OpError::UnknownId, id))
}

/// The v1.1 `subtitle_info.subtitles` array (non-empty).
fn v1_tracks(obj: &Map<String, Value>) -> Result<Vec<&Map<String, Value>>, Reject> {
    let api = ApiVersion::V1;
    let info = obj_field(obj, api, "subtitle_info")?;
    let tracks = match info.get("subtitles") {
        None | Some(Value::Null) => return Err(missing(api, "subtitles")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid(api, "subtitles")),
    };
    let tracks: Option<Vec<_>> = tracks.iter().map(Value::as_object).collect();
    match tracks {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(invalid(api, "subtitles")),
    }
}

fn ok(api: ApiVersion, data: impl Serialize) -> Result<Response, Reject> {
    Ok(match api {
        ApiVersion::V2 => wire::json_body(StatusCode::OK, &Data { data }),
        _ => wire::empty(StatusCode::OK),
    })
}

async fn metadata(r: Req<'_>, ex: &mut Exchange) -> Result<Response, Reject> {
    let Req { sh, api, user, obj } = r;
    let (id_text, alt) = match api {
        ApiVersion::V2 => {
            let id = id_field(obj, api, "id")?;
            let meta = obj_field(obj, api, "metadata")?;
            (id, obj_field(meta, api, "alt_text")?)
        }
        _ => (
            id_field(obj, api, "media_id")?,
            obj_field(obj, api, "alt_text")?,
        ),
    };
    let text = str_field(alt, api, "text")?;
    ex.rec.media_id = Some(id_text.clone());
    let limit = sh.cfg.alt_text_max_chars;
    if text.chars().count() > limit {
        return Err(bad(api, &text::alt_text_too_long(limit)));
    }
    let id = media(api, &id_text)?;
    sh.media
        .set_alt_text(&sh.clock, user, id, text)
        .await
        .map_err(|e| op_error(api, e, &id_text))?;
    #[derive(Serialize)]
    struct AltText<'a> {
        text: &'a str,
    }
    #[derive(Serialize)]
    struct Associated<'a> {
        alt_text: AltText<'a>,
    }
    #[derive(Serialize)]
    struct Metadata<'a> {
        id: &'a str,
        associated_metadata: Associated<'a>,
    }
    ok(
        api,
        Metadata {
            id: &id_text,
            associated_metadata: Associated {
                alt_text: AltText { text },
            },
        },
    )
}

/// One track as the server stores it: subtitle media id as sent, language, display name.
#[derive(Debug, Serialize)]
struct Track {
    id: String,
    language_code: String,
    display_name: String,
}

fn track(obj: &Map<String, Value>, api: ApiVersion, id_name: &str) -> Result<Track, Reject> {
    let id = id_field(obj, api, id_name)?;
    let language_code = language(obj, api)?;
    let display_name = str_field(obj, api, "display_name")?;
    if display_name.trim().is_empty() {
        return Err(invalid(api, "display_name"));
    }
    Ok(Track {
        id,
        language_code,
        display_name: display_name.to_string(),
    })
}

async fn create(r: Req<'_>, ex: &mut Exchange) -> Result<Response, Reject> {
    let Req { sh, api, user, obj } = r;
    let (video_text, tracks) = match api {
        ApiVersion::V2 => {
            let id = id_field(obj, api, "id")?;
            (
                id,
                vec![track(obj_field(obj, api, "subtitles")?, api, "id")?],
            )
        }
        _ => {
            let id = id_field(obj, api, "media_id")?;
            let tracks = v1_tracks(obj)?
                .into_iter()
                .map(|t| track(t, api, "media_id"))
                .collect::<Result<Vec<_>, _>>()?;
            (id, tracks)
        }
    };
    let category = video_category(obj, api)?;
    ex.rec.media_id = Some(video_text.clone());
    let video = media(api, &video_text)?;
    for t in &tracks {
        let sub = media(api, &t.id)?;
        sh.media
            .attach_subtitles(
                &sh.clock,
                user,
                video,
                sub,
                &t.language_code,
                &t.display_name,
            )
            .await
            .map_err(|e| {
                // Name the id the error is about.
                let id = if e == OpError::NotSubtitles {
                    &t.id
                } else {
                    &video_text
                };
                op_error(api, e, id)
            })?;
    }
    #[derive(Serialize)]
    struct Created {
        id: String,
        media_category: String,
        associated_subtitles: Vec<Track>,
    }
    ok(
        api,
        Created {
            id: video_text,
            media_category: category,
            associated_subtitles: tracks,
        },
    )
}

async fn delete(r: Req<'_>, ex: &mut Exchange) -> Result<Response, Reject> {
    let Req { sh, api, user, obj } = r;
    let (video_text, languages) = match api {
        ApiVersion::V2 => (id_field(obj, api, "id")?, vec![language(obj, api)?]),
        _ => {
            let id = id_field(obj, api, "media_id")?;
            let languages = v1_tracks(obj)?
                .into_iter()
                .map(|t| language(t, api))
                .collect::<Result<Vec<_>, _>>()?;
            (id, languages)
        }
    };
    video_category(obj, api)?;
    ex.rec.media_id = Some(video_text.clone());
    let video = media(api, &video_text)?;
    for l in &languages {
        sh.media
            .delete_subtitles(&sh.clock, user, video, l)
            .await
            .map_err(|e| op_error(api, e, &video_text))?;
    }
    #[derive(Serialize)]
    struct Deleted {
        deleted: bool,
    }
    ok(api, Deleted { deleted: true })
}
