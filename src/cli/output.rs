//! What the command line writes to stdout, and how server text is made safe to show.
//!
//! Every result line goes through [`stdout`], which reports a closed or full stdout
//! (`chunkwise upload f | true`, `> /dev/full`) as an error instead of the panic of
//! `println!`.

use std::io::Write as _;

use anyhow::Context as _;
use chunkwise::error::{MAX_SERVER_TEXT_CHARS, sanitize_text};

/// Writes `text` to stdout and flushes it.
///
/// # Errors
///
/// stdout is closed (a pipe whose reader has gone) or cannot take the text (a full disk,
/// `/dev/full`).
pub(crate) fn stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout (closed, or the disk is full)")
}

/// Writes `line` and a newline to stdout; see [`stdout`].
pub(crate) fn line(line: &str) -> anyhow::Result<()> {
    stdout(&format!("{line}\n"))
}

/// Text from a server (or a file a server's answers went into), made safe for a terminal:
/// control characters stripped, cut to [`MAX_SERVER_TEXT_CHARS`].
pub(crate) fn shown(text: &str) -> String {
    sanitize_text(text, MAX_SERVER_TEXT_CHARS)
}

/// A message for stderr made of our own words and server text that was already cut where it
/// entered an error or event: control characters stripped, nothing cut.
pub(crate) fn clean(text: &str) -> String {
    sanitize_text(text, usize::MAX)
}
