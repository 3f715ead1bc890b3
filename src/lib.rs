//! chunkwise: adaptive, resumable chunked media upload for X/Twitter-style APIs.
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

#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "emulator")]
pub mod link;

pub use auth::Credentials;
pub use checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
pub use engine::{
    CancelOutcome, Engine, EngineConfig, MediaSpec, PauseMode, Progress, RetryPolicy, Source,
    UploadEvent, UploadHandle, UploadReport,
};
pub use error::{Error, ErrorKind, Result, ServerMessage};
pub use limits::MediaCategory;
