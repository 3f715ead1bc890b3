//! One cell of the bench: one upload of one strategy over one link, as a child process.
//!
//! The harness process runs the emulator and the link proxy; the upload runs in a child
//! `chunkwise upload` so that the peak memory it reports is the client's alone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use chunkwise::emulator::{
    Emulator, EmulatorConfig, ProcessingConfig, ProcessingTimeline, demo_credentials,
};
use chunkwise::link::{IdealTime, LinkProfile, LinkProxy, LinkStats, ProxyOptions, RoundTrips};
use serde::{Deserialize, Serialize};

use super::super::upload::{CliReport, unix_ms};

/// A cell is killed once it runs this many times its ideal time.
///
/// Source: issue 3's harness guidance ("a cell that exceeds a cap (e.g. 5× its ideal, or 10
/// minutes) is killed and reported as timeout").
const CAP_FACTOR: u32 = 5;

/// The longest any cell may run: 10 minutes.
///
/// Source: issue 3's harness guidance (see [`CAP_FACTOR`]).
const CAP_MAX: Duration = Duration::from_secs(600);

/// The least headroom over the ideal a cell gets, whatever its ideal: 30 s.
///
/// Source: reasonable default; for the few-second cells of `--quick`, 5× the ideal would be
/// shorter than one 30 s request timeout plus its retry, which is behaviour to measure, not to
/// cut off.
const CAP_MIN_HEADROOM: Duration = Duration::from_secs(30);

/// The environment variables that carry X credentials; the child must not see them, so it
/// uses the emulator's demo credentials.
const CREDENTIAL_VARS: &[&str] = &[
    "X_API_KEY",
    "X_API_SECRET",
    "X_ACCESS_TOKEN",
    "X_ACCESS_TOKEN_SECRET",
    "X_BEARER_TOKEN",
];

/// The time a cell may run before it is killed.
pub(crate) fn cap_for(ideal: Duration) -> Duration {
    ideal
        .saturating_mul(CAP_FACTOR)
        .max(ideal.saturating_add(CAP_MIN_HEADROOM))
        .min(CAP_MAX)
}

/// How a cell ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum CellOutcome {
    /// The upload finished and the emulator holds the file's exact bytes.
    Ok,
    /// The upload failed, or the bench could not run it.
    Failed {
        /// The error, on one line.
        error: String,
    },
    /// The upload ran past its cap and was killed.
    Timeout {
        /// The cap, in seconds.
        cap_secs: f64,
    },
}

/// Counters of the link proxy at the end of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct LinkCounters {
    /// Connections the client opened.
    pub(crate) connections: u64,
    /// Connections reset by the link's faults.
    pub(crate) resets: u64,
    /// Connections torn down by an I/O error.
    pub(crate) aborted: u64,
    /// Bytes the client sent into the uplink (payload, headers and re-sent data).
    pub(crate) up_bytes: u64,
    /// Median uplink queueing delay, in milliseconds.
    pub(crate) up_queue_p50_ms: f64,
    /// 99th percentile uplink queueing delay, in milliseconds.
    pub(crate) up_queue_p99_ms: f64,
}

impl From<LinkStats> for LinkCounters {
    fn from(s: LinkStats) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        LinkCounters {
            connections: s.connections,
            resets: s.resets,
            aborted: s.aborted,
            up_bytes: s.up.bytes_enqueued,
            up_queue_p50_ms: ms(s.up.queue_delay_p50),
            up_queue_p99_ms: ms(s.up.queue_delay_p99),
        }
    }
}

/// The result of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CellResult {
    /// The link's name.
    pub(crate) link: String,
    /// The strategy's name.
    pub(crate) strategy: String,
    /// The size of the uploaded file.
    pub(crate) file_bytes: u64,
    /// The ideal completion time from the moment the upload started, in seconds.
    pub(crate) ideal_secs: f64,
    /// Where on the link's schedule the upload started, in seconds.
    pub(crate) schedule_start_secs: f64,
    /// How it ended.
    pub(crate) outcome: CellOutcome,
    /// From spawning the child to its exit (or kill), in seconds.
    pub(crate) wall_secs: f64,
    /// The link proxy's counters.
    pub(crate) link_stats: Option<LinkCounters>,
    /// The child's report, when it wrote one.
    pub(crate) report: Option<CliReport>,
}

impl CellResult {
    /// The report of a successful cell.
    pub(crate) fn ok_report(&self) -> Option<&CliReport> {
        match self.outcome {
            CellOutcome::Ok => self.report.as_ref(),
            _ => None,
        }
    }

    /// The completion time of a successful cell, in seconds.
    pub(crate) fn elapsed_secs(&self) -> Option<f64> {
        self.ok_report().map(|r| r.report.elapsed.as_secs_f64())
    }

    /// Ideal / actual of a successful cell.
    pub(crate) fn efficiency(&self) -> Option<f64> {
        self.elapsed_secs()
            .filter(|s| *s > 0.0)
            .map(|s| self.ideal_secs / s)
    }
}

/// What one cell uploads, over what, with what.
#[derive(Debug, Clone)]
pub(crate) struct CellSpec {
    /// The link.
    pub(crate) profile: LinkProfile,
    /// The strategy preset's name.
    pub(crate) strategy: &'static str,
    /// The file to upload.
    pub(crate) file: PathBuf,
    /// Its size.
    pub(crate) file_bytes: u64,
    /// Its SHA-256.
    pub(crate) sha256: [u8; 32],
    /// Seed of the link's faults.
    pub(crate) seed: u64,
    /// Where the child writes its report.
    pub(crate) report_path: PathBuf,
}

/// Runs one cell with `exe` as the `chunkwise` binary. Failures of the upload or of the
/// harness end up in the result, never as an error.
pub(crate) async fn run_cell(exe: &Path, spec: &CellSpec) -> CellResult {
    let mut result = CellResult {
        link: spec.profile.name().to_string(),
        strategy: spec.strategy.to_string(),
        file_bytes: spec.file_bytes,
        ideal_secs: 0.0,
        schedule_start_secs: 0.0,
        outcome: CellOutcome::Failed {
            error: String::new(),
        },
        wall_secs: 0.0,
        link_stats: None,
        report: None,
    };
    if let Err(e) = run_cell_into(exe, spec, &mut result).await {
        result.outcome = CellOutcome::Failed {
            error: super::super::one_line(&e),
        };
    }
    result
}

async fn run_cell_into(exe: &Path, spec: &CellSpec, result: &mut CellResult) -> anyhow::Result<()> {
    // FINALIZE answers "succeeded" at once (v2 always processes videos, so processing takes
    // no time instead of being skipped): the completion time is the transfer's, not that of
    // STATUS polls. No size is too large to finalize.
    let config = EmulatorConfig {
        sync_max_bytes: u64::MAX,
        processing: ProcessingConfig {
            timeline: ProcessingTimeline::Timed {
                pending: Duration::ZERO,
                in_progress: Duration::ZERO,
            },
            ..ProcessingConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::builder()
        .credentials(demo_credentials())
        .config(config)
        .start()
        .await?;
    let proxy = LinkProxy::start(
        emulator.addr(),
        spec.profile.clone(),
        ProxyOptions::default().with_seed(spec.seed),
    )
    .await?;
    let _ = tokio::fs::remove_file(&spec.report_path).await;

    let mut command = tokio::process::Command::new(exe);
    command
        .arg("upload")
        .arg(&spec.file)
        .args(["--base-url", &format!("http://{}", proxy.addr())])
        .args(["--api", "v2", "--media-type", "video/mp4"])
        .args(["--strategy", spec.strategy, "--trace-requests", "--quiet"])
        .arg("--report")
        .arg(&spec.report_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in CREDENTIAL_VARS {
        command.env_remove(var);
    }
    // The ideal is computed from where the link's schedule is when the upload starts: here,
    // plus the child's start-up (from its report).
    let spawned_sched = proxy.schedule_time();
    let spawned_unix = SystemTime::now();
    let spawned = Instant::now();
    let approx_ideal = IdealTime::compute(
        &spec.profile,
        spawned_sched,
        spec.file_bytes,
        RoundTrips::CHUNKED_UPLOAD,
    )
    .total;
    let cap = cap_for(approx_ideal);
    result.ideal_secs = approx_ideal.as_secs_f64();
    result.schedule_start_secs = spawned_sched.as_secs_f64();
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    // Dropping the wait on timeout drops the child, which kills it (`kill_on_drop`).
    let waited = tokio::time::timeout(cap, child.wait_with_output()).await;
    result.wall_secs = spawned.elapsed().as_secs_f64();
    result.link_stats = Some(proxy.stats().into());
    let output = match waited {
        Err(_) => {
            result.outcome = CellOutcome::Timeout {
                cap_secs: cap.as_secs_f64(),
            };
            proxy.shutdown().await;
            emulator.shutdown().await;
            return Ok(());
        }
        Ok(output) => output.context("waiting for the upload")?,
    };
    let report = if output.status.success() {
        let bytes = tokio::fs::read(&spec.report_path)
            .await
            .context("reading the upload's report")?;
        Some(serde_json::from_slice::<CliReport>(&bytes).context("parsing the upload's report")?)
    } else {
        None
    };
    if let Some(r) = &report {
        let started = r
            .started_unix_ms
            .zip(unix_ms(spawned_unix))
            .map_or(Duration::ZERO, |(child, parent)| {
                Duration::from_secs_f64(((child - parent) / 1e3).max(0.0))
            });
        let start = spawned_sched + started;
        result.schedule_start_secs = start.as_secs_f64();
        result.ideal_secs = IdealTime::compute(
            &spec.profile,
            start,
            spec.file_bytes,
            RoundTrips::CHUNKED_UPLOAD,
        )
        .total
        .as_secs_f64();
    }
    result.outcome = match &report {
        None => CellOutcome::Failed {
            error: last_line(&output.stderr)
                .unwrap_or_else(|| format!("the upload exited with {}", output.status)),
        },
        Some(r) if emulator.media_sha256(&r.report.media_id) != Some(spec.sha256) => {
            CellOutcome::Failed {
                error: "the emulator's media differs from the file".to_string(),
            }
        }
        Some(_) => CellOutcome::Ok,
    };
    result.report = report;
    proxy.shutdown().await;
    emulator.shutdown().await;
    Ok(())
}

/// The last non-empty line of a child's stderr.
fn last_line(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_scale_with_the_ideal_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(cap_for(s(60)), s(300));
        assert_eq!(cap_for(s(2)), s(32));
        assert_eq!(cap_for(s(200)), CAP_MAX);
    }

    #[test]
    fn last_line_skips_blank_lines() {
        assert_eq!(
            last_line(b"warn: x\nerror: boom\n\n").as_deref(),
            Some("error: boom")
        );
        assert_eq!(last_line(b"  \n"), None);
    }
}
