//! Checkpoints: what another process needs to carry an upload on from where it stopped, and
//! the stores that keep them.
//!
//! A [`Checkpoint`] records the target ([`ProtocolTarget`]: API and base URL), the media id
//! and when it expires, the source's identity ([`SourceIdentity`]: path, size, modification
//! time and a content fingerprint), the media spec, the segment plan so far (index, offset
//! and length of every segment planned) with the set of segments the server acknowledged,
//! and an opaque slot for the scheduling strategy's estimates
//! ([`Strategy::export_state`](crate::scheduler::Strategy::export_state)).
//!
//! **No credential is ever part of a checkpoint**: the target is the base URL without user
//! info, query or fragment, and nothing else of the protocol's configuration is recorded.
//!
//! The [`Engine`](crate::Engine) saves the checkpoint of an upload to the
//! [`EngineConfig::checkpoint_store`](crate::EngineConfig::checkpoint_store), if one is set,
//! after INIT and after acknowledged segments, and removes it once FINALIZE succeeded;
//! [`Engine::resume`](crate::Engine::resume) carries a loaded checkpoint on.
//!
//! # Stores
//!
//! [`CheckpointStore`] is a small async trait (load, save, remove, list) keyed by a
//! [`CheckpointKey`]: a stable id of the canonical source path, its size, and the target's
//! API and base URL, so a tool can find "the checkpoint for this file and this target".
//! [`FileCheckpointStore`] keeps one file per upload in a directory (atomic writes, owner-only
//! permissions); [`MemoryCheckpointStore`] keeps them in memory.
//!
//! # File format
//!
//! Two parts: a one-line JSON header
//! `{"format":"chunkwise-checkpoint","version":1,"body_bytes":N,"sha256":"<hex>"}` and a
//! newline, then the checkpoint as JSON, `N` bytes whose SHA-256 the header gives. Reading
//! checks, in order: the size (at most [`MAX_CHECKPOINT_BYTES`]), the magic, the version
//! ([`CHECKPOINT_FORMAT_VERSION`]), the length (a truncated file), the checksum (a corrupt
//! file), the JSON, and that the contents are consistent (see [`Checkpoint::validate`]).
//! Every failure is an [`ErrorKind::Checkpoint`] error, never a panic.
//!
//! ```
//! use chunkwise::checkpoint::Checkpoint;
//! use chunkwise::ErrorKind;
//! let e = Checkpoint::from_bytes(b"{\"format\":\"something-else\"}\n{}").unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::Checkpoint);
//! ```

mod file;
mod identity;
mod memory;

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{MediaSpec, Plan, Segment};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::MIB;
use crate::protocol::{MediaId, ProtocolTarget};

pub use file::LOCK_FILE_EXTENSION;
pub use file::{CHECKPOINT_FILE_EXTENSION, FileCheckpointStore};
pub(crate) use file::{CappedReadError, read_regular_capped};
pub use identity::{FINGERPRINT_SAMPLE_BYTES, SourceIdentity};
pub use memory::MemoryCheckpointStore;

/// The `format` field of every checkpoint header.
pub const CHECKPOINT_MAGIC: &str = "chunkwise-checkpoint";

/// The checkpoint format this build writes and reads.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// The largest checkpoint file read: 4 MiB.
///
/// Source: reasonable default; a checkpoint of 1000 segments is about 50 KiB of JSON, so this
/// leaves ample room for a strategy's exported state while bounding what a hostile or
/// corrupt file can make the reader allocate.
pub const MAX_CHECKPOINT_BYTES: u64 = 4 * MIB;

/// A media id that expires within this margin is treated as already expired when resuming,
/// and the upload starts over with a new INIT.
///
/// Source: reasonable default; one minute covers clock skew between this machine and the
/// server plus the round trip of the first APPENDs, while X's ids live for an hour (v1.1) to
/// a day (v2) (protocol.md §2.5).
pub const RESUME_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The most characters of a [`CheckpointKey`].
///
/// Source: reasonable default; keys are file names, and 128 characters stays far below every
/// file system's name limit (255).
pub const MAX_KEY_CHARS: usize = 128;

/// Hex characters of a derived [`CheckpointKey`]: 32 (128 bits of SHA-256).
///
/// Source: reasonable default; 128 bits make an accidental collision between two uploads
/// negligible, and keep file names short.
const DERIVED_KEY_HEX_CHARS: usize = 32;

/// The name of one upload's checkpoint in a [`CheckpointStore`]: 1 to [`MAX_KEY_CHARS`]
/// ASCII letters, digits, `-` or `_`, so it is a safe file name everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CheckpointKey(String);

impl CheckpointKey {
    /// The key of an upload of `source` to `target`: a hash of the target's API and base URL,
    /// the source's canonical path (its fingerprint when it has no path, such as bytes in
    /// memory) and its size. The same file uploaded to the same target gets the same key.
    ///
    /// ```
    /// use chunkwise::checkpoint::{CheckpointKey, SourceIdentity};
    /// use chunkwise::protocol::ProtocolTarget;
    /// let target = ProtocolTarget { api: "x-v2".into(), base_url: "https://api.x.com/".into() };
    /// let id = SourceIdentity {
    ///     path: Some("/videos/clip.mp4".into()),
    ///     size: 10,
    ///     modified: None,
    ///     fingerprint: "00".into(),
    /// };
    /// let key = CheckpointKey::for_upload(&id, &target);
    /// assert_eq!(key, CheckpointKey::for_upload(&id, &target));
    /// assert_eq!(key.as_str().len(), 32);
    /// ```
    pub fn for_upload(source: &SourceIdentity, target: &ProtocolTarget) -> CheckpointKey {
        let mut h = Sha256::new();
        h.update(b"chunkwise-checkpoint-key-v1\0");
        for part in [target.api.as_bytes(), target.base_url.as_bytes()] {
            h.update(part);
            h.update(b"\0");
        }
        match &source.path {
            Some(p) => {
                h.update(b"path:");
                h.update(p.as_bytes());
            }
            None => {
                h.update(b"fingerprint:");
                h.update(source.fingerprint.as_bytes());
            }
        }
        h.update(b"\0");
        h.update(source.size.to_le_bytes());
        let mut hex = identity::hex(&h.finalize());
        hex.truncate(DERIVED_KEY_HEX_CHARS);
        CheckpointKey(hex)
    }

    /// A key given by the caller.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if `key` is empty, longer than [`MAX_KEY_CHARS`], or has
    /// a character other than ASCII letters, digits, `-` and `_`.
    pub fn parse(key: &str) -> Result<CheckpointKey> {
        let ok = !key.is_empty()
            && key.len() <= MAX_KEY_CHARS
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(CheckpointKey(key.to_string()))
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{key:?} is not a checkpoint key: use 1 to {MAX_KEY_CHARS} ASCII letters, \
                     digits, - or _"
                ),
            ))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CheckpointKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        CheckpointKey::parse(&s)
    }
}

impl From<CheckpointKey> for String {
    fn from(k: CheckpointKey) -> String {
        k.0
    }
}

/// Everything needed to carry an upload on in another process. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where the upload goes.
    pub target: ProtocolTarget,
    /// The media id from INIT.
    pub media_id: MediaId,
    /// The media key, when the server sent one.
    pub media_key: Option<String>,
    /// When the media id stops working (from INIT's `expires_after_secs`, updated by the
    /// `expires_at` of APPEND answers), when the server said.
    pub expires_at: Option<SystemTime>,
    /// The source the segments were read from.
    pub source: SourceIdentity,
    /// What is uploaded, as INIT described it.
    pub spec: MediaSpec,
    /// Every segment planned so far.
    pub plan: Plan,
    /// Indices of the segments whose APPEND returned 2xx.
    pub acked: BTreeSet<u32>,
    /// The scheduling strategy's exported estimates, if it exports any.
    pub strategy_state: Option<serde_json::Value>,
    /// When the checkpoint was written.
    pub saved_at: SystemTime,
}

/// The most digits of an X media id in a checkpoint: 20.
///
/// Source: X's media ids are unsigned 64-bit snowflakes (protocol.md §2.1), and
/// `u64::MAX` has 20 digits; the response parser allows the same.
pub const MAX_X_MEDIA_ID_DIGITS: usize = 20;

/// Whether `s` is an allowed media id of a checkpoint for an X target (`x`) or another
/// one; see [`Checkpoint::validate`].
fn is_allowed_media_id(s: &str, x: bool) -> bool {
    if x {
        !s.is_empty() && s.len() <= MAX_X_MEDIA_ID_DIGITS && s.bytes().all(|b| b.is_ascii_digit())
    } else {
        CheckpointKey::parse(s).is_ok()
    }
}

/// The first line of a checkpoint file.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    body_bytes: u64,
    sha256: String,
}

/// An [`ErrorKind::Checkpoint`] error.
pub(crate) fn checkpoint_error(context: impl Into<String>) -> Error {
    Error::new(ErrorKind::Checkpoint, context)
}

impl Checkpoint {
    /// The key this checkpoint is stored under: [`CheckpointKey::for_upload`] of its source
    /// and target.
    pub fn key(&self) -> CheckpointKey {
        CheckpointKey::for_upload(&self.source, &self.target)
    }

    /// Whether the media id has expired at `now`, or expires within
    /// [`RESUME_EXPIRY_MARGIN`]. An id without a known expiry is assumed alive (the server
    /// says otherwise at the first APPEND if it is not).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at
            .is_some_and(|t| t <= now.checked_add(RESUME_EXPIRY_MARGIN).unwrap_or(now))
    }

    /// Payload bytes the server acknowledged.
    pub fn acked_bytes(&self) -> u64 {
        self.plan
            .segments()
            .iter()
            .filter(|s| self.acked.contains(&s.index))
            .map(|s| s.len)
            .sum()
    }

    /// The planned segments the server did not acknowledge, in index order: what a resumed
    /// upload sends first.
    pub fn pending_segments(&self) -> Vec<Segment> {
        self.plan
            .segments()
            .iter()
            .filter(|s| !self.acked.contains(&s.index))
            .copied()
            .collect()
    }

    /// Checks that the checkpoint is consistent: a media id and media key of the allowed
    /// form (see below); a plan that
    /// [`Plan::next_segment`] could have made (indices `0..n` in order, contiguous offsets,
    /// every length within the chunk limit and the whole source within 1000 segments); a
    /// source size equal to the plan's; acknowledged segments that were all planned.
    ///
    /// # Media ids
    ///
    /// A checkpoint's media id goes into the URLs of the requests that resume it (v2 puts it
    /// in the path) and into messages on terminals, so only these forms are accepted:
    ///
    /// - for an X target (`target.api` starting with `x-`): 1 to [`MAX_X_MEDIA_ID_DIGITS`]
    ///   ASCII digits (X's ids are 64-bit snowflakes; the v2 spec's pattern is
    ///   `^[0-9]{1,19}$`, protocol.md §2.1), which is also what the response parser accepts;
    /// - for any other target (a custom [`UploadProtocol`](crate::protocol::UploadProtocol)):
    ///   what a [`CheckpointKey`] may be, 1 to [`MAX_KEY_CHARS`] ASCII letters, digits, `-`
    ///   or `_`.
    ///
    /// So `../../../etc/passwd`, an id with a space, a `/` or a control character, and an
    /// empty id are all refused. The media key is informational (it is never sent back to
    /// the server) and is not checked: it is the server's text, and whoever shows it passes it
    /// through [`sanitize_text`](crate::error::sanitize_text), as the command line does.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Checkpoint`] naming the first inconsistency.
    pub fn validate(&self) -> Result<()> {
        let x = self.target.api.starts_with("x-");
        if !is_allowed_media_id(self.media_id.as_str(), x) {
            // Shown cut to the longest id allowed, without control characters.
            let shown = crate::error::sanitize_text(self.media_id.as_str(), MAX_KEY_CHARS);
            return Err(checkpoint_error(if x {
                format!(
                    "the checkpoint's media id {shown:?} is not 1 to {MAX_X_MEDIA_ID_DIGITS} \
                     decimal digits, as X's media ids are; it was not written by chunkwise"
                )
            } else {
                format!(
                    "the checkpoint's media id {shown:?} is not 1 to {MAX_KEY_CHARS} ASCII \
                     letters, digits, - or _; it was not written by chunkwise"
                )
            }));
        }
        self.plan
            .check_consistent()
            .map_err(|why| checkpoint_error(format!("the checkpoint is inconsistent: {why}")))?;
        if self.source.size != self.plan.total_bytes() {
            return Err(checkpoint_error(format!(
                "the checkpoint is inconsistent: its source has {} bytes but its plan {}",
                self.source.size,
                self.plan.total_bytes()
            )));
        }
        let planned = self.plan.segments().len();
        if let Some(i) = self.acked.iter().find(|i| **i as usize >= planned) {
            return Err(checkpoint_error(format!(
                "the checkpoint is inconsistent: segment {i} is acknowledged but only {planned} \
                 were planned"
            )));
        }
        Ok(())
    }

    /// The checkpoint in the file format (see the [module docs](self#file-format)).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Checkpoint`] if it cannot be serialised (a strategy state that is not
    /// valid JSON data, such as a map with non-string keys).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| {
            checkpoint_error("the checkpoint could not be serialised").with_source(e)
        })?;
        let header = Header {
            format: CHECKPOINT_MAGIC.to_string(),
            version: CHECKPOINT_FORMAT_VERSION,
            body_bytes: body.len() as u64,
            sha256: identity::hex(&Sha256::digest(&body)),
        };
        let mut out = serde_json::to_vec(&header).map_err(|e| {
            checkpoint_error("the checkpoint header could not be serialised").with_source(e)
        })?;
        out.push(b'\n');
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads a checkpoint written by [`to_bytes`](Checkpoint::to_bytes) and
    /// [`validate`](Checkpoint::validate)s it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Checkpoint`], saying whether the data is too large, not a chunkwise
    /// checkpoint, of another format version, truncated, corrupt (checksum or JSON), or
    /// inconsistent. Never panics, whatever the bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Checkpoint> {
        if data.len() as u64 > MAX_CHECKPOINT_BYTES {
            return Err(checkpoint_error(format!(
                "the checkpoint is {} bytes, more than the {MAX_CHECKPOINT_BYTES} a checkpoint \
                 can be; it is not a chunkwise checkpoint",
                data.len()
            )));
        }
        let not_ours = || {
            checkpoint_error(
                "this is not a chunkwise checkpoint (its header is missing or has another \
                 format); delete it or point the store at another directory",
            )
        };
        let Some(newline) = data.iter().position(|b| *b == b'\n') else {
            return Err(not_ours());
        };
        let (head, body) = (&data[..newline], &data[newline + 1..]);
        // The magic and version first, from a loose parse, so that a newer version's header
        // is reported as such even if its other fields changed.
        let loose: serde_json::Value = serde_json::from_slice(head).map_err(|_| not_ours())?;
        if loose.get("format").and_then(serde_json::Value::as_str) != Some(CHECKPOINT_MAGIC) {
            return Err(not_ours());
        }
        let version = loose.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(CHECKPOINT_FORMAT_VERSION)) {
            let shown = version.map_or_else(|| "an unknown".to_string(), |v| v.to_string());
            return Err(checkpoint_error(format!(
                "the checkpoint has format version {shown}; this build reads version \
                 {CHECKPOINT_FORMAT_VERSION}: resume it with the chunkwise that wrote it, or \
                 start over"
            )));
        }
        let header: Header = serde_json::from_value(loose)
            .map_err(|e| checkpoint_error("the checkpoint header is corrupt").with_source(e))?;
        if body.len() as u64 != header.body_bytes {
            return Err(checkpoint_error(format!(
                "the checkpoint is truncated or padded: its body has {} bytes, its header says \
                 {}",
                body.len(),
                header.body_bytes
            )));
        }
        if identity::hex(&Sha256::digest(body)) != header.sha256 {
            return Err(checkpoint_error(
                "the checkpoint is corrupt: its checksum does not match its contents",
            ));
        }
        let checkpoint: Checkpoint = serde_json::from_slice(body).map_err(|e| {
            checkpoint_error("the checkpoint is corrupt: its contents are not a checkpoint")
                .with_source(e)
        })?;
        checkpoint.validate()?;
        Ok(checkpoint)
    }
}

/// Proof that one owner drives the upload under a [`CheckpointKey`]: while it is held, no
/// other [`CheckpointStore::claim`] of that key succeeds. Released when dropped (and, for the
/// [`FileCheckpointStore`], when the process dies, however it dies).
pub struct CheckpointClaim {
    _held: Box<dyn std::any::Any + Send + Sync>,
}

impl CheckpointClaim {
    /// A claim that holds `held` (a lock guard, a file handle) until it is dropped; for
    /// implementations of [`CheckpointStore::claim`].
    pub fn new(held: impl std::any::Any + Send + Sync) -> Self {
        CheckpointClaim {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for CheckpointClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointClaim").finish_non_exhaustive()
    }
}

/// Where checkpoints are kept. Implementations must be cheap to share and safe to call
/// concurrently; the engine saves at most one checkpoint of an upload at a time.
///
/// # One owner per upload
///
/// Two processes driving one upload would cut the same segment indices with different
/// sizes, and the server could never assemble the file. So the engine
/// [`claim`](CheckpointStore::claim)s an upload's key before it reads or writes anything
/// under it, and holds the claim until the upload ends; a second upload of the same source
/// to the same target fails at once with [`ErrorKind::Claimed`].
pub trait CheckpointStore: Send + Sync + fmt::Debug {
    /// The checkpoint stored under `key`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Checkpoint`] if it exists but cannot be read or used (see
    /// [`Checkpoint::from_bytes`]).
    fn load<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<Option<Checkpoint>>>;

    /// Stores `checkpoint` under `key`, replacing what was there. Either the new checkpoint
    /// or the old one is stored afterwards, never a mix, even if the process dies meanwhile.
    fn save<'a>(
        &'a self,
        key: &'a CheckpointKey,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes the checkpoint under `key`; removing one that is not there is not an error.
    fn remove<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<()>>;

    /// The keys of every stored checkpoint, sorted.
    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointKey>>>;

    /// Claims the upload under `key` for the caller until the returned claim is dropped:
    /// meanwhile every other claim of `key` fails. A claim must not outlive its holder: the
    /// file store's is an OS lock, released when the process dies.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Claimed`] if another owner holds the key, naming it when the store
    /// knows it (the file store gives the holder's process id); [`ErrorKind::Checkpoint`] if
    /// the store cannot take claims (a directory that cannot be written).
    fn claim<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<CheckpointClaim>>;
}

/// The error for a claim that another owner holds.
pub(crate) fn claimed_error(key: &CheckpointKey, holder: &str) -> Error {
    Error::new(
        ErrorKind::Claimed,
        format!(
            "the upload {key} is being driven by {holder}; wait for it to finish (or stop it) \
             before running this upload again"
        ),
    )
}

/// The checkpoint reader's fuzz entry point, for the `checkpoint` target in `fuzz/` and the
/// seeded-corpus tests. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use super::Checkpoint;

    /// Reads `data` as a checkpoint; one that reads must write and read back the same
    /// (floats in the strategy state aside, whose last digit JSON may not keep). Returns
    /// the property that failed; a panic anywhere is a bug too.
    pub fn read_checkpoint(data: &[u8]) -> Result<(), String> {
        let Ok(cp) = Checkpoint::from_bytes(data) else {
            return Ok(());
        };
        let again = cp
            .to_bytes()
            .map_err(|e| format!("a checkpoint that was read cannot be written: {e}"))?;
        let back = Checkpoint::from_bytes(&again)
            .map_err(|e| format!("a written checkpoint does not read back: {e}"))?;
        let same = Checkpoint {
            strategy_state: cp.strategy_state.clone(),
            ..back
        };
        if same == cp {
            Ok(())
        } else {
            Err(format!(
                "the checkpoint changed in a round trip: {cp:?} became {same:?}"
            ))
        }
    }
}

#[cfg(test)]
fn _obj_safe(_: &dyn CheckpointStore) {}

#[cfg(test)]
pub(crate) mod tests;
