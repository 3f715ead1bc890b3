//! Checkpoint format, keys, identities and the file store.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::engine::Source;
use crate::scheduler::FixedStrategy;

/// A checkpoint of a 1000-byte source cut into 300-byte segments, 0 and 2 acknowledged.
pub(crate) fn sample() -> Checkpoint {
    let mut plan = Plan::new(1000, 400).unwrap();
    let mut s = FixedStrategy::new(300, 1, Duration::from_secs(1));
    let now = tokio::time::Instant::now();
    for _ in 0..3 {
        plan.next_segment(&mut s, now).unwrap();
    }
    Checkpoint {
        target: ProtocolTarget {
            api: "x-v2".into(),
            base_url: "http://127.0.0.1:9/".into(),
        },
        media_id: MediaId::from("1880000000000000000"),
        media_key: Some("7_1880000000000000000".into()),
        expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)),
        source: SourceIdentity {
            path: Some("/videos/clip.mp4".into()),
            size: 1000,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123)),
            fingerprint: "ab".repeat(32),
        },
        spec: MediaSpec::new("video/mp4"),
        plan,
        acked: [0, 2].into(),
        strategy_state: Some(serde_json::json!({"rate": 1.5e6, "rtt_ms": [10, 20]})),
        saved_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100),
    }
}

fn kind_and_text(data: &[u8]) -> (ErrorKind, String) {
    let e = Checkpoint::from_bytes(data).unwrap_err();
    (e.kind(), e.to_string())
}

#[test]
fn round_trips_through_the_file_format() {
    let cp = sample();
    let bytes = cp.to_bytes().unwrap();
    let header_end = bytes.iter().position(|b| *b == b'\n').unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes[..header_end]).unwrap();
    assert_eq!(header["format"], CHECKPOINT_MAGIC);
    assert_eq!(header["version"], CHECKPOINT_FORMAT_VERSION);
    let back = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(back, cp);
    assert_eq!(back.key(), cp.key());
    assert_eq!(back.acked_bytes(), 300 + 300);
    let pending: Vec<u32> = back.pending_segments().iter().map(|s| s.index).collect();
    assert_eq!(pending, [1]);
}

#[test]
fn truncated_corrupt_foreign_and_other_versions_are_typed_errors() {
    let good = sample().to_bytes().unwrap();
    let header_end = good.iter().position(|b| *b == b'\n').unwrap();

    // Truncated anywhere: in the body, right after the header, inside the header, empty.
    for cut in [
        good.len() - 1,
        good.len() / 2,
        header_end + 1,
        header_end,
        10,
        0,
    ] {
        let (kind, text) = kind_and_text(&good[..cut]);
        assert_eq!(kind, ErrorKind::Checkpoint, "cut at {cut}");
        assert!(
            text.contains("truncated") || text.contains("not a chunkwise checkpoint"),
            "cut at {cut}: {text}"
        );
    }

    // One flipped byte in the body (a digit of an offset): the checksum catches it.
    let mut flipped = good.clone();
    let at = header_end
        + 1
        + flipped[header_end + 1..]
            .iter()
            .position(|b| b.is_ascii_digit())
            .unwrap();
    flipped[at] = if flipped[at] == b'9' {
        b'8'
    } else {
        flipped[at] + 1
    };
    let (kind, text) = kind_and_text(&flipped);
    assert_eq!(kind, ErrorKind::Checkpoint);
    assert!(text.contains("checksum"), "{text}");

    // Foreign files.
    for foreign in [
        &b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..],
        b"{\"format\":\"other-tool\",\"version\":1}\n{}",
        b"[1,2,3]\n",
        b"plain text without a newline",
    ] {
        let (kind, text) = kind_and_text(foreign);
        assert_eq!(kind, ErrorKind::Checkpoint);
        assert!(text.contains("not a chunkwise checkpoint"), "{text}");
    }

    // Another format version, newer or missing.
    let rest = &good[header_end..];
    for (header, shown) in [
        (
            r#"{"format":"chunkwise-checkpoint","version":2}"#,
            "version 2",
        ),
        (r#"{"format":"chunkwise-checkpoint"}"#, "an unknown"),
    ] {
        let mut data = header.as_bytes().to_vec();
        data.extend_from_slice(rest);
        let (kind, text) = kind_and_text(&data);
        assert_eq!(kind, ErrorKind::Checkpoint);
        assert!(text.contains(shown), "{text}");
    }

    // A valid header over a body that is not a checkpoint.
    let body = br#"{"hello":"world"}"#;
    let mut data = format!(
        r#"{{"format":"chunkwise-checkpoint","version":1,"body_bytes":{},"sha256":"{}"}}"#,
        body.len(),
        identity::hex(&Sha256::digest(body))
    )
    .into_bytes();
    data.push(b'\n');
    data.extend_from_slice(body);
    let (kind, text) = kind_and_text(&data);
    assert_eq!(kind, ErrorKind::Checkpoint);
    assert!(text.contains("not a checkpoint"), "{text}");

    // Too large to be ours.
    let big = vec![b' '; MAX_CHECKPOINT_BYTES as usize + 1];
    assert!(kind_and_text(&big).1.contains("more than"));
}

#[test]
fn inconsistent_contents_are_refused_even_with_a_good_checksum() {
    let mut cp = sample();
    cp.acked.insert(7);
    let e = Checkpoint::from_bytes(&cp.to_bytes().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checkpoint);
    assert!(e.to_string().contains("segment 7"), "{e}");

    let mut cp = sample();
    cp.source.size = 999;
    assert!(cp.validate().unwrap_err().to_string().contains("999"));

    let mut cp = sample();
    cp.media_id = MediaId::from("");
    assert_eq!(cp.validate().unwrap_err().kind(), ErrorKind::Checkpoint);

    // A plan with a gap, edited through its serialised form.
    let mut json = serde_json::to_value(sample()).unwrap();
    json["plan"]["segments"][1]["offset"] = 301.into();
    let cp: Checkpoint = serde_json::from_value(json).unwrap();
    let e = cp.validate().unwrap_err();
    assert!(e.to_string().contains("does not follow"), "{e}");
}

#[test]
fn expiry_has_a_safety_margin() {
    let mut cp = sample();
    let now = SystemTime::now();
    cp.expires_at = Some(now + Duration::from_secs(3600));
    assert!(!cp.is_expired(now));
    cp.expires_at = Some(now + RESUME_EXPIRY_MARGIN / 2);
    assert!(cp.is_expired(now));
    cp.expires_at = Some(now - Duration::from_secs(1));
    assert!(cp.is_expired(now));
    cp.expires_at = None;
    assert!(!cp.is_expired(now));
}

#[test]
fn keys_are_stable_and_tell_uploads_apart() {
    let cp = sample();
    let key = cp.key();
    assert_eq!(key.as_str().len(), 32);
    assert!(key.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    let mut other = cp.clone();
    other.target.base_url = "https://api.x.com/".into();
    assert_ne!(other.key(), key);
    let mut other = cp.clone();
    other.target.api = "x-v1.1".into();
    assert_ne!(other.key(), key);
    let mut other = cp.clone();
    other.source.path = Some("/videos/other.mp4".into());
    assert_ne!(other.key(), key);
    // Progress and expiry do not change the key: it names the upload, not its state.
    let mut other = cp.clone();
    other.acked.insert(1);
    other.expires_at = None;
    assert_eq!(other.key(), key);

    for bad in [
        "",
        "../etc/passwd",
        "a b",
        "ключ",
        &"k".repeat(MAX_KEY_CHARS + 1),
    ] {
        let e = CheckpointKey::parse(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    assert_eq!(
        CheckpointKey::parse("my-upload_1").unwrap().as_str(),
        "my-upload_1"
    );
    // A key read back from JSON is checked too.
    assert!(serde_json::from_str::<CheckpointKey>("\"../x\"").is_err());
}

fn temp_file(data: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    f.flush().unwrap();
    f
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn identity_notices_size_time_and_sampled_content() {
    let data = pattern(1_000_000);
    let f = temp_file(&data);
    let first = SourceIdentity::of(&Source::file(f.path()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(first.size, 1_000_000);
    assert!(first.modified.is_some());
    assert_eq!(
        first.path.as_deref(),
        Some(&*std::fs::canonicalize(f.path()).unwrap().to_string_lossy())
    );
    // The same bytes in memory have the same fingerprint.
    let mem = SourceIdentity::of(&Source::bytes(data.clone()))
        .await
        .unwrap();
    assert_eq!(mem.fingerprint, first.fingerprint);
    assert_eq!(mem.path, None);
    first.check_unchanged(&first.clone()).unwrap();

    // A change in the middle sample, with the size and modification time kept.
    let mut edited = data.clone();
    edited[500_000] ^= 0xff;
    let changed = SourceIdentity::of(&Source::bytes(edited)).await.unwrap();
    let e = mem.check_unchanged(&changed).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checkpoint);
    assert!(e.to_string().contains("content changed"), "{e}");

    let later = SourceIdentity {
        modified: first.modified.map(|t| t + Duration::from_secs(1)),
        ..first.clone()
    };
    assert!(
        first
            .check_unchanged(&later)
            .unwrap_err()
            .to_string()
            .contains("modification time")
    );
    let shorter = SourceIdentity::of(&Source::bytes(data[..999_999].to_vec()))
        .await
        .unwrap();
    assert!(
        mem.check_unchanged(&shorter)
            .unwrap_err()
            .to_string()
            .contains("size changed")
    );

    // Tiny sources (overlapping samples) work.
    let one = SourceIdentity::of(&Source::bytes(Bytes::from_static(b"x")))
        .await
        .unwrap();
    assert_eq!(one.size, 1);
    assert_ne!(one.fingerprint, mem.fingerprint);
}

// ===== the file store =====

fn tmp_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[tokio::test]
async fn file_store_saves_loads_lists_and_removes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state").join("chunkwise");
    let store = FileCheckpointStore::new(&dir);
    assert!(
        store.list().await.unwrap().is_empty(),
        "missing dir lists empty"
    );
    let cp = sample();
    let key = cp.key();
    assert_eq!(store.load(&key).await.unwrap(), None);

    store.save(&key, &cp).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(cp.clone()));
    // Overwrite with more progress.
    let mut more = cp.clone();
    more.acked.insert(1);
    store.save(&key, &more).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(more));
    assert!(
        tmp_names(&dir).is_empty(),
        "temp files left: {:?}",
        tmp_names(&dir)
    );

    // Other files in the directory are not listed.
    std::fs::write(dir.join("notes.txt"), "hi").unwrap();
    std::fs::write(dir.join("bad key.ckpt"), "x").unwrap();
    let other = CheckpointKey::parse("another").unwrap();
    store.save(&other, &cp).await.unwrap();
    let mut expected = vec![key.clone(), other.clone()];
    expected.sort();
    assert_eq!(store.list().await.unwrap(), expected);

    store.remove(&key).await.unwrap();
    store.remove(&key).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), None);
    assert_eq!(store.list().await.unwrap(), [other]);
}

#[cfg(unix)]
#[tokio::test]
async fn file_store_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ckpts");
    let store = FileCheckpointStore::new(&dir);
    let cp = sample();
    store.save(&cp.key(), &cp).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&store.path_for(&cp.key())), 0o600);
    assert_eq!(mode(&dir), 0o700);
}

/// A file store in a new temporary directory, and the sample checkpoint with its key.
fn file_store() -> (
    tempfile::TempDir,
    FileCheckpointStore,
    Checkpoint,
    CheckpointKey,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileCheckpointStore::new(dir.path());
    let cp = sample();
    let key = cp.key();
    (dir, store, cp, key)
}

#[tokio::test]
async fn file_store_reports_bad_files_and_failed_writes_as_typed_errors() {
    let (dir, store, cp, key) = file_store();
    let good = cp.to_bytes().unwrap();

    let path = store.path_for(&key);
    for bad in [&good[..good.len() - 3], b"garbage", b""] {
        std::fs::write(&path, bad).unwrap();
        let e = store.load(&key).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Checkpoint);
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    }
    // A huge file is not read whole.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(MAX_CHECKPOINT_BYTES * 4).unwrap();
    assert!(
        store
            .load(&key)
            .await
            .unwrap_err()
            .to_string()
            .contains("more than")
    );

    // A FIFO named like a checkpoint is refused, not opened (which would wait for a writer).
    #[cfg(unix)]
    {
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success());
        let load = tokio::time::timeout(std::time::Duration::from_secs(10), store.load(&key));
        let e = load.await.expect("no wait on a FIFO").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Checkpoint);
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    // The rename fails (a directory sits where the file goes): the temp file is cleaned up.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), "x").unwrap();
    let e = store.save(&key, &cp).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checkpoint);
    assert!(tmp_names(dir.path()).is_empty());

    // The directory cannot be created (a file is in the way).
    let blocked = FileCheckpointStore::new(dir.path().join("keep-file").join("sub"));
    std::fs::write(dir.path().join("keep-file"), "x").unwrap();
    let e = blocked.save(&key, &cp).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Checkpoint);
    assert!(e.to_string().contains("cannot create the directory"), "{e}");
}

#[tokio::test]
async fn concurrent_saves_leave_one_whole_checkpoint() {
    let (dir, store, cp, key) = file_store();
    let saves = (0..8u32).map(|i| {
        let mut c = cp.clone();
        c.strategy_state = Some(serde_json::json!({ "i": i }));
        let store = store.clone();
        let key = key.clone();
        async move { store.save(&key, &c).await }
    });
    for r in futures::future::join_all(saves).await {
        r.unwrap();
    }
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert!(loaded.strategy_state.unwrap()["i"].as_u64().unwrap() < 8);
    assert!(tmp_names(dir.path()).is_empty());
}

#[tokio::test]
async fn memory_store_round_trips_and_rejects_corrupt_data() {
    let store = MemoryCheckpointStore::new();
    let cp = sample();
    let key = cp.key();
    store.save(&key, &cp).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(cp));
    assert_eq!(store.list().await.unwrap(), std::slice::from_ref(&key));
    store.insert_raw(key.clone(), b"junk".to_vec());
    assert_eq!(
        store.load(&key).await.unwrap_err().kind(),
        ErrorKind::Checkpoint
    );
    store.remove(&key).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(5), ..ProptestConfig::default() })]

    /// The reader never panics on arbitrary bytes.
    #[test]
    fn reader_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Checkpoint::from_bytes(&data);
    }

    /// Nor on a valid checkpoint with bytes overwritten or cut off.
    #[test]
    fn reader_never_panics_on_damaged_checkpoints(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = sample().to_bytes().unwrap();
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        let keep = cut.index(data.len() + 1);
        if let Ok(cp) = Checkpoint::from_bytes(&data[..keep]) {
            // Only the undamaged whole may read back.
            prop_assert_eq!(cp, sample());
        }
    }
}

#[test]
fn media_ids_must_have_the_documented_form() {
    // X targets: decimal ids.
    for bad in [
        "../../../etc/passwd",
        "",
        "12 34",
        "12/34",
        "\u{1b}[2J",
        "123456789012345678901",
        "-1",
    ] {
        let mut cp = sample();
        cp.media_id = MediaId::from(bad);
        let e = Checkpoint::from_bytes(&cp.to_bytes().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Checkpoint, "{bad:?}");
        assert!(e.to_string().contains("media id"), "{e}");
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
    }
    let mut cp = sample();
    cp.media_id = MediaId::from("18446744073709551615");
    // The media key is informational and not checked.
    cp.media_key = Some("7_1\u{7}".into());
    cp.validate().unwrap();

    // Other targets: a file-name-safe alphabet.
    let mut cp = sample();
    cp.target.api = "custom".into();
    cp.media_id = MediaId::from("upload-42_a");
    cp.media_key = Some("key-1".into());
    cp.validate().unwrap();
    cp.media_id = MediaId::from("../x");
    assert!(cp.validate().is_err());
}
