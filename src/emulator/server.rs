//! The HTTP side: shared state, the per-request pipeline (log, latency, auth, rate limit,
//! faults), the router, and an accept loop that can drop a connection on demand.
//!
//! axum's `serve` hides the connection, so each accepted socket is served here with
//! `hyper::server::conn::http1` and given a [`ConnCtl`] (inserted into every request's
//! extensions). The drop fault reads part of an APPEND body, fires the `ConnCtl`, and the
//! connection task, which `select!`s on it, drops the socket without a response.

use super::auth::{Account, authenticate};
use super::config::EmulatorConfig;
use super::faults::{Decision, Faults};
use super::ratelimit::{Endpoint, RateLimiter, RateView};
use super::record::{ApiVersion, Command, FaultKind, RequestRecord};
use super::state::{Clock, MediaStore, later};
use super::wire::{
    self, BodyKind, MultipartError, ReadError, as_text_pairs, parse_urlencoded, query_pairs,
    read_body, read_some, text,
};
use super::{media_api, v1, v2};
use crate::limits::{IMAGE_MAX_BYTES, MIB};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// Extra room in the request-body limit for multipart framing and the other fields.
///
/// Source: reasonable default; multipart overhead is a few hundred bytes, so 1 MiB lets an
/// over-limit chunk reach the (400) chunk-size check instead of a 413.
const BODY_SLACK: u64 = MIB;

/// How long shutdown waits for open connections to finish.
///
/// Source: reasonable default for a test server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
///
/// Source: reasonable default; avoids a hot loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: EmulatorConfig,
    pub(crate) accounts: Vec<Account>,
    pub(crate) clock: Clock,
    pub(crate) media: MediaStore,
    pub(crate) rate: RateLimiter,
    pub(crate) faults: Faults,
    /// Largest request body read (413 beyond).
    pub(crate) body_limit: u64,
    log: Mutex<Vec<RequestRecord>>,
    seq: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        cfg: EmulatorConfig,
        accounts: Vec<Account>,
        media: MediaStore,
        faults: Faults,
        clock: Clock,
    ) -> Self {
        // Base64 `media_data` carries 4 characters per 3 bytes; the one-shot upload carries a
        // whole image.
        let biggest = cfg.max_append_bytes.max(IMAGE_MAX_BYTES);
        let body_limit = biggest
            .saturating_add(biggest / 3 + 4)
            .saturating_add(BODY_SLACK);
        Shared {
            rate: RateLimiter::new(cfg.rate_limits),
            cfg,
            accounts,
            clock,
            media,
            faults,
            body_limit,
            log: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<RequestRecord>> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The request log in arrival order.
    pub(crate) fn request_log(&self) -> Vec<RequestRecord> {
        let mut v = self.log().clone();
        v.sort_by_key(|r| r.seq);
        v
    }

    pub(crate) fn requests_received(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    pub(crate) fn clear_log(&self) {
        self.log().clear();
    }
}

/// The per-connection drop switch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnCtl {
    drop: Arc<Notify>,
}

/// One request in flight: its log record (written when it finishes, or when it is dropped
/// unfinished) and its rate-limit headers.
#[derive(Debug)]
pub(crate) struct Exchange {
    shared: Arc<Shared>,
    pub(crate) rec: RequestRecord,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) rate: Option<RateView>,
    done: bool,
}

impl Exchange {
    fn new(shared: Arc<Shared>, method: &Method, path: &str, api: ApiVersion) -> Self {
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let at = shared.clock.since_start(shared.clock.now());
        Exchange {
            rec: RequestRecord {
                seq,
                at,
                method: method.to_string(),
                path: path.to_string(),
                api,
                command: Command::Unknown,
                media_id: None,
                segment_index: None,
                body_bytes: 0,
                status: 0,
                fault: None,
            },
            shared,
            endpoint: None,
            rate: None,
            done: false,
        }
    }

    fn push(&mut self) {
        if !self.done {
            self.done = true;
            let rec = self.rec.clone();
            tracing::debug!(
                seq = rec.seq,
                command = %rec.command,
                status = rec.status,
                fault = ?rec.fault,
                "emulator request"
            );
            self.shared.log().push(rec);
        }
    }

    /// Adds the rate-limit headers, records the status and logs the request.
    fn finish(mut self, mut resp: Response) -> Response {
        let view = self.rate.or_else(|| {
            self.endpoint
                .map(|ep| self.shared.rate.fresh(ep, &self.shared.clock))
        });
        if let Some(v) = view {
            let h = resp.headers_mut();
            h.insert("x-rate-limit-limit", HeaderValue::from(v.limit));
            h.insert("x-rate-limit-remaining", HeaderValue::from(v.remaining));
            h.insert("x-rate-limit-reset", HeaderValue::from(v.reset_epoch_secs));
        }
        self.rec.status = resp.status().as_u16();
        self.push();
        resp
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // A request whose handler was dropped (client gone, connection dropped) is logged
        // with status 0.
        self.push();
    }
}

/// A request taken apart, with its body read lazily.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    extensions: Option<http::Extensions>,
    body: Option<Body>,
    raw: Option<Bytes>,
    pub(crate) kind: BodyKind,
    /// Query pairs as text.
    pub(crate) query: Vec<(String, String)>,
    /// Urlencoded body pairs (read by [`gate`]).
    pub(crate) form: Vec<(String, Bytes)>,
}

impl Incoming {
    fn new(req: Request) -> Self {
        let (parts, body) = req.into_parts();
        Incoming {
            kind: BodyKind::of(&parts.headers),
            query: query_pairs(&parts.uri),
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            extensions: Some(parts.extensions),
            body: Some(body),
            raw: None,
            form: Vec::new(),
        }
    }

    /// The whole body (read once, bounded by `limit`).
    pub(crate) async fn read(&mut self, limit: u64) -> Result<Bytes, ReadError> {
        if let Some(b) = &self.raw {
            return Ok(b.clone());
        }
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let b = read_body(body, limit).await?;
        self.raw = Some(b.clone());
        Ok(b)
    }

    /// Reads and discards the body so that an early answer reaches the client cleanly.
    pub(crate) async fn drain(&mut self, limit: u64) {
        let _ = self.read(limit).await;
    }

    /// Parses a multipart body (streaming; bounded by the router's body limit).
    pub(crate) async fn multipart(&mut self) -> Result<Vec<(String, Bytes)>, MultipartError> {
        let body = match (self.body.take(), &self.raw) {
            (Some(b), _) => b,
            (None, Some(raw)) => Body::from(raw.clone()),
            (None, None) => Body::empty(),
        };
        let mut req = Request::new(body);
        *req.headers_mut() = self.headers.clone();
        if let Some(ext) = self.extensions.take() {
            *req.extensions_mut() = ext;
        }
        wire::parse_multipart(req).await
    }

    /// The `Content-Length`, if sent.
    fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}

/// 401 in the API's shape.
fn unauthorized(api: ApiVersion) -> Response {
    match api {
        ApiVersion::V2 => wire::v2_problem(StatusCode::UNAUTHORIZED),
        _ => wire::v1_errors(StatusCode::UNAUTHORIZED, 32, text::COULD_NOT_AUTHENTICATE),
    }
}

/// 429 in the API's shape.
fn rate_limited(api: ApiVersion) -> Response {
    match api {
        ApiVersion::V2 => wire::v2_problem(StatusCode::TOO_MANY_REQUESTS),
        _ => wire::v1_errors(StatusCode::TOO_MANY_REQUESTS, 88, text::RATE_LIMIT_EXCEEDED),
    }
}

/// 413 in the API's shape.
pub(crate) fn too_large(api: ApiVersion) -> Response {
    match api {
        ApiVersion::V2 => wire::v2_problem(StatusCode::PAYLOAD_TOO_LARGE),
        _ => wire::v1_legacy(StatusCode::PAYLOAD_TOO_LARGE, text::TOO_LARGE),
    }
}

/// A body that could not be read (too large, or the client broke off).
pub(crate) fn unreadable(api: ApiVersion, e: ReadError) -> Response {
    match e {
        ReadError::TooLarge => too_large(api),
        ReadError::Broken => wire::empty(StatusCode::BAD_REQUEST),
    }
}

/// 5xx in the API's shape (v1.1: code 131 "Internal error").
fn server_error(api: ApiVersion, status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    match api {
        ApiVersion::V2 => wire::v2_problem(status),
        _ => wire::v1_errors(status, 131, text::INTERNAL_ERROR),
    }
}

/// 404 for unknown paths and methods (v1.1 code 34, v2 problem).
pub(crate) fn not_found(api: ApiVersion) -> Response {
    match api {
        ApiVersion::V2 => wire::v2_problem(StatusCode::NOT_FOUND),
        _ => wire::v1_errors(
            StatusCode::NOT_FOUND,
            34,
            "Sorry, that page does not exist.",
        ),
    }
}

/// Validation steps 1–2 (protocol.md §9): authentication, then the per-user rate limit.
/// Urlencoded bodies are read first because their parameters are signed.
pub(crate) async fn gate(
    sh: &Shared,
    ex: &mut Exchange,
    inc: &mut Incoming,
    api: ApiVersion,
    ep: Endpoint,
) -> Result<u64, Response> {
    ex.endpoint = Some(ep);
    if inc.kind == BodyKind::UrlEncoded {
        let raw = inc
            .read(sh.body_limit)
            .await
            .map_err(|e| unreadable(api, e))?;
        inc.form = parse_urlencoded(&raw);
    }
    let form = as_text_pairs(&inc.form);
    let Some(user) = authenticate(
        &sh.accounts,
        api,
        &inc.method,
        &inc.uri,
        &inc.headers,
        &form,
    ) else {
        inc.drain(sh.body_limit).await;
        return Err(unauthorized(api));
    };
    let (allowed, view) = sh.rate.check(user, ep, &sh.clock);
    ex.rate = Some(view);
    if !allowed {
        inc.drain(sh.body_limit).await;
        return Err(rate_limited(api));
    }
    Ok(user)
}

/// Applies the fault decision for an APPEND. Returns normally for [`Decision::Pass`], an
/// early answer for 429/5xx faults, and never returns for a dropped connection.
pub(crate) async fn fault_gate(
    sh: &Shared,
    ex: &mut Exchange,
    ctl: Option<&ConnCtl>,
    inc: &mut Incoming,
    api: ApiVersion,
) -> Result<(), Response> {
    match sh.faults.decide_append() {
        Decision::Pass => Ok(()),
        Decision::Burst(retry_after) => {
            inc.drain(sh.body_limit).await;
            ex.rec.fault = Some(FaultKind::RateLimitBurst);
            let now = sh.clock.now();
            let limit = ex.rate.map_or(0, |v| v.limit);
            ex.rate = Some(RateView {
                limit,
                remaining: 0,
                reset_epoch_secs: sh.clock.epoch_secs(later(now, retry_after)),
            });
            let mut resp = rate_limited(api);
            let secs = retry_after
                .as_secs()
                .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Err(resp)
        }
        Decision::ServerError(status) => {
            inc.drain(sh.body_limit).await;
            ex.rec.fault = Some(FaultKind::ServerError(status));
            Err(server_error(api, status))
        }
        Decision::Drop => {
            let Some(ctl) = ctl else {
                // Not served by our accept loop: no connection to drop; fail loudly instead.
                inc.drain(sh.body_limit).await;
                ex.rec.fault = Some(FaultKind::ServerError(503));
                return Err(server_error(api, 503));
            };
            let read = match inc.body.take() {
                Some(body) => {
                    let half = inc.content_length().map_or(1, |n| n / 2);
                    read_some(body, half).await
                }
                None => inc.raw.as_ref().map_or(0, |b| b.len() as u64),
            };
            ex.rec.fault = Some(FaultKind::DropConnection);
            ex.rec.body_bytes = read;
            ex.push();
            ctl.drop.notify_one();
            // The connection task drops this future together with the socket.
            loop {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Which handler a path maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    V1,
    V2Initialize,
    V2Append,
    V2Finalize,
    V2Upload,
    V2Metadata,
    V2Subtitles,
    V1Metadata,
    V1SubtitlesCreate,
    V1SubtitlesDelete,
    NotFound,
}

async fn dispatch(sh: Arc<Shared>, req: Request, route: Route) -> Response {
    let api = match route {
        Route::V1 | Route::V1Metadata | Route::V1SubtitlesCreate | Route::V1SubtitlesDelete => {
            ApiVersion::V1
        }
        Route::NotFound => ApiVersion::Other,
        _ => ApiVersion::V2,
    };
    let ctl = req.extensions().get::<ConnCtl>().cloned();
    let mut ex = Exchange::new(sh.clone(), req.method(), req.uri().path(), api);
    let latency = sh.faults.added_latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let inc = Incoming::new(req);
    let ctl = ctl.as_ref();
    let resp = match route {
        Route::V1 => v1::handle(&sh, &mut ex, ctl, inc).await,
        Route::V2Initialize => v2::initialize(&sh, &mut ex, inc).await,
        Route::V2Append => v2::append(&sh, &mut ex, ctl, inc).await,
        Route::V2Finalize => v2::finalize(&sh, &mut ex, inc).await,
        Route::V2Upload => v2::upload(&sh, &mut ex, inc).await,
        Route::V2Metadata | Route::V1Metadata => {
            media_api::handle(&sh, &mut ex, inc, api, media_api::Call::Metadata).await
        }
        Route::V2Subtitles | Route::V1SubtitlesCreate => {
            media_api::handle(&sh, &mut ex, inc, api, media_api::Call::SubtitlesCreate).await
        }
        Route::V1SubtitlesDelete => {
            media_api::handle(&sh, &mut ex, inc, api, media_api::Call::SubtitlesDelete).await
        }
        Route::NotFound => {
            let mut inc = inc;
            inc.drain(sh.body_limit).await;
            not_found(api)
        }
    };
    ex.finish(resp)
}

/// The emulator's routes (protocol.md §9).
pub(crate) fn router(sh: Arc<Shared>) -> Router {
    let to = |route: Route| {
        any(move |State(sh): State<Arc<Shared>>, req: Request| dispatch(sh, req, route))
    };
    let limit = usize::try_from(sh.body_limit).unwrap_or(usize::MAX);
    Router::new()
        .route("/1.1/media/upload.json", to(Route::V1))
        .route("/2/media/upload/initialize", to(Route::V2Initialize))
        .route("/2/media/upload/{id}/append", to(Route::V2Append))
        .route("/2/media/upload/{id}/finalize", to(Route::V2Finalize))
        .route("/2/media/upload", to(Route::V2Upload))
        .route("/2/media/metadata", to(Route::V2Metadata))
        .route("/2/media/subtitles", to(Route::V2Subtitles))
        .route("/1.1/media/metadata/create.json", to(Route::V1Metadata))
        .route(
            "/1.1/media/subtitles/create.json",
            to(Route::V1SubtitlesCreate),
        )
        .route(
            "/1.1/media/subtitles/delete.json",
            to(Route::V1SubtitlesDelete),
        )
        .fallback(move |State(sh): State<Arc<Shared>>, req: Request| {
            dispatch(sh, req, Route::NotFound)
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(sh)
}

/// A panic payload of a server task.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

fn note_panic(done: Result<(), tokio::task::JoinError>, first: &mut Option<Panic>) {
    if let Err(e) = done {
        if e.is_panic() && first.is_none() {
            *first = Some(e.into_panic());
        }
    }
}

/// Accepts connections until `shutdown` changes (or its sender is dropped), then lets open
/// connections finish for [`SHUTDOWN_GRACE`]. Returns the first panic of a connection task.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Panic> {
    let mut conns = JoinSet::new();
    let mut panic = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, router.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "emulator accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => note_panic(done, &mut panic),
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let mut first = None;
        while let Some(done) = conns.join_next().await {
            note_panic(done, &mut first);
        }
        first
    })
    .await;
    match drained {
        Ok(p) => panic.or(p),
        Err(_) => {
            conns.abort_all();
            while let Some(done) = conns.join_next().await {
                note_panic(done, &mut panic);
            }
            panic
        }
    }
}

/// Serves one connection until it ends, its [`ConnCtl`] fires (the socket is dropped with no
/// response) or shutdown begins (graceful: the request in flight finishes).
async fn connection(stream: TcpStream, router: Router, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let ctl = ConnCtl::default();
    let svc_ctl = ctl.clone();
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(svc_ctl.clone());
        router.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "emulator connection ended with an error");
                }
                return;
            }
            _ = ctl.drop.notified() => return,
            _ = shutdown.changed(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}
