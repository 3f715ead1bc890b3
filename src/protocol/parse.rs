//! Pure parsers for X media-upload responses (protocol.md §3, §4, §5): success bodies of
//! v1.1 and v2, the four error body shapes, the `x-rate-limit-*` headers and retry delays,
//! and the mapping of an HTTP error status onto [`Error`].
//!
//! Nothing here does I/O, and nothing panics on any input: malformed, truncated or non-JSON
//! bodies become `ErrorKind::Protocol` errors (or `None` for error bodies, whose status alone
//! already says what happened).
//!
//! The v1.1 and v2 success shapes are told apart by their form, not by configuration: v2
//! wraps every field in `{"data":{...}}` and calls the id `id`; v1.1 puts the fields at the
//! top level and sends the id as `media_id_string` (and a lossy number `media_id`).

use super::{AppendResponse, InitResponse, MediaId, MediaStatus, ProcessingInfo, ProcessingState};
use super::{RateLimit, Result};
use crate::error::{Error, ErrorKind, ServerMessage};
use http::HeaderMap;
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, SystemTime};

/// The largest response body read into memory; a longer body is cut off there.
///
/// Source: the largest documented response (FINALIZE or STATUS with `processing_info` and
/// `video`/`image`, protocol.md §3.3, §4.3) is well under 1 KiB; 1 MiB leaves room for any
/// error page while bounding memory per request.
pub(crate) const MAX_RESPONSE_BODY_BYTES: usize = 1024 * 1024;

/// The longest delay taken from `Retry-After` or `x-rate-limit-reset`; longer requests are
/// clamped to it, so a garbage header cannot overflow a deadline downstream.
///
/// Source: the longest X rate-limit window is 24 hours (protocol.md §5).
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The most characters of a non-JSON error body kept as the server message.
///
/// Source: reasonable default; enough for a proxy's one-line "502 Bad Gateway" text without
/// pasting a whole error page into an error message.
pub(crate) const MAX_PLAIN_TEXT_MESSAGE_CHARS: usize = 200;

/// The longest media id accepted: `u64::MAX` has 20 decimal digits.
///
/// Source: protocol.md §2.1 (a 64-bit snowflake; the v2 spec pattern is `^[0-9]{1,19}$`).
pub(crate) const MAX_MEDIA_ID_DIGITS: usize = 20;

/// One of the calls, for error messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// INIT (v2: `initialize`).
    Init,
    /// APPEND.
    Append,
    /// FINALIZE.
    Finalize,
    /// STATUS.
    Status,
    /// The one-shot upload.
    OneShot,
    /// Alt text (media metadata create).
    Metadata,
    /// Subtitles create.
    SubtitlesCreate,
    /// Subtitles delete.
    SubtitlesDelete,
}

impl Command {
    /// The v1.1 `command` value of the chunked calls, and a name for the others; used in
    /// messages and logs.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Command::Init => "INIT",
            Command::Append => "APPEND",
            Command::Finalize => "FINALIZE",
            Command::Status => "STATUS",
            Command::OneShot => "one-shot upload",
            Command::Metadata => "alt text (metadata create)",
            Command::SubtitlesCreate => "subtitles create",
            Command::SubtitlesDelete => "subtitles delete",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `s` can be an X media id: 1 to 20 ASCII digits.
pub(crate) fn is_media_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_MEDIA_ID_DIGITS && s.bytes().all(|b| b.is_ascii_digit())
}

/// A `Protocol` error for an unusable 2xx body of `command`.
fn protocol_error(command: Command, what: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!(
            "the {command} response {what}; check that the base URL points at an X media upload API"
        ),
    )
}

/// Parses a 2xx body as a JSON object and returns the object holding the fields: `data` for
/// v2 bodies, the top level for v1.1 bodies. A body with `errors` and no `data` becomes a
/// `Protocol` error carrying the server's message.
fn fields_object(command: Command, body: &[u8]) -> Result<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(protocol_error(command, "body is empty"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| protocol_error(command, "body is not valid JSON").with_source(e))?;
    let Value::Object(mut top) = value else {
        return Err(protocol_error(command, "body is not a JSON object"));
    };
    match top.remove("data") {
        Some(Value::Object(data)) => Ok(data),
        Some(_) => Err(protocol_error(command, "`data` is not a JSON object")),
        None if top.contains_key("errors") => {
            let mut e = protocol_error(command, "carries errors and no data");
            if let Some(m) = message_from_object(&top) {
                e = e.with_server_message(m);
            }
            Err(e)
        }
        None => Ok(top),
    }
}

/// A non-negative integer from a JSON number (integer or float, rounded up) or a string of
/// digits. Optional numeric fields go through this, so a server that sends `"5"` or `5.0`
/// does not break the upload.
fn lenient_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                // `as` saturates for floats above u64::MAX, which is what we want here.
                .map(|f| f.ceil() as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string field, if present and a string.
fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// The media id of a v1.1 or v2 object: `media_id_string` (v1.1), `id` (v2), and only then
/// the number `media_id`. serde_json reads integers up to `u64::MAX` exactly, so the number
/// is safe too; but the docs tell clients to prefer the string (protocol.md §2.1).
fn media_id_of(obj: &Map<String, Value>) -> Option<MediaId> {
    for key in ["media_id_string", "id"] {
        if let Some(s) = str_field(obj, key).filter(|s| is_media_id(s)) {
            return Some(MediaId(s.to_string()));
        }
    }
    match obj.get("media_id")? {
        Value::Number(n) => n.as_u64().map(|n| MediaId(n.to_string())),
        Value::String(s) if is_media_id(s) => Some(MediaId(s.clone())),
        _ => None,
    }
}

/// Parses a 2xx INIT body (v1.1 `{"media_id_string":..}` or v2 `{"data":{"id":..}}`).
pub(crate) fn init_response(body: &[u8]) -> Result<InitResponse> {
    let obj = fields_object(Command::Init, body)?;
    let media_id =
        media_id_of(&obj).ok_or_else(|| protocol_error(Command::Init, "has no usable media id"))?;
    Ok(InitResponse {
        media_id,
        media_key: str_field(&obj, "media_key").map(str::to_string),
        expires_after_secs: obj.get("expires_after_secs").and_then(lenient_u64),
    })
}

/// Parses a 2xx APPEND body. APPEND needs nothing from its answer (v1.1 sends 204 and no
/// body; v2 may send `{"data":{"expires_at":..}}`), so any body that is not such JSON is
/// ignored rather than failing a segment the server accepted.
pub(crate) fn append_response(body: &[u8]) -> AppendResponse {
    let expires_at = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("data")
            .unwrap_or(&v)
            .get("expires_at")
            .and_then(lenient_u64)
    });
    AppendResponse {
        expires_at,
        rate_limit: None,
    }
}

/// Parses a 2xx FINALIZE or STATUS body. `requested` is the id the call was made for; it is
/// used when the body names none.
pub(crate) fn media_status(
    command: Command,
    body: &[u8],
    requested: &MediaId,
) -> Result<MediaStatus> {
    let obj = fields_object(command, body)?;
    let processing_info = match obj.get("processing_info") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(processing_info(command, p)?),
        Some(_) => {
            return Err(protocol_error(
                command,
                "`processing_info` is not a JSON object",
            ));
        }
    };
    Ok(MediaStatus {
        media_id: media_id_of(&obj).unwrap_or_else(|| requested.clone()),
        media_key: str_field(&obj, "media_key").map(str::to_string),
        size: obj.get("size").and_then(lenient_u64),
        expires_after_secs: obj.get("expires_after_secs").and_then(lenient_u64),
        processing_info,
    })
}

/// Parses a `processing_info` object. Unknown states become [`ProcessingState::Unknown`]
/// (treated as pending); a missing state is a protocol error.
fn processing_info(command: Command, p: &Map<String, Value>) -> Result<ProcessingInfo> {
    let state = str_field(p, "state")
        .map(ProcessingState::from_wire)
        .ok_or_else(|| protocol_error(command, "`processing_info` has no `state`"))?;
    let error = match p.get("error") {
        Some(Value::Object(e)) => Some(processing_error(e)),
        _ => None,
    };
    Ok(ProcessingInfo {
        state,
        check_after_secs: p.get("check_after_secs").and_then(lenient_u64),
        progress_percent: p
            .get("progress_percent")
            .and_then(lenient_u64)
            .map(|v| u8::try_from(v.min(100)).unwrap_or(100)),
        error,
    })
}

/// A processing `error` object `{code, name, message}`.
fn processing_error(e: &Map<String, Value>) -> ServerMessage {
    let name = str_field(e, "name").map(str::to_string);
    let message = str_field(e, "message")
        .map(str::to_string)
        .or_else(|| name.clone())
        .unwrap_or_else(|| "processing failed".to_string());
    ServerMessage {
        code: e.get("code").and_then(Value::as_i64),
        name,
        message,
    }
}

/// The server message of an error body, if the body has one:
/// - v1.1 `{"errors":[{"code":324,"message":".."}]}` (and v2's `{"errors":[{"message"}],"title",..}`);
/// - v1.1 legacy `{"request":"\/1.1\/media\/upload.json","error":".."}`;
/// - v2 problem+json `{"title","detail","type","status"}`;
/// - short plain text (a proxy's "Bad Gateway"), cut to [`MAX_PLAIN_TEXT_MESSAGE_CHARS`].
pub(crate) fn server_message(body: &[u8]) -> Option<ServerMessage> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => message_from_object(&obj),
        Ok(_) => None,
        Err(_) => plain_text_message(body),
    }
}

/// The server message of a JSON error object (see [`server_message`]).
fn message_from_object(obj: &Map<String, Value>) -> Option<ServerMessage> {
    let title = str_field(obj, "title").map(str::to_string);
    let detail = str_field(obj, "detail").map(str::to_string);
    if let Some(Value::Array(errors)) = obj.get("errors") {
        let items: Vec<&Map<String, Value>> = errors.iter().filter_map(Value::as_object).collect();
        let messages: Vec<&str> = items
            .iter()
            .filter_map(|e| str_field(e, "message").or_else(|| str_field(e, "detail")))
            .collect();
        let message = if messages.is_empty() {
            detail.clone().or_else(|| title.clone())
        } else {
            Some(messages.join("; "))
        };
        if let Some(message) = message {
            return Some(ServerMessage {
                code: items
                    .first()
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_i64),
                name: title,
                message,
            });
        }
    }
    match obj.get("error") {
        Some(Value::String(s)) => {
            return Some(ServerMessage {
                code: None,
                name: None,
                message: s.clone(),
            });
        }
        Some(Value::Object(e)) => return Some(processing_error(e)),
        _ => {}
    }
    match (title, detail) {
        (title, Some(detail)) => Some(ServerMessage {
            code: None,
            name: title,
            message: detail,
        }),
        (Some(title), None) => Some(ServerMessage {
            code: None,
            name: None,
            message: title,
        }),
        (None, None) => None,
    }
}

/// A short plain-text body as a message; HTML pages and binary bodies give `None`.
fn plain_text_message(body: &[u8]) -> Option<ServerMessage> {
    let text = std::str::from_utf8(body).ok()?.trim();
    // Markup and broken JSON are not messages a person should read.
    let looks_structured = text.starts_with(['<', '{', '[']);
    if text.is_empty() || looks_structured || text.chars().any(char::is_control) {
        return None;
    }
    let mut message: String = text.chars().take(MAX_PLAIN_TEXT_MESSAGE_CHARS).collect();
    if message.len() < text.len() {
        message.push('…');
    }
    Some(ServerMessage {
        code: None,
        name: None,
        message,
    })
}

/// A header's value as a trimmed string.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// A header's value as an unsigned integer.
fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name)?.parse().ok()
}

/// The `x-rate-limit-limit`, `-remaining` and `-reset` headers, when all three are present
/// and numeric (protocol.md §5).
pub(crate) fn rate_limit(headers: &HeaderMap) -> Option<RateLimit> {
    Some(RateLimit {
        limit: header_u64(headers, "x-rate-limit-limit")?,
        remaining: header_u64(headers, "x-rate-limit-remaining")?,
        reset_epoch_secs: header_u64(headers, "x-rate-limit-reset")?,
    })
}

/// The delay of a `Retry-After` header: delta seconds or an HTTP-date (RFC 9110 §10.2.3),
/// measured from `now`, floored at zero and clamped to [`MAX_RETRY_DELAY`].
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?;
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too long for u64 means "very long": clamp below.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_DELAY))
}

/// The delay until `x-rate-limit-reset` (Unix epoch seconds), measured from `now`, floored at
/// zero and clamped to [`MAX_RETRY_DELAY`].
pub(crate) fn rate_limit_reset_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let reset = header_u64(headers, "x-rate-limit-reset")?;
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Some(Duration::from_secs(reset.saturating_sub(now_secs)).min(MAX_RETRY_DELAY))
}

/// Whether a rejection means the media id is gone: a 404 on a call that names an id, or a
/// server text about the id (`Invalid media_id: Some().`, `BadRequest: Not found`).
fn media_id_gone(command: Command, status: u16, server: Option<&ServerMessage>) -> bool {
    if matches!(command, Command::Init | Command::OneShot) {
        return false;
    }
    if status == 404 {
        return true;
    }
    server.is_some_and(says_media_id_gone)
}

/// Whether a server message says FINALIZE found segments that do not add up to the size of
/// INIT ("Segments do not add up to provided total file size.", protocol.md §3.3).
fn says_segments_mismatch(m: &ServerMessage) -> bool {
    m.message.to_ascii_lowercase().contains("do not add up")
}

/// Whether a server message says the media id is unknown or expired (`Invalid media_id`,
/// `BadRequest: Not found`, "expired").
fn says_media_id_gone(m: &ServerMessage) -> bool {
    let text = m.message.to_ascii_lowercase();
    ["media_id", "media id", "not found", "expired"]
        .iter()
        .any(|needle| text.contains(needle))
}

/// The error for a non-2xx answer to `command`: its kind from the status (401/403 →
/// `Unauthorized`, 429 → `RateLimited`, 408 and 5xx → `ServerError`, other 4xx →
/// `Rejected`, anything else → `Protocol`), the status, the server message, the segment of
/// an APPEND, and the delay the server asked for (`Retry-After`; for 429 also
/// `x-rate-limit-reset`).
pub(crate) fn status_error(
    command: Command,
    segment: Option<u32>,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Error {
    let server = server_message(body);
    let (kind, context) = match status {
        401 | 403 => (
            ErrorKind::Unauthorized,
            format!(
                "the server refused the credentials for {command}: check X_API_KEY, \
                 X_API_SECRET, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET (or X_BEARER_TOKEN, \
                 which needs the media.write scope and the v2 API)"
            ),
        ),
        429 => (
            ErrorKind::RateLimited,
            format!("{command} was rate limited: wait until the rate-limit window resets"),
        ),
        408 => (
            ErrorKind::ServerError,
            format!("the server timed out waiting for the {command} request: retry it"),
        ),
        500..=599 => (
            ErrorKind::ServerError,
            format!("the server failed the {command} request: retry it later"),
        ),
        400..=499
            if matches!(
                command,
                Command::Metadata | Command::SubtitlesCreate | Command::SubtitlesDelete
            ) && media_id_gone(command, status, server.as_ref()) =>
        {
            (
                ErrorKind::Rejected,
                format!(
                    "the server does not know the media of the {command} request (an unknown or \
                 expired id, another account's media, or one not finalized yet): check the id"
                ),
            )
        }
        400..=499 if media_id_gone(command, status, server.as_ref()) => (
            ErrorKind::MediaGone,
            "the media id expired or is unknown: start a new upload".to_string(),
        ),
        400..=499
            if command == Command::Finalize
                && server.as_ref().is_some_and(says_segments_mismatch) =>
        {
            (
                ErrorKind::SegmentMismatch,
                "the server's segments do not add up to the file size: start a new upload"
                    .to_string(),
            )
        }
        400..=499 if command == Command::OneShot => (
            ErrorKind::Rejected,
            "the server rejected the one-shot upload: check the file size, media type and \
             category against X's limits, or upload it in chunks (one_shot = never)"
                .to_string(),
        ),
        400..=499 if command == Command::Init => (
            ErrorKind::Rejected,
            "the server rejected INIT: check the file size, media type and category against \
             X's limits"
                .to_string(),
        ),
        400..=499 => (
            ErrorKind::Rejected,
            format!("the server rejected the {command} request; see its message"),
        ),
        _ => (
            ErrorKind::Protocol,
            format!(
                "unexpected HTTP status for {command}; check that the base URL points at an X \
                 media upload API"
            ),
        ),
    };
    let mut error = Error::new(kind, context).with_status(status);
    if let Some(segment) = segment {
        error = error.with_segment(segment);
    }
    if let Some(server) = server {
        error = error.with_server_message(server);
    }
    let delay = match kind {
        ErrorKind::RateLimited => {
            retry_after(headers, now).or_else(|| rate_limit_reset_delay(headers, now))
        }
        _ => retry_after(headers, now),
    };
    if let Some(delay) = delay {
        error = error.with_retry_after(delay);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn id(s: &str) -> MediaId {
        MediaId(s.to_string())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn epoch(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn v1_init_reads_the_id_string_not_the_lossy_number() {
        // protocol.md §2.1: the docs' tutorial prints the number already rounded.
        let body = br#"{"media_id": 931270813906374700, "media_id_string": "931270813906374657", "expires_after_secs": 3599}"#;
        let r = init_response(body).unwrap();
        assert_eq!(r.media_id, id("931270813906374657"));
        assert_eq!(r.expires_after_secs, Some(3599));
        assert_eq!(r.media_key, None);
    }

    #[test]
    fn v1_init_documented_example_and_missing_expiry() {
        let body = br#"{"media_id": 1234567890123456789, "media_id_string": "1234567890123456789", "expires_after_secs": 86399}"#;
        let r = init_response(body).unwrap();
        assert_eq!(r.media_id, id("1234567890123456789"));
        assert_eq!(r.expires_after_secs, Some(86399));

        let r = init_response(br#"{"media_id_string":"42","media_key":"7_42"}"#).unwrap();
        assert_eq!(r.media_key.as_deref(), Some("7_42"));
        assert_eq!(r.expires_after_secs, None);
    }

    #[test]
    fn v1_init_falls_back_to_the_exact_number() {
        // serde_json keeps u64 integers exact, so the number is usable when no string is sent.
        let r = init_response(br#"{"media_id": 18446744073709551615}"#).unwrap();
        assert_eq!(r.media_id, id("18446744073709551615"));
    }

    #[test]
    fn v2_init_with_and_without_media_key() {
        let body = br#"{"data": {"id": "1880000000000000000", "media_key": "13_1880000000000000000", "expires_after_secs": 1295999}}"#;
        let r = init_response(body).unwrap();
        assert_eq!(r.media_id, id("1880000000000000000"));
        assert_eq!(r.media_key.as_deref(), Some("13_1880000000000000000"));
        assert_eq!(r.expires_after_secs, Some(1295999));

        // A real v2 INIT response without media_key (protocol.md §2.1).
        let r =
            init_response(br#"{"data":{"id":"1895027516701843457","expires_after_secs":86399}}"#)
                .unwrap();
        assert_eq!(r.media_id, id("1895027516701843457"));
        assert_eq!(r.media_key, None);
    }

    #[test]
    fn init_without_a_usable_id_is_a_protocol_error() {
        for body in [
            &br#"{"expires_after_secs": 10}"#[..],
            br#"{"data":{"id":"not-a-number"}}"#,
            br#"{"data":{"id":""}}"#,
            br#"{"media_id_string":"123456789012345678901"}"#,
            br#"{"data":"oops"}"#,
        ] {
            let e = init_response(body).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::Protocol,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn malformed_truncated_and_non_json_bodies_are_errors_not_panics() {
        let unusable_everywhere: &[&[u8]] = &[
            b"",
            b"   ",
            b"not json",
            b"<html><body>Bad Gateway</body></html>",
            br#"{"media_id_string": "12"#,
            br#"{"data": {"id": "1880000000000000000", "media_key"#,
            b"[1,2,3]",
            b"null",
            b"\xff\xfe\x00garbage",
        ];
        for body in unusable_everywhere {
            let label = String::from_utf8_lossy(body);
            assert_eq!(
                init_response(body).unwrap_err().kind(),
                ErrorKind::Protocol,
                "{label}"
            );
            for command in [Command::Finalize, Command::Status] {
                let e = media_status(command, body, &id("1")).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Protocol, "{label}");
            }
            // Error and APPEND bodies never panic either.
            let _ = server_message(body);
            assert_eq!(append_response(body).expires_at, None);
        }
        // A processing_info without a state, or of the wrong type, cannot be judged.
        for body in [
            &br#"{"data":{"id":"1","processing_info":{"check_after_secs":1}}}"#[..],
            br#"{"data":{"id":"1","processing_info":"pending"}}"#,
        ] {
            let e = media_status(Command::Status, body, &id("1")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol);
        }
    }

    #[test]
    fn deeply_nested_json_does_not_overflow_the_stack() {
        let body = "[".repeat(100_000);
        assert_eq!(
            init_response(body.as_bytes()).unwrap_err().kind(),
            ErrorKind::Protocol
        );
        assert!(server_message(body.as_bytes()).is_none());
    }

    #[test]
    fn v1_finalize_sync_and_async() {
        let sync = br#"{"media_id": 1234567890123456789, "media_id_string": "1234567890123456789", "media_key": "7_1234567890123456789",
            "size": 4430752, "expires_after_secs": 86400, "video": {"video_type": "video/mp4"}}"#;
        let s = media_status(Command::Finalize, sync, &id("1234567890123456789")).unwrap();
        assert_eq!(s.media_key.as_deref(), Some("7_1234567890123456789"));
        assert_eq!(s.size, Some(4430752));
        assert_eq!(s.expires_after_secs, Some(86400));
        assert!(s.processing_info.is_none());
        assert!(s.is_ready());

        let asynchronous = br#"{"media_id": 1234567890123456789, "media_id_string": "1234567890123456789", "media_key": "7_1234567890123456789",
            "size": 986718, "expires_after_secs": 86400, "processing_info": {"state": "pending", "check_after_secs": 1}}"#;
        let s = media_status(Command::Finalize, asynchronous, &id("1234567890123456789")).unwrap();
        let p = s.processing_info.clone().unwrap();
        assert_eq!(p.state, ProcessingState::Pending);
        assert_eq!(p.check_after_secs, Some(1));
        assert_eq!(p.progress_percent, None);
        assert!(!s.is_ready());
    }

    #[test]
    fn v1_status_in_progress() {
        let body = br#"{"media_id": 1234567890123456789, "media_id_string": "1234567890123456789", "expires_after_secs": 3595,
            "processing_info": {"state": "in_progress", "check_after_secs": 10, "progress_percent": 8}}"#;
        let s = media_status(Command::Status, body, &id("1234567890123456789")).unwrap();
        let p = s.processing_info.unwrap();
        assert_eq!(p.state, ProcessingState::InProgress);
        assert_eq!(p.check_after_secs, Some(10));
        assert_eq!(p.progress_percent, Some(8));
        assert_eq!(s.expires_after_secs, Some(3595));
    }

    #[test]
    fn failed_processing_on_http_200_carries_the_error_and_no_expiry() {
        let body = br#"{"media_id":710511363345354753,"media_id_string":"710511363345354753",
            "processing_info":{"state":"failed","progress_percent":0,
            "error":{"code":1,"name":"InvalidMedia","message":"Unsupported video format"}}}"#;
        let s = media_status(Command::Status, body, &id("710511363345354753")).unwrap();
        assert_eq!(s.expires_after_secs, None);
        let p = s.processing_info.clone().unwrap();
        assert_eq!(p.state, ProcessingState::Failed);
        assert!(p.state.is_terminal());
        assert_eq!(
            p.error,
            Some(ServerMessage {
                code: Some(1),
                name: Some("InvalidMedia".into()),
                message: "Unsupported video format".into(),
            })
        );
        assert!(!s.is_ready());
    }

    #[test]
    fn unknown_state_is_kept_as_unknown() {
        // The `uploading` state of the first v2 docs (protocol.md §2.6).
        let body =
            br#"{"data":{"id":"1880000000000000000","processing_info":{"state":"uploading"}}}"#;
        let s = media_status(Command::Status, body, &id("1880000000000000000")).unwrap();
        let p = s.processing_info.clone().unwrap();
        assert_eq!(p.state, ProcessingState::Unknown("uploading".into()));
        assert!(!p.state.is_terminal());
        assert!(!s.is_ready());
    }

    #[test]
    fn v2_finalize_and_succeeded_status() {
        let body = br#"{"data": {"id": "1880000000000000000", "media_key": "13_1880000000000000000", "size": 1048576,
            "expires_after_secs": 86400, "processing_info": {"state": "pending", "check_after_secs": 1}}}"#;
        let s = media_status(Command::Finalize, body, &id("1880000000000000000")).unwrap();
        assert_eq!(s.media_id, id("1880000000000000000"));
        assert_eq!(s.size, Some(1048576));
        assert_eq!(s.processing_info.unwrap().state, ProcessingState::Pending);

        // The finished example of protocol.md §4.4.
        let body = br#"{"data":{"id":"1912345678901234567","media_key":"16_1912345678901234567","expires_after_secs":86398,
            "processing_info":{"state":"succeeded","progress_percent":100},"size":708679}}"#;
        let s = media_status(Command::Status, body, &id("1912345678901234567")).unwrap();
        assert!(s.is_ready());
        assert_eq!(s.processing_info.unwrap().progress_percent, Some(100));
        assert_eq!(s.size, Some(708679));
    }

    #[test]
    fn v2_sync_image_finalize_has_no_processing_info() {
        let body = br#"{"data":{"id":"1880000000000000001","media_key":"3_1880000000000000001","size":1024,
            "expires_after_secs":86400,"image":{"image_type":"image/jpeg","w":10,"h":10}}}"#;
        let s = media_status(Command::Finalize, body, &id("1880000000000000001")).unwrap();
        assert!(s.processing_info.is_none());
        assert!(s.is_ready());
    }

    #[test]
    fn lenient_optional_numbers() {
        let body = br#"{"media_id_string":"5","expires_after_secs":"60","size":10.0,
            "processing_info":{"state":"in_progress","check_after_secs":2.5,"progress_percent":250}}"#;
        let s = media_status(Command::Status, body, &id("5")).unwrap();
        assert_eq!(s.expires_after_secs, Some(60));
        assert_eq!(s.size, Some(10));
        let p = s.processing_info.unwrap();
        assert_eq!(p.check_after_secs, Some(3));
        assert_eq!(p.progress_percent, Some(100));
        // Wrong types in optional fields are dropped, not fatal.
        let s = media_status(
            Command::Status,
            br#"{"media_id_string":"5","size":"big","expires_after_secs":-3}"#,
            &id("5"),
        )
        .unwrap();
        assert_eq!((s.size, s.expires_after_secs), (None, None));
    }

    #[test]
    fn status_without_id_uses_the_requested_id() {
        let s = media_status(
            Command::Finalize,
            br#"{"processing_info":{"state":"succeeded"}}"#,
            &id("77"),
        )
        .unwrap();
        assert_eq!(s.media_id, id("77"));
    }

    #[test]
    fn two_xx_with_errors_and_no_data_is_a_protocol_error_with_the_message() {
        let body = br#"{"errors":[{"message":"BadRequest: Not found"}],"title":"Invalid Request"}"#;
        let e = media_status(Command::Status, body, &id("1")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(e.server_message().unwrap().message, "BadRequest: Not found");
    }

    #[test]
    fn append_bodies() {
        assert_eq!(append_response(b""), AppendResponse::default());
        assert_eq!(
            append_response(br#"{"data":{"expires_at":1760000000}}"#).expires_at,
            Some(1760000000)
        );
        assert_eq!(append_response(b"OK").expires_at, None);
    }

    #[test]
    fn v1_errors_shape() {
        let m = server_message(
            br#"{"errors":[{"code":324,"message":"Image file size must be <= 5242880 bytes"}]}"#,
        )
        .unwrap();
        assert_eq!(m.code, Some(324));
        assert_eq!(m.name, None);
        assert_eq!(m.message, "Image file size must be <= 5242880 bytes");

        let m = server_message(br#"{"errors":[{"code":88,"message":"Rate limit exceeded"},{"code":131,"message":"Internal error"}]}"#)
            .unwrap();
        assert_eq!(m.code, Some(88));
        assert_eq!(m.message, "Rate limit exceeded; Internal error");
    }

    #[test]
    fn v1_legacy_shape_with_escaped_slashes() {
        let m = server_message(
            br#"{"request":"\/1.1\/media\/upload.json","error":"File size exceeds 15728640 bytes."}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ServerMessage {
                code: None,
                name: None,
                message: "File size exceeds 15728640 bytes.".into()
            }
        );
    }

    #[test]
    fn v2_problem_json_shape() {
        let m = server_message(
            br#"{"title":"Forbidden","type":"about:blank","status":403,"detail":"Forbidden"}"#,
        )
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("Forbidden"));
        assert_eq!(m.message, "Forbidden");
        assert_eq!(m.code, None);

        let m =
            server_message(br#"{"title":"Too Many Requests","type":"about:blank","status":429}"#)
                .unwrap();
        assert_eq!(m.message, "Too Many Requests");
    }

    #[test]
    fn v2_invalid_request_shape() {
        let m = server_message(br#"{"errors":[{"message":"Request body is not valid JSON."}],"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.twitter.com/2/problems/invalid-request"}"#)
            .unwrap();
        assert_eq!(m.name.as_deref(), Some("Invalid Request"));
        assert_eq!(m.message, "Request body is not valid JSON.");
        // Errors without messages fall back to the problem detail.
        let m = server_message(br#"{"errors":[{}],"title":"Invalid Request","detail":"One or more parameters to your request was invalid."}"#)
            .unwrap();
        assert_eq!(
            m.message,
            "One or more parameters to your request was invalid."
        );
    }

    #[test]
    fn unusable_error_bodies() {
        assert_eq!(server_message(b""), None);
        assert_eq!(server_message(b"{}"), None);
        assert_eq!(server_message(b"[]"), None);
        assert_eq!(server_message(b"<html>502</html>"), None);
        assert_eq!(server_message(b"\x00\x01binary"), None);
        assert_eq!(server_message(br#"{"errors":[{"message":"cut"#), None);
        assert_eq!(
            server_message(b"Bad Gateway\n").map(|m| m.message),
            Some("Bad Gateway".to_string())
        );
        let long = "x".repeat(1000);
        let m = server_message(long.as_bytes()).unwrap();
        assert_eq!(m.message.chars().count(), MAX_PLAIN_TEXT_MESSAGE_CHARS + 1);
    }

    #[test]
    fn rate_limit_headers() {
        let h = headers(&[
            ("x-rate-limit-limit", "1875"),
            ("x-rate-limit-remaining", "1874"),
            ("x-rate-limit-reset", "1760000000"),
        ]);
        assert_eq!(
            rate_limit(&h),
            Some(RateLimit {
                limit: 1875,
                remaining: 1874,
                reset_epoch_secs: 1760000000
            })
        );
        assert_eq!(
            rate_limit(&headers(&[("x-rate-limit-limit", "1875")])),
            None
        );
        assert_eq!(
            rate_limit(&headers(&[
                ("x-rate-limit-limit", "a"),
                ("x-rate-limit-remaining", "1"),
                ("x-rate-limit-reset", "1"),
            ])),
            None
        );
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = epoch(1_760_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(epoch(1_760_000_030));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        let past = httpdate::fmt_http_date(epoch(1_759_999_000));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        // Huge values are clamped; garbage is ignored.
        assert_eq!(
            retry_after(&headers(&[("retry-after", "99999999999999999999999")]), now),
            Some(MAX_RETRY_DELAY)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-5")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn reset_delay_is_floored_and_clamped() {
        let now = epoch(1_760_000_000);
        let h = |v: &str| headers(&[("x-rate-limit-reset", v)]);
        assert_eq!(
            rate_limit_reset_delay(&h("1760000090"), now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            rate_limit_reset_delay(&h("1759999000"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            rate_limit_reset_delay(&h("18446744073709551615"), now),
            Some(MAX_RETRY_DELAY)
        );
        assert_eq!(rate_limit_reset_delay(&h("x"), now), None);
    }

    #[test]
    fn status_mapping() {
        let now = epoch(1_760_000_000);
        let none = HeaderMap::new();
        let kind = |status| status_error(Command::Append, None, status, &none, b"", now).kind();
        assert_eq!(kind(401), ErrorKind::Unauthorized);
        assert_eq!(kind(403), ErrorKind::Unauthorized);
        assert_eq!(kind(429), ErrorKind::RateLimited);
        assert_eq!(kind(408), ErrorKind::ServerError);
        assert_eq!(kind(500), ErrorKind::ServerError);
        assert_eq!(kind(503), ErrorKind::ServerError);
        assert_eq!(kind(400), ErrorKind::Rejected);
        assert_eq!(kind(413), ErrorKind::Rejected);
        assert_eq!(kind(302), ErrorKind::Protocol);
    }

    #[test]
    fn status_error_carries_status_segment_message_and_delay() {
        let now = epoch(1_760_000_000);
        let h = headers(&[("x-rate-limit-reset", "1760000060")]);
        let e = status_error(
            Command::Append,
            Some(3),
            429,
            &h,
            br#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
            now,
        );
        assert!(e.is_throttled() && e.is_retryable());
        assert_eq!(e.status(), Some(429));
        assert_eq!(e.segment(), Some(3));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
        assert_eq!(e.server_message().unwrap().message, "Too Many Requests");

        // Retry-After wins over the reset time.
        let h = headers(&[("retry-after", "5"), ("x-rate-limit-reset", "1760000060")]);
        let e = status_error(Command::Init, None, 429, &h, b"", now);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));

        // The reset time of a non-429 answer is not a retry delay; Retry-After is.
        let h = headers(&[("x-rate-limit-reset", "1760000060")]);
        assert_eq!(
            status_error(Command::Init, None, 503, &h, b"", now).retry_after(),
            None
        );
        let h = headers(&[("retry-after", "2")]);
        assert_eq!(
            status_error(Command::Init, None, 503, &h, b"", now).retry_after(),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let now = epoch(0);
        let none = HeaderMap::new();
        let e = status_error(
            Command::Init,
            None,
            401,
            &none,
            br#"{"errors":[{"code":32,"message":"Could not authenticate you."}]}"#,
            now,
        );
        let text = e.to_string();
        assert!(
            text.contains("X_API_KEY") && text.contains("Could not authenticate you."),
            "{text}"
        );

        let e = status_error(
            Command::Append,
            Some(0),
            400,
            &none,
            br#"{"request":"\/1.1\/media\/upload.json","error":"Invalid media_id: Some()."}"#,
            now,
        );
        assert_eq!(e.kind(), ErrorKind::MediaGone);
        assert!(e.to_string().contains("start a new upload"), "{e}");

        let e = status_error(Command::Finalize, None, 404, &none, b"", now);
        assert!(e.to_string().contains("start a new upload"), "{e}");
        let e = status_error(
            Command::Finalize,
            None,
            400,
            &none,
            br#"{"request":"\/1.1\/media\/upload.json","error":"Segments do not add up to provided total file size."}"#,
            now,
        );
        assert_eq!(e.kind(), ErrorKind::SegmentMismatch);
        assert!(!e.is_retryable());

        let e = status_error(
            Command::Init,
            None,
            400,
            &none,
            br#"{"request":"\/1.1\/media\/upload.json","error":"File size exceeds 15728640 bytes."}"#,
            now,
        );
        assert!(e.to_string().contains("check the file size"), "{e}");
        assert_eq!(
            e.server_message().unwrap().message,
            "File size exceeds 15728640 bytes."
        );
    }

    #[test]
    fn media_ids() {
        assert!(is_media_id("0"));
        assert!(is_media_id("18446744073709551615"));
        assert!(!is_media_id(""));
        assert!(!is_media_id("123456789012345678901"));
        assert!(!is_media_id("12a"));
        assert!(!is_media_id("../1"));
    }
}
