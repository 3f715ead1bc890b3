//! v2 dedicated endpoints (protocol.md §4): `POST /2/media/upload/initialize`,
//! `POST /2/media/upload/{id}/append`, `POST /2/media/upload/{id}/finalize`,
//! `GET /2/media/upload` (STATUS) and `POST /2/media/upload` (one-shot).

use super::config::V2_TOTAL_BYTES_MAX;
use super::ratelimit::Endpoint;
use super::record::{ApiVersion, Command};
use super::render::{self, Data};
use super::server::{
    ConnCtl, Exchange, Incoming, Shared, fault_gate, gate, not_found, too_large, unreadable,
};
use super::state::{NewMedia, OpError, check_init_size, init_expiry, sniff_image};
use super::v1::parse_id;
use super::wire::{self, BodyKind, Params, Reject, decode_base64_strict, text};
use crate::limits::{MAX_SEGMENTS, MediaCategory};
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const API: ApiVersion = ApiVersion::V2;

/// The `media_type` enum of the v2 INIT schema.
///
/// Source: protocol.md §4.1 (xdevplatform/docs openapi.json).
pub(crate) const V2_MEDIA_TYPES: [&str; 15] = [
    "video/mp4",
    "video/webm",
    "video/mp2t",
    "video/quicktime",
    "text/srt",
    "text/vtt",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/png",
    "image/webp",
    "image/pjpeg",
    "image/tiff",
    "model/gltf-binary",
    "model/vnd.usdz+zip",
];

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

/// A v2 category: the exact lower-case enum value.
fn parse_category(s: &str) -> Result<MediaCategory, Reject> {
    MediaCategory::ALL
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| wire::v2_reject(&text::v2_invalid("media_category")))
}

/// Common start of `/2/media/upload/{id}/...`: records the command and the `{id}` path
/// segment, and answers 404 to anything but POST.
async fn id_route(
    sh: &Shared,
    ex: &mut Exchange,
    inc: &mut Incoming,
    command: Command,
) -> Result<String, Response> {
    ex.rec.command = command;
    let id = inc
        .uri
        .path()
        .split('/')
        .nth(4)
        .unwrap_or_default()
        .to_string();
    ex.rec.media_id = Some(id.clone());
    if inc.method != Method::POST {
        inc.drain(sh.body_limit).await;
        return Err(not_found(API));
    }
    Ok(id)
}

fn valid_path_id(id: &str) -> Option<u64> {
    (id.len() <= 19).then(|| parse_id(id)).flatten()
}

/// Reads a JSON object body. `Ok(None)` for an empty body when `allow_empty`.
async fn json_object(
    sh: &Shared,
    inc: &mut Incoming,
    allow_empty: bool,
) -> Result<Option<Map<String, Value>>, Reject> {
    let raw = inc
        .read(sh.body_limit)
        .await
        .map_err(|e| unreadable(API, e))?;
    if raw.is_empty() && allow_empty {
        return Ok(None);
    }
    if inc.kind != BodyKind::Json {
        return Err(wire::v2_reject(text::V2_CONTENT_TYPE));
    }
    match serde_json::from_slice::<Value>(&raw) {
        Err(_) => Err(wire::v2_reject(text::V2_NOT_JSON)),
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(wire::v2_reject(text::V2_NOT_OBJECT)),
    }
}

/// Deserializes a checked JSON object into a request struct; schema errors become 400s.
fn from_object<T: serde::de::DeserializeOwned>(m: Map<String, Value>) -> Result<T, Reject> {
    serde_json::from_value(Value::Object(m)).map_err(|e| wire::v2_reject(&e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitBody {
    total_bytes: Option<u64>,
    media_type: Option<String>,
    media_category: Option<String>,
    additional_owners: Option<Vec<String>>,
    shared: Option<bool>,
}

pub(crate) async fn initialize(sh: &Shared, ex: &mut Exchange, mut inc: Incoming) -> Response {
    ex.rec.command = Command::Init;
    if inc.method != Method::POST {
        inc.drain(sh.body_limit).await;
        return not_found(API);
    }
    let run = async {
        let user = gate(sh, ex, &mut inc, API, Endpoint::V2Initialize).await?;
        let obj = json_object(sh, &mut inc, false).await?.unwrap_or_default();
        let body: InitBody = from_object(obj)?;
        let total_bytes = body
            .total_bytes
            .ok_or_else(|| wire::v2_invalid(&text::v2_missing("total_bytes")))?;
        let media_type = body
            .media_type
            .ok_or_else(|| wire::v2_invalid(&text::v2_missing("media_type")))?;
        if total_bytes > V2_TOTAL_BYTES_MAX {
            return Err(wire::v2_reject(&text::v2_invalid("total_bytes")));
        }
        if !V2_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(wire::v2_reject(&text::v2_invalid("media_type")));
        }
        let category = match body.media_category.as_deref() {
            Some(c) => Some(parse_category(c)?),
            // The server picks a tweet_* category from the type (protocol.md §2.2).
            None => MediaCategory::guess_from_media_type(&media_type),
        };
        let additional_owners = body.additional_owners.unwrap_or_default();
        if additional_owners.len() > 100 || additional_owners.iter().any(|o| parse_id(o).is_none())
        {
            return Err(wire::v2_reject(&text::v2_invalid("additional_owners")));
        }
        check_init_size(&sh.cfg, category, &media_type, total_bytes).map_err(render::v2_reject)?;
        let expires_after_secs = init_expiry(&sh.cfg, category, true);
        let v = sh
            .media
            .init(
                &sh.clock,
                NewMedia {
                    owner: user,
                    category,
                    media_type,
                    total_bytes,
                    additional_owners,
                    shared: body.shared.unwrap_or(false),
                    expires_after_secs,
                },
            )
            .await;
        Ok::<_, Reject>(v)
    };
    match run.await {
        Ok(v) => {
            ex.rec.media_id = Some(v.id.to_string());
            #[derive(Serialize)]
            struct Init<'a> {
                id: String,
                media_key: &'a str,
                expires_after_secs: u64,
            }
            wire::json_body(
                status_code(sh.cfg.v2_status.init),
                &Data {
                    data: Init {
                        id: v.id.to_string(),
                        media_key: &v.media_key,
                        expires_after_secs: v.expires_after_secs,
                    },
                },
            )
        }
        Err(r) => r.into_response(),
    }
}

/// A multipart body's fields (413 beyond the body limit, 400 when malformed).
async fn multipart_fields(inc: &mut Incoming) -> Result<Params, Reject> {
    let fields = inc.multipart().await.map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            Reject::from(too_large(API))
        } else {
            wire::v2_reject(&e.message)
        }
    })?;
    let mut p = Params::default();
    p.extend(fields);
    Ok(p)
}

/// A JSON `media` field: standard base64 (`format: byte`), strictly decoded.
fn json_media(media: Option<String>) -> Result<Option<Bytes>, Reject> {
    media
        .map(|m| {
            decode_base64_strict(m.as_bytes())
                .map(Bytes::from)
                .ok_or_else(|| wire::v2_reject(&text::v2_invalid("media")))
        })
        .transpose()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendJson {
    media: Option<String>,
    segment_index: Option<Value>,
}

/// A `segment_index` as sent: an integer, or a string of digits (protocol.md §4.2).
fn segment_index(v: &Value) -> Option<u32> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()?
        }
        _ => return None,
    };
    u32::try_from(n).ok().filter(|i| *i < MAX_SEGMENTS)
}

pub(crate) async fn append(
    sh: &Shared,
    ex: &mut Exchange,
    ctl: Option<&ConnCtl>,
    mut inc: Incoming,
) -> Response {
    let id_text = match id_route(sh, ex, &mut inc, Command::Append).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let run = async {
        let user = gate(sh, ex, &mut inc, API, Endpoint::V2Append).await?;
        fault_gate(sh, ex, ctl, &mut inc, API).await?;
        // (segment_index as sent, media as sent on the wire, decoded media)
        let (index, wire_len, data): (Option<Value>, u64, Option<Bytes>) = match inc.kind {
            BodyKind::Multipart => {
                let fields = multipart_fields(&mut inc).await?;
                let get = |n: &str| fields.bytes(n).cloned();
                let index = get("segment_index")
                    .map(|b| Value::String(String::from_utf8_lossy(&b).into_owned()));
                let media = get("media");
                (index, media.as_ref().map_or(0, |m| m.len() as u64), media)
            }
            _ => {
                let obj = json_object(sh, &mut inc, false).await?.unwrap_or_default();
                let body: AppendJson = from_object(obj)?;
                let wire_len = body.media.as_ref().map_or(0, |m| m.len() as u64);
                let data = json_media(body.media)?;
                (body.segment_index, wire_len, data)
            }
        };
        let index = index.ok_or_else(|| wire::v2_invalid(&text::v2_missing("segment_index")))?;
        let data = data.ok_or_else(|| wire::v2_invalid(&text::v2_missing("media")))?;
        let index = segment_index(&index).ok_or_else(|| wire::v2_invalid(text::SEGMENT_RANGE))?;
        ex.rec.segment_index = Some(index);
        let max = sh.cfg.max_append_bytes;
        if wire_len > max {
            return Err(wire::v2_reject(&text::segment_too_large(max)));
        }
        ex.rec.body_bytes = data.len() as u64;
        let id = valid_path_id(&id_text).ok_or_else(|| render::v2_error(OpError::UnknownId))?;
        sh.media
            .append(&sh.cfg, &sh.clock, user, id, index, data)
            .await
            .map_err(render::v2_reject)
    };
    match run.await {
        Ok(expires_at) => {
            #[derive(Serialize)]
            struct Appended {
                expires_at: u64,
            }
            wire::json_body(
                status_code(sh.cfg.v2_status.append),
                &Data {
                    data: Appended { expires_at },
                },
            )
        }
        Err(r) => r.into_response(),
    }
}

pub(crate) async fn finalize(sh: &Shared, ex: &mut Exchange, mut inc: Incoming) -> Response {
    let id_text = match id_route(sh, ex, &mut inc, Command::Finalize).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let run = async {
        let user = gate(sh, ex, &mut inc, API, Endpoint::V2Finalize).await?;
        // No body, or a JSON object such as `{}` (protocol.md §4.3).
        json_object(sh, &mut inc, true).await?;
        let id = valid_path_id(&id_text).ok_or_else(|| render::v2_error(OpError::UnknownId))?;
        sh.media
            .finalize(&sh.cfg, &sh.clock, user, id)
            .await
            .map_err(render::v2_reject)
    };
    match run.await {
        Ok(v) => render::v2_media(status_code(sh.cfg.v2_status.finalize), &v),
        Err(r) => r.into_response(),
    }
}

/// `GET /2/media/upload` is STATUS; `POST /2/media/upload` is the one-shot upload.
pub(crate) async fn upload(sh: &Shared, ex: &mut Exchange, mut inc: Incoming) -> Response {
    match inc.method {
        Method::GET => {
            ex.rec.command = Command::Status;
            status(sh, ex, inc).await
        }
        Method::POST => {
            ex.rec.command = Command::Simple;
            one_shot(sh, ex, inc).await
        }
        _ => {
            inc.drain(sh.body_limit).await;
            not_found(API)
        }
    }
}

async fn status(sh: &Shared, ex: &mut Exchange, mut inc: Incoming) -> Response {
    let run = async {
        let user = gate(sh, ex, &mut inc, API, Endpoint::V2Status).await?;
        inc.drain(sh.body_limit).await;
        let q = |n: &str| {
            inc.query
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        if q("command").is_some_and(|c| c != "STATUS") {
            return Err(wire::v2_reject(&text::v2_invalid("command")));
        }
        let media_id =
            q("media_id").ok_or_else(|| wire::v2_invalid(&text::v2_missing("media_id")))?;
        ex.rec.media_id = Some(media_id.clone());
        let id = valid_path_id(&media_id).ok_or_else(|| render::v2_error(OpError::UnknownId))?;
        sh.media
            .status(&sh.cfg, &sh.clock, user, id)
            .map_err(render::v2_reject)
    };
    match run.await {
        Ok(v) => render::v2_media(status_code(sh.cfg.v2_status.status), &v),
        Err(r) => r.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneShotJson {
    media: Option<String>,
    media_category: Option<String>,
    media_type: Option<String>,
    additional_owners: Option<Value>,
    shared: Option<bool>,
}

/// `additional_owners`: an array of id strings (2025 spec) or a comma-separated string
/// (2026 spec); both are accepted (protocol.md §4.5, §11.13).
fn owners(v: Option<Value>) -> Result<Vec<String>, Reject> {
    let list: Vec<String> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|x| match x {
                Value::String(s) => Ok(s),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|_| wire::v2_invalid(&text::v2_invalid("additional_owners")))?,
        Some(_) => return Err(wire::v2_reject(&text::v2_invalid("additional_owners"))),
    };
    if list.len() > 100 || list.iter().any(|o| parse_id(o).is_none()) {
        return Err(wire::v2_reject(&text::v2_invalid("additional_owners")));
    }
    Ok(list)
}

async fn one_shot(sh: &Shared, ex: &mut Exchange, mut inc: Incoming) -> Response {
    let run = async {
        let user = gate(sh, ex, &mut inc, API, Endpoint::V2Upload).await?;
        let (media, category, media_type, owners_value, shared) = match inc.kind {
            BodyKind::Multipart => {
                let fields = multipart_fields(&mut inc).await?;
                let get = |n: &str| fields.bytes(n).cloned();
                let text_field = |n: &str| get(n).map(|b| String::from_utf8_lossy(&b).into_owned());
                (
                    get("media"),
                    text_field("media_category"),
                    text_field("media_type"),
                    text_field("additional_owners").map(Value::String),
                    text_field("shared").is_some_and(|v| v == "true"),
                )
            }
            _ => {
                let obj = json_object(sh, &mut inc, false).await?.unwrap_or_default();
                let body: OneShotJson = from_object(obj)?;
                let media = json_media(body.media)?;
                (
                    media,
                    body.media_category,
                    body.media_type,
                    body.additional_owners,
                    body.shared.unwrap_or(false),
                )
            }
        };
        let media = media.ok_or_else(|| wire::v2_invalid(&text::v2_missing("media")))?;
        ex.rec.body_bytes = media.len() as u64;
        // `media_category` must be in the body; a query parameter no longer counts (§4.5).
        let category =
            category.ok_or_else(|| wire::v2_invalid(&text::v2_missing("media_category")))?;
        let category = parse_category(&category)?;
        if !sh.cfg.v2_one_shot_categories.contains(&category) {
            return Err(wire::v2_reject(&text::v2_invalid("media_category")));
        }
        let additional_owners = owners(owners_value)?;
        let media_type = match media_type {
            Some(t) if V2_MEDIA_TYPES.contains(&t.as_str()) => t,
            Some(_) => return Err(wire::v2_reject(&text::v2_invalid("media_type"))),
            None => sniff_image(&media)
                .map(|(t, _, _)| t.to_string())
                .ok_or_else(|| wire::v2_invalid(text::MEDIA_TYPE_UNRECOGNIZED))?,
        };
        let limit = sh.cfg.category_limit(category);
        if media.len() as u64 > limit {
            return Err(wire::v2_reject(&text::file_size_exceeds(limit)));
        }
        let m = NewMedia {
            owner: user,
            category: Some(category),
            media_type,
            total_bytes: media.len() as u64,
            additional_owners,
            shared,
            expires_after_secs: sh.cfg.expiry.finalized_secs,
        };
        sh.media
            .one_shot(&sh.cfg, &sh.clock, m, media)
            .await
            .map_err(render::v2_reject)
    };
    match run.await {
        Ok(v) => {
            ex.rec.media_id = Some(v.id.to_string());
            render::v2_media(status_code(sh.cfg.v2_status.simple), &v)
        }
        Err(r) => r.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_index_forms() {
        assert_eq!(segment_index(&Value::from(0)), Some(0));
        assert_eq!(segment_index(&Value::from("999")), Some(999));
        assert_eq!(segment_index(&Value::from(1000)), None);
        assert_eq!(segment_index(&Value::from(-1)), None);
        assert_eq!(segment_index(&Value::from(1.5)), None);
        assert_eq!(segment_index(&Value::from("1e3")), None);
        assert_eq!(segment_index(&Value::from("99999999999999999999999")), None);
    }

    #[test]
    fn path_ids_are_one_to_nineteen_digits() {
        assert_eq!(
            valid_path_id("1880000000000000000"),
            Some(1_880_000_000_000_000_000)
        );
        assert_eq!(valid_path_id("18446744073709551615"), None);
        assert_eq!(valid_path_id(""), None);
        assert_eq!(valid_path_id("12a"), None);
    }
}
