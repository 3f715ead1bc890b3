//! Segment storage: in memory as the `Bytes` received, or spilled to files in a temporary
//! directory once a media holds more than the spill threshold in memory. Assembly and SHA-256
//! stream from the files.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncReadExt;

/// Read buffer for spilled segments.
///
/// Source: reasonable default (64 KiB reads keep syscalls few and memory small).
const READ_BUF: usize = 64 * 1024;

/// How many leading bytes of a media are kept for type sniffing (PNG/GIF dimensions).
pub(crate) const HEAD_LEN: usize = 32;

/// One stored segment.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// The bytes as received.
    Memory(Bytes),
    /// Written to a file of `len` bytes.
    File { path: PathBuf, len: u64 },
}

impl Segment {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Segment::Memory(b) => b.len() as u64,
            Segment::File { len, .. } => *len,
        }
    }

    /// The in-memory size (0 for spilled segments).
    pub(crate) fn memory(&self) -> u64 {
        match self {
            Segment::Memory(b) => b.len() as u64,
            Segment::File { .. } => 0,
        }
    }

    /// The file to delete when this segment is dropped from a session.
    pub(crate) fn file(&self) -> Option<&Path> {
        match self {
            Segment::Memory(_) => None,
            Segment::File { path, .. } => Some(path),
        }
    }
}

/// The emulator's spill directory (deleted on shutdown).
#[derive(Debug)]
pub(crate) struct SpillDir {
    path: PathBuf,
    dir: Mutex<Option<tempfile::TempDir>>,
    next: AtomicU64,
}

impl SpillDir {
    /// Creates a fresh temporary directory under `parent` (or the system temp dir).
    pub(crate) async fn create(parent: Option<PathBuf>) -> io::Result<SpillDir> {
        let dir = tokio::task::spawn_blocking(move || {
            let mut b = tempfile::Builder::new();
            b.prefix("chunkwise-emulator-");
            match parent {
                Some(p) => b.tempdir_in(p),
                None => b.tempdir(),
            }
        })
        .await
        .map_err(io::Error::other)??;
        Ok(SpillDir {
            path: dir.path().to_path_buf(),
            dir: Mutex::new(Some(dir)),
            next: AtomicU64::new(0),
        })
    }

    /// Writes one segment to a new file (a unique name, so a re-sent index never overwrites
    /// a file another task may be reading).
    pub(crate) async fn write(&self, media: u64, index: u32, data: &Bytes) -> io::Result<Segment> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.path.join(format!("{media}-{index}-{n}.part"));
        tokio::fs::write(&path, data).await?;
        Ok(Segment::File {
            path,
            len: data.len() as u64,
        })
    }

    /// Takes the directory out, to be deleted off the async runtime.
    pub(crate) fn take(&self) -> Option<tempfile::TempDir> {
        self.dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Deletes spilled files in the background (errors ignored: the directory goes at shutdown).
pub(crate) fn remove_files(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for p in paths {
                let _ = tokio::fs::remove_file(p).await;
            }
        });
    }
}

/// Feeds every segment, in order, to `sink`.
async fn for_each_chunk(segments: &[Segment], mut sink: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    for seg in segments {
        match seg {
            Segment::Memory(b) => sink(b),
            Segment::File { path, len } => {
                let mut f = tokio::fs::File::open(path).await?;
                let mut left = *len;
                while left > 0 {
                    let n = f.read(&mut buf).await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "spilled segment is shorter than recorded",
                        ));
                    }
                    let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
                    sink(&buf[..n]);
                    left -= n as u64;
                }
            }
        }
    }
    Ok(())
}

/// SHA-256 of the concatenated segments and their first [`HEAD_LEN`] bytes.
pub(crate) async fn digest(segments: &[Segment]) -> io::Result<([u8; 32], Vec<u8>)> {
    let mut h = Sha256::new();
    let mut head = Vec::with_capacity(HEAD_LEN);
    for_each_chunk(segments, |chunk| {
        h.update(chunk);
        if head.len() < HEAD_LEN {
            let take = (HEAD_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
    })
    .await?;
    Ok((h.finalize().into(), head))
}

/// The concatenated segments.
pub(crate) async fn assemble(segments: &[Segment]) -> io::Result<Vec<u8>> {
    let total: u64 = segments.iter().map(Segment::len).sum();
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for_each_chunk(segments, |chunk| out.extend_from_slice(chunk)).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spilled_and_memory_segments_hash_alike() {
        let dir = SpillDir::create(None).await.unwrap();
        let a = Bytes::from(vec![7u8; 100_000]);
        let b = Bytes::from_static(b"tail");
        let spilled = vec![
            dir.write(1, 0, &a).await.unwrap(),
            Segment::Memory(b.clone()),
        ];
        let memory = vec![Segment::Memory(a.clone()), Segment::Memory(b)];
        let (h1, head1) = digest(&spilled).await.unwrap();
        let (h2, head2) = digest(&memory).await.unwrap();
        assert_eq!(h1, h2);
        assert_eq!(head1, head2);
        assert_eq!(head1.len(), HEAD_LEN);
        assert_eq!(
            assemble(&spilled).await.unwrap(),
            assemble(&memory).await.unwrap()
        );
        let path = spilled[0].file().unwrap().to_path_buf();
        assert!(tokio::fs::metadata(&path).await.is_ok());
        let d = dir.take().unwrap();
        tokio::task::spawn_blocking(move || drop(d)).await.unwrap();
        assert!(tokio::fs::metadata(&path).await.is_err());
    }
}
