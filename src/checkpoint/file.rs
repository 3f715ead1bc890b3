//! The embedded checkpoint store: one file per upload in a directory.

use std::fs;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{
    Checkpoint, CheckpointClaim, CheckpointKey, CheckpointStore, MAX_CHECKPOINT_BYTES,
    checkpoint_error, claimed_error,
};
use crate::error::{Error, Result};

/// The extension of checkpoint files: `ckpt`.
pub const CHECKPOINT_FILE_EXTENSION: &str = "ckpt";

/// The extension of the lock files that hold an upload's claim: `lock`.
pub const LOCK_FILE_EXTENSION: &str = "lock";

/// How many times a claim is tried again when the lock file it locked was removed meanwhile
/// by the previous holder (who removes it as it releases the claim).
///
/// Source: reasonable default; each retry needs another process to finish an upload of the
/// same file between two system calls of this one, so more than one retry is already rare.
const CLAIM_RACE_RETRIES: usize = 8;

/// Tells the temporary files of concurrent saves in one process apart.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Keeps each checkpoint in its own file, `<dir>/<key>.ckpt`. Needs no server.
///
/// - **Atomic:** a save writes a temporary file in the same directory, flushes it to disk,
///   renames it over the old file and flushes the directory, so a crash at any point leaves
///   either the old checkpoint or the new one, and a failed save leaves no temporary file.
/// - **Private:** on Unix the directory is created `0700` and every file `0600` (it names the
///   user's files; it holds no credential).
/// - **Safe to read:** a corrupt, truncated or foreign file is an
///   [`ErrorKind::Checkpoint`](crate::ErrorKind::Checkpoint) error, never a panic.
///
/// - **One owner:** [`claim`](CheckpointStore::claim) takes an exclusive OS file lock
///   (`flock` on Unix) on `<dir>/<key>.lock` and writes the process id into it, so a second
///   process is refused with that id; the kernel releases the lock when the process dies.
///
/// All file I/O runs on tokio's blocking pool.
///
/// ```no_run
/// use chunkwise::checkpoint::{CheckpointStore, FileCheckpointStore};
/// # async fn example() -> chunkwise::Result<()> {
/// let store = FileCheckpointStore::new("/home/me/.local/state/chunkwise");
/// for key in store.list().await? {
///     if let Some(cp) = store.load(&key).await? {
///         println!("{key}: {} of {} bytes sent", cp.acked_bytes(), cp.source.size);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    dir: Arc<PathBuf>,
}

impl FileCheckpointStore {
    /// A store in `dir`, which is created (with its parents) at the first save.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileCheckpointStore {
            dir: Arc::new(dir.into()),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the checkpoint under `key`.
    pub fn path_for(&self, key: &CheckpointKey) -> PathBuf {
        self.dir
            .join(format!("{}.{CHECKPOINT_FILE_EXTENSION}", key.as_str()))
    }

    /// The lock file of the claim of the upload under `key`.
    pub fn lock_path_for(&self, key: &CheckpointKey) -> PathBuf {
        self.dir
            .join(format!("{}.{LOCK_FILE_EXTENSION}", key.as_str()))
    }

    /// Runs `f` on the blocking pool with a copy of the store.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FileCheckpointStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| checkpoint_error("the checkpoint store task failed").with_source(e))?
    }

    fn load_blocking(&self, key: &CheckpointKey) -> Result<Option<Checkpoint>> {
        let path = self.path_for(key);
        // A FIFO named like a checkpoint must not hang `status` or `upload`; an oversized
        // file is noticed after one byte more than allowed (`from_bytes` names the size).
        let data = match read_regular_capped(&path, MAX_CHECKPOINT_BYTES) {
            Ok(data) => data,
            Err(CappedReadError::Io(e)) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(CappedReadError::Io(e)) => return Err(io_error("cannot read", &path, e)),
            Err(CappedReadError::NotRegular) => {
                return Err(checkpoint_error(format!(
                    "{} is not a regular file (a pipe, device or directory named like a \
                     checkpoint); remove it from the checkpoint directory",
                    path.display()
                )));
            }
        };
        Checkpoint::from_bytes(&data).map(Some).map_err(|e| {
            checkpoint_error(format!("cannot use the checkpoint {}", path.display())).with_source(e)
        })
    }

    fn save_blocking(&self, key: &CheckpointKey, data: &[u8]) -> Result<()> {
        create_private_dir(&self.dir)
            .map_err(|e| io_error("cannot create the directory", &self.dir, e))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{}.{}.{n}.tmp", key.as_str(), std::process::id()));
        let written = write_private(&temp, data).and_then(|()| {
            fs::rename(&temp, self.path_for(key))?;
            sync_dir(&self.dir)
        });
        written.map_err(|e| {
            // Best effort: the temporary file may not exist (open failed) or be gone already.
            let _ = fs::remove_file(&temp);
            io_error("cannot write the checkpoint in", &self.dir, e)
        })
    }

    fn remove_blocking(&self, key: &CheckpointKey) -> Result<()> {
        let path = self.path_for(key);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(|e| io_error("cannot sync", &self.dir, e)),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(io_error("cannot remove", &path, e)),
        }
    }

    fn claim_blocking(&self, key: &CheckpointKey) -> Result<FileClaim> {
        create_private_dir(&self.dir)
            .map_err(|e| io_error("cannot create the directory", &self.dir, e))?;
        let path = self.lock_path_for(key);
        for _ in 0..CLAIM_RACE_RETRIES {
            let mut options = fs::OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&path)
                .map_err(|e| io_error("cannot open the lock file", &path, e))?;
            let meta = file
                .metadata()
                .map_err(|e| io_error("cannot read the lock file", &path, e))?;
            if !meta.is_file() {
                return Err(checkpoint_error(format!(
                    "{} is not a regular file; remove it so that uploads can be locked",
                    path.display()
                )));
            }
            // fs4 rather than `File::try_lock`, which needs Rust 1.89 (the crate's MSRV is
            // 1.85): `flock(LOCK_EX | LOCK_NB)` on Unix, `LockFileEx` on Windows.
            match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
                Ok(true) => {}
                Ok(false) => {
                    let mut text = String::new();
                    // Best effort: the holder writes its id just after locking.
                    let _ = (&file).take(64).read_to_string(&mut text);
                    let holder = match text.trim().parse::<u32>() {
                        Ok(pid) => format!("process {pid} (lock file {})", path.display()),
                        Err(_) => format!("another process (lock file {})", path.display()),
                    };
                    return Err(claimed_error(key, &holder));
                }
                Err(e) => return Err(io_error("cannot lock", &path, e)),
            }
            // The previous holder removes the file as it lets go: a lock taken on a file
            // that is no longer at the path guards nothing, so take the one there now.
            if !still_at(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .map_err(|e| io_error("cannot write the lock file", &path, e))?;
            return Ok(FileClaim {
                file: Some(file),
                path,
            });
        }
        Err(checkpoint_error(format!(
            "cannot lock {}: it was replaced {CLAIM_RACE_RETRIES} times while locking it",
            path.display()
        )))
    }

    fn list_blocking(&self) -> Result<Vec<CheckpointKey>> {
        let entries = match fs::read_dir(&*self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("cannot list", &self.dir, e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name
                .to_str()
                .and_then(|n| n.strip_suffix(CHECKPOINT_FILE_EXTENSION))
                .and_then(|n| n.strip_suffix('.'))
            else {
                continue;
            };
            // Temporary files start with a dot, which no key has; other names are not ours.
            if let Ok(key) = CheckpointKey::parse(stem) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }
}

impl CheckpointStore for FileCheckpointStore {
    fn load<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<Option<Checkpoint>>> {
        let key = key.clone();
        self.blocking(move |s| s.load_blocking(&key)).boxed()
    }

    fn save<'a>(
        &'a self,
        key: &'a CheckpointKey,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            // Serialising a few KiB is CPU work, fine on the runtime; the I/O is not.
            let data = checkpoint.to_bytes()?;
            let key = key.clone();
            self.blocking(move |s| s.save_blocking(&key, &data)).await
        }
        .boxed()
    }

    fn remove<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<()>> {
        let key = key.clone();
        self.blocking(move |s| s.remove_blocking(&key)).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointKey>>> {
        self.blocking(FileCheckpointStore::list_blocking).boxed()
    }

    fn claim<'a>(&'a self, key: &'a CheckpointKey) -> BoxFuture<'a, Result<CheckpointClaim>> {
        let key = key.clone();
        async move {
            let claim = self.blocking(move |s| s.claim_blocking(&key)).await?;
            Ok(CheckpointClaim::new(claim))
        }
        .boxed()
    }
}

/// A held lock file. Dropping it removes the file, then unlocks it by closing it, on the
/// blocking pool when a tokio runtime is there.
#[derive(Debug)]
struct FileClaim {
    file: Option<fs::File>,
    path: PathBuf,
}

impl Drop for FileClaim {
    fn drop(&mut self) {
        let (file, path) = (self.file.take(), std::mem::take(&mut self.path));
        let release = move || {
            // Removed while still locked, so nobody can lock this file after us; a waiter
            // that had opened it notices it is gone (see `claim_blocking`).
            let _ = fs::remove_file(&path);
            drop(file);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(release);
            }
            Err(_) => release(),
        }
    }
}

/// Whether `file` is still the file at `path`.
fn still_at(file: &fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// Why [`read_regular_capped`] read nothing.
#[derive(Debug)]
pub(crate) enum CappedReadError {
    /// The path is not a regular file (a FIFO, a device, a directory, a socket).
    NotRegular,
    /// Opening or reading failed (`NotFound` for a missing file).
    Io(std::io::Error),
}

/// Reads the regular file at `path`, at most `cap + 1` bytes of it (so a caller can tell a
/// file over `cap` from one at it, without reading a huge file or `/dev/zero` whole).
///
/// Special files are refused before they are opened, since opening a FIFO for reading blocks
/// until a writer comes, and again on the opened file, in case the path was swapped between
/// the check and the open. Blocking I/O: call it off the async runtime.
pub(crate) fn read_regular_capped(
    path: &Path,
    cap: u64,
) -> std::result::Result<Vec<u8>, CappedReadError> {
    if !fs::metadata(path).map_err(CappedReadError::Io)?.is_file() {
        return Err(CappedReadError::NotRegular);
    }
    let file = fs::File::open(path).map_err(CappedReadError::Io)?;
    if !file.metadata().map_err(CappedReadError::Io)?.is_file() {
        return Err(CappedReadError::NotRegular);
    }
    let mut data = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(CappedReadError::Io)?;
    Ok(data)
}

/// An [`ErrorKind::Checkpoint`](crate::ErrorKind::Checkpoint) error for a failed file
/// operation on `path`.
fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    checkpoint_error(format!(
        "{what} {}; check the checkpoint directory's permissions and free space",
        path.display()
    ))
    .with_source(e)
}

/// Creates `dir` and its parents, owner-only on Unix.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `data` to a new file at `path`, owner-only on Unix, and flushes it to disk.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Flushes a directory's entries (a rename or removal) to disk. On Unix a directory is
/// opened and synced; elsewhere this is not possible through std and is skipped.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
