//! What is uploaded: a file on disk read segment by segment, or bytes already in memory.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, ErrorKind, Result};

/// The bytes of one upload.
///
/// A file source keeps an open handle, its length and modification time, and reads each
/// segment with a positional read on tokio's blocking pool each time the segment is sent
/// (a retry reads it again), so at most the segments in flight are in memory, never the
/// whole file. If the file changes size or modification time while it is uploaded, the next
/// read fails with [`ErrorKind::Io`] ("source changed size during the upload", "source was
/// modified during the upload").
///
/// `Source` is cheap to clone.
///
/// ```
/// use bytes::Bytes;
/// use chunkwise::Source;
/// let s = Source::bytes(Bytes::from_static(b"hello"));
/// assert_eq!(s.len(), 5);
/// ```
#[derive(Clone)]
pub struct Source {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    File {
        file: Arc<File>,
        path: Arc<PathBuf>,
        len: u64,
        /// The modification time when the file was opened, if the platform reports one.
        modified: Option<SystemTime>,
        /// Segment buffers to read into, shared by the clones of this source.
        pool: Arc<BufferPool>,
    },
    Bytes(Bytes),
}

/// Most free segment buffers a file source keeps for reuse.
///
/// Source: the pool only ever holds buffers that were in use at the same time, so it never
/// exceeds the peak number of APPENDs in flight; this cap (the adaptive controller's
/// `MAX_PARALLELISM_LIMIT`, 32) only guards against a strategy that allows more.
pub(crate) const MAX_POOLED_BUFFERS: usize = 32;

/// Free segment buffers of a file source, reused from one segment to the next.
///
/// Why: segment buffers are megabytes each and short-lived. With glibc's malloc, once the
/// first one is freed the mmap threshold rises above that size, later ones come from the
/// per-thread arenas, and freed segments stay resident: a 1 GiB upload with 8 × 5 MiB in
/// flight peaked at 121.6 MiB instead of about 48 MiB (BENCHMARKS.md, "Memory"). Reusing the
/// buffers keeps the peak at the bytes in flight whatever the allocator.
#[derive(Debug, Default)]
struct BufferPool {
    free: std::sync::Mutex<Vec<BytesMut>>,
}

impl BufferPool {
    /// A free buffer, or a new empty one.
    fn take(&self) -> BytesMut {
        self.free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_default()
    }

    /// Keeps `buf` for reuse if nothing else refers to it and the pool is not full.
    fn put(&self, buf: Bytes) {
        let Ok(mut buf) = buf.try_into_mut() else {
            return;
        };
        buf.clear();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < MAX_POOLED_BUFFERS {
                free.push(buf);
            }
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::File { path, len, .. } => f
                .debug_struct("Source::File")
                .field("path", path)
                .field("len", len)
                .finish(),
            Inner::Bytes(b) => f
                .debug_struct("Source::Bytes")
                .field("len", &b.len())
                .finish(),
        }
    }
}

impl Source {
    /// Opens `path` for upload.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the file cannot be opened or read (missing, no permission);
    /// [`ErrorKind::InvalidInput`] if it is not a regular file (a directory, a pipe) or is
    /// empty.
    pub async fn file(path: impl AsRef<Path>) -> Result<Source> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        // Refuse special files before opening: opening a FIFO blocks until a writer comes.
        // (A missing path falls through to the open, which reports it.)
        let probe = path.clone();
        if let Ok(Ok(meta)) = tokio::task::spawn_blocking(move || std::fs::metadata(probe)).await {
            if !meta.is_file() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{shown} is not a regular file"),
                ));
            }
        }
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<(File, PathBuf)> {
            let file = File::open(&path)?;
            Ok((file, path))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("opening {shown} failed")).with_source(e))?;
        let (file, path) = opened.map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot open {shown}; check the path and permissions"),
            )
            .with_source(e)
        })?;
        let file = Arc::new(file);
        let meta_file = Arc::clone(&file);
        let meta = tokio::task::spawn_blocking(move || meta_file.metadata())
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("reading {shown} failed")).with_source(e)
            })?
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot read the metadata of {shown}"),
                )
                .with_source(e)
            })?;
        if !meta.is_file() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{shown} is not a regular file"),
            ));
        }
        if meta.len() == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{shown} is empty; there is nothing to upload"),
            ));
        }
        Ok(Source {
            inner: Inner::File {
                file,
                path: Arc::new(path),
                len: meta.len(),
                modified: meta.modified().ok(),
                pool: Arc::default(),
            },
        })
    }

    /// Bytes already in memory. An empty buffer is accepted here and rejected when the upload
    /// is planned.
    pub fn bytes(data: impl Into<Bytes>) -> Source {
        Source {
            inner: Inner::Bytes(data.into()),
        }
    }

    /// The length in bytes (of a file: its length when it was opened).
    pub fn len(&self) -> u64 {
        match &self.inner {
            Inner::File { len, .. } => *len,
            Inner::Bytes(b) => b.len() as u64,
        }
    }

    /// Whether the source holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path of a file source.
    pub fn path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::File { path, .. } => Some(path.as_path()),
            Inner::Bytes(_) => None,
        }
    }

    /// The modification time of a file source when it was opened (`None` for bytes, or where
    /// the platform has none).
    pub fn modified(&self) -> Option<SystemTime> {
        match &self.inner {
            Inner::File { modified, .. } => *modified,
            Inner::Bytes(_) => None,
        }
    }

    /// Reads `len` bytes at `offset`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if the range lies outside the source;
    /// [`ErrorKind::Io`] if the read fails, or if the file no longer has the length it had
    /// when it was opened.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        let end = offset.checked_add(len).filter(|end| *end <= self.len());
        if end.is_none() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "read of {len} bytes at offset {offset} is outside the source of {} bytes",
                    self.len()
                ),
            ));
        }
        match &self.inner {
            Inner::Bytes(b) => {
                // In range (checked above), so the casts cannot truncate.
                let start = offset as usize;
                Ok(b.slice(start..start + len as usize))
            }
            Inner::File {
                file,
                len: expected,
                modified,
                pool,
                ..
            } => {
                let file = Arc::clone(file);
                let expected = (*expected, *modified);
                let buf = pool.take();
                tokio::task::spawn_blocking(move || read_segment(&file, expected, offset, len, buf))
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Io, "reading the source failed").with_source(e)
                    })?
            }
        }
    }

    /// Hands back a segment read by [`read`](Self::read) once nothing else uses it, so its
    /// buffer serves a later segment (file sources only; a no-op otherwise).
    pub(crate) fn recycle(&self, segment: Bytes) {
        if let Inner::File { pool, .. } = &self.inner {
            pool.put(segment);
        }
    }
}

/// The error for a file whose length is no longer the one it had when it was opened.
fn changed_size(expected: u64, now: Option<u64>) -> Error {
    let now = now.map_or_else(|| "fewer".to_string(), |n| n.to_string());
    Error::new(
        ErrorKind::Io,
        format!(
            "source changed size during the upload (was {expected} bytes, now {now}); \
             upload a file that is no longer being written"
        ),
    )
}

/// Reads one segment with a positional read (no shared file cursor, so segments can be read
/// concurrently), after checking that the file still has the length and modification time
/// it had when it was opened: a retried or resumed segment is read again, and must be the
/// same bytes. Runs on the blocking pool.
fn read_segment(
    file: &File,
    (expected, modified): (u64, Option<SystemTime>),
    offset: u64,
    len: u64,
    mut buf: BytesMut,
) -> Result<Bytes> {
    let meta = file.metadata()?;
    let actual = meta.len();
    if actual != expected {
        return Err(changed_size(expected, Some(actual)));
    }
    if modified.is_some() && meta.modified().ok() != modified {
        return Err(Error::new(
            ErrorKind::Io,
            "source was modified during the upload (its modification time changed); upload a \
             file that is no longer being written",
        ));
    }
    let size = usize::try_from(len).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("a segment of {len} bytes does not fit in memory"),
        )
    })?;
    buf.clear();
    buf.resize(size, 0);
    match read_exact_at(file, &mut buf, offset) {
        Ok(()) => Ok(buf.freeze()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(changed_size(expected, None).with_source(e))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    // std has no `read_exact_at` on Windows; `seek_read` may return short counts.
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn read_exact_at(_file: &File, _buf: &mut [u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "positional file reads are not supported on this platform; use Source::bytes",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A recycled segment's buffer serves the next read (what keeps peak memory at the bytes in
    /// flight); one still referenced elsewhere is not taken back.
    #[tokio::test]
    async fn recycled_buffers_are_reused_only_when_free() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[7u8; 4096]).unwrap();
        let s = Source::file(f.path()).await.unwrap();
        let a = s.read(0, 1024).await.unwrap();
        let ptr = a.as_ptr();
        s.recycle(a);
        let b = s.read(1024, 1024).await.unwrap();
        assert_eq!(b.as_ptr(), ptr, "the buffer was reused");
        assert_eq!(&b[..], &[7u8; 1024][..]);
        let held = b.clone();
        s.recycle(b);
        let c = s.read(2048, 1024).await.unwrap();
        assert_ne!(
            c.as_ptr(),
            held.as_ptr(),
            "a buffer still in use is not handed out"
        );
        assert_eq!(&held[..], &[7u8; 1024][..]);
    }

    fn temp_file(data: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        f.flush().unwrap();
        f
    }

    #[tokio::test]
    async fn file_reads_ranges() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let f = temp_file(&data);
        let s = Source::file(f.path()).await.unwrap();
        assert_eq!(s.len(), 10_000);
        assert_eq!(s.path(), Some(f.path()));
        assert_eq!(&s.read(0, 10).await.unwrap()[..], &data[..10]);
        assert_eq!(&s.read(9_990, 10).await.unwrap()[..], &data[9_990..]);
        let e = s.read(9_995, 10).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn missing_path_is_io() {
        let dir = tempfile::tempdir().unwrap();
        let e = Source::file(dir.path().join("nope.mp4")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("nope.mp4"), "{e}");
    }

    #[tokio::test]
    async fn directory_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let e = Source::file(dir.path()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[tokio::test]
    async fn empty_file_is_invalid_input() {
        let f = temp_file(b"");
        let e = Source::file(f.path()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[tokio::test]
    async fn shrunk_or_grown_file_is_reported() {
        let f = temp_file(&[7u8; 1000]);
        let s = Source::file(f.path()).await.unwrap();
        f.as_file().set_len(500).unwrap();
        let e = s.read(0, 100).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("changed size"), "{e}");
        f.as_file().set_len(2000).unwrap();
        let e = s.read(0, 100).await.unwrap_err();
        assert!(e.to_string().contains("changed size"), "{e}");
    }

    #[tokio::test]
    async fn bytes_source_slices() {
        let s = Source::bytes(Bytes::from_static(b"0123456789"));
        assert_eq!(&s.read(3, 4).await.unwrap()[..], b"3456");
        assert!(!s.is_empty());
        assert!(Source::bytes(Bytes::new()).is_empty());
        assert_eq!(
            s.read(u64::MAX, 2).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
