//! v1.1: `POST|GET /1.1/media/upload.json`, dispatching on `command` (protocol.md §3).
//!
//! Parameters come from the query, the urlencoded body or the multipart fields. A POST
//! without a command, or a POSTed STATUS, is a simple upload (protocol.md §3.4–3.5).

use super::ratelimit::Endpoint;
use super::record::{ApiVersion, Command};
use super::render;
use super::server::{ConnCtl, Exchange, Incoming, Shared, fault_gate, gate, unreadable};
use super::state::{NewMedia, OpError, check_init_size, init_expiry, sniff_image};
use super::v2::V2_MEDIA_TYPES;
use super::wire::{
    self, BodyKind, Params, Reject, decode_base64_lenient, decode_base64_strict, text,
};
use crate::limits::{MAX_SEGMENTS, MediaCategory};
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};
use std::str::FromStr;

const API: ApiVersion = ApiVersion::V1;
const BAD: StatusCode = StatusCode::BAD_REQUEST;

/// Most `additional_owners` one media may have.
///
/// Source: protocol.md §3.1 (X INIT reference: "up to 100").
const MAX_ADDITIONAL_OWNERS: usize = 100;

/// Code-38 "X parameter is missing." (standard shape).
fn missing(name: &str) -> Reject {
    wire::v1_errors(BAD, 38, &text::missing(name)).into()
}

/// A parameter that does not parse (legacy shape).
fn invalid(name: &str) -> Reject {
    wire::v1_legacy(BAD, &text::invalid(name)).into()
}

/// A required text parameter.
fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, Reject> {
    match p.str(name) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(missing(name)),
        Err(_) => Err(invalid(name)),
    }
}

/// An optional text parameter.
fn optional<'a>(p: &'a Params, name: &str) -> Result<Option<&'a str>, Reject> {
    p.str(name).map_err(|_| invalid(name))
}

/// Whether a media type is one X knows (the v2 enum, or any image/video type).
pub(crate) fn known_media_type(t: &str) -> bool {
    V2_MEDIA_TYPES.iter().any(|k| k.eq_ignore_ascii_case(t))
        || MediaCategory::guess_from_media_type(t).is_some()
}

fn parse_category(p: &Params) -> Result<Option<MediaCategory>, Reject> {
    optional(p, "media_category")?
        .map(|c| MediaCategory::from_str(c).map_err(|_| invalid("media_category")))
        .transpose()
}

fn parse_owners(p: &Params) -> Result<Vec<String>, Reject> {
    let Some(list) = optional(p, "additional_owners")? else {
        return Ok(Vec::new());
    };
    let owners: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let numeric = owners
        .iter()
        .all(|o| !o.is_empty() && o.len() <= 19 && o.bytes().all(|b| b.is_ascii_digit()));
    if owners.len() > MAX_ADDITIONAL_OWNERS || !numeric {
        return Err(invalid("additional_owners"));
    }
    Ok(owners)
}

/// The media of an APPEND or simple upload: `(raw media, media_data)` as sent.
fn media_fields(p: &Params) -> (Option<&Bytes>, Option<&Bytes>) {
    (p.bytes("media"), p.bytes("media_data"))
}

/// `media_data` decoded as X does (lenient on garbage; protocol.md §2.4).
fn decode_media_data(data: &Bytes) -> Bytes {
    Bytes::from(decode_base64_strict(data).unwrap_or_else(|| decode_base64_lenient(data)))
}

pub(crate) async fn handle(
    sh: &Shared,
    ex: &mut Exchange,
    ctl: Option<&ConnCtl>,
    mut inc: Incoming,
) -> Response {
    let ep = match inc.method {
        Method::GET => Endpoint::V1Get,
        Method::POST => Endpoint::V1Post,
        _ => {
            inc.drain(sh.body_limit).await;
            return super::server::not_found(API);
        }
    };
    let query_command = inc
        .query
        .iter()
        .find(|(k, _)| k == "command")
        .map(|(_, v)| v.clone());
    ex.rec.command = match (ep, query_command.as_deref()) {
        (Endpoint::V1Get, Some("STATUS")) => Command::Status,
        (Endpoint::V1Post, Some("INIT")) => Command::Init,
        (Endpoint::V1Post, Some("APPEND")) => Command::Append,
        (Endpoint::V1Post, Some("FINALIZE")) => Command::Finalize,
        (Endpoint::V1Post, None | Some("STATUS")) => Command::Simple,
        _ => Command::Unknown,
    };
    let user = match gate(sh, ex, &mut inc, API, ep).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    // An APPEND named in the query meets its fault before its body is read, so a dropped
    // connection cuts the upload midway.
    let mut faults_done = false;
    if ex.rec.command == Command::Append {
        if let Err(r) = fault_gate(sh, ex, ctl, &mut inc, API).await {
            return r;
        }
        faults_done = true;
    }
    let mut params = Params::default();
    params.extend(
        inc.query
            .iter()
            .map(|(k, v)| (k.clone(), Bytes::from(v.clone()))),
    );
    match inc.kind {
        BodyKind::UrlEncoded => params.extend(inc.form.clone()),
        BodyKind::Multipart => match inc.multipart().await {
            Ok(fields) => params.extend(fields),
            Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => {
                return super::server::too_large(API);
            }
            Err(e) => return wire::v1_legacy(BAD, &e.message),
        },
        // v1.1 reads no other body; it is drained so the answer arrives cleanly.
        _ => {
            if let Err(e) = inc.read(sh.body_limit).await {
                return unreadable(API, e);
            }
        }
    }
    let command = match params.str("command") {
        Ok(c) => c.map(str::to_string),
        Err(_) => return invalid("command").into_response(),
    };
    if ep == Endpoint::V1Get {
        return match command.as_deref() {
            Some("STATUS") => {
                ex.rec.command = Command::Status;
                status(sh, ex, user, &params)
            }
            None => missing("command").into_response(),
            Some(_) => invalid("command").into_response(),
        };
    }
    match command.as_deref() {
        // A POSTed STATUS is a simple upload without media (codebird#252).
        None | Some("STATUS") => {
            ex.rec.command = Command::Simple;
            simple(sh, ex, user, &params).await
        }
        Some("INIT") => {
            ex.rec.command = Command::Init;
            init(sh, ex, user, &params).await
        }
        Some("APPEND") => {
            ex.rec.command = Command::Append;
            if !faults_done {
                if let Err(r) = fault_gate(sh, ex, ctl, &mut inc, API).await {
                    return r;
                }
            }
            append(sh, ex, user, &params).await
        }
        Some("FINALIZE") => {
            ex.rec.command = Command::Finalize;
            finalize(sh, ex, user, &params).await
        }
        Some(_) => {
            ex.rec.command = Command::Unknown;
            invalid("command").into_response()
        }
    }
}

async fn init(sh: &Shared, ex: &mut Exchange, user: u64, p: &Params) -> Response {
    let run = async {
        let total = required(p, "total_bytes")?;
        let media_type = required(p, "media_type")?;
        let total_bytes: u64 = total
            .parse()
            .ok()
            .filter(|_| total.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| invalid("total_bytes"))?;
        let category = parse_category(p)?;
        if !known_media_type(media_type) {
            return Err(wire::v1_legacy(BAD, text::MEDIA_TYPE_UNRECOGNIZED).into());
        }
        let additional_owners = parse_owners(p)?;
        let shared = match optional(p, "shared")? {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(invalid("shared")),
        };
        check_init_size(&sh.cfg, category, media_type, total_bytes)
            .map_err(|e| render::v1_error(e, ""))?;
        let expires_after_secs = init_expiry(&sh.cfg, category, false);
        let v = sh
            .media
            .init(
                &sh.clock,
                NewMedia {
                    owner: user,
                    category,
                    media_type: media_type.to_string(),
                    total_bytes,
                    additional_owners,
                    shared,
                    expires_after_secs,
                },
            )
            .await;
        ex.rec.media_id = Some(v.id.to_string());
        #[derive(serde::Serialize)]
        struct Init<'a> {
            media_id: u64,
            media_id_string: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            media_key: Option<&'a str>,
            expires_after_secs: u64,
        }
        Ok::<_, Reject>(wire::json_body(
            status_code(sh.cfg.v1_status.init),
            &Init {
                media_id: v.id,
                media_id_string: v.id.to_string(),
                // X is believed to send a key only when a category was given (§11.4).
                media_key: category.map(|_| v.media_key.as_str()),
                expires_after_secs: v.expires_after_secs,
            },
        ))
    };
    run.await.unwrap_or_else(Reject::into_response)
}

/// A configured (validated 2xx) status code.
fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

/// A media id as sent: digits that fit a u64, else no media can have it.
pub(crate) fn parse_id(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// The `media_id` parameter as sent (recorded in the log) and parsed; an id that does not
/// parse is an unknown one.
fn media_id<'a>(ex: &mut Exchange, p: &'a Params) -> Result<(&'a str, u64), Reject> {
    let text = required(p, "media_id")?;
    ex.rec.media_id = Some(text.to_string());
    let id =
        parse_id(text).ok_or_else(|| Reject::from(render::v1_error(OpError::UnknownId, text)))?;
    Ok((text, id))
}

async fn append(sh: &Shared, ex: &mut Exchange, user: u64, p: &Params) -> Response {
    let media_id = match required(p, "media_id") {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    ex.rec.media_id = Some(media_id.to_string());
    let index = match required(p, "segment_index") {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let (media, media_data) = media_fields(p);
    if media.is_none() && media_data.is_none() {
        return missing("media").into_response();
    }
    let Some(index) = index.parse::<u32>().ok().filter(|i| *i < MAX_SEGMENTS) else {
        return wire::v1_legacy(BAD, text::SEGMENT_RANGE);
    };
    ex.rec.segment_index = Some(index);
    let max = sh.cfg.max_append_bytes;
    if media
        .into_iter()
        .chain(media_data)
        .any(|m| m.len() as u64 > max)
    {
        return wire::v1_legacy(BAD, &text::segment_too_large(max));
    }
    let data = match (media, media_data) {
        (Some(_), Some(_)) => return wire::v1_legacy(BAD, text::BOTH_MEDIA),
        (Some(m), None) => m.clone(),
        (None, Some(d)) => decode_media_data(d),
        (None, None) => return missing("media").into_response(),
    };
    ex.rec.body_bytes = data.len() as u64;
    let Some(id) = parse_id(media_id) else {
        return render::v1_error(OpError::UnknownId, media_id);
    };
    match sh
        .media
        .append(&sh.cfg, &sh.clock, user, id, index, data)
        .await
    {
        Ok(_) => wire::empty(status_code(sh.cfg.v1_status.append)),
        Err(e) => render::v1_error(e, media_id),
    }
}

async fn finalize(sh: &Shared, ex: &mut Exchange, user: u64, p: &Params) -> Response {
    let (text, id) = match media_id(ex, p) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match sh.media.finalize(&sh.cfg, &sh.clock, user, id).await {
        Ok(v) => render::v1_media(status_code(sh.cfg.v1_status.finalize), &v, true),
        Err(e) => render::v1_error(e, text),
    }
}

fn status(sh: &Shared, ex: &mut Exchange, user: u64, p: &Params) -> Response {
    let (text, id) = match media_id(ex, p) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match sh.media.status(&sh.cfg, &sh.clock, user, id) {
        Ok(v) => render::v1_media(status_code(sh.cfg.v1_status.status), &v, true),
        Err(e) => render::v1_error(e, text),
    }
}

async fn simple(sh: &Shared, ex: &mut Exchange, user: u64, p: &Params) -> Response {
    let (media, media_data) = media_fields(p);
    let data = match (media, media_data) {
        (None, None) => return missing("media").into_response(),
        (Some(_), Some(_)) => return wire::v1_legacy(BAD, text::BOTH_MEDIA),
        (Some(m), None) => m.clone(),
        (None, Some(d)) => decode_media_data(d),
    };
    ex.rec.body_bytes = data.len() as u64;
    let category = match parse_category(p) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let additional_owners = match parse_owners(p) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let Some((media_type, _, _)) = sniff_image(&data) else {
        return wire::v1_legacy(BAD, text::MEDIA_TYPE_UNRECOGNIZED);
    };
    let limit = sh
        .cfg
        .category_limit(category.unwrap_or(MediaCategory::TweetImage));
    if data.len() as u64 > limit {
        return wire::v1_errors(BAD, 324, &text::image_size(limit));
    }
    let m = NewMedia {
        owner: user,
        category,
        media_type: media_type.to_string(),
        total_bytes: data.len() as u64,
        additional_owners,
        shared: false,
        expires_after_secs: sh.cfg.expiry.finalized_secs,
    };
    match sh.media.one_shot(&sh.cfg, &sh.clock, m, data).await {
        Ok(v) => {
            ex.rec.media_id = Some(v.id.to_string());
            // `media_key` only when a category was sent (protocol.md §2.1).
            render::v1_media(status_code(sh.cfg.v1_status.simple), &v, category.is_some())
        }
        Err(e) => render::v1_error(e, ""),
    }
}
