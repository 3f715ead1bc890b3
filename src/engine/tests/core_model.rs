//! A property test of the upload core ([`Core`]): thousands of seeded cases of random link
//! behaviour (successes, transport errors, 5xx, 429s with `Retry-After`, timeouts), random
//! checkpoint writes that fail or are slow, and crashes after any prefix of the core's
//! actions that keep exactly what was durable then (a write in progress may or may not have
//! landed; an APPEND in flight may or may not have reached the server). After each crash a
//! new core resumes from the durable checkpoint with the default adaptive strategy.
//!
//! Every case must end with the server's assembled media equal to the file byte for byte
//! (so its SHA-256 is the file's), and
//! no case may ever send a segment that the durable checkpoint does not record (write-ahead),
//! send an index with two lengths, or send again a segment acknowledged in this run or in
//! the durable checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::super::core::{Action, Core, CoreConfig, Failure, Input, Reply, ReqId, Upload};
use super::super::{MediaSpec, PollingConfig, RetryPolicy};
use crate::checkpoint::{Checkpoint, SourceIdentity};
use crate::error::{Error, ErrorKind};
use crate::limits::MIB;

const KIB: u64 = 1024;
use crate::protocol::{
    AppendResponse, InitResponse, MediaId, MediaStatus, ProcessingInfo, ProcessingState,
    ProtocolTarget,
};
use crate::scheduler::AdaptiveStrategy;
use crate::{MediaCategory, ServerMessage};

/// Seeded cases.
const CASES: u64 = 2000;
/// Runs (the first and every resume) a case may take before it counts as stuck.
const MAX_RUNS: usize = 25;
/// The largest file of a case: 768 KiB, up to 48 segments at the smallest chunk limit (a
/// debug build runs the 2000 cases in about 10 s).
const FILE_MAX: usize = 768 * 1024;
/// Round trip of the model link.
const RTT: Duration = Duration::from_millis(80);

/// The model server: what it holds of each media id.
#[derive(Default)]
struct Server {
    next_id: u64,
    media: HashMap<MediaId, Media>,
}

#[derive(Default)]
struct Media {
    total: u64,
    segments: BTreeMap<u32, Bytes>,
    /// Every length each index was sent with.
    lens: HashMap<u32, HashSet<u64>>,
    finalized: bool,
}

impl Media {
    fn assembled(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for (i, (index, data)) in self.segments.iter().enumerate() {
            if *index as usize != i {
                return None;
            }
            out.extend_from_slice(data);
        }
        (out.len() as u64 == self.total).then_some(out)
    }
}

/// Something that ends later.
#[allow(clippy::large_enum_variant)]
enum Later {
    Reply {
        id: ReqId,
        started: Instant,
        result: std::result::Result<Reply, Failure>,
        /// An APPEND the server stores when it answers (or, at a crash, perhaps).
        store: Option<(MediaId, u32, Bytes)>,
    },
    Persist {
        seq: u64,
        checkpoint: Box<Checkpoint>,
        ok: bool,
    },
}

fn rejected(kind: ErrorKind, message: &str) -> Failure {
    Failure::Request(
        Error::new(kind, "model server")
            .with_status(400)
            .with_server_message(ServerMessage {
                code: None,
                name: None,
                message: message.into(),
            }),
    )
}

fn status(media_id: &MediaId, processing: bool) -> MediaStatus {
    MediaStatus {
        media_id: media_id.clone(),
        media_key: None,
        size: None,
        expires_after_secs: None,
        processing_info: processing.then_some(ProcessingInfo {
            state: ProcessingState::Succeeded,
            check_after_secs: None,
            progress_percent: Some(100),
            error: None,
        }),
    }
}

/// The model server's answer to a request that carries no segment, one round trip later.
fn answer(
    now: Instant,
    id: ReqId,
    result: std::result::Result<Reply, Failure>,
) -> (Instant, Later) {
    let reply = Later::Reply {
        id,
        started: now,
        result,
        store: None,
    };
    (now + RTT, reply)
}

/// One case: returns what went wrong, if anything.
#[allow(clippy::too_many_lines)]
fn case(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = rng.random_range(1..=FILE_MAX);
    // Every 8-byte word is its own position mixed with the seed, so a byte out of place
    // shows; cheap to make (a cryptographic RNG in a debug build would dominate the time).
    let file: Bytes = (0..len.div_ceil(8) as u64)
        .flat_map(|i| (i ^ seed.rotate_left(32)).to_le_bytes())
        .take(len)
        .collect();
    let max_chunk = [16 * KIB, 64 * KIB, 256 * KIB, 5 * MIB, 5 * MIB][rng.random_range(0..5)];
    let p_fail: f64 = rng.random_range(0.0..0.3);
    let p_store_fail: f64 = [0.0, 0.05, 0.3][rng.random_range(0..3)];
    let crashes = rng.random_range(0..=4usize);
    let rate = rng.random_range(20_000.0..1_000_000.0_f64); // bytes per second
    let identity = SourceIdentity {
        path: Some("/model/file".into()),
        size: len as u64,
        modified: None,
        fingerprint: format!("{seed:016x}"),
    };
    let target = ProtocolTarget {
        api: "model".into(),
        base_url: "model://".into(),
    };
    let cfg = CoreConfig {
        retry: RetryPolicy::default().with_seed(seed),
        polling: PollingConfig::default(),
        control_timeout: Duration::from_secs(60),
        enforce_category_limits: false,
        trace_requests: false,
        persist: true,
        log_plans: false,
    };
    let mut server = Server::default();
    let mut durable: Option<Checkpoint> = None;
    let mut now = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    for run in 0..MAX_RUNS {
        let mut strategy = AdaptiveStrategy::default();
        // Half the resumes start the strategy cold (as after a checkpoint of an older
        // version): its chunk sizes then differ from the first run's, which is what would
        // re-cut recorded indices if the core did not keep them.
        let mut resume = durable.clone();
        if rng.random_bool(0.5) {
            if let Some(cp) = resume.as_mut() {
                cp.strategy_state = None;
            }
        }
        let upload = Upload {
            total_bytes: len as u64,
            max_chunk,
            spec: MediaSpec::new("video/mp4").with_category(MediaCategory::TweetVideo),
            target: target.clone(),
            identity: Some(identity.clone()),
            resume,
        };
        let mut core = Core::new(cfg.clone(), upload, &mut strategy, now, wall)
            .map_err(|e| format!("run {run}: the core refused the durable checkpoint: {e}"))?;
        let crash_after = (run < crashes).then(|| rng.random_range(1..400usize));
        let mut actions = 0usize;
        let mut later: Vec<(Instant, Later)> = Vec::new();
        let mut acked_in_run: HashSet<u32> = HashSet::new();
        let mut out = Vec::new();
        core.handle(now, Input::Start, &mut strategy, &mut out);
        let ended = 'run: loop {
            let mut immediate = Vec::new();
            for action in out.drain(..) {
                actions += 1;
                if crash_after == Some(actions) {
                    break 'run None;
                }
                match action {
                    Action::Init { id, .. } => {
                        server.next_id += 1;
                        let media_id = MediaId(server.next_id.to_string());
                        server.media.insert(
                            media_id.clone(),
                            Media {
                                total: len as u64,
                                ..Media::default()
                            },
                        );
                        let result = Ok(Reply::Init(InitResponse {
                            media_id,
                            media_key: None,
                            expires_after_secs: None,
                        }));
                        later.push(answer(now, id, result));
                    }
                    Action::Append {
                        id,
                        media_id,
                        segment,
                        deadline,
                        ..
                    } => {
                        // Write-ahead: the durable checkpoint records this very segment.
                        let recorded = durable.as_ref().is_some_and(|cp| {
                            cp.media_id == media_id && cp.plan.segments().contains(&segment)
                        });
                        if !recorded {
                            return Err(format!(
                                "run {run}: segment {segment:?} sent before a checkpoint \
                                 recorded it"
                            ));
                        }
                        if acked_in_run.contains(&segment.index) {
                            return Err(format!(
                                "run {run}: segment {} sent again after its acknowledgement",
                                segment.index
                            ));
                        }
                        if durable.as_ref().is_some_and(|cp| {
                            cp.media_id == media_id && cp.acked.contains(&segment.index)
                        }) {
                            return Err(format!(
                                "run {run}: segment {} sent again though the checkpoint \
                                 records it as acknowledged",
                                segment.index
                            ));
                        }
                        let Some(media) = server.media.get_mut(&media_id) else {
                            return Err(format!("APPEND to unknown media {media_id}"));
                        };
                        let lens = media.lens.entry(segment.index).or_default();
                        lens.insert(segment.len);
                        if lens.len() > 1 {
                            return Err(format!(
                                "run {run}: index {} sent with lengths {lens:?}",
                                segment.index
                            ));
                        }
                        let start = usize::try_from(segment.offset).unwrap_or(usize::MAX);
                        let end = usize::try_from(segment.end()).unwrap_or(usize::MAX);
                        let Some(data) = file.get(start..end) else {
                            return Err(format!("segment {segment:?} outside the file"));
                        };
                        let data = Bytes::copy_from_slice(data);
                        let took = RTT + Duration::from_secs_f64(segment.len as f64 / rate);
                        let dice: f64 = rng.random();
                        let failing = dice < p_fail;
                        let (at, result, store) = if took > deadline
                            || (failing && dice < p_fail * 0.2)
                        {
                            (
                                now + deadline,
                                Err(Failure::Deadline(deadline)),
                                Some((media_id, segment.index, data)),
                            )
                        } else if failing && dice < p_fail * 0.5 {
                            let at = now + took.mul_f64(rng.random());
                            (
                                at,
                                Err(Failure::Request(Error::new(ErrorKind::Transport, "reset"))),
                                None,
                            )
                        } else if failing && dice < p_fail * 0.75 {
                            (
                                now + RTT,
                                Err(Failure::Request(
                                    Error::new(ErrorKind::ServerError, "503").with_status(503),
                                )),
                                None,
                            )
                        } else if failing {
                            let ra = Duration::from_secs(rng.random_range(1..5));
                            let e = Error::new(ErrorKind::RateLimited, "429")
                                .with_status(429)
                                .with_retry_after(ra);
                            (now + RTT, Err(Failure::Request(e)), None)
                        } else {
                            (
                                now + took,
                                Ok(Reply::Append(AppendResponse::default())),
                                Some((media_id, segment.index, data)),
                            )
                        };
                        later.push((
                            at,
                            Later::Reply {
                                id,
                                started: now,
                                result,
                                store,
                            },
                        ));
                    }
                    Action::Finalize { id, media_id, .. } => {
                        let result = match server.media.get_mut(&media_id) {
                            Some(m) if m.finalized => {
                                Err(rejected(ErrorKind::MediaGone, "Invalid media_id"))
                            }
                            Some(m) => match m.assembled() {
                                Some(_) => {
                                    m.finalized = true;
                                    Ok(Reply::Status(status(&media_id, false)))
                                }
                                None => Err(rejected(
                                    ErrorKind::SegmentMismatch,
                                    "Segments do not add up to provided total file size.",
                                )),
                            },
                            None => Err(rejected(ErrorKind::MediaGone, "Invalid media_id")),
                        };
                        later.push(answer(now, id, result));
                    }
                    Action::Status { id, media_id, .. } => {
                        let result = match server.media.get(&media_id) {
                            Some(m) if m.finalized => Ok(Reply::Status(status(&media_id, true))),
                            _ => Err(rejected(ErrorKind::MediaGone, "BadRequest: Not found")),
                        };
                        later.push(answer(now, id, result));
                    }
                    Action::Abort { id } => {
                        later.retain(|(_, l)| !matches!(l, Later::Reply { id: i, .. } if *i == id));
                    }
                    Action::Persist { seq, checkpoint } => {
                        let ok = !rng.random_bool(p_store_fail);
                        let at = now + Duration::from_millis(rng.random_range(0..50));
                        later.push((
                            at,
                            Later::Persist {
                                seq,
                                checkpoint,
                                ok,
                            },
                        ));
                    }
                    Action::Remove { .. } => {
                        durable = None;
                        immediate.push(Input::Removed { errors: Vec::new() });
                    }
                    Action::Emit(_) => {}
                    Action::Done(result) => break 'run Some(result),
                }
            }
            for input in immediate {
                core.input(now, input, &mut strategy, &mut out);
            }
            if !out.is_empty() {
                continue;
            }
            // The next thing to happen.
            let next = later
                .iter()
                .map(|(at, _)| *at)
                .chain(core.next_wake())
                .min();
            let Some(next) = next else {
                return Err(format!("run {run}: the core waits for nothing: {core:?}"));
            };
            now = now.max(next);
            let (due, rest): (Vec<_>, Vec<_>) = later.into_iter().partition(|(at, _)| *at <= now);
            later = rest;
            let mut due = due;
            due.sort_by_key(|(at, _)| *at);
            for (_, l) in due {
                let input = match l {
                    Later::Reply {
                        id,
                        started,
                        result,
                        store,
                    } => {
                        if let Some((media_id, index, data)) = store {
                            if result.is_ok() {
                                acked_in_run.insert(index);
                            }
                            if let Some(m) = server.media.get_mut(&media_id) {
                                m.segments.insert(index, data);
                            }
                        }
                        Input::Reply {
                            id,
                            started,
                            result,
                        }
                    }
                    Later::Persist {
                        seq,
                        checkpoint,
                        ok,
                    } => {
                        if ok {
                            durable = Some(*checkpoint);
                        }
                        let result = if ok {
                            Ok(())
                        } else {
                            Err(Error::new(ErrorKind::Checkpoint, "disk full"))
                        };
                        Input::Persisted { seq, result }
                    }
                };
                core.input(now, input, &mut strategy, &mut out);
            }
            core.input(now, Input::Tick, &mut strategy, &mut out);
            core.step(now, &mut strategy, &mut out);
        };
        match ended {
            Some(Ok(report)) => {
                let media = server
                    .media
                    .get(&report.media_id)
                    .ok_or("completed with an unknown media id")?;
                let assembled = media
                    .assembled()
                    .ok_or("completed media does not assemble")?;
                // Byte equality: the SHA-256 of the assembled media is the file's.
                if assembled != file {
                    return Err("the assembled media differs from the file".into());
                }
                if !media.finalized {
                    return Err("completed without FINALIZE".into());
                }
                return Ok(());
            }
            Some(Err(e)) if e.kind() == ErrorKind::SegmentMismatch => {
                return Err(format!("run {run}: FINALIZE failed: {e}"));
            }
            // A crash, or a failure (retry budget, store outage): the next run resumes.
            Some(Err(_)) | None => {
                for (_, l) in later {
                    match l {
                        // A write in progress may have landed (the rename happened).
                        Later::Persist { checkpoint, ok, .. } if ok && rng.random_bool(0.5) => {
                            durable = Some(*checkpoint)
                        }
                        // An APPEND in flight may have reached the server.
                        Later::Reply {
                            store: Some((media_id, index, data)),
                            ..
                        } if rng.random_bool(0.5) => {
                            if let Some(m) = server.media.get_mut(&media_id) {
                                m.segments.insert(index, data);
                            }
                        }
                        _ => {}
                    }
                }
                now += Duration::from_secs(1);
            }
        }
    }
    Err(format!("not complete after {MAX_RUNS} runs"))
}

#[test]
fn crashes_failures_and_resumes_never_lose_or_corrupt_a_byte() {
    let failures: Vec<String> = (0..CASES)
        .filter_map(|seed| case(seed).err().map(|e| format!("seed {seed}: {e}")))
        .take(10)
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
