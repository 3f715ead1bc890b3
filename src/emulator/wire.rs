//! Wire helpers: body reading with limits, content types, parameters, multipart, base64 and
//! the response shapes of both API versions (protocol.md §3.6, §4.7).

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

/// Server texts. Those with a source were seen on X; the others are the emulator's own
/// wording where X's text is unknown (protocol.md §11.9).
pub(crate) mod text {
    /// Source: protocol.md §7 (code 32).
    pub(crate) const COULD_NOT_AUTHENTICATE: &str = "Could not authenticate you.";
    /// Source: protocol.md §3.6 (code 88).
    pub(crate) const RATE_LIMIT_EXCEEDED: &str = "Rate limit exceeded";
    /// Source: protocol.md §3.6 (code 131).
    pub(crate) const INTERNAL_ERROR: &str = "Internal error";
    /// Source: protocol.md §2.4 (pipedream#5066).
    pub(crate) const SEGMENT_RANGE: &str = "SegmentIndex must be between 0 and 999.";
    /// Source: protocol.md §2.4 (twit#521 and others).
    pub(crate) const SEGMENTS_DO_NOT_ADD_UP: &str =
        "Segments do not add up to provided total file size.";
    /// Source: protocol.md §2.2 (python-twitter#635).
    pub(crate) const LARGE_SYNC: &str = "Large file can not be finalized synchronously.";
    /// Source: protocol.md §3.3, §3.5.
    pub(crate) const MEDIA_TYPE_UNRECOGNIZED: &str = "media type unrecognized.";
    /// Source: protocol.md §4.7 (x-ruby#62, node-twitter-api-v2#591).
    pub(crate) const V2_CONTENT_TYPE: &str =
        "Requests with bodies must have content-type of application/json.";
    /// Source: protocol.md §4.7 (x-ruby#71).
    pub(crate) const V2_NOT_JSON: &str = "Request body is not valid JSON.";
    /// Source: protocol.md §4.3 (trypost#202).
    pub(crate) const V2_NOT_OBJECT: &str = "Request body must be a JSON object.";
    /// Source: protocol.md §4.4 (xurl#18).
    pub(crate) const V2_NOT_FOUND: &str = "BadRequest: Not found";
    /// Emulator wording (X's text unknown).
    pub(crate) const BOTH_MEDIA: &str = "media and media_data must not both be present.";
    /// Emulator wording (X's text unknown).
    pub(crate) const ALREADY_FINALIZED: &str = "Media has already been finalized.";
    /// Emulator wording (X's text unknown).
    pub(crate) const FINALIZE_IN_PROGRESS: &str = "Media is being finalized.";
    /// Emulator wording (X's text unknown; one log shows a 404, protocol.md §11.8).
    pub(crate) const STATUS_NOT_FOUND: &str = "Media not found.";
    /// Emulator wording for a body over the request limit.
    pub(crate) const TOO_LARGE: &str = "Request entity too large.";
    /// Emulator wording for a storage failure inside the emulator.
    pub(crate) const STORAGE: &str = "Internal error: media storage failed.";
    /// Emulator wording (X's text unknown): alt text or subtitles before FINALIZE.
    pub(crate) const NOT_FINALIZED: &str = "Media has not been finalized.";
    /// Emulator wording (X's text unknown): alt text is for images and GIFs only
    /// (protocol.md §12).
    pub(crate) const ALT_TEXT_MEDIA: &str = "Alt text can only be added to images and GIFs.";
    /// Emulator wording (X's text unknown): subtitles are for videos only.
    pub(crate) const SUBTITLES_VIDEO: &str = "Subtitles can only be added to videos.";
    /// Emulator wording (X's text unknown): the subtitle media must have category
    /// `subtitles` (protocol.md §12).
    pub(crate) const SUBTITLES_CATEGORY: &str =
        "Subtitle media must be uploaded with media_category subtitles.";
    /// Emulator wording (X's text unknown).
    pub(crate) const NO_SUCH_SUBTITLES: &str = "The video has no subtitles in that language.";

    /// Emulator wording (X's text unknown) for alt text over the limit (protocol.md §12).
    pub(crate) fn alt_text_too_long(limit: usize) -> String {
        format!("Alt text must be at most {limit} characters.")
    }

    /// Source: protocol.md §3.1, §2.3 ("File size exceeds 15728640 bytes.").
    pub(crate) fn file_size_exceeds(limit: u64) -> String {
        format!("File size exceeds {limit} bytes.")
    }
    /// Source: protocol.md §3.5 (code 324, tweepy#1501).
    pub(crate) fn image_size(limit: u64) -> String {
        format!("Image file size must be <= {limit} bytes")
    }
    /// Emulator wording modelled on the size texts above (X's text unknown, §11.9).
    pub(crate) fn segment_too_large(limit: u64) -> String {
        format!("Segment size exceeds {limit} bytes.")
    }
    /// Source: protocol.md §3.2 (codebird#171: "Invalid media_id: Some().").
    pub(crate) fn invalid_media_id(id: &str) -> String {
        format!("Invalid media_id: Some({id}).")
    }
    /// Source: protocol.md §3.4 (code 38, "media parameter is missing.").
    pub(crate) fn missing(name: &str) -> String {
        format!("{name} parameter is missing.")
    }
    /// Emulator wording for a parameter that does not parse.
    pub(crate) fn invalid(name: &str) -> String {
        format!("{name} parameter is invalid.")
    }
    /// Emulator wording for a missing v2 field.
    pub(crate) fn v2_missing(name: &str) -> String {
        format!("The `{name}` field is required.")
    }
    /// Emulator wording for a v2 field that does not validate.
    pub(crate) fn v2_invalid(name: &str) -> String {
        format!("The `{name}` field is invalid.")
    }
}

/// An early answer of a handler (an error response), boxed so `Result`s stay small.
#[derive(Debug)]
pub(crate) struct Reject(Box<Response>);

impl From<Response> for Reject {
    fn from(r: Response) -> Self {
        Reject(Box::new(r))
    }
}

impl Reject {
    pub(crate) fn into_response(self) -> Response {
        *self.0
    }
}

/// How a request body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No `Content-Type`.
    None,
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data; boundary=...` (with a semicolon).
    Multipart,
    /// `application/json`.
    Json,
    /// Anything else, including `multipart/form-data, boundary=` with a comma.
    Other,
}

impl BodyKind {
    pub(crate) fn of(headers: &HeaderMap) -> BodyKind {
        let Some(v) = headers.get(header::CONTENT_TYPE) else {
            return BodyKind::None;
        };
        let Ok(v) = v.to_str() else {
            return BodyKind::Other;
        };
        let lower = v.trim().to_ascii_lowercase();
        let (essence, params) = match lower.split_once(';') {
            Some((e, p)) => (e.trim(), Some(p)),
            None => (lower.as_str(), None),
        };
        match essence {
            "application/x-www-form-urlencoded" => BodyKind::UrlEncoded,
            "application/json" => BodyKind::Json,
            // X requires `; boundary=`: a comma-separated parameter makes the essence
            // `multipart/form-data, boundary=...`, which falls through to `Other`
            // (protocol.md §4.2).
            "multipart/form-data"
                if params.is_some_and(|p| {
                    p.split(';')
                        .any(|kv| kv.trim().starts_with("boundary=") && kv.trim().len() > 9)
                }) =>
            {
                BodyKind::Multipart
            }
            _ => BodyKind::Other,
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Over the request limit.
    TooLarge,
    /// The connection failed mid-body.
    Broken,
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: u64) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ReadError::Broken)?;
        total = total.saturating_add(chunk.len() as u64);
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        // Keep a single-frame body as it arrived (no copy); concatenate otherwise.
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads at least `at_least` bytes of a body (or all of it, if shorter) and returns how many
/// were read. Used before dropping a connection.
pub(crate) async fn read_some(body: Body, at_least: u64) -> u64 {
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while total < at_least.max(1) {
        match stream.next().await {
            Some(Ok(chunk)) => total += chunk.len() as u64,
            _ => break,
        }
    }
    total
}

/// Request parameters as `(name, raw value)` pairs, in order: query first, then body.
/// Lookups take the first occurrence.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, Bytes)>,
}

/// A text parameter that is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotUtf8;

impl Params {
    pub(crate) fn extend(&mut self, pairs: impl IntoIterator<Item = (String, Bytes)>) {
        self.pairs.extend(pairs);
    }

    pub(crate) fn bytes(&self, name: &str) -> Option<&Bytes> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub(crate) fn str(&self, name: &str) -> Result<Option<&str>, NotUtf8> {
        match self.bytes(name) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b).map(Some).map_err(|_| NotUtf8),
        }
    }
}

/// Query pairs of a URI, decoded as text (what an OAuth client signs).
pub(crate) fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses an `application/x-www-form-urlencoded` body into raw byte values (a `media` field
/// may hold percent-encoded binary). Hand-written because `form_urlencoded` decodes values
/// to (lossy) UTF-8 text; this keeps the bytes.
pub(crate) fn parse_urlencoded(body: &[u8]) -> Vec<(String, Bytes)> {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[..0]),
            };
            let decode = |s: &[u8]| -> Vec<u8> {
                let plus: Vec<u8> = s
                    .iter()
                    .map(|b| if *b == b'+' { b' ' } else { *b })
                    .collect();
                percent_encoding::percent_decode(&plus).collect()
            };
            (
                String::from_utf8_lossy(&decode(k)).into_owned(),
                Bytes::from(decode(v)),
            )
        })
        .collect()
}

/// The urlencoded pairs as text, for the OAuth signature base string.
pub(crate) fn as_text_pairs(pairs: &[(String, Bytes)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// A multipart body that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MultipartError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

/// Parses a `multipart/form-data` request, streaming, into `(field name, bytes)` pairs.
/// The body limit comes from the `DefaultBodyLimit` layer on the router.
pub(crate) async fn parse_multipart(req: Request) -> Result<Vec<(String, Bytes)>, MultipartError> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| MultipartError {
            status: StatusCode::BAD_REQUEST,
            message: e.body_text(),
        })?;
    let mut out = Vec::new();
    loop {
        let field = mp.next_field().await.map_err(|e| MultipartError {
            status: e.status(),
            message: e.body_text(),
        })?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or_default().to_string();
        let data = field.bytes().await.map_err(|e| MultipartError {
            status: e.status(),
            message: e.body_text(),
        })?;
        out.push((name, data));
    }
    Ok(out)
}

/// Strict standard base64 (padding optional, ASCII whitespace such as MIME line breaks
/// ignored).
pub(crate) fn decode_base64_strict(data: &[u8]) -> Option<Vec<u8>> {
    let cleaned: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    indifferent_engine().decode(&cleaned).ok()
}

/// What X does with a `media_data` that is not base64 (protocol.md §2.4 pitfall): it decodes
/// what it can, so the segment comes out shorter and FINALIZE's size check fails. Keeps only
/// base64 alphabet characters and decodes whole groups.
pub(crate) fn decode_base64_lenient(data: &[u8]) -> Vec<u8> {
    let mut kept: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    kept.truncate(kept.len() / 4 * 4);
    indifferent_engine().decode(&kept).unwrap_or_default()
}

fn indifferent_engine() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

/// The path every v1.1 legacy error names.
const V1_PATH: &str = "/1.1/media/upload.json";
/// The `type` of v2 invalid-request problems (the host real responses use, §4.7).
const V2_INVALID_REQUEST_TYPE: &str = "https://api.twitter.com/2/problems/invalid-request";

fn json_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// An empty body.
pub(crate) fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// v1.1 legacy shape, slashes escaped as X does: `{"request":"\/1.1\/...","error":"..."}`.
pub(crate) fn v1_legacy(status: StatusCode, message: &str) -> Response {
    #[derive(Serialize)]
    struct Legacy<'a> {
        request: &'a str,
        error: &'a str,
    }
    let body = to_json(&Legacy {
        request: V1_PATH,
        error: message,
    });
    // `/` only ever occurs inside JSON strings, where `\/` is a valid escape.
    json_response(
        status,
        "application/json; charset=utf-8",
        body.replace('/', "\\/"),
    )
}

#[derive(Serialize)]
struct CodeMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i64>,
    message: &'a str,
}

/// v1.1 standard shape: `{"errors":[{"code":N,"message":"..."}]}`.
pub(crate) fn v1_errors(status: StatusCode, code: i64, message: &str) -> Response {
    #[derive(Serialize)]
    struct Errors<'a> {
        errors: [CodeMessage<'a>; 1],
    }
    let body = to_json(&Errors {
        errors: [CodeMessage {
            code: Some(code),
            message,
        }],
    });
    json_response(status, "application/json; charset=utf-8", body)
}

/// v2 400 invalid-request problem:
/// `{"errors":[{"message":"..."}],"title":"Invalid Request","detail":"...","type":"..."}`.
pub(crate) fn v2_invalid(message: &str) -> Response {
    #[derive(Serialize)]
    struct Invalid<'a> {
        errors: [CodeMessage<'a>; 1],
        title: &'a str,
        detail: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    let body = to_json(&Invalid {
        errors: [CodeMessage {
            code: None,
            message,
        }],
        title: "Invalid Request",
        detail: "One or more parameters to your request was invalid.",
        kind: V2_INVALID_REQUEST_TYPE,
    });
    json_response(
        StatusCode::BAD_REQUEST,
        "application/json; charset=utf-8",
        body,
    )
}

/// [`v2_invalid`] as a [`Reject`].
pub(crate) fn v2_reject(message: &str) -> Reject {
    v2_invalid(message).into()
}

/// v2 `application/problem+json` with `title` = `detail` = the status' reason phrase:
/// `{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}`.
pub(crate) fn v2_problem(status: StatusCode) -> Response {
    #[derive(Serialize)]
    struct Problem<'a> {
        title: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        status: u16,
        detail: &'a str,
    }
    let title = status.canonical_reason().unwrap_or("Error");
    let body = to_json(&Problem {
        title,
        kind: "about:blank",
        status: status.as_u16(),
        detail: title,
    });
    json_response(status, "application/problem+json", body)
}

/// Serializes a response body. Serializing these plain structs cannot fail; an empty object
/// stands in if it ever did.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string())
}

/// A JSON body (empty for 204, which cannot carry one).
pub(crate) fn json_body<T: Serialize>(status: StatusCode, value: &T) -> Response {
    if status == StatusCode::NO_CONTENT {
        return empty(status);
    }
    json_response(status, "application/json; charset=utf-8", to_json(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn multipart_needs_a_semicolon_and_a_boundary() {
        assert_eq!(
            BodyKind::of(&headers("multipart/form-data; boundary=abc")),
            BodyKind::Multipart
        );
        assert_eq!(
            BodyKind::of(&headers("Multipart/Form-Data;boundary=abc")),
            BodyKind::Multipart
        );
        assert_eq!(
            BodyKind::of(&headers("multipart/form-data, boundary=abc")),
            BodyKind::Other
        );
        assert_eq!(
            BodyKind::of(&headers("multipart/form-data")),
            BodyKind::Other
        );
        assert_eq!(
            BodyKind::of(&headers("application/json; charset=utf-8")),
            BodyKind::Json
        );
        assert_eq!(BodyKind::of(&HeaderMap::new()), BodyKind::None);
    }

    #[test]
    fn urlencoded_keeps_binary_values() {
        let pairs = parse_urlencoded(b"command=APPEND&media=%00%FF%2B&x+y=a+b&flag");
        assert_eq!(pairs[0], ("command".into(), Bytes::from_static(b"APPEND")));
        assert_eq!(pairs[1].1.as_ref(), &[0u8, 0xFF, b'+']);
        assert_eq!(pairs[2], ("x y".into(), Bytes::from_static(b"a b")));
        assert_eq!(pairs[3], ("flag".into(), Bytes::new()));
    }

    #[test]
    fn base64_strict_and_lenient() {
        assert_eq!(decode_base64_strict(b"aGVs\r\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64_strict(b"aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64_strict(&[0xFF, 0x00, 0x10, 0x80]).is_none());
        // Raw bytes: the few alphabet characters decode to something shorter.
        let raw = [0xFFu8, b'a', b'b', 0x00, b'c', b'd', b'e'];
        assert_eq!(decode_base64_lenient(&raw).len(), 3);
        assert!(decode_base64_lenient(&[0u8; 10]).is_empty());
    }

    #[tokio::test]
    async fn legacy_shape_escapes_slashes() {
        let resp = v1_legacy(StatusCode::BAD_REQUEST, "Invalid media_id: Some(1).");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"request":"\/1.1\/media\/upload.json","error":"Invalid media_id: Some(1)."}"#
        );
    }

    #[tokio::test]
    async fn read_body_enforces_the_limit() {
        let body = Body::from(vec![1u8; 100]);
        assert_eq!(read_body(body, 99).await, Err(ReadError::TooLarge));
        let body = Body::from(vec![1u8; 100]);
        assert_eq!(read_body(body, 100).await.unwrap().len(), 100);
    }
}
