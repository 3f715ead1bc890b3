//! Live progress of an upload on stderr: an indicatif bar on a terminal, plain periodic lines
//! otherwise, structured `tracing` events (target `chunkwise::progress`) with
//! `--log-format json`, nothing with `--quiet`.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use chunkwise::engine::{Progress, UploadEvent};
use chunkwise::{UploadHandle, UploadReport};
use indicatif::{ProgressBar, ProgressStyle};

use super::{GlobalArgs, LogFormat};

/// The `tracing` target of progress events in JSON mode.
const TARGET: &str = "chunkwise::progress";

/// Human-readable binary size (`4.0 MiB`).
pub(crate) fn size(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}

/// One status line: bytes, rate, ETA, chunk size and parallelism.
fn line(p: &Progress, rate: f64) -> String {
    let pct = if p.total_bytes == 0 {
        100.0
    } else {
        p.bytes_acked as f64 * 100.0 / p.total_bytes as f64
    };
    let eta = eta_secs(p, rate).map_or_else(|| "?".to_string(), |s| format!("{s:.0}s"));
    format!(
        "{} / {} ({pct:.0}%), {}/s, ETA {eta}, chunk {}, {} of {} in flight",
        size(p.bytes_acked),
        size(p.total_bytes),
        size(rate as u64),
        size(p.chunk_size),
        p.in_flight,
        p.max_in_flight
    )
}

/// Average goodput since `started`, in bytes per second.
fn rate(p: &Progress, started: Instant) -> f64 {
    p.bytes_acked as f64 / started.elapsed().as_secs_f64().max(1e-3)
}

/// Prints `msg` above the bar on a terminal, or as a line on stderr.
fn say(bar: Option<&ProgressBar>, msg: String) {
    match bar {
        Some(b) => b.println(msg),
        None => eprintln!("{msg}"),
    }
}

/// Remaining seconds at `rate`, if there is a rate.
fn eta_secs(p: &Progress, rate: f64) -> Option<f64> {
    (rate > 0.0).then(|| (p.total_bytes - p.bytes_acked.min(p.total_bytes)) as f64 / rate)
}

/// Follows an upload to its end, rendering progress, and returns its report.
///
/// `every` is the interval of plain lines (and JSON events) when there is no bar.
pub(crate) async fn follow(
    mut handle: UploadHandle,
    global: &GlobalArgs,
    every: Duration,
) -> chunkwise::Result<UploadReport> {
    if global.quiet {
        while handle.next_event().await.is_some() {}
        return handle.join().await;
    }
    if global.log_format == LogFormat::Json {
        return follow_json(handle, every).await;
    }
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let mut last_line = Instant::now();
    while let Some(event) = handle.next_event().await {
        match event {
            UploadEvent::Started { total_bytes } => {
                if let Some(b) = &bar {
                    b.set_length(total_bytes);
                }
            }
            UploadEvent::Initialized { media_id, .. } => {
                let msg = format!("initialized media {media_id}");
                say(bar.as_ref(), msg);
            }
            UploadEvent::Progress(p) => {
                let rate = rate(&p, started);
                match &bar {
                    Some(b) => {
                        b.set_position(p.bytes_acked);
                        b.set_message(format!(
                            "chunk {} x{}/{}",
                            size(p.chunk_size),
                            p.in_flight,
                            p.max_in_flight
                        ));
                    }
                    None if last_line.elapsed() >= every => {
                        last_line = Instant::now();
                        eprintln!("{}", line(&p, rate));
                    }
                    None => {}
                }
            }
            UploadEvent::Retry {
                index,
                attempt,
                delay,
                error,
            } => {
                let msg = format!(
                    "segment {index} attempt {attempt} failed ({error}); retrying in {:.1}s",
                    delay.as_secs_f64()
                );
                say(bar.as_ref(), msg);
            }
            UploadEvent::Unreachable {
                down,
                retry_in,
                gives_up_in,
                error,
            } => {
                let msg = format!(
                    "no connection to the server for {:.1}s; trying again in {:.1}s, giving up \
                     in {:.0}s ({error})",
                    down.as_secs_f64(),
                    retry_in.as_secs_f64(),
                    gives_up_in.as_secs_f64()
                );
                say(bar.as_ref(), msg);
            }
            UploadEvent::Finalizing => {
                if let Some(b) = &bar {
                    b.set_message("finalizing");
                } else {
                    eprintln!("all segments acknowledged; finalizing");
                }
            }
            UploadEvent::Processing {
                state,
                progress_percent,
                ..
            } => {
                let msg = format!(
                    "processing: {state:?}{}",
                    progress_percent
                        .map(|p| format!(" {p}%"))
                        .unwrap_or_default()
                );
                match &bar {
                    Some(b) => b.set_message(msg),
                    None => eprintln!("{msg}"),
                }
            }
            UploadEvent::OneShot { total_bytes } => {
                say(
                    bar.as_ref(),
                    format!("sending {total_bytes} bytes in one request (one-shot upload)"),
                );
            }
            UploadEvent::RequestRetry {
                request,
                attempt,
                delay,
                error,
            } => {
                let msg = format!(
                    "{request} attempt {attempt} failed ({error}); retrying in {:.1}s",
                    delay.as_secs_f64()
                );
                say(bar.as_ref(), msg);
            }
            UploadEvent::AltTextSet { media_id } => {
                say(bar.as_ref(), format!("alt text set on media {media_id}"));
            }
            UploadEvent::SubtitlesAttached {
                language_code,
                subtitles_media_id,
            } => {
                let msg = format!(
                    "{language_code} subtitles attached (subtitle media {subtitles_media_id})"
                );
                say(bar.as_ref(), msg);
            }
            _ => {}
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    handle.join().await
}

/// Progress as structured `tracing` events, for `--log-format json`.
async fn follow_json(mut handle: UploadHandle, every: Duration) -> chunkwise::Result<UploadReport> {
    let started = Instant::now();
    let mut last: Option<Instant> = None;
    while let Some(event) = handle.next_event().await {
        match event {
            UploadEvent::Initialized { media_id, .. } => {
                tracing::info!(target: TARGET, media_id = %media_id, "initialized");
            }
            UploadEvent::Progress(p) => {
                let done = p.bytes_acked >= p.total_bytes;
                if last.is_some_and(|t| t.elapsed() < every) && !done {
                    continue;
                }
                last = Some(Instant::now());
                let rate = rate(&p, started);
                tracing::info!(
                    target: TARGET,
                    bytes_acked = p.bytes_acked,
                    total_bytes = p.total_bytes,
                    rate_bytes_per_sec = rate.round() as u64,
                    eta_secs = eta_secs(&p, rate).map(|s| s.round() as u64),
                    chunk_size = p.chunk_size,
                    in_flight = p.in_flight,
                    max_in_flight = p.max_in_flight,
                    "progress"
                );
            }
            UploadEvent::Retry {
                index,
                attempt,
                delay,
                error,
            } => {
                tracing::info!(
                    target: TARGET,
                    segment = index,
                    attempt,
                    delay_secs = delay.as_secs_f64(),
                    error = %error,
                    "retrying"
                );
            }
            UploadEvent::Unreachable {
                down,
                retry_in,
                gives_up_in,
                error,
            } => {
                tracing::warn!(
                    target: TARGET,
                    down_secs = down.as_secs_f64(),
                    retry_in_secs = retry_in.as_secs_f64(),
                    gives_up_in_secs = gives_up_in.as_secs_f64(),
                    error = %error,
                    "server unreachable"
                );
            }
            UploadEvent::Finalizing => tracing::info!(target: TARGET, "finalizing"),
            UploadEvent::Processing {
                state,
                progress_percent,
                ..
            } => {
                tracing::info!(
                    target: TARGET,
                    state = ?state,
                    progress_percent,
                    "processing"
                );
            }
            _ => {}
        }
    }
    handle.join().await
}
