//! A local emulator of X's media upload endpoints (v1.1 and v2), for tests, benches and the
//! demo.
//!
//! It serves, on a loopback port:
//! - v1.1 `POST|GET /1.1/media/upload.json` with `command=INIT|APPEND|FINALIZE|STATUS` in the
//!   query, an urlencoded body or multipart fields (no command on POST: the simple upload);
//! - v2 `POST /2/media/upload/initialize`, `POST /2/media/upload/{id}/append`,
//!   `POST /2/media/upload/{id}/finalize`, `GET /2/media/upload?command=STATUS&media_id=`
//!   and the one-shot `POST /2/media/upload`;
//! - alt text and subtitles (protocol.md §12): v2 `POST /2/media/metadata`,
//!   `POST|DELETE /2/media/subtitles`; v1.1 `POST /1.1/media/metadata/create.json`,
//!   `/1.1/media/subtitles/create.json` and `delete.json`.
//!
//! Requests are checked in X's order (protocol.md §9): authentication (OAuth 1.0a verified
//! against the configured secrets; bearer tokens on v2 only), the per-user rate limit (the
//! `x-rate-limit-*` headers go on every response), content type and body, required fields,
//! enum values, size against the category (INIT), `segment_index` in 0..=999, the chunk size,
//! `media` xor `media_data`, and finally the media id. Success codes, body shapes and error
//! texts follow protocol.md §3–§4; everything §11 calls uncertain is configurable in
//! [`EmulatorConfig`].
//!
//! Faults ([`FaultConfig`]) are seeded: 5xx answers, bursts of 429s with `Retry-After`, added
//! latency, and connections dropped mid-APPEND without a response.
//!
//! ```no_run
//! # async fn demo() -> chunkwise::Result<()> {
//! use chunkwise::Credentials;
//! use chunkwise::emulator::{Emulator, FaultConfig};
//!
//! let emu = Emulator::builder()
//!     .credentials(Credentials::oauth1("ck", "cs", "1-token", "ts"))
//!     .credentials(Credentials::bearer("bearer-token"))
//!     .faults(FaultConfig { seed: 7, append_5xx_probability: 0.1, ..FaultConfig::none() })
//!     .start()
//!     .await?;
//! println!("emulator at {}", emu.base_url());
//! // ... upload against emu.base_url() ...
//! for r in emu.request_log() {
//!     println!("{:?} {:?} -> {}", r.api, r.command, r.status);
//! }
//! emu.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod auth;
mod config;
mod faults;
mod media_api;
mod persist;
mod ratelimit;
mod record;
mod render;
mod server;
mod state;
mod store;
mod v1;
mod v2;
mod wire;

pub use config::{
    AMPLIFY_INIT_EXPIRES_AFTER_SECS, DEFAULT_CHECK_AFTER_SECS, DEFAULT_FAULT_STATUS,
    DEFAULT_SPILL_THRESHOLD, EmulatorConfig, ExpiryConfig, FINALIZED_EXPIRES_AFTER_SECS,
    FaultConfig, ProcessingConfig, ProcessingFailure, ProcessingTimeline, RATE_LIMIT_WINDOW,
    RateLimitBurst, RateLimitConfig, SYNC_MAX_BYTES, StatusCodes, V1_APPEND_STATUS,
    V1_FINALIZE_STATUS, V1_GET_PER_USER, V1_INIT_EXPIRES_AFTER_SECS, V1_INIT_STATUS,
    V1_METADATA_PER_USER, V1_OK_STATUS, V1_POST_PER_USER, V1_SUBTITLES_PER_USER,
    V2_CHUNKED_PER_USER, V2_INIT_EXPIRES_AFTER_SECS, V2_METADATA_PER_USER, V2_ONE_SHOT_CATEGORIES,
    V2_STATUS, V2_STATUS_PER_USER, V2_SUBTITLES_PER_USER, V2_TOTAL_BYTES_MAX, V2_UPLOAD_PER_USER,
};
pub use record::{ApiVersion, Command, FaultKind, RequestRecord};

use crate::auth::Credentials;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::MediaId;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the emulator listens unless told otherwise: an ephemeral loopback port.
///
/// Source: tests must only talk to 127.0.0.1 (project rules); port 0 lets the OS pick.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Consumer key of the [`demo_credentials`].
pub const DEMO_CONSUMER_KEY: &str = "chunkwise-demo-consumer-key";
/// Consumer secret of the [`demo_credentials`].
pub const DEMO_CONSUMER_SECRET: &str = "chunkwise-demo-consumer-secret";
/// Access token of the [`demo_credentials`] (the emulator reads the digits before `-` as the
/// user id).
pub const DEMO_ACCESS_TOKEN: &str = "1000-chunkwise-demo-access-token";
/// Access token secret of the [`demo_credentials`].
pub const DEMO_ACCESS_TOKEN_SECRET: &str = "chunkwise-demo-access-token-secret";

/// The OAuth 1.0a credentials `chunkwise serve` and `chunkwise demo` accept when no `X_*`
/// variable is set. They are public on purpose: they only open the local emulator, and they
/// let `chunkwise upload --base-url http://127.0.0.1:...` work without any setup.
pub fn demo_credentials() -> Credentials {
    Credentials::oauth1(
        DEMO_CONSUMER_KEY,
        DEMO_CONSUMER_SECRET,
        DEMO_ACCESS_TOKEN,
        DEMO_ACCESS_TOKEN_SECRET,
    )
}

/// Entry point: [`Emulator::builder`].
#[derive(Debug, Clone, Copy)]
pub struct Emulator;

impl Emulator {
    /// A builder with the defaults of [`EmulatorConfig`], no faults, no credentials and
    /// [`DEFAULT_BIND`].
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            credentials: Vec::new(),
            config: EmulatorConfig::default(),
            faults: FaultConfig::none(),
            bind: DEFAULT_BIND,
            state_dir: None,
        }
    }
}

/// Configures and starts an emulator.
///
/// [`EmulatorBuilder::config`] replaces the whole configuration, so call the finer setters
/// after it.
#[derive(Debug, Clone)]
#[must_use = "call .start() to run the emulator"]
pub struct EmulatorBuilder {
    credentials: Vec<Credentials>,
    config: EmulatorConfig,
    faults: FaultConfig,
    bind: SocketAddr,
    state_dir: Option<PathBuf>,
}

impl EmulatorBuilder {
    /// Adds accepted credentials (may be called more than once, e.g. one OAuth 1.0a set and
    /// one bearer token). At least one is required. An OAuth 1.0a token of the form
    /// `<digits>-...` acts as that user id; other credentials get ids from 1000 on in order.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials.push(credentials);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: EmulatorConfig) -> Self {
        self.config = config;
        self
    }

    /// The per-APPEND limit on the media as sent. Default 5 MiB (5,242,880).
    pub fn max_append_bytes(mut self, bytes: u64) -> Self {
        self.config.max_append_bytes = bytes;
        self
    }

    /// Asynchronous processing behaviour.
    pub fn processing(mut self, processing: ProcessingConfig) -> Self {
        self.config.processing = processing;
        self
    }

    /// Per-user rate limits.
    pub fn rate_limits(mut self, limits: RateLimitConfig) -> Self {
        self.config.rate_limits = limits;
        self
    }

    /// Spill threshold per media (`None`: never spill) and the parent of the spill directory
    /// (`None`: the system temp dir).
    pub fn spill(mut self, threshold_bytes: Option<u64>, dir: Option<PathBuf>) -> Self {
        self.config.spill_threshold_bytes = threshold_bytes;
        self.config.spill_dir = dir;
        self
    }

    /// Seeded fault injection.
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// The address to listen on. Default [`DEFAULT_BIND`].
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Keeps the upload sessions in `dir` (created if needed), and starts with the sessions
    /// saved there: an emulator started again on the same directory (and, for a client to
    /// carry on, the same address: [`bind`](Self::bind) the old [`EmulatorHandle::addr`])
    /// knows the media ids, segments and processing of the one before. Segments are then
    /// always kept as files in `dir` (never in memory), and nothing in `dir` is deleted at
    /// shutdown. Sessions whose time ran out are dropped when loaded. Saved: every INIT,
    /// APPEND and FINALIZE, each file written atomically (a temporary file renamed into
    /// place); not saved: STATUS poll counts after FINALIZE, rate-limit windows, the request
    /// log.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Binds the socket and starts serving.
    ///
    /// # Errors
    /// `InvalidConfig` for an inconsistent configuration or no credentials; `Io` when the
    /// address cannot be bound, or the spill or state directory cannot be created or read.
    pub async fn start(self) -> Result<EmulatorHandle> {
        self.config.validate()?;
        self.faults.validate()?;
        if self.credentials.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "the emulator needs at least one accepted credential",
            ));
        }
        let spill = match self.config.spill_threshold_bytes {
            Some(_) => Some(
                store::SpillDir::create(self.config.spill_dir.clone())
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Io, "cannot create the emulator spill directory")
                            .with_source(e)
                    })?,
            ),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(self.bind)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot bind the emulator to {}", self.bind),
                )
                .with_source(e)
            })?;
        let addr = listener.local_addr().map_err(|e| {
            Error::new(ErrorKind::Io, "cannot read the emulator's address").with_source(e)
        })?;
        // `SocketAddr`'s display form (`[v6]:port` for IPv6) is a valid URL authority.
        let base_url = url::Url::parse(&format!("http://{addr}/")).map_err(|e| {
            Error::new(ErrorKind::Io, "cannot form the emulator's base URL").with_source(e)
        })?;
        let clock = state::Clock::new();
        let (media, clock) = match self.state_dir {
            None => (state::MediaStore::new(self.config.id_seed, spill), clock),
            Some(dir) => {
                let shown = dir.display().to_string();
                let io = |e: std::io::Error| {
                    Error::new(
                        ErrorKind::Io,
                        format!("cannot use the emulator state directory {shown}"),
                    )
                    .with_source(e)
                };
                let (dir, issued, saved) = persist::StateDir::open(dir).await.map_err(io)?;
                let seed = self.config.id_seed;
                // Loading checks that the segment files exist: blocking I/O.
                tokio::task::spawn_blocking(move || {
                    let media =
                        state::MediaStore::persistent(seed, spill, &clock, dir, issued, saved);
                    (media, clock)
                })
                .await
                .map_err(|e| io(std::io::Error::other(e)))?
            }
        };
        let shared = Arc::new(server::Shared::new(
            self.config,
            auth::Account::from_credentials(self.credentials),
            media,
            faults::Faults::new(self.faults),
            clock,
        ));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, server::router(shared.clone()), rx));
        tracing::debug!(%addr, "emulator listening");
        Ok(EmulatorHandle {
            addr,
            base_url,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running emulator. Shuts down on [`EmulatorHandle::shutdown`] or when dropped.
pub struct EmulatorHandle {
    addr: SocketAddr,
    base_url: url::Url,
    shared: Arc<server::Shared>,
    shutdown: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<Option<server::Panic>>>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the shared state: it holds every stored segment.
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EmulatorHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/` (the host and port of [`EmulatorHandle::addr`]).
    pub fn base_url(&self) -> url::Url {
        self.base_url.clone()
    }

    /// Every request received so far, in arrival order (requests still in flight are not
    /// included yet).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.request_log()
    }

    /// How many requests have arrived so far, including those still in flight (their
    /// [`RequestRecord::seq`] is below this number; a later request's is not).
    pub fn requests_received(&self) -> u64 {
        self.shared.requests_received()
    }

    /// Empties the request log.
    pub fn clear_request_log(&self) {
        self.shared.clear_log();
    }

    /// SHA-256 of the assembled media, once finalized.
    pub fn media_sha256(&self, id: &MediaId) -> Option<[u8; 32]> {
        v1::parse_id(id.as_str()).and_then(|id| self.shared.media.sha256(id))
    }

    /// The assembled bytes of a finalized, unexpired media (for tests; reads spilled
    /// segments from disk).
    pub async fn media_bytes(&self, id: &MediaId) -> Option<Vec<u8>> {
        let id = v1::parse_id(id.as_str())?;
        self.shared.media.bytes(id).await
    }

    /// INIT's `additional_owners` and `shared` as the emulator stored them for media `id`.
    pub fn sharing(&self, id: &MediaId) -> Option<(Vec<String>, bool)> {
        v1::parse_id(id.as_str()).and_then(|id| self.shared.media.sharing(id))
    }

    /// The alt text of media `id`, once set (v2 `POST /2/media/metadata`, v1.1
    /// `media/metadata/create.json`).
    pub fn alt_text(&self, id: &MediaId) -> Option<String> {
        v1::parse_id(id.as_str()).and_then(|id| self.shared.media.alt_text(id))
    }

    /// The subtitle tracks of video `id`, by language code: `(language_code,
    /// subtitle media id, display name)`.
    pub fn subtitles(&self, id: &MediaId) -> Vec<(String, MediaId, String)> {
        v1::parse_id(id.as_str()).map_or_else(Vec::new, |id| {
            self.shared
                .media
                .subtitles(id)
                .into_iter()
                .map(|(lang, sub, name)| (lang, MediaId(sub.to_string()), name))
                .collect()
        })
    }

    /// Moves the emulator's clock forward: expiry, timed processing and rate-limit windows
    /// see the time pass (the epoch seconds it reports move too).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Stops accepting connections, lets requests in flight finish (up to 5 s), and deletes
    /// the spill directory.
    ///
    /// # Panics
    /// Re-raises a panic of a request handler (an emulator bug), so tests notice it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        let outcome = match self.task.take() {
            Some(task) => task.await,
            None => Ok(None),
        };
        if let Some(dir) = self.shared.media.take_spill_dir() {
            let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
        }
        match outcome {
            Ok(None) => {}
            Ok(Some(panic)) => std::panic::resume_unwind(panic),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        // Dropping the sender makes the server stop accepting and drain in the background.
        self.shutdown.take();
        if let Some(dir) = self.shared.media.take_spill_dir() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || drop(dir));
                }
                Err(_) => drop(dir),
            }
        }
    }
}
