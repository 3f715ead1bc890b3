//! The crate's single error type.
//!
//! Every fallible operation in chunkwise returns [`Error`]. It is opaque (a boxed inner, so a
//! `Result<T>` stays one word wide) and is inspected through predicates, in the manner of
//! reqwest and jiff: [`Error::kind`], [`Error::is_retryable`], [`Error::is_throttled`],
//! [`Error::segment`], [`Error::status`], [`Error::retry_after`] and [`Error::server_message`].
//!
//! Messages are short, lower-case phrases that say what went wrong and, where the caller can
//! act, what to do about it. No credential is ever part of an error.

use std::fmt;
use std::time::Duration;

/// A boxed error source.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with chunkwise's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What class of failure an [`Error`] is.
///
/// New kinds may be added in minor releases, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The source cannot be uploaded as given: empty, too large for its category or for the
    /// 1000-segment budget, not a regular file. Detected before any request is sent.
    InvalidInput,
    /// A configuration value is out of range or inconsistent.
    InvalidConfig,
    /// Reading the source failed (missing, unreadable, changed size during the upload).
    Io,
    /// The request never got a complete HTTP response after its connection was made: reset,
    /// dropped connection, truncated body. Retryable. (No connection at all is
    /// [`Unreachable`](ErrorKind::Unreachable).)
    Transport,
    /// A request exceeded its deadline or stalled. Retryable.
    Timeout,
    /// The server could not be reached: no connection could be made (refused, no route,
    /// name resolution, connect timeout), so nothing of the request was sent. Retryable: the
    /// engine holds every request and probes with one at a time until the server answers
    /// again, for up to [`RetryPolicy::max_unreachable`](crate::RetryPolicy::max_unreachable),
    /// without spending a segment's attempts or the retry budget. Check the network and the
    /// base URL if it persists.
    Unreachable,
    /// The server answered 429 Too Many Requests. Retryable after [`Error::retry_after`].
    RateLimited,
    /// The server answered 401 or 403: the credentials are wrong, expired or lack the
    /// `media.write` scope. Not retryable.
    Unauthorized,
    /// The server rejected the request with a 4xx status (other than 401, 403, 408 and 429):
    /// a bad parameter, an unknown or expired media id, a segment index out of range.
    /// Not retryable.
    Rejected,
    /// The server failed with a 5xx status (or 408). Retryable.
    ServerError,
    /// The server answered 2xx but with a body chunkwise cannot understand.
    Protocol,
    /// The server finished processing the media with state `failed`.
    ProcessingFailed,
    /// Processing did not finish before the STATUS polling deadline.
    ProcessingTimeout,
    /// The retry budget of the upload was spent; the last failure is the source.
    RetryBudgetExhausted,
    /// The upload was cancelled by the caller.
    Cancelled,
    /// A checkpoint cannot be used or stored: the file is corrupt, truncated, from another
    /// program or format version, or was made for another source (the file changed since) or
    /// target; or the checkpoint store failed to read or write it. Discard the checkpoint
    /// and start a new upload (or fix the store's directory).
    Checkpoint,
    /// The protocol does not offer this call (a one-shot upload, alt text or subtitles on an
    /// [`UploadProtocol`](crate::protocol::UploadProtocol) that does not implement them). Use
    /// a protocol that does, such as [`XClient`](crate::protocol::XClient).
    Unsupported,
}

impl ErrorKind {
    fn phrase(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::Io => "i/o error",
            ErrorKind::Transport => "transport error",
            ErrorKind::Timeout => "request timed out",
            ErrorKind::Unreachable => "server unreachable",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Rejected => "request rejected",
            ErrorKind::ServerError => "server error",
            ErrorKind::Protocol => "unexpected server response",
            ErrorKind::ProcessingFailed => "media processing failed",
            ErrorKind::ProcessingTimeout => "media processing did not finish in time",
            ErrorKind::RetryBudgetExhausted => "retry budget exhausted",
            ErrorKind::Cancelled => "upload cancelled",
            ErrorKind::Checkpoint => "checkpoint unusable",
            ErrorKind::Unsupported => "not supported by the protocol",
        }
    }
}

/// An error message the server sent: the v1.1 `{"errors":[{code,message}]}` and
/// `{"request","error"}` shapes, the v2 problem+json shape, and a processing `error` object
/// all map onto it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ServerMessage {
    /// Numeric error code (`code`), when the server gave one (v1.1 codes such as 324, 88, 32).
    pub code: Option<i64>,
    /// Short name or title (`name` in processing errors, `title` in problem+json).
    pub name: Option<String>,
    /// Human-readable text (`message`, `error` or `detail`).
    pub message: String,
}

impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.name) {
            (Some(c), Some(n)) => write!(f, "{n} (code {c}): {}", self.message),
            (Some(c), None) => write!(f, "code {c}: {}", self.message),
            (None, Some(n)) => write!(f, "{n}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// The error type of chunkwise. See the [module docs](self).
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    context: Option<String>,
    segment: Option<u32>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    server: Option<ServerMessage>,
    attempts: Option<u32>,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` with a context phrase (what was being done, what to do).
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                context: Some(context.into()),
                segment: None,
                status: None,
                retry_after: None,
                server: None,
                attempts: None,
                source: None,
            }),
        }
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether retrying the same request may succeed: transport failures, timeouts, 5xx, 408
    /// and 429.
    ///
    /// ```
    /// use chunkwise::{Error, ErrorKind};
    /// assert!(Error::new(ErrorKind::Timeout, "append took too long").is_retryable());
    /// assert!(!Error::new(ErrorKind::Unauthorized, "bad signature").is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Transport
                | ErrorKind::Timeout
                | ErrorKind::Unreachable
                | ErrorKind::ServerError
                | ErrorKind::RateLimited
        )
    }

    /// Whether the server asked us to slow down (HTTP 429).
    ///
    /// ```
    /// use chunkwise::{Error, ErrorKind};
    /// assert!(Error::new(ErrorKind::RateLimited, "append").is_throttled());
    /// ```
    pub fn is_throttled(&self) -> bool {
        self.inner.kind == ErrorKind::RateLimited
    }

    /// The `segment_index` of the APPEND this error belongs to, if any.
    ///
    /// ```
    /// use chunkwise::{Error, ErrorKind};
    /// let e = Error::new(ErrorKind::ServerError, "append").with_segment(7);
    /// assert_eq!(e.segment(), Some(7));
    /// ```
    pub fn segment(&self) -> Option<u32> {
        self.inner.segment
    }

    /// The HTTP status code of the response, if there was one.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// How long the server asked us to wait (`Retry-After` or `x-rate-limit-reset`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The error message the server sent, if any.
    pub fn server_message(&self) -> Option<&ServerMessage> {
        self.inner.server.as_ref()
    }

    /// How many attempts were made before giving up, for errors that end a retry loop.
    pub fn attempts(&self) -> Option<u32> {
        self.inner.attempts
    }

    /// Attach the segment index this error belongs to.
    pub fn with_segment(mut self, index: u32) -> Self {
        self.inner.segment = Some(index);
        self
    }

    /// Attach the HTTP status code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// Attach the delay the server asked for.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.inner.retry_after = Some(delay);
        self
    }

    /// Attach the server's error message.
    pub fn with_server_message(mut self, msg: ServerMessage) -> Self {
        self.inner.server = Some(msg);
        self
    }

    /// Attach the number of attempts made.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.inner.attempts = Some(attempts);
        self
    }

    /// Attach an underlying cause, reachable through [`std::error::Error::source`].
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(c) = &self.inner.context {
            d.field("context", c);
        }
        if let Some(s) = self.inner.segment {
            d.field("segment", &s);
        }
        if let Some(s) = self.inner.status {
            d.field("status", &s);
        }
        if let Some(r) = self.inner.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(m) = &self.inner.server {
            d.field("server", m);
        }
        if let Some(a) = self.inner.attempts {
            d.field("attempts", &a);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.inner.kind.phrase())?;
        if let Some(s) = self.inner.segment {
            write!(f, " on segment {s}")?;
        }
        if let Some(s) = self.inner.status {
            write!(f, " (HTTP {s})")?;
        }
        if let Some(c) = &self.inner.context {
            write!(f, ": {c}")?;
        }
        if let Some(m) = &self.inner.server {
            write!(f, "; server said: {m}")?;
        }
        if let Some(a) = self.inner.attempts {
            write!(f, " (after {a} attempts)")?;
        }
        if let Some(r) = self.inner.retry_after {
            write!(f, " (retry after {:.1}s)", r.as_secs_f64())?;
        }
        if let Some(s) = &self.inner.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_ref().map(|s| &**s as _)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(
            ErrorKind::Io,
            "reading the source failed; check the path and permissions",
        )
        .with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_carries_segment_status_and_server_text() {
        let e = Error::new(ErrorKind::Rejected, "append refused")
            .with_segment(1000)
            .with_status(400)
            .with_server_message(ServerMessage {
                code: None,
                name: None,
                message: "SegmentIndex must be between 0 and 999.".into(),
            });
        let s = e.to_string();
        assert!(s.contains("segment 1000"), "{s}");
        assert!(s.contains("HTTP 400"), "{s}");
        assert!(s.contains("SegmentIndex must be between 0 and 999."), "{s}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn error_is_one_word_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }
}
