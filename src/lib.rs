//! chunkwise: chunked media upload for X/Twitter-style APIs over bad networks.
//!
//! # How an upload flows
//!
//! An [`Engine`] takes a [`Source`] (a file read by positional reads, never loaded whole, or
//! bytes in memory) and a [`MediaSpec`], checks before any request that the source can be
//! uploaded at all (not empty, within its [`MediaCategory`]'s size limit and within 1000
//! segments of the largest APPEND payload), then drives an [`protocol::UploadProtocol`]
//! (usually the [`protocol::XClient`] for X's v1.1 or v2 API): INIT opens a session and
//! returns a media id; the file is cut into segments one at a time, each sized by the
//! [`scheduler::Strategy`] and clamped between the floor that keeps the upload within 1000
//! segments and the per-APPEND payload limit (5 MiB on the wire, 3/4 of it in base64); up to
//! the strategy's limit of APPENDs run in parallel, each under a deadline, and a failed one is
//! retried alone with the same `segment_index` after a jittered backoff (or the server's
//! `Retry-After`), within an upload-wide retry budget (a request that cannot connect at all
//! spends neither: the upload waits for the server, probing one request at a time, for up to
//! [`RetryPolicy::max_unreachable`]); every attempt's outcome is reported back to the
//! strategy; once every segment is acknowledged, FINALIZE assembles the media and,
//! for video and GIF, STATUS is polled as the server's `check_after_secs` asks until
//! processing succeeds, fails, or a deadline passes. A small image (or, on v2, subtitle
//! file) that fits in the first chunk goes up in one request instead ([`OneShotMode`]); once
//! the media is ready, the alt text and subtitle tracks of its [`MediaSpec`] are set. The
//! caller follows the upload through
//! [`UploadEvent`]s on its [`UploadHandle`] and gets an [`UploadReport`] (goodput, APPEND
//! latency percentiles, retries, bytes sent again) or a typed [`Error`] at the end.
//!
//! # Modules
//!
//! - [`protocol`]: the INIT/APPEND/FINALIZE/STATUS seam and the X client; [`auth`]: OAuth
//!   1.0a and bearer credentials; [`limits`]: the protocol's limits.
//! - [`engine`]: sources, segment planning, the parallel APPEND loop, retries, events and the
//!   report.
//! - [`scheduler`]: the decisions (chunk size, parallelism, deadlines) behind one trait.
//! - `emulator` and `link` (feature `emulator`): a local X upload server with fault injection,
//!   and a trace-driven link emulator that replays cellular links between client and server.
//! - [`error`]: the one error type, with predicates.
//!
//! # Crate features
//!
//! - `cli` (default): the `chunkwise` binary; implies `emulator`.
//! - `emulator`: the local emulator and the link emulator (axum, hyper). Library users who
//!   embed chunkwise set `default-features = false` and get neither.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod auth;
pub mod checkpoint;
pub mod engine;
pub mod error;
pub mod limits;
pub mod protocol;
pub mod scheduler;
pub mod settings;

#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "emulator")]
pub mod link;

pub use auth::Credentials;
pub use checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
pub use engine::{
    CancelOutcome, Engine, EngineConfig, MediaSpec, OneShotMode, PauseMode, Progress, RetryPolicy,
    Source, SubtitleTrack, UploadEvent, UploadHandle, UploadReport,
};
pub use error::{Error, ErrorKind, Result, ServerMessage};
pub use limits::MediaCategory;
pub use settings::{LoadOptions, Settings};

/// The README's examples, compiled and run as doc-tests.
#[cfg(all(doctest, feature = "emulator"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
