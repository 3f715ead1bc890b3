//! Live progress of an upload on stderr: an indicatif bar on a terminal, plain periodic lines
//! otherwise, structured `tracing` events (target `chunkwise::progress`) with
//! `--log-format json`, nothing with `--quiet`.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chunkwise::engine::{Progress, UploadEvent};
use chunkwise::{CancelOutcome, PauseMode, UploadHandle, UploadReport};
use indicatif::{ProgressBar, ProgressStyle};

use super::output::clean;
use super::signals::{INTERRUPT_GRACE, Interrupted, Interrupts, Signal};
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

/// Prints `msg` above the bar on a terminal, or as a line on stderr, without control
/// characters (event texts carry server text).
fn say(bar: Option<&ProgressBar>, msg: String) {
    let msg = clean(&msg);
    match bar {
        Some(b) => b.println(msg),
        None => note!("{msg}"),
    }
}

/// Remaining seconds at `rate`, if there is a rate.
fn eta_secs(p: &Progress, rate: f64) -> Option<f64> {
    (rate > 0.0).then(|| (p.total_bytes - p.bytes_acked.min(p.total_bytes)) as f64 / rate)
}

/// Follows an upload to its end, rendering progress, and returns its report.
///
/// `every` is the interval of plain lines (and JSON events) when there is no bar. An
/// interrupt (see [`Interrupts`]) pauses the upload, lets the APPENDs in flight finish for
/// at most [`INTERRUPT_GRACE`] (a second interrupt cuts that short), cancels it, which saves
/// its checkpoint, and ends with an [`Interrupted`] error that says how to resume.
///
/// # Errors
///
/// The upload's error, or [`Interrupted`].
pub(crate) async fn follow(
    mut handle: UploadHandle,
    global: &GlobalArgs,
    every: Duration,
    interrupts: &mut Interrupts,
) -> anyhow::Result<UploadReport> {
    let mut view = View::new(global, every);
    loop {
        tokio::select! {
            event = handle.next_event() => match event {
                Some(event) => view.show(event),
                None => break,
            },
            signal = interrupts.next() => {
                return interrupted(handle, signal, interrupts, &mut view).await;
            }
        }
    }
    view.finish();
    Ok(handle.join().await?)
}

/// Stops `handle` after `signal`: see [`follow`].
async fn interrupted(
    mut handle: UploadHandle,
    signal: Signal,
    interrupts: &mut Interrupts,
    view: &mut View,
) -> anyhow::Result<UploadReport> {
    handle.pause(PauseMode::Drain);
    let in_flight = handle.progress().in_flight;
    if in_flight > 0 {
        view.note(format!(
            "{}: stopping; letting {in_flight} APPEND(s) in flight finish (at most {} s; \
             interrupt again to stop now)",
            signal.name,
            INTERRUPT_GRACE.as_secs()
        ));
    }
    let grace = tokio::time::sleep(INTERRUPT_GRACE);
    tokio::pin!(grace);
    while handle.progress().in_flight > 0 {
        tokio::select! {
            () = &mut grace => break,
            _ = interrupts.next() => break,
            event = handle.next_event() => if event.is_none() { break },
        }
    }
    view.finish();
    let outcome = handle
        .cancel()
        .await
        .context("the upload failed before it could be stopped")?;
    match outcome.completed {
        // It finished meanwhile: the result is not lost.
        Some(report) => Ok(report),
        None => Err(anyhow::Error::new(Interrupted {
            signal,
            what: left_behind(&outcome, view.processing),
        })),
    }
}

/// What a cancelled upload left, and how to carry it on. `processing`: FINALIZE had
/// succeeded, and the server was processing the media.
fn left_behind(outcome: &CancelOutcome, processing: bool) -> String {
    match (&outcome.checkpoint, &outcome.media_id) {
        (_, Some(id)) if processing => format!(
            "media {id} was finalized and the server was still processing it; it may become \
             usable without another upload"
        ),
        (Some(cp), _) => {
            let until = outcome
                .usable_until
                .map(|t| {
                    format!(
                        " (media id {} usable until {})",
                        cp.media_id,
                        humantime::format_rfc3339_seconds(t)
                    )
                })
                .unwrap_or_default();
            format!(
                "the upload stopped with {} of {} acknowledged and its checkpoint saved{until}; \
                 continue it with `chunkwise resume {}`, or run the same `chunkwise upload` \
                 again",
                size(cp.acked_bytes()),
                size(cp.source.size),
                cp.key()
            )
        }
        (None, Some(id)) => {
            format!("media {id} was not finished and no checkpoint was kept; start over")
        }
        (None, None) => "the upload stopped before the server gave it a media id; nothing \
                         was sent that a new run would not send again"
            .to_string(),
    }
}

/// How progress is shown: nothing, a bar or plain lines, or JSON events.
enum Mode {
    Quiet,
    Json {
        last: Option<Instant>,
    },
    Text {
        bar: Option<ProgressBar>,
        last_line: Instant,
    },
}

/// The rendering of one upload's events.
struct View {
    mode: Mode,
    started: Instant,
    every: Duration,
    /// A [`UploadEvent::Processing`] was seen: FINALIZE succeeded.
    processing: bool,
}

impl View {
    fn new(global: &GlobalArgs, every: Duration) -> View {
        let mode = if global.quiet {
            Mode::Quiet
        } else if global.log_format == LogFormat::Json {
            Mode::Json { last: None }
        } else {
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            });
            Mode::Text {
                bar,
                last_line: Instant::now(),
            }
        };
        View {
            mode,
            started: Instant::now(),
            every,
            processing: false,
        }
    }

    fn show(&mut self, event: UploadEvent) {
        self.processing |= matches!(event, UploadEvent::Processing { .. });
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Json { last } => json_event(event, last, self.started, self.every),
            Mode::Text { bar, last_line } => {
                text_event(event, bar.as_ref(), last_line, self.started, self.every)
            }
        }
    }

    /// A line about the upload as a whole (not with `--quiet`).
    fn note(&self, msg: String) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Json { .. } => tracing::warn!(target: TARGET, "{msg}"),
            Mode::Text { bar, .. } => say(bar.as_ref(), msg),
        }
    }

    /// Clears the bar, if any.
    fn finish(&mut self) {
        if let Mode::Text { bar: Some(b), .. } = &self.mode {
            b.finish_and_clear();
        }
    }
}

/// One event as a bar update or plain line.
fn text_event(
    event: UploadEvent,
    bar: Option<&ProgressBar>,
    last_line: &mut Instant,
    started: Instant,
    every: Duration,
) {
    match event {
        UploadEvent::Started { total_bytes } => {
            if let Some(b) = bar {
                b.set_length(total_bytes);
            }
        }
        UploadEvent::Initialized { media_id, .. } => {
            say(bar, format!("initialized media {media_id}"));
        }
        UploadEvent::Progress(p) => {
            let rate = rate(&p, started);
            match bar {
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
                    *last_line = Instant::now();
                    note!("{}", line(&p, rate));
                }
                None => {}
            }
        }
        UploadEvent::Retry {
            index,
            attempt,
            delay,
            error,
        } => say(
            bar,
            retry_line(&format!("segment {index}"), attempt, delay, &error),
        ),
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
            say(bar, msg);
        }
        UploadEvent::Restarted {
            previous_media_id,
            reason,
        } => say(bar, restarted_line(&previous_media_id, &reason)),
        UploadEvent::Finalizing => match bar {
            Some(b) => b.set_message("finalizing"),
            None => note!("all segments acknowledged; finalizing"),
        },
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
            match bar {
                Some(b) => b.set_message(msg),
                None => note!("{msg}"),
            }
        }
        UploadEvent::ControlRetry {
            request,
            attempt,
            delay,
            error,
        } => say(bar, retry_line(request.name(), attempt, delay, &error)),
        UploadEvent::OneShot { total_bytes } => say(
            bar,
            format!("sending {total_bytes} bytes in one request (one-shot upload)"),
        ),
        UploadEvent::AltTextSet { media_id } => {
            say(bar, format!("alt text set on media {media_id}"));
        }
        UploadEvent::SubtitlesAttached {
            language_code,
            subtitles_media_id,
        } => say(
            bar,
            format!("{language_code} subtitles attached (subtitle media {subtitles_media_id})"),
        ),
        _ => {}
    }
}

/// The line of a failed attempt of `what` that is retried after `delay`.
fn retry_line(what: &str, attempt: u32, delay: Duration, error: &str) -> String {
    format!(
        "{what} attempt {attempt} failed ({error}); retrying in {:.1}s",
        delay.as_secs_f64()
    )
}

/// What a resumed upload that starts over says, and why.
fn restarted_line(previous: &chunkwise::protocol::MediaId, reason: &str) -> String {
    format!(
        "cannot carry on media {previous}: {reason}; starting over with a new upload (every \
         byte is sent again)"
    )
}

/// One event as a structured `tracing` event, for `--log-format json`.
fn json_event(event: UploadEvent, last: &mut Option<Instant>, started: Instant, every: Duration) {
    match event {
        UploadEvent::Initialized { media_id, .. } => {
            tracing::info!(target: TARGET, media_id = %media_id, "initialized");
        }
        UploadEvent::Progress(p) => {
            let done = p.bytes_acked >= p.total_bytes;
            if last.is_some_and(|t| t.elapsed() < every) && !done {
                return;
            }
            *last = Some(Instant::now());
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
                error = %clean(&error),
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
                error = %clean(&error),
                "server unreachable"
            );
        }
        UploadEvent::Restarted {
            previous_media_id,
            reason,
        } => {
            tracing::warn!(
                target: TARGET,
                previous_media_id = %previous_media_id,
                reason = %clean(&reason),
                "starting over"
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
        UploadEvent::ControlRetry {
            request,
            attempt,
            delay,
            error,
        } => {
            tracing::info!(
                target: TARGET,
                request = %request,
                attempt,
                delay_secs = delay.as_secs_f64(),
                error = %clean(&error),
                "retrying"
            );
        }
        _ => {}
    }
}
