//! chunkwise: adaptive, resumable chunked media upload for X/Twitter-style APIs.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod auth;
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
pub use engine::{
    Engine, EngineConfig, MediaSpec, Progress, RetryPolicy, Source, UploadEvent, UploadHandle,
    UploadReport,
};
pub use error::{Error, ErrorKind, Result, ServerMessage};
pub use limits::MediaCategory;
pub use settings::{LoadOptions, Settings};

/// The README's examples, compiled and run as doc-tests.
#[cfg(all(doctest, feature = "emulator"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
