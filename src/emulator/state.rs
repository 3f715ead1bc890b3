//! Upload sessions and the operations on them (INIT, APPEND, FINALIZE, STATUS), independent
//! of the wire format; `v1` and `v2` render the results and errors in their own shapes.

use super::config::{EmulatorConfig, ProcessingTimeline};
use super::faults::mix64;
use super::persist::{self, STATE_VERSION, SavedPhase, SavedSegment, SavedSession, StateDir};
use super::store::{self, Segment, SpillDir};
use crate::error::ServerMessage;
use crate::limits::MediaCategory;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The emulator's clock: tokio time (so paused-time tests control it) plus a manual offset
/// ([`super::EmulatorHandle::advance_clock`]), mapped to epoch seconds from the start.
#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
    start_epoch: Duration,
    offset_nanos: AtomicU64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            start: Instant::now(),
            start_epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            offset_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        later(
            Instant::now(),
            Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed)),
        )
    }

    pub(crate) fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    pub(crate) fn epoch_secs(&self, t: Instant) -> u64 {
        self.start_epoch
            .saturating_add(self.since_start(t))
            .as_secs()
    }

    /// `t` as milliseconds since the Unix epoch (for the state directory).
    pub(crate) fn epoch_ms(&self, t: Instant) -> u64 {
        u64::try_from(
            self.start_epoch
                .saturating_add(self.since_start(t))
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    }

    /// The instant of `ms` milliseconds since the Unix epoch (before the start if earlier).
    pub(crate) fn instant_at_epoch_ms(&self, ms: u64) -> Instant {
        let at = Duration::from_millis(ms);
        match at.checked_sub(self.start_epoch) {
            Some(after) => later(self.start, after),
            None => self
                .start
                .checked_sub(self.start_epoch - at)
                .unwrap_or(self.start),
        }
    }

    pub(crate) fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(nanos))
            });
    }
}

/// How far an absurdly long configured duration reaches instead (about 136 years).
///
/// Source: arbitrary; far beyond any test, and small enough for every platform's `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(1 << 32);

/// `t + d`, capped rather than panicking on overflow (durations come from configuration).
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(FAR_FUTURE))
        .unwrap_or(t)
}

/// Snowflake-like ids: `(ms << 22) | (worker << 12) | seq`, with the millisecond part near
/// 2025 so ids have 19 digits and exceed 2^53 (protocol.md §2.1). Deterministic per seed.
#[derive(Debug)]
struct IdGen {
    seed: u64,
    n: u64,
}

/// Milliseconds since the Twitter epoch (2010-11-04) around early 2025.
///
/// Source: ids seen in 2025 (protocol.md §4.1: 1880000000000000000 >> 22 ≈ 4.48e11 ms).
const ID_BASE_MS: u64 = 448_000_000_000;

impl IdGen {
    fn next(&mut self) -> u64 {
        self.n += 1;
        let ms = ID_BASE_MS + mix64(self.seed, b"id-base", 0) % 1_000_000_000 + self.n * 37;
        let worker = mix64(self.seed, b"id-worker", 0) & 0x3ff;
        let seq = mix64(self.seed, b"id-seq", self.n) & 0xfff;
        (ms << 22) | (worker << 12) | seq
    }
}

/// What a request wants to do with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// STATUS.
    Read,
    /// APPEND, FINALIZE.
    Write,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Initialized,
    Finalizing,
    Ready,
    Processing { since: Instant, fail: bool },
    Expired,
}

/// One upload session.
#[derive(Debug)]
struct Session {
    media_key: String,
    owner: u64,
    additional_owners: Vec<String>,
    category: Option<MediaCategory>,
    media_type: String,
    total_bytes: u64,
    expires_at: Instant,
    segments: BTreeMap<u32, Segment>,
    in_memory: u64,
    phase: Phase,
    sha256: Option<[u8; 32]>,
    dims: (u32, u32),
    status_polls: u32,
    /// Alt text (v2 `POST /2/media/metadata`, v1.1 `metadata/create.json`).
    alt_text: Option<String>,
    /// Subtitle tracks by language code: the subtitle media id and the display name.
    subtitles: BTreeMap<String, (u64, String)>,
    /// INIT's `shared`.
    shared: bool,
}

impl Session {
    /// The owner may do anything; `additional_owners` may only read (STATUS).
    fn allows(&self, user: u64, access: Access) -> bool {
        self.owner == user
            || (access == Access::Read
                && self
                    .additional_owners
                    .iter()
                    .any(|o| *o == user.to_string()))
    }

    fn is_async(&self) -> bool {
        self.category.is_some_and(MediaCategory::is_async) && is_video_or_gif(&self.media_type)
    }

    /// The session as saved in the state directory; `None` once expired (nothing to keep).
    fn saved(&self, clock: &Clock, id: u64) -> Option<SavedSession> {
        let phase = match self.phase {
            Phase::Initialized | Phase::Finalizing => SavedPhase::Initialized,
            Phase::Ready => SavedPhase::Ready,
            Phase::Processing { since, fail } => SavedPhase::Processing {
                since_ms: clock.epoch_ms(since),
                fail,
            },
            Phase::Expired => return None,
        };
        Some(SavedSession {
            version: STATE_VERSION,
            id,
            media_key: self.media_key.clone(),
            owner: self.owner,
            additional_owners: self.additional_owners.clone(),
            category: self.category.map(|c| c.as_str().to_string()),
            media_type: self.media_type.clone(),
            total_bytes: self.total_bytes,
            expires_at_ms: clock.epoch_ms(self.expires_at),
            segments: self
                .segments
                .iter()
                .filter_map(|(index, seg)| {
                    seg.file().map(|p| SavedSegment {
                        index: *index,
                        file: persist::file_name(p),
                        len: seg.len(),
                    })
                })
                .collect(),
            phase,
            sha256: self.sha256,
            dims: self.dims,
            status_polls: self.status_polls,
            alt_text: self.alt_text.clone(),
            shared: self.shared,
            subtitles: self
                .subtitles
                .iter()
                .map(|(lang, (id, name))| (lang.clone(), *id, name.clone()))
                .collect(),
        })
    }

    fn expire(&mut self) -> Vec<std::path::PathBuf> {
        self.phase = Phase::Expired;
        self.in_memory = 0;
        std::mem::take(&mut self.segments)
            .into_values()
            .filter_map(|s| s.file().map(|p| p.to_path_buf()))
            .collect()
    }
}

fn is_video(media_type: &str) -> bool {
    media_type.to_ascii_lowercase().starts_with("video/")
}

fn is_gif(media_type: &str) -> bool {
    media_type.eq_ignore_ascii_case("image/gif")
}

fn is_video_or_gif(media_type: &str) -> bool {
    is_video(media_type) || is_gif(media_type)
}

/// Why an operation failed; each API renders these in its own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpError {
    /// Unknown id, another user's id, or an expired id.
    UnknownId,
    /// APPEND after FINALIZE.
    AlreadyFinalized,
    /// A FINALIZE is running for this media.
    Busy,
    /// Gaps in the indices, or the sizes do not sum to `total_bytes`.
    SegmentsMismatch,
    /// A video/GIF over the synchronous limit without a category.
    LargeSync,
    /// Over a size limit (bytes).
    FileTooLarge(u64),
    /// STATUS on media that is not processed asynchronously (or not finalized yet).
    NotAsync,
    /// The emulator's own storage failed.
    Storage,
    /// Alt text or subtitles for media that is not finalized yet.
    NotFinalized,
    /// Alt text for media that is not an image or GIF.
    NotImage,
    /// Subtitles for media that is not a video.
    NotVideo,
    /// A subtitle media id whose media was not uploaded with category `subtitles`.
    NotSubtitles,
    /// Deleting a subtitle language the video does not have.
    NoSuchSubtitles,
}

/// What INIT creates.
#[derive(Debug, Clone)]
pub(crate) struct NewMedia {
    pub(crate) owner: u64,
    pub(crate) category: Option<MediaCategory>,
    pub(crate) media_type: String,
    pub(crate) total_bytes: u64,
    pub(crate) additional_owners: Vec<String>,
    /// INIT's `shared` (DM media reused across messages).
    pub(crate) shared: bool,
    pub(crate) expires_after_secs: u64,
}

/// What INIT answers.
#[derive(Debug, Clone)]
pub(crate) struct InitView {
    pub(crate) id: u64,
    pub(crate) media_key: String,
    pub(crate) expires_after_secs: u64,
}

/// `processing_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcView {
    pub(crate) state: &'static str,
    pub(crate) check_after_secs: Option<u64>,
    pub(crate) progress_percent: Option<u8>,
    pub(crate) error: Option<ServerMessage>,
}

/// The `image` or `video` object of a ready media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Image { image_type: String, w: u32, h: u32 },
    Video { video_type: String },
    None,
}

/// What FINALIZE, STATUS and the one-shot upload answer.
#[derive(Debug, Clone)]
pub(crate) struct MediaView {
    pub(crate) id: u64,
    pub(crate) media_key: String,
    pub(crate) size: u64,
    pub(crate) expires_after_secs: Option<u64>,
    pub(crate) processing: Option<ProcView>,
    pub(crate) kind: MediaKind,
}

/// The key prefix of a media: from its category, else from its type, else image.
pub(crate) fn media_key_prefix(category: Option<MediaCategory>, media_type: &str) -> u32 {
    category
        .or_else(|| MediaCategory::guess_from_media_type(media_type))
        .map_or(3, MediaCategory::media_key_prefix)
}

/// The `expires_after_secs` of a new session: per version, longer for `amplify_video`
/// (protocol.md §2.5).
pub(crate) fn init_expiry(cfg: &EmulatorConfig, category: Option<MediaCategory>, v2: bool) -> u64 {
    match (category, v2) {
        (Some(MediaCategory::AmplifyVideo), _) => cfg.expiry.amplify_init_secs,
        (_, true) => cfg.expiry.v2_init_secs,
        (_, false) => cfg.expiry.v1_init_secs,
    }
}

/// The INIT size check (protocol.md §2.3, §9 step 6). With a category, its limit; without
/// (v1.1 only), the limit of the category the type implies, except GIFs, whose synchronous
/// limits are checked at FINALIZE.
pub(crate) fn check_init_size(
    cfg: &EmulatorConfig,
    category: Option<MediaCategory>,
    media_type: &str,
    total_bytes: u64,
) -> Result<(), OpError> {
    let limit = match category {
        Some(c) => Some(cfg.category_limit(c)),
        None if is_gif(media_type) => None,
        None => MediaCategory::guess_from_media_type(media_type).map(|c| cfg.category_limit(c)),
    };
    match limit {
        Some(l) if total_bytes > l => Err(OpError::FileTooLarge(l)),
        _ => Ok(()),
    }
}

/// Image type and dimensions from the first bytes (PNG and GIF carry them in fixed places;
/// other types report 0×0). `None` when the bytes are no known image.
pub(crate) fn sniff_image(head: &[u8]) -> Option<(&'static str, u32, u32)> {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let le16 = |b: &[u8]| u32::from(u16::from_le_bytes([b[0], b[1]]));
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        let dims = (head.len() >= 24).then(|| (be32(&head[16..20]), be32(&head[20..24])));
        let (w, h) = dims.unwrap_or((0, 0));
        Some(("image/png", w, h))
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        let dims = (head.len() >= 10).then(|| (le16(&head[6..8]), le16(&head[8..10])));
        let (w, h) = dims.unwrap_or((0, 0));
        Some(("image/gif", w, h))
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", 0, 0))
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some(("image/webp", 0, 0))
    } else if head.starts_with(b"BM") {
        Some(("image/bmp", 0, 0))
    } else {
        None
    }
}

#[derive(Debug)]
struct Sessions {
    map: HashMap<u64, Session>,
    ids: IdGen,
}

/// All sessions of one emulator.
#[derive(Debug)]
pub(crate) struct MediaStore {
    sessions: Mutex<Sessions>,
    spill: Option<SpillDir>,
    persist: Option<StateDir>,
}

impl MediaStore {
    pub(crate) fn new(id_seed: u64, spill: Option<SpillDir>) -> Self {
        MediaStore {
            sessions: Mutex::new(Sessions {
                map: HashMap::new(),
                ids: IdGen {
                    seed: id_seed,
                    n: 0,
                },
            }),
            spill,
            persist: None,
        }
    }

    /// A store that keeps its sessions in `dir`, starting with the ones saved there: those
    /// that have not expired and whose segment files are all present (as listed).
    pub(crate) fn persistent(
        id_seed: u64,
        spill: Option<SpillDir>,
        clock: &Clock,
        dir: StateDir,
        ids_issued: u64,
        saved: Vec<SavedSession>,
    ) -> Self {
        let now = clock.now();
        let mut map = HashMap::new();
        for s in saved {
            let expires_at = clock.instant_at_epoch_ms(s.expires_at_ms);
            if now >= expires_at {
                continue;
            }
            let mut segments = BTreeMap::new();
            let mut complete = true;
            for seg in s.segments {
                let path = dir.segment_path(&seg.file);
                let present = std::fs::metadata(&path).is_ok_and(|m| m.len() == seg.len);
                if present {
                    segments.insert(seg.index, Segment::File { path, len: seg.len });
                } else {
                    complete = false;
                }
            }
            if !complete {
                tracing::warn!(id = s.id, "an emulator session lost segment files");
            }
            let phase = match s.phase {
                SavedPhase::Initialized => Phase::Initialized,
                SavedPhase::Ready => Phase::Ready,
                SavedPhase::Processing { since_ms, fail } => Phase::Processing {
                    since: clock.instant_at_epoch_ms(since_ms),
                    fail,
                },
            };
            map.insert(
                s.id,
                Session {
                    media_key: s.media_key,
                    owner: s.owner,
                    additional_owners: s.additional_owners,
                    category: s.category.and_then(|c| c.parse().ok()),
                    media_type: s.media_type,
                    total_bytes: s.total_bytes,
                    expires_at,
                    segments,
                    in_memory: 0,
                    phase,
                    sha256: s.sha256,
                    dims: s.dims,
                    status_polls: s.status_polls,
                    alt_text: s.alt_text,
                    shared: s.shared,
                    subtitles: s
                        .subtitles
                        .into_iter()
                        .map(|(lang, id, name)| (lang, (id, name)))
                        .collect(),
                },
            );
        }
        MediaStore {
            sessions: Mutex::new(Sessions {
                map,
                ids: IdGen {
                    seed: id_seed,
                    n: ids_issued,
                },
            }),
            spill,
            persist: Some(dir),
        }
    }

    /// Writes session `id` to the state directory, if there is one (removing its file if
    /// the session is gone or expired).
    async fn save(&self, clock: &Clock, id: u64) -> std::io::Result<()> {
        let Some(dir) = &self.persist else {
            return Ok(());
        };
        dir.write_session(id, || {
            let g = self.lock();
            let saved = g.map.get(&id).and_then(|s| s.saved(clock, id));
            (saved, g.ids.n)
        })
        .await
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session `id` as `user` may see it, expiring it if its time is up.
    fn live(
        map: &mut HashMap<u64, Session>,
        id: u64,
        user: u64,
        access: Access,
        now: Instant,
    ) -> Result<&mut Session, OpError> {
        let s = map.get_mut(&id).ok_or(OpError::UnknownId)?;
        if !s.allows(user, access) {
            return Err(OpError::UnknownId);
        }
        if s.phase != Phase::Expired && s.phase != Phase::Finalizing && now >= s.expires_at {
            store::remove_files(s.expire());
        }
        if s.phase == Phase::Expired {
            return Err(OpError::UnknownId);
        }
        Ok(s)
    }

    /// INIT: a new session (sizes are checked by the caller with [`check_init_size`]), saved
    /// to the state directory if there is one (a failed save is logged: the session still
    /// works until the emulator stops).
    pub(crate) async fn init(&self, clock: &Clock, m: NewMedia) -> InitView {
        let v = self.init_session(clock, m);
        if let Err(e) = self.save(clock, v.id).await {
            tracing::warn!(error = %e, id = v.id, "cannot save an emulator session");
        }
        v
    }

    fn init_session(&self, clock: &Clock, m: NewMedia) -> InitView {
        let now = clock.now();
        let mut g = self.lock();
        // Release the data of sessions whose time is up.
        let mut files = Vec::new();
        for s in g.map.values_mut() {
            if !matches!(s.phase, Phase::Expired | Phase::Finalizing) && now >= s.expires_at {
                files.extend(s.expire());
            }
        }
        store::remove_files(files);
        let id = g.ids.next();
        let media_key = format!("{}_{id}", media_key_prefix(m.category, &m.media_type));
        g.map.insert(
            id,
            Session {
                media_key: media_key.clone(),
                owner: m.owner,
                additional_owners: m.additional_owners,
                category: m.category,
                media_type: m.media_type,
                total_bytes: m.total_bytes,
                expires_at: later(now, Duration::from_secs(m.expires_after_secs)),
                segments: BTreeMap::new(),
                in_memory: 0,
                phase: Phase::Initialized,
                sha256: None,
                dims: (0, 0),
                status_polls: 0,
                alt_text: None,
                subtitles: BTreeMap::new(),
                shared: m.shared,
            },
        );
        InitView {
            id,
            media_key,
            expires_after_secs: m.expires_after_secs,
        }
    }

    /// APPEND: stores (or replaces) one segment. Returns `expires_at` in epoch seconds.
    pub(crate) async fn append(
        &self,
        cfg: &EmulatorConfig,
        clock: &Clock,
        user: u64,
        id: u64,
        index: u32,
        data: Bytes,
    ) -> Result<u64, OpError> {
        let expires = self
            .store_segment(cfg, clock, user, id, index, data)
            .await?;
        self.save(clock, id).await.map_err(|_| OpError::Storage)?;
        Ok(expires)
    }

    async fn store_segment(
        &self,
        cfg: &EmulatorConfig,
        clock: &Clock,
        user: u64,
        id: u64,
        index: u32,
        data: Bytes,
    ) -> Result<u64, OpError> {
        let len = data.len() as u64;
        {
            let mut g = self.lock();
            let s = Self::live(&mut g.map, id, user, Access::Write, clock.now())?;
            appendable(s)?;
            let replaced = s.segments.get(&index).map_or(0, Segment::memory);
            let in_memory = s.in_memory.saturating_sub(replaced).saturating_add(len);
            let spill = self.persist.is_some()
                || (self.spill.is_some()
                    && cfg.spill_threshold_bytes.is_some_and(|t| in_memory > t));
            if !spill {
                s.in_memory = in_memory;
                let old = s.segments.insert(index, Segment::Memory(data));
                store::remove_files(
                    old.and_then(|o| o.file().map(|p| p.to_path_buf()))
                        .into_iter()
                        .collect(),
                );
                return Ok(clock.epoch_secs(s.expires_at));
            }
        }
        let written = match (&self.persist, &self.spill) {
            (Some(dir), _) => dir.write_segment(id, index, &data).await,
            (None, Some(dir)) => dir.write(id, index, &data).await,
            (None, None) => return Err(OpError::Storage),
        };
        let seg = written.map_err(|_| OpError::Storage)?;
        let mut g = self.lock();
        let s = match Self::live(&mut g.map, id, user, Access::Write, clock.now()).and_then(|s| {
            appendable(s)?;
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                store::remove_files(seg.file().map(|p| p.to_path_buf()).into_iter().collect());
                return Err(e);
            }
        };
        if let Some(old) = s.segments.insert(index, seg) {
            s.in_memory = s.in_memory.saturating_sub(old.memory());
            store::remove_files(old.file().map(|p| p.to_path_buf()).into_iter().collect());
        }
        Ok(clock.epoch_secs(s.expires_at))
    }

    /// FINALIZE: checks the segments, hashes the media, starts processing. Idempotent once
    /// finalized (answers the current state).
    pub(crate) async fn finalize(
        &self,
        cfg: &EmulatorConfig,
        clock: &Clock,
        user: u64,
        id: u64,
    ) -> Result<MediaView, OpError> {
        let v = self.finalize_session(cfg, clock, user, id).await?;
        self.save(clock, id).await.map_err(|_| OpError::Storage)?;
        Ok(v)
    }

    async fn finalize_session(
        &self,
        cfg: &EmulatorConfig,
        clock: &Clock,
        user: u64,
        id: u64,
    ) -> Result<MediaView, OpError> {
        let segments: Vec<Segment> = {
            let mut g = self.lock();
            let now = clock.now();
            let s = Self::live(&mut g.map, id, user, Access::Write, now)?;
            match s.phase {
                Phase::Initialized => {}
                Phase::Finalizing => return Err(OpError::Busy),
                _ => return Ok(view(cfg, id, s, now, None)),
            }
            let contiguous = s
                .segments
                .keys()
                .enumerate()
                .all(|(i, k)| u64::from(*k) == i as u64);
            let sum: u64 = s.segments.values().map(Segment::len).sum();
            if !contiguous || sum != s.total_bytes {
                return Err(OpError::SegmentsMismatch);
            }
            if s.category.is_none() {
                if is_video_or_gif(&s.media_type) && s.total_bytes > cfg.sync_max_bytes {
                    return Err(OpError::LargeSync);
                }
                let image_limit = cfg.category_limit(MediaCategory::TweetImage);
                if is_gif(&s.media_type) && s.total_bytes > image_limit {
                    return Err(OpError::FileTooLarge(image_limit));
                }
            }
            s.phase = Phase::Finalizing;
            s.segments.values().cloned().collect()
        };
        let digest = store::digest(&segments).await;
        let mut g = self.lock();
        let now = clock.now();
        let s = g.map.get_mut(&id).ok_or(OpError::Storage)?;
        let Ok((sha, head)) = digest else {
            s.phase = Phase::Initialized;
            return Err(OpError::Storage);
        };
        s.sha256 = Some(sha);
        if let Some((_, w, h)) = sniff_image(&head) {
            s.dims = (w, h);
        }
        s.expires_at = later(now, Duration::from_secs(cfg.expiry.finalized_secs));
        s.phase = if s.is_async() {
            Phase::Processing {
                since: now,
                fail: cfg.processing.failure.fails(&s.media_type),
            }
        } else {
            Phase::Ready
        };
        Ok(view(cfg, id, s, now, Some(cfg.expiry.finalized_secs)))
    }

    /// STATUS: counts a poll and answers the processing state.
    pub(crate) fn status(
        &self,
        cfg: &EmulatorConfig,
        clock: &Clock,
        user: u64,
        id: u64,
    ) -> Result<MediaView, OpError> {
        let mut g = self.lock();
        let now = clock.now();
        let s = Self::live(&mut g.map, id, user, Access::Read, now)?;
        if !matches!(s.phase, Phase::Processing { .. }) {
            return Err(OpError::NotAsync);
        }
        s.status_polls = s.status_polls.saturating_add(1);
        Ok(view(cfg, id, s, now, None))
    }

    /// The one-shot upload: INIT, one APPEND and FINALIZE in one go.
    pub(crate) async fn one_shot(
        &self,
        cfg: &EmulatorConfig,
        clock: &Clock,
        m: NewMedia,
        data: Bytes,
    ) -> Result<MediaView, OpError> {
        let user = m.owner;
        let init = self.init(clock, m).await;
        self.append(cfg, clock, user, init.id, 0, data).await?;
        self.finalize(cfg, clock, user, init.id).await
    }

    /// Sets the alt text of finalized image or GIF media `id` (issue 14).
    pub(crate) async fn set_alt_text(
        &self,
        clock: &Clock,
        user: u64,
        id: u64,
        text: &str,
    ) -> Result<(), OpError> {
        {
            let mut g = self.lock();
            let s = Self::live(&mut g.map, id, user, Access::Write, clock.now())?;
            finalized(s)?;
            if !s.media_type.to_ascii_lowercase().starts_with("image/") {
                return Err(OpError::NotImage);
            }
            s.alt_text = Some(text.to_string());
        }
        self.save(clock, id).await.map_err(|_| OpError::Storage)
    }

    /// Attaches subtitle media `subtitles` to finalized video `video` in `language`
    /// (replacing a track in that language).
    pub(crate) async fn attach_subtitles(
        &self,
        clock: &Clock,
        user: u64,
        video: u64,
        subtitles: u64,
        language: &str,
        display_name: &str,
    ) -> Result<(), OpError> {
        {
            let mut g = self.lock();
            let now = clock.now();
            let sub = Self::live(&mut g.map, subtitles, user, Access::Write, now)?;
            finalized(sub)?;
            if sub.category != Some(MediaCategory::Subtitles) {
                return Err(OpError::NotSubtitles);
            }
            let v = Self::live(&mut g.map, video, user, Access::Write, now)?;
            video_ready(v)?;
            v.subtitles
                .insert(language.to_string(), (subtitles, display_name.to_string()));
        }
        self.save(clock, video).await.map_err(|_| OpError::Storage)
    }

    /// Removes the `language` subtitle track of finalized video `video`.
    pub(crate) async fn delete_subtitles(
        &self,
        clock: &Clock,
        user: u64,
        video: u64,
        language: &str,
    ) -> Result<(), OpError> {
        {
            let mut g = self.lock();
            let v = Self::live(&mut g.map, video, user, Access::Write, clock.now())?;
            video_ready(v)?;
            if v.subtitles.remove(language).is_none() {
                return Err(OpError::NoSuchSubtitles);
            }
        }
        self.save(clock, video).await.map_err(|_| OpError::Storage)
    }

    /// INIT's `additional_owners` and `shared` of media `id`.
    pub(crate) fn sharing(&self, id: u64) -> Option<(Vec<String>, bool)> {
        self.lock()
            .map
            .get(&id)
            .map(|s| (s.additional_owners.clone(), s.shared))
    }

    /// The alt text of media `id`, if any.
    pub(crate) fn alt_text(&self, id: u64) -> Option<String> {
        self.lock().map.get(&id).and_then(|s| s.alt_text.clone())
    }

    /// The subtitle tracks of video `id`: language code, subtitle media id, display name.
    pub(crate) fn subtitles(&self, id: u64) -> Vec<(String, u64, String)> {
        self.lock().map.get(&id).map_or_else(Vec::new, |s| {
            s.subtitles
                .iter()
                .map(|(lang, (sub, name))| (lang.clone(), *sub, name.clone()))
                .collect()
        })
    }

    /// SHA-256 of a finalized media.
    pub(crate) fn sha256(&self, id: u64) -> Option<[u8; 32]> {
        self.lock().map.get(&id).and_then(|s| s.sha256)
    }

    /// The assembled bytes of a finalized media that has not expired.
    pub(crate) async fn bytes(&self, id: u64) -> Option<Vec<u8>> {
        let segments: Vec<Segment> = {
            let g = self.lock();
            let s = g.map.get(&id)?;
            if !matches!(s.phase, Phase::Ready | Phase::Processing { .. }) {
                return None;
            }
            s.segments.values().cloned().collect()
        };
        store::assemble(&segments).await.ok()
    }

    /// The spill directory, taken out for deletion.
    pub(crate) fn take_spill_dir(&self) -> Option<tempfile::TempDir> {
        self.spill.as_ref().and_then(SpillDir::take)
    }

    /// How many segments of `id` are on disk (for tests).
    #[cfg(test)]
    fn spilled(&self, id: u64) -> usize {
        self.lock().map.get(&id).map_or(0, |s| {
            s.segments.values().filter(|x| x.file().is_some()).count()
        })
    }
}

/// Whether a media is finalized (ready or processing): alt text and subtitles need that.
fn finalized(s: &Session) -> Result<(), OpError> {
    match s.phase {
        Phase::Initialized | Phase::Finalizing => Err(OpError::NotFinalized),
        _ => Ok(()),
    }
}

/// Whether a media is a finalized video, which subtitles can be attached to.
fn video_ready(s: &Session) -> Result<(), OpError> {
    if !is_video(&s.media_type) {
        return Err(OpError::NotVideo);
    }
    finalized(s)
}

fn appendable(s: &Session) -> Result<(), OpError> {
    match s.phase {
        Phase::Initialized => Ok(()),
        Phase::Finalizing => Err(OpError::Busy),
        _ => Err(OpError::AlreadyFinalized),
    }
}

/// The processing state of a media at `now`.
fn processing(
    cfg: &EmulatorConfig,
    s: &Session,
    since: Instant,
    fail: bool,
    now: Instant,
) -> ProcView {
    let check = Some(cfg.processing.check_after_secs);
    let pending = ProcView {
        state: "pending",
        check_after_secs: check,
        progress_percent: None,
        error: None,
    };
    let in_progress = |pct: u64| ProcView {
        state: "in_progress",
        check_after_secs: check,
        progress_percent: Some(u8::try_from(pct.min(99)).unwrap_or(99)),
        error: None,
    };
    let done = if fail {
        ProcView {
            state: "failed",
            check_after_secs: None,
            progress_percent: Some(100),
            error: Some(cfg.processing.failure_error.clone()),
        }
    } else {
        ProcView {
            state: "succeeded",
            check_after_secs: None,
            progress_percent: Some(100),
            error: None,
        }
    };
    match cfg.processing.timeline {
        ProcessingTimeline::Polls {
            pending: p,
            in_progress: ip,
        } => {
            let k = s.status_polls;
            if k == 0 || k <= p {
                pending
            } else if k - p <= ip {
                in_progress(100 * u64::from(k - p) / (u64::from(ip) + 1))
            } else {
                done
            }
        }
        ProcessingTimeline::Timed {
            pending: p,
            in_progress: ip,
        } => {
            let e = now.saturating_duration_since(since);
            if e < p {
                pending
            } else if e < p.saturating_add(ip) {
                let pct = (e - p).as_millis() * 100 / ip.as_millis().max(1);
                in_progress(u64::try_from(pct).unwrap_or(99))
            } else {
                done
            }
        }
    }
}

fn view(
    cfg: &EmulatorConfig,
    id: u64,
    s: &Session,
    now: Instant,
    exact_expiry: Option<u64>,
) -> MediaView {
    let processing = match s.phase {
        Phase::Processing { since, fail } => Some(processing(cfg, s, since, fail, now)),
        _ => None,
    };
    let state = processing.as_ref().map(|p| p.state);
    let expires_after_secs = (state != Some("failed")).then(|| {
        exact_expiry.unwrap_or_else(|| s.expires_at.saturating_duration_since(now).as_secs())
    });
    let kind = if state.is_none() || state == Some("succeeded") {
        let t = s.media_type.to_ascii_lowercase();
        if t.starts_with("video/") {
            MediaKind::Video { video_type: t }
        } else if t.starts_with("image/") {
            MediaKind::Image {
                image_type: t,
                w: s.dims.0,
                h: s.dims.1,
            }
        } else {
            MediaKind::None
        }
    } else {
        MediaKind::None
    };
    MediaView {
        id,
        media_key: s.media_key.clone(),
        size: s.total_bytes,
        expires_after_secs,
        processing,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn video(owner: u64, total: u64) -> NewMedia {
        NewMedia {
            owner,
            category: Some(MediaCategory::TweetVideo),
            media_type: "video/mp4".into(),
            total_bytes: total,
            additional_owners: vec![],
            shared: false,
            expires_after_secs: 60,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_durations_do_not_overflow() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        let clock = Clock::new();
        clock.advance(Duration::MAX);
        clock.advance(Duration::MAX);
        assert!(clock.now() > now);
        let mut cfg = EmulatorConfig::default();
        cfg.expiry.finalized_secs = u64::MAX;
        cfg.processing.timeline = ProcessingTimeline::Timed {
            pending: Duration::MAX,
            in_progress: Duration::MAX,
        };
        let st = MediaStore::new(1, None);
        let mut m = video(1, 1);
        m.expires_after_secs = u64::MAX;
        let m = st.init(&clock, m).await;
        st.append(&cfg, &clock, 1, m.id, 0, Bytes::from_static(b"x"))
            .await
            .unwrap();
        let v = st.finalize(&cfg, &clock, 1, m.id).await.unwrap();
        assert_eq!(v.processing.unwrap().state, "pending");
        assert_eq!(
            st.status(&cfg, &clock, 1, m.id)
                .unwrap()
                .processing
                .unwrap()
                .state,
            "pending"
        );
    }

    #[test]
    fn ids_are_seeded_snowflakes() {
        let mut a = IdGen { seed: 7, n: 0 };
        let mut b = IdGen { seed: 7, n: 0 };
        let x: Vec<u64> = (0..5).map(|_| a.next()).collect();
        let y: Vec<u64> = (0..5).map(|_| b.next()).collect();
        assert_eq!(x, y);
        assert!(x.windows(2).all(|w| w[0] < w[1]));
        assert!(
            x.iter()
                .all(|id| id.to_string().len() == 19 && *id > (1u64 << 53))
        );
        assert_ne!(x[0], IdGen { seed: 8, n: 0 }.next());
    }

    #[test]
    fn init_size_rules() {
        let cfg = EmulatorConfig::default();
        let gif = Some(MediaCategory::TweetGif);
        assert_eq!(check_init_size(&cfg, gif, "image/gif", 15_728_640), Ok(()));
        assert_eq!(
            check_init_size(&cfg, gif, "image/gif", 15_728_641),
            Err(OpError::FileTooLarge(15_728_640))
        );
        // No category: GIFs wait for FINALIZE; images use the image limit.
        assert_eq!(check_init_size(&cfg, None, "image/gif", 100 << 20), Ok(()));
        assert_eq!(
            check_init_size(&cfg, None, "image/png", 6 << 20),
            Err(OpError::FileTooLarge(5 << 20))
        );
    }

    #[test]
    fn sniffing_reads_png_and_gif_dimensions() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(sniff_image(&png), Some(("image/png", 640, 480)));
        let gif = b"GIF89a\x20\x03\x58\x02";
        assert_eq!(sniff_image(gif), Some(("image/gif", 800, 600)));
        assert_eq!(
            sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(("image/jpeg", 0, 0))
        );
        assert_eq!(sniff_image(b"hello"), None);
        assert_eq!(sniff_image(b""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn async_processing_advances_per_poll_and_by_time() {
        let clock = Clock::new();
        let mut cfg = EmulatorConfig::default();
        cfg.processing.timeline = ProcessingTimeline::Polls {
            pending: 1,
            in_progress: 2,
        };
        let st = MediaStore::new(1, None);
        let m = st.init(&clock, video(1, 4)).await;
        st.append(&cfg, &clock, 1, m.id, 0, Bytes::from_static(b"abcd"))
            .await
            .unwrap();
        let f = st.finalize(&cfg, &clock, 1, m.id).await.unwrap();
        assert_eq!(f.processing.unwrap().state, "pending");
        let states: Vec<_> = (0..5)
            .map(|_| {
                st.status(&cfg, &clock, 1, m.id)
                    .unwrap()
                    .processing
                    .unwrap()
            })
            .map(|p| (p.state, p.progress_percent))
            .collect();
        assert_eq!(
            states,
            vec![
                ("pending", None),
                ("in_progress", Some(33)),
                ("in_progress", Some(66)),
                ("succeeded", Some(100)),
                ("succeeded", Some(100)),
            ]
        );
        // Another user cannot see it.
        assert_eq!(
            st.status(&cfg, &clock, 2, m.id).unwrap_err(),
            OpError::UnknownId
        );

        cfg.processing.timeline = ProcessingTimeline::Timed {
            pending: Duration::from_secs(2),
            in_progress: Duration::from_secs(4),
        };
        let m = st.init(&clock, video(1, 1)).await;
        st.append(&cfg, &clock, 1, m.id, 0, Bytes::from_static(b"x"))
            .await
            .unwrap();
        st.finalize(&cfg, &clock, 1, m.id).await.unwrap();
        let state = |st: &MediaStore| {
            st.status(&cfg, &clock, 1, m.id)
                .unwrap()
                .processing
                .unwrap()
        };
        assert_eq!(state(&st).state, "pending");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(state(&st).progress_percent, Some(25));
        clock.advance(Duration::from_secs(3));
        assert_eq!(state(&st).state, "succeeded");
    }

    #[tokio::test(start_paused = true)]
    async fn finalize_checks_gaps_and_sums_and_expiry_forgets() {
        let clock = Clock::new();
        let cfg = EmulatorConfig::default();
        let st = MediaStore::new(1, None);
        let m = st.init(&clock, video(1, 6)).await;
        st.append(&cfg, &clock, 1, m.id, 0, Bytes::from_static(b"ab"))
            .await
            .unwrap();
        st.append(&cfg, &clock, 1, m.id, 2, Bytes::from_static(b"ef"))
            .await
            .unwrap();
        assert_eq!(
            st.finalize(&cfg, &clock, 1, m.id).await.unwrap_err(),
            OpError::SegmentsMismatch
        );
        // A re-sent index replaces the old one.
        st.append(&cfg, &clock, 1, m.id, 1, Bytes::from_static(b"xx"))
            .await
            .unwrap();
        st.append(&cfg, &clock, 1, m.id, 1, Bytes::from_static(b"cd"))
            .await
            .unwrap();
        st.finalize(&cfg, &clock, 1, m.id).await.unwrap();
        assert_eq!(st.bytes(m.id).await.unwrap(), b"abcdef");
        assert_eq!(
            st.append(&cfg, &clock, 1, m.id, 3, Bytes::from_static(b"g"))
                .await,
            Err(OpError::AlreadyFinalized)
        );
        clock.advance(Duration::from_secs(cfg.expiry.finalized_secs));
        assert_eq!(
            st.status(&cfg, &clock, 1, m.id).unwrap_err(),
            OpError::UnknownId
        );
        assert!(st.bytes(m.id).await.is_none());
        assert!(st.sha256(m.id).is_some());
    }

    #[tokio::test]
    async fn segments_beyond_the_threshold_spill() {
        let clock = Clock::new();
        let cfg = EmulatorConfig {
            spill_threshold_bytes: Some(4),
            ..EmulatorConfig::default()
        };
        let st = MediaStore::new(1, Some(SpillDir::create(None).await.unwrap()));
        let m = st.init(&clock, video(1, 9)).await;
        for (i, part) in [&b"abc"[..], b"def", b"ghi"].into_iter().enumerate() {
            st.append(
                &cfg,
                &clock,
                1,
                m.id,
                i as u32,
                Bytes::copy_from_slice(part),
            )
            .await
            .unwrap();
        }
        assert_eq!(st.spilled(m.id), 2);
        st.finalize(&cfg, &clock, 1, m.id).await.unwrap();
        assert_eq!(st.bytes(m.id).await.unwrap(), b"abcdefghi");
        let want: [u8; 32] = sha2::Sha256::digest(b"abcdefghi").into();
        assert_eq!(st.sha256(m.id), Some(want));
        let d = st.take_spill_dir().unwrap();
        tokio::task::spawn_blocking(move || drop(d)).await.unwrap();
    }
}
