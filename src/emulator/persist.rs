//! Sessions kept on disk ([`EmulatorBuilder::state_dir`](super::EmulatorBuilder::state_dir)),
//! so that an emulator can be stopped and started again with its uploads intact: a server
//! restart in the middle of an upload.
//!
//! Layout of the state directory:
//! - `emulator.json`: `{"version":1,"ids_issued":N}`, so a restarted emulator issues new ids;
//! - `sessions/<id>.json`: one session's metadata (owner, type, sizes, expiry and processing
//!   times as epoch milliseconds, the segment files, the digest once finalized);
//! - `segments/<id>-<index>-<n>.seg`: one received segment each.
//!
//! Every file is written to a temporary name, flushed and renamed into place, so a crash
//! leaves the old version or the new one; a segment file is complete before the session that
//! lists it is written. Session writes are serialised, each taking its snapshot after the
//! previous write ended, so the last file on disk holds the latest state.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::store::Segment;

/// The version of the state directory's files this build reads and writes.
pub(crate) const STATE_VERSION: u32 = 1;

/// The file with the id counter.
const META_FILE: &str = "emulator.json";
/// The directory of session files.
const SESSIONS_DIR: &str = "sessions";
/// The directory of segment files.
const SEGMENTS_DIR: &str = "segments";

/// `emulator.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) version: u32,
    pub(crate) ids_issued: u64,
}

/// Where a persisted session is in its life (a FINALIZE in progress is saved as
/// `Initialized`, which is what a failed FINALIZE returns to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SavedPhase {
    Initialized,
    Ready,
    Processing { since_ms: u64, fail: bool },
}

/// One stored segment: its index, its file (name within `segments/`) and length.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedSegment {
    pub(crate) index: u32,
    pub(crate) file: String,
    pub(crate) len: u64,
}

/// `sessions/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedSession {
    pub(crate) version: u32,
    pub(crate) id: u64,
    pub(crate) media_key: String,
    pub(crate) owner: u64,
    pub(crate) additional_owners: Vec<String>,
    pub(crate) category: Option<String>,
    pub(crate) media_type: String,
    pub(crate) total_bytes: u64,
    pub(crate) expires_at_ms: u64,
    pub(crate) segments: Vec<SavedSegment>,
    pub(crate) phase: SavedPhase,
    pub(crate) sha256: Option<[u8; 32]>,
    pub(crate) dims: (u32, u32),
    pub(crate) status_polls: u32,
    /// Alt text (issue 14; absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) alt_text: Option<String>,
    /// INIT's `shared` (issue 14; absent in older files).
    #[serde(default)]
    pub(crate) shared: bool,
    /// Subtitle tracks: language code, subtitle media id, display name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) subtitles: Vec<(String, u64, String)>,
}

/// The state directory.
#[derive(Debug)]
pub(crate) struct StateDir {
    root: PathBuf,
    /// Serialises session and meta writes (see the module docs).
    writes: tokio::sync::Mutex<()>,
    /// Tells the files of repeated writes apart.
    next: AtomicU64,
}

impl StateDir {
    /// Opens (creating) the state directory and reads what it holds: the id counter and every
    /// session. Unreadable session files are skipped with a warning.
    pub(crate) async fn open(root: PathBuf) -> std::io::Result<(StateDir, u64, Vec<SavedSession>)> {
        let r = root.clone();
        let (issued, sessions, next) = tokio::task::spawn_blocking(move || read_all(&r))
            .await
            .map_err(std::io::Error::other)??;
        let dir = StateDir {
            root,
            writes: tokio::sync::Mutex::new(()),
            next: AtomicU64::new(next),
        };
        Ok((dir, issued, sessions))
    }

    /// The file of a segment named `name`.
    pub(crate) fn segment_path(&self, name: &str) -> PathBuf {
        self.root.join(SEGMENTS_DIR).join(name)
    }

    /// Writes one segment to a new file, atomically.
    pub(crate) async fn write_segment(
        &self,
        media: u64,
        index: u32,
        data: &Bytes,
    ) -> std::io::Result<Segment> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.segment_path(&format!("{media}-{index}-{n}.seg"));
        let data = data.clone();
        let p = path.clone();
        let len = data.len() as u64;
        tokio::task::spawn_blocking(move || write_atomic(&p, &data))
            .await
            .map_err(std::io::Error::other)??;
        Ok(Segment::File { path, len })
    }

    /// Writes a session (taking its snapshot with `snapshot` only once earlier writes ended)
    /// and the id counter; `snapshot` returning `None` removes the session's file.
    pub(crate) async fn write_session(
        &self,
        id: u64,
        snapshot: impl FnOnce() -> (Option<SavedSession>, u64),
    ) -> std::io::Result<()> {
        let _turn = self.writes.lock().await;
        let (session, ids_issued) = snapshot();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let meta = Meta {
                version: STATE_VERSION,
                ids_issued,
            };
            write_atomic(&root.join(META_FILE), &serde_json::to_vec(&meta)?)?;
            let path = root.join(SESSIONS_DIR).join(format!("{id}.json"));
            match session {
                Some(s) => write_atomic(&path, &serde_json::to_vec(&s)?),
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The file name of a segment path (segment files are always directly in `segments/`).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `data` to `path` through a flushed temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Reads the id counter, every readable session, and the next free segment file number.
fn read_all(root: &Path) -> std::io::Result<(u64, Vec<SavedSession>, u64)> {
    std::fs::create_dir_all(root.join(SESSIONS_DIR))?;
    std::fs::create_dir_all(root.join(SEGMENTS_DIR))?;
    let issued = match std::fs::read(root.join(META_FILE)) {
        Ok(data) => serde_json::from_slice::<Meta>(&data)
            .ok()
            .filter(|m| m.version == STATE_VERSION)
            .map_or(0, |m| m.ids_issued),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let mut sessions = Vec::new();
    for entry in std::fs::read_dir(root.join(SESSIONS_DIR))? {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice::<SavedSession>(&d).ok())
            .filter(|s| s.version == STATE_VERSION);
        match parsed {
            Some(s) => sessions.push(s),
            None => {
                tracing::warn!(path = %path.display(), "skipping an unreadable emulator session")
            }
        }
    }
    // Segment numbers go on after the highest on disk, so no new file replaces an old one.
    let mut next = 0;
    for entry in std::fs::read_dir(root.join(SEGMENTS_DIR))? {
        let name = entry?.file_name();
        let n = name
            .to_string_lossy()
            .strip_suffix(".seg")
            .and_then(|s| s.rsplit('-').next())
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            next = next.max(n + 1);
        }
    }
    Ok((issued, sessions, next))
}
