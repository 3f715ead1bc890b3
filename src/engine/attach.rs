//! The steps after the media is ready (issue 14): its alt text and its subtitle tracks, from
//! [`MediaSpec::alt_text`] and [`MediaSpec::subtitles`].
//!
//! Hooked into [`UploadTask::run`](super::upload::UploadTask) after the upload (chunked or
//! one-shot) returned its report; kept apart from it so the hook can move with the engine's
//! core. A subtitle file that is not on the server yet is uploaded first, as its own upload
//! with category `subtitles` through the same engine configuration (so a small one goes up in
//! one request where the API takes that, protocol.md §4.5).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use super::calls::Calls;
use super::config::EngineConfig;
use super::events::{ControlRequest, UploadEvent};
use super::report::{AttachedSubtitles, UploadReport};
use super::source::Source;
use super::upload::UploadTask;
use super::{Control, Engine, MediaSpec};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::MediaCategory;
use crate::protocol::{LanguageCode, MediaId, SubtitlesRequest, UploadProtocol};

/// Where a subtitle track's file comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtitleSource {
    /// An SRT or WebVTT file, read when the track is attached (`.vtt` files, and files that
    /// start with `WEBVTT`, are sent as `text/vtt`; others as `text/srt`).
    File(PathBuf),
    /// The SRT or WebVTT text itself (`text/vtt` if it starts with `WEBVTT`).
    Text(String),
    /// A subtitle file uploaded earlier with category `subtitles`.
    Uploaded(MediaId),
}

/// One subtitle track to attach to a video once it is ready (protocol.md §12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtitleTrack {
    /// The language, two letters such as `EN`.
    pub language_code: LanguageCode,
    /// The name shown to viewers, such as `English`.
    pub display_name: String,
    /// The subtitle file.
    pub source: SubtitleSource,
}

impl SubtitleTrack {
    /// A track read from an SRT or WebVTT file.
    pub fn file(
        language_code: LanguageCode,
        display_name: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> Self {
        SubtitleTrack {
            language_code,
            display_name: display_name.into(),
            source: SubtitleSource::File(path.into()),
        }
    }
}

/// The MIME type of a subtitle file: `text/vtt` for a `.vtt` name or a `WEBVTT` header
/// (after an optional byte-order mark), `text/srt` otherwise.
fn subtitle_media_type(path: Option<&Path>, data: &[u8]) -> &'static str {
    let vtt_name = path
        .and_then(Path::extension)
        .is_some_and(|e| e.eq_ignore_ascii_case("vtt"));
    let body = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    if vtt_name || body.starts_with(b"WEBVTT") {
        "text/vtt"
    } else {
        "text/srt"
    }
}

/// What the after-ready steps need, taken from the task before it runs.
#[derive(Debug)]
pub(crate) struct AfterReady {
    protocol: Arc<dyn UploadProtocol>,
    config: Arc<EngineConfig>,
    spec: MediaSpec,
    events: UnboundedSender<UploadEvent>,
    control: watch::Receiver<Control>,
}

impl AfterReady {
    pub(crate) fn of(task: &UploadTask) -> Self {
        AfterReady {
            protocol: Arc::clone(&task.protocol),
            config: Arc::clone(&task.config),
            spec: task.spec.clone(),
            events: task.events.clone(),
            control: task.control.clone(),
        }
    }

    /// Sets the alt text and attaches the subtitle tracks of the spec to the media of a
    /// successful upload; passes a failure (or a spec with neither) through.
    pub(crate) async fn run(self, result: Result<UploadReport>) -> Result<UploadReport> {
        let report = result?;
        if self.spec.alt_text.is_none() && self.spec.subtitles.is_empty() {
            return Ok(report);
        }
        let media_id = report.media_id.clone();
        let mut control = self.control.clone();
        let cancel = async move {
            if control.wait_for(|c| *c == Control::Cancel).await.is_err() {
                futures::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = cancel => Err(Error::new(
                ErrorKind::Cancelled,
                format!(
                    "the upload was cancelled after media {media_id} was ready, before its alt \
                     text or subtitles were all set; set them with XClient::set_alt_text or \
                     attach_subtitles"
                ),
            )),
            r = self.attach(report) => r,
        }
    }

    fn emit(&self, event: UploadEvent) {
        let _ = self.events.send(event);
    }

    async fn attach(&self, mut report: UploadReport) -> Result<UploadReport> {
        let mut calls = Calls::new(&self.config.retry, self.events.clone());
        let timeout = self.config.control_timeout;
        let media_id = report.media_id.clone();
        if let Some(text) = &self.spec.alt_text {
            let protocol = Arc::clone(&self.protocol);
            calls
                .call(ControlRequest::AltText, timeout, || {
                    protocol.set_alt_text(&media_id, text)
                })
                .await?;
            report.alt_text_set = true;
            self.emit(UploadEvent::AltTextSet {
                media_id: media_id.clone(),
            });
        }
        for track in &self.spec.subtitles {
            let subtitles = self.subtitle_media(track, &media_id).await?;
            let req = SubtitlesRequest {
                video: media_id.clone(),
                video_category: self.spec.category,
                subtitles: subtitles.clone(),
                language_code: track.language_code.clone(),
                display_name: track.display_name.clone(),
            };
            let protocol = Arc::clone(&self.protocol);
            calls
                .call(ControlRequest::Subtitles, timeout, || {
                    protocol.attach_subtitles(&req)
                })
                .await?;
            self.emit(UploadEvent::SubtitlesAttached {
                language_code: track.language_code.clone(),
                subtitles_media_id: subtitles.clone(),
            });
            report.subtitles.push(AttachedSubtitles {
                language_code: track.language_code.clone(),
                display_name: track.display_name.clone(),
                media_id: subtitles,
            });
        }
        report.control_retries = report.control_retries.saturating_add(calls.retries);
        Ok(report)
    }

    /// The media id of a track's subtitle file, uploading the file first if it is not on
    /// the server yet.
    async fn subtitle_media(&self, track: &SubtitleTrack, video: &MediaId) -> Result<MediaId> {
        let (path, data) = match &track.source {
            SubtitleSource::Uploaded(id) => return Ok(id.clone()),
            SubtitleSource::Text(text) => (None, text.clone().into_bytes()),
            SubtitleSource::File(path) => {
                let data = tokio::fs::read(path).await.map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        format!(
                            "cannot read the {} subtitle file {}; check the path",
                            track.language_code,
                            path.display()
                        ),
                    )
                    .with_source(e)
                })?;
                (Some(path.as_path()), data)
            }
        };
        let spec = MediaSpec::new(subtitle_media_type(path, &data))
            .with_category(MediaCategory::Subtitles);
        // Its own upload, without checkpoints: a subtitle file is small and is read again
        // if the video's upload is resumed.
        let config = EngineConfig {
            checkpoint_store: None,
            trace_requests: false,
            ..(*self.config).clone()
        };
        let engine = Engine::new(Arc::clone(&self.protocol), config)?;
        let report = engine
            .upload(Source::bytes(data), spec)
            .join()
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "uploading the {} subtitle file failed; the video itself is uploaded as \
                         media {video}",
                        track.language_code
                    ),
                )
                .with_source(e)
            })?;
        Ok(report.media_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtitle_types_follow_the_name_or_the_header() {
        let srt = b"1\n00:00:00,000 --> 00:00:01,000\nHello\n";
        assert_eq!(subtitle_media_type(None, srt), "text/srt");
        assert_eq!(subtitle_media_type(None, b"WEBVTT\n\n"), "text/vtt");
        assert_eq!(
            subtitle_media_type(None, b"\xef\xbb\xbfWEBVTT\n"),
            "text/vtt"
        );
        assert_eq!(
            subtitle_media_type(Some(Path::new("a/subs.VTT")), srt),
            "text/vtt"
        );
        assert_eq!(
            subtitle_media_type(Some(Path::new("subs.srt")), srt),
            "text/srt"
        );
    }
}
