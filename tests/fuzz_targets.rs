//! The fuzz targets of `fuzz/` as ordinary tests, for machines without nightly Rust: the
//! committed seeds, seeded random bytes, and seeds with bytes overwritten or cut off, fed to
//! the same entry points (`protocol::fuzzing::parse_response`,
//! `checkpoint::fuzzing::read_checkpoint`, `settings::fuzzing::load_settings`).
//! Deterministic: proptest runs with fixed seeds.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chunkwise::MediaCategory;
use chunkwise::checkpoint::fuzzing::read_checkpoint;
use chunkwise::checkpoint::{Checkpoint, SourceIdentity};
use chunkwise::engine::{MediaSpec, Plan};
use chunkwise::protocol::fuzzing::parse_response;
use chunkwise::protocol::{MediaId, ProtocolTarget};
use chunkwise::scheduler::FixedStrategy;
use chunkwise::settings::fuzzing::load_settings;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// A valid checkpoint: 10 MB planned in 3 segments of 4 MiB-ish, two acknowledged.
fn valid_checkpoint() -> Checkpoint {
    let mut plan = Plan::new(10_000_000, 5 * 1024 * 1024).unwrap();
    let mut s = FixedStrategy::new(4 * 1024 * 1024, 1, Duration::from_secs(1));
    let now = tokio::time::Instant::now();
    for _ in 0..2 {
        plan.next_segment(&mut s, now).unwrap();
    }
    Checkpoint {
        target: ProtocolTarget {
            api: "x-v2".into(),
            base_url: "http://127.0.0.1:8080/".into(),
        },
        media_id: MediaId::from("1880000000000000000"),
        media_key: Some("13_1880000000000000000".into()),
        expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000)),
        source: SourceIdentity {
            path: Some("/home/me/videos/clip.mp4".into()),
            size: 10_000_000,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::new(1_759_000_000, 42)),
            fingerprint: "0f".repeat(32),
        },
        spec: MediaSpec::new("video/mp4").with_category(MediaCategory::AmplifyVideo),
        plan,
        acked: [0].into(),
        strategy_state: Some(serde_json::json!({"rate_bps": 1.25e6, "rtt_ms": 80})),
        saved_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_759_000_100),
    }
}

#[test]
fn seeds_parse_without_panicking() {
    for (_, data) in seeds("parse_response") {
        parse_response(&data);
    }
    let mut readable = 0;
    for (path, data) in seeds("checkpoint") {
        read_checkpoint(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        readable += usize::from(Checkpoint::from_bytes(&data).is_ok());
    }
    assert!(readable > 0, "no seed is a valid checkpoint");
    let mut loadable = 0;
    for (path, data) in seeds("settings") {
        load_settings(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        loadable += usize::from(path.ends_with("example.toml"));
    }
    assert_eq!(loadable, 1, "the example file is a seed");
}

#[test]
fn the_example_settings_seed_is_current() {
    // The seed must stay the example file, so fuzzing starts from every key.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/chunkwise.toml");
    let seed = seeds("settings")
        .into_iter()
        .find(|(p, _)| p.ends_with("example.toml"))
        .unwrap();
    assert_eq!(seed.1, std::fs::read(example).unwrap());
}

#[test]
fn the_valid_checkpoint_seed_is_current() {
    // The seed must stay readable by this build, or fuzzing starts from nothing valid.
    let seed = seeds("checkpoint")
        .into_iter()
        .find(|(p, _)| p.ends_with("valid.ckpt"))
        .unwrap();
    assert_eq!(Checkpoint::from_bytes(&seed.1).unwrap(), valid_checkpoint());
}

/// Regenerates `fuzz/seeds/checkpoint/` (run with `--ignored` after a format change).
#[test]
#[ignore = "writes the seed files into the source tree"]
fn write_checkpoint_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    let valid = valid_checkpoint().to_bytes().unwrap();
    std::fs::write(dir.join("valid.ckpt"), &valid).unwrap();
    std::fs::write(dir.join("truncated.ckpt"), &valid[..valid.len() / 2]).unwrap();
    let mut other_version = valid.clone();
    let at = other_version
        .windows(11)
        .position(|w| w == b"\"version\":1")
        .unwrap();
    other_version[at + 10] = b'9';
    std::fs::write(dir.join("version9.ckpt"), other_version).unwrap();
}

/// Which seed to take, which bytes to overwrite with what, and where to cut it off.
type Mutation = (
    prop::sample::Index,
    Vec<(prop::sample::Index, u8)>,
    prop::sample::Index,
);

fn mutations() -> impl Strategy<Value = Mutation> {
    (
        any::<prop::sample::Index>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
    )
}

/// A seed of `target` with `mutation` applied.
fn mutated_seed(target: &str, (pick, edits, cut): Mutation) -> Vec<u8> {
    let seeds = seeds(target);
    let (_, seed) = &seeds[pick.index(seeds.len())];
    let mut data = seed.to_vec();
    if !data.is_empty() {
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
    }
    let keep = cut.index(data.len() + 1);
    data.truncate(keep);
    data
}

fn config() -> Config {
    Config {
        cases: 1024,
        rng_seed: RngSeed::Fixed(0x5eed),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsers_never_panic_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        parse_response(&data);
    }

    #[test]
    fn parsers_never_panic_on_mutated_seeds(m in mutations()) {
        parse_response(&mutated_seed("parse_response", m));
    }

    #[test]
    fn checkpoint_reader_holds_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        prop_assert_eq!(read_checkpoint(&data), Ok(()));
    }

    #[test]
    fn checkpoint_reader_holds_on_mutated_seeds(m in mutations()) {
        prop_assert_eq!(read_checkpoint(&mutated_seed("checkpoint", m)), Ok(()));
    }

    #[test]
    fn settings_loader_holds_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        prop_assert_eq!(load_settings(&data), Ok(()));
    }

    #[test]
    fn settings_loader_holds_on_mutated_seeds(m in mutations()) {
        prop_assert_eq!(load_settings(&mutated_seed("settings", m)), Ok(()));
    }
}
