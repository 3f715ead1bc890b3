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
    /// The server no longer knows the media id: it expired (X keeps an unfinished upload for
    /// an hour to a day) or never existed. Not retryable; a resumed upload starts over with a
    /// new INIT, and a new upload is the fix otherwise.
    MediaGone,
    /// FINALIZE was refused because the segments the server holds do not add up to the
    /// `total_bytes` of INIT ("Segments do not add up to provided total file size"). Not
    /// retryable: a resumed upload checks STATUS and starts over; otherwise the segments were
    /// sent wrongly (by another client of the same media id, for example).
    SegmentMismatch,
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
    /// Another owner (another process, or another upload in this one) is driving the same
    /// upload: the checkpoint store's claim on it is held. Nothing was sent. Wait for the
    /// other owner to finish, or stop it, then run the upload again to carry it on.
    Claimed,
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
            ErrorKind::MediaGone => "media id unknown or expired",
            ErrorKind::SegmentMismatch => "segments do not add up",
            ErrorKind::ServerError => "server error",
            ErrorKind::Protocol => "unexpected server response",
            ErrorKind::ProcessingFailed => "media processing failed",
            ErrorKind::ProcessingTimeout => "media processing did not finish in time",
            ErrorKind::RetryBudgetExhausted => "retry budget exhausted",
            ErrorKind::Cancelled => "upload cancelled",
            ErrorKind::Checkpoint => "checkpoint unusable",
            ErrorKind::Claimed => "upload driven by another owner",
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

/// The most characters of one piece of server text (an error message, its name) that
/// chunkwise keeps: 500.
///
/// Source: reasonable default; X's own messages are one sentence (protocol.md §5, the
/// longest quoted is under 100 characters), so 500 keeps every real message whole while a
/// hostile or broken server's 900 KB "message" becomes one readable line.
pub const MAX_SERVER_TEXT_CHARS: usize = 500;

/// Makes text that came from a server (or from a file it controls) safe to show on a
/// terminal and in a one-line error: line breaks and tabs become spaces, every other control
/// character (ESC, BEL, C1 controls) and every bidirectional-override or zero-width format
/// character is dropped, and the text is cut to `max_chars` characters, with `…` and the
/// number of characters left out.
///
/// [`Error::with_server_message`] applies it (with [`MAX_SERVER_TEXT_CHARS`]) to every server
/// message that enters an error; the `chunkwise` command line applies it to whatever it
/// prints. Pass `usize::MAX` to strip without cutting.
///
/// ```
/// use chunkwise::error::sanitize_text;
/// assert_eq!(sanitize_text("bad\x1b[2J\x07 id\nhere", 100), "bad[2J id here");
/// assert_eq!(sanitize_text(&"x".repeat(10), 4), "xxxx… (6 more characters)");
/// ```
pub fn sanitize_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    let mut kept = 0usize;
    let mut dropped = 0usize;
    for c in text.chars() {
        let c = match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || is_invisible_format(c) => continue,
            c => c,
        };
        if kept < max_chars {
            out.push(c);
            kept += 1;
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        out.push_str(&format!("… ({dropped} more characters)"));
    }
    out
}

/// Zero-width and bidirectional-control characters, which can make a terminal show text in
/// another order than it has ("Trojan Source", CVE-2021-42574).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

impl ServerMessage {
    /// The message with [`sanitize_text`] applied to its name and text, each cut to
    /// [`MAX_SERVER_TEXT_CHARS`].
    pub fn sanitized(self) -> ServerMessage {
        ServerMessage {
            code: self.code,
            name: self.name.map(|n| sanitize_text(&n, MAX_SERVER_TEXT_CHARS)),
            message: sanitize_text(&self.message, MAX_SERVER_TEXT_CHARS),
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

    /// Attach the server's error message, [sanitised](ServerMessage::sanitized): control
    /// characters stripped, each part cut to [`MAX_SERVER_TEXT_CHARS`].
    pub fn with_server_message(mut self, msg: ServerMessage) -> Self {
        self.inner.server = Some(msg.sanitized());
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
    fn server_text_is_stripped_of_controls_and_cut() {
        let e = Error::new(ErrorKind::Rejected, "finalize").with_server_message(ServerMessage {
            code: Some(1),
            name: Some("Bad\x1b]0;pwned\x07Name".into()),
            message: format!("\x1b[31mred\x1b[0m\u{202E}txt\r\n{}", "y".repeat(900_000)),
        });
        let s = e.to_string();
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert!(!s.contains('\u{202E}'));
        assert!(s.contains("Bad]0;pwnedName"), "{s}");
        assert!(s.contains("[31mred[0mtxt  y"), "{s}");
        assert!(s.len() < 2 * MAX_SERVER_TEXT_CHARS, "{}", s.len());
        assert!(s.contains("more characters)"), "{s}");
        let m = e.server_message().unwrap();
        assert_eq!(
            m.message.chars().filter(|c| *c == 'y').count(),
            MAX_SERVER_TEXT_CHARS - 15
        );
        // Short, clean text is kept as it is.
        assert_eq!(
            sanitize_text("Segments do not add up.", 500),
            "Segments do not add up."
        );
        assert_eq!(sanitize_text("", 0), "");
        assert_eq!(sanitize_text("ab", 0), "… (2 more characters)");
    }

    #[test]
    fn error_is_one_word_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }
}
