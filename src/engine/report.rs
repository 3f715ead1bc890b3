//! The summary of a finished upload, and the recorder that builds it.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::protocol::{LanguageCode, MediaId, ProcessingState};
use crate::scheduler::Outcome;

/// Highest APPEND latency the histogram tracks exactly: 1 hour, in microseconds; longer
/// samples are recorded as this value.
///
/// Source: reasonable default; ten times the 2-minute default deadline of
/// [`FixedStrategy`](crate::scheduler::FixedStrategy), so no real sample is clipped.
pub const LATENCY_HISTOGRAM_MAX_MICROS: u64 = 3_600_000_000;

/// Significant decimal digits of the latency histogram: 3 (0.1 % resolution).
///
/// Source: reasonable default; 0.1 % resolution is far finer than the jitter of network
/// latencies, and keeps the histogram a few tens of KiB.
pub const LATENCY_HISTOGRAM_SIGFIG: u8 = 3;

/// APPEND latency percentiles of the successful attempts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// How one APPEND attempt ended, for the request trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// 2xx.
    Success,
    /// Ran past its deadline.
    Timeout,
    /// Made no progress for the stall time.
    Stalled,
    /// Transport error, 5xx or 408.
    RetryableError,
    /// 429.
    Throttled,
    /// A failure that ended the upload.
    Fatal,
    /// Dropped by a pause in [`PauseMode::Abandon`](super::PauseMode::Abandon); the segment
    /// is sent again after the resume.
    Abandoned,
}

impl From<Outcome> for AttemptOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => AttemptOutcome::Success,
            Outcome::Timeout => AttemptOutcome::Timeout,
            Outcome::Stalled => AttemptOutcome::Stalled,
            Outcome::RetryableError => AttemptOutcome::RetryableError,
            Outcome::Throttled { .. } => AttemptOutcome::Throttled,
            Outcome::Fatal => AttemptOutcome::Fatal,
        }
    }
}

/// One APPEND attempt, recorded when [`EngineConfig::trace_requests`](super::EngineConfig)
/// is on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The segment index.
    pub segment: u32,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Payload bytes.
    pub bytes: u64,
    /// When the request started, in ms since the upload started.
    pub start_ms: f64,
    /// When it ended, in ms since the upload started.
    pub end_ms: f64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// APPENDs in flight when it started, itself included.
    pub in_flight: usize,
    /// Whether the engine left capacity unused while it ran.
    pub app_limited: bool,
}

/// What a finished upload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadReport {
    /// The media id.
    pub media_id: MediaId,
    /// The media key, when the server sent one.
    pub media_key: Option<String>,
    /// The size of the source.
    pub total_bytes: u64,
    /// Segments used.
    pub segments: u32,
    /// From the start of the upload task to the media being ready.
    pub elapsed: Duration,
    /// `total_bytes / elapsed`, in bytes per second (0 if no time passed).
    pub goodput_bytes_per_sec: f64,
    /// APPEND latency of the successful attempts.
    pub latency: LatencySummary,
    /// APPEND attempts, retries included.
    pub attempts: u32,
    /// APPEND retries.
    pub retries: u32,
    /// Retries of INIT, FINALIZE and STATUS.
    pub control_retries: u32,
    /// Payload bytes handed to APPEND attempts, retries included.
    pub bytes_sent: u64,
    /// Payload bytes of retried attempts (the data cost of failures).
    pub bytes_resent: u64,
    /// The final processing state (`None` when FINALIZE said the media was ready at once).
    pub processing_state: Option<ProcessingState>,
    /// Smallest segment.
    pub chunk_min: u64,
    /// Largest segment.
    pub chunk_max: u64,
    /// Most APPENDs in flight at once.
    pub max_in_flight: usize,
    /// Segments a resumed upload found already acknowledged in its checkpoint and did not
    /// send again (0 for an upload that was not resumed, or that restarted).
    pub resumed_segments: u32,
    /// Whether a resumed upload had to start over with a new INIT because its media id had
    /// expired or was unknown to the server.
    pub restarted: bool,
    /// Every APPEND attempt, when request tracing is on; empty otherwise.
    pub trace: Vec<AttemptRecord>,
    /// Whether the media went up in one request (the one-shot upload). The APPEND figures
    /// (`segments`, `attempts`, `retries`, `bytes_sent`, `latency`, ...) then count that
    /// request's attempts.
    #[serde(default)]
    pub one_shot: bool,
    /// Whether [`MediaSpec::alt_text`](super::MediaSpec::alt_text) was set on the media.
    #[serde(default)]
    pub alt_text_set: bool,
    /// The subtitle tracks attached to the video, in the order of
    /// [`MediaSpec::subtitles`](super::MediaSpec::subtitles).
    #[serde(default)]
    pub subtitles: Vec<AttachedSubtitles>,
}

/// A subtitle track attached to an uploaded video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedSubtitles {
    /// The track's language.
    pub language_code: LanguageCode,
    /// The name shown to viewers.
    pub display_name: String,
    /// The media id of the subtitle file.
    pub media_id: MediaId,
}

/// Collects the numbers of an upload as it runs.
#[derive(Debug)]
pub(crate) struct Recorder {
    started: Instant,
    latency: Option<Histogram<u64>>,
    pub(crate) attempts: u32,
    pub(crate) retries: u32,
    pub(crate) control_retries: u32,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_resent: u64,
    pub(crate) max_in_flight: usize,
    trace: Option<Vec<AttemptRecord>>,
}

impl Recorder {
    pub(crate) fn new(started: Instant, trace: bool) -> Self {
        let latency =
            Histogram::new_with_bounds(1, LATENCY_HISTOGRAM_MAX_MICROS, LATENCY_HISTOGRAM_SIGFIG)
                .ok();
        Recorder {
            started,
            latency,
            attempts: 0,
            retries: 0,
            control_retries: 0,
            bytes_sent: 0,
            bytes_resent: 0,
            max_in_flight: 0,
            trace: trace.then(Vec::new),
        }
    }

    /// An APPEND attempt of `bytes` started with `in_flight` requests out; `resend` if its
    /// bytes were handed to an earlier attempt (a retry, or a segment abandoned by a pause).
    pub(crate) fn attempt_started(
        &mut self,
        attempt: u32,
        bytes: u64,
        in_flight: usize,
        resend: bool,
    ) {
        self.attempts += 1;
        self.bytes_sent += bytes;
        if attempt > 1 {
            self.retries += 1;
        }
        if resend || attempt > 1 {
            self.bytes_resent += bytes;
        }
        self.max_in_flight = self.max_in_flight.max(in_flight);
    }

    /// An APPEND attempt ended.
    pub(crate) fn attempt_ended(&mut self, record: AttemptRecord, latency: Duration) {
        if record.outcome == AttemptOutcome::Success {
            if let Some(h) = self.latency.as_mut() {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                h.saturating_record(micros.max(1));
            }
        }
        if let Some(t) = self.trace.as_mut() {
            t.push(record);
        }
    }

    /// Milliseconds from the start of the upload to `t`.
    pub(crate) fn ms_since_start(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.started).as_secs_f64() * 1e3
    }

    fn latency_summary(&self) -> LatencySummary {
        let Some(h) = self.latency.as_ref().filter(|h| !h.is_empty()) else {
            return LatencySummary::default();
        };
        let ms = |micros: u64| micros as f64 / 1e3;
        LatencySummary {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }

    /// The final report.
    pub(crate) fn finish(&mut self, ended: Instant, fin: Finished) -> UploadReport {
        let elapsed = ended.saturating_duration_since(self.started);
        let secs = elapsed.as_secs_f64();
        let goodput = if secs > 0.0 {
            fin.total_bytes as f64 / secs
        } else {
            0.0
        };
        let latency = self.latency_summary();
        UploadReport {
            media_id: fin.media_id,
            media_key: fin.media_key,
            total_bytes: fin.total_bytes,
            segments: fin.segments,
            elapsed,
            goodput_bytes_per_sec: goodput,
            latency,
            attempts: self.attempts,
            retries: self.retries,
            control_retries: self.control_retries,
            bytes_sent: self.bytes_sent,
            bytes_resent: self.bytes_resent,
            processing_state: fin.processing_state,
            chunk_min: fin.chunk_min,
            chunk_max: fin.chunk_max,
            max_in_flight: self.max_in_flight,
            resumed_segments: fin.resumed_segments,
            restarted: fin.restarted,
            trace: self.trace.take().unwrap_or_default(),
            one_shot: false,
            alt_text_set: false,
            subtitles: Vec::new(),
        }
    }
}

/// What the upload knows at the end that the recorder does not.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) media_id: MediaId,
    pub(crate) media_key: Option<String>,
    pub(crate) total_bytes: u64,
    pub(crate) segments: u32,
    pub(crate) processing_state: Option<ProcessingState>,
    pub(crate) chunk_min: u64,
    pub(crate) chunk_max: u64,
    pub(crate) resumed_segments: u32,
    pub(crate) restarted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn report_counts_and_percentiles() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, true);
        for (i, ms) in [10u64, 20, 30, 40, 1000].into_iter().enumerate() {
            r.attempt_started(1, 100, i + 1, false);
            let rec = AttemptRecord {
                segment: i as u32,
                attempt: 1,
                bytes: 100,
                start_ms: 0.0,
                end_ms: ms as f64,
                outcome: AttemptOutcome::Success,
                in_flight: i + 1,
                app_limited: false,
            };
            r.attempt_ended(rec, Duration::from_millis(ms));
        }
        r.attempt_started(2, 100, 1, false);
        tokio::time::advance(Duration::from_secs(2)).await;
        let rep = r.finish(
            Instant::now(),
            Finished {
                media_id: MediaId::from("1"),
                media_key: None,
                total_bytes: 500,
                segments: 5,
                processing_state: None,
                chunk_min: 100,
                chunk_max: 100,
                resumed_segments: 0,
                restarted: false,
            },
        );
        assert_eq!(rep.attempts, 6);
        assert_eq!(rep.retries, 1);
        assert_eq!(rep.bytes_sent, 600);
        assert_eq!(rep.bytes_resent, 100);
        assert_eq!(rep.max_in_flight, 5);
        assert_eq!(rep.trace.len(), 5);
        assert_eq!(rep.goodput_bytes_per_sec, 250.0);
        assert!((rep.latency.p50_ms - 30.0).abs() < 0.1, "{:?}", rep.latency);
        assert!(
            (rep.latency.max_ms - 1000.0).abs() < 1.0,
            "{:?}",
            rep.latency
        );
        let json = serde_json::to_string(&rep).unwrap();
        let back: UploadReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rep);
    }
}
