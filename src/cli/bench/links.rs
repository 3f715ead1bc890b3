//! The links `chunkwise bench` runs over, and the file size that makes each take about the
//! target time at best.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use chunkwise::link::{LinkProfile, RoundTrips};

/// The built-in synthetic profiles of a full run.
///
/// Source: issue 3's link list (constant 10 Mbit/s 40 ms; constant 1 Mbit/s 150 ms; a step
/// 20 → 2 → 20 Mbit/s; a 20 s outage; resets every 8 MiB on average).
pub(crate) const SYNTHETIC_LINKS: &[&str] = &[
    "constant-10mbit-40ms",
    "constant-1mbit-150ms",
    "step-20-2-20",
    "outage-20s",
    "lossy",
];

/// The Mahimahi uplink traces of a full run, when the traces directory is present.
///
/// Source: issue 3 ("at least TMobile-LTE-short.up, Verizon-LTE-short.up,
/// ATT-LTE-driving-2016.up and TMobile-UMTS-driving.up on the upload direction").
pub(crate) const TRACE_LINKS: &[&str] = &[
    "TMobile-LTE-short.up",
    "Verizon-LTE-short.up",
    "ATT-LTE-driving-2016.up",
    "TMobile-UMTS-driving.up",
];

/// The links of `--quick`: two synthetic ones, one clean and one with resets.
///
/// Source: reasonable default; enough to exercise the success and the retry paths in
/// seconds.
pub(crate) const QUICK_LINKS: &[&str] = &["constant-10mbit-40ms", "lossy"];

/// Default directory of the trace files, relative to the working directory.
///
/// Source: the project layout (`shared/traces` next to the repository checkout).
pub(crate) const DEFAULT_TRACES_DIR: &str = "../shared/traces";

/// The largest file the size solver proposes: 512 MiB.
///
/// Source: the X video limit (`chunkwise::limits::VIDEO_MAX_BYTES`); a link fast enough to
/// need more for the target time is beyond what the bench is about.
pub(crate) const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// File sizes are rounded up to a multiple of this: 1 KiB.
///
/// Source: reasonable default; keeps the printed sizes readable while changing the ideal
/// by well under a millisecond on every link here.
const SIZE_GRANULE: u64 = 1024;

/// The names a run uses: `wanted` if given, else the quick or the full list (the traces only
/// when `traces_dir` exists).
pub(crate) fn link_names(wanted: &[String], quick: bool, traces_dir: &Path) -> Vec<String> {
    if !wanted.is_empty() {
        return wanted.to_vec();
    }
    if quick {
        return QUICK_LINKS.iter().map(|s| s.to_string()).collect();
    }
    let mut names: Vec<String> = SYNTHETIC_LINKS.iter().map(|s| s.to_string()).collect();
    if traces_dir.is_dir() {
        names.extend(TRACE_LINKS.iter().map(|s| s.to_string()));
    }
    names
}

/// A profile by built-in name, by file name inside `traces_dir`, or by path.
pub(crate) async fn resolve(name: &str, traces_dir: &Path) -> anyhow::Result<LinkProfile> {
    if let Ok(p) = LinkProfile::from_name(name) {
        return Ok(p);
    }
    let in_dir = traces_dir.join(name);
    if tokio::fs::try_exists(&in_dir).await.unwrap_or(false) {
        return LinkProfile::from_trace_file(&in_dir)
            .await
            .with_context(|| format!("reading the trace {}", in_dir.display()));
    }
    LinkProfile::resolve(name).await.with_context(|| {
        format!(
            "unknown link {name:?}: neither a built-in profile ({}) nor a trace in {} nor a file",
            LinkProfile::names().join(", "),
            traces_dir.display()
        )
    })
}

/// The smallest file size (a multiple of [`SIZE_GRANULE`], at most [`MAX_FILE_BYTES`]) whose
/// ideal time over `profile` from schedule time 0 is at least `target`.
pub(crate) fn size_for_target(profile: &LinkProfile, target: Duration) -> u64 {
    chunkwise::link::payload_for_ideal(
        profile,
        target,
        RoundTrips::CHUNKED_UPLOAD,
        SIZE_GRANULE,
        MAX_FILE_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chunkwise::link::ideal_time;

    /// The ideal time of an upload of `bytes` over `profile`, started at schedule time 0.
    fn ideal(profile: &LinkProfile, bytes: u64) -> Duration {
        ideal_time(profile, bytes, RoundTrips::CHUNKED_UPLOAD)
    }

    #[test]
    fn solved_size_puts_the_ideal_at_the_target() {
        let target = Duration::from_secs(60);
        for name in SYNTHETIC_LINKS {
            let p = LinkProfile::from_name(name).unwrap();
            let size = size_for_target(&p, target);
            assert_eq!(size % SIZE_GRANULE, 0);
            let at = ideal(&p, size);
            let below = ideal(&p, size - SIZE_GRANULE);
            assert!(at >= target && below < target, "{name}: {at:?} {below:?}");
            // One granule more never costs more than a second on these links.
            assert!(at - target < Duration::from_secs(1), "{name}: {at:?}");
        }
        // 10 Mbit/s: INIT, tail and FINALIZE take 3 × 40 ms, the rest carries 1.25 MB/s.
        let p = LinkProfile::from_name("constant-10mbit-40ms").unwrap();
        let size = size_for_target(&p, target);
        let expected = (60.0 - 0.12) * 1.25e6;
        assert!((size as f64 - expected).abs() <= 1024.0, "{size}");
    }

    #[test]
    fn unreachable_targets_give_the_cap_and_tiny_ones_a_granule() {
        let p = LinkProfile::from_name("constant-10mbit-40ms").unwrap();
        assert_eq!(
            size_for_target(&p, Duration::from_secs(100_000)),
            MAX_FILE_BYTES
        );
        assert_eq!(size_for_target(&p, Duration::ZERO), SIZE_GRANULE);
    }

    #[test]
    fn default_link_lists() {
        let none = Path::new("/nonexistent/traces");
        assert_eq!(link_names(&[], true, none), QUICK_LINKS);
        assert_eq!(link_names(&[], false, none), SYNTHETIC_LINKS);
        let picked = vec!["lossy".to_string()];
        assert_eq!(link_names(&picked, true, none), picked);
    }

    #[tokio::test]
    async fn links_resolve_by_name_or_trace_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tiny.up"), "1\n2\n3\n").unwrap();
        let p = resolve("tiny.up", dir.path()).await.unwrap();
        assert_eq!(p.name(), "tiny.up");
        assert_eq!(resolve("lossy", dir.path()).await.unwrap().name(), "lossy");
        let e = resolve("nope", dir.path()).await.unwrap_err().to_string();
        assert!(e.contains("unknown link"), "{e}");
    }
}
