//! The identity of a source: enough to tell, in another process, whether a file is still the
//! one a checkpoint's segments were read from.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint_error;
use crate::engine::Source;
use crate::error::Result;

/// Bytes hashed at each of the three sample points of a [fingerprint](SourceIdentity::fingerprint):
/// 64 KiB.
///
/// Source: reasonable default; 192 KiB in all is read in a few milliseconds even from a slow
/// disk, and 64 KiB covers the header and trailer boxes of common media containers (an MP4's
/// `ftyp`/`moov` at the start or the end), where an edit of a media file shows first.
pub const FINGERPRINT_SAMPLE_BYTES: u64 = 64 * 1024;

/// What identifies a source across processes.
///
/// # The fingerprint
///
/// The SHA-256 of a version tag, the size, and three samples of
/// [`FINGERPRINT_SAMPLE_BYTES`]: the first, the middle and the last (overlapping for files
/// under 192 KiB), each with its offset. It is cheap whatever the file's size, which is the
/// point: hashing a 16 GiB video to resume its upload would cost as much as a good part of
/// the upload. The price is that an edit that keeps the size and touches none of the three
/// samples goes unnoticed by the fingerprint; the modification time catches it for any
/// ordinary writer, and a file whose bytes change while it is uploaded is already refused
/// when a segment is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    /// The canonical path of a file source (lossily as UTF-8); `None` for bytes in memory.
    /// Informational and part of the [key](super::CheckpointKey); a moved file still resumes.
    pub path: Option<String>,
    /// The size in bytes.
    pub size: u64,
    /// The modification time of a file source when it was opened.
    pub modified: Option<SystemTime>,
    /// The content fingerprint, lower-case hex (see [above](SourceIdentity#the-fingerprint)).
    pub fingerprint: String,
}

impl SourceIdentity {
    /// Computes the identity of `source`: its canonical path (on tokio's blocking pool), its
    /// size and opening modification time, and the fingerprint of three samples read
    /// through [`Source::read`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the samples cannot be read (the file changed
    /// since it was opened, or a read failed).
    pub async fn of(source: &Source) -> Result<SourceIdentity> {
        let size = source.len();
        let mut h = Sha256::new();
        h.update(b"chunkwise-fingerprint-v1\0");
        h.update(size.to_le_bytes());
        let n = FINGERPRINT_SAMPLE_BYTES.min(size);
        let middle = (size / 2).saturating_sub(FINGERPRINT_SAMPLE_BYTES / 2);
        for start in [0, middle.min(size - n), size - n] {
            h.update(start.to_le_bytes());
            if n > 0 {
                h.update(source.read(start, n).await?);
            }
        }
        let path = match source.path() {
            Some(p) => {
                let p = p.to_path_buf();
                let canonical = tokio::task::spawn_blocking(move || {
                    // A path that cannot be canonicalised (removed since it was opened) is
                    // kept as given.
                    std::fs::canonicalize(&p).unwrap_or(p)
                })
                .await
                .map_err(|e| checkpoint_error("resolving the source path failed").with_source(e))?;
                Some(canonical.to_string_lossy().into_owned())
            }
            None => None,
        };
        Ok(SourceIdentity {
            path,
            size,
            modified: source.modified(),
            fingerprint: hex(&h.finalize()),
        })
    }

    /// Checks that `current` has the same content as `self`: same size, same modification
    /// time, same fingerprint. The path may differ (a moved file).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Checkpoint`](crate::ErrorKind::Checkpoint) naming what changed.
    pub fn check_unchanged(&self, current: &SourceIdentity) -> Result<()> {
        let changed = if self.size != current.size {
            format!(
                "its size changed from {} to {} bytes",
                self.size, current.size
            )
        } else if self.modified != current.modified {
            "its modification time changed".to_string()
        } else if self.fingerprint != current.fingerprint {
            "its content changed".to_string()
        } else {
            return Ok(());
        };
        Err(checkpoint_error(format!(
            "the source is not the file the checkpoint was made from: {changed}; discard the \
             checkpoint and start a new upload"
        )))
    }
}

/// Lower-case hex of `bytes`. Hand-written: four lines do not justify a dependency.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
