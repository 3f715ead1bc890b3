//! [`XClient`]: the X media upload protocol (v1.1 and v2) over reqwest.
//!
//! The wire format follows protocol.md §3 (v1.1), §4 (v2), §6 (encodings) and §7 (auth):
//!
//! | call | v1.1 (`/1.1/media/upload.json`) | v2 |
//! |---|---|---|
//! | INIT | POST urlencoded, body params signed | POST `/2/media/upload/initialize`, JSON |
//! | APPEND | POST multipart: `command`, `media_id`, `segment_index`, `media` or `media_data` | POST `/2/media/upload/{id}/append`, multipart (`segment_index`, `media`) or JSON base64 |
//! | FINALIZE | POST urlencoded, body params signed | POST `/2/media/upload/{id}/finalize`, no body |
//! | STATUS | GET `?command=STATUS&media_id=..`, query signed | GET `/2/media/upload?command=STATUS&media_id=..` |
//!
//! The one-shot upload, alt text and subtitles are in the `media` submodule (its table
//! gives their wire shapes). Multipart and JSON bodies are never signed (protocol.md §7). Responses are read with a size
//! cap and parsed by the pure functions of the `parse` module.
//!
//! The client sets no overall request timeout: the engine applies its deadlines by dropping
//! the request future, and watches the live byte counter of [`AppendRequest::sent`] to detect
//! stalls.

use super::parse::{self, Command, MAX_RESPONSE_BODY_BYTES};
use super::{
    AppendRequest, AppendResponse, InitRequest, InitResponse, LanguageCode, MediaId, MediaStatus,
    OneShotRequest, ProtocolTarget, SubtitlesRequest, UploadProtocol,
};
use crate::auth::Credentials;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{self, Stream, StreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::multipart::{Form, Part};
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tracing::debug;
use url::Url;

// The one-shot upload, alt text and subtitles (issue 14).
mod media;

/// The default base URL of the v1.1 upload API.
///
/// Source: protocol.md §3 (`https://upload.twitter.com/1.1/media/upload.json`).
pub const DEFAULT_V1_1_BASE_URL: &str = "https://upload.twitter.com";

/// The default base URL of the v2 API.
///
/// Source: protocol.md §4 (`https://api.x.com/2`, used by the docs and xurl).
pub const DEFAULT_V2_BASE_URL: &str = "https://api.x.com";

/// The `User-Agent` of the client chunkwise builds: `chunkwise/<version>`.
pub const USER_AGENT: &str = concat!("chunkwise/", env!("CARGO_PKG_VERSION"));

/// How long the built-in HTTP client waits for a TCP (and TLS) connection.
///
/// Source: reasonable default: a handshake that has not finished in 10 s on any working
/// link is better retried on a fresh connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalive interval of the built-in HTTP client, so pooled connections that died
/// silently are noticed.
///
/// Source: reasonable default, below the common 60 s idle timeout of NAT gateways and
/// load balancers.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// The size of the slices an APPEND payload is streamed in when progress is reported
/// through [`AppendRequest::sent`]; the counter advances by at most this much at a time.
///
/// Source: reasonable default: 64 KiB matches common socket buffer sizes, so a slice is
/// handed over about when the kernel can take it, and a 5 MiB segment reports 80 steps.
pub(crate) const BODY_SLICE_BYTES: usize = 64 * 1024;

/// The payload slice size for base64 bodies: the largest multiple of 3 not above
/// [`BODY_SLICE_BYTES`], so every slice encodes without padding and the encoded slices
/// concatenate into the base64 of the whole segment.
pub(crate) const BASE64_SLICE_BYTES: usize = BODY_SLICE_BYTES / 3 * 3;

/// Which X API the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiVersion {
    /// v1.1: `upload.twitter.com/1.1/media/upload.json?command=...`; OAuth 1.0a only.
    /// Retired by X in 2025 (protocol.md §1), kept for compatible servers.
    V1_1,
    /// v2 dedicated endpoints: `/2/media/upload/initialize`, `/{id}/append`,
    /// `/{id}/finalize`, `GET /2/media/upload`. OAuth 1.0a or an OAuth 2 user token.
    #[default]
    V2,
}

impl ApiVersion {
    /// The default base URL of this version.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ApiVersion::V1_1 => DEFAULT_V1_1_BASE_URL,
            ApiVersion::V2 => DEFAULT_V2_BASE_URL,
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiVersion::V1_1 => "v1.1",
            ApiVersion::V2 => "v2",
        })
    }
}

/// The error returned when a string names no API version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown API version {0:?}; expected v1.1 (or v1) or v2")]
pub struct UnknownApiVersion(pub String);

impl FromStr for ApiVersion {
    type Err = UnknownApiVersion;

    /// Parses `v1`, `v1.1`, `1.1`, `v2` or `2`, ignoring ASCII case.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1" | "v1.1" | "1.1" => Ok(ApiVersion::V1_1),
            "v2" | "2" => Ok(ApiVersion::V2),
            _ => Err(UnknownApiVersion(s.to_string())),
        }
    }
}

/// How APPEND carries the segment payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AppendEncoding {
    /// Raw bytes in a multipart `media` part (`application/octet-stream`, no file name).
    #[default]
    Raw,
    /// Base64 text: a `media_data` multipart field in v1.1, a JSON body
    /// `{"media": "<base64>", "segment_index": n}` in v2. A third larger on the wire, so
    /// [`UploadProtocol::max_append_payload`] shrinks to 3/4 of the body limit.
    Base64,
}

/// Builds an [`XClient`]; see [`XClient::builder`].
///
/// # Defaults
/// - API: [`ApiVersion::V2`]; base URL: [`ApiVersion::default_base_url`].
/// - Encoding: [`AppendEncoding::Raw`].
/// - Per-APPEND body limit: [`limits::DEFAULT_MAX_APPEND_BYTES`] (5 MiB).
/// - HTTP client: rustls, [`CONNECT_TIMEOUT`], [`TCP_KEEPALIVE`], connection pooling,
///   no redirects, user agent [`USER_AGENT`], no overall timeout, no `TCP_USER_TIMEOUT`
///   (reqwest's 30 s default aborts connections that a slow link holds back).
#[derive(Debug, Clone)]
pub struct XClientBuilder {
    api: ApiVersion,
    base_url: Option<Url>,
    credentials: Option<Credentials>,
    encoding: AppendEncoding,
    max_append_bytes: u64,
    http: Option<reqwest::Client>,
}

impl Default for XClientBuilder {
    fn default() -> Self {
        XClientBuilder {
            api: ApiVersion::default(),
            base_url: None,
            credentials: None,
            encoding: AppendEncoding::default(),
            max_append_bytes: limits::DEFAULT_MAX_APPEND_BYTES,
            http: None,
        }
    }
}

impl XClientBuilder {
    /// The API version. Default [`ApiVersion::V2`].
    pub fn api(mut self, api: ApiVersion) -> Self {
        self.api = api;
        self
    }

    /// The base URL the API paths are appended to, such as `http://127.0.0.1:8080` for the
    /// emulator. A path prefix is kept (`http://host/prefix` gives
    /// `http://host/prefix/2/media/upload/initialize`). Default: the version's
    /// [`ApiVersion::default_base_url`].
    pub fn base_url(mut self, url: Url) -> Self {
        self.base_url = Some(url);
        self
    }

    /// The credentials (required). v1.1 accepts only [`Credentials::OAuth1`].
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// How APPEND carries the payload. Default [`AppendEncoding::Raw`].
    pub fn append_encoding(mut self, encoding: AppendEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The per-APPEND body limit on the wire, in bytes. Default
    /// [`limits::DEFAULT_MAX_APPEND_BYTES`].
    pub fn max_append_bytes(mut self, bytes: u64) -> Self {
        self.max_append_bytes = bytes;
        self
    }

    /// Use this HTTP client instead of building one. It should not follow redirects and
    /// should have no overall timeout (the engine applies deadlines itself).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Checks the configuration and builds the client.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] when the credentials are missing or empty, when v1.1 is
    /// paired with a bearer token (v1.1 is OAuth 1.0a user context only), when the base URL
    /// is not an `http`/`https` URL with a host, or has credentials, a query or a fragment,
    /// when the APPEND body limit leaves no room for payload, or when the HTTP client cannot
    /// be built.
    pub fn build(self) -> Result<XClient> {
        let invalid = |msg: &str| Error::new(ErrorKind::InvalidConfig, msg);
        let credentials = self.credentials.ok_or_else(|| {
            invalid(
                "credentials are required: set X_API_KEY, X_API_SECRET, X_ACCESS_TOKEN and \
                 X_ACCESS_TOKEN_SECRET (or X_BEARER_TOKEN for v2)",
            )
        })?;
        match &credentials {
            Credentials::Bearer(_) if self.api == ApiVersion::V1_1 => {
                return Err(invalid(
                    "the v1.1 API accepts only OAuth 1.0a user credentials: set X_API_KEY, \
                     X_API_SECRET, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET, or use the v2 API",
                ));
            }
            Credentials::Bearer(token) if token.trim().is_empty() => {
                return Err(invalid("the bearer token is empty: check X_BEARER_TOKEN"));
            }
            Credentials::OAuth1(c)
                if [
                    &c.consumer_key,
                    &c.consumer_secret,
                    &c.token,
                    &c.token_secret,
                ]
                .iter()
                .any(|s| s.is_empty()) =>
            {
                return Err(invalid(
                    "an OAuth 1.0a credential is empty: check X_API_KEY, X_API_SECRET, \
                     X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET",
                ));
            }
            _ => {}
        }

        let base = match self.base_url {
            Some(url) => url,
            None => Url::parse(self.api.default_base_url())
                .map_err(|e| invalid("the default base URL does not parse").with_source(e))?,
        };
        if !matches!(base.scheme(), "http" | "https")
            || base.host_str().is_none()
            || base.cannot_be_a_base()
        {
            return Err(invalid(
                "the base URL must be an http:// or https:// URL with a host, such as \
                 https://api.x.com or http://127.0.0.1:8080",
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid(
                "the base URL must not contain a user name or password; pass credentials \
                 through .credentials()",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("the base URL must not have a query or fragment"));
        }

        let base64 = self.encoding == AppendEncoding::Base64;
        if limits::max_payload_per_append(self.max_append_bytes, base64) == 0 {
            return Err(invalid(
                "the APPEND body limit leaves no room for payload: use at least 4 bytes \
                 (the default is 5 MiB)",
            ));
        }

        let http = match self.http {
            Some(client) => client,
            None => {
                let builder = reqwest::Client::builder()
                    .use_rustls_tls()
                    .user_agent(USER_AGENT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_keepalive(TCP_KEEPALIVE)
                    // An upload API never redirects; following one would replay a streamed
                    // body that cannot be replayed, so a 3xx is reported instead.
                    .redirect(reqwest::redirect::Policy::none());
                // reqwest (0.12.28) sets TCP_USER_TIMEOUT to 30 s by default on Linux, and
                // Linux then also aborts (ETIMEDOUT) connections whose peer keeps its
                // receive window shut, as a bottleneck that pushes back does. Over the
                // bench's 1 Mbit/s link (no faults) pooled connections failed APPENDs 0.5-5 s
                // after they started: 7 of 12 uploads lost an APPEND to it, none of 12 after
                // this change (`chunkwise upload --link constant-1mbit-150ms`, 6 at a time).
                // The engine's deadlines and stall detection watch every request instead,
                // and TCP keepalive still finds dead idle connections.
                #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
                let builder = builder.tcp_user_timeout(None);
                builder
                    .build()
                    .map_err(|e| invalid("the HTTP client could not be built").with_source(e))?
            }
        };

        let endpoints = Endpoints::new(self.api, &base);
        Ok(XClient {
            inner: Arc::new(Inner {
                api: self.api,
                base,
                endpoints,
                credentials,
                encoding: self.encoding,
                max_append_bytes: self.max_append_bytes,
                http,
            }),
        })
    }
}

/// The X media upload client: [`UploadProtocol`] for v1.1 and v2 over reqwest.
///
/// Cheap to clone (one `Arc`); its `Debug` output shows no secrets.
///
/// ```no_run
/// use chunkwise::Credentials;
/// use chunkwise::protocol::{ApiVersion, AppendEncoding, XClient};
///
/// # fn main() -> chunkwise::Result<()> {
/// let client = XClient::builder()
///     .api(ApiVersion::V2)
///     .base_url(url::Url::parse("http://127.0.0.1:8080").expect("a valid URL"))
///     .credentials(Credentials::bearer("token-with-media.write"))
///     .append_encoding(AppendEncoding::Raw)
///     .build()?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct XClient {
    inner: Arc<Inner>,
}

struct Inner {
    api: ApiVersion,
    base: Url,
    endpoints: Endpoints,
    credentials: Credentials,
    encoding: AppendEncoding,
    max_append_bytes: u64,
    http: reqwest::Client,
}

impl fmt::Debug for XClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.inner.credentials {
            Credentials::OAuth1(_) => "oauth1",
            Credentials::Bearer(_) => "bearer",
        };
        f.debug_struct("XClient")
            .field("api", &self.inner.api)
            .field("base_url", &self.inner.base.as_str())
            .field("auth", &auth)
            .field("encoding", &self.inner.encoding)
            .field("max_append_bytes", &self.inner.max_append_bytes)
            .finish()
    }
}

/// The fixed URLs of a client; the per-id v2 paths are built per call.
#[derive(Debug)]
struct Endpoints {
    /// v1.1: the one upload URL. v2: `/2/media/upload/initialize`.
    init: Url,
    /// v1.1: the upload URL; v2: `/2/media/upload` (STATUS).
    upload: Url,
}

impl Endpoints {
    fn new(api: ApiVersion, base: &Url) -> Self {
        match api {
            ApiVersion::V1_1 => {
                let url = join(base, &["1.1", "media", "upload.json"]);
                Endpoints {
                    init: url.clone(),
                    upload: url,
                }
            }
            ApiVersion::V2 => Endpoints {
                init: join(base, &["2", "media", "upload", "initialize"]),
                upload: join(base, &["2", "media", "upload"]),
            },
        }
    }
}

/// `base` with `segments` appended to its path (each percent-encoded as one segment).
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // `build` rejects cannot-be-a-base URLs, so this always succeeds.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// What a request carries.
enum Payload {
    /// No body (`Content-Length: 0`).
    Empty,
    /// An urlencoded body; its params are signed.
    Form(Vec<(String, String)>),
    /// A JSON body; not signed.
    Json(serde_json::Value),
    /// A multipart body; not signed.
    Multipart(Form),
    /// A streamed JSON body of known length; not signed.
    JsonStream(reqwest::Body, u64),
}

impl XClient {
    /// A builder with the defaults listed on [`XClientBuilder`].
    pub fn builder() -> XClientBuilder {
        XClientBuilder::default()
    }

    /// The API version.
    pub fn api(&self) -> ApiVersion {
        self.inner.api
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// How APPEND carries the payload.
    pub fn append_encoding(&self) -> AppendEncoding {
        self.inner.encoding
    }

    /// The per-APPEND body limit on the wire.
    pub fn max_append_bytes(&self) -> u64 {
        self.inner.max_append_bytes
    }

    /// A v2 per-id URL: `/2/media/upload/{id}/{action}`.
    fn v2_id_url(&self, id: &MediaId, action: &str) -> Url {
        join(
            &self.inner.base,
            &["2", "media", "upload", id.as_str(), action],
        )
    }

    /// Signs and sends one request, reads its body with a cap and maps failures.
    /// Returns the headers and body of a 2xx answer.
    async fn send(
        &self,
        command: Command,
        segment: Option<u32>,
        method: reqwest::Method,
        url: Url,
        payload: Payload,
    ) -> Result<(http::HeaderMap, Bytes)> {
        let form_params: &[(String, String)] = match &payload {
            Payload::Form(params) => params,
            _ => &[],
        };
        let authorization =
            self.inner
                .credentials
                .authorization(method.as_str(), &url, form_params);
        let mut request = self
            .inner
            .http
            .request(method, url)
            .header(http::header::AUTHORIZATION, authorization);
        request = match payload {
            Payload::Empty => request.header(CONTENT_LENGTH, 0),
            Payload::Form(params) => request.form(&params),
            Payload::Json(value) => request.json(&value),
            Payload::Multipart(form) => request.multipart(form),
            Payload::JsonStream(body, len) => request
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_LENGTH, len)
                .body(body),
        };

        let started = tokio::time::Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                debug!(
                    command = command.as_str(),
                    segment,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    error = %e,
                    detail = ?e,
                    "x upload request failed"
                );
                return Err(transport_error(command, segment, e));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body_capped(response).await;
        debug!(
            command = command.as_str(),
            segment,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "x upload request"
        );

        if status.is_success() {
            match body {
                Ok(BodyRead::Complete(bytes)) => Ok((headers, bytes)),
                Ok(BodyRead::TooLarge) => {
                    let error = Error::new(
                        ErrorKind::Protocol,
                        format!(
                            "the {command} response body is larger than \
                             {MAX_RESPONSE_BODY_BYTES} bytes; check that the base URL points \
                             at an X media upload API"
                        ),
                    );
                    Err(with_segment_opt(error, segment).with_status(status.as_u16()))
                }
                Err(e) => Err(transport_error(command, segment, e).with_status(status.as_u16())),
            }
        } else {
            // The status alone says what happened; a body that failed to arrive only
            // costs the server's message.
            let bytes = match body {
                Ok(BodyRead::Complete(bytes)) => bytes,
                Ok(BodyRead::TooLarge) | Err(_) => Bytes::new(),
            };
            Err(parse::status_error(
                command,
                segment,
                status.as_u16(),
                &headers,
                &bytes,
                SystemTime::now(),
            ))
        }
    }

    async fn init_impl(&self, req: &InitRequest) -> Result<InitResponse> {
        let (url, payload) = match self.inner.api {
            ApiVersion::V1_1 => {
                let mut params = vec![
                    ("command".to_string(), "INIT".to_string()),
                    ("total_bytes".to_string(), req.total_bytes.to_string()),
                    ("media_type".to_string(), req.media_type.clone()),
                ];
                if let Some(category) = req.media_category {
                    params.push(("media_category".into(), category.as_str().into()));
                }
                if !req.additional_owners.is_empty() {
                    params.push(("additional_owners".into(), req.additional_owners.join(",")));
                }
                if let Some(shared) = req.shared {
                    params.push(("shared".into(), shared.to_string()));
                }
                (self.inner.endpoints.init.clone(), Payload::Form(params))
            }
            ApiVersion::V2 => {
                let mut body = serde_json::Map::new();
                body.insert("total_bytes".into(), req.total_bytes.into());
                body.insert("media_type".into(), req.media_type.clone().into());
                if let Some(category) = req.media_category {
                    body.insert("media_category".into(), category.as_str().into());
                }
                if !req.additional_owners.is_empty() {
                    body.insert(
                        "additional_owners".into(),
                        req.additional_owners.clone().into(),
                    );
                }
                if let Some(shared) = req.shared {
                    body.insert("shared".into(), shared.into());
                }
                (
                    self.inner.endpoints.init.clone(),
                    Payload::Json(serde_json::Value::Object(body)),
                )
            }
        };
        let (_, body) = self
            .send(Command::Init, None, reqwest::Method::POST, url, payload)
            .await?;
        parse::init_response(&body)
    }

    async fn append_impl(&self, req: AppendRequest) -> Result<AppendResponse> {
        let segment = req.segment_index;
        check_media_id(&req.media_id, Command::Append)?;
        if req.data.len() as u64 > self.max_append_payload() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the segment is {} bytes, more than the {} bytes one APPEND may carry; plan \
                     smaller segments",
                    req.data.len(),
                    self.max_append_payload()
                ),
            )
            .with_segment(segment));
        }
        let encoded_len = || {
            base64::encoded_len(req.data.len(), true).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    "the segment is too large to encode",
                )
                .with_segment(segment)
            })
        };
        let (url, payload) = match (self.inner.api, self.inner.encoding) {
            (ApiVersion::V1_1, encoding) => {
                let form = Form::new()
                    .text("command", "APPEND")
                    .text("media_id", req.media_id.0.clone())
                    .text("segment_index", segment.to_string());
                let form = match encoding {
                    AppendEncoding::Raw => form.part("media", raw_part(req.data, req.sent)),
                    AppendEncoding::Base64 => {
                        let len = encoded_len()? as u64;
                        form.part(
                            "media_data",
                            Part::stream_with_length(
                                reqwest::Body::wrap_stream(base64_slices(req.data, req.sent)),
                                len,
                            ),
                        )
                    }
                };
                (
                    self.inner.endpoints.upload.clone(),
                    Payload::Multipart(form),
                )
            }
            (ApiVersion::V2, AppendEncoding::Raw) => {
                let form = Form::new()
                    .text("segment_index", segment.to_string())
                    .part("media", raw_part(req.data, req.sent));
                (
                    self.v2_id_url(&req.media_id, "append"),
                    Payload::Multipart(form),
                )
            }
            (ApiVersion::V2, AppendEncoding::Base64) => {
                let prefix = Bytes::from_static(br#"{"media":""#);
                let suffix = Bytes::from(format!(r#"","segment_index":{segment}}}"#));
                let len = (prefix.len() + encoded_len()? + suffix.len()) as u64;
                let body = stream::once(async move { Ok::<_, Infallible>(prefix) })
                    .chain(base64_slices(req.data, req.sent))
                    .chain(stream::once(async move { Ok(suffix) }));
                (
                    self.v2_id_url(&req.media_id, "append"),
                    Payload::JsonStream(reqwest::Body::wrap_stream(body), len),
                )
            }
        };
        let (headers, body) = self
            .send(
                Command::Append,
                Some(segment),
                reqwest::Method::POST,
                url,
                payload,
            )
            .await?;
        let mut response = parse::append_response(&body);
        response.rate_limit = parse::rate_limit(&headers);
        Ok(response)
    }

    async fn finalize_impl(&self, media_id: &MediaId) -> Result<MediaStatus> {
        check_media_id(media_id, Command::Finalize)?;
        let (url, payload) = match self.inner.api {
            ApiVersion::V1_1 => (
                self.inner.endpoints.upload.clone(),
                Payload::Form(vec![
                    ("command".into(), "FINALIZE".into()),
                    ("media_id".into(), media_id.0.clone()),
                ]),
            ),
            ApiVersion::V2 => (self.v2_id_url(media_id, "finalize"), Payload::Empty),
        };
        let (_, body) = self
            .send(Command::Finalize, None, reqwest::Method::POST, url, payload)
            .await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            // protocol.md §10: accept an empty 2xx FINALIZE; without processing_info the
            // media is ready.
            return Ok(MediaStatus {
                media_id: media_id.clone(),
                media_key: None,
                size: None,
                expires_after_secs: None,
                processing_info: None,
            });
        }
        parse::media_status(Command::Finalize, &body, media_id)
    }

    async fn status_impl(&self, media_id: &MediaId) -> Result<MediaStatus> {
        check_media_id(media_id, Command::Status)?;
        let mut url = self.inner.endpoints.upload.clone();
        url.query_pairs_mut()
            .append_pair("command", "STATUS")
            .append_pair("media_id", media_id.as_str());
        let (_, body) = self
            .send(
                Command::Status,
                None,
                reqwest::Method::GET,
                url,
                Payload::Empty,
            )
            .await?;
        parse::media_status(Command::Status, &body, media_id)
    }
}

impl UploadProtocol for XClient {
    fn describe(&self) -> ProtocolTarget {
        // User info, query and fragment may carry secrets; a checkpoint must not.
        let mut url = self.inner.base.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        ProtocolTarget {
            api: format!("x-{}", self.inner.api),
            base_url: url.to_string(),
        }
    }

    fn max_append_payload(&self) -> u64 {
        limits::max_payload_per_append(
            self.inner.max_append_bytes,
            self.inner.encoding == AppendEncoding::Base64,
        )
    }

    fn init<'a>(&'a self, req: &'a InitRequest) -> BoxFuture<'a, Result<InitResponse>> {
        Box::pin(self.init_impl(req))
    }

    fn append(&self, req: AppendRequest) -> BoxFuture<'_, Result<AppendResponse>> {
        Box::pin(self.append_impl(req))
    }

    fn finalize<'a>(&'a self, media_id: &'a MediaId) -> BoxFuture<'a, Result<MediaStatus>> {
        Box::pin(self.finalize_impl(media_id))
    }

    fn status<'a>(&'a self, media_id: &'a MediaId) -> BoxFuture<'a, Result<MediaStatus>> {
        Box::pin(self.status_impl(media_id))
    }

    /// v1.1: still images (`tweet_image`, `dm_image` or no category) up to 5 MiB; v2: still
    /// images and subtitle files with category `tweet_image`, `dm_image` or `subtitles`
    /// (given, or guessed from the media type) up to their category's limit, the categories
    /// every published spec version takes (protocol.md §3.5, §4.5). Never with `shared`,
    /// which only INIT carries.
    fn accepts_one_shot(&self, req: &InitRequest) -> bool {
        self.accepts_one_shot_impl(req)
    }

    fn upload_one_shot(&self, req: OneShotRequest) -> BoxFuture<'_, Result<MediaStatus>> {
        Box::pin(self.upload_one_shot_impl(req))
    }

    fn set_alt_text<'a>(
        &'a self,
        media_id: &'a MediaId,
        text: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.set_alt_text_impl(media_id, text))
    }

    fn attach_subtitles<'a>(&'a self, req: &'a SubtitlesRequest) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.attach_subtitles_impl(req))
    }

    fn delete_subtitles<'a>(
        &'a self,
        video: &'a MediaId,
        video_category: Option<crate::limits::MediaCategory>,
        language: &'a LanguageCode,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete_subtitles_impl(video, video_category, language))
    }
}

/// Rejects ids that are not X media ids before they reach a URL.
fn check_media_id(id: &MediaId, command: Command) -> Result<()> {
    if parse::is_media_id(id.as_str()) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{command} needs an X media id (1 to 20 decimal digits); start a new upload"),
        ))
    }
}

/// `error` with the segment of an APPEND attached, if there is one.
fn with_segment_opt(error: Error, segment: Option<u32>) -> Error {
    match segment {
        Some(s) => error.with_segment(s),
        None => error,
    }
}

/// A reqwest failure without an HTTP status: no connection (refused, unreachable, connect
/// timeout) → `Unreachable`, a timeout → `Timeout`, anything else (reset, truncated body) →
/// `Transport`.
fn transport_error(command: Command, segment: Option<u32>, e: reqwest::Error) -> Error {
    let error = if e.is_connect() {
        Error::new(
            ErrorKind::Unreachable,
            format!("could not connect for {command}: check the network and the base URL"),
        )
    } else if e.is_timeout() {
        Error::new(
            ErrorKind::Timeout,
            format!("the {command} request timed out; it will be retried"),
        )
    } else if e.is_builder() {
        Error::new(
            ErrorKind::InvalidInput,
            format!("the {command} request could not be built"),
        )
    } else {
        Error::new(
            ErrorKind::Transport,
            format!("the connection failed during {command}; it will be retried"),
        )
    };
    // The source's text names the URL (path and query: ids, never credentials).
    with_segment_opt(error, segment).with_source(e)
}

/// How reading a response body ended.
enum BodyRead {
    /// The whole body, at most [`MAX_RESPONSE_BODY_BYTES`].
    Complete(Bytes),
    /// The body is longer than [`MAX_RESPONSE_BODY_BYTES`]; reading stopped.
    TooLarge,
}

/// Reads a response body, stopping past [`MAX_RESPONSE_BODY_BYTES`].
async fn read_body_capped(mut response: reqwest::Response) -> reqwest::Result<BodyRead> {
    let cap = MAX_RESPONSE_BODY_BYTES as u64;
    if response.content_length().is_some_and(|len| len > cap) {
        return Ok(BodyRead::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if (buf.len() + chunk.len()) as u64 > cap {
            return Ok(BodyRead::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(BodyRead::Complete(buf.freeze()))
}

/// The raw `media` part: `application/octet-stream`, no file name. Streamed in slices when
/// progress is wanted, else handed over whole; either way without copying the payload.
fn raw_part(data: Bytes, sent: Option<Arc<AtomicU64>>) -> Part {
    let len = data.len() as u64;
    let body = match sent {
        Some(counter) => reqwest::Body::wrap_stream(raw_slices(data, Some(counter))),
        None => reqwest::Body::from(data),
    };
    // Set through `headers` rather than the fallible `mime_str`: the value is static.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Part::stream_with_length(body, len).headers(headers)
}

/// The payload as zero-copy slices of [`BODY_SLICE_BYTES`], adding each slice's length to
/// `sent` when the connection takes it.
fn raw_slices(
    data: Bytes,
    sent: Option<Arc<AtomicU64>>,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> + Send + 'static {
    slices(data, BODY_SLICE_BYTES, sent, |slice| slice)
}

/// The payload as base64 text, encoded slice by slice (slices of [`BASE64_SLICE_BYTES`],
/// a multiple of 3, so the pieces concatenate to the base64 of the whole). `sent` counts
/// payload bytes, not encoded bytes.
fn base64_slices(
    data: Bytes,
    sent: Option<Arc<AtomicU64>>,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> + Send + 'static {
    slices(data, BASE64_SLICE_BYTES, sent, |slice| {
        Bytes::from(base64::engine::general_purpose::STANDARD.encode(&slice))
    })
}

/// Splits `data` into `Bytes::slice`s of `size`, maps each, and adds the slice length to
/// `sent` as the slice is handed over (the stream is lazy: the counter moves only when the
/// HTTP connection polls for more body).
fn slices(
    data: Bytes,
    size: usize,
    sent: Option<Arc<AtomicU64>>,
    map: fn(Bytes) -> Bytes,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> + Send + 'static {
    let len = data.len();
    stream::iter((0..len).step_by(size.max(1)).map(move |start| {
        let slice = data.slice(start..len.min(start + size));
        if let Some(counter) = &sent {
            counter.fetch_add(slice.len() as u64, Ordering::Relaxed);
        }
        Ok(map(slice))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn oauth() -> Credentials {
        Credentials::oauth1("ck-public", "cs-secret", "tok-secret", "ts-secret")
    }

    fn pattern(n: usize) -> Bytes {
        (0..n)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>()
            .into()
    }

    #[test]
    fn api_version_parses_and_displays() {
        for (s, v) in [
            ("v1", ApiVersion::V1_1),
            ("v1.1", ApiVersion::V1_1),
            ("V1.1", ApiVersion::V1_1),
            ("1.1", ApiVersion::V1_1),
            ("v2", ApiVersion::V2),
            (" 2 ", ApiVersion::V2),
        ] {
            assert_eq!(s.parse::<ApiVersion>(), Ok(v), "{s}");
        }
        assert!("v3".parse::<ApiVersion>().is_err());
        assert_eq!(ApiVersion::V1_1.to_string(), "v1.1");
        assert_eq!(ApiVersion::V2.to_string(), "v2");
        for v in [ApiVersion::V1_1, ApiVersion::V2] {
            assert_eq!(v.to_string().parse::<ApiVersion>(), Ok(v));
        }
    }

    #[test]
    fn builder_defaults_and_payload_limit() {
        let c = XClient::builder().credentials(oauth()).build().unwrap();
        assert_eq!(c.api(), ApiVersion::V2);
        assert_eq!(c.base_url().as_str(), "https://api.x.com/");
        assert_eq!(c.append_encoding(), AppendEncoding::Raw);
        assert_eq!(c.max_append_bytes(), limits::DEFAULT_MAX_APPEND_BYTES);
        assert_eq!(c.max_append_payload(), 5_242_880);

        let c = XClient::builder()
            .api(ApiVersion::V1_1)
            .credentials(oauth())
            .append_encoding(AppendEncoding::Base64)
            .max_append_bytes(4_000_000)
            .build()
            .unwrap();
        assert_eq!(c.base_url().as_str(), "https://upload.twitter.com/");
        assert_eq!(c.max_append_payload(), 3_000_000);
        assert_eq!(
            c.inner.endpoints.upload.as_str(),
            "https://upload.twitter.com/1.1/media/upload.json"
        );
    }

    #[test]
    fn invalid_configurations_are_rejected_at_build() {
        let kind = |b: XClientBuilder| b.build().unwrap_err().kind();
        // v1.1 is OAuth 1.0a user context only.
        let e = XClient::builder()
            .api(ApiVersion::V1_1)
            .credentials(Credentials::bearer("AAAA-bearer"))
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains("OAuth 1.0a"), "{e}");
        assert!(!e.to_string().contains("AAAA-bearer"));

        assert_eq!(kind(XClient::builder()), ErrorKind::InvalidConfig);
        assert_eq!(
            kind(XClient::builder().credentials(Credentials::bearer(" "))),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            kind(XClient::builder().credentials(Credentials::oauth1("a", "", "c", "d"))),
            ErrorKind::InvalidConfig
        );
        for url in [
            "ftp://example.com",
            "mailto:someone@example.com",
            "http://user:pass@127.0.0.1:1",
            "http://127.0.0.1:1/?x=1",
            "http://127.0.0.1:1/#frag",
        ] {
            let b = XClient::builder()
                .credentials(oauth())
                .base_url(Url::parse(url).unwrap());
            assert_eq!(kind(b), ErrorKind::InvalidConfig, "{url}");
        }
        let b = XClient::builder()
            .credentials(oauth())
            .append_encoding(AppendEncoding::Base64)
            .max_append_bytes(3);
        assert_eq!(kind(b), ErrorKind::InvalidConfig);
        assert_eq!(
            kind(XClient::builder().credentials(oauth()).max_append_bytes(0)),
            ErrorKind::InvalidConfig
        );
    }

    #[test]
    fn debug_shows_no_secrets() {
        let c = XClient::builder().credentials(oauth()).build().unwrap();
        let s = format!("{c:?}");
        for secret in ["cs-secret", "tok-secret", "ts-secret", "ck-public"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.contains("oauth1") && s.contains("V2"), "{s}");
        let c = XClient::builder()
            .credentials(Credentials::bearer("AAAA-bearer"))
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("AAAA-bearer"));
    }

    #[test]
    fn paths_are_appended_to_the_base_path() {
        for (base, want) in [
            (
                "http://127.0.0.1:9",
                "http://127.0.0.1:9/2/media/upload/initialize",
            ),
            (
                "http://127.0.0.1:9/prefix",
                "http://127.0.0.1:9/prefix/2/media/upload/initialize",
            ),
            (
                "http://127.0.0.1:9/prefix/",
                "http://127.0.0.1:9/prefix/2/media/upload/initialize",
            ),
        ] {
            let e = Endpoints::new(ApiVersion::V2, &Url::parse(base).unwrap());
            assert_eq!(e.init.as_str(), want);
        }
        let c = XClient::builder()
            .credentials(oauth())
            .base_url(Url::parse("http://127.0.0.1:9/p").unwrap())
            .build()
            .unwrap();
        assert_eq!(
            c.v2_id_url(&MediaId::from("123"), "append").as_str(),
            "http://127.0.0.1:9/p/2/media/upload/123/append"
        );
    }

    #[tokio::test]
    async fn raw_slices_are_zero_copy_and_counted_as_handed_over() {
        let data = pattern(BODY_SLICE_BYTES * 2 + 100);
        let counter = Arc::new(AtomicU64::new(0));
        let mut stream = std::pin::pin!(raw_slices(data.clone(), Some(counter.clone())));
        let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
        let mut seen = 0usize;
        let mut joined = Vec::new();
        assert_eq!(
            counter.load(Ordering::Relaxed),
            0,
            "nothing handed over yet"
        );
        while let Some(Ok(slice)) = stream.next().await {
            assert!(slice.len() <= BODY_SLICE_BYTES);
            // A view into the segment, not a copy.
            assert!(range.contains(&(slice.as_ptr() as usize)));
            seen += slice.len();
            assert_eq!(counter.load(Ordering::Relaxed), seen as u64);
            joined.extend_from_slice(&slice);
        }
        assert_eq!(joined, data);
        assert_eq!(seen, data.len());
    }

    #[tokio::test]
    async fn base64_slices_concatenate_and_count_payload_bytes() {
        for n in [0, 1, 2, 3, BASE64_SLICE_BYTES, BASE64_SLICE_BYTES * 2 + 7] {
            let data = pattern(n);
            let counter = Arc::new(AtomicU64::new(0));
            let pieces: Vec<_> = base64_slices(data.clone(), Some(counter.clone()))
                .collect()
                .await;
            let text: Vec<u8> = pieces
                .into_iter()
                .flat_map(|p| p.unwrap().to_vec())
                .collect();
            let want = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(String::from_utf8(text).unwrap(), want, "n = {n}");
            assert_eq!(Some(want.len()), base64::encoded_len(n, true));
            assert_eq!(counter.load(Ordering::Relaxed), n as u64);
        }
    }
}

/// Wire tests against a tiny recording loopback server (axum, bound on 127.0.0.1:0).
#[cfg(all(test, feature = "emulator"))]
mod wire_tests {
    use super::*;
    use crate::auth::{OAuth1Credentials, verify_oauth1};
    use crate::limits::MediaCategory;
    use axum::extract::{FromRequest, Multipart, Request, State};
    use axum::response::Response;
    use serde_json::json;
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    /// One request as the server saw it.
    #[derive(Debug, Clone)]
    struct Recorded {
        method: String,
        /// Path and query.
        uri: String,
        headers: http::HeaderMap,
        body: Bytes,
    }

    impl Recorded {
        fn path(&self) -> &str {
            self.uri.split('?').next().unwrap_or_default()
        }
        fn query(&self) -> Option<&str> {
            self.uri.split_once('?').map(|(_, q)| q)
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(|v| v.to_str().unwrap())
        }
        fn form(&self) -> Vec<(String, String)> {
            url::form_urlencoded::parse(&self.body)
                .into_owned()
                .collect()
        }
    }

    /// A canned answer.
    struct Canned {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    }

    fn canned(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[derive(Default)]
    struct Shared {
        recorded: Mutex<Vec<Recorded>>,
        responses: Mutex<VecDeque<Canned>>,
    }

    struct Server {
        addr: SocketAddr,
        shared: Arc<Shared>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        async fn start(responses: Vec<Canned>) -> Server {
            let shared = Arc::new(Shared::default());
            shared.responses.lock().unwrap().extend(responses);
            let app = axum::Router::new()
                .fallback(record)
                .with_state(shared.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Server { addr, shared, task }
        }

        fn url(&self) -> Url {
            Url::parse(&format!("http://{}", self.addr)).unwrap()
        }

        fn requests(&self) -> Vec<Recorded> {
            self.shared.recorded.lock().unwrap().clone()
        }

        /// The full URL of a recorded request, as the client signed it.
        fn full_url(&self, r: &Recorded) -> Url {
            Url::parse(&format!("http://{}{}", self.addr, r.uri)).unwrap()
        }
    }

    async fn record(State(shared): State<Arc<Shared>>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
        shared.recorded.lock().unwrap().push(Recorded {
            method: parts.method.to_string(),
            uri: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
        });
        let answer = shared
            .responses
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| canned(500, "no canned response left"));
        let mut builder = Response::builder().status(answer.status);
        for (k, v) in answer.headers {
            builder = builder.header(k, v);
        }
        builder.body(axum::body::Body::from(answer.body)).unwrap()
    }

    /// A multipart field as the server parsed it.
    #[derive(Debug)]
    struct Field {
        name: String,
        file_name: Option<String>,
        content_type: Option<String>,
        data: Bytes,
    }

    async fn multipart(r: &Recorded) -> Vec<Field> {
        let req = http::Request::builder()
            .header(CONTENT_TYPE, r.header("content-type").unwrap())
            .body(axum::body::Body::from(r.body.clone()))
            .unwrap();
        let mut mp = Multipart::from_request(req, &()).await.unwrap();
        let mut out = Vec::new();
        while let Some(f) = mp.next_field().await.unwrap() {
            let name = f.name().unwrap_or_default().to_string();
            let file_name = f.file_name().map(str::to_string);
            let content_type = f.content_type().map(str::to_string);
            out.push(Field {
                name,
                file_name,
                content_type,
                data: f.bytes().await.unwrap(),
            });
        }
        out
    }

    fn text_fields(fields: &[Field]) -> Vec<(&str, &str)> {
        fields
            .iter()
            .filter(|f| f.content_type.is_none())
            .map(|f| (f.name.as_str(), std::str::from_utf8(&f.data).unwrap()))
            .collect()
    }

    fn creds() -> OAuth1Credentials {
        OAuth1Credentials {
            consumer_key: "ck".into(),
            consumer_secret: "cs".into(),
            token: "tok".into(),
            token_secret: "ts".into(),
        }
    }

    fn client(server: &Server, api: ApiVersion, encoding: AppendEncoding) -> XClient {
        XClient::builder()
            .api(api)
            .base_url(server.url())
            .credentials(Credentials::OAuth1(creds()))
            .append_encoding(encoding)
            .build()
            .unwrap()
    }

    fn init_request() -> InitRequest {
        InitRequest {
            total_bytes: 10_000_000,
            media_type: "video/mp4".into(),
            media_category: Some(MediaCategory::TweetVideo),
            additional_owners: vec!["111".into(), "222".into()],
            shared: Some(true),
        }
    }

    fn append(id: &str, index: u32, data: Bytes, sent: Option<Arc<AtomicU64>>) -> AppendRequest {
        AppendRequest {
            media_id: MediaId::from(id),
            segment_index: index,
            data,
            sent,
        }
    }

    fn pattern(n: usize) -> Bytes {
        (0..n)
            .map(|i| (i * 7 % 253) as u8)
            .collect::<Vec<_>>()
            .into()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ID: &str = "931270813906374657";

    // The one-shot upload, alt text and subtitles (issue 14).
    mod media;

    #[tokio::test]
    async fn v1_1_wire_shape_and_signatures() {
        let server = Server::start(vec![
            canned(
                202,
                r#"{"media_id":931270813906374700,"media_id_string":"931270813906374657","expires_after_secs":3599}"#,
            ),
            canned(204, ""),
            canned(
                201,
                r#"{"media_id":931270813906374700,"media_id_string":"931270813906374657","media_key":"7_931270813906374657","size":10000000,"expires_after_secs":86400,"processing_info":{"state":"pending","check_after_secs":1}}"#,
            ),
            canned(
                200,
                r#"{"media_id":931270813906374700,"media_id_string":"931270813906374657","expires_after_secs":3595,"processing_info":{"state":"succeeded","progress_percent":100}}"#,
            ),
        ])
        .await;
        let c = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
        let payload = Bytes::from_static(b"\x00\x01 binary \xff\r\n--not-a-boundary");

        let init = c.init(&init_request()).await.unwrap();
        assert_eq!(init.media_id, MediaId::from(ID));
        assert_eq!(init.expires_after_secs, Some(3599));
        let appended = c
            .append(append(ID, 3, payload.clone(), None))
            .await
            .unwrap();
        assert_eq!(appended, AppendResponse::default());
        let fin = c.finalize(&init.media_id).await.unwrap();
        assert_eq!(fin.media_key.as_deref(), Some("7_931270813906374657"));
        assert!(!fin.is_ready());
        let status = c.status(&init.media_id).await.unwrap();
        assert!(status.is_ready());

        let reqs = server.requests();
        assert_eq!(reqs.len(), 4);
        for r in &reqs {
            assert_eq!(r.path(), "/1.1/media/upload.json");
            assert_eq!(r.header("user-agent"), Some(USER_AGENT));
        }

        // INIT: urlencoded, every parameter, signed together with the body params.
        let r = &reqs[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.query(), None);
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let form = r.form();
        assert_eq!(
            form,
            pairs(&[
                ("command", "INIT"),
                ("total_bytes", "10000000"),
                ("media_type", "video/mp4"),
                ("media_category", "tweet_video"),
                ("additional_owners", "111,222"),
                ("shared", "true"),
            ])
        );
        let auth = r.header("authorization").unwrap();
        let url = server.full_url(r);
        assert!(verify_oauth1(&creds(), "POST", &url, &form, auth));
        assert!(!verify_oauth1(&creds(), "POST", &url, &[], auth));

        // APPEND: multipart with a semicolon boundary, text fields and a raw media part;
        // the multipart fields are not signed.
        let r = &reqs[1];
        assert_eq!(r.method, "POST");
        let ct = r.header("content-type").unwrap();
        assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let fields = multipart(r).await;
        assert_eq!(
            text_fields(&fields),
            vec![
                ("command", "APPEND"),
                ("media_id", ID),
                ("segment_index", "3")
            ]
        );
        let media: Vec<&Field> = fields.iter().filter(|f| f.name == "media").collect();
        assert_eq!(media.len(), 1);
        assert_eq!(media[0].data, payload);
        assert_eq!(
            media[0].content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(media[0].file_name, None);
        assert!(!fields.iter().any(|f| f.name == "media_data"));
        let auth = r.header("authorization").unwrap();
        let url = server.full_url(r);
        assert!(verify_oauth1(&creds(), "POST", &url, &[], auth));
        let signed_fields = pairs(&[
            ("command", "APPEND"),
            ("media_id", ID),
            ("segment_index", "3"),
        ]);
        assert!(!verify_oauth1(&creds(), "POST", &url, &signed_fields, auth));

        // FINALIZE: urlencoded and signed with its body params.
        let r = &reqs[2];
        assert_eq!(r.method, "POST");
        let form = r.form();
        assert_eq!(form, pairs(&[("command", "FINALIZE"), ("media_id", ID)]));
        let url = server.full_url(r);
        assert!(verify_oauth1(
            &creds(),
            "POST",
            &url,
            &form,
            r.header("authorization").unwrap()
        ));

        // STATUS: GET with the query signed.
        let r = &reqs[3];
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.query(),
            Some("command=STATUS&media_id=931270813906374657")
        );
        assert!(r.body.is_empty());
        let url = server.full_url(r);
        assert!(verify_oauth1(
            &creds(),
            "GET",
            &url,
            &[],
            r.header("authorization").unwrap()
        ));
    }

    #[tokio::test]
    async fn v2_wire_shape_and_signatures() {
        let id = "1880000000000000000";
        let server = Server::start(vec![
            canned(
                200,
                r#"{"data":{"id":"1880000000000000000","media_key":"13_1880000000000000000","expires_after_secs":1295999}}"#,
            ),
            Canned {
                status: 200,
                headers: vec![
                    ("x-rate-limit-limit", "1875".into()),
                    ("x-rate-limit-remaining", "1874".into()),
                    ("x-rate-limit-reset", "1760000000".into()),
                ],
                body: br#"{"data":{"expires_at":1760000000}}"#.to_vec(),
            },
            canned(
                200,
                r#"{"data":{"id":"1880000000000000000","media_key":"13_1880000000000000000","size":1048576,"expires_after_secs":86400,"processing_info":{"state":"pending","check_after_secs":1}}}"#,
            ),
            canned(
                200,
                r#"{"data":{"id":"1880000000000000000","processing_info":{"state":"in_progress","check_after_secs":5,"progress_percent":40}}}"#,
            ),
        ])
        .await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
        let payload = pattern(1000);

        let init = c.init(&init_request()).await.unwrap();
        assert_eq!(init.media_id, MediaId::from(id));
        assert_eq!(init.media_key.as_deref(), Some("13_1880000000000000000"));
        let appended = c
            .append(append(id, 0, payload.clone(), None))
            .await
            .unwrap();
        assert_eq!(appended.expires_at, Some(1760000000));
        assert_eq!(
            appended.rate_limit,
            Some(crate::protocol::RateLimit {
                limit: 1875,
                remaining: 1874,
                reset_epoch_secs: 1760000000
            })
        );
        let fin = c.finalize(&init.media_id).await.unwrap();
        assert_eq!(fin.size, Some(1048576));
        let status = c.status(&init.media_id).await.unwrap();
        let p = status.processing_info.unwrap();
        assert_eq!(p.state, crate::protocol::ProcessingState::InProgress);
        assert_eq!(p.progress_percent, Some(40));

        let reqs = server.requests();
        assert_eq!(reqs.len(), 4);
        for r in &reqs {
            let url = server.full_url(r);
            // JSON, multipart and empty bodies: only the query (if any) is signed.
            assert!(
                verify_oauth1(
                    &creds(),
                    &r.method,
                    &url,
                    &[],
                    r.header("authorization").unwrap()
                ),
                "{}",
                r.uri
            );
        }

        let r = &reqs[0];
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("POST", "/2/media/upload/initialize")
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            json!({
                "total_bytes": 10_000_000,
                "media_type": "video/mp4",
                "media_category": "tweet_video",
                "additional_owners": ["111", "222"],
                "shared": true,
            })
        );

        let r = &reqs[1];
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("POST", "/2/media/upload/1880000000000000000/append")
        );
        let ct = r.header("content-type").unwrap();
        assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
        let fields = multipart(r).await;
        assert_eq!(text_fields(&fields), vec![("segment_index", "0")]);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].name, "media");
        assert_eq!(fields[1].data, payload);
        assert_eq!(fields[1].file_name, None);

        let r = &reqs[2];
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("POST", "/2/media/upload/1880000000000000000/finalize")
        );
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length"), Some("0"));
        assert_eq!(r.header("content-type"), None);

        let r = &reqs[3];
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            (
                "GET",
                "/2/media/upload?command=STATUS&media_id=1880000000000000000"
            )
        );
    }

    #[tokio::test]
    async fn v2_minimal_init_and_bearer_header() {
        let server = Server::start(vec![canned(
            200,
            r#"{"data":{"id":"1895027516701843457","expires_after_secs":86399}}"#,
        )])
        .await;
        let c = XClient::builder()
            .base_url(server.url())
            .credentials(Credentials::bearer("user-token"))
            .build()
            .unwrap();
        let init = c
            .init(&InitRequest {
                total_bytes: 5,
                media_type: "image/png".into(),
                media_category: None,
                additional_owners: Vec::new(),
                shared: None,
            })
            .await
            .unwrap();
        assert_eq!(init.media_key, None);
        let r = &server.requests()[0];
        assert_eq!(r.header("authorization"), Some("Bearer user-token"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body, json!({"total_bytes": 5, "media_type": "image/png"}));
    }

    #[tokio::test]
    async fn v1_1_base64_append_sends_media_data_and_counts_payload() {
        let server = Server::start(vec![canned(204, "")]).await;
        let c = client(&server, ApiVersion::V1_1, AppendEncoding::Base64);
        let payload = pattern(200_000);
        let sent = Arc::new(AtomicU64::new(0));
        c.append(append(ID, 7, payload.clone(), Some(sent.clone())))
            .await
            .unwrap();
        assert_eq!(sent.load(Ordering::Relaxed), payload.len() as u64);

        let r = &server.requests()[0];
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let fields = multipart(r).await;
        assert!(!fields.iter().any(|f| f.name == "media"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(&payload);
        assert_eq!(
            text_fields(&fields),
            vec![
                ("command", "APPEND"),
                ("media_id", ID),
                ("segment_index", "7"),
                ("media_data", b64.as_str()),
            ]
        );
        assert!(verify_oauth1(
            &creds(),
            "POST",
            &server.full_url(r),
            &[],
            r.header("authorization").unwrap()
        ));
    }

    #[tokio::test]
    async fn v2_base64_append_sends_json_and_counts_payload() {
        let server = Server::start(vec![canned(204, "")]).await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Base64);
        let payload = pattern(150_001);
        let sent = Arc::new(AtomicU64::new(0));
        let r = c
            .append(append("42", 5, payload.clone(), Some(sent.clone())))
            .await
            .unwrap();
        assert_eq!(r, AppendResponse::default());
        assert_eq!(sent.load(Ordering::Relaxed), payload.len() as u64);

        let r = &server.requests()[0];
        assert_eq!(r.uri, "/2/media/upload/42/append");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["segment_index"], json!(5));
        let media = body["media"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(media)
            .unwrap();
        assert_eq!(decoded, payload);
        assert_eq!(body.as_object().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn raw_append_streams_the_exact_bytes_and_counts_them() {
        let server = Server::start(vec![canned(200, ""), canned(200, "")]).await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
        let payload = pattern(BODY_SLICE_BYTES * 4 + 123);
        let sent = Arc::new(AtomicU64::new(0));
        c.append(append("42", 1, payload.clone(), Some(sent.clone())))
            .await
            .unwrap();
        assert_eq!(sent.load(Ordering::Relaxed), payload.len() as u64);
        // An empty segment sends an empty part and counts nothing.
        let empty = Arc::new(AtomicU64::new(0));
        c.append(append("42", 2, Bytes::new(), Some(empty.clone())))
            .await
            .unwrap();
        assert_eq!(empty.load(Ordering::Relaxed), 0);

        let reqs = server.requests();
        assert_eq!(
            reqs[0].header("content-length"),
            Some(reqs[0].body.len().to_string().as_str())
        );
        let fields = multipart(&reqs[0]).await;
        assert_eq!(fields[1].name, "media");
        assert_eq!(fields[1].data, payload);
        let fields = multipart(&reqs[1]).await;
        assert!(fields[1].data.is_empty());
    }

    #[tokio::test]
    async fn rate_limited_with_retry_after() {
        let server = Server::start(vec![Canned {
            status: 429,
            headers: vec![("retry-after", "7".into())],
            body: br#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#
                .to_vec(),
        }])
        .await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
        let e = c
            .append(append("42", 2, pattern(10), None))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_throttled() && e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.status(), Some(429));
        assert_eq!(e.segment(), Some(2));
        assert_eq!(e.server_message().unwrap().message, "Too Many Requests");
    }

    #[tokio::test]
    async fn rate_limited_with_reset_header() {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let server = Server::start(vec![Canned {
            status: 429,
            headers: vec![
                ("x-rate-limit-limit", "1875".into()),
                ("x-rate-limit-remaining", "0".into()),
                ("x-rate-limit-reset", (now + 120).to_string()),
            ],
            body: br#"{"errors":[{"code":88,"message":"Rate limit exceeded"}]}"#.to_vec(),
        }])
        .await;
        let c = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
        let e = c.init(&init_request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        let delay = e.retry_after().unwrap();
        // The delay is reset - now, counted in whole seconds by the client's clock.
        assert!(
            delay <= Duration::from_secs(120) && delay >= Duration::from_secs(110),
            "{delay:?}"
        );
        assert_eq!(e.server_message().unwrap().code, Some(88));
    }

    #[tokio::test]
    async fn server_error_503_is_retryable() {
        let server = Server::start(vec![canned(503, "Service Unavailable")]).await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
        let e = c
            .append(append("42", 9, pattern(10), None))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerError);
        assert!(e.is_retryable());
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.segment(), Some(9));
        assert_eq!(e.server_message().unwrap().message, "Service Unavailable");
    }

    #[tokio::test]
    async fn rejected_400_carries_the_server_message() {
        let server = Server::start(vec![
            canned(
                400,
                r#"{"request":"\/1.1\/media\/upload.json","error":"File size exceeds 15728640 bytes."}"#,
            ),
            canned(
                400,
                r#"{"errors":[{"message":"BadRequest: Not found"}],"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.twitter.com/2/problems/invalid-request"}"#,
            ),
        ])
        .await;
        let c = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
        let e = c.init(&init_request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(!e.is_retryable());
        assert_eq!(e.status(), Some(400));
        assert_eq!(
            e.server_message().unwrap().message,
            "File size exceeds 15728640 bytes."
        );

        let e = c.status(&MediaId::from(ID)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MediaGone);
        assert_eq!(e.server_message().unwrap().message, "BadRequest: Not found");
        assert_eq!(
            e.server_message().unwrap().name.as_deref(),
            Some("Invalid Request")
        );
        assert!(e.to_string().contains("start a new upload"), "{e}");
    }

    #[tokio::test]
    async fn unauthorized_401_says_which_variables_to_check() {
        let server = Server::start(vec![canned(
            401,
            r#"{"errors":[{"code":32,"message":"Could not authenticate you."}]}"#,
        )])
        .await;
        let c = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
        let e = c.finalize(&MediaId::from(ID)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        let text = e.to_string();
        assert!(text.contains("X_API_KEY"), "{text}");
        // No credential reaches the error.
        for secret in ["cs", "ts"] {
            assert!(!text.contains(&format!("\"{secret}\"")), "{text}");
        }
        assert!(!format!("{e:?}").contains("oauth_signature"));
    }

    #[tokio::test]
    async fn garbage_2xx_bodies_are_protocol_errors() {
        let server = Server::start(vec![
            canned(200, "garbage"),
            canned(202, r#"{"media_id_string": "12"#),
            canned(200, "<html>hello</html>"),
            canned(200, ""),
        ])
        .await;
        let c = client(&server, ApiVersion::V1_1, AppendEncoding::Raw);
        for _ in 0..2 {
            let e = c.init(&init_request()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol);
            assert!(!e.is_retryable());
        }
        let e = c.finalize(&MediaId::from(ID)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        // STATUS must say something; an empty answer is unusable.
        let e = c.status(&MediaId::from(ID)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
    }

    #[tokio::test]
    async fn huge_2xx_body_is_cut_off_as_a_protocol_error() {
        let huge = "x".repeat(MAX_RESPONSE_BODY_BYTES + 1);
        let server = Server::start(vec![canned(200, &huge), canned(500, &huge)]).await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
        let e = c.init(&init_request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(e.status(), Some(200));
        // A huge error body still gives the status-mapped error, without a message.
        let e = c.init(&init_request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ServerError);
        assert!(e.server_message().is_none());
    }

    #[tokio::test]
    async fn empty_finalize_body_means_ready() {
        let server = Server::start(vec![canned(201, "")]).await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
        let s = c.finalize(&MediaId::from("42")).await.unwrap();
        assert_eq!(s.media_id, MediaId::from("42"));
        assert!(s.is_ready());
    }

    #[tokio::test]
    async fn redirects_are_reported_not_followed() {
        let server = Server::start(vec![Canned {
            status: 302,
            headers: vec![("location", "http://127.0.0.1:1/elsewhere".into())],
            body: Vec::new(),
        }])
        .await;
        let c = client(&server, ApiVersion::V2, AppendEncoding::Raw);
        let e = c.init(&init_request()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(e.status(), Some(302));
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_base_url_with_a_path_prefix_works() {
        let server = Server::start(vec![
            canned(200, r#"{"data":{"id":"7"}}"#),
            canned(200, r#"{"media_id_string":"8"}"#),
        ])
        .await;
        for (api, want) in [
            (ApiVersion::V2, "/prefix/2/media/upload/initialize"),
            (ApiVersion::V1_1, "/prefix/1.1/media/upload.json"),
        ] {
            let c = XClient::builder()
                .api(api)
                .base_url(server.url().join("/prefix").unwrap())
                .credentials(Credentials::OAuth1(creds()))
                .build()
                .unwrap();
            c.init(&init_request()).await.unwrap();
            let r = server.requests().pop().unwrap();
            assert_eq!(r.path(), want);
            let form = if api == ApiVersion::V1_1 {
                r.form()
            } else {
                Vec::new()
            };
            assert!(verify_oauth1(
                &creds(),
                "POST",
                &server.full_url(&r),
                &form,
                r.header("authorization").unwrap()
            ));
        }
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = XClient::builder()
            .base_url(Url::parse(&format!("http://{addr}")).unwrap())
            .credentials(Credentials::bearer("t"))
            .build()
            .unwrap();
        let e = c
            .append(append("42", 4, pattern(10), None))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert!(e.is_retryable());
        assert_eq!(e.segment(), Some(4));
        assert_eq!(e.status(), None);
    }

    #[tokio::test]
    async fn bad_ids_and_oversized_segments_fail_before_sending() {
        let server = Server::start(Vec::new()).await;
        let c = XClient::builder()
            .base_url(server.url())
            .credentials(Credentials::OAuth1(creds()))
            .append_encoding(AppendEncoding::Base64)
            .max_append_bytes(8)
            .build()
            .unwrap();
        assert_eq!(c.max_append_payload(), 6);
        for bad in ["", "../42", "12a", "123456789012345678901"] {
            let e = c
                .append(append(bad, 0, pattern(1), None))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
            let e = c.finalize(&MediaId::from(bad)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let e = c.status(&MediaId::from(bad)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
        let e = c
            .append(append("42", 1, pattern(7), None))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.segment(), Some(1));
        assert!(server.requests().is_empty());
    }
}
